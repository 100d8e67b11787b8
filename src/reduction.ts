/**
 * How objects cross into another process, as CPython's `reduction.py`.
 *
 * Values travel with `v8.serialize` (structured clone). Objects that stand for
 * something shared (a Lock, a shared Value or Array, a Queue, a Connection)
 * cannot be cloned: each kind registers a reducer that turns it into plain
 * state (a segment name, an offset, a file descriptor) and a rebuild that makes
 * it usable again in the receiving process. Under the fork start method none of
 * this is needed: the child has the parent's heap.
 * @internal
 */
import { types } from 'util';
import type * as V8 from 'v8';

import { describe } from './validate';

/** Node's v8 module, loaded on first use (~2 ms: a spawned child without arguments does without). */
function v8(): typeof V8 {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('v8') as typeof V8;
}

// --- descriptors -----------------------------------------------------------------
//
// A Connection crosses as its sender's pid and descriptor number; the
// receiver takes a copy of the descriptor (pidfd_getfd) while the sender
// still holds it. A child being launched gets its copies from the launch
// instead, as Python's spawn passes fds: the parent may close its own right
// after start(). The spawn start method passes them as extra stdio
// descriptors; the fork server takes its copies before it replies to start().

/** `[pid, fd]` of each descriptor reduced while a launch collects them. */
export type DescriptorKey = [pid: number, fd: number];

let collecting: DescriptorKey[] | null = null;
/** `pid:fd` -> the copy this process was given at its launch. */
const inheritedDescriptors = new Map<string, number>();

/** Runs `reduce` (which dumps what a child is given) and lists the descriptors it reduced. */
export function collectDescriptors<T>(reduce: () => T): [T, DescriptorKey[]] {
  const outer = collecting;
  const collected: DescriptorKey[] = [];
  collecting = collected;
  try {
    return [reduce(), collected];
  } finally {
    collecting = outer;
  }
}

/** Called by a reducer that reduces descriptor `fd` of process `pid`. */
export function passDescriptor(pid: number, fd: number): void {
  if (collecting !== null && !collecting.some(([p, f]) => p === pid && f === fd)) collecting.push([pid, fd]);
}

/** In a launched child: descriptor `[pid, fd]` of the launcher is `localFd` here. */
export function inheritDescriptor(key: DescriptorKey, localFd: number): void {
  inheritedDescriptors.set(`${key[0]}:${key[1]}`, localFd);
}

/** The copy of `[pid, fd]` a launch gave this process (taken once), or `undefined`. */
export function inheritedDescriptor(pid: number, fd: number): number | undefined {
  const key = `${pid}:${fd}`;
  const local = inheritedDescriptors.get(key);
  inheritedDescriptors.delete(key);
  return local;
}

/** How one kind of shared object is reduced to plain state and rebuilt. */
export interface Reducer<T extends object = object, S = unknown> {
  /** Unique name of the kind, e.g. `'Lock'`. */
  readonly kind: string;
  /** Plain, structured-cloneable state that identifies the shared object. */
  reduce(object: T): S;
  /** A usable object in this process for the state `reduce` made. */
  rebuild(state: S): T;
}

const MARK = '__nodeMultiprocessingReduced__';

interface ReducedObject {
  [MARK]: string;
  state: unknown;
}

const reducersByKind = new Map<string, Reducer>();
const reducersByClass = new Map<abstract new (...args: never[]) => object, Reducer>();
const reducersByInstance = new WeakMap<object, Reducer>();

function register(reducer: Reducer): void {
  const existing = reducersByKind.get(reducer.kind);
  if (existing !== undefined && existing !== reducer) throw new Error(`a reducer for ${reducer.kind} is already registered`);
  reducersByKind.set(reducer.kind, reducer);
}

/** Every instance of `type` (and its subclasses) crosses with `reducer`. */
export function registerReducer<T extends object, S>(
  type: abstract new (...args: never[]) => T,
  reducer: Reducer<T, S>,
): void {
  register(reducer as unknown as Reducer);
  reducersByClass.set(type, reducer as unknown as Reducer);
}

/**
 * This one object crosses with `reducer`: for objects whose class is a
 * built-in one, such as the TypedArray that `Array()` returns.
 */
export function registerInstanceReducer<T extends object, S>(object: T, reducer: Reducer<T, S>): void {
  register(reducer as unknown as Reducer);
  reducersByInstance.set(object, reducer as unknown as Reducer);
}

function reducerOf(value: object): Reducer | undefined {
  const own = reducersByInstance.get(value);
  if (own !== undefined) return own;
  for (let proto = Object.getPrototypeOf(value); proto !== null; proto = Object.getPrototypeOf(proto)) {
    const reducer = reducersByClass.get(proto.constructor);
    if (reducer !== undefined) return reducer;
  }
  return undefined;
}

/**
 * Arrays, Maps, Sets and plain objects, of any realm: `v8.deserialize` under
 * jest (or in a vm context) makes them with another realm's prototypes.
 */
function isPlainContainer(value: object): boolean {
  if (Array.isArray(value) || types.isMap(value) || types.isSet(value)) return true;
  const proto = Object.getPrototypeOf(value);
  return proto === null || (Object.getPrototypeOf(proto) === null && Object.prototype.toString.call(value) === '[object Object]');
}

/** `[0]` for an array index, `.name` for an identifier, `["a b"]` otherwise: as the value is written in JS. */
function memberPath(key: string, isIndex: boolean): string {
  if (isIndex) return `[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** Replaces every registered object inside `value` by its reduced state. */
function reduceDeep(value: unknown, path: string, seen: Map<object, unknown>): unknown {
  if (typeof value === 'function' || typeof value === 'symbol') throw cannotSend(path, value);
  if (typeof value !== 'object' || value === null) return value;
  const done = seen.get(value);
  if (done !== undefined) return done;
  const reducer = reducerOf(value);
  if (reducer !== undefined) {
    const reduced: ReducedObject = { [MARK]: reducer.kind, state: reducer.reduce(value) };
    seen.set(value, reduced);
    return reduced;
  }
  if (!isPlainContainer(value)) return value; // Dates, TypedArrays, Errors...: v8 clones them
  if (types.isMap(value)) {
    const copy = new Map();
    seen.set(value, copy);
    for (const [k, v] of value) copy.set(reduceDeep(k, `${path} key`, seen), reduceDeep(v, `${path}.get(${String(k)})`, seen));
    return copy;
  }
  if (types.isSet(value)) {
    const copy = new Set();
    seen.set(value, copy);
    for (const v of value) copy.add(reduceDeep(v, `${path} element`, seen));
    return copy;
  }
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value) ? [] : {};
  seen.set(value, copy);
  for (const [key, item] of Object.entries(value)) {
    (copy as Record<string, unknown>)[key] = reduceDeep(item, `${path}${memberPath(key, Array.isArray(value))}`, seen);
  }
  return copy;
}

function isReduced(value: object): value is ReducedObject {
  return typeof (value as Record<string, unknown>)[MARK] === 'string';
}

/**
 * The reducer of `kind`. A spawned child loads only what its target needs:
 * the first shared object it receives loads the whole library, whose modules
 * register their reducers.
 */
/** The modules that register reducers: index.ts loads some only on first use. */
const REDUCING_MODULES = [
  './heap',
  './synchronize',
  './sharedctypes',
  './shared_memory',
  './managers',
  './connection',
  './queues',
  './connection/portable',
  './queues/portable',
];

function reducerOfKind(kind: string): Reducer | undefined {
  if (!reducersByKind.has(kind)) for (const module of REDUCING_MODULES) require(module);
  return reducersByKind.get(kind);
}

function rebuildDeep(value: unknown, seen: Set<object>): unknown {
  if (typeof value !== 'object' || value === null || seen.has(value)) return value;
  if (isReduced(value)) {
    const reducer = reducerOfKind(value[MARK]);
    if (reducer === undefined) throw new TypeError(`cannot rebuild a ${value[MARK]}: its module was not loaded`);
    return reducer.rebuild(value.state);
  }
  seen.add(value);
  if (types.isMap(value)) {
    for (const [k, v] of value) value.set(k, rebuildDeep(v, seen));
  } else if (types.isSet(value)) {
    const items = [...value].map((v) => rebuildDeep(v, seen));
    value.clear();
    for (const item of items) value.add(item);
  } else if (isPlainContainer(value)) {
    for (const [key, item] of Object.entries(value)) (value as Record<string, unknown>)[key] = rebuildDeep(item, seen);
  }
  return value;
}

// --- the JSON fast path ------------------------------------------------------------
//
// Most messages (a Queue's items, a Pool's arguments and results) are plain
// data: strings, finite numbers, booleans, null, plain objects and arrays of
// them. JSON carries those exactly and 3-4x faster than v8.serialize plus the
// walk for shared objects, so they travel as a 0x01 byte and JSON text
// (v8.serialize's output starts with 0xFF).

/** The first byte of a message in JSON: a Channel given it as `textTag` receives the JSON text. */
export const JSON_TAG = 0x01;
/** Nesting deeper than this (or a cycle) takes the v8 path. */
const JSON_MAX_DEPTH = 32;
/** Arrays longer than this take the v8 path (checking them for extra keys costs). */
const JSON_MAX_ARRAY = 64;

/** Whether JSON carries `value` exactly as structured clone would. */
function isJsonSafe(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object': {
      if (value === null) return true;
      if (depth > JSON_MAX_DEPTH) return false;
      const proto = Object.getPrototypeOf(value);
      if (proto === Array.prototype) {
        const array = value as unknown[];
        if (array.length > JSON_MAX_ARRAY || Object.keys(array).length !== array.length) return false;
        for (let i = 0; i < array.length; i++) if (!isJsonSafe(array[i], depth + 1)) return false;
        return true;
      }
      // A toJSON of its own or inherited: JSON would call it, structured clone would not.
      if (proto !== Object.prototype || 'toJSON' in (value as object)) return false;
      // Own enumerable string keys: what JSON and structured clone both carry.
      // (Not for...in: in the interpreter, where a child's first thousands of
      // puts run, it costs a third more per small object.)
      const keys = Object.keys(value);
      for (let i = 0; i < keys.length; i++) {
        if (!isJsonSafe((value as Record<string, unknown>)[keys[i]], depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * Serialises `value` for another process. `what` names it in errors, e.g.
 * `'args[1]'`: a value that cannot cross gets a TypeError naming it.
 */
export function dumps(value: unknown, what = 'value'): Buffer {
  if (isJsonSafe(value, 0)) return Buffer.from(`\u0001${JSON.stringify(value)}`, 'utf8');
  return dumpsCloned(value, what);
}

/**
 * {@link dumps}, but a value that travels as JSON is answered as its JSON text
 * (no tag, no Buffer made): for a channel that writes text itself, tagged, and
 * hands it back as text (the Queue ring), so that a small item costs no copy
 * and no Buffer in the sender. {@link loads} takes either form.
 */
export function dumpsText(value: unknown, what = 'value'): string | Buffer {
  return isJsonSafe(value, 0) ? JSON.stringify(value) : dumpsCloned(value, what);
}

function dumpsCloned(value: unknown, what: string): Buffer {
  const reduced = reduceDeep(value, what, new Map());
  try {
    return v8().serialize(reduced);
  } catch (error) {
    const culprit = firstUncloneable(reduced, what) ?? { path: what, value };
    throw cannotSend(culprit.path, culprit.value, error);
  }
}

function isCloneable(value: unknown): boolean {
  try {
    v8().serialize(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where `value` (which v8 could not clone) fails: the path of the first value
 * that is not a plain container (an object of some class, a Symbol) and
 * cannot be cloned, looking through arrays, Maps, Sets and plain objects.
 */
function firstUncloneable(value: unknown, path: string): { path: string; value: unknown } | null {
  if (typeof value !== 'object' || value === null || !isPlainContainer(value)) return isCloneable(value) ? null : { path, value };
  const entries: [string, unknown][] = types.isMap(value)
    ? [...value].flatMap(([k, v]): [string, unknown][] => [[`${path} key`, k], [`${path}.get(${String(k)})`, v]])
    : types.isSet(value)
      ? [...value].map((v): [string, unknown] => [`${path} element`, v])
      : Object.entries(value).map(([key, item]): [string, unknown] => [`${path}${memberPath(key, Array.isArray(value))}`, item]);
  for (const [itemPath, item] of entries) {
    const found = firstUncloneable(item, itemPath);
    if (found !== null) return found;
  }
  return null;
}

/** Node's classes whose instances users try to send, by their documented names. */
function nodeClassName(value: object): string | undefined {
  /* eslint-disable @typescript-eslint/no-var-requires */
  const candidates: [string, () => unknown][] = [
    ['net.Server', () => (require('net') as typeof import('net')).Server],
    ['net.Socket', () => (require('net') as typeof import('net')).Socket],
    ['child_process.ChildProcess', () => (require('child_process') as typeof import('child_process')).ChildProcess],
    ['fs.ReadStream', () => (require('fs') as typeof import('fs')).ReadStream],
    ['fs.WriteStream', () => (require('fs') as typeof import('fs')).WriteStream],
    ['MessagePort', () => (require('worker_threads') as typeof import('worker_threads')).MessagePort],
    ['stream.Stream', () => (require('stream') as typeof import('stream')).Stream],
    ['EventEmitter', () => (require('events') as typeof import('events')).EventEmitter],
  ];
  /* eslint-enable @typescript-eslint/no-var-requires */
  for (const [name, type] of candidates) if (value instanceof (type() as abstract new () => object)) return name;
  return undefined;
}

/** What `value` is, for an error: `net.Socket`, `function work`, `a Symbol (Symbol(x))`, `an instance of Foo`. */
function kindOf(value: unknown): string {
  if (typeof value === 'object' && value !== null) return nodeClassName(value) ?? describe(value);
  return describe(value);
}

/** The TypeError for a value at `path` that cannot cross; never quotes a function's source. */
function cannotSend(path: string, value: unknown, cause?: unknown): TypeError {
  const why =
    typeof value === 'function'
      ? 'functions are not data (a target travels by module reference, its arguments by value)'
      : typeof value === 'symbol'
        ? 'a Symbol is unique to its process'
        : 'v8.serialize (structured clone) copies data only, and it holds functions or native handles';
  return new TypeError(`${path}: ${kindOf(value)} cannot be sent to another process: ${why}`, cause === undefined ? undefined : { cause });
}

/**
 * The value `dumps` serialised, with shared objects rebuilt in this process;
 * a string is the JSON text of a message in JSON, without its tag.
 */
export function loads(buffer: Buffer | Uint8Array | string): unknown {
  if (typeof buffer === 'string') return JSON.parse(buffer);
  if (buffer[0] === JSON_TAG) {
    const bytes = buffer instanceof Buffer ? buffer : Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    return JSON.parse(bytes.toString('utf8', 1));
  }
  return rebuildDeep(v8().deserialize(buffer), new Set());
}
