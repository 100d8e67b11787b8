/**
 * Shared ctypes, as Python's `multiprocessing.sharedctypes`: `Value`, `Array`,
 * `RawValue` and `RawArray` over the shared heap (`heap.ts`). An `Array` is a
 * real TypedArray whose memory is shared: writes in one process are seen by
 * the others at once, and `Atomics.*` works on the integer ones.
 *
 * @example
 * ```ts
 * import { Array, Value, os } from 'node-multiprocessing';
 * const counter = Value('i', 0);
 * const squares = Array('i', [1, 2, 3, 4]); // an Int32Array
 * const pid = os.fork();
 * if (pid === 0) {
 *   squares.forEach((x, i) => (squares[i] = x * x));
 *   counter.value = squares.reduce((a, b) => a + b, 0);
 *   os._exit(0);
 * }
 * os.waitpid(pid);
 * console.log(counter.value, squares); // 30 Int32Array(4) [ 1, 4, 9, 16 ]
 * ```
 * @packageDocumentation
 */
import { allocate, BlockState, blockOf, rebuildBlock, reduceBlock, SharedBlock } from './heap';
import { dumps, loads, Reducer, registerInstanceReducer, registerReducer } from './reduction';
import { RLock } from './synchronize';
import { describe, validateInteger, validateOptions } from './validate';

/** Python's typecodes: `b B h H i I l L q Q f d c` (sizes of LP64: `l` is 8 bytes). */
export type Typecode = 'b' | 'B' | 'h' | 'H' | 'i' | 'I' | 'l' | 'L' | 'q' | 'Q' | 'f' | 'd' | 'c';

/** The TypedArray that {@link Array}/{@link RawArray} return for each typecode. */
export interface TypedArrayOf {
  b: Int8Array;
  B: Uint8Array;
  h: Int16Array;
  H: Uint16Array;
  i: Int32Array;
  I: Uint32Array;
  l: BigInt64Array;
  L: BigUint64Array;
  q: BigInt64Array;
  Q: BigUint64Array;
  f: Float32Array;
  d: Float64Array;
  /** Bytes (Python's `c_char`): a Buffer, so `toString()` gives the text. */
  c: Buffer;
}

/** What `.value` of a {@link Value} holds for each typecode. */
export interface ValueOf {
  b: number;
  B: number;
  h: number;
  H: number;
  i: number;
  I: number;
  l: bigint;
  L: bigint;
  q: bigint;
  Q: bigint;
  f: number;
  d: number;
  /** A one-character string (char code 0 to 255), as Python's one-byte `bytes`. */
  c: string;
}

/** What may be stored in an item of each typecode: 64-bit ones also take safe integers, `c` also a code. */
export type InputOf<T extends Typecode> = ValueOf[T] | number;

/**
 * The lock of a synchronised {@link Value} or {@link Array}: a `Lock` or an
 * `RLock` (the default) of this library, or any object with these methods.
 */
export interface SharedLock {
  acquire(options?: { block?: boolean; timeout?: number | null }): Promise<boolean>;
  acquireSync(options?: { block?: boolean; timeout?: number | null }): boolean;
  release(): void;
}

/** Options of {@link Value} and {@link Array}. */
export interface LockOptions<L extends SharedLock | boolean> {
  /** `true` (default): a new RLock; `false`: no lock (a raw object); or the lock to use. */
  lock?: L;
}

type ElementKind = 'integer' | 'bigint' | 'float' | 'char';

interface TypeInfo {
  readonly size: number;
  readonly kind: ElementKind;
  readonly min: number | bigint;
  readonly max: number | bigint;
  /** Python's ctypes name, for messages. */
  readonly ctype: string;
  view(buffer: ArrayBuffer, length: number): TypedArrayOf[Typecode];
}

function integer(size: number, signed: boolean, ctype: string, array: new (b: ArrayBuffer, o: number, l: number) => TypedArrayOf[Typecode]): TypeInfo {
  const bits = size * 8;
  const [min, max] = signed ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
  return { size, kind: 'integer', min, max, ctype, view: (buffer, length) => new array(buffer, 0, length) };
}

function bigInteger(signed: boolean, ctype: string): TypeInfo {
  const [min, max] = signed ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
  const array = signed ? BigInt64Array : BigUint64Array;
  return { size: 8, kind: 'bigint', min, max, ctype, view: (buffer, length) => new array(buffer, 0, length) };
}

function float(size: number, ctype: string, array: typeof Float32Array | typeof Float64Array): TypeInfo {
  return { size, kind: 'float', min: -Infinity, max: Infinity, ctype, view: (buffer, length) => new array(buffer, 0, length) };
}

const TYPES: Readonly<Record<Typecode, TypeInfo>> = {
  b: integer(1, true, 'c_byte', Int8Array),
  B: integer(1, false, 'c_ubyte', Uint8Array),
  h: integer(2, true, 'c_short', Int16Array),
  H: integer(2, false, 'c_ushort', Uint16Array),
  i: integer(4, true, 'c_int', Int32Array),
  I: integer(4, false, 'c_uint', Uint32Array),
  l: bigInteger(true, 'c_long'),
  L: bigInteger(false, 'c_ulong'),
  q: bigInteger(true, 'c_longlong'),
  Q: bigInteger(false, 'c_ulonglong'),
  f: float(4, 'c_float', Float32Array),
  d: float(8, 'c_double', Float64Array),
  c: { size: 1, kind: 'char', min: 0, max: 255, ctype: 'c_char', view: (buffer, length) => Buffer.from(buffer, 0, length) },
};

const TYPECODES = Object.keys(TYPES).join(' ');

function typeInfo(typecode: unknown): TypeInfo {
  if (typeof typecode === 'string' && Object.prototype.hasOwnProperty.call(TYPES, typecode)) return TYPES[typecode as Typecode];
  throw new TypeError(`typecode must be one of ${TYPECODES}, got ${describe(typecode)}`);
}

/** `value` as an element of `info`'s type (what a TypedArray of it stores), or a TypeError/RangeError. */
function toElement(info: TypeInfo, value: unknown, what: string): number | bigint {
  let element: number | bigint;
  if (info.kind === 'char' && typeof value === 'string') {
    if (value.length !== 1) throw new TypeError(`${what} must be one character (${info.ctype}), got ${describe(value)}`);
    element = value.charCodeAt(0);
  } else if (info.kind === 'bigint' && Number.isSafeInteger(value)) {
    element = BigInt(value as number);
  } else if (info.kind === 'bigint' ? typeof value === 'bigint' : typeof value === 'number') {
    element = value as number | bigint;
  } else {
    const expected = info.kind === 'bigint' ? 'a bigint or a safe integer' : info.kind === 'char' ? 'a one-character string or a char code' : 'a number';
    throw new TypeError(`${what} must be ${expected} (${info.ctype}), got ${describe(value)}`);
  }
  if ((info.kind === 'integer' || info.kind === 'char') && !Number.isInteger(element)) {
    throw new TypeError(`${what} must be an integer (${info.ctype}), got ${describe(value)}`);
  }
  if (element < info.min || element > info.max) {
    throw new RangeError(`${what} must be in [${info.min}, ${info.max}] (${info.ctype}), got ${describe(value)}`);
  }
  return element;
}

/** The TypedArray over `block` for `length` items of `typecode`. */
function viewOf(typecode: Typecode, block: SharedBlock, length: number): TypedArrayOf[Typecode] {
  return TYPES[typecode].view(block.buffer, length);
}

// --- locks ------------------------------------------------------------------

function validateLock(lock: unknown): SharedLock | null {
  if (lock === undefined || lock === true) return new RLock();
  if (lock === false) return null;
  const candidate = lock as Partial<SharedLock> | null;
  if (typeof candidate?.acquireSync === 'function' && typeof candidate.release === 'function' && typeof candidate.acquire === 'function') {
    return lock as SharedLock;
  }
  throw new TypeError(`lock must be true, false or a Lock/RLock, got ${describe(lock)}`);
}

// A lock crosses inside a Value's or Array's state as its own dumps() bytes,
// so that its kind's reducer (synchronize.ts) rebuilds it.
function reduceLock(lock: SharedLock | null): Uint8Array | null {
  return lock === null ? null : dumps(lock, 'lock');
}

function rebuildLock(state: Uint8Array | null): SharedLock | null {
  return state === null ? null : (loads(state) as SharedLock);
}

// --- values -----------------------------------------------------------------

/**
 * A single shared item, as the ctypes object of Python's `RawValue`: no lock;
 * `.value` reads and writes the shared memory directly.
 */
export class SharedValue<V extends number | bigint | string = number | bigint | string> {
  private readonly view: TypedArrayOf[Typecode];
  private readonly info: TypeInfo;

  /** @internal Use {@link RawValue} or {@link Value}. */
  constructor(
    /** The typecode this value was made with. */
    readonly typecode: Typecode,
    /** @internal The shared memory holding the value. */
    readonly block: SharedBlock,
  ) {
    this.info = typeInfo(typecode);
    this.view = viewOf(typecode, block, 1);
  }

  /** The current value in shared memory. Setting it checks its type and range (TypeError/RangeError). */
  get value(): V {
    const element = this.view[0];
    return (this.info.kind === 'char' ? String.fromCharCode(element as number) : element) as V;
  }

  set value(value: V | InputOf<Typecode>) {
    this.view[0] = toElement(this.info, value, 'value');
  }

  /** `c_int(5)`, as Python's repr. */
  toString(): string {
    const value = this.value;
    return `${this.info.ctype}(${typeof value === 'string' ? JSON.stringify(value) : String(value)})`;
  }
}

/**
 * A shared item with a lock, as Python's `Synchronized`: `.value` takes the
 * lock for each read and write (so the lock is an RLock by default: hold
 * {@link getLock} around a read-modify-write such as `v.value += 1`).
 */
export class Synchronized<V extends number | bigint | string = number | bigint | string, L extends SharedLock = SharedLock> {
  /** @internal Use {@link Value}. */
  constructor(
    private readonly obj: SharedValue<V>,
    private readonly lock: L,
  ) {}

  /** The value, read under the lock. */
  get value(): V {
    this.lock.acquireSync();
    try {
      return this.obj.value;
    } finally {
      this.lock.release();
    }
  }

  /** Writes the value under the lock; TypeError/RangeError for a bad value. */
  set value(value: V | InputOf<Typecode>) {
    this.lock.acquireSync();
    try {
      this.obj.value = value;
    } finally {
      this.lock.release();
    }
  }

  /** The typecode this value was made with. */
  get typecode(): Typecode {
    return this.obj.typecode;
  }

  /** The lock that guards the value. */
  getLock(): L {
    return this.lock;
  }

  /** The raw shared value, without the lock. */
  getObj(): SharedValue<V> {
    return this.obj;
  }

  /** `<Synchronized wrapper for c_int(5)>`, as Python's repr. */
  toString(): string {
    return `<Synchronized wrapper for ${this.obj.toString()}>`;
  }
}

/** Checks `typecode` and `init`, so that nothing is allocated for a bad call. */
function checkValue(typecode: Typecode, init: unknown): TypeInfo {
  const info = typeInfo(typecode);
  if (init !== undefined) toElement(info, init, 'init');
  return info;
}

function newSharedValue(typecode: Typecode, info: TypeInfo, init: unknown): SharedValue {
  const value = new SharedValue(typecode, allocate(info.size, info.size));
  if (init !== undefined) value.value = init as number;
  return value;
}

function lockOption(options: unknown): unknown {
  return validateOptions(options, ['lock'] as const).lock;
}

/**
 * A shared item without a lock, as Python's `RawValue(typecode, init)`:
 * zero (`'\0'` for `'c'`) unless `init` is given.
 */
export function RawValue<T extends Typecode>(typecode: T, init?: InputOf<T>): SharedValue<ValueOf[T]> {
  return newSharedValue(typecode, checkValue(typecode, init), init) as SharedValue<ValueOf[T]>;
}

/**
 * A shared item, as Python's `Value(typecode, init, lock=True)`. With
 * `{ lock: false }` the raw {@link SharedValue}; otherwise a
 * {@link Synchronized} guarded by a new RLock or the lock given. Crosses into
 * children of every start method (with its lock).
 * Bad typecodes and initialisers get a TypeError/RangeError.
 */
export function Value<T extends Typecode>(typecode: T, init: InputOf<T> | undefined, options: { lock: false }): SharedValue<ValueOf[T]>;
export function Value<T extends Typecode, L extends SharedLock = RLock>(
  typecode: T,
  init?: InputOf<T>,
  options?: LockOptions<L | true>,
): Synchronized<ValueOf[T], L>;
export function Value<T extends Typecode>(
  typecode: T,
  init?: InputOf<T>,
  options?: LockOptions<SharedLock | boolean>,
): Synchronized<ValueOf[T]> | SharedValue<ValueOf[T]>;
export function Value(typecode: Typecode, init?: unknown, options: LockOptions<SharedLock | boolean> = {}): SharedValue | Synchronized {
  const info = checkValue(typecode, init);
  const lock = validateLock(lockOption(options));
  const value = newSharedValue(typecode, info, init);
  return lock === null ? value : new Synchronized(value, lock);
}

interface SharedValueState {
  typecode: Typecode;
  block: BlockState;
}

function reduceValue(value: SharedValue): SharedValueState {
  return { typecode: value.typecode, block: reduceBlock(value.block) };
}

function rebuildValue(state: SharedValueState): SharedValue {
  return new SharedValue(state.typecode, rebuildBlock(state.block));
}

registerReducer(SharedValue, { kind: 'SharedValue', reduce: reduceValue, rebuild: rebuildValue });

registerReducer(Synchronized, {
  kind: 'Synchronized',
  reduce: (value: Synchronized) => ({ value: reduceValue(value.getObj()), lock: reduceLock(value.getLock()) }),
  rebuild: (state: { value: SharedValueState; lock: Uint8Array | null }) =>
    new Synchronized(rebuildValue(state.value), rebuildLock(state.lock) as SharedLock),
});

// --- arrays -----------------------------------------------------------------

/** What {@link Array} returns with a lock: the TypedArray, with `getLock()` and `getObj()`. */
export type SynchronizedArray<T extends Typecode, L extends SharedLock = SharedLock> = TypedArrayOf[T] & {
  /** The lock that guards the array (not taken by indexing: hold it yourself). */
  getLock(): L;
  /** The array itself, as Python's `get_obj()`. */
  getObj(): TypedArrayOf[T];
};

/** `sizeOrValues` as a length and the initial elements (`null`: all zero). */
function arrayContents(info: TypeInfo, sizeOrValues: unknown): { length: number; elements: Array<number | bigint> | null } {
  const maxLength = Math.floor(2 ** 32 / info.size);
  if (typeof sizeOrValues === 'number') {
    return { length: validateInteger(sizeOrValues, 'size', 0, maxLength), elements: null };
  }
  let items: unknown[];
  if (typeof sizeOrValues === 'string' && info.kind === 'char') items = sizeOrValues.split('');
  else if (typeof sizeOrValues === 'object' && sizeOrValues !== null && Symbol.iterator in sizeOrValues) {
    items = [...(sizeOrValues as Iterable<unknown>)];
  } else {
    throw new TypeError(`sizeOrValues must be a size or an iterable of initial values, got ${describe(sizeOrValues)}`);
  }
  if (items.length > maxLength) throw new RangeError(`an array of ${info.ctype} holds at most ${maxLength} items, got ${items.length}`);
  return { length: items.length, elements: items.map((item, i) => toElement(info, item, `sizeOrValues[${i}]`)) };
}

interface SharedArrayState {
  typecode: Typecode;
  length: number;
  block: BlockState;
  lock: Uint8Array | null;
}

/** How typed arrays of the heap cross: registered on each such instance. */
const arrayReducer: Reducer<TypedArrayOf[Typecode], SharedArrayState> = {
  kind: 'SharedArray',
  reduce: (array) => {
    const block = blockOf(array.buffer);
    const typecode = typecodes.get(array);
    if (block === undefined || typecode === undefined) throw new TypeError('not an array of shared memory');
    const lock = (array as Partial<SynchronizedArray<Typecode>>).getLock?.() ?? null;
    return { typecode, length: array.length, block: reduceBlock(block), lock: reduceLock(lock) };
  },
  rebuild: (state) => wrapArray(state.typecode, rebuildBlock(state.block), state.length, rebuildLock(state.lock)),
};

const typecodes = new WeakMap<object, Typecode>();

// The kind must be known before this process makes its first array, so that
// one sent by another process can be rebuilt here: reduction.ts registers a
// kind with its first instance, so give it a throwaway one.
registerInstanceReducer(new Int8Array(0), arrayReducer);

function wrapArray(typecode: Typecode, block: SharedBlock, length: number, lock: SharedLock | null): TypedArrayOf[Typecode] {
  const array = viewOf(typecode, block, length);
  typecodes.set(array, typecode);
  registerInstanceReducer(array, arrayReducer);
  if (lock !== null) {
    // Non-enumerable: the array still looks, iterates and compares as a plain TypedArray.
    Object.defineProperties(array, {
      getLock: { value: () => lock },
      getObj: { value: () => array },
    });
  }
  return array;
}

function newSharedArray(typecode: Typecode, sizeOrValues: unknown, options: unknown): TypedArrayOf[Typecode] {
  const info = typeInfo(typecode);
  const { length, elements } = arrayContents(info, sizeOrValues);
  const lock = options === null ? null : validateLock(lockOption(options));
  const array = wrapArray(typecode, allocate(length * info.size, info.size), length, lock);
  if (elements !== null) (array as { set(items: ArrayLike<number | bigint>): void }).set(elements);
  return array;
}

/**
 * A shared array without a lock, as Python's `RawArray(typecode, sizeOrValues)`:
 * a real TypedArray over shared memory (see {@link TypedArrayOf}), zero-filled
 * when given a size, else holding the given values.
 */
export function RawArray<T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<InputOf<T>>): TypedArrayOf[T] {
  return newSharedArray(typecode, sizeOrValues, null) as TypedArrayOf[T];
}

/**
 * A shared array, as Python's `Array(typecode, sizeOrValues, lock=True)`: a
 * real TypedArray over shared memory (`Int32Array` for `'i'`, … see
 * {@link TypedArrayOf}) with non-enumerable `getLock()` and `getObj()`;
 * with `{ lock: false }` the bare TypedArray, as {@link RawArray}. Indexing
 * never takes the lock. Crosses into children of every start method.
 * Bad typecodes, sizes and values get a TypeError/RangeError.
 */
function SharedArray<T extends Typecode>(typecode: T, sizeOrValues: number | Iterable<InputOf<T>>, options: { lock: false }): TypedArrayOf[T];
function SharedArray<T extends Typecode, L extends SharedLock = RLock>(
  typecode: T,
  sizeOrValues: number | Iterable<InputOf<T>>,
  options?: LockOptions<L | true>,
): SynchronizedArray<T, L>;
function SharedArray<T extends Typecode>(
  typecode: T,
  sizeOrValues: number | Iterable<InputOf<T>>,
  options?: LockOptions<SharedLock | boolean>,
): SynchronizedArray<T> | TypedArrayOf[T];
function SharedArray(
  typecode: Typecode,
  sizeOrValues: number | Iterable<unknown>,
  options: LockOptions<SharedLock | boolean> = {},
): TypedArrayOf[Typecode] {
  return newSharedArray(typecode, sizeOrValues, options);
}

export { SharedArray as Array };
