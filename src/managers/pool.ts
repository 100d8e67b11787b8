/**
 * A Pool served by a manager, as the `Pool` of Python's SyncManager: the pool
 * and its workers live in the server process, clients submit tasks through a
 * {@link PoolProxy}. A task function crosses to the server by module
 * reference (as a spawned Process's target): the server loads the module that
 * exports it, and its workers run it. `applyAsync`/`mapAsync` give an
 * {@link AsyncResultProxy} of the server's AsyncResult; `imap` iterates over
 * the server's IMapIterator one result per round trip. A caller's AbortSignal
 * stays in the caller: the call crosses with a token, and an abort sends an
 * `abort(token)` call that aborts the server's own signal of that call.
 * @internal
 */
import type * as PoolModule from '../pool';
import type { AsyncResult, IMapIterator } from '../pool';
import { randomBytes } from 'crypto';

import { Reference, referenceOf, resolveReference } from '../reference';
import { abortError } from '../util';
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

/** The options of `apply`/`map`/`starmap` as they cross: with the token of the caller's signal, if it gave one. */
interface AbortableOptions extends CrossingOptions {
  token?: string;
}

function crossingOptions(options: unknown): CrossingOptions {
  const { chunksize, timeout } = validateOptions(options, ['chunksize', 'timeout'] as const);
  return { ...(chunksize === undefined ? {} : { chunksize: chunksize as number | null }), ...(timeout === undefined ? {} : { timeout: timeout as number | null }) };
}

/** The options of an abortable call and its token (see {@link ServerPool.abort}). */
function abortableOptions(options: unknown): { token: string | null; options: CrossingOptions } {
  const { token, ...rest } = validateOptions(options, ['chunksize', 'timeout', 'token'] as const);
  if (token !== undefined && typeof token !== 'string') throw new TypeError(`options.token must be a string, got ${describe(token)}`);
  return { token: token ?? null, options: crossingOptions(rest) };
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
  /** The server's signals of the calls in progress whose caller gave one, by the caller's token. */
  readonly #aborts = new Map<string, AbortController>();

  constructor(pool: PoolModule.Pool) {
    this.#pool = pool;
  }

  async apply(fn: unknown, args: unknown = [], options?: unknown): Promise<unknown> {
    return this.#abortable(options, async (callOptions) => this.#pool.apply(await functionOf(fn, 'fn'), argumentsOf(args), callOptions));
  }

  async applyAsync(fn: unknown, args: unknown = [], options?: unknown): Promise<AsyncResult<unknown>> {
    return this.#pool.applyAsync(await functionOf(fn, 'fn'), argumentsOf(args), crossingOptions(options));
  }

  async map(fn: unknown, items: unknown, options?: unknown): Promise<unknown[]> {
    return this.#abortable(options, async (callOptions) => this.#pool.map(await functionOf(fn, 'fn'), itemsOf(items), callOptions));
  }

  async mapAsync(fn: unknown, items: unknown, options?: unknown): Promise<AsyncResult<unknown[]>> {
    return this.#pool.mapAsync(await functionOf(fn, 'fn'), itemsOf(items), crossingOptions(options));
  }

  async starmap(fn: unknown, items: unknown, options?: unknown): Promise<unknown[]> {
    return this.#abortable(options, async (callOptions) =>
      this.#pool.starmap(await functionOf(fn, 'fn'), itemsOf(items) as unknown[][], callOptions),
    );
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

  /**
   * Aborts the call made with `token` (its caller's signal fired): the
   * server's signal of that call fires, and the real mp.Pool rejects it and
   * kills and replaces the workers running its tasks. Nothing when that call
   * has ended already.
   */
  abort(token: unknown): void {
    if (typeof token !== 'string') throw new TypeError(`token must be a string, got ${describe(token)}`);
    this.#aborts.get(token)?.abort(new Error('the caller aborted the call'));
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

  /**
   * Runs a call with the server's own signal when its caller sent a token: made
   * before the call's first await, so that an `abort(token)` sent after the
   * call (on the same connection, read in order) finds it.
   */
  #abortable<T>(options: unknown, run: (options: CrossingOptions & { signal?: AbortSignal }) => Promise<T>): Promise<T> {
    const { token, options: callOptions } = abortableOptions(options);
    if (token === null) return run(callOptions);
    const controller = new AbortController();
    this.#aborts.set(token, controller);
    return run({ ...callOptions, signal: controller.signal }).finally(() => this.#aborts.delete(token));
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

/** The options of a manager Pool's calls. */
export interface ManagedCallOptions {
  /** Milliseconds the whole call may take: past them it rejects with `mp.TimeoutError` (its tasks' workers are replaced). */
  timeout?: number | null;
}

/** The options of a manager Pool's `map`/`starmap`/`imap` and their twins. */
export interface ManagedMapOptions extends ManagedCallOptions {
  /** Items per task (default as `mp.Pool`'s). */
  chunksize?: number | null;
}

/**
 * The options of the Promise forms `apply`, `map`, `starmap`: also a signal.
 * Its abort rejects the call at once with an `AbortError` (`cause`: the
 * signal's reason) and sends an `abort` call to the server, which aborts the
 * call on its mp.Pool (the workers running its tasks are killed and replaced).
 */
export interface AbortableCallOptions extends ManagedCallOptions {
  signal?: AbortSignal | null;
}

/** {@link AbortableCallOptions} of `map`/`starmap`. */
export interface AbortableMapOptions extends ManagedMapOptions, AbortableCallOptions {}

/** Called here, in the client, once a `*Async` call's result is known. */
export interface ManagedCallbacks<R> {
  callback?: ((value: R) => void) | null;
  errorCallback?: ((error: Error) => void) | null;
}

const CROSSING = ['timeout', 'chunksize'] as const;

/** Why a call refuses `signal`, by kind of call (the Promise forms `apply`, `map`, `starmap` take it). */
const NO_SIGNAL = {
  sync: 'a Sync call blocks until its answer and cannot see an abort: use the Promise form, options.timeout, or terminate() the pool',
  async: "the AsyncResult of a manager's Pool cannot be aborted: use apply/map/starmap with the signal, options.timeout, or terminate() the pool",
  imap: 'an imap cannot be aborted: leave its loop (return()), or use options.timeout',
} as const;
type NoSignal = keyof typeof NO_SIGNAL;

/** Refused by every call: one answer per call, no progress on the way. */
const NO_PROGRESS =
  "a manager's server answers each call once and cannot report progress: use imap (one result per round trip) or poll the AsyncResult (ready(), wait(timeout))";

/** What a call's options say: how they cross, and the caller's signal (only where `noSignal` is null). */
interface CallerOptions {
  crossing: CrossingOptions;
  signal: AbortSignal | null;
}

/** The options as they cross; `callbacks` are taken when the call allows them; `noSignal`: why `signal` is refused (null: taken). */
function optionsFor(options: unknown, known: readonly string[], chunked: boolean, noSignal: NoSignal | null): CallerOptions {
  if (options === undefined || options === null) return { crossing: {}, signal: null };
  const { chunksize, timeout, signal = null, onProgress } = validateOptions(options, [...known, 'signal', 'onProgress']) as CrossingOptions & {
    signal?: unknown;
    onProgress?: unknown;
  };
  if (onProgress != null) throw new TypeError(`options.onProgress: ${NO_PROGRESS}`);
  if (signal !== null && noSignal !== null) throw new TypeError(`options.signal: ${NO_SIGNAL[noSignal]}`);
  if (signal !== null && !isAbortSignal(signal)) throw new TypeError(`options.signal must be an AbortSignal, got ${describe(signal)}`);
  if (chunksize !== undefined && !chunked) throw new TypeError('options.chunksize is not an option of this call');
  return { crossing: crossingOptions({ chunksize, timeout }), signal };
}

/** An AbortSignal, also one of another realm (a vm context, jest's sandbox), as mp.Pool takes it. */
function isAbortSignal(value: unknown): value is AbortSignal {
  return typeof value === 'object' && value !== null && 'aborted' in value && typeof (value as AbortSignal).addEventListener === 'function';
}

/** The third argument of map-like calls: a chunk size or the options. */
function mapOptionsFor(chunksizeOrOptions: unknown, noSignal: NoSignal | null, known: readonly string[] = CROSSING): CallerOptions {
  if (typeof chunksizeOrOptions === 'number' || chunksizeOrOptions === null) return { crossing: { chunksize: chunksizeOrOptions }, signal: null };
  return optionsFor(chunksizeOrOptions, known, true, noSignal);
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
  /** Runs `fn(...args)` in one of the server's workers and resolves with its result; `signal` aborts it. */
  async apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: AbortableCallOptions): Promise<Awaited<R>> {
    const { crossing, signal } = optionsFor(options, ['timeout'], false, null);
    return this.#abortable('apply', [referenceFor(fn, 'fn'), argumentsFor(args)], crossing, signal) as Promise<Awaited<R>>;
  }

  /** {@link apply}, blocking (no `signal`). */
  applySync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: ManagedCallOptions): Awaited<R> {
    const { crossing } = optionsFor(options, ['timeout'], false, 'sync');
    return this._callMethodSync('apply', [referenceFor(fn, 'fn'), argumentsFor(args), crossing]) as Awaited<R>;
  }

  /** Starts `fn(...args)`; resolves with the proxy of its AsyncResult. `callback`/`errorCallback` run here. */
  async applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: ManagedCallOptions & ManagedCallbacks<Awaited<R>>): Promise<AsyncResultProxy<Awaited<R>>> {
    const call = [referenceFor(fn, 'fn'), argumentsFor(args), optionsFor(options, ['timeout', 'callback', 'errorCallback'], false, 'async').crossing];
    return watchResult((await this._callMethod('applyAsync', call)) as AsyncResultProxy<Awaited<R>>, callbacksOf(options));
  }

  /** {@link applyAsync}, blocking until the task is submitted. */
  applyAsyncSync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options?: ManagedCallOptions & ManagedCallbacks<Awaited<R>>): AsyncResultProxy<Awaited<R>> {
    const call = [referenceFor(fn, 'fn'), argumentsFor(args), optionsFor(options, ['timeout', 'callback', 'errorCallback'], false, 'async').crossing];
    return watchResult(this._callMethodSync('applyAsync', call) as AsyncResultProxy<Awaited<R>>, callbacksOf(options));
  }

  /** `fn(item)` for every item, in the server's workers; the results in input order; `signal` aborts it. */
  async map<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | AbortableMapOptions): Promise<Array<Awaited<R>>> {
    const { crossing, signal } = mapOptionsFor(chunksize, null);
    return this.#abortable('map', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable')], crossing, signal) as Promise<Array<Awaited<R>>>;
  }

  /** {@link map}, blocking (no `signal`). */
  mapSync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): Array<Awaited<R>> {
    return this._callMethodSync('map', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize, 'sync').crossing]) as Array<Awaited<R>>;
  }

  /** {@link map}, resolving with the proxy of its AsyncResult once submitted. */
  async mapAsync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>): Promise<AsyncResultProxy<Array<Awaited<R>>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, 'async', [...CROSSING, 'callback', 'errorCallback']).crossing];
    return watchResult((await this._callMethod('mapAsync', call)) as AsyncResultProxy<Array<Awaited<R>>>, callbacksOf(options));
  }

  /** {@link mapAsync}, blocking until submitted. */
  mapAsyncSync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>): AsyncResultProxy<Array<Awaited<R>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, 'async', [...CROSSING, 'callback', 'errorCallback']).crossing];
    return watchResult(this._callMethodSync('mapAsync', call) as AsyncResultProxy<Array<Awaited<R>>>, callbacksOf(options));
  }

  /** `fn(...args)` for every array of arguments, as Python's `starmap()`; `signal` aborts it. */
  async starmap<A extends unknown[], R>(fn: (...args: A) => R, iterable: Iterable<A>, chunksize?: number | null | AbortableMapOptions): Promise<Array<Awaited<R>>> {
    const { crossing, signal } = mapOptionsFor(chunksize, null);
    return this.#abortable('starmap', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable')], crossing, signal) as Promise<Array<Awaited<R>>>;
  }

  /** {@link starmap}, blocking (no `signal`). */
  starmapSync<A extends unknown[], R>(fn: (...args: A) => R, iterable: Iterable<A>, chunksize?: number | null | ManagedMapOptions): Array<Awaited<R>> {
    return this._callMethodSync('starmap', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize, 'sync').crossing]) as Array<Awaited<R>>;
  }

  /** {@link starmap}, resolving with the proxy of its AsyncResult once submitted. */
  async starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A>,
    options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>,
  ): Promise<AsyncResultProxy<Array<Awaited<R>>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, 'async', [...CROSSING, 'callback', 'errorCallback']).crossing];
    return watchResult((await this._callMethod('starmapAsync', call)) as AsyncResultProxy<Array<Awaited<R>>>, callbacksOf(options));
  }

  /** {@link starmapAsync}, blocking until submitted. */
  starmapAsyncSync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A>,
    options?: ManagedMapOptions & ManagedCallbacks<Array<Awaited<R>>>,
  ): AsyncResultProxy<Array<Awaited<R>>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(options, 'async', [...CROSSING, 'callback', 'errorCallback']).crossing];
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
    return this._callMethodSync('imap', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize, 'imap').crossing]) as IteratorProxy<Awaited<R>>;
  }

  /** {@link imapUnordered} as a blocking iterable. */
  imapUnorderedSync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | ManagedMapOptions): IteratorProxy<Awaited<R>> {
    return this._callMethodSync('imapUnordered', [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize, 'imap').crossing]) as IteratorProxy<Awaited<R>>;
  }

  #imap<T, R>(method: string, fn: (item: T) => R, iterable: Iterable<T>, chunksize: unknown): IteratorProxyLater<Awaited<R>> {
    const call = [referenceFor(fn, 'fn'), arrayOf(iterable, 'iterable'), mapOptionsFor(chunksize, 'imap').crossing];
    return new IteratorProxyLater(this._callMethod(method, call) as Promise<IteratorProxy<Awaited<R>>>);
  }

  /**
   * Calls `method` with `args` and the crossing options; with a `signal`, under
   * a token of its own: an abort rejects at once, as mp.Pool's, and sends
   * `abort(token)` after the call on the same connection (the server reads it
   * after the call: it finds the call's own signal there).
   */
  #abortable(method: string, args: unknown[], crossing: CrossingOptions, signal: AbortSignal | null): Promise<unknown> {
    if (signal === null) return this._callMethod(method, [...args, crossing]);
    if (signal.aborted) return Promise.reject(abortError(signal));
    const token = randomBytes(12).toString('hex');
    const call = this._callMethod(method, [...args, { ...crossing, token } satisfies AbortableOptions]);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        reject(abortError(signal));
        this._callMethod('abort', [token]).catch(() => undefined); // a server that is gone has nothing left to stop
      };
      signal.addEventListener('abort', onAbort, { once: true });
      void call.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
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
  // 'abort': what a call's signal sends (see #abortable); not a method of the proxy.
  value: Object.freeze(['apply', 'applyAsync', 'map', 'mapAsync', 'starmap', 'starmapAsync', 'imap', 'imapUnordered', 'abort', 'close', 'terminate', 'join']),
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
