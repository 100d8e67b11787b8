/**
 * The I/O thread of a process without the addon (a `worker_threads` Worker,
 * started by bridge.ts on first use): the broker of the queues and
 * connections this process created, and the client of other processes'
 * brokers.
 *
 * Without the addon there is no socketpair to hand to a child, no futex and
 * no descriptor passing, as on Windows. So a Queue's items and a Pipe end's
 * inbox live in a broker (the main process's as a rule: see bridge.ts), a
 * Listener's server and a Client's socket in the broker of the process that
 * made them, and every handle of them (in this process, or in a child that
 * got one as a Process argument) asks that broker over a Unix socket or a
 * Windows named pipe, after Python's authkey handshake with a key of the
 * broker's own. Living on a thread of its own, the broker keeps answering
 * while its process's main thread blocks in a `Sync` twin.
 *
 * A handle names its broker (`home`: address and key) and the object (`oid`).
 * Requests for another process's broker go over one link per broker, in order.
 * Objects count their holders (handles in any process, and tickets for
 * handles on their way to a child): when the last one goes, a Pipe's other
 * end reads end of file. A process that ends gives up what it held.
 * @internal
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { MessagePort, parentPort, workerData } from 'worker_threads';

import { BrokerObject, Endpoint, ListenerObject, PipeEnd, QueueObject, Respond, Session, SocketEnd } from './objects';
import {
  Addressed,
  BrokerAddress,
  codedError,
  decodeMessage,
  errorFromWire,
  errorToWire,
  OWNER_GONE,
  Reply,
  Request,
  WireError,
} from './wire';

/** What the main thread gives the thread (see bridge.ts). */
export interface ThreadData {
  /** `[0]` becomes 1 when a reply to a blocking call is on `syncPort`. */
  syncFlag: Int32Array;
  syncPort: MessagePort;
}

/** A message of the main thread's: `id` 0 wants no reply. */
export interface ThreadRequest {
  id: number;
  sync: boolean;
  request: Addressed;
}

/** What `hello` answers: this broker, and a directory to remove at exit (its socket's), if any. */
export interface Hello extends BrokerAddress {
  cleanup: string | null;
}

const { syncFlag, syncPort } = workerData as ThreadData;
const mainPort = parentPort as MessagePort;

/** A fresh address only this process listens on: Linux's abstract namespace, a named pipe, or a private directory. */
function brokerAddress(): [string, string | null] {
  const name = `mp-broker-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
  if (process.platform === 'win32') return [`\\\\.\\pipe\\${name}`, null];
  if (process.platform === 'linux') return [`\0${name}`, null];
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), `mp-broker-${process.pid}-`));
  return [path.join(directory, 'broker'), directory];
}

const [address, cleanup] = brokerAddress();
const authkey = crypto.randomBytes(32);
const objects = new Map<number, BrokerObject>();
let nextOid = 1;
let nextTicket = 1;
const MAIN = new Session(false);

const server = net.createServer((socket) => serveLink(socket));
const listening = new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(address, () => resolve());
});

// --- answering the main thread ---------------------------------------------------------------

function replyMessage(id: number, error: Error | null, value: unknown, lease?: number): Reply {
  if (error !== null) return { id, error: errorToWire(error) };
  return lease === undefined ? { id, value } : { id, value, lease };
}

function mainResponder(id: number, sync: boolean): Respond {
  if (id === 0) return () => {};
  return (error, value) => {
    const reply = replyMessage(id, error, value);
    afterOtherProcesses(() => {
      if (!sync) {
        mainPort.postMessage(reply);
        return;
      }
      syncPort.postMessage(reply);
      Atomics.store(syncFlag, 0, 1);
      Atomics.notify(syncFlag, 0);
    });
  };
}

/** The sockets to other processes: links out, and links in. */
const sockets = new Set<net.Socket>();

/**
 * Runs `answer` (to this process's main thread) once what this request sent
 * to other processes is in the kernel: the main thread may end the process
 * as soon as it has its answer (a child whose put() returned), and what the
 * other processes were sent (the item handed to their get()) must outlive it.
 */
function afterOtherProcesses(answer: () => void): void {
  queueMicrotask(() => {
    const busy = [...sockets].filter((socket) => socket.writableLength > 0 && !socket.destroyed);
    if (busy.length === 0) answer();
    else Promise.all(busy.map((socket) => new Promise((resolve) => socket.once('drain', resolve).once('close', resolve)))).then(answer, answer);
  });
}

mainPort.on('message', ({ id, sync, request }: ThreadRequest) => dispatch(MAIN, request, mainResponder(id, sync)));

// A bug here must not leave the main thread blocked for ever in a Sync call.
process.on('uncaughtException', (error) => {
  const reply: Reply = { id: -1, error: errorToWire(error) };
  mainPort.postMessage(reply);
  syncPort.postMessage(reply);
  Atomics.store(syncFlag, 0, 1);
  Atomics.notify(syncFlag, 0);
  process.exit(1);
});

// --- requests ---------------------------------------------------------------------------------

function dispatch(session: Session, request: Addressed, respond: Respond): void {
  try {
    const home = request.home;
    if (home !== undefined && home !== null && home.address !== address) {
      linkTo(home).request({ ...request, home: null }, respond);
      return;
    }
    handle(session, request, respond);
  } catch (error) {
    respond(error as Error);
  }
}

function register(object: BrokerObject, session: Session): number {
  const oid = nextOid++;
  objects.set(oid, object);
  session.hold(oid);
  return oid;
}

/** One holder of `oid` is gone; the last one releases it. */
function drop(oid: number): void {
  const object = objects.get(oid);
  if (object === undefined || --object.holders > 0) return;
  objects.delete(oid);
  object.release();
}

function objectOf<T extends BrokerObject>(oid: number, type: abstract new (...args: never[]) => T): T {
  const object = objects.get(oid);
  if (object instanceof type) return object;
  throw codedError('the object was closed in every process that held it', 'ERR_MP_OBJECT_GONE');
}

function handle(session: Session, request: Addressed, respond: Respond): void {
  const key = request.waiter;
  switch (request.op) {
    case 'hello':
      listening.then(() => respond(null, { address, authkey, cleanup }), respond);
      return;
    case 'queue':
      respond(null, register(new QueueObject(request.maxsize), session));
      return;
    case 'pipe':
      respond(null, makePipe(session));
      return;
    case 'listen':
      listen(session, request, respond);
      return;
    case 'connect':
      connect(session, request, respond);
      return;
    case 'accept':
      objectOf(request.oid, ListenerObject).accept(session, respond, key);
      return;
    case 'ticket': {
      const object = objectOf(request.oid, BrokerObject);
      const ticket = nextTicket++;
      object.holders++;
      object.tickets.add(ticket);
      // A handle on its way to another process: that one connects only once we listen.
      listening.then(() => respond(null, ticket), respond);
      return;
    }
    case 'attach':
      if (objects.get(request.oid)?.tickets.delete(request.ticket)) session.hold(request.oid);
      respond(null);
      return;
    case 'detach':
      if (session.unhold(request.oid)) drop(request.oid);
      respond(null);
      return;
    case 'put':
      objectOf(request.oid, QueueObject).put(session, Buffer.from(request.item), request.timeout, request.counted, respond, key);
      return;
    case 'get':
      objectOf(request.oid, QueueObject).get(session, request.timeout, respond, key);
      return;
    case 'state': {
      const queue = objectOf(request.oid, QueueObject);
      respond(null, { size: queue.size, maxsize: queue.maxsize });
      return;
    }
    case 'taskDone':
      objectOf(request.oid, QueueObject).taskDone(respond);
      return;
    case 'join':
      objectOf(request.oid, QueueObject).join(session, respond, key);
      return;
    case 'send':
      objectOf(request.oid, Endpoint).send(Buffer.from(request.frame.buffer, request.frame.byteOffset, request.frame.byteLength), respond);
      return;
    case 'recv':
      objectOf(request.oid, Endpoint).recv(session, request.maxLength, respond, key);
      return;
    case 'poll':
      objectOf(request.oid, Endpoint).poll(session, request.timeout, respond, key);
      return;
    case 'cancel':
      session.waits.get(request.waiter)?.();
      respond(null);
      return;
    case 'ack':
      session.leases.delete(request.lease);
      return;
    case 'pollAny':
      pollAny(session, request.targets, request.timeout, respond);
      return;
  }
}

/** Waiter ids of the thread's own polls: negative, apart from the main thread's. */
let nextOwnWaiter = -1;

/**
 * Answers `true` once any of `targets` (connections, here or at other
 * brokers) is ready, `false` once every one has timed out (`wait()`).
 */
function pollAny(session: Session, targets: Array<{ home: BrokerAddress | null; oid: number }>, timeout: number | null, respond: Respond): void {
  const waiters = targets.map(() => nextOwnWaiter--);
  let waiting = targets.length;
  let answered = false;
  const cancelOthers = (): void =>
    targets.forEach(({ home, oid }, i) => dispatch(session, { op: 'cancel', oid, waiter: waiters[i], home }, () => {}));
  targets.forEach(({ home, oid }, i) =>
    dispatch(session, { op: 'poll', oid, timeout, waiter: waiters[i], home }, (error, ready) => {
      if (answered) return;
      if (error === null && ready !== true && --waiting > 0) return;
      answered = true;
      if (waiting > 0) cancelOthers();
      respond(null, waiting > 0);
    }),
  );
}

function makePipe(session: Session): [number, number] {
  const first = new PipeEnd();
  const second = new PipeEnd();
  first.peer = second;
  second.peer = first;
  return [register(first, session), register(second, session)];
}

type ListenRequest = Extract<Request, { op: 'listen' }>;

function listen(session: Session, request: ListenRequest, respond: Respond): void {
  const listener = net.createServer({ pauseOnConnect: true });
  listener.once('error', respond);
  const ready = (): void => {
    listener.removeListener('error', respond);
    const bound = listener.address();
    const where = typeof bound === 'string' || bound === null ? request.address : [bound.address, bound.port];
    const object = new ListenerObject(listener, request.authkey && Buffer.from(request.authkey), register);
    respond(null, { oid: register(object, session), address: where });
  };
  if (typeof request.address === 'string') listener.listen({ path: request.address, backlog: request.backlog }, ready);
  else listener.listen({ host: request.address[0], port: request.address[1], backlog: request.backlog }, ready);
}

type ConnectRequest = Extract<Request, { op: 'connect' }>;

function connect(session: Session, request: ConnectRequest, respond: Respond): void {
  const target = request.address;
  const socket = typeof target === 'string' ? net.connect(target) : net.connect(target[1], target[0]);
  const failed = (error: Error): void => respond(error);
  socket.once('error', failed);
  socket.once('connect', () => {
    socket.removeListener('error', failed);
    const endpoint = new SocketEnd(socket);
    const handshake = request.authkey === null ? Promise.resolve() : endpoint.shakeHands(Buffer.from(request.authkey), false);
    handshake.then(() => respond(null, register(endpoint, session)), respond);
  });
}

// --- other processes' links to this broker ----------------------------------------------------------

function serveLink(socket: net.Socket): void {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
  const endpoint = new SocketEnd(socket);
  const session = new Session(true);
  const answer =
    (id: number): Respond =>
    (error, value, lease) => {
      if (!socket.destroyed) endpoint.sendBytes(encodePayload(replyMessage(id, error, value, lease)));
    };
  const serve = async (): Promise<void> => {
    await endpoint.shakeHands(authkey, true);
    for (;;) {
      const { id, request } = decodeMessage<{ id: number; request: Addressed }>(await endpoint.next(Infinity));
      dispatch(session, request, answer(id));
    }
  };
  serve().catch(() => endSession(session, endpoint));
}

/** A client process is gone (or failed the handshake): its waits end, its holds are given up. */
function endSession(session: Session, endpoint: Endpoint): void {
  endpoint.release();
  for (const object of objects.values()) object.dropSession(session);
  for (const giveBack of session.leases.values()) giveBack();
  session.leases.clear();
  for (const [oid, count] of session.holds) for (let i = 0; i < count; i++) drop(oid);
  session.holds.clear();
}

function encodePayload(message: unknown): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return (require('v8') as typeof import('v8')).serialize(message);
}

// --- this process's links to other brokers --------------------------------------------------------

/** One connection to another process's broker, carrying this process's requests in order. */
class Link {
  private readonly endpoint: SocketEnd;
  private ready = false;
  private backlog: Buffer[] = [];
  private readonly pending = new Map<number, Respond>();
  private nextId = 1;
  private failure: Error | null = null;

  constructor(private readonly home: BrokerAddress) {
    const socket = net.connect(home.address);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    this.endpoint = new SocketEnd(socket);
    socket.once('error', (error) => this.fail(error));
    socket.once('close', () => this.fail(new Error('the connection closed')));
    socket.once('connect', () => {
      this.open().catch((error: Error) => this.fail(error));
    });
  }

  request(request: Addressed, respond: Respond): void {
    if (this.failure !== null) {
      respond(this.failure);
      return;
    }
    const id = this.nextId++;
    this.pending.set(id, respond);
    const payload = encodePayload({ id, request });
    if (this.ready) this.endpoint.sendBytes(payload);
    else this.backlog.push(payload);
  }

  private async open(): Promise<void> {
    await this.endpoint.shakeHands(Buffer.from(this.home.authkey), false);
    this.ready = true;
    for (const payload of this.backlog) this.endpoint.sendBytes(payload);
    this.backlog = [];
    for (;;) {
      const { id, value, error, lease } = decodeMessage<Reply>(await this.endpoint.next(Infinity));
      // An item of a queue's: this process has it now, the owner may forget it.
      if (lease !== undefined) this.endpoint.sendBytes(encodePayload({ id: 0, request: { op: 'ack', lease } }));
      const respond = this.pending.get(id);
      this.pending.delete(id);
      respond?.(error === undefined ? null : errorFromWire(error as WireError), value);
    }
  }

  private fail(cause: Error): void {
    if (this.failure !== null) return;
    this.failure =
      cause.name === 'AuthenticationError'
        ? cause
        : codedError(`the process that owns this object has ended: its broker cannot be reached (${cause.message})`, OWNER_GONE);
    this.endpoint.release();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const respond of pending) respond(this.failure);
  }
}

const links = new Map<string, Link>();

function linkTo(home: BrokerAddress): Link {
  let link = links.get(home.address);
  if (link === undefined) {
    link = new Link(home);
    links.set(home.address, link);
  }
  return link;
}
