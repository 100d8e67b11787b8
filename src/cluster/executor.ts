/**
 * How a node runs the tasks of a chunk: behind one small interface, so that
 * the node's job handling does not depend on where the tasks run.
 * @internal
 */

export type Task = (...args: never[]) => unknown;

/** What every task of a client's pool runs first, and how long its processes live. */
export interface ResolvedSetup {
  initializer: Task | null;
  initargs: unknown[];
  maxtasksperchild: number | null;
}

export interface Executor {
  /**
   * The results of `task` on each of `items` (spread as arguments when `star`),
   * in order; rejects with the first task error, or when `signal` aborts.
   */
  map(task: Task, items: unknown[], star: boolean, signal: AbortSignal): Promise<unknown[]>;
  /** Lets running tasks finish, then releases the executor's processes. */
  close(): Promise<void>;
}

export type ExecutorFactory = (setup: ResolvedSetup, processes: number) => Promise<Executor>;

/**
 * Tasks run in the node's own process, one after the other: the stand-in until
 * the local mp.Pool serves the node (maxtasksperchild has no processes to
 * apply to; the initializer runs once).
 */
export const inProcessExecutor: ExecutorFactory = async (setup) => {
  if (setup.initializer !== null) await (setup.initializer as (...args: unknown[]) => unknown)(...setup.initargs);
  return {
    async map(task, items, star, signal) {
      const run = task as (...args: unknown[]) => unknown;
      const results: unknown[] = new Array(items.length);
      for (let i = 0; i < items.length; i++) {
        signal.throwIfAborted();
        const value = star ? run(...(items[i] as unknown[])) : run(items[i]);
        results[i] = value instanceof Promise ? await abortable(value, signal) : value;
      }
      return results;
    },
    async close() {},
  };
};

/** `promise`, or a rejection when `signal` aborts first (a task of this process cannot be stopped, only left). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
