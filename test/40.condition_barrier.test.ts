/**
 * Condition and Barrier across real forked processes. Children do their work
 * with the Sync twins and leave through _exit.
 */
import * as mp from '..';
import { HANG_GUARD_MS, givesUpAfter, sleepersOf, untilSleepers, untilSync, whileLoopRuns } from './40.helpers';
import { exitcodeOf, forkChild } from './helpers';

describe('Condition', () => {
  test('notify() wakes a process waiting in waitFor', () => {
    const condition = new mp.Condition();
    const ready = mp.RawValue('i', 0);
    const pid = forkChild(() => {
      condition.acquireSync();
      const seen = condition.waitForSync(() => ready.value === 1, HANG_GUARD_MS);
      condition.release();
      return seen ? 0 : 1;
    });
    untilSleepers(condition, 1);
    condition.acquireSync();
    ready.value = 1;
    condition.notify();
    condition.release();
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('notify(1) wakes exactly one of three waiting processes; notifyAll() the rest', () => {
    const condition = new mp.Condition(new mp.Lock());
    const woken = mp.RawValue('i', 0);
    const children = Array.from({ length: 3 }, () =>
      forkChild(() => {
        condition.acquireSync();
        const notified = condition.waitSync(HANG_GUARD_MS);
        woken.value += 1; // under the lock, taken again by wait
        condition.release();
        return notified ? 0 : 1;
      }),
    );
    untilSleepers(condition, 3);
    condition.acquireSync();
    condition.notify(1);
    expect(sleepersOf(condition)).toBe(2); // exactly one taken off, at once
    condition.release();
    expect(untilSync(() => woken.value === 1)).toBe(true);
    expect(sleepersOf(condition)).toBe(2);
    condition.acquireSync();
    condition.notifyAll();
    condition.release();
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0]);
    expect(woken.value).toBe(3);
  });

  test('a notification is for those waiting when it was made, not for a later waiter', () => {
    const condition = new mp.Condition();
    const pid = forkChild(() => {
      condition.acquireSync();
      const notified = condition.waitSync(HANG_GUARD_MS);
      condition.release();
      return notified ? 0 : 1;
    });
    untilSleepers(condition, 1);
    condition.acquireSync();
    condition.notify(1);
    // We wait right after notifying, before the child can take its turn: the
    // notification is the child's, so we time out and the child wakes.
    expect(condition.waitSync(300)).toBe(false);
    condition.release();
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('the parent waits asynchronously: a child notifies, the loop ran meanwhile', async () => {
    const [condition, loopRan] = [new mp.Condition(), new mp.Event()];
    const value = mp.RawValue('i', 0);
    // The child notifies only once a timer of the parent's has run while it waits.
    const pid = forkChild(() => {
      loopRan.waitSync(HANG_GUARD_MS);
      condition.acquireSync();
      value.value = 42;
      condition.notifyAll();
      condition.release();
      return 0;
    });
    const result = await whileLoopRuns(loopRan, async () => {
      await condition.acquire();
      const seen = await condition.waitFor(() => value.value === 42 && value.value, HANG_GUARD_MS);
      condition.release();
      return seen;
    });
    expect(result).toBe(42);
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('wait(timeout) returns false after the timeout (±50 ms), with the lock held again', async () => {
    const condition = new mp.Condition();
    condition.acquireSync();
    expect(await givesUpAfter(200, () => condition.waitSync(200))).toBe(false);
    expect(await givesUpAfter(200, () => condition.wait(200))).toBe(false);
    expect(condition.waitForSync(() => false, 100)).toBe(false);
    const probe = forkChild(() => (condition.acquireSync({ block: false }) ? 1 : 0));
    expect(exitcodeOf(probe)).toBe(0); // held by us again after each wait
    condition.release();
    expect(() => condition.waitSync(-1)).toThrow(RangeError);
  });

  test('notifyAll() racing waiters whose time runs out (they withdraw without the lock) never fails', () => {
    // A waiter that withdrew between notify's scan of the slots and its look
    // at one left a 0 there, which notify took for a thread to check (and threw).
    const condition = new mp.Condition();
    const stop = mp.Value('i', 0, { lock: false });
    const children = Array.from({ length: 6 }, () =>
      forkChild(() => {
        while (stop.value === 0) {
          condition.acquireSync();
          condition.waitSync(1);
          condition.release();
        }
        return 0;
      }),
    );
    try {
      for (let i = 0; i < 30000; i++) {
        condition.acquireSync();
        try {
          condition.notifyAll();
        } finally {
          condition.release();
        }
      }
    } finally {
      stop.value = 1;
    }
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  test('an RLock held several times is released completely by wait and restored after', () => {
    const lock = new mp.RLock();
    const condition = new mp.Condition(lock);
    condition.acquireSync();
    condition.acquireSync();
    const pid = forkChild(() => {
      const took = condition.acquireSync({ timeout: HANG_GUARD_MS }); // possible only while the parent waits
      condition.notify();
      condition.release();
      return took ? 0 : 1;
    });
    expect(condition.waitSync(HANG_GUARD_MS)).toBe(true);
    expect(exitcodeOf(pid)).toBe(0);
    lock.release();
    lock.release();
    expect(() => lock.release()).toThrow();
  });

  test('wait and notify without the lock throw; a bad lock gets a TypeError', async () => {
    const condition = new mp.Condition();
    expect(() => condition.waitSync(10)).toThrow(/un-acquired lock/);
    await expect(condition.wait(10)).rejects.toThrow(/un-acquired lock/);
    expect(() => condition.notify()).toThrow(/un-acquired lock/);
    expect(() => condition.notifyAll()).toThrow(/un-acquired lock/);
    expect(() => new mp.Condition({} as mp.Lock)).toThrow(TypeError);
    condition.acquireSync();
    expect(() => condition.notify(-1)).toThrow(RangeError);
    condition.notify(); // nobody waits: nothing happens
    condition.release();
  });
});

describe('Barrier', () => {
  test('3 processes: distinct indices, the action runs once, before anyone leaves', async () => {
    const actions = mp.RawValue('i', 0);
    const barrier = new mp.Barrier(3, { action: () => (actions.value += 1) });
    const loopRan = new mp.Event();
    // The children come to the barrier only once a timer of the parent's has run while it waits there.
    const children = Array.from({ length: 2 }, () =>
      forkChild(() => {
        loopRan.waitSync(HANG_GUARD_MS);
        const index = barrier.waitSync(HANG_GUARD_MS);
        return actions.value === 1 ? 10 + index : 1;
      }),
    );
    const index = await whileLoopRuns(loopRan, () => barrier.wait(HANG_GUARD_MS));
    expect(actions.value).toBe(1);
    const indices = [index, ...children.map((pid) => exitcodeOf(pid) - 10)];
    expect(indices.sort()).toEqual([0, 1, 2]);
    expect(barrier.broken).toBe(false);
    expect(barrier.nWaiting).toBe(0);
    expect(barrier.parties).toBe(3);
  });

  test('parties may be async functions of one process, beside another process', async () => {
    const barrier = new mp.Barrier(3);
    const pid = forkChild(() => barrier.waitSync(HANG_GUARD_MS) + 10);
    const indices = await Promise.all([barrier.wait(HANG_GUARD_MS), barrier.wait(HANG_GUARD_MS)]);
    indices.push(exitcodeOf(pid) - 10);
    expect(indices.sort()).toEqual([0, 1, 2]);
  });

  test('is reusable: two rounds with the same parties', () => {
    const barrier = new mp.Barrier(2);
    const pid = forkChild(() => {
      barrier.waitSync(HANG_GUARD_MS);
      barrier.waitSync(HANG_GUARD_MS);
      return 0;
    });
    barrier.waitSync(HANG_GUARD_MS);
    barrier.waitSync(HANG_GUARD_MS);
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('3 processes x 200 rounds, each round well under its timeout', () => {
    const barrier = new mp.Barrier(3);
    const rounds = 200;
    const children = Array.from({ length: 2 }, () =>
      forkChild(() => {
        for (let i = 0; i < rounds; i++) barrier.waitSync(HANG_GUARD_MS);
        return 0;
      }),
    );
    for (let i = 0; i < rounds; i++) barrier.waitSync(HANG_GUARD_MS);
    // A round that ran out of its time would have broken the barrier.
    expect(children.map(exitcodeOf)).toEqual([0, 0]);
    expect(barrier.broken).toBe(false);
  });

  test('a timeout breaks it: BrokenBarrierError here and in the waiting process', async () => {
    const barrier = new mp.Barrier(3);
    const pid = forkChild(() => {
      try {
        barrier.waitSync(HANG_GUARD_MS);
        return 1;
      } catch (error) {
        return error instanceof mp.BrokenBarrierError ? 0 : 2;
      }
    });
    expect(untilSync(() => barrier.nWaiting === 1)).toBe(true);
    const failure = await givesUpAfter(200, () => barrier.wait(200).catch((error: unknown) => error));
    expect(failure).toBeInstanceOf(mp.BrokenBarrierError);
    expect(barrier.broken).toBe(true);
    expect(exitcodeOf(pid)).toBe(0);
    expect(() => barrier.waitSync()).toThrow(mp.BrokenBarrierError);
    barrier.reset();
    expect(barrier.broken).toBe(false);
  });

  test('the default timeout comes from the options', () => {
    const barrier = new mp.Barrier(2, { timeout: 150 });
    const start = performance.now();
    expect(() => barrier.waitSync()).toThrow(mp.BrokenBarrierError);
    expect(performance.now() - start).toBeGreaterThanOrEqual(145);
  });

  test('abort() from another process breaks it for the waiters', () => {
    const barrier = new mp.Barrier(2);
    const pid = forkChild(() => {
      untilSync(() => barrier.nWaiting === 1); // the parent waits
      barrier.abort();
      return 0;
    });
    expect(() => barrier.waitSync(HANG_GUARD_MS)).toThrow(mp.BrokenBarrierError);
    expect(exitcodeOf(pid)).toBe(0);
    expect(barrier.broken).toBe(true);
  });

  test('reset() while a process waits: it gets BrokenBarrierError, then the barrier works again', () => {
    const barrier = new mp.Barrier(2);
    const pid = forkChild(() => {
      try {
        barrier.waitSync(HANG_GUARD_MS);
        return 1;
      } catch (error) {
        if (!(error instanceof mp.BrokenBarrierError)) return 2;
      }
      return barrier.waitSync(HANG_GUARD_MS) >= 0 ? 0 : 3;
    });
    expect(untilSync(() => barrier.nWaiting === 1)).toBe(true);
    barrier.reset();
    expect(barrier.waitSync(HANG_GUARD_MS)).toBeGreaterThanOrEqual(0);
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('an action that throws breaks the barrier and the error reaches the last party', () => {
    const barrier = new mp.Barrier(1, {
      action: () => {
        throw new Error('action failed');
      },
    });
    expect(() => barrier.waitSync()).toThrow('action failed');
    expect(barrier.broken).toBe(true);
  });

  test('bad arguments get a TypeError or RangeError', () => {
    expect(() => new mp.Barrier(0)).toThrow(RangeError);
    expect(() => new mp.Barrier(1.5)).toThrow(TypeError);
    expect(() => new mp.Barrier(2, { timeout: -1 })).toThrow(RangeError);
    expect(() => new mp.Barrier(2, { action: 5 as unknown as () => void })).toThrow(TypeError);
    expect(() => new mp.Barrier(1).waitSync(-1)).toThrow(RangeError);
  });
});
