/**
 * Process pools, as CPython's `multiprocessing.pool`: a {@link Pool} of worker
 * processes that run the tasks it is given (`apply`, `map`, `imap`, `starmap`
 * and their `Async` forms). As Python's, it is three small loops, here event
 * loop callbacks: one hands tasks out to idle workers, one collects their
 * results, one keeps the pool at its size (replacing workers that die, retire
 * or grew stale); results take three shapes: {@link AsyncResult},
 * {@link MapResult} and {@link IMapIterator}.
 *
 * Beyond Python's: a worker that dies mid-task rejects exactly its task with
 * `WorkerLostError` and is replaced; every call takes `{ signal, timeout }`;
 * the map family reports progress.
 *
 * @example
 * ```ts
 * import * as mp from 'node-multiprocessing';
 *
 * await using pool = new mp.Pool(4);
 * console.log(await pool.map((x: number) => x * x, [1, 2, 3])); // [ 1, 4, 9 ]
 * ```
 * @packageDocumentation
 */
import { randomBytes } from 'crypto';
import * as net from 'net';
import * as nodeOs from 'os';
import * as path from 'path';
import * as fs from 'fs';

import { BaseContext, getContext } from './context';
import { ProcessError, TimeoutError, WorkerLostError } from './errors';
import { Channel, decodePayload, encodeHead, encodeItems, encodeMessage, encodePayload, Header, inheritedHandles, NativeWire, ownPayload, splitFrame, Wire } from './pool/channel';
import { ErrorDescription, rebuildError } from './pool/remote_error';
import { AsyncResult, IMapIterator, MapResult, ProgressCallback, ResultCallbacks, validateCallbacks } from './pool/results';
import { MESSAGE, poolWorker, prepareForkedWorkers, TASK_KIND, WorkerConfig } from './pool/worker';
import { loadNative, NativePoolHub } from './native';
import type { StartMethod } from './popen/popen';
import { BaseProcess, cpuCount } from './process';
import { dumps } from './reduction';
import { Reference, referenceOf } from './reference';
import { abortError } from './util';
import { describe, validateFunction, validateInteger, validateTimeout } from './validate';

export { AsyncResult, IMapIterator, MapResult } from './pool/results';
export type { ProgressCallback, ResultCallbacks } from './pool/results';
export type { ErrorDescription, RemoteError } from './pool/remote_error';

/** The options of `new Pool()`, as Python's `Pool(processes, initializer, initargs, maxtasksperchild, context)`. */
export interface PoolOptions<I extends unknown[] = unknown[]> {
  /** How many worker processes. Default: `mp.cpuCount()`. */
  processes?: number | null;
  /**
   * Run by each worker once, with `initargs`, before its first task (awaited
   * when it returns a Promise). Under spawn and forkserver it must be exported
   * by a module, as a Process target. One that throws breaks the pool: every
   * call then rejects with its error. Workers that end before they are ready,
   * 5 in a row (an initializer that exits), break it too: calls reject with a
   * `ProcessError` whose `cause` is the last one's `WorkerLostError`.
   */
  initializer?: ((...args: I) => unknown) | null;
  /** The arguments of `initializer`. Default: `[]`. */
  initargs?: I;
  /** A worker leaves after this many tasks and is replaced (frees what it leaked). Default: never. */
  maxtasksperchild?: number | null;
  /** The context whose start method starts the workers. Default: the default context (`mp`). */
  context?: BaseContext | null;
}

/** What every task-submitting method takes besides its own options. */
export interface CallOptions {
  /**
   * Aborts the call: its queued tasks are dropped, the workers running its
   * tasks are killed and replaced, and the call rejects with an `AbortError`
   * (`cause`: the signal's reason).
   */
  signal?: AbortSignal | null;
  /**
   * Milliseconds the whole call may take: past them it rejects with
   * `mp.TimeoutError`, as on abort. Default: no limit.
   */
  timeout?: number | null;
}

/** The options of `applyAsync()`. */
export interface ApplyAsyncOptions<R> extends CallOptions, ResultCallbacks<R> {}

/** The options of `map()` and `starmap()`. */
export interface MapOptions extends CallOptions {
  /** Items per task. Default: as Python's, `ceil(length / (4 * processes))`. */
  chunksize?: number | null;
  /** Called as chunks complete, with the number of items done and the total. */
  onProgress?: ProgressCallback | null;
}

/** The options of `mapAsync()` and `starmapAsync()`. */
export interface MapAsyncOptions<R> extends MapOptions, ResultCallbacks<R[]> {}

/** The options of `imap()` and `imapUnordered()`. */
export interface IMapOptions extends CallOptions {
  /** Items per task. Default: 1. */
  chunksize?: number | null;
}

type AnyFunction = (...args: never[]) => unknown;

const RUN = 0;
const CLOSE = 1;
const TERMINATE = 2;

/** How many chunks an `imap` keeps submitted and not yet consumed, per worker. */
const IMAP_CHUNKS_PER_WORKER = 2;
/** How often the pool looks whether a worker that has not said hello yet has died. */
const STARTUP_WATCH_MS = 200;
/** How many queued tasks a stale worker (one forked before a function existed) looks through for one it can run. */
const SCAN_LIMIT = 64;
/** How many workers in a row may end before they are ready (an initializer that exits, a crash at start) before the pool breaks. */
const START_FAILURES = 5;
/** The bytes of a forked worker's mailbox each way (memory touched only as used): larger messages go on its socket. */
const MAILBOX_BYTES = 1024 * 1024;

// --- tasks and calls ------------------------------------------------------------------

/** One message's worth of work: a call's arguments, or a chunk of a map's items. */
interface Task {
  readonly id: number;
  readonly job: Job;
  /** The index of the first item (map family), 0 for apply. */
  readonly first: number;
  readonly size: number;
  readonly payload: Buffer;
  worker: PoolWorker | null;
  /** Dropped (its call failed or was cancelled) before it was run. */
  dropped: boolean;
}

/**
 * One call (`apply`, `map`, `imap`...): its tasks, its result, and how it is
 * aborted (signal, timeout), all in this one place.
 */
abstract class Job {
  readonly tasks = new Set<Task>();
  settled = false;
  #timer: NodeJS.Timeout | null = null;
  #signal: AbortSignal | null = null;
  #onAbort: (() => void) | null = null;

  constructor(
    readonly pool: PoolCore,
    readonly functionId: number,
    readonly kind: number,
  ) {}

  /** Arms the call's signal and timeout (validated by {@link validateCallOptions}); an aborted signal fails it at once. */
  arm(options: CallOptions): void {
    const { signal, timeout } = options;
    if (signal?.aborted) {
      this.abort(abortError(signal));
      return;
    }
    if (signal != null) {
      this.#signal = signal;
      this.#onAbort = () => this.abort(abortError(signal));
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    if (timeout != null) {
      this.#timer = setTimeout(() => this.abort(new TimeoutError(`the call did not complete within ${timeout} ms`)), timeout);
    }
  }

  /** A task's result arrived. */
  abstract succeeded(task: Task, value: unknown): void;
  /** A task failed: its error (or `WorkerLostError`). */
  abstract failed(task: Task, error: unknown): void;
  /** The whole call fails with `error`. */
  protected abstract reject(error: unknown): void;
  /** Whether more tasks may come (an `imap` whose input has not ended). */
  get feeding(): boolean {
    return false;
  }

  /** Fails the call: queued tasks are dropped, running ones' workers killed (`kill`). */
  abort(error: unknown, kill = true): void {
    if (this.settled) return;
    this.reject(error);
    this.settle();
    for (const task of [...this.tasks]) {
      if (task.worker === null) this.pool.drop(task);
      else if (kill) this.pool.killFor(task);
    }
  }

  /** No further outcome counts: stops the timer and the signal's listener. */
  settle(): void {
    this.settled = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#signal !== null && this.#onAbort !== null) this.#signal.removeEventListener('abort', this.#onAbort);
    this.#signal = null;
  }
}

class ApplyJob<R> extends Job {
  constructor(
    pool: PoolCore,
    functionId: number,
    readonly result: AsyncResult<R>,
  ) {
    super(pool, functionId, TASK_KIND.APPLY);
  }

  succeeded(_task: Task, value: unknown): void {
    if (this.settled) return;
    this.settle();
    this.result._resolve(value as R);
  }

  failed(_task: Task, error: unknown): void {
    if (this.settled) return;
    this.settle();
    this.result._reject(error);
  }

  protected reject(error: unknown): void {
    this.result._reject(error);
  }
}

class MapJob<R> extends Job {
  #left: number;

  constructor(
    pool: PoolCore,
    functionId: number,
    kind: number,
    readonly result: MapResult<R>,
    readonly chunksize: number,
    chunks: number,
  ) {
    super(pool, functionId, kind);
    this.#left = chunks;
  }

  succeeded(task: Task, value: unknown): void {
    if (this.settled) return;
    this.result._setChunk(task.first / this.chunksize, value as R[]);
    if (--this.#left === 0) this.settle();
  }

  failed(_task: Task, error: unknown): void {
    // Python's MapResult fails at the first error; the tasks not yet run are dropped here.
    this.abort(error, false);
  }

  protected reject(error: unknown): void {
    this.result._reject(error);
  }
}

class IMapJob<R> extends Job {
  readonly #source: Iterator<unknown> | AsyncIterator<unknown>;
  readonly #chunksize: number;
  readonly #limit: number;
  #submitted = 0;
  #pulling = false;
  #ended = false;

  constructor(
    pool: PoolCore,
    functionId: number,
    kind: number,
    readonly iterator: IMapIterator<R>,
    source: Iterable<unknown> | AsyncIterable<unknown>,
    chunksize: number,
  ) {
    super(pool, functionId, kind);
    this.#source = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
    this.#chunksize = chunksize;
    this.#limit = IMAP_CHUNKS_PER_WORKER * pool.processes * chunksize;
    iterator._attach({ consumed: () => this.pump(), cancel: () => this.cancel() });
  }

  override get feeding(): boolean {
    return !this.#ended && !this.settled;
  }

  succeeded(task: Task, value: unknown): void {
    if (!this.settled) this.iterator._setChunk(task.first, value as R[]);
  }

  failed(task: Task, error: unknown): void {
    if (!this.settled) this.iterator._setError(task.first, task.size, error);
  }

  protected reject(error: unknown): void {
    this.iterator._fail(error);
    this.#end();
  }

  /** Submits chunks of the input while fewer than the limit are waiting to be consumed. */
  pump(): void {
    if (this.#pulling || !this.feeding) return;
    this.#pulling = true;
    void this.#pull().finally(() => {
      this.#pulling = false;
    });
  }

  async #pull(): Promise<void> {
    try {
      while (this.feeding && this.iterator._hasRoom(this.#submitted, this.#limit)) {
        const items: unknown[] = [];
        let ended = false;
        while (items.length < this.#chunksize && !ended) {
          const next = this.#source.next();
          const step = isPromiseLike(next) ? await next : next;
          if (this.settled) return;
          if (step.done === true) ended = true;
          else items.push(step.value);
        }
        if (items.length > 0) {
          this.pool.submit(this, this.#submitted, items, `iterable (the chunk from item ${this.#submitted})`);
          this.#submitted += items.length;
        }
        if (ended) this.#end();
      }
    } catch (error) {
      this.abort(error);
      return;
    }
    this.pool.jobChanged(this);
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.iterator._setLength(this.#submitted);
  }

  /** The consumer stopped early: the tasks not yet run are dropped, the input is closed. */
  cancel(): void {
    if (this.settled) return;
    this.settle();
    this.#ended = true;
    for (const task of [...this.tasks]) if (task.worker === null) this.pool.drop(task);
    void Promise.resolve(this.#source.return?.()).catch(() => {});
    this.pool.jobChanged(this);
  }
}

function isPromiseLike<T>(value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as { then?: unknown }).then === 'function';
}

/** Checks `options` and its `signal` and `timeout`. */
function validateCallOptions(options: unknown): CallOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object, got ${describe(options)}`);
  const { signal, timeout } = options as CallOptions;
  validateTimeout(timeout);
  if (signal != null && (typeof signal !== 'object' || typeof signal.addEventListener !== 'function' || !('aborted' in signal))) {
    throw new TypeError(`signal must be an AbortSignal, got ${describe(signal)}`);
  }
  return options as CallOptions;
}

// --- workers ---------------------------------------------------------------------------

/** A worker process as the pool sees it. */
class PoolWorker {
  channel: Wire | null = null;
  state: 'starting' | 'ready' | 'stopping' | 'gone' = 'starting';
  /** The task it runs, `null` when idle. */
  task: Task | null = null;
  tasksRun = 0;
  /** The task functions it can find (fork: those that existed when it was forked). */
  readonly knownFunctions: number;
  /** Its mailbox in the pool's hub (forked, with the addon), or null. */
  box: number | null = null;
  /** The functions whose reference it was sent (spawn, forkserver). */
  readonly sentReferences = new Set<number>();

  constructor(
    readonly id: number,
    readonly process: BaseProcess,
    readonly pid: number,
    knownFunctions: number,
  ) {
    this.knownFunctions = knownFunctions;
  }
}

/** The exit code of a process as `WorkerLostError` reports it; `doing`: what the worker was doing. */
function lostError(worker: PoolWorker, exitCode: number | null, doing = 'while running a task'): WorkerLostError {
  const signal =
    exitCode !== null && exitCode < 0
      ? ((Object.entries(nodeOs.constants.signals).find(([, n]) => n === -exitCode)?.[0] ?? null) as NodeJS.Signals | null)
      : null;
  const how = signal !== null ? `killed by ${signal}` : exitCode === null ? 'its exit status is lost' : `exit code ${exitCode}`;
  return new WorkerLostError(`the pool worker ${worker.pid} died ${doing} (${how})`, {
    pid: worker.pid,
    exitCode: signal !== null ? null : exitCode,
    signal,
  });
}

/** What the jobs need of the pool. */
interface PoolCore {
  readonly processes: number;
  submit(job: Job, first: number, items: unknown[], what: string): void;
  drop(task: Task): void;
  killFor(task: Task): void;
  jobChanged(job: Job): void;
}

/** A unique address for the pool's listening socket (Linux: in the abstract namespace, nothing on disk). */
function socketAddress(): string {
  const name = `node-mp-pool-${process.pid}-${randomBytes(6).toString('hex')}`;
  return process.platform === 'linux' ? `\0${name}` : path.join(nodeOs.tmpdir(), `${name}.sock`);
}

// --- the pool ---------------------------------------------------------------------------

/**
 * A pool of worker processes, as Python's `multiprocessing.Pool`.
 *
 * Under the fork start method a task function may be any function, closures
 * included: workers find it in their copy of the parent's heap. A worker
 * forked before a function existed cannot have it: such workers are replaced
 * by fresh forks, once, the first time the function is used (so define task
 * functions once, not one per call). Under spawn and forkserver a task
 * function must be exported by a module, as a Process target.
 *
 * @example
 * ```ts
 * const pool = new mp.Pool(4);
 * const squares = await pool.map(square, [1, 2, 3, 4]);
 * pool.close();
 * await pool.join();
 * ```
 */
export class Pool implements AsyncDisposable {
  #state = RUN;
  readonly #processes: number;
  readonly #context: BaseContext;
  readonly #method: StartMethod;
  readonly #initializer: AnyFunction | null;
  readonly #initargs: unknown[];
  readonly #maxtasks: number | null;

  readonly #workers = new Map<number, PoolWorker>();
  #workerCount = 0;
  /** Tasks waiting for a worker, oldest first (dropped ones are skipped). */
  #queue: Task[] = [];
  #queueHead = 0;
  #taskCount = 0;
  /** Calls with work queued, running or to come. */
  readonly #jobs = new Set<Job>();

  /** Under fork: the task functions by id, which workers forked later find in their copy. */
  readonly #functions: AnyFunction[] = [];
  readonly #functionIds = new Map<AnyFunction, number>();
  /** Under spawn and forkserver: the functions' module references, by id. */
  readonly #references: Reference[] = [];

  /** Forked workers' mailboxes in shared memory (with the addon): tasks and replies that fit go there, not on the sockets. */
  #hub: NativePoolHub | null = null;
  /**
   * Where the hub reads a reply; a forked worker reads its tasks into its own
   * copy of it: allocated in the child, a MiB of it would count towards V8's
   * external memory there, which can start a scavenge (page faults by the hundred).
   */
  #hubScratch: Buffer | null = null;
  /** The workers by mailbox. */
  readonly #boxes = new Map<number, PoolWorker>();
  /** The socket the workers connect to (spawn, forkserver); forked workers get a socket pair each instead. */
  readonly #server: net.Server | null = null;
  readonly #address: string = '';
  readonly #token = randomBytes(16).toString('hex');
  /** Keeps the event loop alive while calls are in progress (unref'd when idle). */
  #keepAlive: NodeJS.Timeout | null = null;
  #busy = false;
  /** Makes the error every call rejects with once the pool is broken (its initializer threw, its workers keep dying at start). */
  #broken: (() => unknown) | null = null;
  /** Workers in a row that ended before they were ready. */
  #startFailures = 0;
  #joined: Promise<void> | null = null;
  #allGone: (() => void) | null = null;
  /** The immediate that will start the workers the pool lacks. */
  #starting: NodeJS.Immediate | null = null;
  readonly #core: PoolCore;

  /**
   * @param processes how many workers (default `mp.cpuCount()`); or all the
   * options in one object. `0`, negative or non-integer sizes get a RangeError
   * or TypeError, as do bad options.
   */
  constructor(processes?: number | null, options?: Omit<PoolOptions, 'processes'>);
  constructor(options: PoolOptions);
  constructor(processesOrOptions?: number | PoolOptions | null, maybeOptions: Omit<PoolOptions, 'processes'> = {}) {
    const options = poolOptions(processesOrOptions, maybeOptions);
    this.#processes = options.processes;
    this.#context = options.context;
    this.#method = options.context.getStartMethod();
    this.#initializer = options.initializer;
    this.#initargs = options.initargs;
    this.#maxtasks = options.maxtasksperchild;
    if (this.#initializer !== null && this.#method !== 'fork') referenceOf(this.#initializer, 'initializer', this.#method);
    if (this.#method !== 'fork') dumps(this.#initargs, 'initargs');

    const native = loadNative();
    if (this.#method === 'fork' && native !== null) {
      prepareForkedWorkers(native.precompile);
      const scratch = Buffer.allocUnsafeSlow(MAILBOX_BYTES);
      this.#hubScratch = scratch;
      this.#hub = new native.PoolHub(scratch, (box, length) => this.#replied(box, scratch.subarray(0, length)));
      inheritedHandles.add(this.#hub);
    } else {
      this.#address = socketAddress();
      this.#server = net.createServer((socket) => this.#accept(socket));
      this.#server.on('error', () => {});
      this.#server.listen(this.#address);
      this.#server.unref();
      inheritedHandles.add(this.#server);
    }

    const pool = this;
    this.#core = {
      get processes() {
        return pool.#processes;
      },
      submit: (job, first, items, what) => this.#submitChunk(job, first, items, what),
      drop: (task) => this.#drop(task),
      killFor: (task) => this.#killFor(task),
      jobChanged: (job) => this.#jobChanged(job),
    };
    this.#maintain();
  }

  /** The Pool class of `context` (`ctx.Pool`): its pools start their workers with that context's method. @internal */
  static _ofContext(context: BaseContext): typeof Pool {
    if (context === getContext()) return Pool;
    let bound = contextPools.get(context);
    if (bound === undefined) {
      bound = class extends Pool {
        constructor(processesOrOptions?: number | PoolOptions | null, options: Omit<PoolOptions, 'processes'> = {}) {
          if (typeof processesOrOptions === 'object' && processesOrOptions !== null) {
            super({ ...processesOrOptions, context: processesOrOptions.context ?? context });
          } else {
            super(processesOrOptions, { ...validateOptionsObject(options), context: options.context ?? context });
          }
        }
      };
      contextPools.set(context, bound);
    }
    return bound;
  }

  // --- the public API ---------------------------------------------------------------

  /** Runs `fn(...args)` in a worker and resolves with its result, as Python's `apply()`. */
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options: CallOptions = {}): Promise<Awaited<R>> {
    return this.applyAsync(fn, args, options).get();
  }

  /**
   * Runs `fn(...args)` in a worker; returns its {@link AsyncResult} at once.
   * `callback`/`errorCallback` are called when it completes.
   */
  applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options: ApplyAsyncOptions<Awaited<R>> = {}): AsyncResult<Awaited<R>> {
    this.#checkRunning();
    validateCallOptions(options);
    const list = args ?? ([] as unknown as A);
    if (!Array.isArray(list)) throw new TypeError(`args must be an array, got ${describe(list)}`);
    validateCallbacks(options);
    const functionId = this.#functionId(fn);
    const payload = encodePayload(list, 'args');
    const result = new AsyncResult<Awaited<R>>(options);
    const job = new ApplyJob(this.#core, functionId, result);
    if (this.#start(job, options)) {
      this.#enqueue(job, 0, 1, payload);
      this.#dispatch();
    }
    return result;
  }

  /**
   * `fn(item)` for every item, in workers, chunk by chunk; resolves with the
   * results in input order, as Python's `map()`. The third argument is the
   * chunk size or {@link MapOptions}.
   */
  map<T, R>(fn: (item: T) => R, iterable: Iterable<T>, chunksize?: number | null | MapOptions): Promise<Array<Awaited<R>>> {
    return this.mapAsync(fn, iterable, mapOptions(chunksize)).get();
  }

  /** {@link map}, returning its {@link MapResult} at once. */
  mapAsync<T, R>(fn: (item: T) => R, iterable: Iterable<T>, options: MapAsyncOptions<Awaited<R>> = {}): MapResult<Awaited<R>> {
    return this.#mapAsync(fn as AnyFunction, iterable, options as MapAsyncOptions<unknown>, TASK_KIND.MAP) as MapResult<Awaited<R>>;
  }

  /** `fn(...args)` for every array of arguments, as Python's `starmap()`. */
  starmap<A extends unknown[], R>(fn: (...args: A) => R, iterable: Iterable<A>, chunksize?: number | null | MapOptions): Promise<Array<Awaited<R>>> {
    return this.starmapAsync(fn, iterable, mapOptions(chunksize)).get();
  }

  /** {@link starmap}, returning its {@link MapResult} at once. */
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Iterable<A>,
    options: MapAsyncOptions<Awaited<R>> = {},
  ): MapResult<Awaited<R>> {
    return this.#mapAsync(fn as AnyFunction, iterable, options as MapAsyncOptions<unknown>, TASK_KIND.STARMAP) as MapResult<Awaited<R>>;
  }

  /**
   * `fn(item)` for every item, as an async iterable of the results in input
   * order, each as soon as it is ready, as Python's `imap()`. The input (an
   * iterable or an async iterable, infinite ones included) is read lazily:
   * only a few chunks per worker are in flight and not yet consumed.
   */
  imap<T, R>(fn: (item: T) => R, iterable: Iterable<T> | AsyncIterable<T>, chunksize?: number | null | IMapOptions): IMapIterator<Awaited<R>> {
    return this.#imap(fn as AnyFunction, iterable, chunksize, true) as IMapIterator<Awaited<R>>;
  }

  /** {@link imap}, yielding the results in the order they complete. */
  imapUnordered<T, R>(
    fn: (item: T) => R,
    iterable: Iterable<T> | AsyncIterable<T>,
    chunksize?: number | null | IMapOptions,
  ): IMapIterator<Awaited<R>> {
    return this.#imap(fn as AnyFunction, iterable, chunksize, false) as IMapIterator<Awaited<R>>;
  }

  /** No more tasks may be submitted; the workers leave once the calls in progress have completed. */
  close(): void {
    if (this.#state === RUN) {
      this.#state = CLOSE;
      this.#updateKeepAlive();
      this.#maintain();
    }
  }

  /**
   * Stops the workers at once (SIGTERM); calls in progress reject with an
   * Error. Called by `await using` (Symbol.asyncDispose), as Python's `with`.
   */
  terminate(): void {
    if (this.#state === TERMINATE) return;
    this.#state = TERMINATE;
    if (this.#starting !== null) clearImmediate(this.#starting);
    this.#starting = null;
    const error = new Error('the pool was terminated');
    for (const job of [...this.#jobs]) job.abort(error, false);
    this.#jobs.clear();
    this.#queue = [];
    this.#queueHead = 0;
    for (const worker of this.#workers.values()) {
      worker.state = 'stopping';
      worker.process.terminate();
      // One that has not said hello has no socket whose end would tell: its end is waited for.
      if (worker.channel === null) void worker.process.join().then(() => this.#gone(worker), () => this.#gone(worker));
    }
    this.#closeServer();
    this.#updateKeepAlive();
    this.#checkAllGone();
  }

  /**
   * Resolves once every worker has ended (and been reaped). Throws unless
   * {@link close} or {@link terminate} was called first, as Python's.
   */
  join(): Promise<void> {
    if (this.#state === RUN) throw new Error('the pool is still running: call close() or terminate() before join()');
    this.#joined ??= new Promise<void>((resolve) => {
      this.#allGone = resolve;
      this.#checkAllGone();
    });
    return this.#joined;
  }

  /** Terminates the pool and waits for its workers: `await using pool = new Pool()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.terminate();
    await this.join();
  }

  // --- submitting ---------------------------------------------------------------------

  #checkRunning(): void {
    if (this.#state !== RUN) throw new Error(`the pool is ${this.#state === CLOSE ? 'closed' : 'terminated'}: it takes no more tasks`);
  }

  /** The id of task function `fn` (registered on first use; a reference under spawn and forkserver). */
  #functionId(fn: unknown): number {
    validateFunction(fn, 'the task function');
    const known = this.#functionIds.get(fn);
    if (known !== undefined) return known;
    const id = this.#functionIds.size;
    if (this.#method === 'fork') this.#functions.push(fn);
    else this.#references.push(referenceOf(fn, 'the task function', this.#method));
    this.#functionIds.set(fn, id);
    return id;
  }

  #mapAsync(fn: AnyFunction, iterable: Iterable<unknown>, options: MapAsyncOptions<unknown>, kind: number): MapResult<unknown> {
    this.#checkRunning();
    validateCallOptions(options);
    validateCallbacks(options);
    const onProgress = options.onProgress ?? null;
    if (onProgress !== null && typeof onProgress !== 'function') throw new TypeError(`onProgress must be a function, got ${describe(onProgress)}`);
    const functionId = this.#functionId(fn);
    const items = toArray(iterable);
    if (kind === TASK_KIND.STARMAP) items.forEach((args, i) => validateArgs(args, `iterable[${i}]`));
    const chunksize = validateChunksize(options.chunksize) ?? defaultChunksize(items.length, this.#processes);
    const chunks: Buffer[] = [];
    for (let first = 0; first < items.length; first += chunksize) {
      chunks.push(encodeItems(items, first, Math.min(first + chunksize, items.length), `iterable (the chunk from item ${first})`));
    }
    const result = new MapResult<unknown>(items.length, chunksize, options, onProgress);
    if (items.length === 0) return result;
    const job = new MapJob(this.#core, functionId, kind, result, chunksize, chunks.length);
    if (!this.#start(job, options)) return result;
    chunks.forEach((payload, i) => this.#enqueue(job, i * chunksize, Math.min(chunksize, items.length - i * chunksize), payload));
    this.#dispatch();
    return result;
  }

  #imap(fn: AnyFunction, iterable: Iterable<unknown> | AsyncIterable<unknown>, chunksizeOrOptions: number | null | IMapOptions | undefined, ordered: boolean): IMapIterator<unknown> {
    this.#checkRunning();
    const options: IMapOptions = typeof chunksizeOrOptions === 'object' && chunksizeOrOptions !== null ? chunksizeOrOptions : { chunksize: chunksizeOrOptions };
    validateCallOptions(options);
    const chunksize = validateChunksize(options.chunksize) ?? 1;
    if (iterable == null || (typeof (iterable as Iterable<unknown>)[Symbol.iterator] !== 'function' && typeof (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function')) {
      throw new TypeError(`iterable must be an iterable or an async iterable, got ${describe(iterable)}`);
    }
    const functionId = this.#functionId(fn);
    const iterator = new IMapIterator<unknown>(ordered);
    const job = new IMapJob(this.#core, functionId, TASK_KIND.MAP, iterator, iterable, chunksize);
    if (this.#start(job, options)) job.pump();
    return iterator;
  }

  /**
   * Records a new call (the event loop stays alive while calls are in
   * progress); false when it failed already (an aborted signal, a broken pool).
   */
  #start(job: Job, options: CallOptions): boolean {
    if (this.#broken !== null) job.abort(this.#broken());
    else job.arm(options);
    if (job.settled) return false;
    this.#jobs.add(job);
    this.#updateKeepAlive();
    return true;
  }

  #submitChunk(job: Job, first: number, items: unknown[], what: string): void {
    if (this.#state === TERMINATE) return;
    const payload = encodePayload(items, what);
    this.#enqueue(job, first, items.length, payload);
    this.#dispatch();
  }

  #enqueue(job: Job, first: number, size: number, payload: Buffer): void {
    const task: Task = { id: ++this.#taskCount, job, first, size, payload, worker: null, dropped: false };
    job.tasks.add(task);
    this.#queue.push(task);
  }

  #drop(task: Task): void {
    task.dropped = true;
    this.#finishTask(task);
  }

  #finishTask(task: Task): void {
    task.job.tasks.delete(task);
    this.#jobChanged(task.job);
  }

  #jobChanged(job: Job): void {
    if (job.tasks.size === 0 && !job.feeding && this.#jobs.delete(job)) {
      this.#updateKeepAlive();
      if (this.#state === CLOSE && this.#jobs.size === 0) this.#maintain();
    }
  }

  // --- loop 1: handing out tasks ----------------------------------------------------

  /** Gives queued tasks to idle workers; retires idle workers that can run none of them (stale forks). */
  #dispatch(): void {
    if (this.#queueHead >= this.#queue.length) return;
    for (const worker of this.#workers.values()) {
      if (worker.state !== 'ready' || worker.task !== null) continue;
      const task = this.#takeFor(worker);
      if (task !== null) this.#send(worker, task);
      else if (this.#queueHead < this.#queue.length) this.#retire(worker);
      if (this.#queueHead >= this.#queue.length) break;
    }
    if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
    this.#maintain();
  }

  /** The oldest queued task `worker` can run, taken off the queue; `null` if none. */
  #takeFor(worker: PoolWorker): Task | null {
    while (this.#queueHead < this.#queue.length && this.#queue[this.#queueHead].dropped) this.#queueHead++;
    const end = Math.min(this.#queue.length, this.#queueHead + SCAN_LIMIT);
    for (let i = this.#queueHead; i < end; i++) {
      const task = this.#queue[i];
      if (task.dropped || task.job.functionId >= worker.knownFunctions) continue;
      if (i === this.#queueHead) this.#queueHead++;
      else this.#queue.splice(i, 1);
      return task;
    }
    return null;
  }

  #send(worker: PoolWorker, task: Task): void {
    const id = task.job.functionId;
    let reference: Reference | null = null;
    if (this.#method !== 'fork' && !worker.sentReferences.has(id)) {
      reference = this.#references[id];
      worker.sentReferences.add(id);
    }
    task.worker = worker;
    worker.task = task;
    const header = [MESSAGE.TASK, task.id, id, task.job.kind];
    this.#post(worker, reference === null ? header : [...header, reference], task.payload);
  }

  /** Sends a message to `worker`: in its mailbox when it fits, else on its socket. */
  #post(worker: PoolWorker, header: Header, payload: Buffer | null = null): void {
    if (worker.box !== null && this.#hub?.send(worker.box, encodeHead(header), payload ?? undefined) === true) return;
    worker.channel?.send(encodeMessage(header, payload));
  }

  // --- loop 2: collecting results ---------------------------------------------------

  #accept(socket: net.Socket): void {
    let worker: PoolWorker | null = null;
    const channel = new Channel(
      socket,
      (header, payload) => {
        if (worker !== null) this.#receive(worker, header, payload);
        else worker = this.#hello(channel, header);
      },
      () => {
        if (worker !== null) this.#lost(worker);
      },
    );
    if (!this.#busy) channel.unref();
  }

  /**
   * The pool's end of a forked worker's socket pair, read by the addon: its
   * own from the start (its end of file is the worker's, even before the hello).
   */
  #attach(worker: PoolWorker, fd: number): void {
    let ready = false;
    const wire: Wire = new NativeWire(
      loadNative() as NonNullable<ReturnType<typeof loadNative>>,
      fd,
      (header, payload) => {
        if (ready) this.#receive(worker, header, payload);
        else ready = this.#hello(wire, header) === worker;
      },
      () => this.#lost(worker),
    );
    worker.channel = wire;
    if (!this.#busy) wire.unref();
  }

  /** The first message of a connection: which worker it is; a stranger is hung up on. */
  #hello(channel: Wire, header: Header): PoolWorker | null {
    const worker = header[0] === MESSAGE.HELLO && header[1] === this.#token ? this.#workers.get(header[2] as number) : undefined;
    if (header[0] === MESSAGE.INIT_ERROR) this.#break(() => initializerError(header[1] as ErrorDescription));
    if (worker === undefined || worker.state !== 'starting' || (worker.channel !== null && worker.channel !== channel)) {
      channel.close();
      return null;
    }
    worker.channel = channel;
    worker.state = 'ready';
    this.#startFailures = 0;
    if (this.#state === TERMINATE) channel.close();
    this.#dispatch();
    if (this.#state === CLOSE) this.#maintain();
    return worker;
  }

  /** A reply found in mailbox `box`, in the hub's scratch (read at once). */
  #replied(box: number, frame: Buffer): void {
    const worker = this.#boxes.get(box);
    if (worker === undefined || worker.state === 'gone') return;
    const [header, payload] = splitFrame(frame);
    this.#receive(worker, header, ownPayload(payload));
  }

  #receive(worker: PoolWorker, header: Header, payload: Buffer): void {
    const task = worker.task;
    if (task === null || task.id !== header[1]) return;
    worker.task = null;
    task.worker = null;
    worker.tasksRun++;
    this.#finishTask(task);
    if (header[0] === MESSAGE.RESULT) {
      let value: unknown;
      try {
        value = decodePayload(payload);
      } catch (error) {
        task.job.failed(task, error);
        return;
      }
      task.job.succeeded(task, value);
    } else {
      task.job.failed(task, rebuildError(header[2] as ErrorDescription));
    }
    if (this.#maxtasks !== null && worker.tasksRun >= this.#maxtasks) this.#retire(worker);
    this.#dispatch();
  }

  // --- loop 3: keeping the pool at its size -----------------------------------------

  /** Starts workers up to the pool's size; once closed and idle, tells them to leave. */
  #maintain(): void {
    if (this.#state === TERMINATE) return;
    if (this.#state === CLOSE && this.#jobs.size === 0) {
      for (const worker of this.#workers.values()) if (worker.state === 'ready' && worker.task === null) this.#retire(worker);
      this.#checkAllGone();
      return;
    }
    if (this.#broken !== null || this.#starting !== null || this.#missing() === 0) return;
    // Workers start from an immediate of their own: a fork from the middle of
    // the caller's code (a microtask, an I/O callback) would copy what is
    // pending there into the child; and a forked worker knows every function
    // passed to the pool in this tick.
    this.#starting = setImmediate(() => {
      this.#starting = null;
      if (this.#state === TERMINATE || this.#broken !== null || (this.#state === CLOSE && this.#jobs.size === 0)) return;
      for (let missing = this.#missing(); missing > 0; missing--) this.#startWorker();
    });
  }

  /** How many workers the pool lacks. */
  #missing(): number {
    let live = 0;
    for (const worker of this.#workers.values()) if (worker.state === 'starting' || worker.state === 'ready') live++;
    return Math.max(0, this.#processes - live);
  }

  #startWorker(): void {
    const id = ++this.#workerCount;
    const config: WorkerConfig = {
      address: this.#address,
      token: this.#token,
      workerId: id,
      initializer: this.#initializer === null || this.#method === 'fork' ? this.#initializer : referenceOf(this.#initializer, 'initializer', this.#method),
      initargs: this.#initargs,
      functions: this.#method === 'fork' ? this.#functions : null,
    };
    // A forked worker gets its end of a socket pair; the others connect to the pool's socket.
    const pair = this.#method === 'fork' ? (loadNative()?.socketpair() ?? null) : null;
    if (pair !== null) config.socketPair = pair;
    const hub = this.#hub;
    if (pair !== null && hub !== null) config.mailbox = { hub, id: hub.open(MAILBOX_BYTES), bytes: MAILBOX_BYTES, scratch: this.#hubScratch ?? undefined };
    const process_ = new this.#context.Process({ target: poolWorker, args: [config], daemon: true });
    process_.name = process_.name.replace('Process', 'PoolWorker');
    const knownFunctions = this.#method === 'fork' ? this.#functions.length : Infinity;
    try {
      process_.start(); // a forked worker never returns from here
    } catch (error) {
      if (pair !== null) fs.closeSync(pair[0]);
      if (config.mailbox !== undefined) hub?.close(config.mailbox.id);
      throw error;
    } finally {
      if (pair !== null) fs.closeSync(pair[1]);
    }
    const worker = new PoolWorker(id, process_, process_.pid as number, knownFunctions);
    this.#workers.set(id, worker);
    if (config.mailbox !== undefined) {
      worker.box = config.mailbox.id;
      this.#boxes.set(worker.box, worker);
    }
    if (pair !== null) this.#attach(worker, pair[0]);
    else this.#watchStartup(worker);
  }

  /**
   * Until a worker says hello, its end is seen by looking at its exit code now
   * and then (its socket is not connected yet; a join would hold a descriptor
   * for the child and keep the event loop alive).
   */
  #watchStartup(worker: PoolWorker): void {
    const look = (): void => {
      if (worker.channel !== null || worker.state === 'gone') return;
      if (worker.process.exitCode === null) setTimeout(look, STARTUP_WATCH_MS).unref();
      else this.#gone(worker);
    };
    setTimeout(look, STARTUP_WATCH_MS).unref();
  }

  /** Tells an idle worker to leave (maxtasksperchild, a stale fork, the pool closed); a new one replaces it. */
  #retire(worker: PoolWorker): void {
    worker.state = 'stopping';
    this.#post(worker, [MESSAGE.STOP]);
  }

  /** The worker's socket closed: it left or died; its end is known once it is reaped. */
  #lost(worker: PoolWorker): void {
    if (worker.state === 'gone') return;
    if (worker.state !== 'stopping') worker.process.kill(); // a worker that hangs up without leaving
    void worker.process.join().then(
      () => this.#gone(worker),
      () => this.#gone(worker), // it cannot be waited for (reaped by someone else): it has ended
    );
  }

  /** The worker has ended: the task it held fails with WorkerLostError; it is replaced. */
  #gone(worker: PoolWorker): void {
    if (worker.state === 'gone') return;
    const starting = worker.state === 'starting';
    worker.state = 'gone';
    const exitCode = worker.process.exitCode;
    if (starting && this.#state !== TERMINATE && ++this.#startFailures >= START_FAILURES) {
      const lost = lostError(worker, exitCode, 'before it was ready');
      const message = `the pool is broken: ${START_FAILURES} workers in a row ended before they were ready, the last: ${lost.message}`;
      this.#break(() => new ProcessError(message, { cause: lost }));
    }
    this.#workers.delete(worker.id);
    worker.channel?.close();
    if (worker.box !== null) {
      this.#hub?.close(worker.box);
      this.#boxes.delete(worker.box);
    }
    worker.process.close();
    const task = worker.task;
    worker.task = null;
    if (task !== null) {
      task.worker = null;
      this.#finishTask(task);
      task.job.failed(task, lostError(worker, exitCode));
    }
    this.#maintain();
    this.#dispatch();
    this.#updateKeepAlive();
    this.#checkAllGone();
  }

  /** An aborted call's running task: its worker is killed (and replaced once reaped). */
  #killFor(task: Task): void {
    const worker = task.worker;
    if (worker === null || worker.state === 'gone') return;
    worker.task = null;
    task.worker = null;
    this.#finishTask(task);
    worker.state = 'stopping';
    worker.process.kill();
    this.#maintain();
  }

  /** Every call in progress and to come rejects with an error `make` makes (the first cause only). */
  #break(make: () => unknown): void {
    if (this.#broken !== null) return;
    this.#broken = make;
    for (const job of [...this.#jobs]) job.abort(make(), false);
  }

  // --- keeping the event loop alive, ending -----------------------------------------

  /** While calls are in progress the pool keeps the event loop alive; idle, it lets the program end. */
  #updateKeepAlive(): void {
    // Closed or terminated, the pool also keeps it alive until its workers have ended (join() waits for them).
    const busy = this.#jobs.size > 0 || (this.#state !== RUN && this.#workers.size > 0);
    if (busy === this.#busy) return;
    this.#busy = busy;
    if (busy) {
      this.#keepAlive ??= setInterval(() => {}, 2 ** 30);
      this.#keepAlive.ref();
    } else {
      this.#keepAlive?.unref();
    }
    for (const worker of this.#workers.values()) {
      if (busy) worker.channel?.ref();
      else worker.channel?.unref();
    }
    if (busy) this.#hub?.ref();
    else this.#hub?.unref();
  }

  #closeServer(): void {
    if (this.#server === null || !this.#server.listening) return;
    inheritedHandles.delete(this.#server);
    this.#server.close();
    if (!this.#address.startsWith('\0')) fs.rmSync(this.#address, { force: true });
  }

  #checkAllGone(): void {
    if (this.#state === RUN || this.#workers.size > 0) return;
    if (this.#state === CLOSE && this.#jobs.size > 0) return;
    this.#closeServer();
    if (this.#hub !== null) {
      inheritedHandles.delete(this.#hub);
      this.#hub.detach();
      this.#hub = null;
      this.#hubScratch = null;
    }
    if (this.#keepAlive !== null) clearInterval(this.#keepAlive);
    this.#keepAlive = null;
    this.#busy = false;
    this.#allGone?.();
    this.#allGone = null;
  }
}

// --- helpers -----------------------------------------------------------------------------

/** The Pool class of each context (see `Pool._ofContext`). */
const contextPools = new WeakMap<BaseContext, typeof Pool>();

function initializerError(description: ErrorDescription): unknown {
  const error = rebuildError(description);
  if (error instanceof Error) error.message = `the pool's initializer failed: ${error.message}`;
  return error;
}

interface ResolvedOptions {
  processes: number;
  initializer: AnyFunction | null;
  initargs: unknown[];
  maxtasksperchild: number | null;
  context: BaseContext;
}

function poolOptions(first: number | PoolOptions | null | undefined, rest: Omit<PoolOptions, 'processes'>): ResolvedOptions {
  const options: PoolOptions =
    typeof first === 'object' && first !== null ? first : { ...validateOptionsObject(rest), processes: first as number | null | undefined };
  validateOptionsObject(options);
  const processes = options.processes == null ? cpuCount() : validateInteger(options.processes, 'processes', 1, 2 ** 16);
  const initializer = options.initializer ?? null;
  if (initializer !== null) validateFunction(initializer, 'initializer');
  const initargs = options.initargs ?? [];
  if (!Array.isArray(initargs)) throw new TypeError(`initargs must be an array, got ${describe(initargs)}`);
  const maxtasksperchild = options.maxtasksperchild == null ? null : validateInteger(options.maxtasksperchild, 'maxtasksperchild', 1, 2 ** 31 - 1);
  const context = options.context ?? getContext();
  if (!(context instanceof BaseContext)) throw new TypeError(`context must be a context (mp.getContext()), got ${describe(context)}`);
  return { processes, initializer, initargs, maxtasksperchild, context };
}

function validateOptionsObject<T>(options: T): T {
  if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object, got ${describe(options)}`);
  return options;
}

function validateArgs(args: unknown, what: string): void {
  if (!Array.isArray(args)) throw new TypeError(`${what} must be an array of arguments, got ${describe(args)}`);
}

function mapOptions(chunksize: number | null | undefined | MapOptions): MapOptions {
  return typeof chunksize === 'object' && chunksize !== null ? chunksize : { chunksize };
}

function validateChunksize(chunksize: unknown): number | null {
  if (chunksize == null) return null;
  return validateInteger(chunksize, 'chunksize', 1, 2 ** 31 - 1);
}

/** Python's default: `divmod(len, 4 * processes)`, plus one when there is a remainder. */
function defaultChunksize(length: number, processes: number): number {
  const chunksize = Math.floor(length / (4 * processes));
  return Math.max(1, length % (4 * processes) === 0 ? chunksize : chunksize + 1);
}

function toArray(iterable: unknown): unknown[] {
  if (Array.isArray(iterable)) return iterable;
  if (iterable == null || typeof (iterable as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    throw new TypeError(`iterable must be an iterable (use imap() for an async iterable), got ${describe(iterable)}`);
  }
  return Array.from(iterable as Iterable<unknown>);
}
