/**
 * What a Queue survives: consumers SIGKILLed in the middle of a message (the
 * stream stays in step), and small and large items from several producers at
 * once (small ones are written without a lock, large ones with it).
 */
import * as fs from 'fs';

import * as mp from '..';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/queue_targets.js') as {
  produceMixed(queue: mp.Queue, producer: number, count: number): void;
  getForever(queue: mp.Queue, ready: mp.Event): Promise<void>;
};

/** The internals these tests reach: the pipe's write end and the words its processes share. */
interface QueueInternals {
  _pipe: { writer: { fd: number }; words: Int32Array };
  _places: mp.Semaphore;
}

/** Index of the low half of "bytes of the frame read so far" in the shared words (queues.ts PROGRESS + 1). */
const READ_SO_FAR = 5;

/** A frame as the queue writes it: 4-byte big-endian length, then the JSON tag and text. */
function rawFrame(value: unknown): Buffer {
  const payload = Buffer.from(`\u0001${JSON.stringify(value)}`);
  const header = Buffer.alloc(4);
  header.writeInt32BE(payload.length);
  return Buffer.concat([header, payload]);
}

/** Writes bytes straight into the queue's pipe, as a producer half-way through a message would have. */
function writeRaw(q: mp.Queue, bytes: Buffer): void {
  expect(fs.writeSync((q as unknown as QueueInternals)._pipe.writer.fd, bytes)).toBe(bytes.length);
}

/** Resolves once the reader holding the turn has read `count` bytes of its frame (the shared words say so). */
async function readerHasRead(q: mp.Queue, count: number): Promise<void> {
  const words = (q as unknown as QueueInternals)._pipe.words;
  while (Atomics.load(words, READ_SO_FAR) !== count) await new Promise((resolve) => setImmediate(resolve));
}

/** A consumer child blocked in get() in the middle of the frame whose first `split` bytes are in the pipe; then killed. */
async function killConsumerAfter(q: mp.Queue<string>, frame: Buffer, split: number): Promise<void> {
  expect((q as unknown as QueueInternals)._places.acquireSync({ block: false })).toBe(true); // the place a put takes
  writeRaw(q, frame.subarray(0, split));
  const p = new mp.Process({ target: targets.getForever, args: [q, new mp.Event()] });
  p.start();
  await readerHasRead(q, split);
  p.kill();
  await p.join();
  expect(p.exitCode).toBe(-9);
  writeRaw(q, frame.subarray(split));
}

describe('a consumer SIGKILLed in the middle of a message', () => {
  test('after the header: the message is not lost, the next consumer gets it', async () => {
    const q = new mp.Queue<string>();
    await killConsumerAfter(q, rawFrame('kept'), 4);
    await q.put('next');
    expect(q.getSync()).toBe('kept');
    expect(await q.get()).toBe('next');
    q.close();
  });

  test('after part of the payload: that message went with it, and the queue stays in step', async () => {
    const q = new mp.Queue<string>();
    const frame = rawFrame('x'.repeat(100));
    await killConsumerAfter(q, frame, 4 + 10);
    await q.put('next');
    expect(await q.get()).toBe('next');
    expect(q.qsize()).toBe(0); // the lost message's place was given back
    q.putSync('last');
    expect(q.getSync()).toBe('last');
    q.close();
  });
});

test('4 producers of small and large items at once: each item once, intact, in order per producer', async () => {
  const q = new mp.Queue<{ producer: number; i: number; pad: string }>();
  const count = 300;
  const producers = [0, 1, 2, 3].map((producer) => new mp.Process({ target: targets.produceMixed, args: [q, producer, count] }));
  for (const p of producers) p.start();
  const next = [0, 0, 0, 0];
  for (let n = 0; n < 4 * count; n++) {
    const { producer, i, pad } = await q.get();
    expect(i).toBe(next[producer]);
    expect(pad).toBe(i % 3 === 0 ? 'x'.repeat(8192 + i) : '');
    next[producer]++;
  }
  for (const p of producers) await p.join();
  expect(producers.map((p) => p.exitCode)).toEqual([0, 0, 0, 0]);
  expect(q.empty()).toBe(true);
  q.close();
});
