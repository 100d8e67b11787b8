/**
 * Semaphore, BoundedSemaphore and Event across real forked processes.
 * Children do their work with the Sync twins and leave through _exit.
 */
import * as mp from '..';
import { HANG_GUARD_MS, forkTogether, givesUpAfter, sleepSync, untilSleepers, untilSync, whileLoopRuns } from './40.helpers';
import { exitcodeOf, forkChild } from './helpers';

describe('Semaphore', () => {
  test('counts across processes: never more than `value` holders at once', () => {
    const semaphore = new mp.Semaphore(2);
    const lock = new mp.Lock();
    const inside = mp.RawValue('i', 0);
    const most = mp.RawValue('i', 0);
    const children = forkTogether(5, () => {
      for (let round = 0; round < 3; round++) {
        semaphore.acquireSync();
        lock.acquireSync();
        inside.value += 1;
        most.value = Math.max(most.value, inside.value);
        lock.release();
        // Holds on until a second holder is in (it always comes: 5 children, 2 places).
        if (round === 0) untilSync(() => most.value >= 2);
        else sleepSync(20);
        lock.acquireSync();
        inside.value -= 1;
        lock.release();
        semaphore.release();
      }
    });
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0, 0, 0]);
    expect(most.value).toBe(2);
    expect(inside.value).toBe(0);
    expect(semaphore.getValue()).toBe(2);
  });

  test('getValue() follows acquire and release in every process', () => {
    const semaphore = new mp.Semaphore(3);
    expect(semaphore.getValue()).toBe(3);
    const pid = forkChild(() => {
      semaphore.acquireSync();
      semaphore.acquireSync();
      return semaphore.getValue();
    });
    expect(exitcodeOf(pid)).toBe(1);
    expect(semaphore.getValue()).toBe(1);
    semaphore.release();
    semaphore.release();
    semaphore.release(); // a plain Semaphore may go above its initial value
    expect(semaphore.getValue()).toBe(4);
  });

  test('at 0, acquire waits for a release in another process, without blocking the loop', async () => {
    const semaphore = new mp.Semaphore(0);
    const loopRan = new mp.Event();
    // The child releases only once a timer of the parent's has run while it waits.
    const pid = forkChild(() => {
      loopRan.waitSync(HANG_GUARD_MS);
      semaphore.release();
      return 0;
    });
    expect(await whileLoopRuns(loopRan, () => semaphore.acquire({ timeout: HANG_GUARD_MS }))).toBe(true);
    expect(semaphore.getValue()).toBe(0);
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('timeouts, sync and async; { block: false } answers at once', async () => {
    const semaphore = new mp.Semaphore(0);
    expect(await givesUpAfter(200, () => semaphore.acquireSync({ timeout: 200 }))).toBe(false);
    expect(await givesUpAfter(200, () => semaphore.acquire({ timeout: 200 }))).toBe(false);
    // A timeout longer than the test's: one that were waited for would fail the test.
    expect(semaphore.acquireSync({ block: false, timeout: 60_000 })).toBe(false);
    expect(semaphore.acquireSync({ timeout: 0 })).toBe(false);
    expect(() => semaphore.acquireSync({ timeout: -1 })).toThrow(RangeError);
  });

  test('a release wakes one sleeping process per count', () => {
    const semaphore = new mp.Semaphore(0);
    const children = Array.from({ length: 3 }, () => forkChild(() => (semaphore.acquireSync({ timeout: HANG_GUARD_MS }) ? 0 : 1)));
    untilSleepers(semaphore, 3);
    for (let i = 0; i < 3; i++) semaphore.release();
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0]);
    expect(semaphore.getValue()).toBe(0);
  });

  test('bad initial values get a TypeError or RangeError', () => {
    expect(() => new mp.Semaphore(-1)).toThrow(RangeError);
    expect(() => new mp.Semaphore(1.5)).toThrow(TypeError);
    expect(() => new mp.Semaphore('2' as unknown as number)).toThrow(TypeError);
    expect(new mp.Semaphore().getValue()).toBe(1);
  });
});

describe('BoundedSemaphore', () => {
  test('a release above the initial value throws, in any process', () => {
    const semaphore = new mp.BoundedSemaphore(2);
    expect(() => semaphore.release()).toThrow(/released too many times/);
    semaphore.acquireSync();
    const pid = forkChild(() => {
      semaphore.release();
      try {
        semaphore.release();
        return 1;
      } catch {
        return 0;
      }
    });
    expect(exitcodeOf(pid)).toBe(0);
    expect(semaphore.getValue()).toBe(2);
    expect(semaphore).toBeInstanceOf(mp.Semaphore);
  });
});

describe('Event', () => {
  test('a child sets it: the waiting parent wakes, its event loop ran meanwhile', async () => {
    const [event, loopRan] = [new mp.Event(), new mp.Event()];
    // The child sets it only once a timer of the parent's has run while it waits.
    const pid = forkChild(() => {
      loopRan.waitSync(HANG_GUARD_MS);
      event.set();
      return 0;
    });
    expect(await whileLoopRuns(loopRan, () => event.wait())).toBe(true);
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('set() wakes every waiting process; clear() makes wait() wait again', () => {
    const event = new mp.Event();
    const children = Array.from({ length: 3 }, () => forkChild(() => (event.waitSync(HANG_GUARD_MS) ? 0 : 1)));
    untilSleepers(event, 3);
    event.set();
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0]);
    event.clear();
    expect(event.isSet()).toBe(false);
    expect(event.waitSync(50)).toBe(false);
  });

  test('a waiter that sleeps through set() then clear() still returns true', () => {
    const event = new mp.Event();
    const pid = forkChild(() => (event.waitSync(HANG_GUARD_MS) ? 0 : 1));
    untilSleepers(event, 1);
    event.set();
    event.clear();
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('wait(timeout) resolves to false after the timeout; already set, true at once', async () => {
    const event = new mp.Event();
    expect(await givesUpAfter(200, () => event.wait(200))).toBe(false);
    expect(await givesUpAfter(200, () => event.waitSync(200))).toBe(false);
    event.set();
    // Longer than the test's timeout, or none: a wait here would fail the test.
    expect(await event.wait(60_000)).toBe(true);
    expect(event.waitSync()).toBe(true);
    expect(() => event.waitSync(-1)).toThrow(RangeError);
    await expect(event.wait(-1)).rejects.toThrow(RangeError);
  });
});
