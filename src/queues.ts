/**
 * Queues between processes, as CPython's `multiprocessing.queues`:
 * {@link Queue}, {@link SimpleQueue} and {@link JoinableQueue}.
 *
 * A queue is a ring of bytes in shared memory that all its processes map
 * (src/queues/ring.ts, native/queue_ring.cc), a pipe on which consumers with
 * nothing to take sleep and, for `Queue`, a semaphore counting free places,
 * as Python's. What differs is the feeder: Python's `put()` hands the object
 * to a thread that writes it later, so an item whose `put()` returned is lost
 * if the producer exits first. Here `put()` copies the whole item into the
 * ring before it returns (or resolves): once it has, the item is in shared
 * memory and is delivered even if the producer is killed the next instant.
 * A consumer copies an item out and only then moves the ring's head past it:
 * a consumer killed at any instant before that took nothing.
 *
 * The price: a `put()` whose item does not fit in the ring (1 MiB of items
 * not yet taken) waits for a consumer, blocking the thread. A process that
 * puts more than that before it gets waits for ever, as it would with
 * Python's `Queue(maxsize)`.
 * @packageDocumentation
 */
import { Empty, Full } from './errors';
import { loadNative } from './native';
import { closedError, limitOf } from './queues/options';
import { Frame, QueueRing, RingState } from './queues/ring';
import { dumps, dumpsText, loads, registerReducer } from './reduction';
import { BoundedSemaphore, Condition, Semaphore } from './synchronize';
import { validateInteger } from './validate';

/** The largest count of a semaphore: a queue without maxsize. */
const UNBOUNDED = 0x7fffffff;

/** Options of `put` and `get`, as Python's `block=True, timeout=None`. */
export interface QueueOptions {
  /** `false`: answer at once (`mp.Full` / `mp.Empty` when it cannot). Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; `undefined`/`null`: no limit. Ignored when `block` is `false`. */
  timeout?: number | null;
}

/** The queues of a process without the addon (see queues/portable.ts), loaded on first use. */
function portable(): typeof import('./queues/portable') {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('./queues/portable') as typeof import('./queues/portable');
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
  /** @internal */ declare _ring: QueueRing;
  /** @internal Free places (maxsize, or unbounded). */ declare _places: Semaphore;
  /** @internal */ readonly _maxsize: number;

  /** A queue of at most `maxsize` items; 0 (the default) or less: no limit. */
  constructor(maxsize = 0) {
    validateInteger(maxsize, 'maxsize', -(2 ** 31), UNBOUNDED);
    this._maxsize = maxsize <= 0 ? UNBOUNDED : maxsize;
    const adopted = adoption;
    adoption = undefined;
    if (adopted === undefined && loadNative() === null) return portable().newQueue(new.target, Math.max(maxsize, 0));
    this._ring = adopted?.ring ?? QueueRing.create();
    this._places = adopted?.places ?? new BoundedSemaphore(this._maxsize)._signalling(); // a getter releases what a putter took
    this._ring.onLost = (count) => {
      for (let i = 0; i < count; i++) this._places.release();
    };
  }

  /**
   * Puts `obj` in the queue; resolves once it is there. With a `maxsize`,
   * waits for a free place (`mp.Full` after `timeout`, or at once without
   * `block`). A value that cannot be sent gets a TypeError naming it.
   */
  async put(obj: T, options?: QueueOptions): Promise<void> {
    const limit = limitOf(options);
    const bytes = dumpsText(obj, 'obj');
    this.open();
    if (!(await (limit === null ? this._places.acquire() : this._places.acquire({ timeout: limit })))) throw new Full('the queue is full');
    this.write(bytes);
  }

  /** {@link put}, blocking the thread. */
  putSync(obj: T, options?: QueueOptions): void {
    const limit = limitOf(options);
    const bytes = dumpsText(obj, 'obj');
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
    const limit = limitOf(options);
    // An item there now is taken before any await: no promise but this call's.
    const now = this.open().takeNow();
    if (now !== null) return this.taken(now);
    const frame = await this.open().take(deadlineOf(limit));
    if (frame === undefined) throw new Empty('the queue is empty');
    return this.taken(frame);
  }

  /** {@link get}, blocking the thread. */
  getSync(options?: QueueOptions): T {
    const deadline = deadlineOf(limitOf(options));
    const frame = this.open().takeSync(deadline);
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
    return this.open().empty();
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
    this._ring.close();
  }

  /** For porting: there is no feeder thread to wait for, every put is complete. Resolves at once. */
  joinThread(): Promise<void> {
    return Promise.resolve();
  }

  /** For porting: does nothing (there is no feeder thread). */
  cancelJoinThread(): void {}

  /** Whether {@link close} was called in this process. */
  get closed(): boolean {
    return this._ring.closed;
  }

  /** @internal */
  protected open(): QueueRing {
    if (this._ring.closed) throw closedError();
    return this._ring;
  }

  /** Writes a message (its place taken); gives the place back if the write fails. */
  private write(bytes: Uint8Array | string): void {
    try {
      this._ring.write(bytes);
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
  /** @internal */ declare _ring: QueueRing;

  constructor() {
    const adopted = adoption;
    adoption = undefined;
    if (adopted === undefined && loadNative() === null) return portable().newSimpleQueue(new.target);
    this._ring = adopted?.ring ?? QueueRing.create();
  }

  /** Puts `obj` in the queue (it is there when this returns). */
  put(obj: T): void {
    const bytes = dumpsText(obj, 'obj');
    this.open().write(bytes);
  }

  /** The next item, waiting on the event loop. */
  async get(): Promise<T> {
    return loads((await this.open().take(null)) as Frame) as T;
  }

  /** The next item, blocking the thread. */
  getSync(): T {
    return loads(this.open().takeSync(null) as Frame) as T;
  }

  /** Whether no item is there to get now. */
  empty(): boolean {
    return this.open().empty();
  }

  /** Closes this process's descriptors of the queue; any use here throws afterwards. */
  close(): void {
    this._ring.close();
  }

  /** Whether {@link close} was called in this process. */
  get closed(): boolean {
    return this._ring.closed;
  }

  private open(): QueueRing {
    if (this._ring.closed) throw closedError();
    return this._ring;
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
    if (this._ring === undefined) return; // made without the addon, by queues/portable.ts
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
  ring: QueueRing;
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
  ring: RingState;
  maxsize: number;
  shared: Buffer;
}

registerReducer(Queue, {
  kind: 'Queue',
  reduce: (queue: Queue): QueueState => {
    const joinable = queue instanceof JoinableQueue;
    const shared = joinable ? [queue._places, queue._unfinished, queue._condition] : [queue._places];
    return { ring: queue._ring.reduce(), maxsize: queue._maxsize, shared: dumps(shared, 'the state of a queue') };
  },
  rebuild: (state: QueueState): Queue => {
    const [places, unfinished, condition] = loads(state.shared) as [Semaphore, Semaphore?, Condition?];
    const ring = QueueRing.rebuild(state.ring);
    const maxsize = state.maxsize === UNBOUNDED ? 0 : state.maxsize;
    if (unfinished !== undefined) return adopt({ ring, places, unfinished, condition }, () => new JoinableQueue(maxsize));
    return adopt({ ring, places }, () => new Queue(maxsize));
  },
});

registerReducer(SimpleQueue, {
  kind: 'SimpleQueue',
  reduce: (queue: SimpleQueue): RingState => queue._ring.reduce(),
  rebuild: (state: RingState): SimpleQueue => adopt({ ring: QueueRing.rebuild(state) }, () => new SimpleQueue()),
});
