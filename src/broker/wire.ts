/**
 * What the broker and its clients say to each other, and how it is framed.
 *
 * Frames are Python's `multiprocessing.connection` frames (a 4-byte big-endian
 * length, or -1 and an 8-byte length): the same parser serves the broker's own
 * links and the sockets of `Listener`/`Client`, which talk to Python peers.
 * A broker link carries `v8.serialize`d {@link Request}s and {@link Reply}s.
 * @internal
 */
import * as v8 from 'v8';

import { AuthenticationError, Empty, EOFError, Full } from '../errors';

/** Where a broker listens (a Unix socket path, '\0...' on Linux, or a Windows named pipe) and its key. */
export interface BrokerAddress {
  address: string;
  authkey: Buffer;
}

/** What a broker's client asks, on behalf of a handle; `oid` names the broker's object. */
export type Request =
  | { op: 'hello' }
  | { op: 'queue'; maxsize: number }
  | { op: 'pipe'; duplex: boolean }
  | { op: 'listen'; address: string | [string, number]; backlog: number; authkey: Buffer | null }
  | { op: 'accept'; oid: number }
  | { op: 'connect'; address: string | [string, number]; authkey: Buffer | null }
  | { op: 'ticket'; oid: number }
  | { op: 'attach'; oid: number; ticket: number }
  | { op: 'detach'; oid: number }
  | { op: 'put'; oid: number; item: Uint8Array; timeout: number | null; counted: boolean }
  | { op: 'get'; oid: number; timeout: number | null }
  | { op: 'state'; oid: number }
  | { op: 'taskDone'; oid: number }
  | { op: 'join'; oid: number }
  | { op: 'send'; oid: number; frame: Uint8Array }
  | { op: 'recv'; oid: number; maxLength: number }
  | { op: 'poll'; oid: number; timeout: number | null }
  | { op: 'cancel'; oid: number; waiter: number }
  | { op: 'ack'; lease: number }
  | { op: 'pollAny'; targets: Array<{ home: BrokerAddress | null; oid: number }>; timeout: number | null };

/** A request sent to a broker, or through this process's I/O thread to one. */
export type Addressed = Request & {
  /** The broker that owns `oid` (`null`: this process's own). */
  home?: BrokerAddress | null;
  /** Names a waiting request, so that `cancel` can end it. */
  waiter?: number;
};

/** A queue's counts, as `qsize()`, `empty()` and `full()` read them. */
export interface QueueCounts {
  size: number;
  maxsize: number;
}

/** An Error as it crosses threads and processes: rebuilt as the class of its name. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
}

/** `lease`: the value is a queue's item, the owner's until this process acknowledges it (`ack`). */
export type Reply = { id: number; value?: unknown; error?: WireError; lease?: number };

export function errorToWire(error: unknown): WireError {
  const { name = 'Error', message = String(error), code } = (error ?? {}) as Partial<Error & { code: string }>;
  return code === undefined ? { name, message } : { name, message, code };
}

const ERRORS: Record<string, new (message: string) => Error> = {
  EOFError,
  AuthenticationError,
  Empty,
  Full,
  RangeError,
  TypeError,
};

export function errorFromWire(wire: WireError): Error {
  const error = new (ERRORS[wire.name] ?? Error)(wire.message);
  if (wire.code !== undefined) Object.assign(error, { code: wire.code });
  return error;
}

/** An Error with a `code`, for the broker's own failures. */
export function codedError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The code of the error a request gets once the broker that owns its object is gone. */
export const OWNER_GONE = 'ERR_MP_OWNER_GONE';

// --- Python's framing ---------------------------------------------------------------------

/** The header of a frame of `length` bytes. */
export function frameHeader(length: number): Buffer {
  if (length < 0x7fffffff) {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(length, 0);
    return header;
  }
  const header = Buffer.allocUnsafe(12);
  header.writeInt32BE(-1, 0);
  header.writeBigUInt64BE(BigInt(length), 4);
  return header;
}

/** Cuts a byte stream into frames. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** Adds bytes read; returns the whole frames they complete. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Buffer[] = [];
    for (;;) {
      const frame = this.next();
      if (frame === null) return frames;
      frames.push(frame);
    }
  }

  private next(): Buffer | null {
    if (this.buffered < 4) return null;
    let head = this.peek(4);
    let headerLength = 4;
    let length = head.readUInt32BE(0);
    if (length === 0xffffffff) {
      if (this.buffered < 12) return null;
      head = this.peek(12);
      headerLength = 12;
      length = Number(head.readBigUInt64BE(4));
    }
    if (this.buffered < headerLength + length) return null;
    return this.take(headerLength + length).subarray(headerLength);
  }

  private peek(count: number): Buffer {
    if (this.chunks[0].length < count) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }

  private take(count: number): Buffer {
    if (this.chunks[0].length < count) this.chunks = [Buffer.concat(this.chunks)];
    const first = this.chunks[0];
    this.buffered -= count;
    if (first.length === count) this.chunks.shift();
    else this.chunks[0] = first.subarray(count);
    return first.subarray(0, count);
  }
}

/** A message of the broker's links as a frame's payload. */
export function encodeMessage(message: unknown): Buffer {
  const payload = v8.serialize(message);
  return Buffer.concat([frameHeader(payload.length), payload]);
}

export function decodeMessage<T>(payload: Buffer): T {
  return v8.deserialize(payload) as T;
}
