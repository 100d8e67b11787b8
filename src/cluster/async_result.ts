/**
 * The result of an `applyAsync`/`mapAsync` call of a cluster pool, with
 * `multiprocessing.pool.AsyncResult`'s methods.
 * @packageDocumentation
 */
import { TimeoutError } from '../errors';
import { validateTimeout } from '../validate';

export class AsyncResult<T> {
  private state: { done: false } | { done: true; ok: true; value: T } | { done: true; ok: false; error: unknown } = { done: false };
  private readonly settled: Promise<void>;

  /** @internal */
  constructor(promise: Promise<T>, callback?: (value: T) => void, errorCallback?: (error: unknown) => void) {
    this.settled = promise.then(
      (value) => {
        this.state = { done: true, ok: true, value };
        callback?.(value);
      },
      (error: unknown) => {
        this.state = { done: true, ok: false, error };
        errorCallback?.(error);
      },
    );
  }

  /** The result; rejects with the task's error, or with `TimeoutError` after `timeout` ms. */
  async get(timeout?: number | null): Promise<T> {
    if (!(await this.wait(timeout))) throw new TimeoutError(`the result was not ready within ${timeout} ms`);
    const state = this.state as Exclude<typeof this.state, { done: false }>;
    if (!state.ok) throw state.error;
    return state.value;
  }

  /** Waits until the result is ready or `timeout` ms passed; resolves to `ready()`. */
  async wait(timeout?: number | null): Promise<boolean> {
    const ms = validateTimeout(timeout);
    if (this.state.done) return true;
    if (ms === null) {
      await this.settled;
      return true;
    }
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    await Promise.race([this.settled, expired]);
    clearTimeout(timer);
    return this.state.done;
  }

  /** Whether the call has completed. */
  ready(): boolean {
    return this.state.done;
  }

  /** Whether the call completed without an error; throws an Error if it is not ready yet. */
  successful(): boolean {
    if (!this.state.done) throw new Error('successful(): the result is not ready yet');
    return this.state.ok;
  }
}
