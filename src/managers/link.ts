/**
 * A manager's connection once its authkey handshake is done: what a client
 * and the server send each other calls and answers over.
 *
 * With the addon, a copy of the connection's descriptor is taken over by the
 * addon's Channel (native/framed_channel.cc), blocking for a client's Sync
 * calls (a call is one write, then one read once the answer is there) or read
 * on the event loop, each batch of messages going straight to the reader; a
 * JSON payload arrives as its text. Either way the Channel spins: a Sync call
 * looks for its answer awake for 100 µs before it sleeps, and the server's
 * loop keeps turning for 200 µs after each answer (both less while the next
 * message comes later), so that a client's next call is read without waking
 * a sleeping process. Without it (Windows,
 * `NODE_MULTIPROCESSING_NO_NATIVE`), the Connection itself carries them.
 * The bytes on the wire are the same either way (Connection's framing and
 * reduction.ts's payloads), so either kind of peer talks to the other.
 *
 * A link is taken over only when nothing is buffered past the last message
 * its Connection received: the client sends nothing after its hello until
 * the server answered it, so each side takes over right after the hello.
 * @internal
 */
import { EOFError } from '../errors';
import type { NativeChannel } from '../native';
import { loadNative } from '../native';
import { dumps, loads } from '../reduction';

/** What a manager uses of a Connection (connection.ts's public API). */
export interface LinkConnection {
  send(message: unknown): void;
  recv(): Promise<unknown>;
  recvSync(): unknown;
  fileno(): number;
  close(): void;
}

/** Reads a link's messages: each in order, then its end (once). */
export interface LinkReader {
  onMessage(message: unknown): void;
  /** The peer closed (EOFError), or reading failed. */
  onEnd(error: Error): void;
  /** Whether to wait for another message (default: yes); asked before each wait of a link without the addon, whose wait cannot be taken back. */
  more?(): boolean;
}

/** A manager's connection after the hello. */
export interface Link {
  /** Sends a message (a call or an answer); a value that cannot be sent gets a TypeError, nothing sent. */
  send(message: unknown): void;
  /** Sends a call and blocks for the next message (its answer); EOFError when the peer is gone. */
  call(message: unknown): unknown;
  /** Reads on the event loop (which it keeps alive meanwhile) until {@link pause}. */
  read(reader: LinkReader): void;
  pause(): void;
  close(): void;
}

function peerGone(): EOFError {
  return new EOFError('the other end of the connection was closed');
}

/** A link's frame: the text of a JSON payload, else the bytes `reduction.loads` reads. */
type LinkFrame = string | Buffer;

function decode(frame: LinkFrame): unknown {
  return typeof frame === 'string' ? JSON.parse(frame) : loads(frame);
}

/** A link whose descriptor (a copy of its Connection's) the addon's Channel owns. */
class NativeLink implements Link {
  #link: NativeChannel<LinkFrame> | null;
  #reader: LinkReader | null = null;
  #ended = false;

  /** `evented`: read on the event loop (non-blocking); else blocking calls. */
  constructor(fd: number, evented: boolean) {
    const { Channel } = loadNative() as NonNullable<ReturnType<typeof loadNative>>;
    const options = { copy: true, blocking: !evented, text: true, spin: true };
    this.#link = evented
      ? new Channel<LinkFrame>(fd, (frames, ended, error) => this.#received(frames, ended, error), options)
      : new Channel<LinkFrame>(fd, undefined, options);
  }

  #native(): NativeChannel<LinkFrame> {
    if (this.#link === null) throw Object.assign(new Error('the manager link is closed'), { code: 'ERR_CONNECTION_CLOSED' });
    return this.#link;
  }

  send(message: unknown): void {
    this.#native().send(dumps(message, 'message'));
  }

  call(message: unknown): unknown {
    const frame = this.#native().call(dumps(message, 'message'));
    if (frame === undefined) throw peerGone();
    return decode(frame);
  }

  read(reader: LinkReader): void {
    this.#reader = reader;
    if (this.#ended) return;
    this.#native().start();
  }

  pause(): void {
    this.#reader = null;
    this.#link?.stop();
  }

  #received(frames: LinkFrame[], ended: boolean, error: Error | null): void {
    for (let i = 0; i < frames.length; i++) {
      const reader = this.#reader;
      if (reader === null) return; // paused by a message's reader: what is left is nobody's (a closed link)
      let message: unknown;
      try {
        message = decode(frames[i]);
      } catch (decodeError) {
        this.#end(decodeError as Error);
        return;
      }
      reader.onMessage(message);
    }
    if (ended) this.#end(error ?? peerGone());
  }

  #end(error: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#link?.stop();
    const reader = this.#reader;
    this.#reader = null;
    reader?.onEnd(error);
  }

  close(): void {
    this.#reader = null;
    this.#ended = true;
    this.#link?.close();
    this.#link = null;
  }
}

/** A link over its Connection (no addon): recv() reads on the event loop. */
class ConnectionLink implements Link {
  readonly #connection: LinkConnection;
  #reader: LinkReader | null = null;
  #reading = false;

  constructor(connection: LinkConnection) {
    this.#connection = connection;
  }

  send(message: unknown): void {
    this.#connection.send(message);
  }

  call(message: unknown): unknown {
    this.#connection.send(message);
    return this.#connection.recvSync();
  }

  read(reader: LinkReader): void {
    this.#reader = reader;
    if (this.#reading) return;
    this.#reading = true;
    void (async () => {
      try {
        while (this.#reader !== null && (this.#reader.more?.() ?? true)) {
          const message = await this.#connection.recv();
          this.#reader?.onMessage(message);
        }
      } catch (error) {
        const current = this.#reader;
        this.#reader = null;
        current?.onEnd(error as Error);
      } finally {
        this.#reading = false;
      }
    })();
  }

  /**
   * Takes effect after the message being waited for: a recv() cannot be
   * taken back. (Without the addon the connection is read by a broker, not by
   * this process's polls, so a pending recv() holds up nothing but itself.)
   */
  pause(): void {
    this.#reader = null;
  }

  close(): void {
    this.#reader = null;
    this.#connection.close();
  }
}

/**
 * The link over `connection`, after the hello (nothing buffered past it):
 * with the addon the descriptor is copied to a native link and the
 * Connection closed (also when that fails). `evented`: read on the event loop (the server's links,
 * a client's async calls); else blocking (a client's Sync calls).
 */
export function takeOver(connection: LinkConnection, evented: boolean): Link {
  if (loadNative() === null) return new ConnectionLink(connection);
  try {
    return new NativeLink(connection.fileno(), evented);
  } finally {
    connection.close();
  }
}
