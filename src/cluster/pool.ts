/**
 * The cluster Pool: mp.Pool's API with its tasks carried by BullMQ on Redis to
 * worker nodes (see node.ts). A call chunks its input into jobs (addBulk),
 * keeps a window of chunks in flight, and learns of each chunk's end on the
 * pool's reply channel (see replies.ts), where the node that ran it publishes
 * its results (or BullMQ's failure of its job).
 * @packageDocumentation
 */
import type { Queue } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { randomBytes } from 'crypto';

import { ProcessError, TimeoutError } from '../errors';
import { Reference, referenceOf } from '../reference';
import { abortError } from '../util';
import { describe, validateFunction, validateInteger, validateOptions, validateTimeout } from '../validate';
import { AsyncResult, IMapIterator, validateCallbacks } from '../pool/results';
import { cancelChannel, publishCancel } from './cancel';
import { ConnectionOption, failFast, persistent, redisAddress, redisOptions } from './connection';
import { loadEngine } from './engine';
import { taskLabel } from './tasks';
import { parseReply, replyChannel } from './replies';
import { ChunkJob, ChunkResult, decodeError, decodeValues, encodeValues, JobResult, Setup, WIRE_VERSION } from './wire';

/** Options of a cluster {@link Pool}. */
export interface ClusterPoolOptions {
  /** Where Redis is: a `redis://` URL or ioredis options. */
  connection: ConnectionOption;
  /** The queue the worker nodes serve (`node-multiprocessing worker --queue <name>`). */
  queue: string;
  /** BullMQ's key prefix (default `'bull'`); the nodes must use the same. */
  prefix?: string;
  /** The default chunk size of `map`/`starmap` (default: the input cut in about 64 chunks, at most 10,000 tasks each). */
  chunksize?: number;
  /** Chunks of one call in flight at most (default 64): the rest of the input is read as chunks complete. */
  window?: number;
  /** How many times a chunk runs again after the node running it was lost (default 1; 0: fail with WorkerLostError). */
  retries?: number;
  /** Delete the queue's keys at `join()` when no job is left in it (default false). */
  cleanup?: boolean;
  /** Run on every node process before its first task of this pool (by module reference). */
  initializer?: (...args: never[]) => unknown;
  /** Arguments of `initializer`. */
  initargs?: unknown[];
  /** Tasks a node process runs before it is replaced (default: unlimited). */
  maxtasksperchild?: number | null;
}

/** Options every task-submitting method takes. */
export interface CallOptions {
  /** Aborts the call (it rejects with an `AbortError` whose `cause` is the signal's reason): its waiting chunks are removed and its running ones stopped on every node. */
  signal?: AbortSignal;
  /** Rejects the call with `TimeoutError` after this many ms, and stops it as `signal` does. */
  timeout?: number | null;
}

/** Options of the map family. */
export interface MapOptions extends CallOptions {
  /** Tasks per job. */
  chunksize?: number;
  /** Called as chunks complete with the number of tasks done and the number read from the input so far. */
  onProgress?: (done: number, total: number) => void;
}

/** Options of `applyAsync`. */
export interface ApplyAsyncOptions<R> extends CallOptions {
  /** Called with the result once the call succeeded. */
  callback?: ((value: R) => void) | null;
  /** Called with the error once the call failed. */
  errorCallback?: ((error: unknown) => void) | null;
}

/** Options of `mapAsync`/`starmapAsync`. */
export interface MapAsyncOptions<R> extends MapOptions {
  /** Called with the results once the call succeeded. */
  callback?: ((value: R[]) => void) | null;
  /** Called with the error once the call failed. */
  errorCallback?: ((error: unknown) => void) | null;
}

/** The connection to Redis of a cluster pool was lost while a call was in flight. */
export class ClusterConnectionError extends ProcessError {}

type Fn = (...args: never[]) => unknown;
type Items<T> = Iterable<T> | AsyncIterable<T>;

const POOL_OPTIONS = [
  'connection',
  'queue',
  'prefix',
  'chunksize',
  'window',
  'retries',
  'cleanup',
  'initializer',
  'initargs',
  'maxtasksperchild',
] as const;
const CALL_OPTIONS = ['signal', 'timeout', 'chunksize', 'onProgress', 'callback', 'errorCallback'] as const;

const DEFAULT_WINDOW = 64;

const DEFAULT_CHUNKS = 64;
const MAX_DEFAULT_CHUNKSIZE = 10_000;

/**
 * A pool of worker nodes reached through Redis: the same methods, options,
 * results and errors as `mp.Pool`, differing where docs/api/cluster.md says.
 */
export class Pool {
  private state: 'run' | 'close' | 'terminate' = 'run';
  private readonly id = randomBytes(6).toString('hex');
  private sequence = 0;
  private readonly options: Required<Pick<ClusterPoolOptions, 'queue' | 'prefix' | 'window' | 'retries' | 'cleanup'>> & {
    chunksize: number | null;
  };
  private readonly redis: RedisOptions;
  private readonly setup: Setup | null;
  /** Every call not settled yet. */
  private readonly calls = new Set<Call>();
  /** The call and chunk index of every job in flight, by job id. */
  private readonly jobs = new Map<string, { call: Call; index: number }>();
  /** The cancellations Redis did not take (it was away): sent again once it is back. */
  private readonly unsentCancels = new Map<Call, string[]>();
  private readonly engine: Promise<Engine>;
  private ended: Promise<void> | undefined;
  /** Where the nodes publish this pool's chunk results (see replies.ts). */
  private readonly replyChannel: string;

  constructor(options: ClusterPoolOptions) {
    validateOptions(options ?? null, POOL_OPTIONS, 'Pool options');
    if (typeof options.queue !== 'string' || options.queue === '') {
      throw new TypeError(`queue must be a non-empty string, got ${describe(options.queue)}`);
    }
    this.redis = redisOptions(options.connection);
    this.options = {
      queue: options.queue,
      prefix: options.prefix ?? 'bull',
      chunksize: options.chunksize === undefined ? null : validateInteger(options.chunksize, 'chunksize', 1),
      window: validateInteger(options.window ?? DEFAULT_WINDOW, 'window', 1),
      retries: validateInteger(options.retries ?? 1, 'retries', 0),
      cleanup: options.cleanup ?? false,
    };
    this.setup = this.makeSetup(options);
    this.replyChannel = replyChannel(this.options.prefix, this.options.queue, this.id);
    this.engine = this.connect();
    this.engine.catch(() => undefined); // reported by the calls that need it
  }

  // --- the public methods ---------------------------------------------------------

  /** Runs `fn(...args)` on a node and resolves to its value. */
  apply<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options: CallOptions = {}): Promise<Awaited<R>> {
    return this.applyCall(fn as Fn, args, options, 'apply()') as Promise<Awaited<R>>;
  }

  /** As `apply`, returning an {@link AsyncResult}. */
  applyAsync<A extends unknown[], R>(fn: (...args: A) => R, args?: A, options: ApplyAsyncOptions<Awaited<R>> = {}): AsyncResult<Awaited<R>> {
    validateCallbacks(options);
    return asyncResult(this.applyCall(fn as Fn, args, options, 'applyAsync()') as Promise<Awaited<R>>, options);
  }

  /** The results of `fn` on each item of `iterable`, in order. */
  map<T, R>(fn: (item: T) => R, iterable: Items<T>, chunksize?: number | MapOptions, options?: MapOptions): Promise<Awaited<R>[]> {
    return this.collect(fn as Fn, iterable, false, mapOptions(chunksize, options), 'map()') as Promise<Awaited<R>[]>;
  }

  /** As `map`, returning an {@link AsyncResult}. */
  mapAsync<T, R>(fn: (item: T) => R, iterable: Items<T>, options: MapAsyncOptions<Awaited<R>> = {}): AsyncResult<Awaited<R>[]> {
    validateCallbacks(options);
    return asyncResult(this.collect(fn as Fn, iterable, false, options, 'mapAsync()') as Promise<Awaited<R>[]>, options);
  }

  /** The results of `fn(...args)` for each array of arguments of `iterable`, in order. */
  starmap<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Items<A>,
    chunksize?: number | MapOptions,
    options?: MapOptions,
  ): Promise<Awaited<R>[]> {
    return this.collect(fn as Fn, iterable, true, mapOptions(chunksize, options), 'starmap()') as Promise<Awaited<R>[]>;
  }

  /** As `starmap`, returning an {@link AsyncResult}. */
  starmapAsync<A extends unknown[], R>(
    fn: (...args: A) => R,
    iterable: Items<A>,
    options: MapAsyncOptions<Awaited<R>> = {},
  ): AsyncResult<Awaited<R>[]> {
    validateCallbacks(options);
    return asyncResult(this.collect(fn as Fn, iterable, true, options, 'starmapAsync()') as Promise<Awaited<R>[]>, options);
  }

  /**
   * The results of `fn` on each item, in order, as they come (default chunksize 1; the input is read lazily, and
   * no more than `window` chunks are read ahead of the consumer). A task's error rejects the `next()` that reaches
   * its place, and the iteration goes on after it, as mp.Pool's (the rest of a failed chunk is skipped).
   */
  imap<T, R>(fn: (item: T) => R, iterable: Items<T>, chunksize?: number | MapOptions, options?: MapOptions): IMapIterator<Awaited<R>> {
    return this.iterate(fn as Fn, iterable, mapOptions(chunksize, options), true, 'imap()') as IMapIterator<Awaited<R>>;
  }

  /** As `imap`, in the order the chunks complete. */
  imapUnordered<T, R>(fn: (item: T) => R, iterable: Items<T>, chunksize?: number | MapOptions, options?: MapOptions): IMapIterator<Awaited<R>> {
    return this.iterate(fn as Fn, iterable, mapOptions(chunksize, options), false, 'imapUnordered()') as IMapIterator<Awaited<R>>;
  }

  /** No more calls; the ones in flight complete. */
  close(): void {
    if (this.state === 'run') this.state = 'close';
  }

  /** Stops every call now: their waiting chunks are removed and their running ones stopped on every node. */
  terminate(): void {
    if (this.state === 'terminate') return;
    this.state = 'terminate';
    for (const call of [...this.calls]) call.fail(new ProcessError('the pool was terminated'));
  }

  /** Waits for the calls in flight after `close()` or `terminate()`, then disconnects (and cleans up with `cleanup`). */
  async join(): Promise<void> {
    if (this.state === 'run') throw new Error('join(): call close() or terminate() first');
    await Promise.allSettled([...this.calls].map((call) => call.settled));
    this.ended ??= this.disconnect();
    await this.ended;
  }

  /** `terminate()` then `join()`, as Python's `with Pool() as pool:`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.terminate();
    await this.join();
  }

  // --- calls -------------------------------------------------------------------------

  private applyCall(fn: Fn, args: unknown[] | undefined, options: CallOptions, method: string): Promise<unknown> {
    if (args !== undefined && !Array.isArray(args)) throw new TypeError(`args must be an array, got ${describe(args)}`);
    return this.collect(fn, [args ?? []], true, { ...options, chunksize: 1 }, method).then((values) => values[0]);
  }

  /** A call whose results are collected, in order: the first task error rejects it. */
  private collect(fn: Fn, items: Items<unknown>, star: boolean, options: MapOptions, method: string): Promise<unknown[]> {
    const results = new Collected();
    this.submit(fn, items, star, options, method, results);
    return results.promise;
  }

  /** A call whose results are handed to an IMapIterator (chunksize 1 unless given). */
  private iterate(fn: Fn, items: Items<unknown>, options: MapOptions, ordered: boolean, method: string): IMapIterator<unknown> {
    const iterator = new IMapIterator<unknown>(ordered);
    const call = this.submit(fn, items, false, { chunksize: 1, ...options }, method, iterator);
    iterator._attach({ consumed: () => call.pump(), cancel: () => call.stop() });
    return iterator;
  }

  private submit(fn: Fn, items: Items<unknown>, star: boolean, options: MapOptions, method: string, results: Results): Call {
    if (this.state !== 'run') throw new Error(`${method}: the pool is ${this.state === 'close' ? 'closed' : 'terminated'}`);
    validateFunction(fn, 'fn');
    validateOptions(options, CALL_OPTIONS);
    if (!isIterable(items)) throw new TypeError(`iterable must be an iterable or async iterable, got ${describe(items)}`);
    const chunksize = options.chunksize === undefined ? undefined : validateInteger(options.chunksize, 'chunksize', 1);
    const timeout = validateTimeout(options.timeout);
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new TypeError(`signal must be an AbortSignal, got ${describe(options.signal)}`);
    }
    if (options.onProgress !== undefined) validateFunction(options.onProgress, 'onProgress');
    const call = new Call(this, `${this.id}-${++this.sequence}`, taskReference(fn), star, items, results, {
      chunksize: chunksize ?? this.options.chunksize ?? defaultChunksize(items),
      onProgress: options.onProgress,
    });
    this.calls.add(call);
    void call.settled.then(() => this.calls.delete(call));
    call.start(options.signal, timeout);
    return call;
  }

  /** @internal The job data of chunk `index` of `call`. */
  chunkJob(call: Call, index: number, items: unknown[]): { name: string; data: ChunkJob; opts: { jobId: string; removeOnComplete: true; removeOnFail: true } } {
    const jobId = `${call.id}-${index}`;
    this.jobs.set(jobId, { call, index });
    return {
      name: taskLabel(call.fn),
      data: {
        v: WIRE_VERSION,
        call: call.id,
        index,
        fn: call.fn,
        star: call.star,
        items: encodeValues(items, 'an argument'),
        setup: this.setup,
        retries: this.options.retries,
        reply: this.replyChannel,
      },
      opts: { jobId, removeOnComplete: true, removeOnFail: true },
    };
  }

  /** @internal Adds jobs to the queue: one alone with `add` (addBulk's MULTI costs an apply() ~0.5 ms more). */
  async addJobs(jobs: ReturnType<Pool['chunkJob']>[]): Promise<void> {
    const { queue, subscriber } = await this.engine;
    // A reply published while the pool is not subscribed would be lost: fail at once, as while Redis is away.
    if (!subscriber.replying) throw new ClusterConnectionError(`the reply channel at ${redisAddress(this.redis)} is not subscribed (Redis is reconnecting)`);
    if (jobs.length === 1) await queue.add(jobs[0].name, jobs[0].data, jobs[0].opts);
    else await queue.addBulk(jobs);
  }

  /**
   * @internal Forgets a call's jobs, removes the waiting ones and stops the
   * running ones on every node; when Redis is away, once it is back.
   */
  async cancel(call: Call, jobIds: string[]): Promise<void> {
    for (const jobId of jobIds) this.jobs.delete(jobId);
    const engine = await this.engine.catch(() => null);
    if (engine === null) return;
    try {
      await publishCancel(engine.publisher, cancelChannel(this.options.prefix, this.options.queue), [call.id]);
      await Promise.all(jobIds.map((jobId) => engine.queue.remove(jobId).catch(() => 0)));
    } catch {
      this.unsentCancels.set(call, jobIds);
    }
  }

  private resendCancels(): void {
    const unsent = [...this.unsentCancels];
    this.unsentCancels.clear();
    for (const [call, jobIds] of unsent) void this.cancel(call, jobIds);
  }

  /** @internal The pool's window of chunks in flight per call. */
  get window(): number {
    return this.options.window;
  }

  // --- Redis -------------------------------------------------------------------------

  private async connect(): Promise<Engine> {
    const { bullmq, Redis } = loadEngine();
    const publisher = new Redis(failFast(this.redis));
    const address = redisAddress(this.redis);
    const subscriber = new ReplySubscriber(new Redis({ ...persistent(this.redis), autoResubscribe: false }), this.replyChannel, (jobId, result) =>
      this.settleChunk(jobId, result),
    );
    try {
      await reachable(publisher, address);
      await subscriber.ready;
      const queue = new bullmq.Queue<ChunkJob, JobResult>(this.options.queue, { connection: publisher, prefix: this.options.prefix });
      queue.on('error', () => undefined); // the calls report what matters: a lost connection
      publisher.on('close', () => this.connectionLost(address));
      subscriber.redis.on('close', () => this.connectionLost(address)); // replies published meanwhile are lost
      publisher.on('ready', () => this.resendCancels());
      return { queue, publisher, subscriber };
    } catch (error) {
      publisher.disconnect();
      subscriber.redis.disconnect();
      throw error;
    }
  }

  private settleChunk(jobId: string, result: ChunkResult): void {
    const chunk = this.jobs.get(jobId);
    if (chunk === undefined) return; // another client's job, or one of a call that ended
    this.jobs.delete(jobId);
    chunk.call.chunkDone(chunk.index, result);
  }

  private connectionLost(address: string): void {
    if (this.ended !== undefined) return;
    for (const call of [...this.calls]) {
      call.fail(new ClusterConnectionError(`the connection to Redis at ${address} was lost while the call was in flight`));
    }
  }

  private async disconnect(): Promise<void> {
    const engine = await this.engine.catch(() => null);
    if (engine === null) return;
    if (this.options.cleanup) await this.removeQueueIfEmpty(engine.queue, engine.publisher).catch(() => undefined);
    await engine.queue.close().catch(() => undefined);
    await engine.publisher.quit().catch(() => engine.publisher.disconnect());
    await engine.subscriber.redis.quit().catch(() => engine.subscriber.redis.disconnect());
  }

  /** Deletes the queue's keys when no job is left in it (another client's would be lost). */
  private async removeQueueIfEmpty(queue: Queue, publisher: Redis): Promise<void> {
    await this.finishing(queue, publisher);
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
    if (Object.values(counts).every((count) => count === 0)) await queue.obliterate();
  }

  /**
   * Waits until this pool's jobs whose results came have left the queue: a
   * node replies first, then tells BullMQ. One whose lock is gone (its node
   * was lost meanwhile) is not waited for.
   */
  private async finishing(queue: Queue, publisher: Redis): Promise<void> {
    for (;;) {
      const ours = (await publisher.lrange(queue.toKey('active'), 0, -1)).filter((jobId) => jobId.startsWith(`${this.id}-`));
      if (ours.length === 0) return;
      const locks = await Promise.all(ours.map((jobId) => publisher.exists(`${queue.toKey(jobId)}:lock`)));
      if (locks.every((held) => held === 0)) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  private makeSetup(options: ClusterPoolOptions): Setup | null {
    const { initializer, initargs, maxtasksperchild } = options;
    if (initializer === undefined && initargs === undefined && (maxtasksperchild ?? null) === null) return null;
    if (initializer !== undefined) validateFunction(initializer, 'initializer');
    if (initargs !== undefined && !Array.isArray(initargs)) throw new TypeError(`initargs must be an array, got ${describe(initargs)}`);
    return {
      initializer: initializer === undefined ? null : taskReference(initializer),
      initargs: encodeValues(initargs ?? [], 'initargs'),
      maxtasksperchild: maxtasksperchild == null ? null : validateInteger(maxtasksperchild, 'maxtasksperchild', 1),
    };
  }
}

interface Engine {
  queue: Queue<ChunkJob, JobResult>;
  publisher: Redis;
  subscriber: ReplySubscriber;
}

/**
 * The pool's connection subscribed to its reply channel. It subscribes again
 * itself after each reconnection (not ioredis's auto-resubscription, which
 * does not say when it is done), and says whether it is subscribed.
 */
class ReplySubscriber {
  /** Resolves once first subscribed; rejects if Redis cannot be reached. */
  readonly ready: Promise<void>;
  replying = false;

  constructor(
    readonly redis: Redis,
    channel: string,
    onReply: (jobId: string, result: ChunkResult) => void,
  ) {
    redis.on('message', (from: string, message: string) => {
      if (from !== channel) return;
      const { jobId, result } = parseReply(message);
      onReply(jobId, result);
    });
    redis.on('close', () => (this.replying = false));
    const subscribe = (): Promise<void> => redis.subscribe(channel).then(() => void (this.replying = true));
    this.ready = reachable(redis, redisAddress(redis.options)).then(subscribe);
    void this.ready.then(
      () => redis.on('ready', () => void subscribe().catch(() => undefined)),
      () => undefined,
    );
  }
}

/** Resolves once `redis` is connected; rejects with a clear error when Redis cannot be reached. */
function reachable(redis: Redis, address: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onReady = (): void => {
      redis.off('error', onError);
      resolve();
    };
    const onError = (error: Error): void => {
      redis.off('ready', onReady);
      reject(new ClusterConnectionError(`cannot reach Redis at ${address}: ${error.message}`, { cause: error }));
    };
    redis.once('ready', onReady);
    redis.once('error', onError);
  }).finally(() => redis.on('error', () => undefined));
}

function isIterable(value: unknown): value is Items<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    (typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function' ||
      typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function')
  ) || typeof value === 'string';
}

function mapOptions(chunksize: number | MapOptions | undefined, options: MapOptions | undefined): MapOptions {
  if (typeof chunksize === 'object' && chunksize !== null) return chunksize;
  return chunksize === undefined ? { ...options } : { ...options, chunksize };
}

/** The input cut in about 64 chunks when its length is known, else one task a chunk. */
function defaultChunksize(items: Items<unknown>): number {
  const length = Array.isArray(items) ? items.length : items instanceof Set || items instanceof Map ? items.size : null;
  if (length === null) return 1;
  return Math.min(MAX_DEFAULT_CHUNKSIZE, Math.max(1, Math.ceil(length / DEFAULT_CHUNKS)));
}

function taskReference(fn: Fn): Reference {
  try {
    return referenceOf(fn, 'the task', 'spawn');
  } catch (error) {
    throw new Error(
      `${describe(fn)} cannot run on a worker node: a node finds its task by module reference, as a child of the spawn ` +
        `start method does. Make it a named function exported by a module (module.exports.work = work, or ` +
        `export function work() {...}) that the nodes load with --require. (${(error as Error).message})`,
      { cause: error },
    );
  }
}

/** mp.Pool's AsyncResult of `promise`, with the call's callbacks. */
function asyncResult<T>(promise: Promise<T>, callbacks: { callback?: ((value: T) => void) | null; errorCallback?: ((error: unknown) => void) | null }): AsyncResult<T> {
  const result = new AsyncResult<T>(callbacks);
  promise.then(
    (value) => result._resolve(value),
    (error: unknown) => result._reject(error),
  );
  return result;
}

// --- one call ----------------------------------------------------------------------

/**
 * The results of a map-like call, collected by chunk and joined in input order
 * once the last chunk is in; the first error rejects them, as mp.Pool's MapResult.
 */
class Collected {
  readonly promise: Promise<unknown[]>;
  private resolve!: (values: unknown[]) => void;
  private reject!: (error: unknown) => void;
  private readonly chunks: unknown[][] = [];

  constructor() {
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  setChunk(index: number, values: unknown[]): void {
    this.chunks[index] = values;
  }

  complete(): void {
    this.resolve(this.chunks.length === 1 ? this.chunks[0] : this.chunks.flat());
  }

  fail(error: unknown): void {
    this.reject(error);
  }
}

/** Where a call's results go: collected (map family, apply) or into the IMapIterator of an imap. */
type Results = Collected | IMapIterator<unknown>;

interface ChunkInFlight {
  jobId: string;
  /** The index of the chunk's first item in the input. */
  first: number;
  size: number;
}

/**
 * One task-submitting call: reads its input in chunks, keeps at most
 * `window` of them in flight (an imap also at most `window` chunks' worth of
 * results not yet consumed), and hands the chunks' results to its
 * {@link Results}.
 * @internal
 */
class Call {
  readonly settled: Promise<void>;
  private finish!: () => void;
  private readonly iterator: Iterator<unknown> | AsyncIterator<unknown>;
  private readonly asyncInput: boolean;
  private exhausted = false;
  private reading = false;
  /** No outcome counts any more: completed, failed or stopped. */
  private ended = false;
  private nextIndex = 0;
  /** Items read from the input so far. */
  private total = 0;
  /** Items whose chunk has completed (or failed, in an imap). */
  private done = 0;
  private readonly inFlight = new Map<number, ChunkInFlight>();
  private timer: NodeJS.Timeout | undefined;
  private abort: { signal: AbortSignal; listener: () => void } | undefined;

  constructor(
    private readonly pool: Pool,
    readonly id: string,
    readonly fn: Reference,
    readonly star: boolean,
    items: Items<unknown>,
    private readonly results: Results,
    private readonly options: { chunksize: number; onProgress?: (done: number, total: number) => void },
  ) {
    this.asyncInput = typeof (items as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';
    this.iterator = this.asyncInput ? (items as AsyncIterable<unknown>)[Symbol.asyncIterator]() : (items as Iterable<unknown>)[Symbol.iterator]();
    this.settled = new Promise((resolve) => (this.finish = resolve));
  }

  start(signal: AbortSignal | undefined, timeout: number | null): void {
    if (signal !== undefined) {
      if (signal.aborted) {
        this.fail(abortError(signal));
        return;
      }
      const listener = (): void => this.fail(abortError(signal));
      signal.addEventListener('abort', listener, { once: true });
      this.abort = { signal, listener };
    }
    if (timeout !== null) {
      this.timer = setTimeout(() => this.fail(new TimeoutError(`the call did not complete within ${timeout} ms`)), timeout);
    }
    this.pump();
  }

  /** A chunk's job completed: its results, its first task error, or word that its node stopped it. */
  chunkDone(index: number, result: ChunkResult): void {
    if (this.ended || !this.inFlight.has(index)) return;
    if ('cancelled' in result) return this.chunkFailed(index, new ProcessError(`chunk ${index} of call ${this.id} was cancelled on its node`));
    if ('error' in result) return this.chunkFailed(index, decodeError(result.error));
    let values: unknown[];
    try {
      values = decodeValues(result.ok);
    } catch (error) {
      return this.chunkFailed(index, error);
    }
    const chunk = this.inFlight.get(index) as ChunkInFlight;
    this.inFlight.delete(index);
    if (this.results instanceof Collected) this.results.setChunk(index, values);
    else this.results._setChunk(chunk.first, values);
    this.progressed(chunk.size);
  }

  /**
   * A task of the chunk failed (or the chunk did): a collected call fails;
   * an imap yields the error at the chunk's place and goes on, as mp.Pool's.
   */
  chunkFailed(index: number, error: unknown): void {
    const chunk = this.inFlight.get(index);
    if (this.ended || chunk === undefined) return;
    if (this.results instanceof Collected) return this.fail(error);
    this.inFlight.delete(index);
    this.results._setError(chunk.first, chunk.size, error);
    this.progressed(chunk.size);
  }

  /** The whole call fails: its jobs are removed or stopped on every node. */
  fail(error: unknown): void {
    if (this.ended) return;
    if (this.results instanceof Collected) this.results.fail(error);
    else this.results._fail(error);
    this.stop();
  }

  /** Ends the call without a further outcome (an imap's consumer left): its jobs are removed or stopped, its input closed. */
  stop(): void {
    if (this.ended) return;
    const jobIds = [...this.inFlight.values()].map((chunk) => chunk.jobId);
    this.inFlight.clear();
    if (jobIds.length > 0) void this.pool.cancel(this, jobIds);
    if (!this.exhausted) void Promise.resolve(this.iterator.return?.()).catch(() => undefined);
    this.end();
  }

  /** Reads chunks from the input and adds them as jobs while the window has room. */
  pump(): void {
    if (this.reading || this.ended) return;
    this.reading = true;
    void this.read().finally(() => {
      this.reading = false;
      if (this.hasRoom()) this.pump(); // room made while the last read was ending
    });
  }

  private progressed(size: number): void {
    this.done += size;
    this.options.onProgress?.(this.done, this.total);
    if (this.exhausted && this.inFlight.size === 0) this.complete();
    else this.pump();
  }

  private complete(): void {
    if (this.results instanceof Collected) this.results.complete();
    else this.results._setLength(this.total);
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.abort?.signal.removeEventListener('abort', this.abort.listener);
    this.finish();
  }

  /** Whether another chunk may be read: the window has room (and an imap's consumer is not too far behind). */
  private hasRoom(): boolean {
    if (this.exhausted || this.ended || this.inFlight.size >= this.pool.window) return false;
    if (this.results instanceof Collected) return true;
    return this.results._hasRoom(this.total, this.pool.window * this.options.chunksize);
  }

  private async read(): Promise<void> {
    try {
      while (this.hasRoom()) {
        const jobs: ReturnType<Pool['chunkJob']>[] = [];
        while (this.hasRoom()) {
          const items = await this.readChunk();
          if (this.ended) return;
          if (items.length === 0) break;
          const job = this.pool.chunkJob(this, this.nextIndex, items);
          this.inFlight.set(this.nextIndex++, { jobId: job.opts.jobId, first: this.total, size: items.length });
          this.total += items.length;
          jobs.push(job);
        }
        if (jobs.length > 0) await this.pool.addJobs(jobs);
      }
      if (this.exhausted && this.inFlight.size === 0 && !this.ended) this.complete();
    } catch (error) {
      this.fail(error);
    }
  }

  private async readChunk(): Promise<unknown[]> {
    const items: unknown[] = [];
    while (items.length < this.options.chunksize) {
      const next = this.asyncInput
        ? await (this.iterator as AsyncIterator<unknown>).next()
        : (this.iterator as Iterator<unknown>).next();
      if (next.done === true) {
        this.exhausted = true;
        break;
      }
      items.push(next.value);
    }
    return items;
  }
}
