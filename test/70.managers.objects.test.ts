/**
 * The objects a manager's server holds, called in this process as the server
 * calls them: each call runs as a caller (a client process) with runAs. What
 * crosses between processes is tested in 70.managers.test.ts.
 */
import * as objects from '../dist/managers/objects';
import { Caller, runAs } from '../dist/managers/waiting';

function caller(id: string): Caller & { leave(): void } {
  const controller = new AbortController();
  return { id, signal: controller.signal, leave: () => controller.abort() };
}

const alice = caller('alice');
const bob = caller('bob');

/** Calls `method` of `object` as `who`, as the server does. */
function as<T>(who: Caller, call: () => T): T {
  return runAs(who, call);
}

describe('dict', () => {
  test("Map's methods, Python's setDefault, pop and update", () => {
    const d = new objects.ServerDict({ a: 1 });
    d.set('b', 2);
    d.update([['c', 3]]);
    d.update(new Map([['d', 4]]));
    expect(d.get('a')).toBe(1);
    expect(d.get('zz')).toBeUndefined();
    expect(d.get('zz', 'default')).toBe('default');
    expect(d.has('b')).toBe(true);
    expect(d.size()).toBe(4);
    expect(d.setDefault('a', 9)).toBe(1);
    expect(d.setDefault('e', 5)).toBe(5);
    expect(d.pop('e')).toBe(5);
    expect(d.pop('e', null)).toBeNull();
    expect(d.delete('d')).toBe(true);
    expect(d.delete('d')).toBe(false);
    expect(d.keys()).toEqual(['a', 'b', 'c']);
    expect(d.values()).toEqual([1, 2, 3]);
    expect(d.entries()).toEqual([['a', 1], ['b', 2], ['c', 3]]);
    expect(d.toObject()).toEqual({ a: 1, b: 2, c: 3 });
    d.clear();
    expect(d.size()).toBe(0);
  });

  test('a missing key popped without default is a KeyError; an object key a TypeError', () => {
    const d = new objects.ServerDict();
    expect(() => d.pop('nope')).toThrow(expect.objectContaining({ name: 'KeyError', message: '"nope"' }));
    expect(() => d.set({}, 1)).toThrow(TypeError);
    expect(() => d.update(42)).toThrow(TypeError);
    expect(() => d.update([['only one']])).toThrow(/other\[0\] must be a \[key, value\] pair/);
  });
});

describe('list', () => {
  test("Python's list methods: negative indexes, insert past the ends, pop, remove, index, sort", () => {
    const l = new objects.ServerList([3, 1, 2]);
    expect(l.get(-1)).toBe(2);
    l.set(0, 30);
    l.append(4);
    l.extend([5, 6]);
    l.insert(100, 7);
    l.insert(-100, 0);
    expect(l.toArray()).toEqual([0, 30, 1, 2, 4, 5, 6, 7]);
    expect(l.pop()).toBe(7);
    expect(l.pop(0)).toBe(0);
    l.remove(30);
    expect(l.index(4)).toBe(2);
    expect(l.length()).toBe(5);
    expect(l.slice(1, 3)).toEqual([2, 4]);
    l.append(10);
    l.sort();
    expect(l.toArray()).toEqual([1, 2, 4, 5, 6, 10]); // numeric, not as strings
    l.sort({ reverse: true });
    expect(l.toArray()).toEqual([10, 6, 5, 4, 2, 1]);
  });

  test('out of range is an IndexError, a missing item a ValueError, with Python messages', () => {
    const l = new objects.ServerList();
    expect(() => l.get(0)).toThrow(expect.objectContaining({ name: 'IndexError', message: 'list index out of range' }));
    expect(() => l.set(0, 1)).toThrow(expect.objectContaining({ name: 'IndexError', message: 'list assignment index out of range' }));
    expect(() => l.pop()).toThrow(expect.objectContaining({ name: 'IndexError', message: 'pop from empty list' }));
    expect(() => l.remove(1)).toThrow(expect.objectContaining({ name: 'ValueError', message: 'list.remove(x): x not in list' }));
    expect(() => l.index({ a: 1 })).toThrow(expect.objectContaining({ name: 'ValueError' }));
    l.extend(['a', 1]);
    expect(() => l.sort()).toThrow(TypeError);
    expect(() => l.get(1.5)).toThrow(TypeError);
  });

  test('remove and index compare deeply', () => {
    const l = new objects.ServerList([{ a: [1] }, { a: [2] }]);
    expect(l.index({ a: [2] })).toBe(1);
    l.remove({ a: [1] });
    expect(l.toArray()).toEqual([{ a: [2] }]);
  });
});

describe('Value and Array', () => {
  test('typed as mp.RawValue/RawArray: checked and converted', () => {
    const v = new objects.ServerValue('i', 7);
    expect(v.get()).toBe(7);
    expect(() => v.set(2 ** 31)).toThrow(RangeError); // out of a C int's range, as mp.RawValue('i')
    expect(() => v.set('x')).toThrow(TypeError);
    expect(() => new objects.ServerValue('z', 1)).toThrow(/typecode/);
    const a = new objects.ServerArray('d', [1.5, 2.5]);
    a.set(-1, 4);
    expect(a.toArray()).toEqual([1.5, 4]);
    expect(a.length()).toBe(2);
    expect(() => a.get(2)).toThrow(expect.objectContaining({ name: 'IndexError' }));
    const c = new objects.ServerArray('c', 2);
    c.set(0, 'x');
    expect(c.get(0)).toBe('x'.charCodeAt(0));
  });
});

describe('Queue', () => {
  test('FIFO; put hands an item straight to a waiting get', async () => {
    const q = new objects.ServerQueue();
    const waiting = as(alice, () => q.get());
    await as(bob, () => q.put('first'));
    await q.put('second');
    expect(await waiting).toBe('first');
    expect(q.qsize()).toBe(1);
    expect(await q.get()).toBe('second');
    expect(q.empty()).toBe(true);
  });

  test('Empty and Full, at once and after a timeout', async () => {
    const q = new objects.ServerQueue(1);
    await expect(q.getNowait()).rejects.toMatchObject({ name: 'Empty' });
    await expect(q.get({ timeout: 5 })).rejects.toMatchObject({ name: 'Empty' });
    await q.putNowait(1);
    expect(q.full()).toBe(true);
    await expect(q.putNowait(2)).rejects.toMatchObject({ name: 'Full' });
    await expect(q.put(2, { timeout: 5 })).rejects.toMatchObject({ name: 'Full' });
    expect(await q.get()).toBe(1);
    await expect(q.get({ block: 'yes' as unknown as boolean })).rejects.toThrow(TypeError);
  });

  test('a blocked put goes in once a get makes room, in order', async () => {
    const q = new objects.ServerQueue(1);
    await q.put('a');
    const b = q.put('b');
    const c = q.put('c');
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(await q.get()).toBe('c');
    await Promise.all([b, c]);
  });

  test('a caller gone while waiting takes no item', async () => {
    const q = new objects.ServerQueue();
    const leaving = caller('leaving');
    const gone = as(leaving, () => q.get());
    leaving.leave();
    await expect(gone).rejects.toMatchObject({ name: 'Empty' });
    await q.put('kept');
    expect(q.qsize()).toBe(1);
    expect(await q.get()).toBe('kept');
  });

  test('JoinableQueue: join() resolves once every item is done; one taskDone() too many is a ValueError', async () => {
    const q = new objects.ServerJoinableQueue();
    await q.put(1);
    await q.put(2);
    let joined = false;
    const join = q.join().then(() => (joined = true));
    await q.get();
    q.taskDone();
    await q.get();
    await new Promise(setImmediate);
    expect(joined).toBe(false);
    q.taskDone();
    await join;
    expect(() => q.taskDone()).toThrow(expect.objectContaining({ name: 'ValueError' }));
  });
});

describe('locks', () => {
  test('Lock: handed to the waiter on release; any caller may release; unlocked release is a ValueError', async () => {
    const lock = new objects.ServerLock();
    expect(await as(alice, () => lock.acquire())).toBe(true);
    expect(await as(bob, () => lock.acquire({ block: false }))).toBe(false);
    expect(await as(bob, () => lock.acquire({ timeout: 5 }))).toBe(false);
    const bobs = as(bob, () => lock.acquire());
    as(bob, () => lock.release()); // no owner, as threading.Lock
    expect(await bobs).toBe(true);
    expect(lock.locked()).toBe(true);
    lock.release();
    expect(() => lock.release()).toThrow(expect.objectContaining({ name: 'ValueError' }));
  });

  test('RLock: recursive for its owner, released only by it, then handed on', async () => {
    const lock = new objects.ServerRLock();
    expect(await as(alice, () => lock.acquire())).toBe(true);
    expect(await as(alice, () => lock.acquire())).toBe(true);
    expect(await as(bob, () => lock.acquire({ block: false }))).toBe(false);
    expect(() => as(bob, () => lock.release())).toThrow(/un-acquired/);
    const bobs = as(bob, () => lock.acquire());
    as(alice, () => lock.release());
    as(alice, () => lock.release());
    expect(await bobs).toBe(true);
    expect(() => as(alice, () => lock.release())).toThrow(/un-acquired/);
    as(bob, () => lock.release());
  });

  test('Semaphore counts; BoundedSemaphore refuses a release over its value', async () => {
    const s = new objects.ServerSemaphore(2);
    expect(await s.acquire()).toBe(true);
    expect(await s.acquire()).toBe(true);
    expect(await s.acquire({ block: false })).toBe(false);
    const waiting = s.acquire();
    s.release();
    expect(await waiting).toBe(true);
    expect(s.getValue()).toBe(0);
    const b = new objects.ServerBoundedSemaphore(1);
    expect(() => b.release()).toThrow(expect.objectContaining({ name: 'ValueError', message: 'Semaphore released too many times' }));
    expect(() => new objects.ServerSemaphore(-1)).toThrow(RangeError);
  });
});

describe('Condition, Event, Barrier', () => {
  test('Condition: wait releases the lock, notify wakes one, the waiter holds the lock again', async () => {
    const cond = new objects.ServerCondition();
    await as(alice, () => cond.acquire());
    const waited = as(alice, () => cond.wait());
    expect(await as(bob, () => cond.acquire())).toBe(true); // alice released it while waiting
    as(bob, () => cond.notify());
    as(bob, () => cond.release());
    expect(await waited).toBe(true);
    expect(() => as(bob, () => cond.notify())).toThrow(/un-acquired/); // alice holds it now
    expect(await as(alice, () => cond.wait(5))).toBe(false);
    as(alice, () => cond.release());
    await expect(as(bob, () => cond.wait())).rejects.toThrow(/un-acquired/);
  });

  test('Event: wait resolves once set, false on timeout', async () => {
    const e = new objects.ServerEvent();
    expect(await e.wait(5)).toBe(false);
    const waiting = e.wait();
    e.set();
    expect(await waiting).toBe(true);
    expect(e.isSet()).toBe(true);
    e.clear();
    expect(e.isSet()).toBe(false);
  });

  test('Barrier: indexes 0..n-1, reusable; a timeout breaks it until reset()', async () => {
    const b = new objects.ServerBarrier(3);
    const indexes = await Promise.all([b.wait(), b.wait(), b.wait()]);
    expect(indexes.sort()).toEqual([0, 1, 2]);
    const first = b.wait();
    expect(b.nWaiting()).toBe(1);
    await expect(b.wait(5)).rejects.toMatchObject({ name: 'BrokenBarrierError' });
    await expect(first).rejects.toMatchObject({ name: 'BrokenBarrierError' });
    expect(b.broken()).toBe(true);
    await expect(b.wait()).rejects.toMatchObject({ name: 'BrokenBarrierError' });
    b.reset();
    expect(b.broken()).toBe(false);
    expect(b.parties()).toBe(3);
    expect(() => new objects.ServerBarrier(2, { action: () => {} } as object)).toThrow(/takes no action/);
  });
});
