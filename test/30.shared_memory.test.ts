/**
 * SharedMemory and ShareableList on real POSIX shared memory: create, attach
 * by name, close, unlink, writes seen across forked processes, errors, no fd
 * and no /dev/shm leak, and Python's ShareableList layout.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';

import { dumps, loads } from '../dist/reduction';
import * as mp from '..';
import { exitcodeOf, fdCount, forkChild } from './helpers';

function hasPython(): boolean {
  try {
    execFileSync('python3', ['-c', 'import multiprocessing.shared_memory'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs Python code that attaches segments without letting its own tracker unlink them. */
function python(code: string): string {
  const prelude = [
    'from multiprocessing import shared_memory, resource_tracker',
    'def attach(name):',
    '    sl = shared_memory.ShareableList(name=name)',
    "    resource_tracker.unregister(sl.shm._name, 'shared_memory')",
    '    return sl',
  ].join('\n');
  return execFileSync('python3', ['-c', `${prelude}\n${code}`], { encoding: 'utf8' }).trim();
}

/** Names this file created: all must be gone at the end (other test runs may share /dev/shm). */
const created = new Set<string>();

function made(shm: mp.SharedMemory): mp.SharedMemory {
  created.add(shm.name);
  return shm;
}

function madeList(list: mp.ShareableList): mp.ShareableList {
  created.add(list.shm.name);
  return list;
}

afterAll(() => {
  expect(fs.readdirSync('/dev/shm').filter((name) => created.has(name))).toEqual([]);
  expect(created.size).toBeGreaterThan(10);
});

describe('SharedMemory', () => {
  test('creates a segment with a short random name, attached by name elsewhere', () => {
    const shm = made(new mp.SharedMemory({ create: true, size: 100 }));
    try {
      expect(shm.name).toMatch(/^mp-[0-9a-f]{12}$/);
      expect(shm.size).toBe(100);
      expect(shm.buf).toBeInstanceOf(Buffer);
      expect(shm.buf.length).toBe(100);
      expect(fs.statSync(`/dev/shm/${shm.name}`).size).toBe(100);
      shm.buf.write('hello');
      const other = new mp.SharedMemory({ name: shm.name, size: 5 }); // size is ignored when attaching
      expect(other.size).toBe(100);
      expect(other.buf.toString('utf8', 0, 5)).toBe('hello');
      other.buf[0] = 'j'.charCodeAt(0);
      expect(shm.buf.toString('utf8', 0, 5)).toBe('jello'); // the same memory, no copy
      other.close();
    } finally {
      shm.close();
      shm.unlink();
    }
  });

  test('a given name, with or without its leading slash', () => {
    const name = `mp-test-${process.pid}`;
    const shm = made(new mp.SharedMemory({ name: `/${name}`, create: true, size: 8 }));
    const other = new mp.SharedMemory({ name });
    expect(shm.name).toBe(name);
    expect(other.name).toBe(name);
    other.close();
    shm.close();
    shm.unlink();
    expect(fs.existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  test('writes are seen across forked processes at once', () => {
    const shm = made(new mp.SharedMemory({ create: true, size: 8 }));
    const words = new Int32Array(shm.buf.buffer, shm.buf.byteOffset, 2);
    const pid = forkChild(() => {
      words[1] = 1; // tell the parent we are here
      while (Atomics.load(words, 0) !== 42); // spin until the parent writes
      words[1] = 2;
      return 0;
    });
    while (Atomics.load(words, 1) !== 1);
    Atomics.store(words, 0, 42);
    expect(exitcodeOf(pid)).toBe(0);
    expect(words[1]).toBe(2);
    shm.close();
    shm.unlink();
  });

  test('a child attaching by name sees and changes the creator\'s memory', () => {
    const shm = made(new mp.SharedMemory({ create: true, size: 16 }));
    shm.buf.write('parent');
    const pid = forkChild(() => {
      const attached = new mp.SharedMemory({ name: shm.name });
      const ok = attached.buf.toString('utf8', 0, 6) === 'parent';
      attached.buf.write('child!');
      attached.close();
      return ok ? 0 : 1;
    });
    expect(exitcodeOf(pid)).toBe(0);
    expect(shm.buf.toString('utf8', 0, 6)).toBe('child!');
    shm.close();
    shm.unlink();
  });

  test('errors: EEXIST on a taken name, ENOENT on a missing one, with code, syscall and path', () => {
    const shm = made(new mp.SharedMemory({ create: true, size: 8 }));
    try {
      expect(() => new mp.SharedMemory({ name: shm.name, create: true, size: 8 })).toThrow(
        expect.objectContaining({ code: 'EEXIST', syscall: 'shm_open', path: `/${shm.name}` }),
      );
    } finally {
      shm.close();
      shm.unlink();
    }
    expect(() => new mp.SharedMemory({ name: shm.name })).toThrow(expect.objectContaining({ code: 'ENOENT', message: expect.stringContaining(shm.name) }));
    expect(() => shm.unlink()).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'shm_unlink' }));
  });

  test('bad options get TypeError or RangeError', () => {
    expect(() => new mp.SharedMemory()).toThrow(/name is required/);
    expect(() => new mp.SharedMemory({ create: true })).toThrow(RangeError);
    expect(() => new mp.SharedMemory({ create: true, size: -1 })).toThrow(RangeError);
    expect(() => new mp.SharedMemory({ create: true, size: 1.5 })).toThrow(TypeError);
    expect(() => new mp.SharedMemory({ create: 'yes' as unknown as boolean, size: 8 })).toThrow(TypeError);
    expect(() => new mp.SharedMemory({ name: 'a/b' })).toThrow(TypeError);
    expect(() => new mp.SharedMemory({ name: '' })).toThrow(TypeError);
    expect(() => new mp.SharedMemory({ name: 'x'.repeat(300) })).toThrow(RangeError);
    expect(() => new mp.SharedMemory({ name: 42 as unknown as string })).toThrow(TypeError);
    expect(() => new mp.SharedMemory(null as unknown as mp.SharedMemoryOptions)).toThrow(TypeError);
  });

  test('close() detaches every view (length 0) and unmaps; close twice is harmless; buf then throws', () => {
    const shm = made(new mp.SharedMemory({ create: true, size: 4096 }));
    const view = new Uint32Array(shm.buf.buffer, shm.buf.byteOffset, 4);
    const mapped = () => fs.readFileSync('/proc/self/maps', 'utf8').includes(`/dev/shm/${shm.name}`);
    expect(mapped()).toBe(true);
    shm.close();
    expect(view.length).toBe(0);
    expect(view[0]).toBeUndefined(); // no access to unmapped memory
    expect(mapped()).toBe(false);
    shm.close();
    expect(() => shm.buf).toThrow(/closed/);
    expect(() => shm.size).toThrow(/closed/);
    shm.unlink(); // the name outlives the mapping
  });

  test('a SharedMemory crosses by name (reduction)', () => {
    const shm = made(new mp.SharedMemory({ create: true, size: 8 }));
    const copy = loads(dumps(shm)) as mp.SharedMemory;
    expect(copy).toBeInstanceOf(mp.SharedMemory);
    expect(copy.name).toBe(shm.name);
    copy.buf[0] = 7;
    expect(shm.buf[0]).toBe(7);
    copy.close();
    shm.close();
    shm.unlink();
  });

  test('no fd and no mapping leak over many create/attach/close/unlink', () => {
    const cycle = () => {
      const shm = made(new mp.SharedMemory({ create: true, size: 64 }));
      const other = new mp.SharedMemory({ name: shm.name });
      other.close();
      shm.close();
      shm.unlink();
    };
    cycle(); // the tracker's pipe is opened once, on first use
    const fds = fdCount();
    // Mappings of SharedMemory segments only: V8's own come and go with its heap.
    const segmentMappings = () =>
      fs.readFileSync('/proc/self/maps', 'utf8').split('\n').filter((line) => line.includes('/dev/shm/mp-') && !line.includes('/mp-heap-')).length;
    const maps = segmentMappings();
    for (let i = 0; i < 300; i++) cycle();
    expect(fdCount()).toBe(fds);
    expect(segmentMappings()).toBe(maps);
  });
});

describe('ShareableList', () => {
  test('holds numbers, bigints, booleans, strings, Buffers and null, in Python\'s formats', () => {
    const list = madeList(new mp.ShareableList([1, 2.5, 'three', null, true, Buffer.from('ab'), 2n ** 60n, -7]));
    try {
      expect(list.length).toBe(8);
      expect([...list]).toEqual([1, 2.5, 'three', null, true, Buffer.from('ab'), 2n ** 60n, -7]);
      expect(list.format).toBe('qd8sxxxxxx?xxxxxxxx?8sqq');
      expect(list[0]).toBe(1);
      expect(list[-1]).toBe(-7);
      expect(list.get(-2)).toBe(2n ** 60n);
      expect(list.shm).toBeInstanceOf(mp.SharedMemory);
      expect(String(list)).toBe(`ShareableList([1, 2.5, "three", null, true, ab, 1152921504606846976, -7], name="${list.shm.name}")`);
    } finally {
      list.shm.close();
      list.shm.unlink();
    }
  });

  test('items are set in place, within each slot\'s storage; attach by name sees them', () => {
    const list = madeList(new mp.ShareableList(['abc', 0, false]));
    const same = madeList(new mp.ShareableList(null, { name: list.shm.name }));
    try {
      same[0] = 'abcdefg'; // a slot of 8 bytes
      same[1] = 'str'; // a number's slot takes up to 8 bytes of text
      same.set(2, 3.75);
      expect([...list]).toEqual(['abcdefg', 'str', 3.75]);
      expect(list.format).toBe('8s8sd');
      expect(() => (same[0] = 'abcdefghi')).toThrow(RangeError);
      expect(() => same.set(5, 1)).toThrow(RangeError);
      expect(() => same.get(-4)).toThrow(RangeError);
      expect(() => same.set(0, {} as unknown as string)).toThrow(TypeError);
      expect(() => new mp.ShareableList([undefined as unknown as null])).toThrow(TypeError);
      expect(0 in same && !(3 in same)).toBe(true);
    } finally {
      same.shm.close();
      list.shm.close();
      list.shm.unlink();
    }
  });

  test('count() and index(), with Python\'s equality on integers and bytes', () => {
    const list = madeList(new mp.ShareableList([1, 'a', 1, Buffer.from('x'), 3n, 2.5]));
    try {
      expect(list.count(1)).toBe(2);
      expect(list.count(1n)).toBe(2);
      expect(list.count(Buffer.from('x'))).toBe(1);
      expect(list.index('a')).toBe(1);
      expect(list.index(3)).toBe(4);
      expect(() => list.index('zzz')).toThrow(RangeError);
    } finally {
      list.shm.close();
      list.shm.unlink();
    }
  });

  test('an empty list, a named list, and a list crossing by name', () => {
    const empty = madeList(new mp.ShareableList());
    expect(empty.length).toBe(0);
    const name = `mp-list-${process.pid}`;
    const named = madeList(new mp.ShareableList([1], { name }));
    expect(named.shm.name).toBe(name);
    const copy = loads(dumps(named)) as mp.ShareableList;
    expect(copy).toBeInstanceOf(mp.ShareableList);
    copy[0] = 2;
    expect(named[0]).toBe(2);
    for (const list of [copy, named, empty]) list.shm.close();
    named.shm.unlink();
    empty.shm.unlink();
  });

  test('a forked child writes items the parent reads', () => {
    const list = madeList(new mp.ShareableList([0, '        ']));
    const pid = forkChild(() => {
      list[0] = 42;
      list[1] = 'child';
      return 0;
    });
    expect(exitcodeOf(pid)).toBe(0);
    expect([...list]).toEqual([42, 'child']);
    list.shm.close();
    list.shm.unlink();
  });

  const withPython = hasPython() ? test : test.skip;

  withPython('Python attaches a list made here, and this side attaches a list made by Python', () => {
    const list = madeList(new mp.ShareableList([1, 2.5, 'hé', null, true, Buffer.from('ab')]));
    try {
      const seen = python(`sl = attach('${list.shm.name}')\nprint(list(sl), sl.format)\nsl[0] = 'py'\nsl.shm.close()`);
      expect(seen).toBe("[1, 2.5, 'hé', None, True, b'ab'] qd8sxxxxxx?xxxxxxxx?8s");
      expect(list[0]).toBe('py');
    } finally {
      list.shm.close();
      list.shm.unlink();
    }
    const name = python(
      "sl = shared_memory.ShareableList([7, -1.5, 'x', None, False, b'yz'])\n" +
        "resource_tracker.unregister(sl.shm._name, 'shared_memory')\nprint(sl.shm.name)\nsl.shm.close()",
    );
    const fromPython = madeList(new mp.ShareableList(null, { name }));
    expect([...fromPython]).toEqual([7, -1.5, 'x', null, false, Buffer.from('yz')]);
    fromPython.shm.close();
    fromPython.shm.unlink();
  });
});
