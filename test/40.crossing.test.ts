/**
 * How the primitives cross process boundaries and live with the event loop:
 * through reduction to a spawned node (no fork), inherited by fork while an
 * async wait is pending, and the native waiter's ref/unref/cancel. Runs that
 * need a process's own event loop are fixtures (test/fixtures/sync_*.js).
 */
import { spawn } from 'child_process';
import * as path from 'path';

import * as mp from '..';
import { requireNative } from '../dist/native';
import { dumps } from '../dist/reduction';
import { HANG_GUARD_MS } from './40.helpers';
import { FIXTURES, jsonLines, runFixture, waitFor } from './helpers';

/** Runs a node child to its end, asynchronously: the parent's loop keeps running. */
function runAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 3 * HANG_GUARD_MS);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe('reduction to a spawned process (no fork)', () => {
  test('every primitive arrives usable and shares its state with this process', async () => {
    const lock = new mp.Lock();
    const rlock = new mp.RLock();
    const semaphore = new mp.Semaphore(2);
    const bounded = new mp.BoundedSemaphore(1);
    const counter = mp.RawValue('i', 0);
    const condition = new mp.Condition(new mp.Lock());
    const event = new mp.Event();
    const barrier = new mp.Barrier(2);
    lock.acquireSync();
    rlock.acquireSync();
    const payload = dumps({ lock, rlock, semaphore, bounded, condition, event, barrier, counter }).toString('base64');
    const child = runAsync([path.join(FIXTURES, 'sync_spawn_child.js'), payload]);

    await condition.acquire();
    const seenCounter = await condition.waitFor(() => counter.value, HANG_GUARD_MS);
    condition.release();
    expect(await event.wait(HANG_GUARD_MS)).toBe(true);
    const index = await barrier.wait(HANG_GUARD_MS);
    const { status, stdout, stderr } = await child;
    expect(stderr).toBe('');
    expect(status).toBe(0);
    const [seen] = jsonLines(stdout);
    expect(seenCounter).toBe(7);
    expect(seen).toEqual({
      kinds: ['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event', 'Barrier'],
      lockHeld: true,
      rlockHeld: true,
      rlockRelease: 'threw', // the owner is this process
      semaphoreBefore: 2,
      semaphoreTaken: true,
      boundedOver: 'threw',
      parties: 2,
      barrierIndex: 1 - index,
    });
    expect(semaphore.getValue()).toBe(1);
    expect(lock.acquireSync({ block: false })).toBe(true); // the child released it
    rlock.release();
  });

  test('a Barrier with an action cannot be sent: TypeError saying why', () => {
    const barrier = new mp.Barrier(2, { action: () => undefined });
    expect(() => dumps({ barrier })).toThrow(TypeError);
    expect(() => dumps({ barrier })).toThrow(/action/);
  });
});

describe('mp.Process of every start method gets the primitives as arguments', () => {
  test.each(['fork', 'spawn', 'forkserver'])('%s: Lock, Event, Barrier, Semaphore and Condition shared with the child', (method) => {
    const run = runFixture('sync_process.js', [method]);
    expect(run.status).toBe(0);
    const [report] = jsonLines<{ eventSet: boolean; index: number; results: number[]; exitCode: number }>(run.stdout);
    expect(report.eventSet).toBe(true);
    expect(report.exitCode).toBe(0);
    // [lock held by the parent, 10 + the child's barrier index, one increment, semaphore taken, notified, flag]
    expect(report.results).toEqual([1, 10 + (1 - report.index), 1, 1, 1, 1]);
  });
});

describe('async waits and the event loop', () => {
  test('every async wait ends its thread: 20 contended acquires leave no thread behind', async () => {
    const native = requireNative('the thread count');
    const before = native.ownThreadCount();
    const lock = new mp.Lock();
    lock.acquireSync();
    const waiters = Array.from({ length: 20 }, async () => {
      await lock.acquire();
      await new Promise((resolve) => setImmediate(resolve));
      lock.release();
    });
    // they sleep on threads of the addon
    expect(await waitFor(() => native.ownThreadCount() > before)).toBe(true);
    lock.release();
    await Promise.all(waiters);
    expect(await waitFor(() => native.ownThreadCount() <= before)).toBe(true);
    expect(native.ownThreadCount()).toBe(before);
  });

  test('a pending acquire() keeps the process alive until it is acquired', () => {
    const run = runFixture('sync_pending.js');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const [report] = jsonLines<{ acquired: boolean; child: number }>(run.stdout);
    expect(report.acquired).toBe(true);
    expect(report.child).toBe(0);
  });

  test("an unref'd native wait does not keep the process alive, and never calls back", () => {
    // A wait that kept it alive would have it killed by runFixture's timeout (status null).
    const run = runFixture('sync_unref.js', ['unref']);
    expect(run.status).toBe(0);
    expect(jsonLines(run.stdout)).toEqual([{ exited: true }]);
  });

  test('a cancelled native wait ends its thread and never calls back', () => {
    const run = runFixture('sync_unref.js', ['cancel']);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(jsonLines(run.stdout)).toEqual([{ before: 0, during: 1, after: 0 }]); // no { called } line
  });

  test('fork() during a pending wait: the child waits on a thread of its own, both wake', () => {
    const run = runFixture('sync_fork_pending.js');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const lines = jsonLines<{ who?: string; set?: boolean; childExit?: number }>(run.stdout);
    const woken = lines.filter((line) => line.who !== undefined).map(({ who, set }) => `${who}:${set}`);
    expect(woken.sort()).toEqual(['child:true', 'parent:true']);
    expect(lines).toContainEqual({ childExit: 0 });
  });
});

describe('kernels without futex_waitv (< 5.16): the fallback, forced by NODE_MULTIPROCESSING_NO_FUTEX_WAITV=1', () => {
  const env = { NODE_MULTIPROCESSING_NO_FUTEX_WAITV: '1' };

  test('a cancelled native wait still ends its thread', () => {
    const run = runFixture('sync_unref.js', ['cancel'], { env });
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ before: 0, during: 1, after: 0 }]);
  });

  test('async waits, and a fork during one, work the same', () => {
    const run = runFixture('sync_fork_pending.js', [], { env });
    expect(run.stderr).toBe('');
    const woken = jsonLines<{ who?: string; set?: boolean }>(run.stdout)
      .filter((line) => line.who !== undefined)
      .map(({ who, set }) => `${who}:${set}`);
    expect(woken.sort()).toEqual(['child:true', 'parent:true']);
    const pending = runFixture('sync_pending.js', [], { env });
    expect(pending.status).toBe(0);
    expect(jsonLines<{ acquired: boolean }>(pending.stdout)[0].acquired).toBe(true);
  });
});
