/**
 * How a node runs chunks: on a local mp.Pool of the node's processes, one
 * pool per client setup (initializer, initargs, maxtasksperchild). A chunk is
 * one task of that pool (as a chunk of mp.Pool's `map` is one task of a
 * worker): a process runs its items one after the other, the node keeps its
 * processes busy with several chunks at once.
 * @internal
 */
import { getAllStartMethods, getContext } from '../context';
import type * as PoolModule from '../pool';
import type { Reference } from '../reference';
import { runChunk } from './chunk';
import type { DirectReply } from './replies';
import type { JobResult } from './wire';

export type Task = (...args: never[]) => unknown;

/** What every task of a client's pool runs first, and how long its processes live. */
export interface ResolvedSetup {
  initializer: Task | null;
  initargs: unknown[];
  maxtasksperchild: number | null;
}

export interface Executor {
  /**
   * Runs the chunk's tasks (`fn`: the node's reference to the task, `items`
   * in their wire encoding) in a process of the pool: resolves with the
   * chunk's result or first task error, or `{ replied: true }` when the
   * process published it on `reply` itself; rejects with `WorkerLostError`
   * when the process died in it, or when `signal` aborts (the process is
   * killed and replaced).
   */
  run(fn: Reference, items: string, star: boolean, signal: AbortSignal, reply: DirectReply | null): Promise<JobResult>;
  /** Lets running chunks finish, then ends the pool's processes. */
  close(): Promise<void>;
}

/**
 * A local mp.Pool of `processes` processes of the forkserver start method
 * (spawn where there is none). Not fork: a forked process would inherit the
 * node's Redis sockets and its event loop would serve them too, stealing the
 * node's replies. The fork server is a fresh process: its children load the
 * task modules (by reference) themselves.
 */
export function localPoolExecutor(setup: ResolvedSetup, processes: number): Executor {
  // Loaded here: a client process of the cluster Pool never loads the process pool (nor the addon).
  const { Pool } = require('../pool') as typeof PoolModule;
  const pool = new Pool({
    processes,
    initializer: setup.initializer as ((...args: unknown[]) => unknown) | null,
    initargs: setup.initargs,
    maxtasksperchild: setup.maxtasksperchild,
    context: getContext(getAllStartMethods().includes('forkserver') ? 'forkserver' : 'spawn'),
  });
  return {
    // With maxtasksperchild, processes come and go: each would connect to Redis for a few replies.
    run: (fn, items, star, signal, reply) => pool.apply(runChunk, [fn, items, star, setup.maxtasksperchild === null ? reply : null], { signal }),
    async close() {
      pool.close();
      await pool.join();
    },
  };
}
