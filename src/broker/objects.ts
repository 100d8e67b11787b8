/**
 * The objects a broker keeps for the queues and connections its process
 * created, when there is no addon (see thread.ts): a queue's items, a pipe
 * end's inbox, a socket of a Listener or Client. Every wait (a `get` on an
 * empty queue, a `recv`, a `poll`) is a {@link Waiter} the object answers
 * later, or at its timeout; a client that goes away takes its waits with it,
 * and gives up what it held.
 * @internal
 */
import * as net from 'net';

import { _handshake as handshake, _handshakeError as handshakeError, _MAX_HANDSHAKE_MESSAGE as MAX_HANDSHAKE_MESSAGE } from '../connection';
import { EOFError } from '../errors';
import { codedError, frameHeader, FrameReader } from './wire';

/**
 * Answers a request: an error, or the value. `lease`: the value is an item
 * that stays the queue's until the client acknowledges it (see {@link Session.leases}).
 */
export type Respond = (error: Error | null, value?: unknown, lease?: number) => void;

let nextLease = 1;

/**
 * One client of the broker: this process's main thread, or another process's
 * I/O thread over a link. What it holds and waits for ends with it.
 */
export class Session {
  /** oid -> how many handles of it this client holds. */
  readonly holds = new Map<number, number>();
  /** Waiter id -> how to end that wait (`cancel`), and every wait of the session's. */
  readonly waits = new Map<number | symbol, () => void>();
  /**
   * Items handed to this client's `get()`s and not yet acknowledged, each with
   * how to give it back: a client process killed while an item was on its way
   * to it takes nothing with it.
   */
  readonly leases = new Map<number, () => void>();

  /** @param remote another process's (its items are leased); false for this process's main thread. */
  constructor(readonly remote: boolean) {}

  hold(oid: number): void {
    this.holds.set(oid, (this.holds.get(oid) ?? 0) + 1);
  }

  /** Gives one handle of `oid` up; false if it held none. */
  unhold(oid: number): boolean {
    const count = this.holds.get(oid) ?? 0;
    if (count === 0) return false;
    if (count === 1) this.holds.delete(oid);
    else this.holds.set(oid, count - 1);
    return true;
  }
}

/** A pending wait: answered once, by the object, its timer or its session's end. */
interface Waiter<E> {
  readonly respond: Respond;
  readonly extra: E;
  readonly session: Session;
  readonly key: number | symbol;
  timer?: NodeJS.Timeout;
}

/** Waits in arrival order, each with its timeout (`null`: none). */
export class WaitList<E = undefined> {
  private waiters: Waiter<E>[] = [];

  get length(): number {
    return this.waiters.length;
  }

  /**
   * Adds a wait; `onTimeout` answers it once `timeout` ms have passed. `key`
   * (the request's waiter id) lets the session cancel it, answering `onTimeout`'s way.
   */
  add(session: Session, respond: Respond, timeout: number | null, onTimeout: (respond: Respond) => void, extra: E, key?: number): void {
    const waiter: Waiter<E> = { respond, extra, session, key: key ?? Symbol('wait') };
    const end = (): void => {
      if (this.remove(waiter)) onTimeout(respond);
    };
    if (timeout !== null) waiter.timer = setTimeout(end, timeout);
    session.waits.set(waiter.key, end);
    this.waiters.push(waiter);
  }

  peek(): Waiter<E> | undefined {
    return this.waiters[0];
  }

  /** The first wait, taken off (its timer stopped). */
  shift(): Waiter<E> | undefined {
    const waiter = this.waiters.shift();
    if (waiter !== undefined) this.settle(waiter);
    return waiter;
  }

  /** Takes every wait off and answers each with `respond`'s arguments. */
  respondAll(error: Error | null, value?: unknown): void {
    for (let waiter = this.shift(); waiter !== undefined; waiter = this.shift()) waiter.respond(error, value);
  }

  /** Drops the waits of `session` without answering them (it is gone). */
  dropSession(session: Session): void {
    for (const waiter of this.waiters.filter((w) => w.session === session)) this.remove(waiter);
  }

  private remove(waiter: Waiter<E>): boolean {
    const index = this.waiters.indexOf(waiter);
    if (index < 0) return false;
    this.waiters.splice(index, 1);
    this.settle(waiter);
    return true;
  }

  private settle(waiter: Waiter<E>): void {
    if (waiter.timer !== undefined) clearTimeout(waiter.timer);
    waiter.session.waits.delete(waiter.key);
  }
}

/** What every broker object does: count its holders, end its waits. */
export abstract class BrokerObject {
  /** Handles of it in any process, and tickets for handles on their way to one. */
  holders = 1;
  readonly tickets = new Set<number>();

  /** Drops the waits of a session that ended. */
  abstract dropSession(session: Session): void;
  /** The last holder is gone. */
  abstract release(): void;
}

// --- queues --------------------------------------------------------------------------------------

/** What a waiting put carries. */
interface PendingPut {
  item: Buffer;
  counted: boolean;
}

/** A Queue, SimpleQueue or JoinableQueue: its items, and who waits for a place, an item or the end of the tasks. */
export class QueueObject extends BrokerObject {
  private items: Buffer[] = [];
  private head = 0;
  private readonly getters = new WaitList();
  private readonly putters = new WaitList<PendingPut>();
  private readonly joiners = new WaitList();
  private unfinished = 0;

  /** @param maxsize 0: no limit. */
  constructor(readonly maxsize: number) {
    super();
  }

  get size(): number {
    return this.items.length - this.head;
  }

  /** `timeout` 0: do not wait (`Full` at once). `counted`: a JoinableQueue's task. */
  put(session: Session, item: Buffer, timeout: number | null, counted: boolean, respond: Respond, key?: number): void {
    if (this.hasRoom()) {
      this.accept(item, counted);
      respond(null);
    } else if (timeout === 0) {
      respond(full());
    } else {
      this.putters.add(session, respond, timeout, (r) => r(full()), { item, counted }, key);
    }
  }

  get(session: Session, timeout: number | null, respond: Respond, key?: number): void {
    if (this.size > 0) {
      const item = this.shiftItem();
      this.admitPutters();
      this.handOut(session, respond, item);
    } else if (timeout === 0) {
      respond(empty());
    } else {
      this.getters.add(session, respond, timeout, (r) => r(empty()), undefined, key);
    }
  }

  taskDone(respond: Respond): void {
    if (this.unfinished === 0) {
      respond(new Error('taskDone() called more times than there were items put'));
      return;
    }
    if (--this.unfinished === 0) this.joiners.respondAll(null);
    respond(null);
  }

  join(session: Session, respond: Respond, key?: number): void {
    if (this.unfinished === 0) respond(null);
    else this.joiners.add(session, respond, null, (r) => r(null), undefined, key);
  }

  dropSession(session: Session): void {
    this.getters.dropSession(session);
    this.putters.dropSession(session);
    this.joiners.dropSession(session);
  }

  release(): void {
    this.items = [];
    this.head = 0;
  }

  private hasRoom(): boolean {
    return this.maxsize === 0 || this.size < this.maxsize;
  }

  /** An item now in the queue: to the first waiting get, or kept. */
  private accept(item: Buffer, counted: boolean): void {
    if (counted) this.unfinished++;
    const getter = this.getters.shift();
    if (getter !== undefined) this.handOut(getter.session, getter.respond, item);
    else this.items.push(item);
  }

  /** Answers a get with `item`, leased to another process until it says it has it. */
  private handOut(session: Session, respond: Respond, item: Buffer): void {
    if (!session.remote) {
      respond(null, item);
      return;
    }
    const lease = nextLease++;
    session.leases.set(lease, () => this.giveBack(item));
    respond(null, item, lease);
  }

  /** An item whose consumer went away before it had it: first in line again. */
  private giveBack(item: Buffer): void {
    const getter = this.getters.shift();
    if (getter !== undefined) this.handOut(getter.session, getter.respond, item);
    else if (this.head > 0) this.items[--this.head] = item;
    else this.items.unshift(item);
  }

  private shiftItem(): Buffer {
    const item = this.items[this.head];
    this.items[this.head++] = undefined as unknown as Buffer;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Waiting puts take the places that freed up, in order. */
  private admitPutters(): void {
    while (this.putters.length > 0 && this.hasRoom()) {
      const putter = this.putters.shift() as NonNullable<ReturnType<WaitList<PendingPut>['shift']>>;
      this.accept(putter.extra.item, putter.extra.counted);
      putter.respond(null);
    }
  }
}

function full(): Error {
  return Object.assign(new Error('the queue is full'), { name: 'Full' });
}

function empty(): Error {
  return Object.assign(new Error('the queue is empty'), { name: 'Empty' });
}

// --- connections -------------------------------------------------------------------------------

/** A recv too long for `maxLength`: refused, and the message left in place (as connection.ts's). */
function tooLong(length: number, maxLength: number): Error {
  return new RangeError(`the message is ${length} bytes long, more than maxLength (${maxLength}): it was left unread`);
}

/** One end of a connection: the messages that arrived for it, and who waits for them. */
export abstract class Endpoint extends BrokerObject {
  private inbox: Buffer[] = [];
  private readonly receivers = new WaitList<number>();
  private readonly pollers = new WaitList();
  /** No message will arrive any more (after those in the inbox). */
  protected ended = false;
  private endError: Error | null = null;
  /** Every holder is gone. */
  closed = false;

  /** Sends a message to the other end. */
  abstract send(frame: Buffer, respond: Respond): void;

  recv(session: Session, maxLength: number, respond: Respond, key?: number): void {
    if (this.inbox.length > 0) {
      const frame = this.inbox[0];
      if (frame.length > maxLength) {
        respond(tooLong(frame.length, maxLength));
        return;
      }
      this.inbox.shift();
      respond(null, frame);
    } else if (this.ended) {
      respond(this.eof());
    } else {
      this.receivers.add(session, respond, null, () => {}, maxLength, key);
    }
  }

  /** Answers whether a message (or the end) is there, waiting up to `timeout` ms for one. */
  poll(session: Session, timeout: number | null, respond: Respond, key?: number): void {
    if (this.inbox.length > 0 || this.ended) respond(null, true);
    else if (timeout === 0) respond(null, false);
    else this.pollers.add(session, respond, timeout, (r) => r(null, false), undefined, key);
  }

  /** A message arrived for this end. */
  deliver(frame: Buffer): void {
    const receiver = this.inbox.length === 0 ? this.receivers.shift() : undefined;
    if (receiver === undefined) this.inbox.push(frame);
    else if (frame.length > receiver.extra) {
      this.inbox.push(frame);
      receiver.respond(tooLong(frame.length, receiver.extra));
    } else receiver.respond(null, frame);
    this.pollers.respondAll(null, true);
  }

  /** No more messages will arrive (the peer closed, or `error`). */
  end(error: Error | null = null): void {
    if (this.ended) return;
    this.ended = true;
    this.endError = error;
    this.receivers.respondAll(this.eof());
    this.pollers.respondAll(null, true);
  }

  dropSession(session: Session): void {
    this.receivers.dropSession(session);
    this.pollers.dropSession(session);
  }

  release(): void {
    this.closed = true;
    this.inbox = [];
    this.receivers.respondAll(codedError('the connection is closed', 'ERR_CONNECTION_CLOSED'));
    this.pollers.respondAll(null, true);
  }

  /** The next message, for the broker's own use (a handshake). */
  next(maxLength: number): Promise<Buffer> {
    return new Promise((resolve, reject) => this.recv(INTERNAL, maxLength, (error, frame) => (error === null ? resolve(frame as Buffer) : reject(error))));
  }

  private eof(): Error {
    return this.endError ?? new EOFError('the other end of the connection was closed');
  }
}

/** The broker's own waits (handshakes): a session that never ends. */
const INTERNAL = new Session(false);

/** An end of a Pipe: what it sends goes to its peer's inbox. */
export class PipeEnd extends Endpoint {
  peer: PipeEnd | null = null;

  send(frame: Buffer, respond: Respond): void {
    const peer = this.peer;
    if (peer === null || peer.closed) {
      respond(codedError('the other end of the pipe is closed', 'EPIPE'));
      return;
    }
    peer.deliver(frame);
    respond(null);
  }

  override release(): void {
    super.release();
    this.peer?.end();
  }
}

/** A socket of a Listener's or a Client's, framed as Python frames. */
export class SocketEnd extends Endpoint {
  private readonly reader = new FrameReader();

  constructor(private readonly socket: net.Socket) {
    super();
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.reader.push(chunk)) this.deliver(frame);
    });
    socket.on('end', () => this.end());
    socket.on('error', (error) => this.end(error));
    socket.on('close', () => this.end());
  }

  send(frame: Buffer, respond: Respond): void {
    if (this.socket.destroyed || this.socket.writableEnded) {
      respond(codedError('the other end of the connection is closed', 'EPIPE'));
      return;
    }
    // Answered once the bytes are in the kernel: a sender that exits next loses nothing.
    this.socket.write(frameHeader(frame.length));
    this.socket.write(frame, (error) => respond(error ?? null));
  }

  /** For the handshake: sends without waiting. */
  sendBytes(bytes: Buffer): void {
    this.socket.write(Buffer.concat([frameHeader(bytes.length), bytes]));
  }

  /** Runs Python's authkey handshake (`challengeFirst`: as the Listener). */
  async shakeHands(authkey: Buffer, challengeFirst: boolean): Promise<void> {
    try {
      const steps = handshake(this, authkey, challengeFirst);
      for (let step = steps.next(); !step.done; ) step = steps.next(await this.next(MAX_HANDSHAKE_MESSAGE));
    } catch (error) {
      this.socket.destroy();
      throw handshakeError(error);
    }
  }

  override release(): void {
    super.release();
    this.socket.destroy();
  }
}

/** A Listener's server: connections accepted in order, each handed to one `accept`. */
export class ListenerObject extends BrokerObject {
  private readonly arrived: net.Socket[] = [];
  private readonly accepters = new WaitList();

  constructor(
    readonly server: net.Server,
    private readonly authkey: Buffer | null,
    private readonly register: (endpoint: Endpoint, session: Session) => number,
  ) {
    super();
    server.on('connection', (socket) => {
      socket.pause();
      this.arrived.push(socket);
      this.serve();
    });
  }

  accept(session: Session, respond: Respond, key?: number): void {
    this.accepters.add(session, respond, null, () => {}, undefined, key);
    this.serve();
  }

  dropSession(session: Session): void {
    this.accepters.dropSession(session);
  }

  release(): void {
    this.server.close();
    for (const socket of this.arrived.splice(0)) socket.destroy();
    this.accepters.respondAll(codedError('the listener is closed', 'ERR_LISTENER_CLOSED'));
  }

  /** Hands connections that arrived to waiting accepts, after the handshake when there is a key. */
  private serve(): void {
    while (this.arrived.length > 0 && this.accepters.length > 0) {
      const socket = this.arrived.shift() as net.Socket;
      const accepter = this.accepters.shift() as NonNullable<ReturnType<WaitList['shift']>>;
      const endpoint = new SocketEnd(socket);
      const peer = socket.remoteAddress === undefined ? null : [socket.remoteAddress, socket.remotePort];
      socket.resume();
      const handshake = this.authkey === null ? Promise.resolve() : endpoint.shakeHands(this.authkey, true);
      handshake.then(
        () => accepter.respond(null, { oid: this.register(endpoint, accepter.session), peer }),
        (error: Error) => accepter.respond(error),
      );
    }
  }
}
