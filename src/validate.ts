/**
 * Argument checks shared by every module: bad input gets a TypeError or a
 * RangeError that names the argument, before anything reaches the addon.
 * @internal
 */

export function validateInteger(value: unknown, name: string, min = -(2 ** 31), max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${describe(value)}`);
  }
  if (value < min || value > max) throw new RangeError(`${name} must be in [${min}, ${max}], got ${value}`);
  return value;
}

/**
 * A timeout in milliseconds, the one rule of every wait in the package:
 * `undefined`, `null` and `Infinity` mean "no timeout" (returned as `null`);
 * 0 means "do not wait"; any other number, fractions and values beyond
 * setTimeout's 2^31-1 included, is waited out in full (see
 * {@link setLongTimeout} in timeout.ts; the addon takes any double). NaN is a
 * TypeError and a negative number a RangeError, as in Python.
 */
export function validateTimeout(value: unknown, name = 'timeout'): number | null {
  if (value === undefined || value === null || value === Infinity) return null;
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`${name} must be a number of milliseconds, got ${describe(value)}`);
  }
  if (value < 0) throw new RangeError(`${name} must be >= 0 milliseconds, got ${value}`);
  return value;
}

export function validateFunction(value: unknown, name: string): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${describe(value)}`);
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'symbol') return `a Symbol (${String(value)})`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  return `${typeof value} ${String(value)}`;
}

/**
 * An options object: `undefined` is `{}`; anything but a plain object is a
 * TypeError, and so is a key not in `known` (a typo such as `{ trget: f }`
 * would otherwise be ignored without a word), named with the closest known
 * key. `name` names the object in errors (`'options'`, `'Pool options'`).
 *
 * @example
 * ```ts
 * const { block, timeout } = validateOptions(options, ['block', 'timeout'] as const);
 * ```
 */
export function validateOptions<K extends string>(
  options: unknown,
  known: readonly K[],
  name = 'options',
): Partial<Record<K, unknown>> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${name} must be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!(known as readonly string[]).includes(key)) throw new TypeError(unknownOption(key, known, name));
  }
  return options as Partial<Record<K, unknown>>;
}

function unknownOption(key: string, known: readonly string[], name: string): string {
  const closest = known
    .map((candidate) => ({ candidate, distance: editDistance(key.toLowerCase(), candidate.toLowerCase()) }))
    .sort((a, b) => a.distance - b.distance)[0];
  const near = closest !== undefined && (closest.distance <= Math.max(1, Math.floor(closest.candidate.length / 3)) || key.startsWith(closest.candidate));
  const hint = near ? ` (did you mean '${closest.candidate}'?)` : '';
  const list = known.length === 0 ? 'none' : known.map((k) => `'${k}'`).join(', ');
  return `${name} has an unknown key '${key}'${hint}; the known ones are ${list}`;
}

/** The number of one-letter edits (insert, delete, replace, swap of neighbours) from `a` to `b`. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [Array.from({ length: b.length + 1 }, (_, j) => j)];
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], rows[i - 2][j - 2] + 1);
    }
    rows.push(row);
  }
  return rows[a.length][b.length];
}
