/**
 * Queues between processes, as CPython's `multiprocessing.queues`:
 * {@link Queue}, {@link SimpleQueue} and {@link JoinableQueue}.
 *
 * A queue is a pipe (its capacity raised to 1 MiB where the system allows)
 * carrying framed messages, a lock per direction and, for `Queue`, a
 * semaphore counting free places, as Python's. What differs is the feeder:
 * Python's `put()` hands the object to a thread that writes it later, so an
 * item whose `put()` returned is lost if the producer exits first. Here
 * `put()` writes the whole message into the pipe before it returns (or
 * resolves): once it has, the item is in the kernel and is delivered even if
 * the producer is killed the next instant. A consumer waits for the pipe to
 * become readable without holding any lock, then takes the read lock and
 * reads exactly one message, never more: a consumer killed while it waits
 * takes nothing with it.
 *
 * The price: a `put()` whose message does not fit in the pipe (1 MiB of
 * messages not yet taken) waits for a consumer, blocking the thread. A
 * process that puts more than that before it gets waits for ever, as it
 * would with Python's `Queue(maxsize)`.
 * @packageDocumentation
 */
import { forkGeneration } from './at_fork';
import { _rebuildDescriptor, _reduceDescriptor, DescriptorState } from './connection';
import { Empty, Full } from './errors';
import type { NativeBinding, NativeChannel, NativeFdWatch } from './native';
import { loadNative, requireNative } from './native';
import { dumps, loads, registerReducer } from './reduction';
import { closedError, limitOf } from './queues/options';
import { BoundedSemaphore, Condition, Lock, Semaphore } from './synchronize';
import { validateInteger } from './validate';

/** The capacity asked of a queue's pipe. */
const PIPE_CAPACITY = 1024 * 1024;
/** The largest count of a semaphore: a queue without maxsize. */
const UNBOUNDED = 0x7fffffff;

function native(): NativeBinding {
  return requireNative('Queue');
}

/** Options of `put` and `get`, as Python's `block=True, timeout=None`. */
export interface QueueOptions {
  /** `false`: answer at once (`mp.Full` / `mp.Empty` when it cannot). Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; `undefined`/`null`: no limit. Ignored when `block` is `false`. */
  timeout?: number | null;
}

/** Milliseconds left until `deadline` (null: no limit), never negative. */
function left(deadline: number | null): number | null {
  return deadline === null ? null : Math.max(0, deadline - Date.now());
}

/** The queues of a process without the addon (see queues/portable.ts), loaded on first use. */
function portable(): typeof import('./queues/portable') {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('./queues/portable') as typeof import('./queues/portable');
}

/**
 * The pipe of a queue in this process: its two ends, the locks that make
 * writers and readers take turns, and a watch for readers that wait.
 */
class QueuePipe {
  private reader: NativeChannel | null;
  private writer: NativeChannel | null;
  private watch: NativeFdWatch | null = null;
  private waiting: Array<() => void> = [];
  private generation = forkGeneration();

  constructor(
    readFd: number,
    writeFd: number,
    readonly rlock: Lock,
    readonly wlock: Lock,
  ) {
    const binding = native();
    this.reader = new binding.Channel(readFd, undefined, true);
    this.writer = new binding.Channel(writeFd);
  }

  static create(): QueuePipe {
    const [readFd, writeFd] = native().streamPipe(PIPE_CAPACITY);
    return new QueuePipe(readFd, writeFd, new Lock(), new Lock());
  }

  get closed(): boolean {
    return this.reader === null;
  }

  /** Writes one whole message (the write lock held by the caller). */
  write(bytes: Uint8Array): void {
    this.open().writer.send(bytes);
  }

  /** One whole message if one is there now (the read lock held by the caller). */
  readNow(): Buffer | null {
    const frame = this.open().reader.recvSync(0);
    if (frame === undefined) throw closedError(); // every writer gone: only after close()
    return frame;
  }

  /** Whether a message is there (without taking it). */
  readable(timeoutMs: number | null): boolean {
    const { reader } = this.open();
    return reader.poll(timeoutMs ?? -1);
  }

  /** Resolves once the pipe is readable (or the queue closed here); no lock is held meanwhile. */
  whenReadable(): Promise<void> {
    const { reader } = this.open();
    if (this.generation !== forkGeneration()) {
      // A forked child: the parent's watch and waiters are the parent's.
      this.generation = forkGeneration();
      this.watch = null;
      this.waiting = [];
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (this.watch === null) {
        this.watch = new (native().FdWatch)(reader.fd, 1, () => this.wake());
      }
      this.watch.start();
    });
  }

  close(): void {
    if (this.reader === null) return;
    this.reader.close();
    this.writer?.close();
    this.reader = null;
    this.writer = null;
    this.watch?.close();
    this.watch = null;
    this.wake();
  }

  reduce(): PipeState {
    const { reader, writer } = this.open();
    return {
      reader: _reduceDescriptor(reader.fd),
      writer: _reduceDescriptor(writer.fd),
      locks: dumps([this.rlock, this.wlock], 'the locks of a queue'),
    };
  }

  static rebuild(state: PipeState): QueuePipe {
    const [rlock, wlock] = loads(state.locks) as [Lock, Lock];
    return new QueuePipe(_rebuildDescriptor(state.reader), _rebuildDescriptor(state.writer), rlock, wlock);
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    this.watch?.stop();
    for (const resolve of waiting) resolve();
  }

  private open(): { reader: NativeChannel; writer: NativeChannel } {
    if (this.reader === null || this.writer === null) throw closedError();
    return { reader: this.reader, writer: this.writer };
  }
}

interface PipeState {
  reader: DescriptorState;
  writer: DescriptorState;
  locks: Buffer;
}

/** One message if there is one now, the read lock held by the caller (and released here). */
function readAndRelease(pipe: QueuePipe): Buffer | null {
  try {
    return pipe.readNow();
  } finally {
    pipe.rlock.release();
  }
}

/** One message if there is one now and the read lock is free (no waiting at all). */
function takeNow(pipe: QueuePipe): Buffer | null {
  return pipe.rlock.acquireSync({ block: false }) ? readAndRelease(pipe) : null;
}

/** Takes one message, waiting on the event loop: `undefined` once the time is up. */
async function take(pipe: QueuePipe, deadline: number | null): Promise<Buffer | undefined> {
  const now = takeNow(pipe);
  if (now !== null) return now;
  for (;;) {
    if (!pipe.readable(0)) {
      if (deadline !== null && Date.now() >= deadline) return undefined;
      await racingTimeout(pipe.whenReadable(), left(deadline));
      if (pipe.closed) throw closedError();
      continue;
    }
    if (!(await pipe.rlock.acquire({ timeout: left(deadline) }))) return undefined;
    const frame = readAndRelease(pipe);
    if (frame !== null) return frame;
  }
}

/** {@link take}, blocking the thread. */
function takeSync(pipe: QueuePipe, deadline: number | null): Buffer | undefined {
  const now = takeNow(pipe);
  if (now !== null) return now;
  for (;;) {
    if (!pipe.readable(left(deadline))) return undefined;
    if (!pipe.rlock.acquireSync({ timeout: left(deadline) })) return undefined;
    const frame = readAndRelease(pipe);
    if (frame !== null) return frame;
  }
}

/** `promise`, or a resolution once `ms` have passed (null: never). */
function racingTimeout(promise: Promise<void>, ms: number | null): Promise<void> {
  if (ms === null) return promise;
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer));
}

function deadlineOf(limit: number | null): number | null {
  return limit === null ? null : Date.now() + limit;
}

/**
 * A queue for any number of producer and consumer processes, as Python's
 * `multiprocessing.Queue`. Items travel as `v8.serialize` (structured clone,
 * and the library's shared objects arrive usable); each is delivered exactly
 * once, in the order each producer put them. An item whose `put()` resolved
 * (or whose `putSync()`/`putNowait()` returned) is in the queue, whatever
 * happens to its producer next.
 *
 * @example
 * ```ts
 * const q = new mp.Queue<string>();
 * const p = new mp.Process({ target: (queue: mp.Queue<string>) => queue.putSync('hello'), args: [q] });
 * p.start();
 * console.log(await q.get()); // 'hello'
 * await p.join();
 * ```
 */
export class Queue<T = unknown> {
  // Declared only: a queue made without the addon (queues/portable.ts) has none of these.
  /** @internal */ declare _pipe: QueuePipe;
  /** @internal Free places (maxsize, or unbounded). */ declare _places: Semaphore;
  /** @internal */ readonly _maxsize: number;

  /** A queue of at most `maxsize` items; 0 (the default) or less: no limit. */
  constructor(maxsize = 0) {
    validateInteger(maxsize, 'maxsize', -(2 ** 31), UNBOUNDED);
    this._maxsize = maxsize <= 0 ? UNBOUNDED : maxsize;
    const adopted = adoption;
    adoption = undefined;
    if (adopted === undefined && loadNative() === null) return portable().newQueue(new.target, Math.max(maxsize, 0));
    this._pipe = adopted?.pipe ?? QueuePipe.create();
    this._places = adopted?.places ?? new BoundedSemaphore(this._maxsize)._signalling(); // a getter releases what a putter took
  }

  /**
   * Puts `obj` in the queue; resolves once it is there. With a `maxsize`,
   * waits for a free place (`mp.Full` after `timeout`, or at once without
   * `block`). A value that cannot be sent gets a TypeError naming it.
   */
  async put(obj: T, options?: QueueOptions): Promise<void> {
    const limit = limitOf(options);
    const bytes = dumps(obj, 'obj');
    this.open();
    if (!(await this._places.acquire({ timeout: limit }))) throw new Full('the queue is full');
    await this._pipe.wlock.acquire();
    this.write(bytes);
  }

  /** {@link put}, blocking the thread. */
  putSync(obj: T, options?: QueueOptions): void {
    const limit = limitOf(options);
    const bytes = dumps(obj, 'obj');
    this.open();
    if (!this._places.acquireSync({ timeout: limit })) throw new Full('the queue is full');
    this._pipe.wlock.acquireSync();
    this.write(bytes);
  }

  /** `putSync(obj, { block: false })`: `mp.Full` at once when there is no free place. */
  putNowait(obj: T): void {
    this.putSync(obj, { block: false });
  }

  /**
   * The next item, waiting on the event loop for one (`mp.Empty` after
   * `timeout`, or at once without `block`).
   */
  async get(options?: QueueOptions): Promise<T> {
    const deadline = deadlineOf(limitOf(options));
    const frame = await take(this.open(), deadline);
    if (frame === undefined) throw new Empty('the queue is empty');
    return this.taken(frame);
  }

  /** {@link get}, blocking the thread. */
  getSync(options?: QueueOptions): T {
    const deadline = deadlineOf(limitOf(options));
    const frame = takeSync(this.open(), deadline);
    if (frame === undefined) throw new Empty('the queue is empty');
    return this.taken(frame);
  }

  /** `getSync({ block: false })`: `mp.Empty` at once when there is no item. */
  getNowait(): T {
    return this.getSync({ block: false });
  }

  /** How many items are in the queue (put and not yet got), as Python's `qsize()`. */
  qsize(): number {
    this.open();
    return this._maxsize - this._places.getValue();
  }

  /** Whether no item is there to get now. */
  empty(): boolean {
    return !this.open().readable(0);
  }

  /** Whether every place is taken (never, without a maxsize). */
  full(): boolean {
    this.open();
    return this._places.getValue() === 0;
  }

  /**
   * This process is done with the queue: its descriptors are closed and any
   * use here throws. Items put are already in the queue (no feeder to flush);
   * other processes keep using it.
   */
  close(): void {
    this._pipe.close();
  }

  /** For porting: there is no feeder thread to wait for, every put is complete. Resolves at once. */
  joinThread(): Promise<void> {
    return Promise.resolve();
  }

  /** For porting: does nothing (there is no feeder thread). */
  cancelJoinThread(): void {}

  /** Whether {@link close} was called in this process. */
  get closed(): boolean {
    return this._pipe.closed;
  }

  /** @internal */
  protected open(): QueuePipe {
    if (this._pipe.closed) throw closedError();
    return this._pipe;
  }

  /** Writes a message with the write lock held, then releases it (and the place, if the write fails). */
  private write(bytes: Uint8Array): void {
    try {
      this._pipe.write(bytes);
    } catch (error) {
      this._places.release();
      throw error;
    } finally {
      this._pipe.wlock.release();
    }
  }

  private taken(frame: Buffer): T {
    this._places.release();
    return loads(frame) as T;
  }
}

/**
 * A queue without size or count, as Python's `multiprocessing.SimpleQueue`:
 * `put` writes the item before it returns; `get` waits for one.
 */
export class SimpleQueue<T = unknown> {
  /** @internal */ declare _pipe: QueuePipe;

  constructor() {
    const adopted = adoption;
    adoption = undefined;
    if (adopted === undefined && loadNative() === null) return portable().newSimpleQueue(new.target);
    this._pipe = adopted?.pipe ?? QueuePipe.create();
  }

  /** Puts `obj` in the queue (it is there when this returns). */
  put(obj: T): void {
    const bytes = dumps(obj, 'obj');
    const pipe = this.open();
    pipe.wlock.acquireSync();
    try {
      pipe.write(bytes);
    } finally {
      pipe.wlock.release();
    }
  }

  /** The next item, waiting on the event loop. */
  async get(): Promise<T> {
    return loads((await take(this.open(), null)) as Buffer) as T;
  }

  /** The next item, blocking the thread. */
  getSync(): T {
    return loads(takeSync(this.open(), null) as Buffer) as T;
  }

  /** Whether no item is there to get now. */
  empty(): boolean {
    return !this.open().readable(0);
  }

  /** Closes this process's descriptors of the queue; any use here throws afterwards. */
  close(): void {
    this._pipe.close();
  }

  /** Whether {@link close} was called in this process. */
  get closed(): boolean {
    return this._pipe.closed;
  }

  private open(): QueuePipe {
    if (this._pipe.closed) throw closedError();
    return this._pipe;
  }
}

/**
 * A {@link Queue} that counts unfinished tasks, as Python's
 * `multiprocessing.JoinableQueue`: each `put()` adds one, each `taskDone()`
 * (called by a consumer once it has processed an item) removes one, and
 * `join()` waits until none is left.
 */
export class JoinableQueue<T = unknown> extends Queue<T> {
  /** @internal */ declare _unfinished: Semaphore;
  /** @internal */ declare _condition: Condition;

  constructor(maxsize = 0) {
    const adopted = adoption;
    super(maxsize);
    if (this._pipe === undefined) return; // made without the addon, by queues/portable.ts
    this._unfinished = adopted?.unfinished ?? new Semaphore(0);
    this._condition = adopted?.condition ?? new Condition();
  }

  // Counted before the item is written: a consumer may take it and call
  // taskDone() at once.
  override async put(obj: T, options?: QueueOptions): Promise<void> {
    this.countTask();
    try {
      await super.put(obj, options);
    } catch (error) {
      this._unfinished.acquireSync({ block: false });
      throw error;
    }
  }

  override putSync(obj: T, options?: QueueOptions): void {
    this.countTask();
    try {
      super.putSync(obj, options);
    } catch (error) {
      this._unfinished.acquireSync({ block: false });
      throw error;
    }
  }

  /** One item got earlier is processed. Throws when called more often than items were put. */
  taskDone(): void {
    this.open();
    this._condition.acquireSync();
    try {
      if (!this._unfinished.acquireSync({ block: false })) throw new Error('taskDone() called more times than there were items put');
      if (this._unfinished.getValue() === 0) this._condition.notifyAll();
    } finally {
      this._condition.release();
    }
  }

  /** Resolves once every item put has been processed (`taskDone()` called for it). */
  async join(): Promise<void> {
    await this._condition.acquire();
    try {
      while (this._unfinished.getValue() !== 0) await this._condition.wait();
    } finally {
      this._condition.release();
    }
  }

  /** {@link join}, blocking the thread. */
  joinSync(): void {
    this._condition.acquireSync();
    try {
      while (this._unfinished.getValue() !== 0) this._condition.waitSync();
    } finally {
      this._condition.release();
    }
  }

  private countTask(): void {
    this.open();
    this._unfinished.release();
  }
}

// --- crossing to other processes ---------------------------------------------------------

/** What a rebuilt queue takes over instead of making its own (see the constructors). */
interface Adoption {
  pipe: QueuePipe;
  places?: Semaphore;
  unfinished?: Semaphore;
  condition?: Condition;
}
let adoption: Adoption | undefined;

function adopt<Q>(adopted: Adoption, make: () => Q): Q {
  adoption = adopted;
  try {
    return make();
  } finally {
    adoption = undefined;
  }
}

interface QueueState {
  pipe: PipeState;
  maxsize: number;
  shared: Buffer;
}

registerReducer(Queue, {
  kind: 'Queue',
  reduce: (queue: Queue): QueueState => {
    const joinable = queue instanceof JoinableQueue;
    const shared = joinable ? [queue._places, queue._unfinished, queue._condition] : [queue._places];
    return { pipe: queue._pipe.reduce(), maxsize: queue._maxsize, shared: dumps(shared, 'the state of a queue') };
  },
  rebuild: (state: QueueState): Queue => {
    const [places, unfinished, condition] = loads(state.shared) as [Semaphore, Semaphore?, Condition?];
    const pipe = QueuePipe.rebuild(state.pipe);
    const maxsize = state.maxsize === UNBOUNDED ? 0 : state.maxsize;
    if (unfinished !== undefined) return adopt({ pipe, places, unfinished, condition }, () => new JoinableQueue(maxsize));
    return adopt({ pipe, places }, () => new Queue(maxsize));
  },
});

registerReducer(SimpleQueue, {
  kind: 'SimpleQueue',
  reduce: (queue: SimpleQueue): PipeState => queue._pipe.reduce(),
  rebuild: (state: PipeState): SimpleQueue => adopt({ pipe: QueuePipe.rebuild(state) }, () => new SimpleQueue()),
});
