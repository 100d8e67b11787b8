/**
 * Connection and Pipe: messages, bytes, the end of a connection, misuse, and
 * connections handed to children under every start method.
 */
import * as mp from '..';
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';

import { fdCount, runFixture } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/connection_targets.js') as {
  echo(conn: mp.Connection): Promise<void>;
  echoSync(conn: mp.Connection): void;
  sendMany(conn: mp.Connection, count: number): void;
  sendBig(conn: mp.Connection, size: number): void;
  sendSizes(conn: mp.Connection, sizes: number[]): void;
  sendThenChange(conn: mp.Connection, size: number, changed: mp.Event): void;
  useShared(conn: mp.Connection): Promise<void>;
  useReceivedConnection(conn: mp.Connection): Promise<void>;
};

const methods = mp.getAllStartMethods();

function expectPattern(buffer: Buffer, size: number): void {
  expect(buffer.length).toBe(size);
  let wrong = -1;
  for (let k = 0; k < size && wrong < 0; k++) if (buffer[k] !== k % 251) wrong = k;
  expect(wrong).toBe(-1);
}

describe('Pipe', () => {
  test('a duplex pipe carries structured clones both ways', async () => {
    const [a, b] = mp.Pipe();
    const cyclic: { self?: unknown; when: Date } = { when: new Date(5) };
    cyclic.self = cyclic;
    const values = [
      42,
      'text',
      null,
      undefined,
      [1, 'two', { three: 3 }],
      new Map([[1, new Set(['x'])]]),
      12345678901234567890n,
      new Float64Array([1.5, -2]),
      Buffer.from('bytes'),
      new RangeError('bad'),
      cyclic,
    ];
    for (const value of values) a.send(value);
    for (const value of values) {
      const got = await b.recv();
      if (value === cyclic) {
        const copy = got as typeof cyclic;
        expect(copy.self).toBe(copy);
        expect(copy.when.getTime()).toBe(5);
      } else if (value instanceof Error) {
        expect((got as Error).name).toBe('RangeError');
        expect((got as Error).message).toBe('bad');
      } else if (value instanceof Map) {
        // Made in another realm under jest: compared by content.
        expect([...(got as Map<number, Set<string>>)].map(([k, v]) => [k, [...v]])).toEqual([[1, ['x']]]);
      } else if (value instanceof Float64Array || Buffer.isBuffer(value)) {
        expect(Array.from(got as ArrayLike<number>)).toEqual(Array.from(value));
      } else {
        expect(got).toEqual(value);
      }
    }
    b.send('back');
    expect(a.recvSync()).toBe('back');
    a.close();
    b.close();
  });

  test('a one-way pipe is [reader, writer]; each end refuses the other direction', () => {
    const [reader, writer] = mp.Pipe(false);
    expect([reader.readable, reader.writable, writer.readable, writer.writable]).toEqual([true, false, false, true]);
    writer.send({ n: 1 });
    expect(reader.recvSync()).toEqual({ n: 1 });
    expect(() => reader.send(1)).toThrow(/read-only/);
    expect(() => writer.recvSync()).toThrow(/write-only/);
    reader.close();
    writer.close();
  });

  test('bytes: sendBytes with offset and size, recvBytes, typed arrays and ArrayBuffers', async () => {
    const [a, b] = mp.Pipe();
    a.sendBytes(Buffer.from('0123456789'), 2, 5);
    a.sendBytes(new Uint16Array([1, 2]));
    a.sendBytes(new ArrayBuffer(3));
    a.sendBytes(Buffer.alloc(0));
    expect((await b.recvBytes()).toString()).toBe('23456');
    expect(b.recvBytesSync()).toEqual(Buffer.from(new Uint16Array([1, 2]).buffer));
    expect(b.recvBytesSync()).toEqual(Buffer.alloc(3));
    expect(b.recvBytesSync().length).toBe(0);
    expect(() => a.sendBytes(Buffer.alloc(4), 5)).toThrow(RangeError);
    expect(() => a.sendBytes(Buffer.alloc(4), 1, 4)).toThrow(RangeError);
    expect(() => a.sendBytes('text' as unknown as Buffer)).toThrow(TypeError);
    a.close();
    b.close();
  });

  test('recvBytes(maxLength) refuses a longer message and leaves it in place', async () => {
    const [a, b] = mp.Pipe();
    a.sendBytes(Buffer.alloc(10, 1));
    a.sendBytes(Buffer.alloc(10, 2));
    await expect(b.recvBytes(4)).rejects.toThrow(/maxLength/);
    expect(() => b.recvBytesSync(9)).toThrow(RangeError);
    expect((await b.recvBytes(10))[0]).toBe(1);
    expect(() => b.recvBytesSync(3)).toThrow(/maxLength/);
    expect(b.recvBytesSync()[0]).toBe(2);
    a.close();
    b.close();
  });

  test('a value that cannot be sent is a TypeError naming it, and the connection keeps working', () => {
    const [a, b] = mp.Pipe();
    expect(() => a.send({ f: () => 1 })).toThrow(/obj\.f/);
    expect(() => a.send(Symbol('s'))).toThrow(TypeError);
    a.send('still works');
    expect(b.recvSync()).toBe('still works');
    expect(b.pollSync()).toBe(false);
    a.close();
    b.close();
  });

  test('recv() after recvSync() gets what the blocking read took past its message', async () => {
    // Three messages are in the socket before the first recvSync(), which reads
    // them all into the channel's buffer: no readable event will announce the rest.
    const [a, b] = mp.Pipe();
    a.send('first');
    a.send({ second: 2 });
    a.sendBytes(Buffer.from('third'));
    expect(b.recvSync()).toBe('first');
    expect(b.poll()).toBe(true);
    expect(await b.recv()).toEqual({ second: 2 });
    expect((await b.recvBytes()).toString()).toBe('third');
    a.send('fourth'); // and receiving goes on on the event loop
    expect(await b.recv()).toBe('fourth');
    a.close();
    await expect(b.recv()).rejects.toBeInstanceOf(mp.EOFError);
    b.close();
  });

  test('the peer closed: what was sent first arrives, then EOFError, async and sync', async () => {
    const [a, b] = mp.Pipe();
    a.send(1);
    a.send(2);
    a.close();
    expect(await b.recv()).toBe(1);
    expect(b.recvSync()).toBe(2);
    await expect(b.recv()).rejects.toBeInstanceOf(mp.EOFError);
    expect(() => b.recvSync()).toThrow(mp.EOFError);
    expect(b.poll()).toBe(true); // the end is there to read
    b.close();

    const [c, d] = mp.Pipe();
    const pending = d.recv();
    c.close();
    await expect(pending).rejects.toBeInstanceOf(mp.EOFError);
    d.close();
  });

  test('use after close throws; close twice does nothing; a pending recv rejects', async () => {
    const [a, b] = mp.Pipe();
    const pending = b.recv();
    b.close();
    await expect(pending).rejects.toThrow(/closed/);
    b.close();
    expect(b.closed).toBe(true);
    expect(() => b.send(1)).toThrow(/closed/);
    expect(() => b.recvSync()).toThrow(/closed/);
    expect(() => b.fileno()).toThrow(/closed/);
    expect(() => b.poll()).toThrow(/closed/);
    await expect(b.recv()).rejects.toThrow(/closed/);
    a.close();
  });

  test('poll() answers at once without taking; poll(timeout) waits for a message', async () => {
    const [a, b] = mp.Pipe();
    expect(b.poll()).toBe(false);
    expect(await b.poll(0)).toBe(false);
    expect(await b.poll(5)).toBe(false);
    const polled = b.poll(null);
    a.send('here');
    expect(await polled).toBe(true);
    expect(b.poll()).toBe(true);
    expect(b.pollSync(null)).toBe(true);
    expect(b.recvSync()).toBe('here');
    expect(b.poll()).toBe(false);
    expect(() => b.poll(-1)).toThrow(RangeError);
    a.close();
    b.close();
  });

  test('fileno() is the descriptor; new Connection(fd) validates its arguments', () => {
    const [a, b] = mp.Pipe();
    expect(Number.isInteger(a.fileno())).toBe(true);
    expect(a.fileno()).not.toBe(b.fileno());
    expect(() => new mp.Connection(-1)).toThrow(RangeError);
    expect(() => new mp.Connection(a.fileno(), { readable: false, writable: false })).toThrow(TypeError);
    expect(() => mp.Pipe('yes' as unknown as boolean)).toThrow(TypeError);
    a.close();
    b.close();
  });

  test('many messages in a burst arrive in order', async () => {
    const [a, b] = mp.Pipe();
    const count = 300; // what a socket pair holds: the sender is this process
    const received = (async () => {
      const got: number[] = [];
      for (let i = 0; i < count; i++) got.push(((await b.recv()) as { i: number }).i);
      return got;
    })();
    for (let i = 0; i < count; i++) a.send({ i, pad: 'y'.repeat(i % 100) });
    const got = await received;
    expect(got).toEqual(Array.from({ length: count }, (_, i) => i));
    a.close();
    b.close();
  });

  test('1,000 pipes created and closed leave no descriptor behind', () => {
    const before = fdCount();
    for (let i = 0; i < 1000; i++) {
      const [a, b] = mp.Pipe(i % 2 === 0);
      if (a.writable) a.send(i);
      a.close();
      b.close();
    }
    expect(fdCount()).toBe(before);
  });
});

describe.each(methods)('Connection with the %s start method', (method) => {
  const ctx = mp.getContext(method);

  test('a child echoes messages sent on a Pipe passed as an argument', async () => {
    const [parentEnd, childEnd] = mp.Pipe();
    const p = new ctx.Process({ target: targets.echo, args: [childEnd] });
    p.start();
    childEnd.close();
    for (let i = 0; i < 50; i++) {
      parentEnd.sendBytes(Buffer.from(`message ${i}`));
      expect((await parentEnd.recvBytes()).toString()).toBe(`message ${i}`);
    }
    parentEnd.sendBytes(Buffer.alloc(0)); // stop
    await p.join();
    parentEnd.close();
    expect(p.exitCode).toBe(0);
  });

  test('a child blocked in recvSync() echoes objects; the parent uses recvSync() too', async () => {
    const [parentEnd, childEnd] = mp.Pipe();
    const p = new ctx.Process({ target: targets.echoSync, args: [childEnd] });
    p.start();
    childEnd.close();
    for (let i = 0; i < 20; i++) {
      parentEnd.send({ i, when: new Date(i) });
      expect(parentEnd.recvSync()).toEqual({ i, when: new Date(i) });
    }
    parentEnd.send(null); // stop
    await p.join();
    expect(p.exitCode).toBe(0);
    parentEnd.close();
  });

  test('every message a child sent before it closed arrives, then EOFError', async () => {
    const [reader, writer] = mp.Pipe(false);
    const p = new ctx.Process({ target: targets.sendMany, args: [writer, 2000] });
    p.start();
    writer.close();
    let count = 0;
    for (;;) {
      let message: { i: number };
      try {
        message = (await reader.recv()) as { i: number };
      } catch (error) {
        expect(error).toBeInstanceOf(mp.EOFError);
        break;
      }
      expect(message.i).toBe(count++);
    }
    expect(count).toBe(2000);
    reader.close();
    await p.join();
  });

  test('a Lock and a Value sent over a Connection arrive usable', async () => {
    const [parentEnd, childEnd] = mp.Pipe();
    const lock = new mp.Lock();
    const value = mp.Value('i', 41);
    const p = new ctx.Process({ target: targets.useShared, args: [childEnd] });
    p.start();
    parentEnd.send({ lock, value });
    expect(await parentEnd.recv()).toBe('done');
    expect(value.value).toBe(42);
    await p.join();
    parentEnd.close();
    childEnd.close();
  });

  test('a Connection sent over a Connection arrives usable', async () => {
    const [parentEnd, childEnd] = mp.Pipe();
    const [mine, theirs] = mp.Pipe();
    const p = new ctx.Process({ target: targets.useReceivedConnection, args: [childEnd] });
    p.start();
    parentEnd.send(theirs);
    expect(await parentEnd.recv()).toBe('sent');
    expect(mine.recvSync()).toBe(`hello from ${p.pid}`);
    await p.join();
    for (const conn of [parentEnd, childEnd, mine, theirs]) conn.close();
  });
});

test.each([false, true])('a 64 MiB message from a child arrives intact (duplex: %s)', async (duplex) => {
  const [reader, writer] = mp.Pipe(duplex);
  const size = 64 * 1024 * 1024;
  const p = new mp.Process({ target: targets.sendBig, args: [writer, size] });
  p.start();
  writer.close();
  expectPattern(await reader.recvBytes(), size);
  await p.join();
  reader.close();
});

describe('large messages and the pipe capacity', () => {
  const KIB = 1024;
  const MIB = 1024 * KIB;
  const HEADER = 4;
  /** Linux's default pipe capacity, and the most a one-way Pipe grows to (fs.pipe-max-size's default). */
  const PIPE = 64 * KIB;
  const GROWN = MIB;

  function pattern(size: number): Buffer {
    const buffer = Buffer.allocUnsafe(size);
    for (let k = 0; k < size; k++) buffer[k] = k % 251;
    return buffer;
  }

  function readSysctl(name: string): number {
    return Number(fs.readFileSync(`/proc/sys/fs/${name}`, 'utf8'));
  }

  const root = process.getuid?.() === 0;
  // An unprivileged process grows a pipe only up to fs.pipe-max-size.
  const grows = process.platform === 'linux' && (root || readSysctl('pipe-max-size') >= GROWN);

  /** The bytes a write to `writer`'s (non-blocking) descriptor takes now: the room left in its pipe. */
  function room(writer: mp.Connection): number {
    try {
      return fs.writeSync(writer.fileno(), Buffer.alloc(2 * GROWN));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return 0;
      throw error;
    }
  }

  (grows ? test : test.skip)('a one-way pipe grows to the smallest size that holds a message, up to 1 MiB: the sender does not wait for a reader', () => {
    const fds = fdCount();
    const page = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }));
    // Without the growth, the sends past 64 KiB would wait for a reader forever.
    const capacities: number[] = [];
    for (const size of [PIPE - HEADER, PIPE - HEADER + 1, 200 * KIB, GROWN - HEADER]) {
      const [reader, writer] = mp.Pipe(false);
      writer.sendBytes(pattern(size));
      // A pipe fills whole pages: the frame's, then the room a write finds.
      capacities.push(Math.ceil((size + HEADER) / page) * page + room(writer));
      expectPattern(reader.recvBytesSync(), size);
      reader.close();
      writer.close();
    }
    // The kernel rounds a pipe's size up to a power of two pages.
    expect(capacities).toEqual([PIPE, 2 * PIPE, 256 * KIB, GROWN]);
    expect(fdCount()).toBe(fds);
  });

  test.each([false, true])('messages around the default and the grown capacity, and larger, arrive intact and in order (duplex: %s)', async (duplex) => {
    const fds = fdCount();
    // Around 64 KiB and the grown 1 MiB, and larger than both.
    const sizes = [100, PIPE - HEADER, PIPE - HEADER + 1, GROWN - HEADER, GROWN - HEADER + 1, 2 * MIB - 1, 2 * MIB, 3 * MIB + 5, 100];
    const [reader, writer] = mp.Pipe(duplex);
    const p = new mp.Process({ target: targets.sendSizes, args: [writer, sizes] });
    p.start();
    writer.close();
    for (const [i, size] of sizes.entries()) expectPattern(i % 2 === 0 ? await reader.recvBytes() : reader.recvBytesSync(), size);
    await p.join();
    reader.close();
    expect(fdCount()).toBe(fds);
  });

  /** A pipe's capacity now (F_GETPIPE_SZ, which Node does not offer), asked by python3 of the descriptor it inherits. */
  function pipeCapacity(fd: number): number {
    const F_GETPIPE_SZ = 1032;
    return Number(execFileSync('python3', ['-c', `import fcntl; print(fcntl.fcntl(3, ${F_GETPIPE_SZ}))`], { stdio: ['ignore', 'pipe', 'inherit', fd], encoding: 'utf8' }));
  }

  // A large message's pages are lent to a one-way pipe (vmsplice), all but its
  // last pipe capacity, which is written. The reader here takes the raw bytes
  // through a blocking descriptor of its own: the header (the sender has sized
  // the pipe by then), then all but the pipe's capacity; then it waits until
  // the sender has returned from sendBytes() and overwritten its buffer, and
  // takes the rest. Had any page of that rest still been lent when
  // sendBytes() returned, the rest would hold the new bytes.
  (process.platform === 'linux' ? test : test.skip)('a large message carries the bytes it had when sendBytes() was called: the sender may reuse its buffer once it returns', async () => {
    const size = 8 * MIB;
    const [reader, writer] = mp.Pipe(false);
    const changed = new mp.Event();
    const p = new mp.Process({ target: targets.sendThenChange, args: [writer, size, changed] });
    p.start();
    writer.close();
    const raw = fs.openSync(`/proc/self/fd/${reader.fileno()}`, 'r');
    const frame = Buffer.alloc(HEADER + size);
    const readUpTo = (end: number, from: number): number => {
      let at = from;
      while (at < end) at += fs.readSync(raw, frame, at, end - at, null);
      return at;
    };
    let sent = false;
    try {
      let at = readUpTo(HEADER, 0);
      const capacity = pipeCapacity(raw);
      expect(capacity).toBeGreaterThan(0);
      at = readUpTo(frame.length - capacity, at);
      // A sender that lent pages past the capacity cannot finish its send: it waits for room.
      sent = await changed.wait(60_000);
      expect(sent).toBe(true);
      readUpTo(frame.length, at);
    } finally {
      fs.closeSync(raw);
      // Only a sender stuck in its send is ended here; one that sent ends by itself.
      if (!sent) p.kill();
      await p.join();
      reader.close();
    }
    expect(frame.readInt32BE(0)).toBe(size);
    expect(frame.subarray(HEADER).indexOf(2)).toBe(-1);
    expect(p.exitCode).toBe(0);
  });

  // The budget of pipe pages per user binds unprivileged users only: a root run uses up nobody's.
  const softBudget = process.platform === 'linux' ? readSysctl('pipe-user-pages-soft') : 0;
  // As root the fixture runs as nobody, who must be able to reach node and the checkout (a clone in a
  // 0700 directory, as mktemp -d makes, is not).
  const nobodyReaches = (): boolean =>
    spawnSync(process.execPath, ['-e', 'for (const f of process.argv.slice(1)) require("fs").accessSync(f, 4)', require.resolve('./fixtures/connection_pipe_budget.js'), require.resolve('..')], { uid: 65534, gid: 65534 }).status === 0;
  const budgetTest = softBudget > 0 && softBudget <= 65536 && (!root || nobodyReaches()) ? test : test.skip;
  budgetTest('a pipe that cannot grow (the user\'s pipe budget used up) still carries large messages', () => {
    const pipesToFill = Math.ceil(softBudget / (GROWN / 4096)) + 4;
    const run = runFixture('connection_pipe_budget.js', [String(pipesToFill)], root ? { uid: 65534, gid: 65534 } : {});
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ before: PIPE, after: expect.any(Number), filled: true, delivered: true });
    // New pipes came out smaller: the budget was used up, so no pipe could grow.
    expect(JSON.parse(run.stdout).after).toBeLessThan(PIPE);
  });
});
