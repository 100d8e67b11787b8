/**
 * The shapes a pool's result takes, as CPython's `ApplyResult`, `MapResult`
 * and `IMapIterator`: an {@link AsyncResult} for one call, a
 * {@link MapResult} that fills in chunk by chunk, an {@link IMapIterator}
 * that yields results as they come. The pool (and the cluster pool) settle
 * them through their `_`-prefixed methods.
 * @packageDocumentation
 */
import { TimeoutError } from '../errors';
import { describe, validateTimeout } from '../validate';

/** `callback` and `errorCallback` of the `*Async` methods, as Python's. */
export interface ResultCallbacks<T> {
  /** Called with the result once the call succeeded (not called on failure). */
  callback?: ((result: T) => void) | null;
  /** Called with the error once the call failed (not called on success). */
  errorCallback?: ((error: unknown) => void) | null;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Calls a user callback; an error it throws is reported as an uncaught exception, as an event listener's. */
function callBack<T>(callback: ((value: T) => void) | null | undefined, value: T): void {
  if (callback == null) return;
  try {
    callback(value);
  } catch (error) {
    process.nextTick(() => {
      throw error;
    });
  }
}

export function validateCallbacks(options: ResultCallbacks<never>): void {
  for (const name of ['callback', 'errorCallback'] as const) {
    const value = options[name];
    if (value != null && typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${describe(value)}`);
  }
}

/**
 * The result of an `applyAsync()`, `mapAsync()` or `starmapAsync()` call, as
 * Python's `AsyncResult`. Never rejects on its own: ask for the value with
 * {@link get}.
 *
 * @example
 * ```ts
 * const result = pool.applyAsync(square, [7]);
 * await result.wait();
 * console.log(result.ready(), result.successful(), await result.get()); // true true 49
 * ```
 */
export class AsyncResult<T> {
  #outcome: Outcome<T> | null = null;
  #waiters: Array<() => void> = [];
  readonly #callbacks: ResultCallbacks<T>;

  /** @param callbacks called once the result is known (see {@link ResultCallbacks}). @internal */
  constructor(callbacks: ResultCallbacks<T> = {}) {
    this.#callbacks = callbacks;
  }

  /** Whether the call has completed (succeeded or failed). */
  ready(): boolean {
    return this.#outcome !== null;
  }

  /** Whether the call succeeded. Throws an Error if it has not completed yet, as Python's ValueError. */
  successful(): boolean {
    if (this.#outcome === null) throw new Error('the result is not ready: successful() needs a completed call (see ready())');
    return this.#outcome.ok;
  }

  /**
   * Resolves once the call has completed, or after `timeout` milliseconds;
   * never rejects (check {@link ready}). A negative timeout gets a RangeError.
   */
  wait(timeout?: number | null): Promise<void> {
    const limit = validateTimeout(timeout);
    return this.#settled(limit).then(() => undefined);
  }

  /**
   * The result: resolves with the value, rejects with the call's error, or
   * with `mp.TimeoutError` when it has not completed within `timeout`
   * milliseconds (the call goes on: a later `get()` may still succeed).
   */
  get(timeout?: number | null): Promise<T> {
    const limit = validateTimeout(timeout);
    return this.#settled(limit).then((done) => {
      const outcome = this.#outcome;
      if (!done || outcome === null) throw new TimeoutError(`the result was not ready within ${String(limit)} ms`);
      if (outcome.ok) return outcome.value;
      throw outcome.error;
    });
  }

  /** Resolves true once settled, false when `limit` ms pass first. */
  #settled(limit: number | null): Promise<boolean> {
    if (this.#outcome !== null) return Promise.resolve(true);
    if (limit === 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = (): void => {
        if (timer !== undefined) clearTimeout(timer);
        resolve(true);
      };
      this.#waiters.push(waiter);
      if (limit !== null) {
        timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          resolve(false);
        }, limit);
      }
    });
  }

  /** Settles with a value; later settlements are ignored. @internal */
  _resolve(value: T): void {
    if (this.#settle({ ok: true, value })) callBack(this.#callbacks.callback, value);
  }

  /** Settles with an error; later settlements are ignored. @internal */
  _reject(error: unknown): void {
    if (this.#settle({ ok: false, error })) callBack(this.#callbacks.errorCallback, error);
  }

  #settle(outcome: Outcome<T>): boolean {
    if (this.#outcome !== null) return false;
    this.#outcome = outcome;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter();
    return true;
  }
}

/** `onProgress(done, total)`: items completed so far out of all. */
export type ProgressCallback = (done: number, total: number) => void;

/**
 * The result of a `mapAsync()`/`starmapAsync()` call: an {@link AsyncResult}
 * of the array of results, in input order, filled in chunk by chunk. The
 * first error fails it at once, as Python's `MapResult`.
 */
export class MapResult<T> extends AsyncResult<T[]> {
  /** The results by chunk, joined once all are in (a holey array of a million slots is slow to fill). */
  readonly #chunks: Array<readonly T[]>;
  readonly #length: number;
  #done = 0;
  readonly #onProgress: ProgressCallback | null;

  /** @internal */
  constructor(length: number, chunksize: number, callbacks: ResultCallbacks<T[]> = {}, onProgress: ProgressCallback | null = null) {
    super(callbacks);
    this.#chunks = new Array<readonly T[]>(length === 0 ? 0 : Math.ceil(length / chunksize));
    this.#length = length;
    this.#onProgress = onProgress;
    if (length === 0) this._resolve([]);
  }

  /** The results of chunk `index`. @internal */
  _setChunk(index: number, values: readonly T[]): void {
    if (this.ready() || this.#chunks[index] !== undefined) return;
    this.#chunks[index] = values;
    this.#done += values.length;
    if (this.#onProgress !== null) callBack((done: number) => this.#onProgress?.(done, this.#length), this.#done);
    if (this.#done >= this.#length) this._resolve(joinChunks(this.#chunks, this.#length));
  }
}

function joinChunks<T>(chunks: ReadonlyArray<readonly T[]>, length: number): T[] {
  if (chunks.length === 1) return chunks[0] as T[];
  // concat() sizes the array once (pushing grows it many times: 3x slower for 200,000 numbers).
  const values = ([] as T[]).concat(...(chunks as T[][]));
  values.length = length;
  return values;
}

/** What an {@link IMapIterator} asks of the pool that feeds it. @internal */
export interface IMapFeed {
  /** The consumer took a result: the pool may submit more of the input. */
  consumed(): void;
  /** The consumer stopped early (`break`, `return()`): drop the rest. */
  cancel(): void;
}

/**
 * The async iterable `imap()` and `imapUnordered()` return: results in input
 * order (`imap`) or in completion order (`imapUnordered`), each as soon as it
 * is ready. An error of a task rejects the `next()` that reaches it. Leaving a
 * `for await` loop early drops the tasks not yet run.
 *
 * @example
 * ```ts
 * for await (const square of pool.imap(square, numbers())) console.log(square);
 * ```
 */
export class IMapIterator<T> implements AsyncIterableIterator<T> {
  readonly #ordered: boolean;
  /** Ordered: results by index; unordered: in arrival order. */
  readonly #ready = new Map<number, Outcome<T>>();
  readonly #arrived: Array<Outcome<T>> = [];
  #nextIndex = 0;
  /** The number of results, once the input has ended. */
  #length: number | null = null;
  #yielded = 0;
  #skippedPlaces = 0;
  #failure: Outcome<T> | null = null;
  #waiter: ((result: IteratorResult<T>) => void) | null = null;
  #waiterError: ((error: unknown) => void) | null = null;
  #feed: IMapFeed | null = null;
  #finished = false;

  /** @internal */
  constructor(ordered: boolean) {
    this.#ordered = ordered;
  }

  /** Connects the pool's feeder. @internal */
  _attach(feed: IMapFeed): void {
    this.#feed = feed;
  }

  /** The results of chunk `index`, whose first item is item `first` of the input. @internal */
  _setChunk(first: number, values: readonly T[]): void {
    for (let i = 0; i < values.length; i++) this.#push(first + i, { ok: true, value: values[i] });
    this.#wake();
  }

  /** Chunk starting at item `first` failed: its first item carries the error. @internal */
  _setError(first: number, size: number, error: unknown): void {
    this.#push(first, { ok: false, error });
    // Python's IMapIterator counts the whole failed chunk as one result: the items after the first are skipped.
    for (let i = 1; i < size; i++) this.#skip(first + i);
    this.#wake();
  }

  /** The input ended after `length` items. @internal */
  _setLength(length: number): void {
    this.#length = length;
    this.#wake();
  }

  /** The whole call failed (aborted, timed out, pool terminated): the next `next()` rejects. @internal */
  _fail(error: unknown): void {
    if (this.#failure === null) this.#failure = { ok: false, error };
    this.#wake();
  }

  #skip(index: number): void {
    // A skipped place needs no consumer: it counts as taken at once, or the
    // pool's window (submitted - taken) would shrink with every failed chunk.
    this.#skippedPlaces++;
    if (this.#ordered) this.#ready.set(index, SKIPPED as Outcome<T>);
    else this.#arrived.push(SKIPPED as Outcome<T>);
  }

  #push(index: number, outcome: Outcome<T>): void {
    if (this.#ordered) this.#ready.set(index, outcome);
    else this.#arrived.push(outcome);
  }

  /** The next outcome ready to be yielded, skipping the tail of failed chunks. */
  #take(): Outcome<T> | 'done' | null {
    for (;;) {
      let outcome: Outcome<T> | undefined;
      if (this.#ordered) {
        outcome = this.#ready.get(this.#nextIndex);
        if (outcome !== undefined) {
          this.#ready.delete(this.#nextIndex);
          this.#nextIndex++;
        }
      } else {
        outcome = this.#arrived.shift();
        if (outcome !== undefined) this.#nextIndex++;
      }
      if (outcome === undefined) {
        if (this.#failure !== null) return this.#failure;
        return this.#length !== null && this.#nextIndex >= this.#length ? 'done' : null;
      }
      if (outcome !== SKIPPED) return outcome;
    }
  }

  #wake(): void {
    if (this.#waiter === null) return;
    const taken = this.#take();
    if (taken === null) return;
    const [resolve, reject] = [this.#waiter, this.#waiterError];
    this.#waiter = null;
    this.#waiterError = null;
    this.#deliver(taken, resolve, reject as (error: unknown) => void);
  }

  #deliver(taken: Outcome<T> | 'done', resolve: (result: IteratorResult<T>) => void, reject: (error: unknown) => void): void {
    if (taken === 'done') {
      this.#finish();
      resolve({ done: true, value: undefined });
      return;
    }
    if (taken === this.#failure) this.#finish();
    else {
      this.#yielded++;
      this.#feed?.consumed();
    }
    if (taken.ok) resolve({ done: false, value: taken.value });
    else reject(taken.error);
  }

  #finish(): void {
    this.#finished = true;
  }

  /**
   * The next result: `{ done: true }` after the last; rejects with the error
   * of a failed task (iteration may go on after it), or with
   * `mp.TimeoutError` when none is ready within `timeout` milliseconds.
   */
  next(timeout?: number | null): Promise<IteratorResult<T>> {
    const limit = validateTimeout(timeout);
    if (this.#finished) return Promise.resolve({ done: true, value: undefined });
    if (this.#waiter !== null) return Promise.reject(new Error('next() called again before the previous call settled'));
    const taken = this.#take();
    return new Promise((resolve, reject) => {
      if (taken !== null) {
        this.#deliver(taken, resolve, reject);
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      this.#waiter = (result) => {
        if (timer !== undefined) clearTimeout(timer);
        resolve(result);
      };
      this.#waiterError = (error) => {
        if (timer !== undefined) clearTimeout(timer);
        reject(error);
      };
      if (limit !== null) {
        timer = setTimeout(() => {
          this.#waiter = null;
          this.#waiterError = null;
          reject(new TimeoutError(`no result within ${limit} ms`));
        }, limit);
      }
    });
  }

  /** Stops early: the tasks not yet run are dropped (a `break` out of `for await` calls this). */
  return(): Promise<IteratorResult<T>> {
    if (!this.#finished) {
      this.#finished = true;
      this.#feed?.cancel();
    }
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** How many places of the input the consumer is done with: results handed over, and the places skipped after a failed chunk's first. @internal */
  get _yielded(): number {
    return this.#yielded + this.#skippedPlaces;
  }

  /**
   * The feeder's window rule (mp.Pool's imap and the cluster Pool's): having read `read` items of the input, it may
   * read more while fewer than `limit` of them wait for the consumer. @internal
   */
  _hasRoom(read: number, limit: number): boolean {
    return read - this._yielded < limit;
  }
}

/** The place of an item of a failed chunk after its first (Python skips them). */
const SKIPPED: Outcome<unknown> = { ok: true, value: undefined };
