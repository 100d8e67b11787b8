/**
 * A Pool served by a manager, as the `Pool` of Python's SyncManager: the pool
 * and its workers live in the server process, clients submit tasks through a
 * {@link PoolProxy}. A task function crosses to the server by module
 * reference (as a spawned Process's target): the server loads the module that
 * exports it, and its workers run it. `applyAsync`/`mapAsync` give an
 * {@link AsyncResultProxy} of the server's AsyncResult; `imap` iterates over
 * the server's IMapIterator one result per round trip.
 * @internal
 */
import type * as PoolModule from '../pool';
import type { AsyncResult, IMapIterator } from '../pool';
import { Reference, referenceOf, resolveReference } from '../reference';
import { describe, validateFunction, validateOptions } from '../validate';
import { BaseProxy, exposeMethods } from './proxy';
import { RELEASE } from './server';

type AnyFunction = (...args: never[]) => unknown;
/** A task function loaded in the server: called with whatever the client sent. */
type TaskFunction = (...args: unknown[]) => unknown;

// --- in the server ----------------------------------------------------------------

/** The functions of references already loaded in this server, by reference. */
const loaded = new Map<string, Promise<TaskFunction>>();

/** The function a client sent by reference, loaded once. */
function functionOf(reference: unknown, what: string): Promise<TaskFunction> {
  if (!isReference(reference)) return Promise.reject(new TypeError(`${what} must be a function reference, got ${describe(reference)}`));
  const key = JSON.stringify(reference);
  let fn = loaded.get(key);
  if (fn === undefined) {
    fn = resolveReference(reference, what) as Promise<TaskFunction>;
    loaded.set(key, fn);
    fn.catch(() => loaded.delete(key)); // a module fixed later may be loaded then
  }
  return fn;
}

function isReference(value: unknown): value is Reference {
  if (typeof value !== 'object' || value === null) return false;
  const { kind } = value as { kind?: unknown };
  return kind === 'commonjs' || kind === 'module';
}

/** The options of a task-submitting call as they cross: chunksize and timeout (functions and signals stay in the client). */
interface CrossingOptions {
  chunksize?: number | null;
  timeout?: number | null;
}

function crossingOptions(options: unknown): CrossingOptions {
  const { chunksize, timeout } = validateOptions(options, ['chunksize', 'timeout'] as const);
  return { ...(chunksize === undefined ? {} : { chunksize: chunksize as number | null }), ...(timeout === undefined ? {} : { timeout: timeout as number | null }) };
}

function argumentsOf(args: unknown): unknown[] {
  if (!Array.isArray(args)) throw new TypeError(`args must be an array, got ${describe(args)}`);
  return args;
}

function itemsOf(items: unknown): unknown[] {
  if (!Array.isArray(items)) throw new TypeError(`the items must be an array, got ${describe(items)}`);
  return items;
}

/**
 * The pool a manager's server holds: an `mp.Pool` of the server's default
 * context, whose methods take task functions by reference. Released (its
 * workers terminated) when its last proxy is dropped or the server stops.
 */
export class ServerPool {
  readonly #pool: PoolModule.Pool;

  constructor(pool: PoolModule.Pool) {
    this.#pool = pool;
  }

  async apply(fn: unknown, args: unknown = [], options?: unknown): Promise<unknown> {
    return this.#pool.apply(await functionOf(fn, 'fn'), argumentsOf(args), crossingOptions(options));
  }

  async applyAsync(fn: unknown, args: unknown = [], options?: unknown): Promise<AsyncResult<unknown>> {
    return this.#pool.applyAsync(await functionOf(fn, 'fn'), argumentsOf(args), crossingOptions(options));
  }

  async map(fn: unknown, items: unknown, options?: unknown): Promise<unknown[]> {
    return this.#pool.map(await functionOf(fn, 'fn'), itemsOf(items), crossingOptions(options));
  }

  async mapAsync(fn: unknown, items: unknown, options?: unknown): Promise<AsyncResult<unknown[]>> {
    return this.#pool.mapAsync(await functionOf(fn, 'fn'), itemsOf(items), crossingOptions(options));
  }

  async starmap(fn: unknown, items: unknown, options?: unknown): Promise<unknown[]> {
    return this.#pool.starmap(await functionOf(fn, 'fn'), itemsOf(items) as unknown[][], crossingOptions(options));
  }

  async starmapAsync(fn: unknown, items: unknown, options?: unknown): Promise<AsyncResult<unknown[]>> {
    return this.#pool.starmapAsync(await functionOf(fn, 'fn'), itemsOf(items) as unknown[][], crossingOptions(options));
  }

  async imap(fn: unknown, items: unknown, options?: unknown): Promise<IMapIterator<unknown>> {
    return this.#pool.imap(await functionOf(fn, 'fn'), itemsOf(items), crossingOptions(options));
  }

  async imapUnordered(fn: unknown, items: unknown, options?: unknown): Promise<IMapIterator<unknown>> {
    return this.#pool.imapUnordered(await functionOf(fn, 'fn'), itemsOf(items), crossingOptions(options));
  }

  close(): void {
    this.#pool.close();
  }

  terminate(): void {
    this.#pool.terminate();
  }

  join(): Promise<void> {
    return this.#pool.join();
  }

  /** The server let go of it (its last proxy was dropped, or the server stops): its workers go. */
  [RELEASE](): void {
    this.#pool.terminate();
  }
}

/** The options of a manager's `Pool()`, as `mp.Pool`'s; the initializer crosses by reference. */
interface CrossingPoolOptions {
  processes?: number | null;
  initializer?: Reference | null;
  initargs?: unknown[];
  maxtasksperchild?: number | null;
}

/** Makes a manager's Pool (the `Pool` typeid's callable): loads its initializer, then starts its workers. */
export async function makePool(processes: unknown = null, options: unknown = {}): Promise<ServerPool> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { Pool } = require('../pool') as typeof PoolModule;
  const { initializer = null, initargs = [], maxtasksperchild = null } = options as CrossingPoolOptions;
  const init = initializer === null ? null : await functionOf(initializer, 'initializer');
  return new ServerPool(new Pool(processes as number | null, { initializer: init, initargs, maxtasksperchild }));
}

// --- in the clients -------------------------------------------------------------------

/**
 * `fn` as it crosses to a manager's server: its module reference. Anything
 * else (a closure, an unexported function) is a TypeError saying how to fix it.
 */
function referenceFor(fn: unknown, what: string): Reference {
  validateFunction(fn, what);
  try {
    return referenceOf(fn as AnyFunction, what, 'spawn');
  } catch (error) {
    throw new TypeError(
      `${what} (${describe(fn)}) cannot cross to the manager's server: the tasks of a manager's Pool run in the ` +
        `server's workers, which load their function by module reference. Make it a named function exported by a ` +
        `module (module.exports.work = work, or export function work() {...}).`,
      { cause: error },
    );
  }
}

/** The options of a manager Pool's `apply`, `map`, `starmap`. */
export interface ManagedCallOptions {
  /** Milliseconds the whole call may take: past them it rejects with `mp.TimeoutError` (its tasks' workers are replaced). */
  timeout?: number | null;
}

/** The options of a manager Pool's `map`/`starmap`/`imap`. */
export interface ManagedMapOptions extends ManagedCallOptions {
  /** Items per task (default as `mp.Pool`'s). */
  chunksize?: number | null;
}

/** Called here, in the client, once a `*Async` call's result is known. */
export interface ManagedCallbacks<R> {
  callback?: ((value: R) => void) | null;
  errorCallback?: ((error: Error) => void) | null;
}

const CROSSING = ['timeout', 'chunksize'] as const;
const NOT_CROSSING: Record<string, string> = {
  signal: "an AbortSignal cannot cross to the manager's server: use options.timeout, or terminate() the pool",
  onProgress: "a function cannot cross to the manager's server: poll the AsyncResult (ready(), wait(timeout)) instead",
};

/** The options as they cross; `callbacks` are taken when the call allows them. */
function optionsFor(options: unknown, known: readonly string[], chunked: boolean): CrossingOptions {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) throw new TypeError(`options must be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (Object.prototype.hasOwnProperty.call(NOT_CROSSING, key) && (options as Record<string, unknown>)[key] != null) {
      throw new TypeError(`options.${key}: ${NOT_CROSSING[key]}`);
    }
  }
  const { chunksize, timeout } = validateOptions(options, [...known, ...Object.keys(NOT_CROSSING)]) as CrossingOptions;
  if (chunksize !== undefined && !chunked) throw new TypeError('options.chunksize is not an option of this call');
  return crossingOptions({ chunksize, timeout });
}

/** The third argument of map-like calls: a chunk size or the options. */
function mapOptionsFor(chunksizeOrOptions: unknown, known: readonly string[] = CROSSING): CrossingOptions {
  if (typeof chunksizeOrOptions === 'number' || chunksizeOrOptions === null) return { chunksize: chunksizeOrOptions };
  return optionsFor(chunksizeOrOptions, known, true);
}

function callbacksOf<R>(options: unknown): ManagedCallbacks<R> {
  if (typeof options !== 'object' || options === null) return {};
  const { callback = null, errorCallback = null } = options as ManagedCallbacks<R>;
  if (callback !== null) validateFunction(callback, 'options.callback');
  if (errorCallback !== null) validateFunction(errorCallback, 'options.errorCallback');
  return { callback, errorCallback };
}

/** A manager's iterables cross whole: an array of the items. */
function arrayOf<T>(iterable: Iterable<T>, what: string): T[] {
  if (Array.isArray(iterable)) return iterable;
  if (iterable == null || typeof (iterable as Partial<Iterable<T>>)[Symbol.iterator] !== 'function') {
    throw new TypeError(`${what} must be an iterable (it crosses to the manager's server as an array), got ${describe(iterable)}`);
  }
  return Array.from(iterable);
}

/** Calls the callbacks of a `*Async` call here once its result is known (one call waiting in the server). */
function watchResult<R>(result: AsyncResultProxy<R>, { callback, errorCallback }: ManagedCallbacks<R>): AsyncResultProxy<R> {
  if (callback || errorCallback) {
    result.get().then(
      (value) => callback?.(value),
      (error: Error) => errorCallback?.(error),
    );
  }
  return result;
}

/**
 * A Pool held by a manager's server, as Python's `PoolProxy`: `mp.Pool`'s
 * methods, each a Promise with a blocking `Sync` twin. Task functions must be
 * exported by a module (they cross by reference); items and arguments cross
 * by value. `applyAsync`/`mapAsync`/`starmapAsync` resolve with an
 * {@link AsyncResultProxy}; `imap`/`imapUnordered` return an async iterable
 * at once, as `mp.Pool`'s.
 */
export class PoolProxy extends BaseProxy {
  /** Runs `fn(...args)` in one of the server's workers and resolves with its result. */
  async apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: ManagedCallOptions): Promise<Awaited<R>> {
    return this._callMethod('apply', [referenceFor(fn, 'fn'), argumentsFor(args), optionsFor(options, ['timeout'], false)]) as Promise<Awaited<R>>;
  }

  /** {@link apply}, blocking. */
  applySync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: ManagedCallOptions): Awaited<R> {
    return this._callMethodSync('apply', [referenceFor(fn, 'fn'), argumentsFor(args), optionsFor(options, ['timeout'], false)]) as Awaited<R>;
  }

  /** Starts `fn(...args)`; resolves with the proxy of its AsyncResult. `callback`/`errorCallback` run here. */
  async applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: ManagedCallOptions & ManagedCallbacks<Awaited<R>>): Promise<AsyncResultProxy<Awaited<R>>> {
    const call = [referenceFor(fn, 'fn'), argumentsFor(args), optionsFor(options, ['timeout', 'callback', 'errorCallback'], false)];
    return watchResult((await this._callMethod('applyAsync', call)) as AsyncResultProxy<Awaited<R>>, callbacksOf(options));
  }

  /** {@link applyAsync}, blocking until the task is submitted. */
  applyAsyncSync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: ManagedCallOptions & ManagedCallbacks<Awaited<R>>): AsyncResultProxy<Awaited<R>> {
    const call = [referenceFor(fn, 'fn'), argumentsFor(args), optionsFor(options, ['timeout', 'callback', 'errorCallback'], false)];
    return watchResult(this._callMethodSync('applyAsync', call) as AsyncResultProxy<Awaited<R>>, callbacksOf(options));
  }

  /** `fn(item)` for every item, in the server's workers; the results in input order. */
  async map<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): Promise<Array<Awaited<R>>> {
    return this._callMethod('map', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize)]) as Promise<Array<Awaited<R>>>;
  }

  /** {@link map}, blocking. */
  mapSync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): Array<Awaited<R>> {
    return this._callMethodSync('map', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize)]) as Array<Awaited<R>>;
  }

  /** {@link map}, resolving with the proxy of its AsyncResult once submitted. */
  async mapAsync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>): Promise<AsyncResultProxy<Array<Awaited<R>>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, [...CROSSING, 'callback', 'errorCallback'])];
    return watchResult((await this._callMethod('mapAsync', call)) as AsyncResultProxy<Array<Awaited<R>>>, callbacksOf(options));
  }

  /** {@link mapAsync}, blocking until submitted. */
  mapAsyncSync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>): AsyncResultProxy<Array<Awaited<R>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, [...CROSSING, 'callback', 'errorCallback'])];
    return watchResult(this._callMethodSync('mapAsync', call) as AsyncResultProxy<Array<Awaited<R>>>, callbacksOf(options));
  }

  /** `fn(...args)` for every array of arguments, as Python's `starmap()`. */
  async starmap<A extends unknown[], R>(fn: (...args: A) => R, iterable: Iterable<A>, chunksize?: number | null | ManagedMapOptions): Promise<Array<Awaited<R>>> {
    return this._callMethod('starmap', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize)]) as Promise<Array<Awaited<R>>>;
  }

  /** {@link starmap}, blocking. */
  starmapSync<A extends unknown[], R>(fn: (...args: A) => R, iterable: Iterable<A>, chunksize?: number | null | ManagedMapOptions): Array<Awaited<R>> {
    return this._callMethodSync('starmap', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize)]) as Array<Awaited<R>>;
  }

  /** {@link starmap}, resolving with the proxy of its AsyncResult once submitted. */
  async starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A>,
    options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>,
  ): Promise<AsyncResultProxy<Array<Awaited<R>>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, [...CROSSING, 'callback', 'errorCallback'])];
    return watchResult((await this._callMethod('starmapAsync', call)) as AsyncResultProxy<Array<Awaited<R>>>, callbacksOf(options));
  }

  /** {@link starmapAsync}, blocking until submitted. */
  starmapAsyncSync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A>,
    options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>,
  ): AsyncResultProxy<Array<Awaited<R>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, [...CROSSING, 'callback', 'errorCallback'])];
    return watchResult(this._callMethodSync('starmapAsync', call) as AsyncResultProxy<Array<Awaited<R>>>, callbacksOf(options));
  }

  /**
   * `fn(item)` for every item, as an async iterable of the results in input
   * order (one round trip per result), returned at once as `mp.Pool`'s.
   * `break` out of `for await` drops the tasks not yet run.
   */
  imap<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): IteratorProxyLater<Awaited<R>> {
    return this.#imap('imap', fn, iterable, chunksize);
  }

  /** {@link imap}, yielding the results in the order they complete. */
  imapUnordered<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): IteratorProxyLater<Awaited<R>> {
    return this.#imap('imapUnordered', fn, iterable, chunksize);
  }

  /** {@link imap} as a blocking iterable: `for (const r of pool.imapSync(fn, items))`. */
  imapSync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): IteratorProxy<Awaited<R>> {
    return this._callMethodSync('imap', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize)]) as IteratorProxy<Awaited<R>>;
  }

  /** {@link imapUnordered} as a blocking iterable. */
  imapUnorderedSync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): IteratorProxy<Awaited<R>> {
    return this._callMethodSync('imapUnordered', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize)]) as IteratorProxy<Awaited<R>>;
  }

  #imap<T, R>(method: string, fn: (item: T) => R, iterable: Iterable<T>, chunksize: unknown): IteratorProxyLater<Awaited<R>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize)];
    return new IteratorProxyLater(this._callMethod(method, call) as Promise<IteratorProxy<Awaited<R>>>);
  }

  /** Terminates the pool and waits for its workers, as `mp.Pool`'s: `await using pool = await manager.Pool()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.terminate();
    await this.join();
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface PoolProxy {
  /** No more tasks; the workers leave once the calls in progress have completed. */
  close(): Promise<void>;
  closeSync(): void;
  /** Stops the workers at once; calls in progress reject. */
  terminate(): Promise<void>;
  terminateSync(): void;
  /** Resolves once every worker has ended; call close() or terminate() first. */
  join(): Promise<void>;
  joinSync(): void;
}
exposeMethods(PoolProxy, ['close', 'terminate', 'join']);
Object.defineProperty(PoolProxy, '_exposed', {
  value: Object.freeze(['apply', 'applyAsync', 'map', 'mapAsync', 'starmap', 'starmapAsync', 'imap', 'imapUnordered', 'close', 'terminate', 'join']),
});

function argumentsFor(args: unknown): unknown[] {
  if (args === undefined) return [];
  if (!Array.isArray(args)) throw new TypeError(`args must be an array, got ${describe(args)}`);
  return args;
}

/** The result of a manager Pool's `applyAsync`/`mapAsync`/`starmapAsync`, held by its server, as `mp.AsyncResult`. */
export class AsyncResultProxy<T = unknown> extends BaseProxy {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface AsyncResultProxy<T = unknown> {
  /** The result; rejects with the task's error, or `mp.TimeoutError` after `timeout` ms (the call goes on). */
  get(timeout?: number | null): Promise<T>;
  getSync(timeout?: number | null): T;
  /** Resolves once the call has completed or `timeout` ms passed; never rejects. */
  wait(timeout?: number | null): Promise<void>;
  waitSync(timeout?: number | null): void;
  /** Whether the call has completed. */
  ready(): Promise<boolean>;
  readySync(): boolean;
  /** Whether it succeeded; an Error before it completed. */
  successful(): Promise<boolean>;
  successfulSync(): boolean;
}
exposeMethods(AsyncResultProxy, ['get', 'wait', 'ready', 'successful']);
Object.defineProperty(AsyncResultProxy, '_exposed', { value: Object.freeze(['get', 'wait', 'ready', 'successful']) });

/**
 * The results of a manager Pool's `imapSync`/`imapUnorderedSync`, held by its
 * server, as Python's `IteratorProxy`: iterable with `for...of` (blocking) and
 * `for await...of`; `next(timeout?)` as `mp.IMapIterator`'s.
 */
export class IteratorProxy<T = unknown> extends BaseProxy implements AsyncIterableIterator<T> {
  [Symbol.asyncIterator](): this {
    return this;
  }

  [Symbol.iterator](): IterableIterator<T> {
    return {
      next: () => this.nextSync(),
      [Symbol.iterator]() {
        return this;
      },
    };
  }
}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface IteratorProxy<T = unknown> {
  /** The next result (`{ done: true }` after the last); rejects with a failed task's error or `mp.TimeoutError`. */
  next(timeout?: number | null): Promise<IteratorResult<T>>;
  nextSync(timeout?: number | null): IteratorResult<T>;
  /** Stops early: the tasks not yet run are dropped. */
  return(): Promise<IteratorResult<T>>;
  returnSync(): IteratorResult<T>;
}
exposeMethods(IteratorProxy, ['next', 'return']);
Object.defineProperty(IteratorProxy, '_exposed', { value: Object.freeze(['next', 'return']) });

/** What `imap()` returns at once: iterates over the server's iterator once it is made. */
export class IteratorProxyLater<T> implements AsyncIterableIterator<T> {
  readonly #made: Promise<IteratorProxy<T>>;

  /** @internal */
  constructor(made: Promise<IteratorProxy<T>>) {
    this.#made = made;
    made.catch(() => undefined); // reported by next()
  }

  /** The next result, as {@link IteratorProxy.next}. */
  async next(timeout?: number | null): Promise<IteratorResult<T>> {
    return (await this.#made).next(timeout);
  }

  /** Stops early: the tasks not yet run are dropped. */
  async return(): Promise<IteratorResult<T>> {
    let made: IteratorProxy<T>;
    try {
      made = await this.#made;
    } catch {
      return { done: true, value: undefined }; // nothing was started
    }
    return made.return();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
