/**
 * Helpers of the synchronisation tests (test/40.*): blocking sleeps for
 * children, timeout checks with generous upper margins (a shared, noisy
 * machine), and the proof that an async wait left the event loop running.
 */
import * as mp from '..';
import { forkChild } from './helpers';

/** Blocks this thread for `ms`: a child's way to hold something for a while. */
/**
 * The time limit of a wait that must end by a wake-up: it only keeps a lost
 * wake-up from hanging the suite, so it is long (these machines slow down up
 * to 10x without warning); a wait that must time out says so with its own.
 */
export const HANG_GUARD_MS = 60000;

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Polls `condition` every 5 ms, blocking, for 60 s at most (a hang guard); returns its last value. */
export function untilSync(condition: () => boolean): boolean {
  const deadline = performance.now() + HANG_GUARD_MS;
  while (!condition() && performance.now() < deadline) sleepSync(5);
  return condition();
}

/**
 * Runs `wait` (sync or async), which should give up after `timeout` ms:
 * expects it not to give up sooner (timer granularity aside). How much later
 * it returns is the machine's load, not the library's: a wait that never
 * gives up fails by the test's own timeout. Returns what it returned.
 */
export async function givesUpAfter<T>(timeout: number, wait: () => T | Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await wait();
  expect(performance.now() - start).toBeGreaterThanOrEqual(timeout - 5);
  return result;
}

/**
 * Awaits `wait` while a 10 ms interval ticks; expects the interval to have
 * run meanwhile (the event loop was not blocked): once a wait has lasted
 * 100 ms, the timers phase before the one that delivers its end runs the
 * interval at least once, however loaded the machine. Returns the result and
 * how long the wait took.
 */
export async function withLoopRunning<T>(wait: () => Promise<T>): Promise<{ result: T; waited: number }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const start = performance.now();
  try {
    const result = await wait();
    const waited = performance.now() - start;
    if (waited >= 100) expect(ticks).toBeGreaterThanOrEqual(1);
    return { result, waited };
  } finally {
    clearInterval(timer);
  }
}

/** Forks a child that holds `lock` for `ms`, and returns once it holds it. */
export function holdInChild(lock: mp.Lock | mp.RLock, ms: number): number {
  const held = new mp.Event();
  const pid = forkChild(() => {
    lock.acquireSync();
    held.set();
    sleepSync(ms);
    lock.release();
    return 0;
  });
  expect(held.waitSync(10000)).toBe(true);
  return pid;
}

/**
 * Forks `n` children that start `body(child)` together (on an Event set once
 * all are forked), so that they really contend; returns their pids.
 */
export function forkTogether(n: number, body: (child: number) => void): number[] {
  const go = new mp.Event();
  const pids = Array.from({ length: n }, (_, child) =>
    forkChild(() => {
      go.waitSync();
      body(child);
      return 0;
    }),
  );
  go.set();
  return pids;
}
