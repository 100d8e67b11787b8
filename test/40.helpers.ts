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
 * The processes asleep on `primitive` (its second shared word: an Event's or
 * Semaphore's sleepers, a Condition's waiters not yet notified). A waiter
 * counts itself only after it has read the state it sleeps on, so once it is
 * counted, a change of state reaches it: the tests wait for this, not for
 * time, before they set, release or notify.
 */
export function sleepersOf(primitive: mp.Event | mp.Semaphore | mp.Condition): number {
  return Atomics.load((primitive as unknown as { _words: Int32Array })._words, 1);
}

/** Blocks until `n` processes sleep on `primitive` (60 s at most: a hang guard); expects exactly `n`. */
export function untilSleepers(primitive: mp.Event | mp.Semaphore | mp.Condition, n: number): void {
  expect(untilSync(() => sleepersOf(primitive) >= n)).toBe(true);
  expect(sleepersOf(primitive)).toBe(n);
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
 * Proves, by events and not by time, that the async wait `wait` leaves the
 * event loop running: starts it, then sets `loopRan` from a timer of this
 * process. The caller makes the process that ends the wait wait for
 * `loopRan` first, so a wait that blocked the loop could never end (it fails
 * by its hang guard instead). Returns what the wait returned.
 */
export async function whileLoopRuns<T>(loopRan: mp.Event, wait: () => Promise<T>): Promise<T> {
  const waiting = wait();
  const timer = setTimeout(() => loopRan.set(), 10);
  try {
    const result = await waiting;
    expect(loopRan.isSet()).toBe(true);
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** A child process that holds a lock (see holdInChild). */
export interface Holder {
  readonly pid: number;
  /** Whether the child has released the lock (it says so just before). */
  released(): boolean;
  /** Tells a child that holds until told to release the lock. */
  letGo(): void;
}

/**
 * Forks a child that takes `lock` and returns once it holds it. The child
 * releases it on `letGo()`, or, given `ms`, after that long (for a parent
 * that blocks meanwhile and so cannot tell it): tests check the order of
 * events with `released()`, not the time a wait took.
 */
export function holdInChild(lock: mp.Lock | mp.RLock, ms?: number): Holder {
  const [held, letGo] = [new mp.Event(), new mp.Event()];
  const released = mp.RawValue('i', 0);
  const pid = forkChild(() => {
    lock.acquireSync();
    held.set();
    if (ms === undefined) letGo.waitSync(HANG_GUARD_MS);
    else sleepSync(ms);
    released.value = 1;
    lock.release();
    return 0;
  });
  expect(held.waitSync(HANG_GUARD_MS)).toBe(true);
  return { pid, released: () => released.value === 1, letGo: () => letGo.set() };
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
