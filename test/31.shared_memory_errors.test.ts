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
  // Node 20 makes Buffers of at most 2^32 bytes; Node 22+ of 2^53 - 1 (then the
  // integer range is the limit): one size over the limit, whatever this Node's is.
  const tooBig = bufferConstants.MAX_LENGTH + 1;
  const limit = Math.min(bufferConstants.MAX_LENGTH, Number.MAX_SAFE_INTEGER);

  test('create with a size over the limit: a RangeError naming the limit, and no segment', () => {
    const before = new Set(shmEntries());
    expect(() => new mp.SharedMemory({ create: true, size: tooBig })).toThrow(RangeError);
    expect(() => new mp.SharedMemory({ create: true, size: tooBig })).toThrow(new RegExp(`${limit}.*got ${tooBig}`));
    expect(shmEntries().filter((name) => !before.has(name))).toEqual([]);
  });

  test('a named segment that fails is not created either', () => {
    const name = `mp-too-big-${process.pid}`;
    expect(() => new mp.SharedMemory({ name, create: true, size: tooBig })).toThrow(RangeError);
    expect(fs.existsSync(`/dev/shm/${name}`)).toBe(false);
  });

  // Only where a Buffer cannot view 8 GiB (Node 20): a larger sparse file cannot be made in /dev/shm.
  (bufferConstants.MAX_LENGTH < 2 ** 33 ? test : test.skip)('attaching a segment too large to view throws and leaves it unmapped (and in place: it is not ours)', () => {
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
