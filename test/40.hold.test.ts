/**
 * Python's `with lock:` idiom on every primitive that is acquired and
 * released: `using held = x.holdSync()`, `await using held = await x.hold()`,
 * `await x.withLock(fn)`. Each releases on every way out of its block, and a
 * forked child sees the primitive held while the block runs.
 */
import * as mp from '..';
import { exitcodeOf, forkChild } from './helpers';

type Primitive = mp.Lock | mp.RLock | mp.Semaphore | mp.Condition;

const primitives: [string, () => Primitive][] = [
  ['Lock', () => new mp.Lock()],
  ['RLock', () => new mp.RLock()],
  ['Semaphore', () => new mp.Semaphore(1)],
  ['BoundedSemaphore', () => new mp.BoundedSemaphore(1)],
  ['Condition', () => new mp.Condition(new mp.Lock())],
];

/** Whether another process can take `primitive` now (it tries once, and gives it back). */
function freeForAnotherProcess(primitive: Primitive): boolean {
  return exitcodeOf(forkChild(() => (primitive.acquireSync(false) ? (primitive.release(), 0) : 1))) === 0;
}

describe.each(primitives)('%s', (_name, make) => {
  test('using held = holdSync(): held inside the block, released at its end and on a throw', () => {
    const primitive = make();
    {
      using held = primitive.holdSync();
      expect(held).toBeInstanceOf(mp.Held);
      expect(freeForAnotherProcess(primitive)).toBe(false);
    }
    expect(freeForAnotherProcess(primitive)).toBe(true);
    expect(() => {
      using _held = primitive.holdSync();
      throw new Error('inside the block');
    }).toThrow('inside the block');
    expect(freeForAnotherProcess(primitive)).toBe(true);
  });

  test('await using held = await hold(): the same without blocking the event loop', async () => {
    const primitive = make();
    {
      await using _held = await primitive.hold();
      expect(freeForAnotherProcess(primitive)).toBe(false);
    }
    expect(freeForAnotherProcess(primitive)).toBe(true);
  });

  test('withLock(fn): resolves to what fn returns, releases after a rejection too', async () => {
    const primitive = make();
    await expect(
      primitive.withLock(async () => {
        await null;
        return freeForAnotherProcess(primitive);
      }),
    ).resolves.toBe(false);
    expect(freeForAnotherProcess(primitive)).toBe(true);
    await expect(primitive.withLock(() => Promise.reject(new Error('rejected inside')))).rejects.toThrow('rejected inside');
    expect(freeForAnotherProcess(primitive)).toBe(true);
    await expect(primitive.withLock(undefined as unknown as () => void)).rejects.toThrow(TypeError);
  });

  test('a hold with a timeout that runs out throws a TimeoutError and holds nothing', async () => {
    const primitive = make();
    const [taken, done] = [new mp.Event(), new mp.Event()];
    const pid = forkChild(() => {
      primitive.acquireSync();
      taken.set();
      done.waitSync();
      primitive.release();
      return 0;
    });
    taken.waitSync();
    expect(() => primitive.holdSync(0)).toThrow(mp.TimeoutError);
    await expect(primitive.hold(0)).rejects.toThrow(/not acquired within 0 ms/);
    await expect(primitive.withLock(() => 1, 0)).rejects.toThrow(mp.TimeoutError);
    expect(() => primitive.holdSync(-1)).toThrow(RangeError);
    done.set();
    expect(exitcodeOf(pid)).toBe(0);
    expect(freeForAnotherProcess(primitive)).toBe(true);
  });
});

test('Held.release() releases once: disposing afterwards does not release again', () => {
  const semaphore = new mp.Semaphore(1);
  {
    using held = semaphore.holdSync();
    held.release();
    expect(semaphore.getValue()).toBe(1);
  }
  expect(semaphore.getValue()).toBe(1);
});
