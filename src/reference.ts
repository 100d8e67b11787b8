/**
 * Functions (and classes) by module reference, for the start methods whose
 * child does not share the parent's heap (spawn, forkserver): as Python
 * pickles a function as its module and qualified name, a target travels as the
 * module that exports it and the name of the export.
 *
 * - A function exported by a CommonJS module (TypeScript compiled to CommonJS
 *   or run through a require hook included) is found in `require.cache`.
 * - A function of an ES module is located with the inspector (the script URL
 *   of its `[[FunctionLocation]]`); the child imports that URL and takes the
 *   export of the function's name.
 *
 * Anything else (a closure, a bound or anonymous function, a function nobody
 * exports) gets an Error that says how to fix it.
 * @internal
 */
import { fileURLToPath, pathToFileURL } from 'url';

import { describe } from './validate';

/** How a child finds a function again. */
export type Reference =
  /** `require(filename)`, then `key` of its exports (`null`: the exports themselves). */
  | { kind: 'commonjs'; filename: string; key: string | null }
  /** `import(url)`, then the export `name`. */
  | { kind: 'module'; url: string; name: string };

type AnyFunction = (...args: never[]) => unknown;

const cache = new WeakMap<AnyFunction, Reference>();

/**
 * The reference of `fn` for a child of start method `method`; `what` names it
 * in errors (`'target'`). Throws an Error saying how to fix it when `fn`
 * cannot be reached by reference.
 */
export function referenceOf(fn: AnyFunction, what: string, method: string): Reference {
  let reference = cache.get(fn);
  if (reference === undefined) {
    reference = commonJsReference(fn) ?? moduleReference(fn, what, method);
    cache.set(fn, reference);
  }
  return reference;
}

function unreachable(fn: AnyFunction, what: string, method: string, why: string): Error {
  return new Error(
    `${what} (${describe(fn)}) cannot be sent to a child of the '${method}' start method: ${why}. ` +
      `Its child loads the target by reference: make it a named function exported by a module ` +
      `(module.exports.work = work, or export function work() {...}) and guard the module's top-level ` +
      `code with if (require.main === module) {...}; or start it with the 'fork' start method ` +
      `(mp.getContext('fork')), whose child shares the parent's heap and runs any function, closures included.`,
  );
}

// --- CommonJS -----------------------------------------------------------------------

/** The key under which `exports` holds `fn`; `null` when `exports` is `fn`; undefined if it does not. */
function keyOf(exports: unknown, fn: AnyFunction): string | null | undefined {
  if (exports === fn) return null;
  if ((typeof exports !== 'object' && typeof exports !== 'function') || exports === null) return undefined;
  const record = exports as Record<string, unknown>;
  if (fn.name && safeGet(record, fn.name) === fn) return fn.name;
  for (const key of Object.keys(record)) if (safeGet(record, key) === fn) return key;
  return undefined;
}

/** A property, or undefined when its getter throws (some modules export getters that do). */
function safeGet(record: Record<string, unknown>, key: string): unknown {
  try {
    return record[key];
  } catch {
    return undefined;
  }
}

/**
 * The CommonJS module that exports `fn`. A module other than the main script
 * is preferred: the child then need not load the main script at all.
 */
function commonJsReference(fn: AnyFunction): Reference | undefined {
  let found: Reference | undefined;
  for (const module of Object.values(require.cache)) {
    if (module === undefined) continue;
    const key = keyOf(module.exports, fn);
    if (key === undefined) continue;
    found = { kind: 'commonjs', filename: module.filename, key };
    if (module !== require.main) return found;
  }
  return found;
}

// --- ES modules ---------------------------------------------------------------------

interface FunctionSite {
  url: string;
  /** The kinds of the function's scopes, innermost first: 'Module', 'Closure', 'Global'... */
  scopes: string[];
}

/** The ES module (by URL) that defines `fn`: its export of `fn.name` is checked in the child. */
function moduleReference(fn: AnyFunction, what: string, method: string): Reference {
  let site: FunctionSite | null;
  try {
    site = functionSite(fn);
  } catch {
    site = null; // no inspector, or a context it does not see (a test runner's sandbox)
  }
  if (site === null || site.url === '' || site.url.startsWith('node:')) {
    throw unreachable(fn, what, method, 'no loaded module exports it (a closure, a bound or built-in function?)');
  }
  if (site.scopes[0] !== 'Module') {
    throw unreachable(fn, what, method, `it is a closure or is not exported by ${site.url}`);
  }
  if (!fn.name) throw unreachable(fn, what, method, 'it has no name to import it by');
  if (evaluatedNamespace(site.url)?.some((value) => value === fn) === false) {
    throw unreachable(fn, what, method, `it is not exported by ${site.url}`);
  }
  return { kind: 'module', url: site.url, name: fn.name };
}

/**
 * The export values of the ES module at `url`, when Node can give them
 * synchronously: `require()` of an ES module (Node >= 20.19 and 22.12)
 * returns the namespace of a module already evaluated, without running it
 * again. `undefined` where it cannot tell: an older Node, a module still
 * evaluating (the main module's top-level code, where a guarded start() runs)
 * or awaiting (top-level await), a URL with a query, a file a loader compiles
 * (.ts, .mts): the child then finds out (exit code 1).
 */
function evaluatedNamespace(url: string): unknown[] | undefined {
  const features = process.features as { require_module?: boolean };
  if (features.require_module !== true) return undefined;
  const parsed = new URL(url);
  if (parsed.protocol !== 'file:' || parsed.search !== '' || parsed.hash !== '' || !/\.m?js$/.test(parsed.pathname)) return undefined;
  // The warning Node may give about require() of an ES module concerns the user's requires, not this look-up.
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const namespace = require(fileURLToPath(parsed)) as Record<string, unknown>;
    return Object.keys(namespace).map((key) => safeGet(namespace, key));
  } catch {
    return undefined;
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** Where the inspector says `fn` is defined, or null. */
function functionSite(fn: AnyFunction): FunctionSite | null {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const inspector = require('inspector') as typeof import('inspector');
  const session = new inspector.Session();
  session.connect();
  const key = `__nodeMultiprocessingProbe${process.hrtime.bigint()}`;
  const global = globalThis as unknown as Record<string, unknown>;
  global[key] = fn;
  try {
    // The in-thread session answers synchronously.
    const post = <T>(method: string, params: object): T => {
      let answer: { error: Error | null; result?: T } = { error: new Error(`${method}: no answer`) };
      const untyped = session as unknown as {
        post(method: string, params: object, callback: (error: Error | null, result?: T) => void): void;
      };
      untyped.post(method, params, (error, result) => {
        answer = { error, result };
      });
      if (answer.error !== null) throw answer.error;
      return answer.result as T;
    };
    type Property = { name: string; value?: { objectId?: string; description?: string; value?: unknown } };
    const { result } = post<{ result: { objectId?: string } }>('Runtime.evaluate', { expression: `globalThis.${key}` });
    const own = post<{ internalProperties?: Property[] }>('Runtime.getProperties', { objectId: result.objectId, ownProperties: true });
    const location = own.internalProperties?.find((p) => p.name === '[[FunctionLocation]]')?.value?.value as
      | { scriptId: string }
      | undefined;
    const scopesId = own.internalProperties?.find((p) => p.name === '[[Scopes]]')?.value?.objectId;
    if (location === undefined || scopesId === undefined) return null;
    const scopes = post<{ result: Property[] }>('Runtime.getProperties', { objectId: scopesId, ownProperties: true })
      .result.filter((p) => /^\d+$/.test(p.name))
      .map((p) => (p.value?.description ?? '').split(' ')[0]);
    return { url: scriptUrl(session, post, location.scriptId), scopes };
  } finally {
    delete global[key];
    session.disconnect();
  }
}

/** The URL of a script id: enabling the debugger replays every parsed script. */
function scriptUrl(
  session: import('inspector').Session,
  post: <T>(method: string, params: object) => T,
  scriptId: string,
): string {
  let url = '';
  const listener = (message: { params: { scriptId: string; url: string } }): void => {
    if (message.params.scriptId === scriptId) url = message.params.url;
  };
  session.on('Debugger.scriptParsed', listener);
  try {
    post('Debugger.enable', {});
    post('Debugger.disable', {});
  } finally {
    session.removeListener('Debugger.scriptParsed', listener);
  }
  return url.startsWith('/') ? pathToFileURL(url).href : url;
}

// --- in the child -------------------------------------------------------------------

/**
 * A real `import()`: this package is compiled to CommonJS, where TypeScript
 * would turn `import()` into `require()`, which cannot load ES modules.
 */
// eslint-disable-next-line @typescript-eslint/no-implied-eval
export const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

/** The function `reference` names, loaded in this process; `what` names it in errors. */
export async function resolveReference(reference: Reference, what: string): Promise<AnyFunction> {
  if (reference.kind === 'commonjs') return resolveCommonJs(reference, what);
  const namespace = (await importModule(reference.url)) as Record<string, unknown>;
  const found = exportNamed(namespace, reference.name);
  if (found === undefined) {
    throw new Error(
      `${what} ${reference.name} is not exported by ${reference.url}: export it (export function ${reference.name}() {...}) ` +
        `so that the child can import it, or use the 'fork' start method`,
    );
  }
  return found;
}

/** {@link resolveReference} for a CommonJS reference: synchronous. */
export function resolveCommonJs(reference: Extract<Reference, { kind: 'commonjs' }>, what: string): AnyFunction {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const exports = require(reference.filename) as Record<string, unknown>;
  const found = reference.key === null ? exports : safeGet(exports, reference.key);
  if (typeof found !== 'function') {
    throw new Error(`${what}: ${reference.filename} no longer exports a function as ${reference.key ?? 'module.exports'}`);
  }
  return found as AnyFunction;
}

/** The export called `name`, or a default export or any export that is a function of that name. */
function exportNamed(namespace: Record<string, unknown>, name: string): AnyFunction | undefined {
  const candidates = [namespace[name], namespace.default, ...Object.values(namespace)];
  return candidates.find(
    (value): value is AnyFunction => typeof value === 'function' && (value === namespace[name] || value.name === name),
  );
}
