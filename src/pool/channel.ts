/**
 * The pool's wire between the parent and a worker: a Unix socket carrying
 * length-prefixed messages (a 4-byte little-endian length, then the message
 * as `reduction.dumps` makes it, so shared objects arrive usable).
 *
 * Two ends of it ({@link Wire}): a forked worker with the addon talks over a
 * socket pair read and written by the addon's `Channel` (one read() takes
 * every message there and hands them over in one call; a send is one
 * writev(), no stream machinery: {@link NativeWire}); the other start
 * methods, and the path without the addon, connect to the pool's listening
 * socket with Node's `net` ({@link Channel}) and say which worker they are.
 *
 * Each socket, server and native wire is recorded in {@link inheritedHandles}:
 * a worker forked from the parent closes its copies of them first, or its
 * event loop would read what was meant for the parent.
 * @internal
 */
import type * as Net from 'net';
import * as v8 from 'v8';

import type { NativeBinding, NativeChannel } from '../native';
import { dumps, loads } from '../reduction';

/** What a forked worker lets go of without closing it for its parent: a native wire, a pool's mailboxes. */
interface Detachable {
  detach(): void;
}

/** The pool sockets, servers, wires and mailboxes of this process, let go of by a forked worker (see the module's doc). */
export const inheritedHandles = new Set<Net.Socket | Net.Server | Detachable>();

/**
 * Closes this process's copies of the parent's pool handles (in a forked
 * worker), without their listeners: those are the parent pool's, which must
 * not see its sockets close here.
 */
export function closeInheritedHandles(): void {
  for (const handle of inheritedHandles) {
    if ('detach' in handle) {
      handle.detach();
      continue;
    }
    handle.removeAllListeners();
    handle.on('error', () => {});
    if ('destroy' in handle) handle.destroy();
    else handle.close();
  }
  inheritedHandles.clear();
}

/** A message's header on the wire: an array whose first item is its kind. */
export type Header = readonly unknown[];

/** Receives a message: its header, and its payload's bytes (`reduction.loads` them), empty when none. */
export type MessageHandler = (header: Header, payload: Buffer) => void;

/** The first byte of a payload: how the rest is decoded. */
const PLAIN = 0;
const REDUCED = 1;
/** An array of numbers, as the bytes of a Float64Array (a copy, not a walk: 10x faster to decode). */
const NUMBERS = 2;
/** One number (a task's result, often). */
const NUMBER = 4;

/** Whether `value` is a non-empty array of numbers only. */
function isNumberArray(value: unknown): value is number[] {
  if (!Array.isArray(value) || value.length === 0) return false;
  for (let i = 0; i < value.length; i++) if (typeof value[i] !== 'number') return false;
  return true;
}

/**
 * Whether `value` is plain data (primitives, and arrays and plain objects of
 * them, a few levels deep): it crosses with `v8.serialize` alone. Anything
 * else goes through `reduction.dumps`, which rebuilds shared objects on the
 * other side (and walks the whole value to find them: 20x slower on a large
 * array of numbers).
 */
function isPlain(value: unknown, depth: number): boolean {
  if (typeof value !== 'object' || value === null) return typeof value !== 'function' && typeof value !== 'symbol';
  if (depth > 3) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isPlain(value[i], depth + 1)) return false;
    return true;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return false;
  for (const key in value) if (!isPlain((value as Record<string, unknown>)[key], depth + 1)) return false;
  return true;
}

/**
 * `items.slice(first, end)` encoded as {@link encodePayload} does (a chunk of
 * a map); numbers only are written straight from `items`, with no slice made.
 */
export function encodeItems(items: readonly unknown[], first: number, end: number, what: string): Buffer {
  for (let i = first; i < end; i++) if (typeof items[i] !== 'number') return encodePayload(items.slice(first, end), what);
  const payload = Buffer.allocUnsafe(8 + (end - first) * 8);
  payload[0] = NUMBERS;
  const numbers = new Float64Array(payload.buffer, payload.byteOffset + 8, end - first);
  for (let i = first; i < end; i++) numbers[i - first] = items[i] as number;
  return payload;
}

/** The buffer {@link encodePayload} reuses (8-byte aligned, grown as needed): `length` bytes of it. */
let reusable = Buffer.allocUnsafeSlow(1024);
function reused(length: number): Buffer {
  if (reusable.length < length) reusable = Buffer.allocUnsafeSlow(Math.max(length, 2 * reusable.length));
  return reusable.subarray(0, length);
}

/**
 * A task's arguments or result as they cross; `what` names it in the TypeError
 * of what cannot cross. With `reuse`, numbers are written in a buffer this
 * module reuses: the caller sends the payload before it encodes another.
 */
export function encodePayload(value: unknown, what: string, reuse = false): Buffer {
  if (typeof value === 'number') {
    const payload = reuse ? reused(9) : Buffer.allocUnsafe(9);
    payload[0] = NUMBER;
    payload.writeDoubleLE(value, 1);
    return payload;
  }
  if (isNumberArray(value)) {
    const payload = reuse ? reused(8 + value.length * 8) : Buffer.allocUnsafe(8 + value.length * 8);
    payload[0] = NUMBERS;
    new Float64Array(payload.buffer, payload.byteOffset + 8, value.length).set(value);
    return payload;
  }
  const plain = isPlain(value, 0);
  const bytes = plain ? v8.serialize(value) : dumps(value, what);
  const payload = Buffer.allocUnsafe(1 + bytes.length);
  payload[0] = plain ? PLAIN : REDUCED;
  bytes.copy(payload, 1);
  return payload;
}

/** Where {@link decodePayload} aligns an array of numbers (grown as needed, never shrunk). */
let alignedNumbers = new Float64Array(1024);

/**
 * A payload read in memory that is reused (a mailbox's scratch), made its own
 * where its decoded value would keep views of it (the typed arrays of a
 * deserialized value): the bytes are copied then.
 */
export function ownPayload(payload: Buffer): Buffer {
  return payload[0] === PLAIN || payload[0] === REDUCED ? Buffer.from(payload) : payload;
}

/** The value {@link encodePayload} encoded, shared objects rebuilt here. */
export function decodePayload(payload: Buffer): unknown {
  if (payload[0] === NUMBER) return payload.readDoubleLE(1);
  if (payload[0] === NUMBERS) {
    // Copied into aligned memory first (the payload may start anywhere in a read buffer), reused: a
    // fresh block per message costs page faults; the array made at its size once (not grown).
    const count = (payload.length - 8) / 8;
    if (alignedNumbers.length < count) alignedNumbers = new Float64Array(Math.max(count, 2 * alignedNumbers.length));
    new Uint8Array(alignedNumbers.buffer, 0, count * 8).set(payload.subarray(8));
    const values = new Array<number>(count);
    for (let i = 0; i < count; i++) values[i] = alignedNumbers[i];
    return values;
  }
  const bytes = payload.subarray(1);
  return payload[0] === PLAIN ? v8.deserialize(bytes) : loads(bytes);
}

/**
 * Encodes a message: `[u32 length][u32 header length][header][payload]`.
 * The payload is encoded by the caller (once, where it is made: a task's
 * arguments at submission, so that what cannot cross throws there).
 */
export function encodeMessage(header: Header, payload: Uint8Array | null = null): Buffer {
  const head = encodeHead(header);
  const size = head.length + (payload?.length ?? 0);
  const frame = Buffer.allocUnsafe(4 + size);
  frame.writeUInt32LE(size, 0);
  frame.set(head, 4);
  if (payload !== null) frame.set(payload, 4 + head.length);
  return frame;
}

/** A message's start, `[u32 header length][header]`: a mailbox takes it and the payload apart. */
export function encodeHead(header: Header): Buffer {
  if (!isWords(header)) {
    const bytes = v8.serialize(header);
    const head = Buffer.allocUnsafe(5 + bytes.length);
    head.writeUInt32LE(1 + bytes.length, 0);
    head[4] = PLAIN;
    bytes.copy(head, 5);
    return head;
  }
  const head = Buffer.allocUnsafe(5 + 4 * header.length);
  head.writeUInt32LE(1 + 4 * header.length, 0);
  head[4] = WORDS;
  for (let i = 0; i < header.length; i++) head.writeUInt32LE(header[i], 5 + 4 * i);
  return head;
}

/** A header of small non-negative integers only (most messages): written as 32-bit words, no serializer. */
const WORDS = 3;

function isWords(header: Header): header is readonly number[] {
  if (header.length > 8) return false;
  for (let i = 0; i < header.length; i++) {
    const item = header[i];
    if (typeof item !== 'number' || !(item >= 0 && item <= 0xffffffff && Number.isInteger(item))) return false;
  }
  return true;
}

/** A message as the native wire and the mailboxes hand it over (its length word taken off): its header and payload. */
export function splitFrame(frame: Buffer): [Header, Buffer] {
  const headLength = frame.readUInt32LE(0);
  return [decodeHeader(frame.subarray(4, 4 + headLength)), frame.subarray(4 + headLength)];
}

function decodeHeader(bytes: Buffer): Header {
  if (bytes[0] === PLAIN) return v8.deserialize(bytes.subarray(1)) as Header;
  const header: number[] = [];
  for (let offset = 1; offset + 4 <= bytes.length; offset += 4) header.push(bytes.readUInt32LE(offset));
  return header;
}

/** One end of the wire: sends messages made by {@link encodeMessage}; received ones go to its {@link MessageHandler}. */
export interface Wire {
  readonly closed: boolean;
  send(frame: Buffer): void;
  /** Hangs up; the wire's close callback follows (asynchronously). */
  close(): void;
  ref(): void;
  unref(): void;
}

/** One end of the wire over a connected socket, with Node's `net`. */
export class Channel implements Wire {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #closed = false;

  readonly #onMessage: MessageHandler;

  /**
   * Messages come from the socket's 'data' events, or, for a socket made with
   * Node's `onread` option (one read buffer, reused), from {@link received}.
   */
  constructor(
    readonly socket: Net.Socket,
    onMessage: MessageHandler,
    onClose: () => void,
  ) {
    this.#onMessage = onMessage;
    inheritedHandles.add(socket);
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.#read(chunk, onMessage));
    socket.on('error', () => {}); // 'close' follows: the peer is gone
    socket.on('close', () => {
      this.#closed = true;
      inheritedHandles.delete(socket);
      onClose();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends a message made by {@link encodeMessage}. */
  send(frame: Buffer): void {
    if (!this.#closed) this.socket.write(frame);
  }

  close(): void {
    this.socket.destroy();
  }

  ref(): void {
    this.socket.ref();
  }

  unref(): void {
    this.socket.unref();
  }

  /**
   * `bytes` were read into a buffer the socket reuses: the payloads handed on
   * are copies (a handler may keep one), and so is what waits for the rest of
   * its message.
   */
  received(bytes: Buffer): void {
    this.#read(bytes, (header, payload) => this.#onMessage(header, Buffer.from(payload)), true);
  }

  #read(chunk: Buffer, onMessage: MessageHandler, reused = false): void {
    let buffer = chunk;
    if (this.#buffered > 0) {
      this.#chunks.push(reused ? Buffer.from(chunk) : chunk);
      this.#buffered += chunk.length;
      if (this.#buffered < 4) return;
      if (this.#chunks[0].length < 4) this.#chunks = [Buffer.concat(this.#chunks, this.#buffered)];
      if (this.#buffered < 4 + this.#chunks[0].readUInt32LE(0)) return;
      buffer = Buffer.concat(this.#chunks, this.#buffered);
      this.#chunks = [];
      this.#buffered = 0;
    }
    let offset = 0;
    while (buffer.length - offset >= 4) {
      const size = buffer.readUInt32LE(offset);
      if (buffer.length - offset < 4 + size) break;
      const headLength = buffer.readUInt32LE(offset + 4);
      const header = decodeHeader(buffer.subarray(offset + 8, offset + 8 + headLength));
      const payload = buffer.subarray(offset + 8 + headLength, offset + 4 + size);
      offset += 4 + size;
      onMessage(header, payload);
    }
    if (offset < buffer.length) {
      this.#chunks.push(reused && buffer === chunk ? Buffer.from(buffer.subarray(offset)) : buffer.subarray(offset));
      this.#buffered = buffer.length - offset;
    }
  }
}

/**
 * One end of the wire over a socket pair's descriptor, read and written by
 * the addon's `Channel` (Python's framing: a 4-byte big-endian length; the
 * message after it is ours, less our own length word). Its end of file, or a
 * read error, is the peer's end (a worker killed mid-message included).
 */
export class NativeWire implements Wire {
  #channel: NativeChannel | null;
  #closed = false;
  readonly #onMessage: MessageHandler;
  readonly #onClose: () => void;

  constructor(native: NativeBinding, fd: number, onMessage: MessageHandler, onClose: () => void) {
    this.#onMessage = onMessage;
    this.#onClose = onClose;
    this.#channel = new native.Channel(fd, (frames, ended) => this.#received(frames, ended));
    this.#channel.start();
    inheritedHandles.add(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(frame: Buffer): void {
    if (this.#closed) return;
    try {
      // Never blocks: what a stopped or slow worker cannot take yet is written as it reads.
      (this.#channel as NativeChannel).sendAsync(frame.subarray(4));
    } catch {
      // The peer is gone (EPIPE, ECONNRESET): the read side sees its end and reports it.
    }
  }

  close(): void {
    if (this.#closed) return;
    this.detach();
    process.nextTick(this.#onClose);
  }

  ref(): void {
    this.#channel?.ref();
  }

  unref(): void {
    this.#channel?.unref();
  }

  /** Closes the descriptor without a word to the close callback (a forked worker's copy of its parent's wire). */
  detach(): void {
    this.#closed = true;
    inheritedHandles.delete(this);
    this.#channel?.close();
    this.#channel = null;
  }

  #received(frames: Buffer[], ended: boolean): void {
    // Each frame is a copy of its own (a handler may keep its payload).
    for (let i = 0; i < frames.length && !this.#closed; i++) {
      const [header, payload] = splitFrame(frames[i]);
      this.#onMessage(header, payload);
    }
    if (ended && !this.#closed) {
      this.detach();
      this.#onClose();
    }
  }
}
