/**
 * The pool's native wire (src/pool/channel.ts NativeWire): the parent's and a
 * forked worker's end of a socket pair, read by the addon. Framing, a burst
 * of messages, large messages, a peer that dies mid-message, end of file.
 * The ends here are in this process, or one is a forked child's; both are
 * real descriptors of a real socket pair.
 */
import * as fs from 'fs';

import * as mp from '..';

import { HANG_GUARD_MS } from './40.helpers';
import { procStat, spawnTracked } from './helpers';

import type * as ChannelModule from '../dist/pool/channel';
import type * as NativeModule from '../dist/native';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { NativeWire, encodeMessage, encodePayload, decodePayload } = require('../dist/pool/channel') as typeof ChannelModule;
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { loadNative } = require('../dist/native') as typeof NativeModule;

const native = loadNative();
const withAddon = native !== null ? describe : describe.skip;

type Received = Array<{ header: readonly unknown[]; value: unknown }>;

/** A wire over one end of a fresh pair; the other end is returned as a raw descriptor. */
function wireAndPeer(received: Received, onClose: () => void): [InstanceType<typeof NativeWire>, number] {
  const [mine, peer] = (native as NonNullable<typeof native>).socketpair();
  const wire = new NativeWire(native as NonNullable<typeof native>, mine, (header, payload) => {
    received.push({ header, value: payload.length > 0 ? decodePayload(payload) : undefined });
  }, onClose);
  return [wire, peer];
}

/** A message as the raw peer writes it: Python's framing (4-byte big-endian length) around ours, less our length word. */
function rawFrame(header: number[], value?: unknown): Buffer {
  const message = encodeMessage(header, value === undefined ? null : encodePayload(value, 'value')).subarray(4);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(message.length);
  return Buffer.concat([length, message]);
}

/** Resolves once `predicate` holds, looking after each turn of the event loop (no time limit of its own). */
async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((resolve) => setImmediate(resolve));
}

withAddon('pool: native wire', () => {
  const open: number[] = [];
  const wires: Array<InstanceType<typeof NativeWire>> = [];
  const children: mp.Process[] = [];

  afterEach(() => {
    for (const wire of wires.splice(0)) wire.detach();
    for (const fd of open.splice(0)) {
      try {
        fs.closeSync(fd);
      } catch {
        // closed by the test
      }
    }
    for (const child of children.splice(0)) {
      if (child.exitCode === null) child.kill();
    }
  });

  /** Starts `child` (which holds `theirs`), closes our copy of `theirs`, and reads `mine` with a wire. */
  function startWithPeer(child: mp.Process, mine: number, theirs: number): { wire: InstanceType<typeof NativeWire>; received: Received; closed: () => number } {
    children.push(child);
    child.start();
    fs.closeSync(theirs);
    const received: Received = [];
    let closed = 0;
    const wire = new NativeWire(native as NonNullable<typeof native>, mine, (header, payload) => {
      received.push({ header, value: decodePayload(payload) });
    }, () => closed++);
    wires.push(wire);
    return { wire, received, closed: () => closed };
  }

  /** A forked child that echoes each message ([2]: it hangs up and leaves), and our wire to it. */
  function startEchoingChild(): ReturnType<typeof startWithPeer> & { child: mp.Process } {
    const [mine, theirs] = (native as NonNullable<typeof native>).socketpair();
    const child = new (mp.getContext('fork').Process)({
      target: () => {
        fs.closeSync(mine);
        // The child leaves once its wire has closed (told to by the parent).
        return new Promise<void>((resolve) => {
          const wire: InstanceType<typeof NativeWire> = new NativeWire(native as NonNullable<typeof native>, theirs, (header, payload) => {
            if (header[0] === 2) wire.close();
            else wire.send(encodeMessage([...header] as number[], Buffer.from(payload)));
          }, resolve);
        });
      },
    });
    return { child, ...startWithPeer(child, mine, theirs) };
  }

  test('a burst written at once arrives as whole messages, in order, headers and payloads intact', async () => {
    const received: Received = [];
    const [wire, peer] = wireAndPeer(received, () => {});
    wires.push(wire);
    open.push(peer);
    const values: unknown[] = [7.5, [1, 2, 3], { a: 'b', c: [null, true] }, 'text', undefined];
    const burst = Buffer.concat(values.map((value, i) => rawFrame([3, i, 2 ** 32 - 1], value)));
    // Byte by byte for the first message (a frame split anywhere), then the rest in one write.
    for (let i = 0; i < 10; i++) fs.writeSync(peer, burst.subarray(i, i + 1));
    fs.writeSync(peer, burst.subarray(10));
    await until(() => received.length === values.length);
    expect(received.map((m) => m.header)).toEqual(values.map((_, i) => [3, i, 2 ** 32 - 1]));
    expect(received.map((m) => m.value)).toEqual(values);
  });

  test('what it sends is one frame per message, readable by the peer', () => {
    const [wire, peer] = wireAndPeer([], () => {});
    wires.push(wire);
    open.push(peer);
    wire.send(encodeMessage([1, 42, 0, 0], encodePayload([3], 'args')));
    const bytes = Buffer.alloc(256);
    const got = fs.readSync(peer, bytes);
    const length = bytes.readUInt32BE(0);
    expect(got).toBe(4 + length);
    const headLength = bytes.readUInt32LE(4);
    expect(decodePayload(bytes.subarray(8 + headLength, 4 + length))).toEqual([3]);
  });

  test('large messages cross whole both ways (a forked child echoes them)', async () => {
    const { child, wire, received, closed } = startEchoingChild();
    const big = Array.from({ length: 1_000_000 }, (_, i) => i * 0.5); // 8 MB as numbers
    const text = 'x'.repeat(3 * 1024 * 1024);
    // One at a time, as the pool does: a send blocks while the peer's buffer is full, and the
    // peer echoing the first would block on ours while we still wrote the second.
    wire.send(encodeMessage([3, 1], encodePayload(big, 'big')));
    await until(() => received.length === 1);
    wire.send(encodeMessage([3, 2], encodePayload({ text }, 'text')));
    await until(() => received.length === 2);
    expect(received[0].header).toEqual([3, 1]);
    expect(received[0].value).toEqual(big);
    expect(received[1].value).toEqual({ text });
    wire.send(encodeMessage([2]));
    await until(() => closed() === 1); // the child hung up: end of file here
    await child.join();
    expect(child.exitCode).toBe(0);
  });

  test('a send to a stopped peer never blocks: the event loop runs, and once it goes on, all arrives whole and in order', async () => {
    const { child, wire, received, closed } = startEchoingChild();
    const pid = child.pid as number;
    mp.os.kill(pid, 'SIGSTOP');
    await until(() => procStat(pid)?.state === 'T');
    // Hang guard: a send that blocked would be let go on by this, and the peer would no longer be stopped.
    spawnTracked(process.execPath, ['-e', `setTimeout(() => process.kill(${pid}, 'SIGCONT'), ${HANG_GUARD_MS})`], { stdio: 'ignore' });
    const text = 'y'.repeat(16 * 1024 * 1024); // far more than the socket pair's buffers hold
    wire.send(encodeMessage([3, 1], encodePayload({ text }, 'text')));
    for (let i = 2; i <= 4; i++) wire.send(encodeMessage([3, i], encodePayload(i, 'number')));
    expect(procStat(pid)?.state).toBe('T');
    // The sends returned with the peer stopped, and the event loop still turns.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(received).toEqual([]);
    mp.os.kill(child.pid as number, 'SIGCONT');
    await until(() => received.length === 4);
    expect(received.map((m) => m.header)).toEqual([[3, 1], [3, 2], [3, 3], [3, 4]]);
    expect(received[0].value).toEqual({ text });
    expect(received.slice(1).map((m) => m.value)).toEqual([2, 3, 4]);
    wire.send(encodeMessage([2]));
    await until(() => closed() === 1);
    await child.join();
    expect(child.exitCode).toBe(0);
  });

  test('a send to a peer gone with a backlog waiting: no error thrown, the close callback once', async () => {
    const [mine, theirs] = (native as NonNullable<typeof native>).socketpair();
    const child = new (mp.getContext('fork').Process)({
      target: () => {
        // Reads nothing; stopped until the parent kills it.
        mp.os.kill(mp.os.getpid(), 'SIGSTOP');
      },
    });
    const { wire, closed } = startWithPeer(child, mine, theirs);
    await until(() => procStat(child.pid as number)?.state === 'T');
    wire.send(encodeMessage([3, 1], encodePayload('z'.repeat(8 * 1024 * 1024), 'text'))); // kept, mostly
    child.kill();
    await until(() => closed() === 1);
    expect(() => wire.send(encodeMessage([3, 2]))).not.toThrow();
    await child.join();
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed()).toBe(1);
  });

  test('a peer gone mid-message: no message, the close callback once, sends after it do nothing', async () => {
    const received: Received = [];
    let closed = 0;
    const [wire, peer] = wireAndPeer(received, () => closed++);
    wires.push(wire);
    const frame = rawFrame([3, 9], Array.from({ length: 100 }, (_, i) => i));
    fs.writeSync(peer, frame.subarray(0, 40)); // the header says more is coming
    fs.closeSync(peer); // as a killed worker's descriptors are
    await until(() => closed > 0);
    expect(received).toEqual([]);
    expect(wire.closed).toBe(true);
    expect(() => wire.send(encodeMessage([3, 10]))).not.toThrow();
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(1);
  });

  test('a forked child killed by SIGKILL mid-message: no message, its end of file, once', async () => {
    const [mine, theirs] = (native as NonNullable<typeof native>).socketpair();
    const frame = rawFrame([3, 1], Array.from({ length: 10_000 }, (_, i) => i));
    const child = new (mp.getContext('fork').Process)({
      target: () => {
        fs.closeSync(mine);
        fs.writeSync(theirs, frame.subarray(0, frame.length >> 1));
        // (mp.os.getpid(): jest's sandboxed process object keeps the parent's pid)
        mp.os.kill(mp.os.getpid(), 'SIGKILL');
      },
    });
    const { received, closed } = startWithPeer(child, mine, theirs);
    await until(() => closed() > 0);
    await child.join();
    expect(child.exitCode).toBe(-9);
    expect(received).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed()).toBe(1);
  });

  test('local close: the close callback follows, asynchronously, once', async () => {
    let closed = 0;
    const [wire, peer] = wireAndPeer([], () => closed++);
    open.push(peer);
    wire.close();
    expect(closed).toBe(0);
    await until(() => closed === 1);
    wire.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(1);
    // The peer sees end of file.
    expect(fs.readSync(peer, Buffer.alloc(8))).toBe(0);
  });
});

withAddon('native Channel.sendAsync (what the pool sends with)', () => {
  const channels: Array<{ close(): void }> = [];
  afterEach(() => {
    for (const channel of channels.splice(0)) channel.close();
  });

  test('what the peer cannot take yet is kept and written in order as it reads', async () => {
    const [mine, peer] = (native as NonNullable<typeof native>).socketpair();
    const writer = new (native as NonNullable<typeof native>).Channel(mine);
    const frames: Buffer[] = [];
    const reader = new (native as NonNullable<typeof native>).Channel(peer, (got) => frames.push(...got));
    channels.push(writer, reader);
    const big = Buffer.alloc(8 * 1024 * 1024, 7); // more than the socket pair's buffers hold
    expect(writer.sendAsync(big)).toBe(false);
    expect(writer.sendAsync(Buffer.from('after'))).toBe(false); // behind the first, never before it
    reader.start();
    await until(() => frames.length === 2);
    expect(frames[0].equals(big)).toBe(true);
    expect(frames[1].toString()).toBe('after');
    writer.send(Buffer.from('blocking')); // nothing waits now: written at once
    await until(() => frames.length === 3);
    expect(frames[2].toString()).toBe('blocking');
  });

  test('a write of the kept bytes that fails goes to onWriteError, once; close() drops what is kept', async () => {
    const [mine, peer] = (native as NonNullable<typeof native>).socketpair();
    const errors: Array<Error & { code?: string; syscall?: string }> = [];
    const writer = new (native as NonNullable<typeof native>).Channel(mine, undefined, { onWriteError: (error) => errors.push(error) });
    channels.push(writer);
    expect(writer.sendAsync(Buffer.alloc(8 * 1024 * 1024))).toBe(false);
    fs.closeSync(peer); // the reader is gone with the rest unread
    await until(() => errors.length > 0);
    expect(['EPIPE', 'ECONNRESET']).toContain(errors[0].code);
    expect(errors[0].syscall).toBe('write');
    expect(() => writer.sendAsync(Buffer.from('x'))).toThrow(expect.objectContaining({ syscall: 'write' }));
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toHaveLength(1);

    const [again, other] = (native as NonNullable<typeof native>).socketpair();
    const dropped = new (native as NonNullable<typeof native>).Channel(again);
    expect(dropped.sendAsync(Buffer.alloc(8 * 1024 * 1024))).toBe(false);
    dropped.close();
    // The peer sees what was written, then the end: no more of the kept bytes.
    const reader = new (native as NonNullable<typeof native>).Channel(other);
    channels.push(reader);
    expect(reader.recvSync(-1)).toBeUndefined(); // a partial frame at the end is no frame
  });
});
