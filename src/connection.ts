/**
 * Connections between processes, as CPython's `multiprocessing.connection`:
 * {@link Connection} (one end of a byte stream, carrying framed messages),
 * {@link Pipe}, {@link Listener} and {@link Client} (Unix-socket and TCP
 * connections with Python's authkey handshake) and {@link wait}.
 *
 * Messages are framed as Python frames them (a 4-byte big-endian length, or
 * -1 and an 8-byte length for 2 GiB and more), so a Python peer exchanges
 * bytes messages (`sendBytes`/`recvBytes`) with a Node one. Objects travel as
 * `v8.serialize` (structured clone) through the reducer registry
 * (reduction.ts): Locks, Values, Arrays, Queues and Connections sent arrive
 * usable.
 *
 * The bytes are moved by the addon (native/connection.cc): a send writes the
 * whole frame before it returns; reads are buffered, on the event loop for
 * `recv()` and blocking for `recvSync()`.
 * @packageDocumentation
 */
import { forkGeneration } from './at_fork';
import { EOFError } from './errors';
import type { NativeBinding, NativeChannel } from './native';
import { requireNative } from './native';
import { dumps, inheritedDescriptor, loads, passDescriptor, registerReducer } from './reduction';
import { getpid } from './util';
import { describe, validateInteger, validateTimeout } from './validate';

/** Taken messages after which the read-ahead array is compacted. */
const COMPACT_AFTER = 1024;

/** What a pending `recv()`/`recvBytes()` resolves with. */
interface Receiver {
  /** `true`: the raw bytes (`recvBytes`), else the decoded object. */
  readonly bytes: boolean;
  readonly maxLength: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

function native(): NativeBinding {
  return requireNative('Connection');
}

function closedError(): Error {
  return Object.assign(new Error('the connection is closed'), { code: 'ERR_CONNECTION_CLOSED' });
}

/** A too-long message for `recvBytes(maxLength)`: left in place, as it was not taken. */
function tooLong(length: number, maxLength: number): Error {
  return new RangeError(`the message is ${length} bytes long, more than maxLength (${maxLength}): it was left unread`);
}

/** The bytes `sendBytes` was given, as a view without copying. */
function bytesOf(buffer: unknown, name: string): Uint8Array {
  if (buffer instanceof Uint8Array) return buffer;
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (buffer instanceof ArrayBuffer || buffer instanceof SharedArrayBuffer) return new Uint8Array(buffer);
  throw new TypeError(`${name} must be a Buffer, a TypedArray, a DataView or an ArrayBuffer, got ${describe(buffer)}`);
}

/**
 * One end of a connection between processes: a {@link Pipe}'s end, or what
 * {@link Listener.accept} and {@link Client} return. As Python's
 * `multiprocessing.connection.Connection`.
 *
 * `send()` writes the whole message before it returns (it blocks while the
 * peer's buffer is full, as Python's does); `recv()` waits on the event loop,
 * `recvSync()` blocks the thread.
 *
 * @example
 * ```ts
 * const [parentEnd, childEnd] = mp.Pipe();
 * const p = new mp.Process({ target: (conn: mp.Connection) => conn.send({ hello: 'parent' }), args: [childEnd] });
 * p.start();
 * console.log(await parentEnd.recv()); // { hello: 'parent' }
 * await p.join();
 * ```
 */
export class Connection {
  private channel: NativeChannel | null;
  private readonly canRead: boolean;
  private readonly canWrite: boolean;
  /** Messages read and not yet taken: `inbox[inboxHead...]`. */
  private inbox: Buffer[] = [];
  private inboxHead = 0;
  private receivers: Receiver[] = [];
  /** Called once a message arrives or the connection ends (poll(), wait()). */
  private readonly watchers = new Set<() => void>();
  /** End of file seen (or a read failed: `failure`). */
  private ended = false;
  private failure: Error | null = null;
  /** The channel reads on the event loop (only while someone waits: see native/connection.cc). */
  private reading = false;
  private generation = forkGeneration();

  /**
   * A connection over descriptor `fd`, which it owns from now on (closed by
   * {@link close}). Mostly made by {@link Pipe}, {@link Listener} and
   * {@link Client}.
   */
  constructor(fd: number, options: { readable?: boolean; writable?: boolean } = {}) {
    validateInteger(fd, 'fd', 0);
    const { readable = true, writable = true } = options;
    if (typeof readable !== 'boolean') throw new TypeError(`options.readable must be a boolean, got ${describe(readable)}`);
    if (typeof writable !== 'boolean') throw new TypeError(`options.writable must be a boolean, got ${describe(writable)}`);
    if (!readable && !writable) throw new TypeError('a connection must be readable, writable or both');
    this.canRead = readable;
    this.canWrite = writable;
    this.channel = new (native().Channel)(fd, readable ? (frames, ended, error) => this.received(frames, ended, error) : undefined);
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.channel === null;
  }

  /** Whether this end receives. */
  get readable(): boolean {
    return this.canRead;
  }

  /** Whether this end sends. */
  get writable(): boolean {
    return this.canWrite;
  }

  /** The descriptor of this end. */
  fileno(): number {
    return this.open().fd;
  }

  /**
   * Sends `obj` (anything `v8.serialize` takes, and the library's shared
   * objects) as one message. A value that cannot be sent gets a TypeError
   * naming it, and nothing is sent.
   */
  send(obj: unknown): void {
    const channel = this.writer();
    channel.send(dumps(obj, 'obj'));
  }

  /**
   * Sends bytes as one message, as Python's `send_bytes`: `size` bytes of
   * `buffer` from `offset` (both in bytes), by default all of it. A Python
   * peer receives them with `recv_bytes()`.
   */
  sendBytes(buffer: ArrayBufferView | ArrayBufferLike, offset = 0, size?: number): void {
    const bytes = bytesOf(buffer, 'buffer');
    validateInteger(offset, 'offset', 0, bytes.length);
    const length = size === undefined ? bytes.length - offset : validateInteger(size, 'size', 0, bytes.length - offset);
    this.writer().send(offset === 0 && length === bytes.length ? bytes : bytes.subarray(offset, offset + length));
  }

  /**
   * The next message, as the object sent. Rejects with `mp.EOFError` once the
   * other end is closed and every message sent before was received.
   */
  recv<T = unknown>(): Promise<T> {
    return this.receive(false, Infinity) as Promise<T>;
  }

  /** {@link recv}, blocking the thread; `mp.EOFError` once the other end is closed. */
  recvSync<T = unknown>(): T {
    return loads(this.takeSync(Infinity)) as T;
  }

  /**
   * The next message as bytes, as Python's `recv_bytes`. A message longer
   * than `maxLength` is refused with a RangeError and left in place.
   */
  recvBytes(maxLength?: number): Promise<Buffer> {
    return this.receive(true, this.maxLength(maxLength)) as Promise<Buffer>;
  }

  /** {@link recvBytes}, blocking the thread. */
  recvBytesSync(maxLength?: number): Buffer {
    return this.takeSync(this.maxLength(maxLength));
  }

  /**
   * Whether a message (or the end of the connection) is there to receive,
   * without taking it. Without a timeout: answers at once. With one
   * (milliseconds; `null`: no limit): resolves as soon as one is, or with
   * `false` once the timeout has passed.
   */
  poll(): boolean;
  poll(timeout: number | null): Promise<boolean>;
  poll(timeout?: number | null): boolean | Promise<boolean> {
    if (arguments.length === 0) return this.pollSync(0);
    const limit = validateTimeout(timeout);
    if (this.pollSync(0)) return Promise.resolve(true);
    if (limit === 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const unwatch = this.watch(() => {
        if (timer !== undefined) clearTimeout(timer);
        unwatch();
        resolve(true);
      });
      if (limit !== null) {
        timer = setTimeout(() => {
          unwatch();
          resolve(this.channel !== null && this.pollSync(0));
        }, limit);
      }
    });
  }

  /** {@link poll}, blocking the thread: `timeout` in milliseconds, `null` for no limit, none to answer at once. */
  pollSync(timeout: number | null = 0): boolean {
    const limit = validateTimeout(timeout);
    const channel = this.reader();
    if (this.inboxHead < this.inbox.length || this.ended) return true;
    return channel.poll(limit ?? -1);
  }

  /**
   * Closes this end (its descriptor). Pending `recv()`s reject; any further
   * use throws. Closing twice does nothing.
   */
  close(): void {
    const channel = this.channel;
    if (channel === null) return;
    this.channel = null;
    channel.close();
    this.inbox = [];
    this.inboxHead = 0;
    this.fail(closedError());
  }

  /** {@link close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // --- internals ---------------------------------------------------------------

  /** The channel, after what a fork made stale is dropped; throws once closed. */
  private open(): NativeChannel {
    const channel = this.channel;
    if (channel === null) throw closedError();
    if (this.generation !== forkGeneration()) this.adoptAfterFork();
    return channel;
  }

  /**
   * In a forked child: the parent's pending receivers are the parent's; what
   * it had read ahead is the child's too, as for a connection handed over.
   */
  private adoptAfterFork(): void {
    this.generation = forkGeneration();
    this.receivers = [];
    this.watchers.clear();
    this.reading = false;
  }

  private reader(): NativeChannel {
    const channel = this.open();
    if (!this.canRead) throw new Error('this end of the pipe is write-only: it cannot receive');
    return channel;
  }

  private writer(): NativeChannel {
    const channel = this.open();
    if (!this.canWrite) throw new Error('this end of the pipe is read-only: it cannot send');
    return channel;
  }

  private maxLength(maxLength: number | undefined): number {
    return maxLength === undefined ? Infinity : validateInteger(maxLength, 'maxLength', 0, Number.MAX_SAFE_INTEGER);
  }

  private receive(bytes: boolean, maxLength: number): Promise<unknown> {
    let channel: NativeChannel;
    try {
      channel = this.reader();
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.inboxHead < this.inbox.length) {
      try {
        return Promise.resolve(this.decode(this.shift(maxLength), bytes));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    if (this.ended) return Promise.reject(this.endError());
    return new Promise((resolve, reject) => {
      this.receivers.push({ bytes, maxLength, resolve, reject });
      this.listen(channel);
    });
  }

  /** The next message read ahead, if it fits `maxLength`. */
  private shift(maxLength: number): Buffer {
    const frame = this.inbox[this.inboxHead];
    if (frame.length > maxLength) throw tooLong(frame.length, maxLength);
    this.inbox[this.inboxHead++] = undefined as unknown as Buffer;
    if (this.inboxHead === this.inbox.length) {
      this.inbox = [];
      this.inboxHead = 0;
    } else if (this.inboxHead >= COMPACT_AFTER) {
      this.inbox = this.inbox.slice(this.inboxHead);
      this.inboxHead = 0;
    }
    return frame;
  }

  private decode(frame: Buffer, bytes: boolean): unknown {
    return bytes ? frame : loads(frame);
  }

  private takeSync(maxLength: number): Buffer {
    const channel = this.reader();
    if (this.inboxHead < this.inbox.length) return this.shift(maxLength);
    if (this.ended) throw this.endError();
    const frame = channel.recvSync(-1);
    if (frame === undefined || frame === null) {
      this.ended = true;
      throw this.endError();
    }
    if (frame.length > maxLength) {
      this.inbox.push(frame);
      throw tooLong(frame.length, maxLength);
    }
    return frame;
  }

  private endError(): Error {
    return this.failure ?? new EOFError('the other end of the connection was closed');
  }

  /** Reads on the event loop (which it keeps alive) while someone waits. */
  private listen(channel: NativeChannel): void {
    if (this.reading || this.ended) return;
    channel.start();
    this.reading = true;
  }

  /**
   * Stops reading once nobody waits: what is not read stays in the kernel's
   * buffer, for whichever process receives next on this connection.
   */
  private pauseIfIdle(): void {
    const channel = this.channel;
    if (channel === null || !this.reading || this.receivers.length > 0 || this.watchers.size > 0) return;
    channel.stop();
    this.reading = false;
  }

  /** The channel's report: messages read, the end of file, a read error. */
  private received(frames: Buffer[], ended: boolean, error: Error | null): void {
    if (this.generation !== forkGeneration()) this.adoptAfterFork();
    for (let i = 0; i < frames.length; i++) {
      const receiver = this.receivers.length > 0 ? this.receivers[0] : undefined;
      if (receiver === undefined || this.inboxHead < this.inbox.length) {
        this.inbox.push(frames[i]);
        continue;
      }
      if (frames[i].length > receiver.maxLength) {
        this.receivers.shift();
        this.inbox.push(frames[i]);
        receiver.reject(tooLong(frames[i].length, receiver.maxLength));
        continue;
      }
      this.receivers.shift();
      try {
        receiver.resolve(this.decode(frames[i], receiver.bytes));
      } catch (decodeError) {
        receiver.reject(decodeError);
      }
    }
    this.drainInbox();
    if (ended) {
      this.ended = true;
      this.reading = false;
      this.failure = error;
      if (this.inboxHead === this.inbox.length) this.fail(this.endError());
    }
    this.notifyWatchers();
    this.pauseIfIdle();
  }

  /** Hands messages read ahead to receivers that came meanwhile (a too-long one stops it). */
  private drainInbox(): void {
    while (this.receivers.length > 0 && this.inboxHead < this.inbox.length) {
      const receiver = this.receivers.shift() as Receiver;
      try {
        receiver.resolve(this.decode(this.shift(receiver.maxLength), receiver.bytes));
      } catch (error) {
        receiver.reject(error);
      }
    }
  }

  /** Rejects every pending receiver with `error`. */
  private fail(error: Error): void {
    const receivers = this.receivers;
    this.receivers = [];
    for (const receiver of receivers) receiver.reject(error);
    this.notifyWatchers();
  }

  private notifyWatchers(): void {
    if (this.watchers.size === 0) return;
    for (const watcher of [...this.watchers]) watcher();
  }

  /**
   * Calls `onReady` when a message arrives or the connection ends (also when
   * it is closed); returns the function that stops watching. For `poll()`
   * and {@link wait}.
   * @internal
   */
  watch(onReady: () => void): () => void {
    const channel = this.reader();
    this.watchers.add(onReady);
    this.listen(channel);
    return () => {
      this.watchers.delete(onReady);
      this.pauseIfIdle();
    };
  }

  /** Whether `recv()` would answer without waiting. @internal */
  _ready(): boolean {
    return this.channel === null || this.pollSync(0);
  }

  /** The state a Connection crosses to another process as. @internal */
  _reduce(): ConnectionState {
    return { pid: getpid(), fd: this.fileno(), readable: this.canRead, writable: this.canWrite };
  }
}

/** How a Connection crosses to another process: the sender's descriptor, taken by the receiver. */
interface ConnectionState {
  pid: number;
  fd: number;
  readable: boolean;
  writable: boolean;
}

/**
 * A new pair of connected {@link Connection}s, as Python's `Pipe()`. With
 * `duplex` (the default) both ends send and receive (a Unix socket pair);
 * without, the first end only receives and the second only sends (a pipe).
 *
 * @example
 * ```ts
 * const [reader, writer] = mp.Pipe(false);
 * writer.send([1, 'two', { three: 3 }]);
 * console.log(reader.recvSync()); // [1, 'two', { three: 3 }]
 * ```
 */
export function Pipe(duplex = true): [Connection, Connection] {
  if (typeof duplex !== 'boolean') throw new TypeError(`duplex must be a boolean, got ${describe(duplex)}`);
  const binding = native();
  if (duplex) {
    const [a, b] = binding.socketpair();
    return [new Connection(a), new Connection(b)];
  }
  const [readFd, writeFd] = binding.streamPipe();
  return [new Connection(readFd, { writable: false }), new Connection(writeFd, { readable: false })];
}

registerReducer(Connection, {
  kind: 'Connection',
  reduce: (connection: Connection): ConnectionState => {
    const state = connection._reduce();
    passDescriptor(state.pid, state.fd);
    return state;
  },
  rebuild: (state: ConnectionState): Connection => {
    const fd = inheritedDescriptor(state.pid, state.fd) ?? native().takeFd(state.pid, state.fd);
    return new Connection(fd, { readable: state.readable, writable: state.writable });
  },
});
