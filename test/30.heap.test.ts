/**
 * The shared heap (src/heap.ts): zero-filled blocks in shared arenas, real
 * atomics across forked processes, blocks crossing by name, memory reused
 * after collection. Children forked inside jest leave at once through _exit.
 */
import * as heap from '../dist/heap';
import { dumps, loads } from '../dist/reduction';
import * as mp from '..';
import { exitcodeOf, forkChild, jsonLines, runFixture } from './helpers';

describe('allocate()', () => {
  test('gives zero-filled blocks of the size asked, each its own ArrayBuffer', () => {
    const a = heap.allocate(12);
    const b = heap.allocate(1);
    expect(a.byteLength).toBe(12);
    expect(a.byteOffset).toBe(0);
    expect(a.buffer.byteLength).toBe(12);
    expect(new Uint8Array(a.buffer).every((x) => x === 0)).toBe(true);
    expect(b.buffer).not.toBe(a.buffer);
    new Uint8Array(a.buffer).fill(0xff);
    expect(new Uint8Array(b.buffer)[0]).toBe(0); // views never reach a neighbour
  });

  test('a block of 0 bytes is fine; bad sizes and alignments are refused', () => {
    expect(heap.allocate(0).byteLength).toBe(0);
    expect(() => heap.allocate(-1)).toThrow(RangeError);
    expect(() => heap.allocate(1.5)).toThrow(TypeError);
    expect(() => heap.allocate(8, 3)).toThrow(/power of two/);
    expect(() => heap.allocate(8, 8192)).toThrow(RangeError);
  });

  test('honours the alignment, up to a page', () => {
    for (const alignment of [1, 2, 8, 16, 64, 4096]) {
      heap.allocate(3); // something in between
      const block = heap.allocate(24, alignment);
      expect(heap.reduceBlock(block).offset % alignment).toBe(0);
      new BigInt64Array(block.buffer, block.byteOffset, 3).fill(1n);
    }
  });

  test('Atomics.add from two forked processes on one slot gives an exact total', () => {
    const block = heap.allocate(8, 4);
    const view = new Int32Array(block.buffer, block.byteOffset, 2);
    const N = 1_000_000;
    const add = () => {
      for (let i = 0; i < N; i++) Atomics.add(view, 0, 1);
      return 0;
    };
    const pids = [forkChild(add), forkChild(add)];
    expect(pids.map(exitcodeOf)).toEqual([0, 0]);
    expect(Atomics.load(view, 0)).toBe(2 * N);
  });

  test('Atomics.compareExchange works as a lock across processes', () => {
    const block = heap.allocate(8, 4);
    const view = new Int32Array(block.buffer, block.byteOffset, 2);
    const N = 50_000;
    const locked = () => {
      for (let i = 0; i < N; i++) {
        while (Atomics.compareExchange(view, 0, 0, 1) !== 0);
        view[1] = view[1] + 1; // plain, non-atomic: only the lock makes it exact
        Atomics.store(view, 0, 0);
      }
      return 0;
    };
    const pids = [forkChild(locked), forkChild(locked)];
    expect(pids.map(exitcodeOf)).toEqual([0, 0]);
    expect(view[1]).toBe(2 * N);
  });

  test('a block allocated in a forked child does not take memory the parent uses', () => {
    const parentBlock = heap.allocate(8, 4);
    const parentView = new Int32Array(parentBlock.buffer);
    const pid = forkChild(() => {
      const mine = new Int32Array(heap.allocate(8, 4).buffer);
      mine[0] = 99;
      return parentView[0] === 0 ? 0 : 1;
    });
    expect(exitcodeOf(pid)).toBe(0);
    expect(parentView[0]).toBe(0);
  });
});

describe('blocks crossing to other processes', () => {
  test('a SharedBlock is reduced to { name, offset, length } and rebuilt over the same memory', () => {
    const block = heap.allocate(16, 8);
    const state = heap.reduceBlock(block);
    expect(state).toEqual({ name: expect.stringMatching(/^\/mp-heap-[0-9a-f]{12}$/), offset: expect.any(Number), length: 16 });
    // At the top level: inside jest's vm context, reduction.loads does not
    // recognise containers made by v8.deserialize (another realm's Object).
    const rebuilt = loads(dumps(block)) as heap.SharedBlock;
    expect(rebuilt).toBeInstanceOf(heap.SharedBlock);
    expect(rebuilt.byteLength).toBe(16);
    new Uint8Array(rebuilt.buffer)[3] = 42;
    expect(new Uint8Array(block.buffer)[3]).toBe(42);
    expect(heap.blockOf(rebuilt.buffer)).toBe(rebuilt);
    expect(heap.blockOf(new ArrayBuffer(8))).toBeUndefined();
  });

  test('reduceBlock refuses what is not a heap block', () => {
    expect(() => heap.reduceBlock({ buffer: new ArrayBuffer(4), byteOffset: 0, byteLength: 4 } as heap.SharedBlock)).toThrow(TypeError);
  });
});

describe('memory reuse', () => {
  let gcResult: Record<string, unknown> | undefined;
  /** The report of test/fixtures/shm_heap_gc.js, run once for the tests below. */
  const runGcFixture = (): Record<string, unknown> => {
    if (gcResult === undefined) {
      const run = runFixture('shm_heap_gc.js', []);
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      gcResult = jsonLines(run.stdout)[0] ?? {};
    }
    return gcResult;
  };

  test('freed blocks go back to their arena, zeroed when reused; a large arena goes with its block', () => {
    const result = runGcFixture();
    // 20 rounds of 200 blocks of 64 bytes freed each round: 3 small arenas (4, 8, 16 KiB) serve them all.
    expect(result.small).toBeLessThanOrEqual(3);
    expect(result.zeroed).toBe(true);
    expect(result.withBig).toBe((result.small as number) + 1);
    expect(result.afterBig).toBe(result.small); // unmapped once collected...
    expect(result.namesAfter).toBe((result.bigName as number) - 1); // ...and unlinked
  });

  test('a SharedMemory never closed stays mapped while a view of it is reachable, and is unmapped once collected', () => {
    expect(runGcFixture()).toMatchObject({ whileViewed: 1, readable: 1234, afterViews: 0 });
  });
});
