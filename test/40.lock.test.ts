/**
 * Lock and RLock across real forked processes, on process-shared futexes in
 * the shared heap. Children forked inside jest do their work and leave at once
 * through _exit (forkChild); they block with the Sync twins, the parent also
 * waits with the async ones while its event loop keeps running.
 */
import * as mp from '..';
import { HANG_GUARD_MS, forkTogether, givesUpAfter, holdInChild, whileLoopRuns } from './40.helpers';
import { exitcodeOf, forkChild } from './helpers';

describe('Lock', () => {
  test('a counter incremented under a Lock by 4 processes x 10,000 ends exact', () => {
    const lock = new mp.Lock();
    const counter = mp.RawValue('i', 0);
    const children = forkTogether(4, () => {
      for (let i = 0; i < 10000; i++) {
        lock.acquireSync();
        counter.value = counter.value + 1; // a read and a write: only the lock makes it atomic
        lock.release();
      }
    });
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0, 0]);
    expect(counter.value).toBe(40000);
  });

  test('a counter incremented under Value.getLock() (an RLock) by 4 processes x 10,000 ends exact', () => {
    const value = mp.Value('i', 0);
    const children = forkTogether(4, () => {
      for (let i = 0; i < 10000; i++) {
        value.getLock().acquireSync();
        value.value += 1;
        value.getLock().release();
      }
    });
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0, 0]);
    expect(value.value).toBe(40000);
  });

  test('no lost wake-up under contention with every way to acquire mixed (4 processes)', () => {
    const lock = new mp.Lock();
    const counter = mp.RawValue('i', 0);
    const children = forkTogether(4, (child) => {
      for (let i = 0; i < 5000; i++) {
        const way = (i + child) % 3;
        if (way === 1 && !lock.acquireSync({ block: false })) lock.acquireSync();
        else if (way === 2 && !lock.acquireSync({ timeout: 1 })) lock.acquireSync();
        else if (way === 0) lock.acquireSync();
        counter.value = counter.value + 1;
        lock.release();
      }
    });
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0, 0]);
    expect(counter.value).toBe(20000);
    expect(lock.acquireSync({ block: false })).toBe(true);
  });

  test('RLock: 4 processes x 5,000 recursive acquisitions keep a counter exact', () => {
    const lock = new mp.RLock();
    const counter = mp.RawValue('i', 0);
    const children = forkTogether(4, () => {
      for (let i = 0; i < 5000; i++) {
        lock.acquireSync();
        lock.acquireSync();
        counter.value = counter.value + 1;
        lock.release();
        lock.release();
      }
    });
    expect(children.map(exitcodeOf)).toEqual([0, 0, 0, 0]);
    expect(counter.value).toBe(20000);
  });

  test('held in one process, it is held in the other; released there, it is free here', () => {
    const lock = new mp.Lock();
    lock.acquireSync();
    const pid = forkChild(() => (lock.acquireSync({ block: false }) ? 1 : 0) + (lock.acquireSync({ timeout: 20 }) ? 2 : 0));
    expect(exitcodeOf(pid)).toBe(0);
    const releaser = forkChild(() => {
      lock.release(); // a Lock has no owner: any process may release it, as in Python
      return 0;
    });
    expect(exitcodeOf(releaser)).toBe(0);
    expect(lock.acquireSync({ block: false })).toBe(true);
    lock.release();
  });

  test('acquireSync waits for the holder to release it', () => {
    const lock = new mp.Lock();
    const holder = holdInChild(lock, 300);
    expect(lock.acquireSync()).toBe(true);
    expect(holder.released()).toBe(true);
    lock.release();
    expect(exitcodeOf(holder.pid)).toBe(0);
  });

  test('acquireSync({ timeout }) gives up after the timeout (±50 ms)', async () => {
    const lock = new mp.Lock();
    const holder = holdInChild(lock);
    expect(await givesUpAfter(250, () => lock.acquireSync({ timeout: 250 }))).toBe(false);
    expect(lock.acquireSync({ block: false })).toBe(false);
    holder.letGo();
    expect(exitcodeOf(holder.pid)).toBe(0);
  });

  test('acquire(), with or without a timeout, waits without blocking the event loop', async () => {
    for (const timeout of [undefined, HANG_GUARD_MS]) {
      const lock = new mp.Lock();
      const [held, loopRan] = [new mp.Event(), new mp.Event()];
      // The child releases only once a timer of the parent's has run while it waits.
      const pid = forkChild(() => {
        lock.acquireSync();
        held.set();
        loopRan.waitSync(HANG_GUARD_MS);
        lock.release();
        return 0;
      });
      expect(held.waitSync(HANG_GUARD_MS)).toBe(true);
      expect(await whileLoopRuns(loopRan, () => lock.acquire({ timeout }))).toBe(true);
      lock.release();
      expect(exitcodeOf(pid)).toBe(0);
    }
  });

  test('acquire({ timeout }) resolves to false after the timeout (±50 ms)', async () => {
    const lock = new mp.Lock();
    const holder = holdInChild(lock);
    expect(await givesUpAfter(250, () => lock.acquire({ timeout: 250 }))).toBe(false);
    expect(await lock.acquire({ block: false })).toBe(false);
    holder.letGo();
    expect(exitcodeOf(holder.pid)).toBe(0);
    expect(await lock.acquire({ block: false })).toBe(true);
  });

  test('several async waiters in one process get the lock one after the other', async () => {
    const lock = new mp.Lock();
    const holder = holdInChild(lock);
    const order: number[] = [];
    const waiters = [0, 1, 2].map(async (n) => {
      await lock.acquire();
      order.push(n);
      await new Promise((resolve) => setTimeout(resolve, 20));
      lock.release();
    });
    holder.letGo();
    await Promise.all(waiters);
    expect(order.sort()).toEqual([0, 1, 2]);
    expect(exitcodeOf(holder.pid)).toBe(0);
  });

  test('release of an unlocked Lock throws', () => {
    const lock = new mp.Lock();
    expect(() => lock.release()).toThrow(/release of an unlocked Lock/);
    lock.acquireSync();
    lock.release();
    expect(() => lock.release()).toThrow(Error);
  });

  test('bad options get a TypeError or RangeError naming them', async () => {
    const lock = new mp.Lock();
    expect(() => lock.acquireSync({ timeout: -1 })).toThrow(RangeError);
    expect(() => lock.acquireSync({ timeout: -1 })).toThrow(/options.timeout/);
    expect(() => lock.acquireSync({ timeout: 'soon' as unknown as number })).toThrow(TypeError);
    expect(() => lock.acquireSync({ block: 1 as unknown as boolean })).toThrow(/options.block/);
    expect(() => lock.acquireSync(null as unknown as mp.AcquireOptions)).toThrow(TypeError);
    await expect(lock.acquire({ timeout: -5 })).rejects.toThrow(RangeError);
    expect(lock.acquireSync({ block: false })).toBe(true); // the bad calls took nothing
  });
});

describe('RLock', () => {
  test('recursion: acquired n times by its owner, it is free after n releases, not before', () => {
    const lock = new mp.RLock();
    expect(lock.acquireSync()).toBe(true);
    expect(lock.acquireSync()).toBe(true);
    expect(lock.acquireSync({ block: false })).toBe(true);
    const probe = () => forkChild(() => (lock.acquireSync({ block: false }) ? 1 : 0));
    lock.release();
    lock.release();
    expect(exitcodeOf(probe())).toBe(0); // still held once
    lock.release();
    expect(exitcodeOf(probe())).toBe(1); // free: the child could take it
    expect(() => lock.release()).toThrow(/un-acquired/);
  });

  test('released by a process that does not own it: throws, and the lock stays held', () => {
    const lock = new mp.RLock();
    lock.acquireSync();
    const pid = forkChild(() => {
      try {
        lock.release();
        return 1;
      } catch (error) {
        return /not held by this thread/.test((error as Error).message) ? 0 : 2;
      }
    });
    expect(exitcodeOf(pid)).toBe(0);
    const probe = forkChild(() => (lock.acquireSync({ block: false }) ? 1 : 0));
    expect(exitcodeOf(probe)).toBe(0);
    lock.release();
  });

  test('another process waits until every level is released', async () => {
    const lock = new mp.RLock();
    const holder = holdInChild(lock);
    const acquiring = lock.acquire({ timeout: HANG_GUARD_MS });
    holder.letGo();
    expect(await acquiring).toBe(true);
    expect(holder.released()).toBe(true);
    expect(await lock.acquire()).toBe(true); // recursion through the async path too
    lock.release();
    lock.release();
    expect(() => lock.release()).toThrow();
    expect(exitcodeOf(holder.pid)).toBe(0);
  });

  test('acquireSync({ timeout }) gives up after the timeout (±50 ms)', async () => {
    const lock = new mp.RLock();
    const holder = holdInChild(lock);
    expect(await givesUpAfter(200, () => lock.acquireSync({ timeout: 200 }))).toBe(false);
    holder.letGo();
    expect(exitcodeOf(holder.pid)).toBe(0);
  });
});
