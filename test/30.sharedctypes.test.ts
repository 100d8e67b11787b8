/**
 * Value, Array, RawValue and RawArray: every typecode, real TypedArrays over
 * shared memory seen across forked processes, locks, errors, and objects
 * crossing to a spawned child through reduction.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';

import { dumps } from '../dist/reduction';
import * as heap from '../dist/heap';
import * as mp from '..';
import { exitcodeOf, FIXTURES, forkChild, jsonLines } from './helpers';

interface Case {
  typecode: mp.Typecode;
  type: new (...args: never[]) => ArrayBufferView;
  /** Bytes per item, on LP64 as Python. */
  size: number;
  /** A value to store, and the same as read back. */
  sample: unknown;
  read: unknown;
}

function typeCase(typecode: mp.Typecode, type: Case['type'], size: number, sample: unknown, read: unknown): Case & { typeName: string } {
  return { typecode, type, typeName: type.name, size, sample, read };
}

const CASES = [
  typeCase('b', Int8Array, 1, -100, -100),
  typeCase('B', Uint8Array, 1, 200, 200),
  typeCase('h', Int16Array, 2, -30000, -30000),
  typeCase('H', Uint16Array, 2, 60000, 60000),
  typeCase('i', Int32Array, 4, -2_000_000_000, -2_000_000_000),
  typeCase('I', Uint32Array, 4, 4_000_000_000, 4_000_000_000),
  typeCase('l', BigInt64Array, 8, -(2n ** 62n), -(2n ** 62n)),
  typeCase('L', BigUint64Array, 8, 2n ** 63n, 2n ** 63n),
  typeCase('q', BigInt64Array, 8, 5, 5n),
  typeCase('Q', BigUint64Array, 8, 2n ** 64n - 1n, 2n ** 64n - 1n),
  typeCase('f', Float32Array, 4, 1.5, 1.5),
  typeCase('d', Float64Array, 8, Math.PI, Math.PI),
  typeCase('c', Buffer, 1, 'z', 'z'),
];

describe('every typecode', () => {
  test.each(CASES)(
    "Array('$typecode') is a $typeName of $size-byte items, zero-filled, shared with forked children",
    ({ typecode, type, size, sample }) => {
    const array = mp.RawArray(typecode, 3) as unknown as ArrayLike<unknown> & ArrayBufferView;
    expect(array).toBeInstanceOf(type);
    expect(array.length).toBe(3);
    expect((array as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT).toBe(size);
    expect(array.byteLength).toBe(3 * size);
    expect(Array.from(array).every((x) => x === 0 || x === 0n)).toBe(true);
    const element = typecode === 'c' ? (sample as string).charCodeAt(0) : typeof array[0] === 'bigint' ? BigInt(sample as number) : sample;
    const pid = forkChild(() => {
      (array as unknown as unknown[])[2] = element;
      return 0;
    });
    expect(exitcodeOf(pid)).toBe(0);
    expect(array[2]).toBe(element);
    },
  );

  test.each(CASES)("Value('$typecode') reads and writes its item: default zero, init, set, seen across fork", ({ typecode, sample, read }) => {
    const value = mp.RawValue(typecode);
    expect(value.value).toBe(typecode === 'c' ? '\0' : typeof read === 'bigint' ? 0n : 0);
    expect(mp.RawValue(typecode, sample as never).value).toBe(read);
    const pid = forkChild(() => {
      value.value = sample as never;
      return 0;
    });
    expect(exitcodeOf(pid)).toBe(0);
    expect(value.value).toBe(read);
    expect(value.typecode).toBe(typecode);
  });

  test("Array('c') is a Buffer: from a string, and its text with toString()", () => {
    const chars = mp.Array('c', 'hello', { lock: false });
    expect(Buffer.isBuffer(chars)).toBe(true);
    expect(chars.toString()).toBe('hello');
    expect(mp.RawArray('c', [104, 'i']).toString()).toBe('hi');
  });

  test('an Array from values, from any iterable', () => {
    expect(Array.from(mp.RawArray('d', [0.5, 1.5]))).toEqual([0.5, 1.5]);
    expect(Array.from(mp.RawArray('i', new Set([3, 4])))).toEqual([3, 4]);
    expect(Array.from(mp.RawArray('q', [1, 2n]))).toEqual([1n, 2n]);
    expect(mp.RawArray('i', 0).length).toBe(0);
  });
});

describe('errors', () => {
  test('bad typecodes get a TypeError that lists the valid ones', () => {
    for (const bad of ['x', 'ii', '', 5, null]) {
      expect(() => mp.RawValue(bad as mp.Typecode)).toThrow(/typecode must be one of b B h H i I l L q Q f d c/);
      expect(() => mp.Array(bad as mp.Typecode, 1)).toThrow(TypeError);
    }
  });

  test('bad initialisers: TypeError for the wrong type, RangeError out of range', () => {
    expect(() => mp.Value('i', 1.5)).toThrow(TypeError);
    expect(() => mp.Value('i', '1' as never)).toThrow(TypeError);
    expect(() => mp.Value('i', 2 ** 31)).toThrow(RangeError);
    expect(() => mp.Value('B', -1)).toThrow(RangeError);
    expect(() => mp.Value('q', 1.5)).toThrow(TypeError);
    expect(() => mp.Value('Q', -1n)).toThrow(RangeError);
    expect(() => mp.Value('c', 'ab')).toThrow(TypeError);
    expect(() => mp.Value('c', '€')).toThrow(RangeError);
    expect(() => mp.Value('d', 1n as never)).toThrow(TypeError);
    expect(() => mp.RawArray('b', [1, 200])).toThrow(/sizeOrValues\[1\] must be in \[-128, 127\]/);
    const value = mp.RawValue('h');
    expect(() => (value.value = 70000)).toThrow(RangeError);
    expect(value.value).toBe(0);
  });

  test('bad sizes: TypeError for non-integers and non-iterables, RangeError for negative or huge', () => {
    expect(() => mp.Array('i', -1)).toThrow(RangeError);
    expect(() => mp.Array('i', 2.5)).toThrow(TypeError);
    expect(() => mp.Array('d', 2 ** 40)).toThrow(RangeError);
    expect(() => mp.Array('i', 'abc' as never)).toThrow(TypeError);
    expect(() => mp.Array('i', {} as never)).toThrow(TypeError);
  });

  test('bad lock options get a TypeError', () => {
    expect(() => mp.Value('i', 0, { lock: 1 as never })).toThrow(/lock must be true, false or a Lock\/RLock/);
    expect(() => mp.Array('i', 1, { lock: {} as never })).toThrow(TypeError);
    expect(() => mp.Value('i', 0, null as never)).toThrow(TypeError);
  });
});

describe('locks', () => {
  test('Value() has an RLock by default; .value takes it; getObj() is the raw value', () => {
    const value = mp.Value('i', 5);
    expect(value).toBeInstanceOf(mp.Synchronized);
    expect(value.getLock()).toBeInstanceOf(mp.RLock);
    expect(value.getObj()).toBeInstanceOf(mp.SharedValue);
    const lock = value.getLock();
    lock.acquireSync();
    value.value += 1; // re-entrant: the getter and setter take it again
    lock.release();
    expect(value.value).toBe(6);
    expect(value.getObj().value).toBe(6);
    expect(String(value)).toBe('<Synchronized wrapper for c_int(6)>');
  });

  test('a given Lock is used; lock: false gives the raw value', () => {
    const lock = new mp.Lock();
    const value = mp.Value('d', 0, { lock });
    expect(value.getLock()).toBe(lock);
    const raw = mp.Value('d', 0, { lock: false });
    expect(raw).toBeInstanceOf(mp.SharedValue);
    expect((raw as unknown as { getLock?: unknown }).getLock).toBeUndefined();
  });

  test('Array() is a real TypedArray with non-enumerable getLock() and getObj()', () => {
    const array = mp.Array('i', [1, 2]);
    expect(array).toBeInstanceOf(Int32Array);
    expect(array.getLock()).toBeInstanceOf(mp.RLock);
    expect(array.getObj()).toBe(array);
    expect(Object.keys(array)).toEqual(['0', '1']);
    expect(JSON.stringify(array)).toBe('{"0":1,"1":2}');
    expect(mp.Array('i', 1, { lock: false })).not.toHaveProperty('getLock');
  });

  test('the lock is shared with forked children: held by the parent, the child cannot take it', () => {
    const value = mp.Value('i', 0);
    value.getLock().acquireSync();
    const pid = forkChild(() => (value.getLock().acquireSync({ block: false }) ? 1 : 0));
    expect(exitcodeOf(pid)).toBe(0);
    value.getLock().release();
  });

  test('a counter incremented under getLock() by 4 processes x 10,000 ends exact', () => {
    const counter = mp.Value('i', 0);
    const increment = () => {
      for (let i = 0; i < 10_000; i++) {
        const lock = counter.getLock();
        lock.acquireSync();
        counter.value += 1;
        lock.release();
      }
      return 0;
    };
    const pids = [1, 2, 3, 4].map(() => forkChild(increment));
    expect(pids.map(exitcodeOf)).toEqual([0, 0, 0, 0]);
    expect(counter.value).toBe(40_000);
  });
});

describe('the seeds\' example', () => {
  test('square_list: a child squares Array("i", 4) and sets Value("i") to the sum; the parent sees both', () => {
    const mylist = [1, 2, 3, 4];
    const result = mp.Array('i', 4);
    const squareSum = mp.Value('i');
    const squareList = (list: number[], res: Int32Array, sum: mp.Synchronized<number>) => {
      list.forEach((num, idx) => (res[idx] = num * num));
      sum.value = res.reduce((a, b) => a + b, 0);
    };
    const pid = forkChild(() => {
      squareList(mylist, result, squareSum);
      return 0;
    });
    expect(exitcodeOf(pid)).toBe(0);
    expect(Array.from(result)).toEqual([1, 4, 9, 16]);
    expect(squareSum.value).toBe(30);
  });
});

describe('crossing to a spawned child (reduction)', () => {
  test('Value, Array (with their locks), SharedMemory, ShareableList and a heap block arrive usable', () => {
    const value = mp.Value('i', 21);
    const array = mp.Array('i', [1, 2, 3]);
    const shm = new mp.SharedMemory({ create: true, size: 8 });
    shm.buf.write('hello');
    const list = new mp.ShareableList(['..........', 2]);
    const block = heap.allocate(4, 4);
    try {
      const payload = dumps({ value, array, shm, list, block }).toString('base64');
      const run = spawnSync(process.execPath, [path.join(FIXTURES, 'shm_child.js'), 'load', payload], { encoding: 'utf8', timeout: 600000 }); // a hang guard
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      const [report] = jsonLines(run.stdout);
      expect(report).toEqual({
        seen: { value: 21, array: [1, 2, 3], shm: 'hello', list: ['..........', 2] },
        isArray: true,
        locked: 'function',
      });
      expect(value.value).toBe(42);
      expect(Array.from(array)).toEqual([1, 4, 9]);
      expect(shm.buf.toString('utf8', 0, 5)).toBe('child');
      expect(list[0]).toBe('from child');
      expect(new Int32Array(block.buffer)[0]).toBe(5);
    } finally {
      shm.close();
      shm.unlink();
      list.shm.close();
      list.shm.unlink();
    }
  });

  test('a value that is not a shared array cannot pass for one', () => {
    expect(() => dumps(new Int32Array(2))).not.toThrow(); // a plain TypedArray is cloned, as always
    expect(heap.blockOf(new Int32Array(2).buffer)).toBeUndefined();
  });
});
