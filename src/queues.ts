/**
 * Queues between processes, as CPython's `multiprocessing.queues`:
 * {@link Queue}, {@link SimpleQueue} and {@link JoinableQueue}.
 *
 * A queue is a pipe (its capacity raised to 1 MiB where the system allows)
 * carrying framed messages, a few words of shared memory through which its
 * processes take turns (see QueuePipe) and, for `Queue`, a semaphore
 * counting free places, as Python's. What differs is the feeder: Python's
 * `put()` hands the object to a thread that writes it later, so an item whose
 * `put()` returned is lost if the producer exits first. Here `put()` writes
 * the whole message into the pipe before it returns (or resolves): once it
 * has, the item is in the kernel and is delivered even if the producer is
 * killed the next instant. A consumer waits for the pipe to become readable
 * holding nothing, then takes the turn and reads exactly one message, never
 * more: a consumer killed while it waits takes nothing with it.
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
import { closedError, limitOf } from './queues/options';
import { dumps, JSON_TAG, loads, registerReducer } from './reduction';
import { RawArray } from './sharedctypes';
import { BoundedSemaphore, Condition, Lock, Semaphore } from './synchronize';
import { validateInteger } from './validate';

/** The capacity asked of a queue's pipe. */
const PIPE_CAPACITY = 1024 * 1024;
/** The largest count of a semaphore: a queue without maxsize. */
const UNBOUNDED = 0x7fffffff;

// The words a queue's processes share (an Int32Array over shared memory).
/** Producers inside a lock-free write of a small frame. */
const ACTIVE = 0;
/** 1 while a producer (holding the write lock) writes a frame too large to be written whole. */
const BIG = 1;
/** The thread id of the consumer whose turn it is to read; 0: nobody's. */
const TURN = 2;
/** Consumers asleep until the turn is free. */
const SLEEPERS = 3;
/** The readers' progress through the frame being read (native/connection.cc, `track`): 5 words. */
const PROGRESS = 4;
const WORDS = PROGRESS + 5;
/** How long a consumer waiting for the turn sleeps before it checks that the holder still lives. */
const TURN_CHECK_MS = 100;
/** How long a large write waits for the small writes in flight before it checks again. */
const DRAIN_CHECK_MS = 10;

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

let tidGeneration = -1;
let tid = 0;

/** This thread's id, asked of the kernel once per fork generation. */
function ownTid(): number {
  if (tidGeneration !== forkGeneration()) {
    tid = native().gettid();
    tidGeneration = forkGeneration();
  }
  return tid;
}

/** Waits (on a thread of the addon's) until `words[index]` may differ from `expected`, `ms` at most. */
function futexWaitAsync(words: Int32Array, index: number, expected: number, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    new (native().FutexWaiter)(words, index, expected, ms, (error) => (error === null ? resolve() : reject(error)));
  });
}

/**
 * The pipe of a queue in this process: its two ends, the shared words that
 * make writers and readers take turns, and a watch for readers that wait.
 *
 * Writers: a frame small enough for the pipe to write whole (`atomicWriteSize`
 * bytes, PIPE_BUF: 4 KiB on Linux) needs no lock, as the pipe never mixes it
 * with another write. A larger one is written in pieces, so it takes the write
 * lock and raises BIG, then waits for the small writes in flight (ACTIVE) to
 * end; small writers that see BIG take the lock too.
 *
 * Readers take the turn (TURN: the thread id of the reader), read exactly
 * one frame and give it back. A reader that finds the turn held by a thread
 * that has ended takes it over, and with it the frame that thread had begun
 * (PROGRESS): a consumer killed in `get()` leaves the stream in step.
 */
class QueuePipe {
  private reader: NativeChannel | null;
  private writer: NativeChannel | null;
  private watch: NativeFdWatch | null = null;
  private waiting: Array<() => void> = [];
  private generation = forkGeneration();
  /** Called when a reader that died mid-message took that message with it. */
  onLost: () => void = () => {};

  constructor(
    readFd: number,
    writeFd: number,
    readonly wlock: Lock,
    readonly words: Int32Array,
  ) {
    const binding = native();
    this.reader = new binding.Channel(readFd, undefined, true, JSON_TAG);
    this.reader.track(words, PROGRESS);
    this.writer = new binding.Channel(writeFd);
  }

  static create(): QueuePipe {
    const [readFd, writeFd] = native().streamPipe(PIPE_CAPACITY);
    return new QueuePipe(readFd, writeFd, new Lock(), RawArray('i', WORDS));
  }

  get closed(): boolean {
    return this.reader === null;
  }

  /** Writes one whole message: it is in the pipe when this returns. */
  write(bytes: Uint8Array): void {
    const writer = this.openWriter();
    if (bytes.length + 4 <= native().atomicWriteSize) {
      for (;;) {
        const sent = this.trySendSmall(writer, bytes);
        if (sent === true) return;
        if (sent === 'big') break;
        native().pollFds([writer.fd], 2, -1); // the pipe is full: wait for room, counted nowhere
      }
    }
    this.sendLocked(writer, bytes);
  }

  /** A small frame without lock: true once written, false when the pipe is full, 'big' while a large write is on. */
  private trySendSmall(writer: NativeChannel, bytes: Uint8Array): boolean | 'big' {
    const words = this.words;
    Atomics.add(words, ACTIVE, 1);
    let sent: boolean | 'big' = 'big';
    try {
      if (Atomics.load(words, BIG) === 0) sent = writer.trySend(bytes);
    } finally {
      Atomics.sub(words, ACTIVE, 1);
      if (Atomics.load(words, BIG) !== 0) native().futexWake(words, ACTIVE, 1);
    }
    return sent;
  }

  /** A frame written with the write lock held and BIG raised, once no small write is in flight. */
  private sendLocked(writer: NativeChannel, bytes: Uint8Array): void {
    const words = this.words;
    this.wlock.acquireSync();
    try {
      Atomics.store(words, BIG, 1);
      for (let active = Atomics.load(words, ACTIVE); active !== 0; active = Atomics.load(words, ACTIVE)) {
        native().futexWait(words, ACTIVE, active, DRAIN_CHECK_MS);
      }
      writer.send(bytes);
    } finally {
      Atomics.store(words, BIG, 0);
      this.wlock.release();
    }
  }

  /** One whole message if one is there now and the turn is free (or its holder dead); no waiting. */
  takeNow(): Frame | null {
    return this.tryTurn(false) ? this.readAndGiveTurn() : null;
  }

  /** One whole message if one is there now, waiting up to `deadline` for the turn; `undefined`: time is up. */
  takeSync(deadline: number | null): Frame | null | undefined {
    while (!this.tryTurn(true)) {
      const holder = Atomics.load(this.words, TURN);
      if (holder === 0) continue;
      const ms = left(deadline);
      if (ms === 0) return undefined;
      this.sleeping(() => native().futexWait(this.words, TURN, holder, Math.min(ms ?? TURN_CHECK_MS, TURN_CHECK_MS)));
    }
    return this.readAndGiveTurn();
  }

  /** {@link takeSync}, waiting for the turn on the event loop. */
  async take(deadline: number | null): Promise<Frame | null | undefined> {
    while (!this.tryTurn(true)) {
      const holder = Atomics.load(this.words, TURN);
      if (holder === 0) continue;
      const ms = left(deadline);
      if (ms === 0) return undefined;
      Atomics.add(this.words, SLEEPERS, 1);
      try {
        await futexWaitAsync(this.words, TURN, holder, Math.min(ms ?? TURN_CHECK_MS, TURN_CHECK_MS));
      } finally {
        Atomics.sub(this.words, SLEEPERS, 1);
      }
      if (this.closed) throw closedError();
    }
    return this.readAndGiveTurn();
  }

  /** Whether a message is there (without taking it). */
  readable(timeoutMs: number | null): boolean {
    const reader = this.openReader();
    return reader.poll(timeoutMs ?? -1);
  }

  /** Resolves once the pipe is readable (or the queue closed here); no turn is held meanwhile. */
  whenReadable(): Promise<void> {
    const reader = this.openReader();
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
    const reader = this.openReader();
    const writer = this.openWriter();
    return {
      reader: _reduceDescriptor(reader.fd),
      writer: _reduceDescriptor(writer.fd),
      shared: dumps([this.wlock, this.words], 'the state of a queue'),
    };
  }

  static rebuild(state: PipeState): QueuePipe {
    const [wlock, words] = loads(state.shared) as [Lock, Int32Array];
    return new QueuePipe(_rebuildDescriptor(state.reader), _rebuildDescriptor(state.writer), wlock, words);
  }

  /**
   * Takes the turn if it is free. With `rescue`, also when its holder has
   * ended: the frame it had begun is taken over (see the class).
   */
  private tryTurn(rescue: boolean): boolean {
    const me = ownTid();
    const holder = Atomics.compareExchange(this.words, TURN, 0, me);
    if (holder !== 0) {
      if (!rescue || holder === me || native().threadAlive(holder)) return false;
      if (Atomics.compareExchange(this.words, TURN, holder, me) !== holder) return false;
    }
    // Go on from where the last reader stopped (the next header it read, or a dead reader's frame).
    if (this.openReader().adopt()) this.onLost();
    return true;
  }

  /** Reads one whole message if one is there, then gives the turn back. */
  private readAndGiveTurn(): Frame | null {
    try {
      const frame = this.openReader().recvSync(0);
      if (frame === undefined) throw closedError(); // every writer gone: only after close()
      return frame;
    } finally {
      Atomics.store(this.words, TURN, 0);
      if (Atomics.load(this.words, SLEEPERS) !== 0) native().futexWake(this.words, TURN, 1);
    }
  }

  private sleeping(wait: () => void): void {
    Atomics.add(this.words, SLEEPERS, 1);
    try {
      wait();
    } finally {
      Atomics.sub(this.words, SLEEPERS, 1);
    }
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    this.watch?.stop();
    for (const resolve of waiting) resolve();
  }

  /** The read end; throws once closed here. */
  private openReader(): NativeChannel {
    if (this.reader === null) throw closedError();
    return this.reader;
  }

  /** The write end; throws once closed here. */
  private openWriter(): NativeChannel {
    if (this.writer === null) throw closedError();
    return this.writer;
  }
}

/** A message as read: its bytes, or the text of a message in JSON (see `loads`). */
type Frame = Buffer | string;

interface PipeState {
  reader: DescriptorState;
  writer: DescriptorState;
  shared: Buffer;
}

/** Takes one message, waiting on the event loop: `undefined` once the time is up. */
async function take(pipe: QueuePipe, deadline: number | null): Promise<Frame | undefined> {
  for (;;) {
    const now = pipe.takeNow();
    if (now !== null) return now;
    if (pipe.readable(0)) {
      // A message is there, the turn is another reader's: wait for the turn.
      const frame = await pipe.take(deadline);
      if (frame !== null) return frame;
      continue;
    }
    if (deadline !== null && Date.now() >= deadline) return undefined;
    await racingTimeout(pipe.whenReadable(), left(deadline));
    if (pipe.closed) throw closedError();
  }
}

/** {@link take}, blocking the thread. */
function takeSync(pipe: QueuePipe, deadline: number | null): Frame | undefined {
  const now = pipe.takeNow();
  if (now !== null) return now;
  for (;;) {
    if (!pipe.readable(left(deadline))) return undefined;
    const frame = pipe.takeSync(deadline);
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
    this._pipe.onLost = () => this._places.release();
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
    if (!(await (limit === null ? this._places.acquire() : this._places.acquire({ timeout: limit })))) throw new Full('the queue is full');
    this.write(bytes);
  }

  /** {@link put}, blocking the thread. */
  putSync(obj: T, options?: QueueOptions): void {
    const limit = limitOf(options);
    const bytes = dumps(obj, 'obj');
    this.open();
    // Without options, acquireSync() takes a free place without building its waiting steps.
    if (!(limit === null ? this._places.acquireSync() : this._places.acquireSync({ timeout: limit }))) throw new Full('the queue is full');
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

  /** Writes a message (its place taken); gives the place back if the write fails. */
  private write(bytes: Uint8Array): void {
    try {
      this._pipe.write(bytes);
    } catch (error) {
      this._places.release();
      throw error;
    }
  }

  private taken(frame: Frame): T {
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
    this.open().write(bytes);
  }

  /** The next item, waiting on the event loop. */
  async get(): Promise<T> {
    return loads((await take(this.open(), null)) as Frame) as T;
  }

  /** The next item, blocking the thread. */
  getSync(): T {
    return loads(takeSync(this.open(), null) as Frame) as T;
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
