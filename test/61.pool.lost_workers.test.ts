/**
 * mp.Pool when its workers die: SIGKILLed at random during 10,000 tasks, before
 * they said hello, while the pool closes or terminates. Every call settles
 * (a value, or WorkerLostError for the task a dead worker held), nothing
 * hangs, nothing is lost, and no zombie or descriptor is left after join().
 * Kills are driven by events (a result arriving, a worker started), never by
 * timers.
 */
import * as mp from '..';
import { fdCount, zombieChildren } from './helpers';
import { waitFor } from './fixtures/process_helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const tasks = require('./fixtures/pool_tasks.js') as {
  square(x: number): number;
  pid(): number;
  exitWith(code: number): never;
};

const NO_ADDON = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1';
const methods = mp.getAllStartMethods();

jest.setTimeout(300_000);

/** A small seeded PRNG (mulberry32): the same kills on every run. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** The pids of this process's live pool workers. */
function workerPids(): number[] {
  return mp
    .activeChildren()
    .filter((child) => child.name.includes('PoolWorker'))
    .map((child) => child.pid as number);
}

/** Resolves once the pool has ended and left no zombie. */
async function joined(pool: mp.Pool): Promise<void> {
  await pool.join();
  expect(await waitFor(() => zombieChildren().length === 0, 60000)).toBe(true);
}

(NO_ADDON ? test.skip : test)('10,000 tasks with workers SIGKILLed at random during them: each succeeds or rejects with WorkerLostError', async () => {
  const fds = fdCount();
  const pool = new mp.Pool(4);
  const next = random(10);
  const killed = new Set<number>();
  let results = 0;
  const lost: mp.WorkerLostError[] = [];
  const calls: Promise<void>[] = [];
  for (let i = 0; i < 10000; i++) {
    calls.push(
      pool.apply(tasks.pid).then(
        (pid) => {
          results++;
          // About one result in 300: its worker is killed (it runs its next task by now, or is idle).
          if (next() < 1 / 300) {
            killed.add(pid);
            killQuietly(pid);
          }
        },
        (error: unknown) => {
          lost.push(error as mp.WorkerLostError);
        },
      ),
    );
  }
  await Promise.all(calls);
  expect(results + lost.length).toBe(10000);
  expect(killed.size).toBeGreaterThan(10);
  expect(lost.length).toBeGreaterThan(0);
  for (const error of lost) {
    expect(error).toBeInstanceOf(mp.WorkerLostError);
    expect(error.signal).toBe('SIGKILL');
    expect(killed.has(error.pid as number)).toBe(true);
  }
  pool.close();
  await joined(pool);
  expect(fdCount()).toBe(fds);
});

describe.each(methods)('lost workers under %s', (method) => {
  const ctx = mp.getContext(method);

  test('workers killed as they start are replaced; the calls run', async () => {
    const pool = new ctx.Pool(2);
    try {
      // The pool starts its workers from an immediate: once it has run, they exist.
      await new Promise((resolve) => setImmediate(resolve));
      const first = workerPids();
      expect(first.length).toBe(2);
      first.forEach(killQuietly);
      // A killed worker may have said hello already and be given a task before its end is seen.
      const outcomes = await Promise.all(
        [1, 2, 3, 4].map((x) => pool.apply(tasks.square, [x]).catch((error: unknown) => (error instanceof mp.WorkerLostError ? 'lost' : error))),
      );
      expect(outcomes.filter((outcome) => outcome !== 'lost')).toEqual([1, 4, 9, 16].filter((_, i) => outcomes[i] !== 'lost'));
      expect(await pool.map(tasks.square, [1, 2, 3, 4, 5, 6], 1)).toEqual([1, 4, 9, 16, 25, 36]);
      // A SIGKILLed process ends when the kernel next runs it, and the calls may all have run on
      // replacements by then (a loaded machine): wait for the killed ones to be gone.
      expect(await waitFor(() => !workerPids().some((pid) => first.includes(pid)))).toBe(true);
    } finally {
      pool.terminate();
      await joined(pool);
    }
  });

  test('workers that keep ending before they are ready break the pool: calls in progress and to come reject with a ProcessError naming the cause', async () => {
    const pool = new ctx.Pool({ processes: 2, initializer: tasks.exitWith as (...args: unknown[]) => never, initargs: [3] });
    try {
      const error = (await pool.apply(tasks.square, [2]).catch((thrown: unknown) => thrown)) as mp.ProcessError;
      expect(error).toBeInstanceOf(mp.ProcessError);
      expect(error.message).toMatch(/5 workers in a row ended before they were ready, the last: .* \(exit code 3\)/);
      expect(error.cause).toBeInstanceOf(mp.WorkerLostError);
      expect((error.cause as mp.WorkerLostError).exitCode).toBe(3);
      await expect(pool.apply(tasks.square, [3])).rejects.toThrow(/ended before they were ready/);
      // No fork loop: the workers still starting end, none replaces them.
      expect(await waitFor(() => workerPids().length === 0, 60000)).toBe(true);
    } finally {
      pool.terminate();
      await joined(pool);
    }
  });

  test.each(['close', 'terminate'] as const)('workers killed as the pool is told to %s: every call settles, join() reaps them all', async (how) => {
    const pool = new ctx.Pool(2);
    const outcomes: string[] = [];
    let told = false;
    const calls = Array.from({ length: 40 }, () =>
      pool.apply(tasks.pid).then(
        () => {
          outcomes.push('value');
          if (told) return;
          told = true;
          workerPids().forEach(killQuietly);
          pool[how]();
        },
        (error: unknown) => {
          outcomes.push(error instanceof mp.WorkerLostError ? 'lost' : (error as Error).message);
        },
      ),
    );
    await Promise.all(calls);
    expect(outcomes.length).toBe(40);
    const allowed = how === 'close' ? ['value', 'lost'] : ['value', 'lost', 'the pool was terminated'];
    expect(outcomes.filter((outcome) => !allowed.includes(outcome))).toEqual([]);
    await joined(pool);
    expect(workerPids()).toEqual([]);
  });
});
