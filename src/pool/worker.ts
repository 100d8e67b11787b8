/**
 * What a pool worker runs, as CPython's `pool.worker()`: it connects to its
 * pool, runs the initializer, says it is ready, then runs the tasks it is
 * given one at a time and sends each result back, until it is told to stop
 * or its pool is gone (end of file on its socket: the parent died). It is the
 * target of a Process of the pool's start method: under spawn and
 * forkserver it is found by module reference, as any target.
 * @internal
 */
import { closeSync } from 'fs';
import * as net from 'net';

import { Reference, resolveCommonJs, resolveReference } from '../reference';
import { loadNative, NativePoolHub, NativePoolLink } from '../native';
import { Channel, closeInheritedHandles, decodePayload, encodeHead, encodeMessage, encodePayload, Header, NativeWire, ownPayload, splitFrame, Wire } from './channel';
import { flushLines, outputFunctions, writeWholeLines } from './output';
import { describeError } from './remote_error';

type AnyFunction = (...args: never[]) => unknown;

/** The kinds of messages (the first item of a header). */
export const MESSAGE = {
  /** worker → pool: `[HELLO, token, workerId]`, once ready. */
  HELLO: 0,
  /** pool → worker: `[TASK, taskId, functionId, kind, reference?]` + the arguments as payload (the reference the first time only). */
  TASK: 1,
  /** pool → worker: `[STOP]`: leave. */
  STOP: 2,
  /** worker → pool: `[RESULT, taskId]` + the result as payload. */
  RESULT: 3,
  /** worker → pool: `[ERROR, taskId, ErrorDescription]`. */
  ERROR: 4,
  /** worker → pool: `[INIT_ERROR, ErrorDescription]`: the initializer threw; the worker leaves. */
  INIT_ERROR: 5,
} as const;

/** How a task's payload is applied: `fn(...args)`, `items.map(fn)`, `argsList.map(args => fn(...args))`. */
export const TASK_KIND = { APPLY: 0, MAP: 1, STARMAP: 2 } as const;

/** What a worker is started with. */
export interface WorkerConfig {
  /** The pool's listening socket. */
  address: string;
  /** Proves to the pool that the connection is its worker's. */
  token: string;
  workerId: number;
  /** The initializer: the function itself under fork, a module reference otherwise. */
  initializer: AnyFunction | Reference | null;
  initargs: unknown[];
  /** Under fork: the pool's table of task functions, as it was when this worker was forked. */
  functions: readonly AnyFunction[] | null;
  /** Under fork, with the addon: `[pool's end, worker's end]` of a socket pair, read by the addon, instead of connecting to `address`. */
  socketPair?: [number, number];
  /** Under fork, with the addon: the pool's mailboxes and this worker's (tasks and replies that fit go there, not on the socket). */
  mailbox?: { hub: NativePoolHub; id: number; bytes: number; scratch?: Buffer };
}

/** The worker's read buffer: a task's message that fits is read in one go. */
const READ_BUFFER_SIZE = 64 * 1024;

let prepared = false;

/**
 * In the parent, before its first pool forks: compiles what a forked worker
 * runs (V8 compiles a function on its first call: in every worker otherwise,
 * at tens of page faults each), its private methods and Node's functions its
 * first reply calls included.
 */
export function prepareForkedWorkers(precompile: (fn: (...args: never[]) => unknown) => void): void {
  if (prepared) return;
  prepared = true;
  const functions = [poolWorker, connectWorker, apply, isPromise, encodeHead, encodeMessage, encodePayload, decodePayload, ownPayload, splitFrame];
  for (const fn of [...functions, describeError, closeInheritedHandles, ...outputFunctions(), ...TaskRunner.privateMethods()]) precompile(fn as (...args: never[]) => unknown);
  for (const prototype of [TaskRunner.prototype, NativeWire.prototype]) {
    for (const method of Object.getOwnPropertyNames(prototype)) {
      const descriptor = Object.getOwnPropertyDescriptor(prototype, method);
      if (typeof descriptor?.value === 'function') precompile(descriptor.value as (...args: never[]) => unknown);
    }
  }
  // A result that is not a number goes through v8.serialize() and Buffer#copy, which this
  // process may never have called: encoded here once, they are compiled here.
  encodePayload(null, 'a warm-up');
}

/** The worker's main function: resolves when the worker is done. */
export function poolWorker(config: WorkerConfig): Promise<void> {
  const runner = new TaskRunner(config);
  const { mailbox } = config;
  // Its own mailbox is taken from the parent's hub before the rest of the hub is let go of.
  if (mailbox !== undefined) {
    const native = loadNative() as NonNullable<ReturnType<typeof loadNative>>;
    // The pool's own scratch when it sent it: this process's copy of it, already there (see Pool's #hubScratch).
    runner.scratch = mailbox.scratch !== undefined && mailbox.scratch.length >= mailbox.bytes ? mailbox.scratch : Buffer.allocUnsafeSlow(mailbox.bytes);
    runner.link = new native.PoolLink(mailbox.hub, mailbox.id, runner.scratch, runner.receiveScratch.bind(runner));
  }
  // A forked worker has copies of the parent's pool sockets: its event loop
  // would read what is meant for the parent.
  if (config.functions !== null) closeInheritedHandles();
  writeWholeLines();
  // Bound, not a closure: a closure would be compiled in every worker.
  return new Promise<void>(connectWorker.bind(null, runner, config));
}

/** Connects the worker to its pool (its socket pair's end, or the pool's socket) and starts it; `resolve` once it leaves. */
function connectWorker(runner: TaskRunner, config: WorkerConfig, resolve: () => void): void {
  const left = (): void => {
    runner.closeLink();
    flushLines();
    resolve();
  };
  const onMessage = (header: Header, payload: Buffer): void => runner.receive(header, payload);
  const pair = config.socketPair;
  if (pair !== undefined) {
    // The pool's end of the pair is closed here, or the pool's death would never reach this one as end of file.
    closeSync(pair[0]);
    runner.channel = new NativeWire(loadNative() as NonNullable<ReturnType<typeof loadNative>>, pair[1], onMessage, left);
    void runner.start();
    return;
  }
  // One read buffer, reused: no allocation per read (a stream's 64 KiB each).
  const onread = {
    buffer: Buffer.allocUnsafe(READ_BUFFER_SIZE),
    callback: (length: number, buffer: Uint8Array): boolean => {
      channel.received(Buffer.from(buffer.buffer, buffer.byteOffset, length));
      return true;
    },
  };
  const socket = net.connect({ path: config.address, onread });
  const channel = new Channel(socket, onMessage, left);
  runner.channel = channel;
  socket.once('connect', () => void runner.start());
}

class TaskRunner {
  channel: Wire | null = null;
  /** The worker's mailbox (forked, with the addon): tasks come there; replies that fit go there. */
  link: NativePoolLink | null = null;
  /** Where the mailbox puts the task it reads. */
  scratch: Buffer | null = null;
  readonly #config: WorkerConfig;
  readonly #functions = new Map<number, AnyFunction>();
  readonly #queue: Array<[Header, Buffer]> = [];
  #busy = true; // until the initializer has run

  constructor(config: WorkerConfig) {
    this.#config = config;
  }

  async start(): Promise<void> {
    const channel = this.channel as Wire;
    try {
      const { initializer, initargs } = this.#config;
      if (initializer !== null) {
        const fn = typeof initializer === 'function' ? initializer : await resolveReference(initializer, 'initializer');
        await (fn as (...args: unknown[]) => unknown)(...initargs);
      }
    } catch (error) {
      channel.send(encodeMessage([MESSAGE.INIT_ERROR, describeError(error)]));
      if (channel instanceof Channel) channel.socket.end();
      else channel.close();
      return;
    }
    channel.send(encodeMessage([MESSAGE.HELLO, this.#config.token, this.#config.workerId]));
    this.link?.start();
    this.#busy = false;
    this.#drain();
  }

  /** What the fork-time compilation cannot reach otherwise: the private methods. */
  static privateMethods(): AnyFunction[] {
    const runner = new TaskRunner({ address: '', token: '', workerId: 0, initializer: null, initargs: [], functions: null });
    return [runner.#drain, runner.#run, runner.#succeed, runner.#fail, runner.#reply, runner.#function];
  }

  /** A task of `length` bytes read into {@link scratch} by the mailbox. */
  receiveScratch(length: number): void {
    this.receiveReused((this.scratch as Buffer).subarray(0, length));
  }

  /** A task read into reused memory (the mailbox's scratch): made its own if it has to wait. */
  receiveReused(frame: Buffer): void {
    const [header, payload] = splitFrame(this.#busy ? Buffer.from(frame) : frame);
    this.receive(header, ownPayload(payload));
  }

  receive(header: Header, payload: Buffer): void {
    if (header[0] === MESSAGE.STOP) {
      this.closeLink();
      this.channel?.close();
      return;
    }
    this.#queue.push([header, payload]);
    if (!this.#busy) this.#drain();
  }

  /** Runs the queued tasks; one that returns a Promise is awaited before the next. */
  #drain(): void {
    while (this.#queue.length > 0) {
      const [header, payload] = this.#queue.shift() as [Header, Buffer];
      const pending = this.#run(header, payload);
      if (pending !== undefined) {
        this.#busy = true;
        void pending.then(() => {
          this.#busy = false;
          this.#drain();
        });
        return;
      }
    }
  }

  /** Runs one task and sends its outcome; a Promise when it has not completed yet. */
  #run(header: Header, payload: Buffer): Promise<void> | undefined {
    const taskId = header[1] as number;
    let outcome: unknown;
    try {
      const fn = this.#function(header[2] as number, (header[4] as Reference | undefined) ?? null);
      const args = decodePayload(payload) as unknown[];
      const kind = header[3] as number;
      outcome = typeof fn === 'function' ? apply(fn, kind, args) : fn.then((f) => apply(f, kind, args));
    } catch (error) {
      this.#fail(taskId, error);
      return undefined;
    }
    if (!isPromise(outcome)) {
      this.#succeed(taskId, outcome);
      return undefined;
    }
    return Promise.resolve(outcome).then(
      (value) => this.#succeed(taskId, value),
      (error: unknown) => this.#fail(taskId, error),
    );
  }

  #succeed(taskId: number, value: unknown): void {
    flushLines();
    let payload: Buffer;
    try {
      payload = encodePayload(value, 'the result', true); // sent at once
    } catch (error) {
      this.#fail(taskId, error);
      return;
    }
    this.#reply([MESSAGE.RESULT, taskId], payload);
  }

  #fail(taskId: number, error: unknown): void {
    flushLines();
    this.#reply([MESSAGE.ERROR, taskId, describeError(error)]);
  }

  closeLink(): void {
    this.link?.close();
    this.link = null;
  }

  /** Sends a task's outcome: in the mailbox when it fits, else on the socket. */
  #reply(header: Header, payload: Buffer | null = null): void {
    if (this.link?.reply(encodeHead(header), payload ?? undefined) === true) return;
    this.channel?.send(encodeMessage(header, payload));
  }

  /** The task function `id`: from the forked table, or loaded by `reference` (once). */
  #function(id: number, reference: Reference | null): AnyFunction | Promise<AnyFunction> {
    const known = this.#functions.get(id) ?? this.#config.functions?.[id];
    if (known !== undefined) return known;
    if (reference === null) throw new Error(`pool worker: task function ${id} is unknown here`);
    if (reference.kind === 'commonjs') {
      const fn = resolveCommonJs(reference, 'the task function');
      this.#functions.set(id, fn);
      return fn;
    }
    return resolveReference(reference, 'the task function').then((fn) => {
      this.#functions.set(id, fn);
      return fn;
    });
  }
}

function isPromise(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** Applies `fn` to a task's arguments; a Promise when some call returned one (the calls of a chunk run one after another). */
function apply(fn: AnyFunction, kind: number, args: unknown[]): unknown {
  const call = fn as (...args: unknown[]) => unknown;
  if (kind === TASK_KIND.APPLY) return call(...args);
  const results = new Array<unknown>(args.length);
  const spread = kind === TASK_KIND.STARMAP;
  for (let i = 0; i < args.length; i++) {
    const result = spread ? call(...(args[i] as unknown[])) : call(args[i]);
    if (isPromise(result)) return finishAsync(call, spread, args, results, i, result);
    results[i] = result;
  }
  return results;
}

async function finishAsync(
  call: (...args: unknown[]) => unknown,
  spread: boolean,
  args: unknown[],
  results: unknown[],
  from: number,
  first: PromiseLike<unknown>,
): Promise<unknown[]> {
  results[from] = await first;
  for (let i = from + 1; i < args.length; i++) results[i] = await (spread ? call(...(args[i] as unknown[])) : call(args[i]));
  return results;
}
