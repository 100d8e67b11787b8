/**
 * Connection, Pipe, Listener, Client and wait without the addon (on Windows,
 * or with `NODE_MULTIPROCESSING_NO_NATIVE=1`): the same classes and methods
 * over a broker (broker/thread.ts), on `node:net` alone.
 *
 * A Pipe's two ends are two inboxes in a broker, the main process's as a
 * rule (see broker/bridge.ts); an end passed to a child (as a Process
 * argument, or inside a message) reaches them through that broker. A Listener's server and a
 * Client's socket live in the I/O thread of the process that made them,
 * speaking Python's frames and handshake on the wire, so a Python peer talks
 * to them as to the addon's.
 *
 * `send()` returns once the message is in the peer's inbox (or, for a
 * socket, in the kernel); the `Sync` twins block the thread. When every
 * handle of one end is closed (in every process), the other end reads
 * `mp.EOFError` after what was sent before; an end whose broker's process
 * has ended reads `mp.EOFError` too. `fileno()` throws: there is no descriptor.
 * @internal
 */
import { theBridge } from '../broker/bridge';
import { BrokerHandle, HandleState } from '../broker/handle';
import { Addressed, OWNER_GONE } from '../broker/wire';
import { _bytesToSend, _connectionClosedError, Address, Connection, Listener, Waitable } from '../connection';
import { EOFError } from '../errors';
import { unsupported } from '../native';
import { dumps, loads, registerReducer } from '../reduction';
import { describe, validateInteger, validateTimeout } from '../validate';

/** An end whose owner has ended reads the end of the connection. */
function endOfFile(error: unknown): unknown {
  if ((error as { code?: unknown } | null)?.code !== OWNER_GONE) return error;
  return new EOFError(`the other end of the connection is gone: ${(error as Error).message}`);
}

function rejecting<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run().catch((error: unknown) => Promise.reject(endOfFile(error)));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** An end whose owner has ended is ready: its `recv()` answers at once (EOFError). */
function readyIfOwnerGone(error: unknown): boolean {
  if ((error as { code?: unknown } | null)?.code === OWNER_GONE) return true;
  throw error;
}

function blocking<T>(run: () => T): T {
  try {
    return run();
  } catch (error) {
    throw endOfFile(error);
  }
}

function maxLengthOf(maxLength: number | undefined): number {
  return maxLength === undefined ? Infinity : validateInteger(maxLength, 'maxLength', 0, Number.MAX_SAFE_INTEGER);
}

/** A Connection whose messages its owner's broker carries. */
export class PortableConnection extends Connection {
  declare _h: BrokerHandle;
  declare _canRead: boolean;
  declare _canWrite: boolean;

  override get closed(): boolean {
    return this._h.closed;
  }

  override get readable(): boolean {
    return this._canRead;
  }

  override get writable(): boolean {
    return this._canWrite;
  }

  /** Throws: without the addon a connection has no descriptor. */
  override fileno(): number {
    this.openHandle();
    throw unsupported('Connection.fileno()');
  }

  override send(obj: unknown): void {
    const handle = this.writingHandle();
    const frame = dumps(obj, 'obj');
    handle.callSync<void>({ op: 'send', oid: handle.oid, frame });
  }

  override sendBytes(buffer: ArrayBufferView | ArrayBufferLike, offset = 0, size?: number): void {
    const handle = this.writingHandle();
    const frame = _bytesToSend(buffer, offset, size);
    handle.callSync<void>({ op: 'send', oid: handle.oid, frame });
  }

  override recv<T = unknown>(): Promise<T> {
    return rejecting(async () => loads(await this.brokerRecv(Infinity)) as T);
  }

  override recvSync<T = unknown>(): T {
    return loads(this.brokerRecvSync(Infinity)) as T;
  }

  override recvBytes(maxLength?: number): Promise<Buffer> {
    const limit = maxLengthOf(maxLength);
    return rejecting(() => this.brokerRecv(limit));
  }

  override recvBytesSync(maxLength?: number): Buffer {
    return this.brokerRecvSync(maxLengthOf(maxLength));
  }

  override poll(): boolean;
  override poll(timeout: number | null): Promise<boolean>;
  override poll(timeout?: number | null): boolean | Promise<boolean> {
    if (arguments.length === 0) return this.pollSync(0);
    const limit = validateTimeout(timeout);
    return rejecting(() => {
      const handle = this.readingHandle();
      return handle.call<boolean>({ op: 'poll', oid: handle.oid, timeout: limit }).catch(readyIfOwnerGone);
    });
  }

  override pollSync(timeout: number | null = 0): boolean {
    const limit = validateTimeout(timeout);
    const handle = this.readingHandle();
    try {
      return handle.callSync<boolean>({ op: 'poll', oid: handle.oid, timeout: limit });
    } catch (error) {
      return readyIfOwnerGone(error);
    }
  }

  override close(): void {
    this._h.close();
  }

  override _ready(): boolean {
    return this.closed || this.pollSync(0);
  }

  private brokerRecv(maxLength: number): Promise<Buffer> {
    const handle = this.readingHandle();
    return handle.call<Buffer>({ op: 'recv', oid: handle.oid, maxLength });
  }

  private brokerRecvSync(maxLength: number): Buffer {
    const handle = this.readingHandle();
    return blocking(() => handle.callSync<Buffer>({ op: 'recv', oid: handle.oid, maxLength }));
  }

  private openHandle(): BrokerHandle {
    if (this._h.closed) throw _connectionClosedError();
    return this._h;
  }

  private readingHandle(): BrokerHandle {
    const handle = this.openHandle();
    if (!this._canRead) throw new Error('this end of the pipe is write-only: it cannot receive');
    return handle;
  }

  private writingHandle(): BrokerHandle {
    const handle = this.openHandle();
    if (!this._canWrite) throw new Error('this end of the pipe is read-only: it cannot send');
    return handle;
  }
}

function connectionOf(handle: BrokerHandle, readable = true, writable = true): PortableConnection {
  const connection = Object.create(PortableConnection.prototype) as PortableConnection;
  connection._h = handle;
  connection._canRead = readable;
  connection._canWrite = writable;
  handle.watch(connection);
  return connection;
}

interface ConnectionState {
  handle: HandleState;
  readable: boolean;
  writable: boolean;
}

registerReducer<PortableConnection, ConnectionState>(PortableConnection, {
  kind: 'PortableConnection',
  reduce: (connection) => {
    if (connection.closed) throw _connectionClosedError();
    return { handle: connection._h.reduce(), readable: connection._canRead, writable: connection._canWrite };
  },
  rebuild: (state) => connectionOf(BrokerHandle.rebuild(state.handle), state.readable, state.writable),
});

/** `Pipe(duplex)` in the broker pipes are made in (see broker/bridge.ts). */
export function Pipe(duplex: boolean): [Connection, Connection] {
  const [home, [first, second]] = theBridge().create<[number, number]>({ op: 'pipe', duplex });
  return [connectionOf(new BrokerHandle(home, first), true, duplex), connectionOf(new BrokerHandle(home, second), duplex, true)];
}

// --- Listener and Client ------------------------------------------------------------------------------

/** What the broker answers an accept with: the connection, and the peer's address (TCP only). */
interface Accepted {
  oid: number;
  peer: Address | null;
}

/** A Listener whose server this process's I/O thread runs. */
export class PortableListener extends Listener {
  declare _h: BrokerHandle;
  declare _address: Address;
  declare _lastAccepted: Address | null;

  override get address(): Address {
    return this._address;
  }

  override get lastAccepted(): Address | null {
    return this._lastAccepted;
  }

  override get closed(): boolean {
    return this._h.closed;
  }

  override async accept(): Promise<Connection> {
    const handle = this.listeningHandle();
    return this.connectionAccepted(await handle.call<Accepted>({ op: 'accept', oid: handle.oid }));
  }

  override acceptSync(): Connection {
    const handle = this.listeningHandle();
    return this.connectionAccepted(handle.callSync<Accepted>({ op: 'accept', oid: handle.oid }));
  }

  /** Stops listening; a Unix socket's path is removed when this returns. */
  override close(): void {
    this._h.close(true);
  }

  private connectionAccepted({ oid, peer }: Accepted): Connection {
    this._lastAccepted = peer;
    return connectionOf(new BrokerHandle(null, oid));
  }

  private listeningHandle(): BrokerHandle {
    if (this._h.closed) throw Object.assign(new Error('the listener is closed'), { code: 'ERR_LISTENER_CLOSED' });
    return this._h;
  }
}

/** A Listener at `address` (validated by connection.ts). */
export function newListener(address: Address, backlog: number, authkey: Buffer | null): Listener {
  const { oid, address: bound } = theBridge().callSync<{ oid: number; address: Address }>({ op: 'listen', address, backlog, authkey });
  const listener = Object.create(PortableListener.prototype) as PortableListener;
  listener._h = new BrokerHandle(null, oid);
  listener._address = bound;
  listener._lastAccepted = null;
  listener._h.watch(listener);
  return listener;
}

/** `Client(address)`, blocking the thread while it connects and shakes hands. */
export function clientSync(address: Address, authkey: Buffer | null): Connection {
  return connectionOf(new BrokerHandle(null, theBridge().callSync<number>({ op: 'connect', address, authkey })));
}

/** `ClientAsync(address)`. */
export async function client(address: Address, authkey: Buffer | null): Promise<Connection> {
  return connectionOf(new BrokerHandle(null, await theBridge().call<number>({ op: 'connect', address, authkey })));
}

// --- wait ----------------------------------------------------------------------------------------------

function portableConnections(objects: unknown): PortableConnection[] {
  if (!Array.isArray(objects)) throw new TypeError(`objects must be an array, got ${describe(objects)}`);
  return objects.map((object: unknown, i) => {
    if (object instanceof PortableConnection) return object;
    throw new TypeError(`objects[${i}] must be a Connection: without the addon wait() takes no descriptors or sentinels, got ${describe(object)}`);
  });
}

/** The request that answers once any of `connections` is ready, or `limit` ms have passed. */
function pollAny(connections: PortableConnection[], limit: number | null): Addressed {
  const targets = connections.filter((c) => !c.closed).map((c) => ({ home: c._h.home, oid: c._h.oid }));
  return { op: 'pollAny', targets, timeout: limit };
}

/** What a wait() over `objects` finds now, and the request that waits for more (`null`: answer now). */
function startWait<T extends Waitable>(objects: T[], timeout: unknown): { now: T[]; ready: () => T[]; request: Addressed | null } {
  const connections = portableConnections(objects);
  const limit = validateTimeout(timeout);
  const ready = (): T[] => objects.filter((_, i) => connections[i]._ready());
  const now = ready();
  return { now, ready, request: now.length > 0 || limit === 0 ? null : pollAny(connections, limit) };
}

/** `wait(objects, timeout)` over Connections. */
export async function wait<T extends Waitable>(objects: T[], timeout?: number | null): Promise<T[]> {
  const { now, ready, request } = startWait(objects, timeout);
  if (request === null) return now;
  await theBridge().call<boolean>(request);
  return ready();
}

/** `waitSync(objects, timeout)` over Connections. */
export function waitSync<T extends Waitable>(objects: T[], timeout?: number | null): T[] {
  const { now, ready, request } = startWait(objects, timeout);
  if (request === null) return now;
  theBridge().callSync<boolean>(request);
  return ready();
}
