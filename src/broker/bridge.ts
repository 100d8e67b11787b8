/**
 * The main thread's side of the I/O thread (thread.ts) of a process without
 * the addon: requests go to the thread, which answers them from its broker
 * or asks another process's. An async call resolves from the thread's reply
 * on the event loop; a `Sync` twin blocks in `Atomics.wait` until the thread
 * has put its reply on a port of its own, then takes it with
 * `receiveMessageOnPort`: blocking without the addon, and without a busy loop.
 *
 * The thread starts on first use and lives as long as the process; it keeps
 * the process alive only while an async call waits for it.
 * @internal
 */
import * as fs from 'fs';
import * as path from 'path';
import type * as WorkerThreads from 'worker_threads';

import type { Hello, ThreadData, ThreadRequest } from './thread';
import { Addressed, BrokerAddress, errorFromWire, OWNER_GONE, Reply } from './wire';

/**
 * The broker new queues and pipes are made in, as children of the spawn start
 * method inherit it: the first process of the tree that made one. A child's
 * queue then lives as long as that process, not as its maker: a child may
 * put an item or send a message and end, as with Python's kernel pipes.
 * JSON of `{ address, authkey }` (hex); the environment of a process is
 * readable only by its user.
 */
export const BROKER_ENV = 'NODE_MULTIPROCESSING_BROKER';

/** A request as a handle makes it: to its broker (`home`), or this process's (`null`). */
export type HandleRequest = Addressed;

function workerThreads(): typeof WorkerThreads {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('worker_threads') as typeof WorkerThreads;
}

/** Uint8Arrays arrive from the thread where Buffers were sent: Buffers again, without a copy. */
function revive(value: unknown): unknown {
  return value instanceof Uint8Array && !Buffer.isBuffer(value) ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : value;
}

class Bridge {
  private readonly worker: WorkerThreads.Worker;
  private readonly syncFlag = new Int32Array(new SharedArrayBuffer(4));
  private readonly syncPort: WorkerThreads.MessagePort;
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  private nextId = 1;
  private nextWaiter = 1;
  private failure: Error | null = null;
  /** This process's broker, once it listens. */
  readonly self: BrokerAddress;

  constructor() {
    const { Worker, MessageChannel } = workerThreads();
    const { port1, port2 } = new MessageChannel();
    this.syncPort = port1;
    const data: ThreadData = { syncFlag: this.syncFlag, syncPort: port2 };
    this.worker = new Worker(path.join(__dirname, 'thread.js'), { workerData: data, transferList: [port2], stdout: false, stderr: false });
    this.worker.on('message', (reply: Reply) => this.settle(reply));
    this.worker.on('error', (error) => this.fail(error));
    this.worker.on('exit', (code) => this.fail(new Error(`the I/O thread of queues and connections exited with code ${code}`)));
    // After the listeners: adding a 'message' listener refs the worker again.
    this.worker.unref();
    const hello = this.callSync<Hello>({ op: 'hello' });
    this.self = { address: hello.address, authkey: Buffer.from(hello.authkey) };
    process.env[BROKER_ENV] ??= JSON.stringify({ address: hello.address, authkey: this.self.authkey.toString('hex') });
    if (hello.cleanup !== null) {
      const directory = hello.cleanup;
      process.once('exit', () => fs.rmSync(directory, { recursive: true, force: true }));
    }
  }

  /**
   * Makes a queue or pipe (`request`: `queue` or `pipe`) in the broker of
   * {@link BROKER_ENV}, or here when there is none or it cannot be reached;
   * answers its broker (`null`: this process's) and the answer.
   */
  create<T>(request: HandleRequest): [BrokerAddress | null, T] {
    const inherited = inheritedBroker();
    if (inherited !== null && !this.isSelf(inherited)) {
      try {
        return [inherited, this.callSync<T>({ ...request, home: inherited })];
      } catch (error) {
        // Gone, or not the broker the environment says (another's key): made here instead.
        if ((error as { code?: unknown }).code !== OWNER_GONE && (error as Error).name !== 'AuthenticationError') throw error;
      }
    }
    return [null, this.callSync<T>(request)];
  }

  /** Whether `home` is this process's broker. */
  isSelf(home: BrokerAddress): boolean {
    return home.address === this.self.address;
  }

  /** A fresh id for a wait that `cancel` may end. */
  waiterId(): number {
    return this.nextWaiter++;
  }

  call<T>(request: HandleRequest): Promise<T> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      if (this.pending.size === 1) this.worker.ref();
      this.send({ id, sync: false, request });
    });
  }

  callSync<T>(request: HandleRequest): T {
    if (this.failure !== null) throw this.failure;
    const id = this.nextId++;
    Atomics.store(this.syncFlag, 0, 0);
    this.send({ id, sync: true, request });
    for (;;) {
      Atomics.wait(this.syncFlag, 0, 0);
      const message = workerThreads().receiveMessageOnPort(this.syncPort);
      if (message === undefined) {
        Atomics.store(this.syncFlag, 0, 0);
        continue;
      }
      const reply = message.message as Reply;
      if (reply.error !== undefined) throw errorFromWire(reply.error);
      return revive(reply.value) as T;
    }
  }

  /** A request whose answer nobody waits for (a close, an attach): after those sent before it. */
  post(request: HandleRequest): void {
    if (this.failure === null) this.send({ id: 0, sync: false, request });
  }

  private send(message: ThreadRequest): void {
    this.worker.postMessage(message);
  }

  private settle(reply: Reply): void {
    if (reply.id === -1) {
      this.fail(errorFromWire(reply.error as NonNullable<Reply['error']>));
      return;
    }
    const waiting = this.pending.get(reply.id);
    if (waiting === undefined) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if (reply.error !== undefined) waiting.reject(errorFromWire(reply.error));
    else waiting.resolve(revive(reply.value));
  }

  private fail(error: Error): void {
    if (this.failure !== null) return;
    this.failure = error;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const waiting of pending) waiting.reject(error);
  }
}

/** The broker {@link BROKER_ENV} names, if it names one. */
function inheritedBroker(): BrokerAddress | null {
  const text = process.env[BROKER_ENV];
  if (text === undefined) return null;
  try {
    const { address, authkey } = JSON.parse(text) as { address: unknown; authkey: unknown };
    if (typeof address === 'string' && typeof authkey === 'string') return { address, authkey: Buffer.from(authkey, 'hex') };
  } catch {
    // not ours: ignored
  }
  return null;
}

let bridge: Bridge | undefined;

/** This process's bridge to its I/O thread, started on first use. */
export function theBridge(): Bridge {
  bridge ??= new Bridge();
  return bridge;
}

/** Whether `home` is this process's own broker (false while none was started: then it cannot be). */
export function isOwnBroker(home: BrokerAddress): boolean {
  return bridge !== undefined && bridge.isSelf(home);
}
