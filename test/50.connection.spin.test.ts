/**
 * Spinning channels (native/framed_channel.cc, "Spinning"): a Connection's
 * and a manager link's waits look for a frame awake for a while before they
 * sleep. What of it can be seen without a clock: a timeout is kept (a wait
 * of 0 answers at once, a blocking descriptor is never left in a read() that
 * waits past its timeout, a partial frame included), frames still arrive
 * whole and in order, and a forked child's copy of a parent's waiting
 * connection never takes the parent's message.
 */
import * as fs from 'fs';

import * as mp from '..';

import type * as NativeModule from '../dist/native';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { loadNative } = require('../dist/native') as typeof NativeModule;

const native = loadNative();
const withAddon = native !== null ? describe : describe.skip;

/** A frame as the peer writes it: a 4-byte big-endian length, then the payload. */
function frame(payload: string): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(Buffer.byteLength(payload));
  return Buffer.concat([length, Buffer.from(payload)]);
}

withAddon('a spin channel keeps its timeouts', () => {
  const open: Array<{ close(): void }> = [];
  const peers: number[] = [];
  afterEach(() => {
    for (const channel of open.splice(0)) channel.close();
    for (const fd of peers.splice(0)) fs.closeSync(fd);
  });

  describe.each([
    ['blocking', true],
    ['non-blocking', false],
  ])('%s descriptor', (_kind, blocking) => {
    function spinChannel(): [NativeModule.NativeChannel, number] {
      const [mine, peer] = (native as NonNullable<typeof native>).socketpair();
      const channel = new (native as NonNullable<typeof native>).Channel(mine, undefined, { blocking, spin: true });
      open.push(channel);
      peers.push(peer);
      return [channel, peer];
    }

    test('nothing there: recvSync(0), recvSync(timeout), poll(0) and poll(timeout) answer that nothing came', () => {
      const [channel] = spinChannel();
      expect(channel.recvSync(0)).toBeNull();
      expect(channel.poll(0)).toBe(false);
      expect(channel.recvSync(0.01)).toBeNull(); // shorter than the spin: the spin stops at the timeout
      expect(channel.recvSync(2)).toBeNull(); // longer: the spin, then a sleep
      expect(channel.poll(2)).toBe(false);
    });

    test('a partial frame there: a limited recvSync() answers null, then the whole frame once the rest comes', () => {
      const [channel, peer] = spinChannel();
      const whole = frame('hello spin');
      fs.writeSync(peer, whole.subarray(0, 6)); // the header and two bytes
      expect(channel.poll(0)).toBe(true); // bytes are there (not yet a frame)
      expect(channel.recvSync(0)).toBeNull();
      expect(channel.recvSync(2)).toBeNull();
      fs.writeSync(peer, whole.subarray(6));
      expect((channel.recvSync(-1) as Buffer).toString()).toBe('hello spin');
      expect(channel.recvSync(0)).toBeNull();
    });

    test('frames sent before the wait, and the end of file, arrive in order', () => {
      const [channel, peer] = spinChannel();
      fs.writeSync(peer, Buffer.concat([frame('one'), frame('two')]));
      expect((channel.recvSync(0) as Buffer).toString()).toBe('one');
      expect((channel.recvSync(2) as Buffer).toString()).toBe('two');
      fs.closeSync(peers.pop() as number);
      expect(channel.poll(2)).toBe(true);
      expect(channel.recvSync(-1)).toBeUndefined();
    });
  });

  test('call() on a blocking spin channel returns the answer the peer sends', () => {
    const [mine, peer] = (native as NonNullable<typeof native>).socketpair();
    peers.push(peer);
    const channel = new (native as NonNullable<typeof native>).Channel(mine, undefined, { blocking: true, spin: true });
    open.push(channel);
    fs.writeSync(peer, frame('answer')); // already there when the call looks
    expect((channel.call(Buffer.from('question')) as Buffer).toString()).toBe('answer');
    const asked = Buffer.alloc(64);
    expect(asked.subarray(0, fs.readSync(peer, asked)).equals(frame('question'))).toBe(true);
  });
});

withAddon("a forked child's copy of a waiting connection", () => {
  test("does not take the parent's message while the child's event loop runs", async () => {
    const [mine, theirs] = mp.Pipe();
    const [control, childControl] = mp.Pipe();
    const pending = mine.recv(); // the parent waits: its loop spins for a while, then sleeps
    const child = new (mp.getContext('fork').Process)({
      target: async (conn: mp.Connection) => {
        conn.send('up');
        await conn.recv(); // the child's loop turns, with its copies of the parent's handles
      },
      args: [childControl],
    });
    child.start();
    expect(await control.recv()).toBe('up');
    theirs.send('for the parent');
    expect(await pending).toBe('for the parent');
    control.send('done');
    await child.join();
    expect(child.exitCode).toBe(0);
    for (const conn of [mine, theirs, control, childControl]) conn.close();
  });
});
