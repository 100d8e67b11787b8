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
import { AuthenticationError, EOFError } from './errors';
import type { NativeBinding, NativeChannel } from './native';
import { loadNative, requireNative } from './native';
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

/** @internal */
export { closedError as _connectionClosedError };

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

/** `size` bytes of `buffer` from `offset`, as `sendBytes` takes them (validated), without copying. @internal */
export function _bytesToSend(buffer: unknown, offset: unknown, size: unknown): Uint8Array {
  const bytes = bytesOf(buffer, 'buffer');
  validateInteger(offset, 'offset', 0, bytes.length);
  const start = offset as number;
  const length = size === undefined ? bytes.length - start : validateInteger(size, 'size', 0, bytes.length - start);
  return start === 0 && length === bytes.length ? bytes : bytes.subarray(start, start + length);
}

/** Connections, Listener and Client without the addon (see connection/portable.ts), loaded on first use. */
function portable(): typeof import('./connection/portable') {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('./connection/portable') as typeof import('./connection/portable');
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
  /**
   * A blocking read may have read past its message: what it left in the
   * channel's buffer raises no readable event, so the next async receive
   * takes it first.
   */
  private readAhead = false;
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
    this.channel = new (native().Channel)(fd, readable ? (frames, ended, error) => this.received(frames, ended, error) : undefined, { spin: readable });
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
    this.writer().send(_bytesToSend(buffer, offset, size));
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
    if (this.readAhead) {
      this.takeReadAhead(channel);
      this.drainInbox(); // receivers that waited before come first
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
    const frame = channel.recvSync(-1) as Buffer | null | undefined; // no textTag: always bytes
    if (frame === undefined || frame === null) {
      this.ended = true;
      throw this.endError();
    }
    this.readAhead = true;
    if (frame.length > maxLength) {
      this.inbox.push(frame);
      throw tooLong(frame.length, maxLength);
    }
    return frame;
  }

  /** A message (or the end) that a blocking read left in the channel's buffer, into the inbox. */
  private takeReadAhead(channel: NativeChannel): void {
    if (this.inboxHead < this.inbox.length || this.ended) return;
    const frame = channel.recvSync(0) as Buffer | null | undefined;
    if (frame === null) this.readAhead = false; // nothing whole there: the event loop's reads see the rest
    else if (frame === undefined) {
      this.readAhead = false;
      this.ended = true;
    } else this.inbox.push(frame);
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

  /**
   * Whether `recvSync()` answers at once with what the event loop received
   * (a message, or the end), without any system call: a {@link watch}er
   * drains the messages with it. (Not `_ready()`: its poll may find bytes
   * that recvSync() would read past the message, out of the watcher's sight.) @internal
   */
  _hasReceived(): boolean {
    return this.inboxHead < this.inbox.length || this.ended || this.channel === null;
  }

  /** The state a Connection crosses to another process as. @internal */
  _reduce(): ConnectionState {
    return { pid: getpid(), fd: this.fileno(), readable: this.canRead, writable: this.canWrite };
  }
}

/** A descriptor as it crosses to another process: its owner's pid and number. */
export interface DescriptorState {
  pid: number;
  fd: number;
}

/** How a Connection crosses to another process: the sender's descriptor, taken by the receiver. */
interface ConnectionState extends DescriptorState {
  readable: boolean;
  writable: boolean;
}

/** `fd` of this process, to cross to another (passed along when a launch collects descriptors). @internal */
export function _reduceDescriptor(fd: number): DescriptorState {
  const state = { pid: getpid(), fd };
  passDescriptor(state.pid, state.fd);
  return state;
}

/** This process's copy of a descriptor {@link _reduceDescriptor} reduced. @internal */
export function _rebuildDescriptor(state: DescriptorState): number {
  return inheritedDescriptor(state.pid, state.fd) ?? native().takeFd(state.pid, state.fd);
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
  const binding = loadNative();
  if (binding === null) return portable().Pipe(duplex);
  if (duplex) {
    const [a, b] = binding.socketpair();
    return [new Connection(a), new Connection(b)];
  }
  const [readFd, writeFd] = binding.streamPipe();
  return [new Connection(readFd, { writable: false }), new Connection(writeFd, { readable: false })];
}

registerReducer(Connection, {
  kind: 'Connection',
  reduce: (connection: Connection): ConnectionState => ({ ...connection._reduce(), ..._reduceDescriptor(connection.fileno()) }),
  rebuild: (state: ConnectionState): Connection => {
    const fd = _rebuildDescriptor(state);
    return new Connection(fd, { readable: state.readable, writable: state.writable });
  },
});

// --- the authkey handshake ------------------------------------------------------------
//
// Python's, both generations: 3.12+ sends a challenge of `{sha256}` and 40
// random bytes and answers with `{digest}` and the HMAC of the whole challenge;
// before 3.12 the challenge was 20 random bytes and the answer a bare
// HMAC-MD5. A message of 20 (challenge) or 16 (answer) bytes is the old
// protocol: each side answers in the kind it was asked, so Python 3.11 and
// 3.12+ peers both work.

const CHALLENGE = Buffer.from('#CHALLENGE#');
const WELCOME = Buffer.from('#WELCOME#');
const FAILURE = Buffer.from('#FAILURE#');
const MESSAGE_LENGTH = 40;
const LEGACY_LENGTHS = [20, 16];
/** Python's digest names and Node's. */
const DIGESTS: Record<string, string> = { md5: 'md5', sha256: 'sha256', sha384: 'sha384', sha3_256: 'sha3-256', sha3_384: 'sha3-384' };
const MAX_HANDSHAKE_MESSAGE = 256;

/** A handshake step: yields when it needs the peer's next message. @internal */
export type Handshake = Generator<void, void, Buffer>;

/** What a handshake sends through: a Connection, or a socket of the broker's (broker/thread.ts). @internal */
export interface HandshakePeer {
  sendBytes(bytes: Buffer): void;
}

function crypto(): typeof import('crypto') {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('crypto') as typeof import('crypto');
}

function hmac(authkey: Buffer, message: Buffer, digest: string): Buffer {
  return crypto().createHmac(DIGESTS[digest], authkey).update(message).digest();
}

/** `[digest name, payload]` of a challenge or an answer; `''` for the old, bare protocol. */
function digestAndPayload(message: Buffer): [string, Buffer] {
  if (LEGACY_LENGTHS.includes(message.length)) return ['', message];
  const close = message.indexOf('}');
  if (message[0] === 0x7b && close > 1) {
    const name = message.subarray(1, close).toString('latin1');
    if (Object.prototype.hasOwnProperty.call(DIGESTS, name)) return [name, message.subarray(close + 1)];
  }
  throw new AuthenticationError('unsupported message length, missing digest prefix, or unsupported digest');
}

/** Sends a challenge, checks the answer (as Python's `deliver_challenge`). */
function* deliverChallenge(connection: HandshakePeer, authkey: Buffer): Handshake {
  const message = Buffer.concat([Buffer.from('{sha256}'), crypto().randomBytes(MESSAGE_LENGTH)]);
  connection.sendBytes(Buffer.concat([CHALLENGE, message]));
  const response = yield;
  let valid = false;
  try {
    const [name, mac] = digestAndPayload(response);
    const expected = hmac(authkey, message, name || 'md5');
    valid = expected.length === mac.length && crypto().timingSafeEqual(expected, mac);
  } catch {
    valid = false;
  }
  connection.sendBytes(valid ? WELCOME : FAILURE);
  if (!valid) throw new AuthenticationError('digest received was wrong');
}

/** Answers a challenge (as Python's `answer_challenge`). */
function* answerChallenge(connection: HandshakePeer, authkey: Buffer): Handshake {
  const challenge = yield;
  if (!challenge.subarray(0, CHALLENGE.length).equals(CHALLENGE)) {
    throw new AuthenticationError('protocol error: expected a challenge');
  }
  const message = challenge.subarray(CHALLENGE.length);
  if (message.length < 20) throw new AuthenticationError(`challenge too short: ${message.length} bytes`);
  const [name] = digestAndPayload(message);
  const mac = hmac(authkey, message, name || 'md5');
  connection.sendBytes(name ? Buffer.concat([Buffer.from(`{${name}}`), mac]) : mac);
  const response = yield;
  if (!response.equals(WELCOME)) throw new AuthenticationError('digest sent was rejected');
}

/** The handshake of a side that first challenges (`challengeFirst`: the Listener's) or first answers (the Client's). @internal */
function* handshake(connection: HandshakePeer, authkey: Buffer, challengeFirst: boolean): Handshake {
  if (challengeFirst) {
    yield* deliverChallenge(connection, authkey);
    yield* answerChallenge(connection, authkey);
  } else {
    yield* answerChallenge(connection, authkey);
    yield* deliverChallenge(connection, authkey);
  }
}

/** A peer that closes or sends what no handshake sends fails the handshake. @internal */
function handshakeError(error: unknown): Error {
  if (error instanceof AuthenticationError) return error;
  if (error instanceof EOFError) return new AuthenticationError('the peer closed the connection during the authkey handshake', { cause: error });
  if (error instanceof RangeError) return new AuthenticationError('a handshake message was too long', { cause: error });
  return error as Error;
}

function shakeHandsSync(connection: Connection, authkey: Buffer, challengeFirst: boolean): void {
  try {
    const steps = handshake(connection, authkey, challengeFirst);
    for (let step = steps.next(); !step.done; ) step = steps.next(connection.recvBytesSync(MAX_HANDSHAKE_MESSAGE));
  } catch (error) {
    connection.close();
    throw handshakeError(error);
  }
}

/** For the broker's sockets without the addon (broker/objects.ts). @internal */
export { handshake as _handshake, handshakeError as _handshakeError, MAX_HANDSHAKE_MESSAGE as _MAX_HANDSHAKE_MESSAGE };

async function shakeHands(connection: Connection, authkey: Buffer, challengeFirst: boolean): Promise<void> {
  try {
    const steps = handshake(connection, authkey, challengeFirst);
    for (let step = steps.next(); !step.done; ) step = steps.next(await connection.recvBytes(MAX_HANDSHAKE_MESSAGE));
  } catch (error) {
    connection.close();
    throw handshakeError(error);
  }
}

// --- Listener and Client ----------------------------------------------------------------

/** A Unix socket path, or `[host, port]` for TCP. */
export type Address = string | [host: string, port: number];

/** Python's family names: a Unix socket, or TCP. */
export type Family = 'AF_UNIX' | 'AF_INET' | 'AF_INET6';

/** Options of {@link Listener}. */
export interface ListenerOptions {
  /** `'AF_UNIX'` (default without an address) or `'AF_INET'`/`'AF_INET6'`; by default the address's. */
  family?: Family;
  /** Connections waiting to be accepted at most (default 1, as Python's). */
  backlog?: number;
  /** When set, every connection runs the HMAC handshake with this key both ways. */
  authkey?: Uint8Array | string | null;
}

/** Options of {@link Client}. */
export interface ClientOptions {
  /** By default the address's. */
  family?: Family;
  /** When set, the HMAC handshake with this key runs both ways. */
  authkey?: Uint8Array | string | null;
}

function validateAuthkey(authkey: unknown): Buffer | null {
  if (authkey === undefined || authkey === null) return null;
  if (typeof authkey === 'string') return Buffer.from(authkey, 'utf8');
  if (authkey instanceof Uint8Array) return Buffer.from(authkey);
  throw new TypeError(`options.authkey must be a Buffer, a Uint8Array or a string, got ${describe(authkey)}`);
}

function validateAddress(address: unknown): Address {
  if (typeof address === 'string' && address.length > 0) return address;
  if (Array.isArray(address) && address.length === 2 && typeof address[0] === 'string') {
    validateInteger(address[1], 'address[1] (the port)', 0, 65535);
    return [address[0], address[1]];
  }
  throw new TypeError(`address must be a Unix socket path or [host, port], got ${describe(address)}`);
}

function familyOf(address: Address, family: unknown): Family {
  const implied: Family = typeof address === 'string' ? 'AF_UNIX' : address[0].includes(':') ? 'AF_INET6' : 'AF_INET';
  if (family === undefined) return implied;
  if (family !== 'AF_UNIX' && family !== 'AF_INET' && family !== 'AF_INET6') {
    throw new TypeError(`options.family must be 'AF_UNIX', 'AF_INET' or 'AF_INET6', got ${describe(family)}`);
  }
  if ((family === 'AF_UNIX') !== (implied === 'AF_UNIX')) throw new TypeError(`address ${JSON.stringify(address)} is not of family ${family}`);
  return family;
}

/** A fresh Unix socket path in the temporary directory, as Python's `arbitrary_address`. */
function arbitraryUnixAddress(): string {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { tmpdir } = require('os') as typeof import('os');
  const name = `mp-listener-${getpid()}-${crypto().randomBytes(6).toString('hex')}`;
  return process.platform === 'win32' ? `\\\\.\\pipe\\${name}` : `${tmpdir()}/${name}`;
}

function validateOptions(options: unknown): Record<string, unknown> {
  if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object, got ${describe(options)}`);
  return options as Record<string, unknown>;
}

/**
 * A server socket that accepts connections, as Python's
 * `multiprocessing.connection.Listener`: a Unix socket (by default, at a
 * fresh path) or TCP. With an `authkey`, each accepted connection first runs
 * the HMAC handshake both ways; a peer without the key is refused with
 * `mp.AuthenticationError` and never sees a message.
 *
 * @example
 * ```ts
 * const listener = new mp.connection.Listener(['127.0.0.1', 0], { authkey: 'secret' });
 * const client = mp.connection.ClientAsync(listener.address, { authkey: 'secret' });
 * const server = await listener.accept();
 * (await client).send('hello');
 * console.log(await server.recv()); // 'hello'
 * ```
 */
export class Listener {
  // Declared only: a Listener made without the addon (connection/portable.ts) has neither.
  private declare fd: number | null;
  private readonly family: Family;
  private readonly authkey: Buffer | null;
  private declare boundAddress: Address;
  private accepted: Address | null = null;
  private readonly owner = getpid();

  /**
   * Listens at `address` (a Unix socket path, or `[host, port]`; port 0: a
   * free one, see {@link address}). Without an address: a fresh Unix socket path.
   */
  constructor(address?: Address | null, options: ListenerOptions = {}) {
    const { family, backlog = 1, authkey } = validateOptions(options) as ListenerOptions;
    const given = address === undefined || address === null ? (family === undefined || family === 'AF_UNIX' ? arbitraryUnixAddress() : [family === 'AF_INET6' ? '::1' : '127.0.0.1', 0] as Address) : validateAddress(address);
    this.family = familyOf(given, family);
    validateInteger(backlog, 'options.backlog', 0);
    this.authkey = validateAuthkey(authkey);
    const binding = loadNative();
    if (binding === null) return portable().newListener(given, backlog, this.authkey);
    if (typeof given === 'string') {
      this.fd = binding.listenUnix(given, backlog);
      this.boundAddress = given;
    } else {
      const [fd, host, port] = binding.listenTcp(given[0], given[1], backlog);
      this.fd = fd;
      this.boundAddress = [host, port];
    }
  }

  /** Where it listens: the Unix socket path, or `[host, port]` as bound. */
  get address(): Address {
    return this.boundAddress;
  }

  /** The peer address of the last connection accepted (`null` before any), as Python's `last_accepted`. */
  get lastAccepted(): Address | null {
    return this.accepted;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.fd === null;
  }

  /**
   * The next connection, once a client connects (and passes the handshake,
   * with an authkey: otherwise rejects with `mp.AuthenticationError`).
   */
  async accept(): Promise<Connection> {
    const connection = await this.acceptRaw();
    if (this.authkey !== null) await shakeHands(connection, this.authkey, true);
    return connection;
  }

  /** {@link accept}, blocking the thread. */
  acceptSync(): Connection {
    for (;;) {
      const fd = this.listening();
      const connection = this.tryAccept(fd);
      if (connection !== null) {
        if (this.authkey !== null) shakeHandsSync(connection, this.authkey, true);
        return connection;
      }
      native().pollFds([fd], 1, -1);
    }
  }

  /** Stops listening (and removes the Unix socket's path). Closing twice does nothing. */
  close(): void {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const fs = require('fs') as typeof import('fs');
    fs.closeSync(fd);
    const path = this.boundAddress;
    if (this.family === 'AF_UNIX' && typeof path === 'string' && !path.startsWith('\0') && getpid() === this.owner) {
      try {
        fs.unlinkSync(path);
      } catch {
        // removed by someone else already
      }
    }
    for (const reject of this.pendingAccepts) reject(closedError());
    this.pendingAccepts.clear();
  }

  /** {@link close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  private readonly pendingAccepts = new Set<(error: Error) => void>();

  private listening(): number {
    if (this.fd === null) throw Object.assign(new Error('the listener is closed'), { code: 'ERR_LISTENER_CLOSED' });
    return this.fd;
  }

  private tryAccept(fd: number): Connection | null {
    const accepted = native().accept(fd);
    if (accepted === null) return null;
    this.accepted = accepted[1] === '' ? null : accepted[1];
    return new Connection(accepted[0]);
  }

  private acceptRaw(): Promise<Connection> {
    let fd: number;
    try {
      fd = this.listening();
      const ready = this.tryAccept(fd);
      if (ready !== null) return Promise.resolve(ready);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const finish = (error: Error | null, connection?: Connection): void => {
        watch.close();
        this.pendingAccepts.delete(fail);
        if (error !== null) reject(error);
        else resolve(connection as Connection);
      };
      const fail = (error: Error): void => finish(error);
      const watch = new (native().FdWatch)(fd, 1, () => {
        try {
          const connection = this.fd === null ? null : this.tryAccept(fd);
          if (connection !== null) finish(null, connection);
        } catch (error) {
          finish(error as Error);
        }
      });
      this.pendingAccepts.add(fail);
      watch.start();
    });
  }
}

/** `[fd, pending]` of a connect to `address`. */
function startConnect(address: Address): [number, boolean] {
  const binding = native();
  return typeof address === 'string' ? binding.connectUnix(address) : binding.connectTcp(address[0], address[1]);
}

function clientArguments(address: unknown, options: unknown): [Address, Buffer | null] {
  const valid = validateAddress(address);
  const { family, authkey } = validateOptions(options) as ClientOptions;
  familyOf(valid, family);
  return [valid, validateAuthkey(authkey)];
}

function closeFd(fd: number): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  (require('fs') as typeof import('fs')).closeSync(fd);
}

/**
 * A connection to a {@link Listener} (or to a Python
 * `multiprocessing.connection.Listener`) at `address`, as Python's `Client`:
 * blocks the thread while it connects and, with an `authkey`, runs the
 * handshake (`mp.AuthenticationError` when either side's key differs). See
 * {@link ClientAsync} for the same without blocking.
 */
export function Client(address: Address, options: ClientOptions = {}): Connection {
  const [valid, authkey] = clientArguments(address, options);
  if (loadNative() === null) return portable().clientSync(valid, authkey);
  const [fd, pending] = startConnect(valid);
  try {
    if (pending) {
      native().pollFds([fd], 2, -1);
      native().socketError(fd);
    }
  } catch (error) {
    closeFd(fd);
    throw error;
  }
  const connection = new Connection(fd);
  if (authkey !== null) shakeHandsSync(connection, authkey, false);
  return connection;
}

/** {@link Client}, without blocking: resolves once connected (and the handshake passed). */
export async function ClientAsync(address: Address, options: ClientOptions = {}): Promise<Connection> {
  const [valid, authkey] = clientArguments(address, options);
  if (loadNative() === null) return portable().client(valid, authkey);
  const [fd, pending] = startConnect(valid);
  if (pending) {
    try {
      await new Promise<void>((resolve, reject) => {
        const watch = new (native().FdWatch)(fd, 2, () => {
          watch.close();
          try {
            native().socketError(fd);
            resolve();
          } catch (error) {
            reject(error);
          }
        });
        watch.start();
      });
    } catch (error) {
      closeFd(fd);
      throw error;
    }
  }
  const connection = new Connection(fd);
  if (authkey !== null) await shakeHands(connection, authkey, false);
  return connection;
}

// --- wait ------------------------------------------------------------------------------------

/** What {@link wait} waits for: a Connection, a descriptor (a Process's `sentinel`), or an object with `fileno()`. */
export type Waitable = Connection | number | { fileno(): number };

function descriptorOf(object: Waitable, index: number): number {
  if (typeof object === 'number') return validateInteger(object, `objects[${index}]`, 0);
  if (typeof object === 'object' && object !== null && typeof (object as { fileno?: unknown }).fileno === 'function') {
    return validateInteger((object as { fileno(): number }).fileno(), `objects[${index}].fileno()`, 0);
  }
  throw new TypeError(`objects[${index}] must be a Connection, a descriptor or an object with fileno(), got ${describe(object)}`);
}

function validateWaitables(objects: unknown): Waitable[] {
  if (!Array.isArray(objects)) throw new TypeError(`objects must be an array, got ${describe(objects)}`);
  objects.forEach((object, i) => object instanceof Connection || descriptorOf(object as Waitable, i));
  return objects as Waitable[];
}

/** The objects ready now, waiting up to `timeoutMs` (-1: no limit) for one. */
function readyObjects(objects: Waitable[], timeoutMs: number): Waitable[] {
  const ready = objects.filter((object) => object instanceof Connection && object._ready());
  if (ready.length > 0) timeoutMs = 0;
  const fds = objects.map((object, i) => (object instanceof Connection ? object.fileno() : descriptorOf(object, i)));
  const polled = new Set(native().pollFds(fds, 1, timeoutMs));
  return objects.filter((object, i) => ready.includes(object) || polled.has(i));
}

/**
 * Waits until one of `objects` is ready, as Python's
 * `multiprocessing.connection.wait`: a Connection with a message (or the end
 * of file) to receive, a descriptor that is readable (a Process's `sentinel`
 * once the child has ended). Resolves with the ready ones, or `[]` once
 * `timeout` (milliseconds; none: no limit) has passed.
 */
export function wait<T extends Waitable>(objects: T[], timeout?: number | null): Promise<T[]> {
  if (loadNative() === null) return portable().wait(objects, timeout);
  let limit: number | null;
  try {
    validateWaitables(objects);
    limit = validateTimeout(timeout);
    const now = readyObjects(objects, 0) as T[];
    if (now.length > 0 || limit === 0) return Promise.resolve(now);
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise((resolve, reject) => {
    const stops: Array<() => void> = [];
    let timer: NodeJS.Timeout | undefined;
    const finish = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      for (const stop of stops) stop();
      try {
        resolve(readyObjects(objects, 0) as T[]);
      } catch (error) {
        reject(error);
      }
    };
    objects.forEach((object, i) => {
      if (object instanceof Connection) {
        stops.push(object.watch(finish));
      } else {
        const watch = new (native().FdWatch)(descriptorOf(object, i), 1, finish);
        watch.start();
        stops.push(() => watch.close());
      }
    });
    if (limit !== null) timer = setTimeout(finish, limit);
  });
}

/** {@link wait}, blocking the thread. */
export function waitSync<T extends Waitable>(objects: T[], timeout?: number | null): T[] {
  if (loadNative() === null) return portable().waitSync(objects, timeout);
  validateWaitables(objects);
  const limit = validateTimeout(timeout);
  return readyObjects(objects, limit ?? -1) as T[];
}

/**
 * A descriptor that becomes readable once process `pid` has ended (a pidfd);
 * one readable at once when it has ended already. For `Process.sentinel`.
 * @internal
 */
export function _openSentinel(pid: number, ended: boolean): number {
  const binding = native();
  if (!ended) {
    try {
      return binding.pidfdOpen(pid);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
  const [readFd, writeFd] = binding.streamPipe();
  closeFd(writeFd);
  return readFd;
}
