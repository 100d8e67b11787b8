/**
 * Every wait of the package takes any timeout: 0 (do not wait), fractions,
 * 2^31 and 2^53 (beyond setTimeout's 2^31-1, which fires after 1 ms there,
 * and beyond an int of poll()), and Infinity (no limit, as undefined). One
 * test per waiting method, sync and async: the short ones time out, the long
 * ones wait for the event that ends them.
 *
 * An async wait must not have ended once a 1 ms timer set after it has fired
 * (the clamped timer of the bug fires first). A sync wait blocks this thread,
 * so another process ends it: one that waits until this process's main
 * thread sleeps (/proc: state S, which nothing else between the fork and the
 * wait does), then releases it.
 */
import * as mp from '..';
import { exitcodeOf, forkChild, jsonLines, procStat, runFixture } from './helpers';
import { HANG_GUARD_MS, sleepSync } from './40.helpers';

const SHORT = [0, 0.5];
const LONG = [2 ** 31, 2 ** 53, Infinity];

/** Whether `promise` is still pending once a 1 ms timer set now has fired. */
async function pendingAfterClampedTimers(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setTimeout(resolve, 1));
  return !settled;
}

/**
 * Forks a process that, once `armed` is set, waits for this process's main
 * thread to sleep and then runs `release`. Call `armed.set()` right before the
 * blocking wait; reap the pid with exitcodeOf.
 */
function releaseOnceBlocked(release: () => void, setUp: () => void = () => {}): { pid: number; arm: () => void } {
  const waiter = mp.os.getpid();
  const armed = new mp.Event();
  const ready = new mp.Event();
  const pid = forkChild(() => {
    setUp();
    ready.set();
    armed.waitSync();
    while (procStat(waiter)?.state !== 'S') sleepSync(1);
    release();
    return 0;
  });
  expect(ready.waitSync(HANG_GUARD_MS)).toBe(true);
  return { pid, arm: () => armed.set() };
}

describe('Process.join()', () => {
  // In a process of its own: the fork children of this one's copies would
  // carry jest's whole state.
  test.each([...SHORT, ...LONG])('join(%p) and joinSync give up on a short timeout, wait for the end on a long one', (timeout) => {
    const run = runFixture('timeouts_join.js', [String(timeout)]);
    expect(run.stderr).toBe('');
    const long = LONG.includes(timeout);
    const printed = timeout === Infinity ? null : timeout; // as JSON has it
    expect(jsonLines(run.stdout)).toEqual([
      { method: 'join', timeout: printed, pendingAfterTimer: long, exitCode: long ? 0 : null },
      { method: 'joinSync', timeout: printed, exitCode: long ? 0 : null },
    ]);
  });
});

describe.each([
  ['Lock', () => new mp.Lock()],
  ['Semaphore', () => new mp.Semaphore(1)],
  ['BoundedSemaphore', () => new mp.BoundedSemaphore(1)],
])('%s', (_name, make) => {
  test.each(SHORT)('acquire({ timeout: %p }) and acquireSync give up while it is held', async (timeout) => {
    const lock = make();
    lock.acquireSync();
    expect(await lock.acquire({ timeout })).toBe(false);
    expect(lock.acquireSync({ timeout })).toBe(false);
    expect(lock.acquireSync(true, timeout)).toBe(false);
  });

  test.each(LONG)('acquire({ timeout: %p }) waits for the release', async (timeout) => {
    const lock = make();
    lock.acquireSync();
    const acquired = lock.acquire({ timeout });
    expect(await pendingAfterClampedTimers(acquired)).toBe(true);
    lock.release();
    expect(await acquired).toBe(true);
  });

  test.each(LONG)('acquireSync({ timeout: %p }) waits for the release (another process)', (timeout) => {
    const lock = make();
    lock.acquireSync();
    const releaser = releaseOnceBlocked(() => lock.release());
    releaser.arm();
    expect(lock.acquireSync({ timeout })).toBe(true);
    expect(exitcodeOf(releaser.pid)).toBe(0);
  });
});

describe('Lock.hold()', () => {
  test.each(SHORT)('hold(%p) and holdSync throw TimeoutError while it is held', async (timeout) => {
    const lock = new mp.Lock();
    lock.acquireSync();
    await expect(lock.hold(timeout)).rejects.toThrow(mp.TimeoutError);
    expect(() => lock.holdSync(timeout)).toThrow(mp.TimeoutError);
  });

  test.each(LONG)('hold(%p) waits for the release', async (timeout) => {
    const lock = new mp.Lock();
    lock.acquireSync();
    const held = lock.hold(timeout);
    expect(await pendingAfterClampedTimers(held)).toBe(true);
    lock.release();
    (await held).release();
  });

  test.each(LONG)('holdSync(%p) waits for the release (another process)', (timeout) => {
    const lock = new mp.Lock();
    lock.acquireSync();
    const releaser = releaseOnceBlocked(() => lock.release());
    releaser.arm();
    lock.holdSync(timeout).release();
    expect(exitcodeOf(releaser.pid)).toBe(0);
  });
});

describe('RLock', () => {
  /** Another process holds the RLock until `go` is set (its owner must release it). */
  function heldElsewhere(): { rlock: mp.RLock; go: mp.Event; holder: number } {
    const rlock = new mp.RLock();
    const go = new mp.Event();
    const held = new mp.Event();
    const holder = forkChild(() => {
      rlock.acquireSync();
      held.set();
      go.waitSync();
      rlock.release();
      return 0;
    });
    expect(held.waitSync(HANG_GUARD_MS)).toBe(true);
    return { rlock, go, holder };
  }

  test.each(SHORT)('acquire({ timeout: %p }) and acquireSync give up while another process holds it', async (timeout) => {
    const { rlock, go, holder } = heldElsewhere();
    expect(await rlock.acquire({ timeout })).toBe(false);
    expect(rlock.acquireSync({ timeout })).toBe(false);
    go.set();
    expect(exitcodeOf(holder)).toBe(0);
  });

  test.each(LONG)('acquire({ timeout: %p }) waits for the release', async (timeout) => {
    const { rlock, go, holder } = heldElsewhere();
    const acquired = rlock.acquire({ timeout });
    expect(await pendingAfterClampedTimers(acquired)).toBe(true);
    go.set();
    expect(await acquired).toBe(true);
    expect(exitcodeOf(holder)).toBe(0);
  });

  test.each(LONG)('acquireSync({ timeout: %p }) waits for the release', (timeout) => {
    const rlock = new mp.RLock();
    const releaser = releaseOnceBlocked(
      () => rlock.release(),
      () => void rlock.acquireSync(),
    );
    releaser.arm();
    expect(rlock.acquireSync({ timeout })).toBe(true);
    expect(exitcodeOf(releaser.pid)).toBe(0);
  });
});

describe('Event', () => {
  test.each(SHORT)('wait(%p) and waitSync give up while it is clear', async (timeout) => {
    const event = new mp.Event();
    expect(await event.wait(timeout)).toBe(false);
    expect(event.waitSync(timeout)).toBe(false);
  });

  test.each(LONG)('wait(%p) waits for set()', async (timeout) => {
    const event = new mp.Event();
    const waited = event.wait(timeout);
    expect(await pendingAfterClampedTimers(waited)).toBe(true);
    event.set();
    expect(await waited).toBe(true);
  });

  test.each(LONG)('waitSync(%p) waits for set() (another process)', (timeout) => {
    const event = new mp.Event();
    const releaser = releaseOnceBlocked(() => event.set());
    releaser.arm();
    expect(event.waitSync(timeout)).toBe(true);
    expect(exitcodeOf(releaser.pid)).toBe(0);
  });
});

describe('Condition', () => {
  test.each(SHORT)('wait(%p), waitSync, waitFor and waitForSync give up without a notification', async (timeout) => {
    const condition = new mp.Condition();
    condition.acquireSync();
    expect(await condition.wait(timeout)).toBe(false);
    expect(condition.waitSync(timeout)).toBe(false);
    expect(await condition.waitFor(() => false, timeout)).toBe(false);
    expect(condition.waitForSync(() => false, timeout)).toBe(false);
    condition.release();
  });

  test.each(LONG)('wait(%p) and waitFor wait for notify()', async (timeout) => {
    const condition = new mp.Condition();
    const flag = new mp.Event();
    await condition.acquire();
    const waited = condition.wait(timeout);
    expect(await pendingAfterClampedTimers(waited)).toBe(true);
    await condition.acquire();
    condition.notify();
    condition.release();
    expect(await waited).toBe(true);
    const waitedFor = condition.waitFor(() => flag.isSet(), timeout);
    expect(await pendingAfterClampedTimers(waitedFor)).toBe(true);
    await condition.acquire();
    flag.set();
    condition.notify();
    condition.release();
    expect(await waitedFor).toBe(true);
    condition.release();
  });

  test.each(LONG)('waitSync(%p) and waitForSync wait for notify() (another process)', (timeout) => {
    const condition = new mp.Condition();
    const flag = new mp.Event();
    const notify = (): void => {
      condition.acquireSync();
      flag.set();
      condition.notify();
      condition.release();
    };
    condition.acquireSync();
    let releaser = releaseOnceBlocked(notify);
    releaser.arm();
    expect(condition.waitSync(timeout)).toBe(true);
    expect(exitcodeOf(releaser.pid)).toBe(0);
    flag.clear();
    releaser = releaseOnceBlocked(notify);
    releaser.arm();
    expect(condition.waitForSync(() => flag.isSet(), timeout)).toBe(true);
    expect(exitcodeOf(releaser.pid)).toBe(0);
    condition.release();
  });
});

describe('Barrier', () => {
  test.each(SHORT)('wait(%p), waitSync and the timeout option break it when the other party is missing', async (timeout) => {
    await expect(new mp.Barrier(2).wait(timeout)).rejects.toThrow(mp.BrokenBarrierError);
    expect(() => new mp.Barrier(2).waitSync(timeout)).toThrow(mp.BrokenBarrierError);
    expect(() => new mp.Barrier(2, { timeout }).waitSync()).toThrow(mp.BrokenBarrierError);
  });

  test.each(LONG)('wait(%p) and the timeout option wait for the other party', async (timeout) => {
    for (const [barrier, limit] of [
      [new mp.Barrier(2), timeout],
      [new mp.Barrier(2, { timeout }), undefined],
    ] as const) {
      const first = barrier.wait(limit);
      expect(await pendingAfterClampedTimers(first)).toBe(true);
      const indices = await Promise.all([first, barrier.wait()]);
      expect(indices.sort()).toEqual([0, 1]);
    }
  });

  test.each(LONG)('waitSync(%p) waits for the other party (another process)', (timeout) => {
    const barrier = new mp.Barrier(2);
    const releaser = releaseOnceBlocked(() => void barrier.waitSync());
    releaser.arm();
    expect([0, 1]).toContain(barrier.waitSync(timeout));
    expect(exitcodeOf(releaser.pid)).toBe(0);
  });
});

describe('validateTimeout', () => {
  test('NaN and negative timeouts are refused, naming the argument', () => {
    const event = new mp.Event();
    expect(() => event.waitSync(NaN)).toThrow(TypeError);
    expect(() => event.waitSync(-1)).toThrow(/timeout must be >= 0 milliseconds, got -1/);
    expect(() => event.waitSync(-Infinity)).toThrow(RangeError);
    expect(() => new mp.Lock().acquireSync({ timeout: -0.5 })).toThrow(/options.timeout/);
  });
});
