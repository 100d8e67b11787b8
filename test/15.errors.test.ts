/**
 * Errors that name what went wrong: an unknown option key of any options
 * object, a value that cannot cross into a child (its path and its type,
 * never a function's source), a missing size; and Python's positional forms
 * of acquire().
 */
import * as net from 'net';

import * as mp from '..';
import { exitcodeOf, forkChild } from './helpers';

describe('an unknown option key is a TypeError naming it (a typo is never ignored)', () => {
  const cases: [string, () => unknown, string][] = [
    ['new Process', () => new mp.Process({ trget: () => 0 } as never), "'trget' (did you mean 'target'?)"],
    ['setStartMethod', () => mp.setStartMethod('fork', { forse: true } as never), "'forse' (did you mean 'force'?)"],
    ['new SharedMemory', () => new mp.SharedMemory({ create: true, sise: 8 } as never), "'sise' (did you mean 'size'?)"],
    ['new ShareableList', () => new mp.ShareableList([1], { nmae: 'x' } as never), "'nmae' (did you mean 'name'?)"],
    ['Value', () => mp.Value('i', 0, { locked: false } as never), "'locked' (did you mean 'lock'?)"],
    ['Array', () => mp.Array('i', 2, { lokc: false } as never), "'lokc'"],
    ['Lock.acquireSync', () => new mp.Lock().acquireSync({ timout: 5 } as never), "'timout' (did you mean 'timeout'?)"],
    ['Semaphore.acquire', () => new mp.Semaphore().acquire({ blocking: false } as never), "'blocking' (did you mean 'block'?)"],
    ['new Barrier', () => new mp.Barrier(2, { actoin: () => 0 } as never), "'actoin' (did you mean 'action'?)"],
  ];
  test.each(cases)('%s', async (_where, call, named) => {
    // Async methods reject, the others throw: both are checked as a rejection.
    await expect(async () => call()).rejects.toThrow(TypeError);
    await expect(async () => call()).rejects.toThrow(`has an unknown key ${named}`);
  });

  test('the message lists the known keys, and no hint is made up for a key like none of them', () => {
    expect(() => new mp.Process({ zzzzzz: 1 } as never)).toThrow(
      "options has an unknown key 'zzzzzz'; the known ones are 'target', 'args', 'name', 'daemon'",
    );
  });
});

describe('a value that cannot cross into a child is named by its path and its type', () => {
  // A spawned child gets its arguments serialised: the error comes from start(), before any child exists.
  const start = (args: unknown[]): (() => void) => {
    const p = new (mp.getContext('spawn').Process)({ target: mp.cpuCount as (...args: unknown[]) => number, args });
    return () => p.start();
  };

  test('a net.Socket inside an argument: its path and net.Socket, not the source of a function it holds', () => {
    const sock = new net.Socket();
    const call = start([{ sock }]);
    expect(call).toThrow(TypeError);
    expect(call).toThrow(/^args\[0\]\.sock: net\.Socket cannot be sent to another process: /);
    expect(call).not.toThrow(/[{}]|=>|function /);
  });

  test('a Symbol, at any depth and in a Map', () => {
    expect(start([1, Symbol('tag')])).toThrow(/^args\[1\]: a Symbol \(Symbol\(tag\)\) cannot be sent to another process/);
    expect(start([new Map([['key', Symbol('deep')]])])).toThrow(/^args\[0\]\.get\(key\): a Symbol/);
  });

  test('a function: its name, never its source', () => {
    function secretSource(): string {
      return 'the body of this function';
    }
    const call = start([{ nested: [secretSource] }]);
    expect(call).toThrow(/^args\[0\]\.nested\[0\]: function secretSource cannot be sent to another process/);
    expect(call).not.toThrow(/the body of this function/);
  });

  test('an object of a class of its own holding a function: its path and its class', () => {
    class Handler {
      onEvent = (): number => 1;
    }
    expect(start([{ handler: new Handler() }])).toThrow(/^args\[0\]\.handler: an instance of Handler cannot be sent/);
  });
});

test("Array('i') without a size says so once", () => {
  const call = (): unknown => (mp.Array as (typecode: string) => unknown)('i');
  expect(call).toThrow(TypeError);
  expect(call).toThrow(/sizeOrValues must be a size or an iterable of initial values, got undefined$/);
});

describe("Python's positional forms of acquire", () => {
  test('lock.acquireSync(false) tries once; acquireSync(true, ms) waits at most ms', () => {
    const lock = new mp.Lock();
    expect(lock.acquireSync(false)).toBe(true);
    expect(lock.acquireSync(false)).toBe(false);
    expect(lock.acquireSync(true, 0)).toBe(false);
    lock.release();
    expect(lock.acquireSync(true, 1000)).toBe(true);
    lock.release();
  });

  test('sem.acquire(false) resolves at once; acquire(true, ms) resolves once taken', async () => {
    const sem = new mp.Semaphore(1);
    await expect(sem.acquire(false)).resolves.toBe(true);
    await expect(sem.acquire(false)).resolves.toBe(false);
    const pid = forkChild(() => (sem.release(), 0));
    expect(exitcodeOf(pid)).toBe(0);
    await expect(sem.acquire(true, 10000)).resolves.toBe(true);
  });

  test('RLock and Condition take them too; a timeout after an options object is a TypeError', async () => {
    const rlock = new mp.RLock();
    expect(rlock.acquireSync(false)).toBe(true);
    rlock.release();
    const condition = new mp.Condition(new mp.Lock());
    expect(condition.acquireSync(false)).toBe(true);
    await expect(condition.acquire(false)).resolves.toBe(false);
    condition.release();
    const lock = new mp.Lock();
    const acquireSync = lock.acquireSync.bind(lock) as (options: object, timeout: number) => boolean;
    expect(() => acquireSync({ block: true }, 5)).toThrow(/timeout goes in the options/);
    expect(() => new mp.Lock().acquireSync(true, -1)).toThrow(RangeError);
  });
});
