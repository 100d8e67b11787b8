/**
 * The forkserver start method's request channel: frames of any size cross it
 * in time linear in their size (issue 13 item 7: a 16 MB argument took 29 s in
 * start(), every chunk of the request being appended to all that was read).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '..';
import { FrameReader } from '../dist/frames';
import { FIXTURES } from './helpers';

const { digest } = require(path.join(FIXTURES, 'forkserver_targets.js')) as {
  digest: (file: string, bytes: Uint8Array) => void;
};

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

function frame(payload: Uint8Array): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32LE(payload.length, 0);
  return Buffer.concat([header, payload]);
}

/** `stream` cut into chunks of the given sizes (the last one takes the rest). */
function cut(stream: Buffer, sizes: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const size of sizes) {
    if (offset >= stream.length) break;
    chunks.push(stream.subarray(offset, offset + size));
    offset += size;
  }
  if (offset < stream.length) chunks.push(stream.subarray(offset));
  return chunks;
}

describe('FrameReader', () => {
  const payloads = [Buffer.from('a'), Buffer.alloc(0), crypto.randomBytes(1000), Buffer.from('xyz'), crypto.randomBytes(70000)];
  const stream = Buffer.concat(payloads.map(frame));

  test.each([
    ['one chunk', [stream.length]],
    ['byte by byte', Array.from({ length: stream.length }, () => 1)],
    ['lengths cut in two', [2, 3, 4, 1, 2, 999, 7]],
    ['64 KiB chunks', Array.from({ length: 2 }, () => 65536)],
    ['uneven chunks', [5, 6, 1002, 3, 8, 4096, 17, 65000]],
  ])('gives back every frame, in order, whatever the chunks (%s)', (_name, sizes) => {
    const reader = new FrameReader();
    const frames = cut(stream, sizes).flatMap((chunk) => reader.push(chunk));
    expect(frames.map(hex)).toEqual(payloads.map(hex));
  });

  test('copies each byte of a 64 MiB frame read in 64 KiB chunks once', () => {
    const size = 64 * 1024 * 1024;
    const chunks = cut(frame(Buffer.alloc(size, 7)), Array.from({ length: size / 65536 }, () => 65536));
    const reader = new FrameReader();
    const [frames, copied] = countCopies(() => chunks.flatMap((chunk) => reader.push(chunk)));
    expect(frames).toHaveLength(1);
    expect(frames[0].length).toBe(size);
    expect(frames[0].every((byte) => byte === 7)).toBe(true);
    // The frame's bytes once (the count sees them), and its 4-byte length.
    expect(copied).toBeGreaterThanOrEqual(size);
    expect(copied).toBeLessThanOrEqual(size + 4);
  });
});

/**
 * Runs `run`, counting the bytes copied from one buffer into another on the
 * way (by `set`, `copy` or `Buffer.concat`, each still done).
 */
function countCopies<T>(run: () => T): [T, number] {
  // Buffers are Uint8Arrays of Node's realm, which may not be this one's.
  const typedArray = Object.getPrototypeOf(Buffer.prototype) as Uint8Array;
  const { set } = typedArray;
  const { copy } = Buffer.prototype;
  const { concat } = Buffer;
  let copied = 0;
  typedArray.set = function (this: Uint8Array, source: ArrayLike<number>, offset?: number): void {
    copied += source.length;
    set.call(this, source, offset);
  };
  Buffer.prototype.copy = function (this: Buffer, target: Uint8Array, targetStart?: number, sourceStart = 0, sourceEnd = this.length) {
    const copiedNow = copy.call(this, target, targetStart, sourceStart, sourceEnd);
    copied += copiedNow;
    return copiedNow;
  };
  Buffer.concat = ((list: readonly Uint8Array[], totalLength?: number) => {
    const joined = concat(list, totalLength);
    copied += joined.length;
    return joined;
  }) as typeof concat;
  try {
    return [run(), copied];
  } finally {
    typedArray.set = set;
    Buffer.prototype.copy = copy;
    Buffer.concat = concat;
  }
}

describe('forkserver', () => {
  test('a 64 MiB argument arrives intact', () => {
    const bytes = crypto.randomBytes(64 * 1024 * 1024);
    const file = path.join(os.tmpdir(), `mp-forkserver-${process.pid}.json`);
    const child = new (mp.getContext('forkserver').Process)({ target: digest, args: [file, bytes] });
    child.start();
    child.joinSync();
    expect(child.exitCode).toBe(0);
    child.close();
    const reported = JSON.parse(fs.readFileSync(file, 'utf8')) as { length: number; sha256: string };
    fs.unlinkSync(file);
    expect(reported).toEqual({ length: bytes.length, sha256: crypto.createHash('sha256').update(bytes).digest('hex') });
  }, 600000);
});
