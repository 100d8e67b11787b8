/**
 * Robust locks: a holder SIGKILLed at each known point of acquire, holding
 * and release. Each child signals the point it reached (an Event, or a shared
 * word the test can read) and then blocks for ever; the test kills it there
 * and checks what the survivors get. No sleeps: every wait is for an event.
 */
import * as mp from '..';
import { HANG_GUARD_MS, untilSync } from './40.helpers';
import { exitcodeOf, forkChild } from './helpers';

/** Blocks this thread for ever: the point where the test kills the child. */
function blockForever(): never {
  for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

/** Forks a child that runs `body`, signals `reached` and blocks; returns its pid once it has reached that point. */
function childStoppedAt(body: () => void): number {
  const reached = new mp.Event();
  const pid = forkChild(() => {
    body();
    reached.set();
    blockForever();
  });
  expect(reached.waitSync(HANG_GUARD_MS)).toBe(true);
  return pid;
}

function killAndReap(pid: number): void {
  mp.os.kill(pid, 'SIGKILL');
  expect(exitcodeOf(pid)).toBe(-9);
}

/** The first shared word of a primitive (its mutex, count or state). */
function wordsOf(primitive: object): Int32Array {
  return (primitive as { _words: Int32Array })._words;
}

/** Whether a mutex word has its sleepers bit set: a waiter is in its sleep loop. */
function hasSleeper(lock: mp.Lock | mp.RLock): boolean {
  return Atomics.load(wordsOf(lock), 0) < 0;
}

describe.each([
  ['Lock', () => new mp.Lock()],
  ['RLock', () => new mp.RLock()],
])('%s', (_name, make) => {
  test('holder killed while holding: acquireSync() gets it and says the owner died', () => {
    const lock = make();
    killAndReap(childStoppedAt(() => lock.acquireSync()));
    expect(lock.acquireSync({ timeout: 60000 })).toBe(true);
    expect(lock.ownerDied).toBe(true);
    lock.release();
    expect(lock.acquireSync()).toBe(true);
    expect(lock.ownerDied).toBe(false);
    lock.release();
  });

  test('holder killed while the parent already waits asynchronously: acquire() resolves', async () => {
    const lock = make();
    const pid = childStoppedAt(() => lock.acquireSync());
    const acquired = lock.acquire();
    expect(untilSync(() => hasSleeper(lock))).toBe(true);
    mp.os.kill(pid, 'SIGKILL');
    expect(await acquired).toBe(true);
    expect(lock.ownerDied).toBe(true);
    expect(exitcodeOf(pid)).toBe(-9);
    lock.release();
  });

  test('holder killed, not yet reaped (a zombie): its lock is free to take', () => {
    const lock = make();
    const pid = childStoppedAt(() => lock.acquireSync());
    mp.os.kill(pid, 'SIGKILL');
    expect(lock.acquireSync({ timeout: 60000 })).toBe(true);
    expect(lock.ownerDied).toBe(true);
    lock.release();
    expect(exitcodeOf(pid)).toBe(-9);
  });

  test('a try without blocking takes the lock of a dead holder', () => {
    const lock = make();
    killAndReap(childStoppedAt(() => lock.acquireSync()));
    expect(lock.acquireSync({ block: false })).toBe(true);
    expect(lock.ownerDied).toBe(true);
    lock.release();
  });

  test('a waiter killed while it sleeps in acquire takes nothing; the next waiter gets the lock', () => {
    const lock = make();
    lock.acquireSync();
    const waiter = forkChild(() => (lock.acquireSync() ? 3 : 4));
    expect(untilSync(() => hasSleeper(lock))).toBe(true);
    killAndReap(waiter);
    const next = forkChild(() => {
      const got = lock.acquireSync({ timeout: 60000 });
      const fresh = !lock.ownerDied;
      lock.release();
      return got && fresh ? 0 : 1;
    });
    lock.release();
    expect(exitcodeOf(next)).toBe(0);
    expect(lock.acquireSync({ block: false })).toBe(true);
    expect(lock.ownerDied).toBe(false);
    lock.release();
  });

  test('holder killed after its release: nothing died holding it', () => {
    const lock = make();
    killAndReap(
      childStoppedAt(() => {
        lock.acquireSync();
        lock.release();
      }),
    );
    expect(lock.acquireSync({ block: false })).toBe(true);
    expect(lock.ownerDied).toBe(false);
    lock.release();
  });

  test('a child forked while the parent holds the lock does not own it', () => {
    const lock = make();
    lock.acquireSync();
    const child = forkChild(() => (lock.acquireSync({ block: false }) ? 1 : 0));
    expect(exitcodeOf(child)).toBe(0);
    lock.release();
  });

  test('held by a worker thread that ends without releasing: the main thread gets it', async () => {
    const lock = make();
    const { Worker } = await import('node:worker_threads');
    const reduction = require('../dist/reduction') as typeof import('../src/reduction');
    const worker = new Worker(
      `const { workerData, parentPort } = require('node:worker_threads');
       const lock = require(${JSON.stringify(require.resolve('../dist/reduction'))}).loads(workerData);
       lock.acquireSync();
       parentPort.postMessage('held');
       parentPort.once('message', () => process.exit(0));`,
      { eval: true, workerData: reduction.dumps(lock) },
    );
    await new Promise((resolve) => worker.once('message', resolve));
    // Alive, the worker thread keeps it (its id is its own thread's, not the process's).
    expect(lock.acquireSync({ block: false })).toBe(false);
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.postMessage('go');
    await exited;
    expect(await lock.acquire({ timeout: 60000 })).toBe(true);
    expect(lock.ownerDied).toBe(true);
    lock.release();
  });
});

test('RLock: an owner killed at depth 2, and one killed after one of two releases: the next owner starts at depth 1', () => {
  const lock = new mp.RLock();
  for (const releases of [0, 1]) {
    killAndReap(
      childStoppedAt(() => {
        lock.acquireSync();
        lock.acquireSync();
        for (let i = 0; i < releases; i++) lock.release();
      }),
    );
    expect(lock.acquireSync({ timeout: 60000 })).toBe(true);
    expect(lock.ownerDied).toBe(true);
    lock.release();
    expect(() => lock.release()).toThrow(/un-acquired/);
  }
});

describe('Semaphore', () => {
  test('the counts of a holder killed while holding are given back, once', () => {
    const semaphore = new mp.BoundedSemaphore(3);
    killAndReap(
      childStoppedAt(() => {
        semaphore.acquireSync();
        semaphore.acquireSync();
      }),
    );
    expect(semaphore.getValue()).toBe(1);
    expect(semaphore.acquireSync()).toBe(true); // the one left: no recovery needed
    expect(semaphore.ownerDied).toBe(false);
    expect(semaphore.acquireSync({ timeout: 60000 })).toBe(true);
    expect(semaphore.ownerDied).toBe(true);
    expect(semaphore.getValue()).toBe(1);
    expect(semaphore.acquireSync({ block: false })).toBe(true);
    expect(semaphore.acquireSync({ block: false })).toBe(false);
    for (let i = 0; i < 3; i++) semaphore.release();
    expect(() => semaphore.release()).toThrow(/released too many times/);
  });

  test('a waiter killed while it sleeps takes nothing; a holder killed after its release gives nothing back twice', () => {
    const semaphore = new mp.BoundedSemaphore(1);
    killAndReap(
      childStoppedAt(() => {
        semaphore.acquireSync();
        semaphore.release();
      }),
    );
    expect(semaphore.getValue()).toBe(1);
    semaphore.acquireSync();
    const waiter = forkChild(() => (semaphore.acquireSync() ? 3 : 4));
    expect(untilSync(() => Atomics.load(wordsOf(semaphore), 1) === 1)).toBe(true); // it sleeps
    killAndReap(waiter);
    semaphore.release();
    expect(semaphore.getValue()).toBe(1);
    expect(semaphore.acquireSync({ block: false })).toBe(true);
    expect(semaphore.acquireSync({ block: false })).toBe(false);
    semaphore.release();
  });

  test('a parent waiting asynchronously gets the count of a holder killed meanwhile', async () => {
    const semaphore = new mp.Semaphore(1);
    const pid = childStoppedAt(() => semaphore.acquireSync());
    const acquired = semaphore.acquire();
    expect(untilSync(() => Atomics.load(wordsOf(semaphore), 1) === 1)).toBe(true);
    mp.os.kill(pid, 'SIGKILL');
    expect(await acquired).toBe(true);
    expect(semaphore.ownerDied).toBe(true);
    expect(exitcodeOf(pid)).toBe(-9);
  });

  test('the slots of 40 ended holders are reused: a 41st killed while holding still gets its count back', () => {
    const semaphore = new mp.BoundedSemaphore(2);
    for (let i = 0; i < 40; i++) {
      const pid = forkChild(() => {
        semaphore.acquireSync();
        semaphore.release();
        return 0;
      });
      expect(exitcodeOf(pid)).toBe(0);
    }
    killAndReap(childStoppedAt(() => semaphore.acquireSync()));
    expect(semaphore.acquireSync({ block: false })).toBe(true);
    expect(semaphore.acquireSync({ timeout: 60000 })).toBe(true);
    expect(semaphore.ownerDied).toBe(true);
    semaphore.release();
    semaphore.release();
    expect(semaphore.getValue()).toBe(2);
  });

  test('used to signal (released by a thread that holds nothing), a dead acquirer gives nothing back', () => {
    const semaphore = new mp.Semaphore(0);
    semaphore.release(); // a signal
    killAndReap(childStoppedAt(() => semaphore.acquireSync())); // the signal is consumed
    expect(semaphore.acquireSync({ block: false })).toBe(false);
    expect(semaphore.getValue()).toBe(0);
  });
});

describe('Condition', () => {
  test('a waiter killed while it waits is counted out: notify(1) wakes the live one', () => {
    const condition = new mp.Condition(new mp.Lock());
    const waiters = (): number => Atomics.load(wordsOf(condition), 1);
    const dead = forkChild(() => {
      condition.acquireSync();
      condition.waitSync();
      return 5;
    });
    expect(untilSync(() => waiters() === 1)).toBe(true);
    const live = forkChild(() => {
      condition.acquireSync();
      const notified = condition.waitSync(60000);
      condition.release();
      return notified ? 0 : 1;
    });
    expect(untilSync(() => waiters() === 2)).toBe(true);
    killAndReap(dead); // the older waiter: notify would pick it first
    condition.acquireSync();
    condition.notify(1);
    condition.release();
    expect(exitcodeOf(live)).toBe(0);
    expect(waiters()).toBe(0);
  });

  test('a process killed while it holds the lock of a Condition: the next acquirer says the owner died', () => {
    const condition = new mp.Condition();
    killAndReap(childStoppedAt(() => condition.acquireSync()));
    expect(condition.acquireSync({ timeout: 60000 })).toBe(true);
    expect(condition.ownerDied).toBe(true);
    condition.release();
  });

  test('a waiter notified, then killed before it took the lock back: the waiter after it is notified in turn', () => {
    const condition = new mp.Condition(new mp.Lock());
    const waiters = (): number => Atomics.load(wordsOf(condition), 1);
    const first = forkChild(() => {
      condition.acquireSync();
      condition.waitSync();
      return 5;
    });
    expect(untilSync(() => waiters() === 1)).toBe(true);
    condition.acquireSync();
    condition.notify(1); // first is notified, and blocks on the lock the parent holds
    expect(waiters()).toBe(0);
    killAndReap(first);
    condition.release();
    const second = forkChild(() => {
      condition.acquireSync();
      const notified = condition.waitSync(60000);
      condition.release();
      return notified ? 0 : 1;
    });
    expect(untilSync(() => waiters() === 1)).toBe(true);
    condition.acquireSync();
    condition.notify(1);
    condition.release();
    expect(exitcodeOf(second)).toBe(0);
  });
});

describe('Barrier', () => {
  test('a party killed while it waits is counted out: the barrier waits for a live one in its place', () => {
    const barrier = new mp.Barrier(2);
    const dead = forkChild(() => {
      barrier.waitSync();
      return 5;
    });
    expect(untilSync(() => barrier.nWaiting === 1)).toBe(true);
    killAndReap(dead);
    const live = forkChild(() => barrier.waitSync(60000));
    const index = barrier.waitSync(60000);
    expect([index, exitcodeOf(live)].sort()).toEqual([0, 1]);
    expect(barrier.broken).toBe(false);
  });

  test('the last party killed in the action, holding the lock: the next party takes its place', () => {
    const parentPid = mp.os.getpid();
    const inAction = new mp.Event();
    const barrier = new mp.Barrier(2, {
      action: () => {
        if (mp.os.getpid() === parentPid) return;
        inAction.set();
        blockForever();
      },
    });
    const waiting = forkChild(() => barrier.waitSync(60000) + 10);
    expect(untilSync(() => barrier.nWaiting === 1)).toBe(true);
    const last = forkChild(() => barrier.waitSync());
    expect(inAction.waitSync(HANG_GUARD_MS)).toBe(true);
    killAndReap(last);
    expect(barrier.waitSync(60000)).toBe(1);
    expect(exitcodeOf(waiting)).toBe(10);
  });

  test('a party killed after release, before it left: the barrier drains and the next round works', () => {
    const barrier = new mp.Barrier(2);
    const condition = (barrier as unknown as { _condition: mp.Condition })._condition;
    const released = forkChild(() => barrier.waitSync(60000) + 10);
    expect(untilSync(() => barrier.nWaiting === 1)).toBe(true);
    // The parent holds the barrier's RLock through its own wait: the child,
    // released, cannot take it back to leave. It is killed there.
    condition.acquireSync();
    expect(barrier.waitSync()).toBe(1);
    killAndReap(released);
    condition.release();
    const next = forkChild(() => barrier.waitSync(60000));
    expect([barrier.waitSync(60000), exitcodeOf(next)].sort()).toEqual([0, 1]);
  });
});
