/**
 * The proxy types of a SyncManager's typeids, as CPython's `DictProxy`,
 * `ListProxy`, `NamespaceProxy`, `ValueProxy`, `ArrayProxy`,
 * `AcquirerProxy`, `ConditionProxy`, `EventProxy`, `BarrierProxy` and the
 * queue's AutoProxy. Every method is generated from the exposed names
 * (exposeMethods): a Promise and its blocking `Sync` twin; the interfaces
 * merged into each class give them their types.
 * @packageDocumentation
 */
import type { BlockOptions, DictKey } from './objects';
import { BaseProxy, exposeMethods } from './proxy';

export type { BlockOptions, DictKey } from './objects';

/** Options of `acquire`, as Python's `acquire(block=True, timeout=None)`. */
export type AcquireOptions = BlockOptions;

/** A proxy class with its exposed names (the server's default `exposed` for its typeid). */
function withMethods(type: abstract new (...args: never[]) => BaseProxy, names: readonly string[], readByProperties: readonly string[] = []): void {
  exposeMethods(type, names);
  Object.defineProperty(type, '_exposed', { value: Object.freeze([...names, ...readByProperties]) });
}

// --- dict ------------------------------------------------------------------------

/**
 * A dict held by a manager's server, as Python's `DictProxy`, with Map's
 * names. Keys are compared by value: strings, numbers, bigints, booleans,
 * `null`, `undefined`. Values are copied (structured clone) except proxies,
 * which stay proxies: a dict of lists works.
 */
export class DictProxy<K extends DictKey = DictKey, V = unknown> extends BaseProxy {
  /** Iterates over a snapshot of the entries (one round trip). */
  async *[Symbol.asyncIterator](): AsyncGenerator<[K, V]> {
    yield* await this.entries();
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface DictProxy<K extends DictKey = DictKey, V = unknown> {
  /** The value of `key`; `defaultValue` (undefined) when there is none. */
  get(key: K, defaultValue?: V): Promise<V | undefined>;
  getSync(key: K, defaultValue?: V): V | undefined;
  set(key: K, value: V): Promise<void>;
  setSync(key: K, value: V): void;
  has(key: K): Promise<boolean>;
  hasSync(key: K): boolean;
  /** Removes `key`; true when it was there. */
  delete(key: K): Promise<boolean>;
  deleteSync(key: K): boolean;
  keys(): Promise<K[]>;
  keysSync(): K[];
  values(): Promise<V[]>;
  valuesSync(): V[];
  entries(): Promise<[K, V][]>;
  entriesSync(): [K, V][];
  /** The number of entries. */
  size(): Promise<number>;
  sizeSync(): number;
  clear(): Promise<void>;
  clearSync(): void;
  /** Sets every entry of `other`: a plain object, a Map or an array of [key, value]. */
  update(other: Record<string, V> | Map<K, V> | [K, V][]): Promise<void>;
  updateSync(other: Record<string, V> | Map<K, V> | [K, V][]): void;
  /** The value of `key`, set to `defaultValue` first when there is none (Python's `setdefault`). */
  setDefault(key: K, defaultValue?: V): Promise<V>;
  setDefaultSync(key: K, defaultValue?: V): V;
  /** Removes `key` and returns its value; a missing key rejects with a `KeyError` unless `defaultValue` is given. */
  pop(key: K, defaultValue?: V): Promise<V>;
  popSync(key: K, defaultValue?: V): V;
  /** A plain object of the entries (keys as strings). */
  toObject(): Promise<Record<string, V>>;
  toObjectSync(): Record<string, V>;
}
withMethods(DictProxy, ['get', 'set', 'has', 'delete', 'keys', 'values', 'entries', 'size', 'clear', 'update', 'setDefault', 'pop', 'toObject']);

// --- list ------------------------------------------------------------------------

/**
 * A list held by a manager's server, as Python's `ListProxy`. Indexes may be
 * negative (from the end); out of range rejects with an `IndexError`.
 */
export class ListProxy<T = unknown> extends BaseProxy {
  /** Iterates over a snapshot of the items (one round trip). */
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    yield* await this.toArray();
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface ListProxy<T = unknown> {
  get(index: number): Promise<T>;
  getSync(index: number): T;
  set(index: number, value: T): Promise<void>;
  setSync(index: number, value: T): void;
  append(value: T): Promise<void>;
  appendSync(value: T): void;
  extend(values: Iterable<T>): Promise<void>;
  extendSync(values: Iterable<T>): void;
  /** Inserts before `index` (past either end: at that end). */
  insert(index: number, value: T): Promise<void>;
  insertSync(index: number, value: T): void;
  /** Removes and returns the item at `index` (default: the last). */
  pop(index?: number): Promise<T>;
  popSync(index?: number): T;
  /** Removes the first item deeply equal to `value`; `ValueError` when there is none. */
  remove(value: T): Promise<void>;
  removeSync(value: T): void;
  /** The index of the first item deeply equal to `value` in [start, end); `ValueError` when there is none. */
  index(value: T, start?: number, end?: number): Promise<number>;
  indexSync(value: T, start?: number, end?: number): number;
  length(): Promise<number>;
  lengthSync(): number;
  /** The items from `start` to `end`, as Array's `slice`. */
  slice(start?: number, end?: number): Promise<T[]>;
  sliceSync(start?: number, end?: number): T[];
  /** Sorts in place, numbers (and bigints) or strings, as Python's `sort(reverse=...)`. */
  sort(options?: { reverse?: boolean }): Promise<void>;
  sortSync(options?: { reverse?: boolean }): void;
  toArray(): Promise<T[]>;
  toArraySync(): T[];
}
withMethods(ListProxy, ['get', 'set', 'append', 'extend', 'insert', 'pop', 'remove', 'index', 'length', 'slice', 'sort', 'toArray']);

// --- Namespace ------------------------------------------------------------------------

/** Property reads and writes of a Namespace proxy go to the server, except these and names starting with `_`. */
function isLocal(target: object, name: string | symbol): boolean {
  return typeof name === 'symbol' || name.startsWith('_') || name === 'then' || name in target;
}

/**
 * A Namespace held by a manager's server, as Python's `NamespaceProxy`:
 * `ns.x = 1` and `ns.x` read and write the server's value, blocking for the
 * round trip as Python's do (a missing name reads `undefined`); the methods
 * do the same without blocking. Names starting with `_` are the proxy's own.
 */
export class NamespaceProxy extends BaseProxy {
  [name: string]: unknown;

  /** @internal */
  constructor(...args: ConstructorParameters<typeof BaseProxy>) {
    super(...args);
    return new Proxy(this, {
      get: (target, name, receiver) => (isLocal(target, name) ? Reflect.get(target, name, receiver) : target.getAttrSync(name as string)),
      set: (target, name, value, receiver) => {
        if (isLocal(target, name)) return Reflect.set(target, name, value, receiver);
        target.setAttrSync(name as string, value);
        return true;
      },
      has: (target, name) => (isLocal(target, name) ? Reflect.has(target, name) : target.hasAttrSync(name as string)),
      deleteProperty: (target, name) => (isLocal(target, name) ? Reflect.deleteProperty(target, name) : (target.delAttrSync(name as string), true)),
      ownKeys: (target) => [...Reflect.ownKeys(target), ...target.keysSync()],
      getOwnPropertyDescriptor: (target, name) =>
        isLocal(target, name)
          ? Reflect.getOwnPropertyDescriptor(target, name)
          : target.hasAttrSync(name as string)
            ? { value: target.getAttrSync(name as string), writable: true, enumerable: true, configurable: true }
            : undefined,
    });
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface NamespaceProxy {
  getAttr(name: string): Promise<unknown>;
  getAttrSync(name: string): unknown;
  setAttr(name: string, value: unknown): Promise<void>;
  setAttrSync(name: string, value: unknown): void;
  hasAttr(name: string): Promise<boolean>;
  hasAttrSync(name: string): boolean;
  /** Removes `name`; true when it was there. */
  delAttr(name: string): Promise<boolean>;
  delAttrSync(name: string): boolean;
  /** The names set. */
  keys(): Promise<string[]>;
  keysSync(): string[];
  /** A plain object of every name and value. */
  toObject(): Promise<Record<string, unknown>>;
  toObjectSync(): Record<string, unknown>;
}
withMethods(NamespaceProxy, ['getAttr', 'setAttr', 'hasAttr', 'delAttr', 'keys', 'toObject']);

// --- Value, Array ------------------------------------------------------------------------

/** A typed value held by a manager's server, as Python's `ValueProxy`; `.value` blocks for the round trip. */
export class ValueProxy<V = number | bigint | string> extends BaseProxy {
  /** The value (a blocking round trip, as Python's `.value`). */
  get value(): V {
    return this.getSync();
  }

  set value(value: V) {
    this.setSync(value);
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface ValueProxy<V = number | bigint | string> {
  get(): Promise<V>;
  getSync(): V;
  /** Writes the value, checked and converted as `mp.RawValue` of the typecode does. */
  set(value: V): Promise<void>;
  setSync(value: V): void;
}
withMethods(ValueProxy, ['get', 'set']);

/** A typed array held by a manager's server, as Python's `ArrayProxy`. */
export class ArrayProxy<V = number | bigint> extends BaseProxy {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface ArrayProxy<V = number | bigint> {
  get(index: number): Promise<V>;
  getSync(index: number): V;
  set(index: number, value: V): Promise<void>;
  setSync(index: number, value: V): void;
  length(): Promise<number>;
  lengthSync(): number;
  toArray(): Promise<V[]>;
  toArraySync(): V[];
}
withMethods(ArrayProxy, ['get', 'set', 'length', 'toArray']);

// --- Queue ------------------------------------------------------------------------

/** A queue held by a manager's server (Python's `queue.Queue` behind an AutoProxy). `mp.Empty`/`mp.Full` as `mp.Queue`. */
export class QueueProxy<T = unknown> extends BaseProxy {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface QueueProxy<T = unknown> {
  put(item: T, options?: BlockOptions): Promise<void>;
  putSync(item: T, options?: BlockOptions): void;
  putNowait(item: T): Promise<void>;
  putNowaitSync(item: T): void;
  get(options?: BlockOptions): Promise<T>;
  getSync(options?: BlockOptions): T;
  getNowait(): Promise<T>;
  getNowaitSync(): T;
  qsize(): Promise<number>;
  qsizeSync(): number;
  empty(): Promise<boolean>;
  emptySync(): boolean;
  full(): Promise<boolean>;
  fullSync(): boolean;
}
const QUEUE_METHODS = ['put', 'putNowait', 'get', 'getNowait', 'qsize', 'empty', 'full'];
withMethods(QueueProxy, QUEUE_METHODS);

/** A queue whose consumers say when each item is done, as `JoinableQueue`. */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface JoinableQueueProxy {
  /** One item got is done; `ValueError` when called more often than items were put. */
  taskDone(): Promise<void>;
  taskDoneSync(): void;
  /** Resolves once every item put is done. */
  join(): Promise<void>;
  joinSync(): void;
}
withMethods(JoinableQueueProxy, [...QUEUE_METHODS, 'taskDone', 'join']);

// --- synchronisation ------------------------------------------------------------------------

/** A Lock, RLock, Semaphore or BoundedSemaphore held by a manager's server, as Python's `AcquirerProxy`. */
export class AcquirerProxy extends BaseProxy {
  /** Releases what `await using` acquired. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface AcquirerProxy {
  /** True once acquired; false when `block: false` or the timeout could not. */
  acquire(options?: AcquireOptions): Promise<boolean>;
  acquireSync(options?: AcquireOptions): boolean;
  release(): Promise<void>;
  releaseSync(): void;
}
withMethods(AcquirerProxy, ['acquire', 'release']);

/** A Semaphore or BoundedSemaphore held by a manager's server. */
export class SemaphoreProxy extends AcquirerProxy {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface SemaphoreProxy {
  getValue(): Promise<number>;
  getValueSync(): number;
}
withMethods(SemaphoreProxy, ['acquire', 'release', 'getValue']);

/** A Condition held by a manager's server, as Python's `ConditionProxy`. */
export class ConditionProxy extends AcquirerProxy {
  /**
   * Waits until `predicate()` (run here) is true, as Python's `wait_for`:
   * resolves with its last result, falsy when the timeout ran out.
   */
  async waitFor<R>(predicate: () => R | Promise<R>, timeout?: number | null): Promise<R> {
    const deadline = timeout == null ? null : Date.now() + timeout;
    let result = await predicate();
    while (!result) {
      const left = deadline === null ? null : deadline - Date.now();
      if (left !== null && left <= 0) break;
      await this.wait(left);
      result = await predicate();
    }
    return result;
  }

  /** {@link waitFor}, blocking; the predicate must answer synchronously. */
  waitForSync<R>(predicate: () => R, timeout?: number | null): R {
    const deadline = timeout == null ? null : Date.now() + timeout;
    let result = predicate();
    while (!result) {
      const left = deadline === null ? null : deadline - Date.now();
      if (left !== null && left <= 0) break;
      this.waitSync(left);
      result = predicate();
    }
    return result;
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface ConditionProxy {
  /** Releases the lock, waits for a notify, takes it back; false when the timeout ran out. */
  wait(timeout?: number | null): Promise<boolean>;
  waitSync(timeout?: number | null): boolean;
  notify(n?: number): Promise<void>;
  notifySync(n?: number): void;
  notifyAll(): Promise<void>;
  notifyAllSync(): void;
}
withMethods(ConditionProxy, ['acquire', 'release', 'wait', 'notify', 'notifyAll']);

/** An Event held by a manager's server, as Python's `EventProxy`. */
export class EventProxy extends BaseProxy {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface EventProxy {
  isSet(): Promise<boolean>;
  isSetSync(): boolean;
  set(): Promise<void>;
  setSync(): void;
  clear(): Promise<void>;
  clearSync(): void;
  /** True once set; false when the timeout ran out. */
  wait(timeout?: number | null): Promise<boolean>;
  waitSync(timeout?: number | null): boolean;
}
withMethods(EventProxy, ['isSet', 'set', 'clear', 'wait']);

/** A Barrier held by a manager's server, as Python's `BarrierProxy`; its properties block for the round trip. */
export class BarrierProxy extends BaseProxy {
  /** How many parties it waits for. */
  get parties(): number {
    return this._callMethodSync('parties') as number;
  }

  /** How many parties wait now. */
  get nWaiting(): number {
    return this._callMethodSync('nWaiting') as number;
  }

  /** Whether it is broken (`mp.BrokenBarrierError` for its waiters). */
  get broken(): boolean {
    return this._callMethodSync('broken') as boolean;
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface BarrierProxy {
  /** Resolves with this party's index once all came; rejects with `mp.BrokenBarrierError`. */
  wait(timeout?: number | null): Promise<number>;
  waitSync(timeout?: number | null): number;
  abort(): Promise<void>;
  abortSync(): void;
  reset(): Promise<void>;
  resetSync(): void;
}
withMethods(BarrierProxy, ['wait', 'abort', 'reset'], ['parties', 'nWaiting', 'broken']);
