/**
 * Nothing is left behind by a SharedMemory that fails: the size is checked
 * before the segment is made (with the limit in the error), and a failure
 * after it was made unlinks and unmaps it.
 */
import { constants as bufferConstants } from 'buffer';
import * as fs from 'fs';

import * as mp from '..';

const shmEntries = (): string[] => fs.readdirSync('/dev/shm').filter((name) => name.startsWith('mp-') && !name.startsWith('mp-heap-'));
const mappedShm = (name: string): boolean => fs.readFileSync('/proc/self/maps', 'utf8').includes(`/dev/shm/${name}`);

describe('SharedMemory size', () => {
  test.each([2 ** 33, bufferConstants.MAX_LENGTH + 1])('create with size %p: a RangeError naming the limit, and no segment', (size) => {
    const before = new Set(shmEntries());
    expect(() => new mp.SharedMemory({ create: true, size })).toThrow(RangeError);
    expect(() => new mp.SharedMemory({ create: true, size })).toThrow(
      `size must be at most ${bufferConstants.MAX_LENGTH} bytes (buffer.constants.MAX_LENGTH, the largest Buffer this Node makes), got ${size}`,
    );
    expect(shmEntries().filter((name) => !before.has(name))).toEqual([]);
  });

  test('a named segment that fails is not created either', () => {
    const name = `mp-too-big-${process.pid}`;
    expect(() => new mp.SharedMemory({ name, create: true, size: 2 ** 33 })).toThrow(RangeError);
    expect(fs.existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  test('attaching a segment too large to view throws and leaves it unmapped (and in place: it is not ours)', () => {
    const name = `mp-huge-${process.pid}`;
    const fd = fs.openSync(`/dev/shm/${name}`, 'w');
    try {
      fs.ftruncateSync(fd, 2 ** 33); // sparse: no memory used
      expect(() => new mp.SharedMemory({ name })).toThrow();
      expect(mappedShm(name)).toBe(false);
      expect(fs.existsSync(`/dev/shm/${name}`)).toBe(true);
    } finally {
      fs.closeSync(fd);
      fs.unlinkSync(`/dev/shm/${name}`);
    }
  });

});
