/**
 * Synchronisation primitives that work across processes, as Python's
 * `multiprocessing.synchronize`: {@link Lock}, {@link RLock},
 * {@link Semaphore}, {@link BoundedSemaphore}, {@link Condition},
 * {@link Event} and {@link Barrier}.
 *
 * Each keeps its state in a few 32-bit words of shared memory (a block of
 * `heap.ts`), changed with `Atomics` and slept on with process-shared futexes
 * (`native/futex.cc`). An uncontended `Lock` never leaves JavaScript: the
 * mutex of Drepper's "Futexes Are Tricky" (0 free, 1 locked, 2 locked with
 * sleepers), which calls into the kernel only to sleep, or to wake a sleeper.
 *
 * Every blocking operation is written once, as a generator that yields the
 * futex sleeps it needs ({@link Steps}); `fooSync()` runs it blocking this
 * thread, `foo()` runs it with each sleep on a thread of the addon, so the
 * event loop keeps running.
 *
 * Objects cross to forked children by inheritance and to children of other
 * start methods through `reduction.ts`: each reduces to its heap block's name.
 * @packageDocumentation
 */
import { BrokenBarrierError, TimeoutError } from './errors';
import { allocate, BlockState, rebuildBlock, reduceBlock, SharedBlock } from './heap';
import { FutexWaitResult, loadNative, NativeBinding, NativeFutexWaiter, requireNative } from './native';
import { forkGeneration, registerAtFork } from './at_fork';
import { registerReducer } from './reduction';
import { describe, validateFunction, validateInteger, validateOptions, validateTimeout } from './validate';

// --- owners: threads ---------------------------------------------------------

/**
 * This thread's id from the kernel: the pid on a process's main thread (right
 * in a forked child, also under jest's own `process`), its own id on a
 * worker thread. What a lock records as its holder.
 */
function currentTid(): number {
  return loadNative()?.gettid() ?? process.pid;
}

/** This thread's id; a variable, as asking the kernel is slow on a hot path. */
let tid = currentTid();
let tidGeneration = forkGeneration();

/** {@link tid}, caught up lazily in a forked child (see at_fork.ts). */
function ownTid(): number {
  if (tidGeneration !== forkGeneration()) {
    tid = currentTid();
    tidGeneration = forkGeneration();
  }
  return tid;
}

/** Whether thread `owner` has ended (a zombie not yet reaped counts as ended); never this thread. */
function hasEnded(owner: number): boolean {
  return owner !== ownTid() && !native().threadAlive(owner);
}

/** The largest count of a semaphore, as `SEM_VALUE_MAX` on Linux. */
const SEM_VALUE_MAX = 0x7fffffff;

function native(): NativeBinding {
  return requireNative('process-shared synchronisation');
}

// --- the waiting core -------------------------------------------------------

/** One futex sleep that an algorithm asks its driver for. */
interface Sleep {
  readonly view: Int32Array;
  readonly index: number;
  /** Sleep only while `view[index]` still holds this value. */
  readonly expected: number;
  /** Milliseconds, or -1 for no limit. */
  readonly timeoutMs: number;
}

/**
 * A blocking operation: yields the sleeps it needs, is resumed with how each
 * ended, and returns its result. Run by {@link runSync} or {@link runAsync}.
 */
type Steps<T> = Generator<Sleep, T, FutexWaitResult>;

/** An absolute `performance.now()` time, or `null` for no limit. */
type Deadline = number | null;

function deadlineAfter(timeout: number | null): Deadline {
  return timeout === null ? null : performance.now() + timeout;
}

/** Milliseconds left until `deadline`: -1 without one, 0 once passed. */
function msUntil(deadline: Deadline): number {
  return deadline === null ? -1 : Math.max(0, deadline - performance.now());
}

/**
 * How long a sleep that waits on another thread lasts at most, while that
 * thread may die without a word: the first sleep, then doubling up to the
 * last. Only sleeps given a `recover` are cut so.
 */
const FIRST_CHECK_MS = 10;
const LAST_CHECK_MS = 1000;

/**
 * Tries `tryOnce` until it succeeds or `deadline` passes, sleeping on
 * `view[index]` while it holds `sleepOn()` in between. `sleepOn()` is asked
 * right after a failed try: the value the word had when that try failed, so
 * that a change in between ends the sleep at once ('not-equal').
 * `sleepersIndex`, when >= 0, counts the sleepers, so that wakers may skip the
 * system call when there are none. `recover`, when given, is what to do when
 * the thread waited on may have died: it is called after every sleep that
 * timed out (each is cut to a check interval), and once when there is no
 * time to sleep at all; it returns true when it got what was waited for.
 */
function* sleepUntil(
  view: Int32Array,
  index: number,
  tryOnce: () => boolean,
  sleepOn: () => number,
  deadline: Deadline,
  sleepersIndex = -1,
  recover?: () => boolean,
): Steps<boolean> {
  let checkMs = FIRST_CHECK_MS;
  for (;;) {
    if (tryOnce()) return true;
    const left = msUntil(deadline);
    if (left === 0) return recover !== undefined && recover();
    const expected = sleepOn();
    const cut = recover !== undefined && (left < 0 || left > checkMs);
    const timeoutMs = cut ? checkMs : left;
    if (cut) checkMs = Math.min(2 * checkMs, LAST_CHECK_MS);
    if (sleepersIndex >= 0) Atomics.add(view, sleepersIndex, 1);
    let result: FutexWaitResult;
    try {
      result = yield { view, index, expected, timeoutMs };
    } finally {
      if (sleepersIndex >= 0) Atomics.sub(view, sleepersIndex, 1);
    }
    if (result !== 'timed-out') continue;
    // A wake-up taken and then given up would be lost to the other sleepers:
    // always try once more before leaving.
    if (tryOnce() || (recover !== undefined && recover())) return true;
    if (!cut) return false;
  }
}

/** Runs `steps` blocking this thread in each sleep. */
function runSync<T>(steps: Steps<T>): T {
  let step = steps.next();
  while (!step.done) {
    const { view, index, expected, timeoutMs } = step.value;
    let result: FutexWaitResult;
    try {
      result = native().futexWait(view, index, expected, timeoutMs);
    } catch (error) {
      step = steps.throw(error);
      continue;
    }
    step = steps.next(result);
  }
  return step.value;
}

/** Runs the steps `start()` makes, each sleep on a thread of the addon's. */
async function runAsync<T>(start: () => Steps<T>): Promise<T> {
  const steps = start();
  let step = steps.next();
  while (!step.done) {
    let result: FutexWaitResult;
    try {
      result = await sleepAsync(step.value);
    } catch (error) {
      step = steps.throw(error);
      continue;
    }
    step = steps.next(result);
  }
  return step.value;
}

interface PendingSleep {
  waiter: NativeFutexWaiter | null;
  resolve(result: FutexWaitResult): void;
}

/** Asynchronous sleeps in progress, for {@link restartSleepsInChild}. */
const pendingSleeps = new Set<PendingSleep>();

/** Removes the at-fork hook of {@link restartSleepsInChild}; set while there are sleeps to restart. */
let unregisterRestart: (() => void) | null = null;

function trackSleep(pending: PendingSleep): void {
  pendingSleeps.add(pending);
  // Hooked only while needed: a hook is compiled anew in every forked child.
  unregisterRestart ??= registerAtFork({ afterInChild: restartSleepsInChild });
}

function untrackSleep(pending: PendingSleep): void {
  pendingSleeps.delete(pending);
  if (pendingSleeps.size > 0 || unregisterRestart === null) return;
  unregisterRestart();
  unregisterRestart = null;
}

function sleepAsync({ view, index, expected, timeoutMs }: Sleep): Promise<FutexWaitResult> {
  return new Promise((resolve, reject) => {
    const pending: PendingSleep = { waiter: null, resolve };
    pending.waiter = new (native().FutexWaiter)(view, index, expected, timeoutMs, (error, result) => {
      untrackSleep(pending);
      if (error) reject(error);
      else resolve(result);
    });
    trackSleep(pending);
  });
}

/**
 * A forked child has none of its parent's threads, so none of the sleeps in
 * progress at the fork: each ends now as if woken, and the algorithm (which
 * re-checks its condition after every wake-up) sleeps again on a thread of
 * the child. The child thus goes on with what its parent was waiting for, as
 * it does with the timers it inherits.
 */
function restartSleepsInChild(): void {
  for (const pending of [...pendingSleeps]) {
    pending.waiter?.cancel();
    untrackSleep(pending);
    pending.resolve('ok');
  }
}

function wake(view: Int32Array, index: number, count: number): void {
  native().futexWake(view, index, Math.min(count, 0x7fffffff));
}

const RESOLVED_TRUE: Promise<boolean> = Promise.resolve(true);

// --- shared words ------------------------------------------------------------

/** What a rebuilt object takes over instead of allocating: see {@link adopt}. */
interface Adoption {
  readonly block: SharedBlock;
  readonly condition?: Condition;
  readonly lock?: Lock | RLock;
}

let adoption: Adoption | undefined;

/**
 * The block and the Int32Array view of `count` zero-filled words of a new
 * object: new shared memory, or the memory of the object being rebuilt (see
 * {@link adopt}). Constructors call it before making any other primitive.
 */
function claimWords(count: number): [SharedBlock, Int32Array, Adoption | undefined] {
  const adopted = adoption;
  adoption = undefined;
  const block = adopted?.block ?? allocate(count * Int32Array.BYTES_PER_ELEMENT, Int32Array.BYTES_PER_ELEMENT);
  return [block, new Int32Array(block.buffer, block.byteOffset, count), adopted];
}

/** Runs `make` (a constructor call) so that it takes over `adopted`'s shared memory. */
function adopt<T>(adopted: Adoption, make: () => T): T {
  adoption = adopted;
  try {
    return make();
  } finally {
    adoption = undefined;
  }
}

// --- options -----------------------------------------------------------------

/** Options of `acquire`, as Python's `acquire(block=True, timeout=None)`. */
export interface AcquireOptions {
  /** `false`: try once and answer at once. Default `true`. */
  block?: boolean;
  /** Milliseconds to wait at most; `undefined`/`null`: no limit. Ignored when `block` is `false`. */
  timeout?: number | null;
}

/**
 * The timeout an `acquire` call asks for: `null` for none, 0 for a single try.
 * Takes Python's positional form too: `acquire(false)`, `acquire(true, 1000)`.
 */
function acquireTimeout(blockOrOptions: boolean | AcquireOptions | undefined, positionalTimeout?: number | null): number | null {
  if (typeof blockOrOptions === 'boolean' || (blockOrOptions === undefined && positionalTimeout !== undefined)) {
    const limit = validateTimeout(positionalTimeout);
    return blockOrOptions === false ? 0 : limit;
  }
  if (positionalTimeout !== undefined) {
    throw new TypeError('timeout goes in the options ({ timeout }) or after a block flag (acquire(true, timeout)), not after options');
  }
  if (blockOrOptions === undefined) return null;
  const { block = true, timeout } = validateOptions(blockOrOptions, ['block', 'timeout'] as const);
  if (typeof block !== 'boolean') throw new TypeError(`options.block must be a boolean, got ${describe(block)}`);
  const limit = validateTimeout(timeout, 'options.timeout');
  return block ? limit : 0;
}

// --- holding: Python's `with lock:` --------------------------------------------

/**
 * A primitive held by {@link Acquirable.holdSync} or {@link Acquirable.hold}:
 * disposing of it (the end of a `using` block) releases the primitive, once.
 */
export class Held implements Disposable, AsyncDisposable {
  #release: (() => void) | null;

  /** @internal */
  constructor(release: () => void) {
    this.#release = release;
  }

  /** Releases what is held; does nothing the second time. */
  release(): void {
    const release = this.#release;
    this.#release = null;
    release?.();
  }

  /** Releases what is held (`using held = lock.holdSync()`). */
  [Symbol.dispose](): void {
    this.release();
  }

  /** Releases what is held (`await using held = await lock.hold()`). */
  [Symbol.asyncDispose](): Promise<void> {
    this.release();
    return Promise.resolve();
  }
}

/**
 * What Lock, RLock, Semaphore and Condition share: Python's `with lock:`
 * written as `using held = lock.holdSync()`, `await using held = await
 * lock.hold()` or `await lock.withLock(async () => ...)`. Each waits without a
 * limit unless given a `timeout` in milliseconds, after which it throws a
 * {@link TimeoutError} (holding nothing).
 */
export abstract class Acquirable {
  abstract acquireSync(options?: AcquireOptions): boolean;
  abstract acquire(options?: AcquireOptions): Promise<boolean>;
  abstract release(): void;

  /**
   * Acquires, blocking this thread, and returns a {@link Held} that releases
   * on dispose: `using held = lock.holdSync();`.
   */
  holdSync(timeout?: number | null): Held {
    const limit = validateTimeout(timeout);
    if (!this.acquireSync(limit === null ? undefined : { timeout: limit })) throw this.#timedOut(limit);
    return new Held(() => this.release());
  }

  /**
   * Acquires without blocking the event loop and resolves to a {@link Held}
   * that releases on dispose: `await using held = await lock.hold();`.
   */
  async hold(timeout?: number | null): Promise<Held> {
    const limit = validateTimeout(timeout);
    if (!(await this.acquire(limit === null ? undefined : { timeout: limit }))) throw this.#timedOut(limit);
    return new Held(() => this.release());
  }

  /**
   * Runs `fn` holding this primitive and releases it when `fn` returns or its
   * Promise settles, thrown errors included; resolves to what `fn` returns.
   */
  async withLock<T>(fn: () => T | PromiseLike<T>, timeout?: number | null): Promise<Awaited<T>> {
    validateFunction(fn, 'fn');
    const held = await this.hold(timeout);
    try {
      return await fn();
    } finally {
      held.release();
    }
  }

  #timedOut(timeout: number | null): TimeoutError {
    return new TimeoutError(`${this.constructor.name} not acquired within ${String(timeout)} ms`);
  }
}

// --- Lock ----------------------------------------------------------------------

/*
 * The mutex word holds its holder's thread id: 0 free, `tid` held, `tid |
 * SLEEPERS_BIT` held with (maybe) sleepers. This is Drepper's mutex ("Futexes
 * Are Tricky") with the owner in the word, as Linux's robust futexes have it:
 * a lock is taken by one compare-and-exchange of 0 to the taker's id, so at no
 * instant is it held by nobody known. A waiter that finds the holder's thread
 * ended (killed, crashed, or gone without releasing) takes the word over from
 * it with one compare-and-exchange too, so two waiters never both do.
 */

const FREE = 0;
/** Set in a held mutex word when others may sleep on it (the sign bit). */
const SLEEPERS_BIT = 1 << 31;
/** The holder's thread id in a held mutex word (Linux ids stay below 2^22). */
const OWNER_MASK = 0x3fffffff;

/** How an attempt to take a mutex word ended. */
const NOT_TAKEN = 0;
const TAKEN = 1;
const TAKEN_FROM_DEAD = 2;
type Taking = typeof NOT_TAKEN | typeof TAKEN | typeof TAKEN_FROM_DEAD;

/**
 * Takes the mutex word `words[index]` from its holder when that thread has
 * ended; true when this thread now holds it.
 */
function takeFromDead(words: Int32Array, index: number, me: number): boolean {
  let seen = Atomics.load(words, index);
  const owner = seen & OWNER_MASK;
  if (seen === FREE || !hasEnded(owner)) return false;
  for (;;) {
    // Others may sleep on it: keep the bit.
    const now = Atomics.compareExchange(words, index, seen, me | SLEEPERS_BIT);
    if (now === seen) return true;
    if ((now & OWNER_MASK) !== owner) return false; // released, or taken by another waiter
    seen = now;
  }
}

/** Takes the mutex word `words[index]` for thread `me`, waiting up to `timeout` ms. */
function* lockWord(words: Int32Array, index: number, timeout: number | null, me = ownTid()): Steps<Taking> {
  if (Atomics.compareExchange(words, index, FREE, me) === FREE) return TAKEN;
  if (timeout === 0) return takeFromDead(words, index, me) ? TAKEN_FROM_DEAD : NOT_TAKEN;
  // From now on take it with the sleepers bit: we cannot know whether others sleep too.
  let expected = FREE;
  const take = (): boolean => {
    for (;;) {
      const seen = Atomics.load(words, index);
      if (seen === FREE) {
        if (Atomics.compareExchange(words, index, FREE, me | SLEEPERS_BIT) === FREE) return true;
      } else if ((seen & SLEEPERS_BIT) !== 0 || Atomics.compareExchange(words, index, seen, seen | SLEEPERS_BIT) === seen) {
        expected = seen | SLEEPERS_BIT;
        return false;
      }
    }
  };
  let fromDead = false;
  const recover = (): boolean => (fromDead = takeFromDead(words, index, me));
  if (!(yield* sleepUntil(words, index, take, () => expected, deadlineAfter(timeout), -1, recover))) return NOT_TAKEN;
  return fromDead ? TAKEN_FROM_DEAD : TAKEN;
}

/** Frees the mutex word; wakes one sleeper when there may be some. */
function unlockWord(words: Int32Array, index: number, what: string): void {
  const previous = Atomics.exchange(words, index, FREE);
  if (previous === FREE) throw new Error(`release of an unlocked ${what}`);
  if ((previous & SLEEPERS_BIT) !== 0) wake(words, index, 1);
}

/** What a {@link Condition} needs of its lock. @internal */
interface ConditionLock {
  /** True when this process may wait or notify. */
  _isOwned(): boolean;
  /** Releases the lock completely; returns what {@link _restore} needs. */
  _releaseAll(): number;
  /** Takes the lock again after {@link _releaseAll}. */
  _restoreSteps(saved: number): Steps<void>;
  /** The steps of `acquire()`. */
  _acquireSteps(timeout: number | null): Steps<boolean>;
  release(): void;
  readonly ownerDied: boolean;
}

/**
 * A non-recursive lock shared between processes, as `multiprocessing.Lock`.
 * Any process (and any async function of a process) may release it, not only
 * the one that acquired it; acquiring it again while held waits, also in the
 * process that holds it.
 *
 * Beyond Python, a lock whose holder died is not lost: when the thread that
 * acquired it ends without releasing it (SIGKILL, a crash, an exit), the next
 * acquirer gets it, and {@link ownerDied} tells it so.
 *
 * @example
 * ```ts
 * const lock = new mp.Lock();
 * lock.acquireSync();
 * try { console.log('only one process at a time'); } finally { lock.release(); }
 * ```
 */
export class Lock extends Acquirable implements ConditionLock {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal The mutex word: 0 free, else the holder's thread id (| SLEEPERS_BIT). */
  readonly _words: Int32Array;
  /** @internal */ _ownerDied = false;

  /** A new, unlocked lock in shared memory. */
  constructor() {
    super();
    [this._block, this._words] = claimWords(1);
  }

  /**
   * Whether the last acquire in this process took the lock from a holder that
   * had ended without releasing it (killed, crashed, exited): what the lock
   * guards may be half-updated. Read it right after the acquire; the next
   * acquire sets it again.
   */
  get ownerDied(): boolean {
    return this._ownerDied;
  }

  /**
   * Acquires the lock, blocking this thread (and the event loop) until it is
   * free or `timeout` ms passed. Returns whether it was acquired.
   * `{ block: false }` tries once.
   */
  acquireSync(options?: AcquireOptions): boolean;
  /** Python's positional form: `acquireSync(false)` tries once, `acquireSync(true, 1000)` waits up to a second. */
  acquireSync(block: boolean, timeout?: number | null): boolean;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    if (options !== undefined || timeout !== undefined) return runSync(this._acquireSteps(acquireTimeout(options, timeout)));
    if (Atomics.compareExchange(this._words, 0, FREE, ownTid()) === FREE) {
      this._ownerDied = false;
      return true;
    }
    return runSync(this._acquireSteps(null));
  }

  /**
   * Acquires the lock without blocking the event loop; resolves to whether it
   * was acquired (`false` after `timeout` ms, or at once with `{ block: false }`).
   */
  acquire(options?: AcquireOptions): Promise<boolean>;
  /** Python's positional form: `acquire(false)` tries once, `acquire(true, 1000)` waits up to a second. */
  acquire(block: boolean, timeout?: number | null): Promise<boolean>;
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    if (options !== undefined || timeout !== undefined) return runAsync(() => this._acquireSteps(acquireTimeout(options, timeout)));
    if (Atomics.compareExchange(this._words, 0, FREE, ownTid()) === FREE) {
      this._ownerDied = false;
      return RESOLVED_TRUE;
    }
    return runAsync(() => this._acquireSteps(null));
  }

  /** Releases the lock. Throws an Error when it is not locked. */
  release(): void {
    unlockWord(this._words, 0, 'Lock');
  }

  /** @internal */
  *_acquireSteps(timeout: number | null): Steps<boolean> {
    const taking = yield* lockWord(this._words, 0, timeout);
    if (taking === NOT_TAKEN) return false;
    this._ownerDied = taking === TAKEN_FROM_DEAD;
    return true;
  }

  /** @internal A Lock has no owner: held by anyone is enough, as Python's check is per thread. */
  _isOwned(): boolean {
    return Atomics.load(this._words, 0) !== FREE;
  }

  /** @internal */
  _releaseAll(): number {
    this.release();
    return 1;
  }

  /** @internal */
  *_restoreSteps(): Steps<void> {
    yield* this._acquireSteps(null);
  }
}

// --- RLock ---------------------------------------------------------------------

const COUNT = 1;

/**
 * A recursive lock shared between processes, as `multiprocessing.RLock`: the
 * thread that holds it may acquire it again, and must release it as many
 * times. Only that thread may release it.
 *
 * The owner is a thread of a process, as Python's: two async functions of one
 * thread both "own" it, so an RLock does not keep them apart (use a
 * {@link Lock} for that), while a worker thread is an owner of its own.
 * When the owner ends without releasing it, the next acquirer gets it and
 * {@link ownerDied} says so.
 */
export class RLock extends Acquirable implements ConditionLock {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: the mutex (the owner's thread id), the recursion count. */
  readonly _words: Int32Array;
  /** @internal */ _ownerDied = false;

  /** A new, unlocked recursive lock in shared memory. */
  constructor() {
    super();
    [this._block, this._words] = claimWords(2);
  }

  /**
   * Whether the acquire that made this thread the owner took the lock from an
   * owner that had ended without releasing it; see {@link Lock.ownerDied}.
   */
  get ownerDied(): boolean {
    return this._ownerDied;
  }

  /**
   * Acquires the lock (again, when this thread holds it), blocking this
   * thread until it is free or `timeout` ms passed; returns whether it was.
   */
  acquireSync(options?: AcquireOptions): boolean;
  /** Python's positional form: `acquireSync(false)`, `acquireSync(true, 1000)`. */
  acquireSync(block: boolean, timeout?: number | null): boolean;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    if (options !== undefined || timeout !== undefined) return runSync(this._acquireSteps(acquireTimeout(options, timeout)));
    const words = this._words;
    const me = ownTid();
    const previous = Atomics.compareExchange(words, 0, FREE, me);
    if (previous === FREE) {
      words[COUNT] = 1;
      this._ownerDied = false;
      return true;
    }
    if ((previous & OWNER_MASK) === me) {
      words[COUNT]++;
      return true;
    }
    return runSync(this._lockSteps(null, me));
  }

  /** Acquires the lock without blocking the event loop; resolves to whether it was acquired. */
  acquire(options?: AcquireOptions): Promise<boolean>;
  /** Python's positional form: `acquire(false)`, `acquire(true, 1000)`. */
  acquire(block: boolean, timeout?: number | null): Promise<boolean>;
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    return runAsync(() => this._acquireSteps(acquireTimeout(options, timeout)));
  }

  /**
   * Releases one level of the lock; the last release frees it. Throws an
   * Error when this thread does not hold it.
   */
  release(): void {
    if (!this._isOwned()) throw new Error('cannot release un-acquired lock: this RLock is not held by this thread');
    if (--this._words[COUNT] === 0) unlockWord(this._words, 0, 'RLock');
  }

  /** @internal */
  *_acquireSteps(timeout: number | null): Steps<boolean> {
    const me = ownTid();
    if (this._isOwned()) {
      this._words[COUNT]++;
      return true;
    }
    return yield* this._lockSteps(timeout, me);
  }

  private *_lockSteps(timeout: number | null, me: number): Steps<boolean> {
    const taking = yield* lockWord(this._words, 0, timeout, me);
    if (taking === NOT_TAKEN) return false;
    this._own(1, taking);
    return true;
  }

  /** @internal */
  _isOwned(): boolean {
    const held = Atomics.load(this._words, 0);
    return held !== FREE && (held & OWNER_MASK) === ownTid();
  }

  /** @internal Frees every level at once, for {@link Condition.wait}; returns the count. */
  _releaseAll(): number {
    const count = this._words[COUNT];
    this._words[COUNT] = 1;
    this.release();
    return count;
  }

  /** @internal */
  *_restoreSteps(count: number): Steps<void> {
    this._own(count, yield* lockWord(this._words, 0, null));
  }

  private _own(count: number, taking: Taking): void {
    this._words[COUNT] = count;
    this._ownerDied = taking === TAKEN_FROM_DEAD;
  }
}

// --- Semaphore -------------------------------------------------------------------

const VALUE = 0;
const SLEEPERS = 1;
/** 1 once the semaphore is used to signal: dead holders' counts are not given back any more. */
const SIGNALLING = 2;
/** Counts held by threads that found no free holder slot: not given back when they die. */
const UNTRACKED = 3;
/** The holder slots: `[thread id, count held]` pairs from this word on. */
const FIRST_HOLDER = 4;
const HOLDER_SLOTS = 32;
const HOLDERS_END = FIRST_HOLDER + 2 * HOLDER_SLOTS;
/** A holder slot's id word while a thread gives its count back: `RECLAIMING | that thread's id`. */
const RECLAIMING = 0x40000000;

/*
 * The count is read with a plain load first, a guess that the
 * compare-and-exchange checks: one Atomics builtin call instead of two on the
 * fast path. Only a failure is confirmed with an atomic load.
 */

/** Takes one from the count at `words[VALUE]` if it is positive. */
function tryDecrement(words: Int32Array): boolean {
  let value = words[VALUE];
  for (;;) {
    if (value <= 0 && (value = Atomics.load(words, VALUE)) <= 0) return false;
    const seen = Atomics.compareExchange(words, VALUE, value, value - 1);
    if (seen === value) return true;
    value = seen;
  }
}

/**
 * A counting semaphore shared between processes, as
 * `multiprocessing.Semaphore`: `acquire` takes one from the count (waiting
 * while it is 0), `release` gives one back. Any process may release.
 *
 * Beyond Python, counts held by a thread that dies are given back: each
 * thread's holding is recorded (32 live threads at a time), and a waiter that finds
 * a holder ended returns its count. This is for a semaphore used as a lock
 * with several places (acquired and released by the same thread). Once a
 * thread that holds nothing releases — the semaphore is used to signal, as a
 * Queue's are, where a dead acquirer's count was consumed, not held — the
 * semaphore stops recording, for good.
 */
export class Semaphore extends Acquirable {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: the count, sleepers, signalling, untracked, then the holder slots. */
  readonly _words: Int32Array;
  /** @internal The largest count `release` may make. */
  readonly _bound: number;
  /** @internal */ _ownerDied = false;
  /** The index of this thread's holder slot last found, or -1. */
  private _slot = -1;

  /** A semaphore whose count starts at `value` (an integer >= 0, default 1). */
  constructor(value = 1) {
    super();
    validateInteger(value, 'value', 0, SEM_VALUE_MAX);
    const [block, words, adopted] = claimWords(HOLDERS_END);
    this._block = block;
    this._words = words;
    this._bound = this._boundFor(value);
    if (adopted === undefined) Atomics.store(words, VALUE, value);
  }

  /**
   * Whether the last acquire in this process got its count only once it gave
   * back the counts of holders that had died: what they guarded may be
   * half-updated. Read it right after the acquire.
   */
  get ownerDied(): boolean {
    return this._ownerDied;
  }

  /**
   * Takes one from the count, blocking this thread while it is 0, until
   * `timeout` ms passed; returns whether it took one.
   */
  acquireSync(options?: AcquireOptions): boolean;
  /** Python's positional form: `acquireSync(false)`, `acquireSync(true, 1000)`. */
  acquireSync(block: boolean, timeout?: number | null): boolean;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    if (options === undefined && timeout === undefined && tryDecrement(this._words)) {
      this._took(false);
      return true;
    }
    return runSync(this._acquireSteps(acquireTimeout(options, timeout)));
  }

  /** Takes one from the count without blocking the event loop; resolves to whether it did. */
  acquire(options?: AcquireOptions): Promise<boolean>;
  /** Python's positional form: `acquire(false)`, `acquire(true, 1000)`. */
  acquire(block: boolean, timeout?: number | null): Promise<boolean>;
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    if (options === undefined && timeout === undefined && tryDecrement(this._words)) {
      this._took(false);
      return RESOLVED_TRUE;
    }
    return runAsync(() => this._acquireSteps(acquireTimeout(options, timeout)));
  }

  /** Gives one back to the count, waking one waiter. */
  release(): void {
    const words = this._words;
    const bound = this._bound;
    if (words[VALUE] >= bound && Atomics.load(words, VALUE) >= bound) throw new Error(this._overflowMessage());
    // The holding first: a release cut short by a kill loses a count rather than giving it back twice.
    this._letGo();
    let value = words[VALUE];
    for (;;) {
      if (value >= bound && (value = Atomics.load(words, VALUE)) >= bound) throw new Error(this._overflowMessage());
      const seen = Atomics.compareExchange(words, VALUE, value, value + 1);
      if (seen === value) break;
      value = seen;
    }
    if (Atomics.load(words, SLEEPERS) !== 0) wake(words, VALUE, 1);
  }

  /** The current count. */
  getValue(): number {
    return Atomics.load(this._words, VALUE);
  }

  /** @internal */
  *_acquireSteps(timeout: number | null): Steps<boolean> {
    const words = this._words;
    let gaveBack = false;
    const recover = (): boolean => {
      gaveBack = this._giveBackDead() || gaveBack;
      return tryDecrement(words);
    };
    const took = yield* sleepUntil(words, VALUE, () => tryDecrement(words), () => 0, deadlineAfter(timeout), SLEEPERS, recover);
    if (took) this._took(gaveBack);
    return took;
  }

  /**
   * @internal Marks this semaphore as one that signals (one process acquires,
   * another releases, as a Queue's free places): a dead acquirer's count is
   * never given back. Returns this.
   */
  _signalling(): this {
    Atomics.store(this._words, SIGNALLING, 1);
    return this;
  }

  /** @internal */
  protected _boundFor(_value: number): number {
    return SEM_VALUE_MAX;
  }

  /** @internal */
  protected _overflowMessage(): string {
    return `semaphore count would exceed ${SEM_VALUE_MAX}`;
  }

  /*
   * The holder slots are read with plain loads, and a slot's count written
   * with plain stores: only its thread changes it while that thread lives, and
   * others read it only once the thread has ended. Slot ids change with
   * compare-and-exchange (claimed) or by their thread (freed).
   */

  /** Records the count just taken against this thread (after taking it: a kill in between loses it, never doubles it). */
  private _took(ownerDied: boolean): void {
    this._ownerDied = ownerDied;
    const words = this._words;
    if (words[SIGNALLING] !== 0) return;
    const slot = this._slotOf(ownTid(), true);
    if (slot >= 0) words[slot + 1]++;
    else Atomics.add(words, UNTRACKED, 1);
  }

  /** Takes one count off this thread's holding; a release by a thread holding nothing makes the semaphore a signal. */
  private _letGo(): void {
    const words = this._words;
    if (words[SIGNALLING] !== 0) return;
    const me = ownTid();
    const slot = this._slotOf(me, false);
    if (slot >= 0 && words[slot + 1] > 0) {
      words[slot + 1]--;
      return;
    }
    for (let untracked = Atomics.load(words, UNTRACKED); untracked > 0; ) {
      const seen = Atomics.compareExchange(words, UNTRACKED, untracked, untracked - 1);
      if (seen === untracked) return;
      untracked = seen;
    }
    Atomics.store(words, SIGNALLING, 1);
  }

  /**
   * The index of thread `me`'s holder slot, -1 if it has none; with `claim`, a
   * free one is claimed for it (the slots of ended threads are freed first
   * when none is). A thread keeps its slot while it lives, even at a count of
   * 0: acquire and release by one thread stay a read and a write of it.
   */
  private _slotOf(me: number, claim: boolean): number {
    const words = this._words;
    if (this._slot >= 0 && words[this._slot] === me) return this._slot;
    for (let i = FIRST_HOLDER; i < HOLDERS_END; i += 2) {
      if (words[i] === me) return (this._slot = i);
    }
    if (!claim) return -1;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = FIRST_HOLDER; i < HOLDERS_END; i += 2) {
        if (words[i] === 0 && Atomics.compareExchange(words, i, 0, me) === 0) return (this._slot = i);
      }
      if (pass === 0) this._giveBackDead(); // frees the slots of ended threads
    }
    return -1;
  }

  /** Gives back the counts of holders whose threads have ended; returns whether there were any. */
  private _giveBackDead(): boolean {
    const words = this._words;
    if (Atomics.load(words, SIGNALLING) !== 0) return false;
    const mark = RECLAIMING | ownTid();
    let given = 0;
    for (let i = FIRST_HOLDER; i < HOLDERS_END; i += 2) {
      const holder = Atomics.load(words, i);
      // A slot marked by a giver that died in the middle is taken over too.
      if (holder === 0 || !hasEnded(holder & OWNER_MASK)) continue;
      if (Atomics.compareExchange(words, i, holder, mark) !== holder) continue;
      given += Atomics.exchange(words, i + 1, 0);
      Atomics.store(words, i, 0);
    }
    if (given > 0) this._giveBack(given);
    return given > 0;
  }

  private _giveBack(count: number): void {
    const words = this._words;
    let value = Atomics.load(words, VALUE);
    for (;;) {
      const seen = Atomics.compareExchange(words, VALUE, value, Math.min(this._bound, value + count));
      if (seen === value) break;
      value = seen;
    }
    if (Atomics.load(words, SLEEPERS) !== 0) wake(words, VALUE, count);
  }
}

/**
 * A semaphore that may not be released above its initial value, as
 * `multiprocessing.BoundedSemaphore`: such a release throws an Error.
 */
export class BoundedSemaphore extends Semaphore {
  /** @internal */
  protected override _boundFor(value: number): number {
    return value;
  }

  /** @internal */
  protected override _overflowMessage(): string {
    return `semaphore released too many times (its bound is ${this._bound})`;
  }
}

// --- Condition -----------------------------------------------------------------------

/** Changed by every notify: waiters without a slot sleep on it. */
const SEQUENCE = 0;
/** Waiters not yet notified. */
const WAITERS = 1;
/** The next waiter's ticket: notify takes the oldest waiters first. */
const TICKETS = 2;
/** Waiters that found no free slot (more than {@link WAITER_SLOTS} at once). */
const OVERFLOW = 3;
/** The waiter slots: `[state, ticket]` pairs from this word on; state is 0 (free), the waiter's thread id, or that | NOTIFIED. */
const FIRST_WAITER = 4;
const WAITER_SLOTS = 64;
const WAITERS_END = FIRST_WAITER + 2 * WAITER_SLOTS;
const NOTIFIED = 0x40000000;

/** Whether ticket `a` was handed out before ticket `b` (tickets wrap around). */
function before(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/**
 * A condition variable shared between processes, as
 * `multiprocessing.Condition`: `wait` releases the lock, sleeps until
 * notified, and takes the lock again. `notify(n)` wakes at most `n` waiters,
 * the oldest first.
 *
 * Each waiter has a slot of the shared block holding its thread id and its
 * ticket, and sleeps on that slot; `notify` marks the slots of the waiters it
 * wakes. Slots change under the lock, but for a waiter whose time ran out,
 * which withdraws with a compare-and-exchange that a notify may beat (then it
 * was notified). A waiter that died is counted out by the next notify instead
 * of taking a notification. Beyond 64 waiters at once, the others wait on a
 * shared word that every notify changes: they may wake without being the
 * ones notified, as POSIX condition variables may.
 */
export class Condition extends Acquirable {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: sequence, waiters, tickets, overflow, then the waiter slots. */
  readonly _words: Int32Array;
  /** @internal */ readonly _lock: Lock | RLock;

  /** A condition on `lock` (a {@link Lock} or {@link RLock}; a new RLock by default). */
  constructor(lock?: Lock | RLock) {
    super();
    const [block, words, adopted] = claimWords(WAITERS_END);
    this._block = block;
    this._words = words;
    const given = adopted?.lock ?? lock;
    if (given !== undefined && !(given instanceof Lock) && !(given instanceof RLock)) {
      throw new TypeError(`lock must be a Lock or an RLock, got ${describe(given)}`);
    }
    this._lock = given ?? new RLock();
  }

  /** Whether the last acquire (or the end of a wait) took the lock from a holder that had died: see {@link Lock.ownerDied}. */
  get ownerDied(): boolean {
    return this._lock.ownerDied;
  }

  /** Acquires the underlying lock, blocking this thread; see {@link Lock.acquireSync}. */
  acquireSync(options?: AcquireOptions): boolean;
  /** Python's positional form: `acquireSync(false)`, `acquireSync(true, 1000)`. */
  acquireSync(block: boolean, timeout?: number | null): boolean;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    if (options === undefined && timeout === undefined) return this._lock.acquireSync();
    return runSync(this._lock._acquireSteps(acquireTimeout(options, timeout)));
  }

  /** Acquires the underlying lock without blocking the event loop. */
  acquire(options?: AcquireOptions): Promise<boolean>;
  /** Python's positional form: `acquire(false)`, `acquire(true, 1000)`. */
  acquire(block: boolean, timeout?: number | null): Promise<boolean>;
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    return runAsync(() => this._lock._acquireSteps(acquireTimeout(options, timeout)));
  }

  /** Releases the underlying lock. */
  release(): void {
    this._lock.release();
  }

  /**
   * Releases the lock (which this process must hold), waits until notified or
   * `timeout` ms passed, and takes the lock again, without blocking the event
   * loop. Resolves to `false` when the time ran out.
   */
  wait(timeout?: number | null): Promise<boolean> {
    return runAsync(() => this._waitSteps(validateTimeout(timeout)));
  }

  /** As {@link wait}, blocking this thread. */
  waitSync(timeout?: number | null): boolean {
    return runSync(this._waitSteps(validateTimeout(timeout)));
  }

  /**
   * Waits until `predicate()` is truthy (checked first, then after each
   * notification, with the lock held) or `timeout` ms passed; resolves to the
   * predicate's last result.
   */
  waitFor<T>(predicate: () => T, timeout?: number | null): Promise<T> {
    return runAsync(() => this._waitForSteps(predicate, validateTimeout(timeout)));
  }

  /** As {@link waitFor}, blocking this thread. */
  waitForSync<T>(predicate: () => T, timeout?: number | null): T {
    return runSync(this._waitForSteps(predicate, validateTimeout(timeout)));
  }

  /** Wakes at most `n` (default 1) waiting processes, the oldest first. The lock must be held. */
  notify(n = 1): void {
    validateInteger(n, 'n', 0, Number.MAX_SAFE_INTEGER);
    this._checkOwned('notify');
    const words = this._words;
    if (n === 0 || Atomics.load(words, WAITERS) <= 0) return;
    let left = n;
    for (const slot of this._waitingOldestFirst()) {
      const waiter = Atomics.load(words, slot);
      // Withdrawn since the scan: a waiter whose time ran out frees its slot without the lock.
      if (waiter === 0 || (waiter & NOTIFIED) !== 0) continue;
      if (hasEnded(waiter)) {
        if (Atomics.compareExchange(words, slot, waiter, 0) === waiter) Atomics.sub(words, WAITERS, 1);
        continue;
      }
      // Fails when the waiter has just withdrawn (its time ran out).
      if (Atomics.compareExchange(words, slot, waiter, waiter | NOTIFIED) !== waiter) continue;
      Atomics.sub(words, WAITERS, 1);
      wake(words, slot, 1);
      if (--left === 0) break;
    }
    if (Atomics.load(words, OVERFLOW) > 0) {
      Atomics.add(words, SEQUENCE, 1);
      wake(words, SEQUENCE, SEM_VALUE_MAX);
    }
  }

  /** Wakes every waiting process. The lock must be held. */
  notifyAll(): void {
    this.notify(SEM_VALUE_MAX);
  }

  /** @internal */
  *_waitSteps(timeout: number | null): Steps<boolean> {
    this._checkOwned('wait');
    const words = this._words;
    const lock: ConditionLock = this._lock;
    const me = ownTid();
    // Counted first: a waiter killed before it took its slot leaves the count
    // too high (a notify then looks for nobody), never too low.
    Atomics.add(words, WAITERS, 1);
    const slot = this._claimSlot(me);
    if (slot < 0) Atomics.add(words, OVERFLOW, 1);
    const start = Atomics.load(words, SEQUENCE);
    const saved = lock._releaseAll();
    let notified = false;
    let withdrawn = false;
    try {
      if (slot >= 0) {
        const isNotified = (): boolean => Atomics.load(words, slot) !== me;
        notified = yield* sleepUntil(words, slot, isNotified, () => me, deadlineAfter(timeout));
        // Out of time: withdraw, unless a notify came first.
        withdrawn = !notified && Atomics.compareExchange(words, slot, me, 0) === me;
        notified = !withdrawn;
        if (notified) Atomics.store(words, slot, 0);
      } else {
        notified = yield* sleepUntil(words, SEQUENCE, () => Atomics.load(words, SEQUENCE) !== start, () => start, deadlineAfter(timeout));
      }
    } finally {
      yield* lock._restoreSteps(saved);
      if (slot < 0) {
        Atomics.sub(words, OVERFLOW, 1);
        Atomics.sub(words, WAITERS, 1);
      } else if (withdrawn || !notified) {
        // Withdrawn, or left by an error: free the slot unless a notify took it first.
        if (withdrawn || Atomics.compareExchange(words, slot, me, 0) === me) Atomics.sub(words, WAITERS, 1);
        else Atomics.store(words, slot, 0);
      }
    }
    return notified;
  }

  /** Claims a free waiter slot for thread `me` (the lock held), freeing those of waiters that died notified; -1 when all are taken. */
  private _claimSlot(me: number): number {
    const words = this._words;
    let free = -1;
    for (let slot = FIRST_WAITER; slot < WAITERS_END && free < 0; slot += 2) {
      const state = Atomics.load(words, slot);
      if (state === 0) free = slot;
      else if ((state & NOTIFIED) !== 0 && hasEnded(state & OWNER_MASK)) {
        Atomics.store(words, slot, 0);
        free = slot;
      }
    }
    if (free < 0) return -1;
    words[free + 1] = Atomics.add(words, TICKETS, 1);
    Atomics.store(words, free, me);
    return free;
  }

  /** The state words of the slots of waiters not yet notified, the oldest first. */
  private _waitingOldestFirst(): number[] {
    const words = this._words;
    const waiting: number[] = [];
    for (let slot = FIRST_WAITER; slot < WAITERS_END; slot += 2) {
      const state = Atomics.load(words, slot);
      if (state !== 0 && (state & NOTIFIED) === 0) waiting.push(slot);
    }
    return waiting.sort((a, b) => (before(words[a + 1], words[b + 1]) ? -1 : 1));
  }

  /** @internal */
  *_waitForSteps<T>(predicate: () => T, timeout: number | null): Steps<T> {
    validateFunction(predicate, 'predicate');
    const deadline = deadlineAfter(timeout);
    let result = predicate();
    while (!result) {
      const left = msUntil(deadline);
      if (left === 0) break;
      yield* this._waitSteps(left < 0 ? null : left);
      result = predicate();
    }
    return result;
  }

  private _checkOwned(what: string): void {
    if (!(this._lock as ConditionLock)._isOwned()) throw new Error(`cannot ${what} on un-acquired lock`);
  }
}


// --- Event ---------------------------------------------------------------------------

const STATE = 0;
const SET = 1;

/**
 * An event flag shared between processes, as `multiprocessing.Event`:
 * `wait` returns once the flag is set.
 *
 * The state word holds the flag in bit 0 and, above it, the number of times
 * the flag was set: a waiter that sleeps through a `set()` quickly followed
 * by `clear()` still sees that it was set while it waited, as Python's
 * `threading.Event` promises.
 */
export class Event {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: the state, the number of sleepers. */
  readonly _words: Int32Array;

  /** A new event, not set. */
  constructor() {
    [this._block, this._words] = claimWords(2);
  }

  /** Whether the flag is set. */
  isSet(): boolean {
    return (Atomics.load(this._words, STATE) & SET) !== 0;
  }

  /** Sets the flag and wakes every waiting process. */
  set(): void {
    const words = this._words;
    for (;;) {
      const state = Atomics.load(words, STATE);
      if ((state & SET) !== 0) return;
      if (Atomics.compareExchange(words, STATE, state, (state | SET) + 2) === state) break;
    }
    if (Atomics.load(words, SLEEPERS) !== 0) wake(words, STATE, SEM_VALUE_MAX);
  }

  /** Clears the flag. */
  clear(): void {
    Atomics.and(this._words, STATE, ~SET);
  }

  /**
   * Waits, without blocking the event loop, until the flag is set or
   * `timeout` ms passed. Resolves to `true` when it was set (before or during
   * the wait), `false` after a timeout.
   */
  wait(timeout?: number | null): Promise<boolean> {
    return runAsync(() => this._waitSteps(validateTimeout(timeout)));
  }

  /** As {@link wait}, blocking this thread. */
  waitSync(timeout?: number | null): boolean {
    return runSync(this._waitSteps(validateTimeout(timeout)));
  }

  /** @internal */
  _waitSteps(timeout: number | null): Steps<boolean> {
    const words = this._words;
    const start = Atomics.load(words, STATE);
    let seen = start;
    const setSinceStart = (): boolean => {
      seen = Atomics.load(words, STATE);
      return (seen & SET) !== 0 || (seen & ~SET) !== (start & ~SET);
    };
    return sleepUntil(words, STATE, setSinceStart, () => seen, deadlineAfter(timeout), SLEEPERS);
  }
}

// --- Barrier ------------------------------------------------------------------------

const BARRIER_STATE = 0;
const BARRIER_COUNT = 1;
/** The slots of the parties inside (their thread ids) from this word on, for the first 1024 parties. */
const FIRST_PARTY = 2;
const PARTY_SLOTS = 1024;
const FILLING = 0;
const DRAINING = 1;
const RESETTING = -1;
const BROKEN = -2;

/** Options of {@link Barrier}. */
export interface BarrierOptions {
  /** Run by one of the parties (the last to arrive) when all have arrived, before any is released. */
  action?: () => void;
  /** Default timeout of {@link Barrier.wait}, in milliseconds; `undefined`/`null`: none. */
  timeout?: number | null;
}

/**
 * A barrier for a fixed number of parties shared between processes, as
 * `multiprocessing.Barrier` (Python's `threading.Barrier` algorithm, on a
 * {@link Condition} and two shared words: its state and how many wait).
 * Each `wait` returns a distinct index in `[0, parties)`.
 *
 * A party that dies inside the barrier is counted out by the next one to
 * arrive (or, while the barrier drains, by those waiting to enter), so that
 * the barrier waits for a live party in its place instead of releasing the
 * others one short, or staying drained for ever. Each party inside has a slot
 * with its thread id, for the first 1024 parties.
 */
export class Barrier {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: state (filling, draining, resetting, broken), count, then the party slots. */
  readonly _words: Int32Array;
  /** @internal */ readonly _condition: Condition;
  /** @internal */ readonly _action: (() => void) | undefined;
  /** @internal */ readonly _timeout: number | null;
  private readonly _parties: number;

  /** A barrier for `parties` processes (an integer >= 1). */
  constructor(parties: number, options: BarrierOptions = {}) {
    validateInteger(parties, 'parties', 1);
    validateOptions(options, ['action', 'timeout'] as const);
    if (options.action !== undefined) validateFunction(options.action, 'options.action');
    const [block, words, adopted] = claimWords(FIRST_PARTY + Math.min(parties, PARTY_SLOTS));
    this._block = block;
    this._words = words;
    this._parties = parties;
    this._action = options.action;
    this._timeout = validateTimeout(options.timeout, 'options.timeout');
    this._condition = adopted?.condition ?? new Condition();
  }

  /** The number of parties. */
  get parties(): number {
    return this._parties;
  }

  /** How many parties wait at the barrier now. */
  get nWaiting(): number {
    return this._state() === FILLING ? this._count() : 0;
  }

  /** Whether the barrier is broken (see {@link abort}). */
  get broken(): boolean {
    return this._state() === BROKEN;
  }

  /**
   * Waits, without blocking the event loop, until all parties have called
   * `wait`; resolves to this party's index. Rejects with
   * {@link BrokenBarrierError} when the barrier is or gets broken, reset, or
   * this wait times out (which breaks it). `timeout` defaults to the
   * barrier's.
   */
  wait(timeout?: number | null): Promise<number> {
    return runAsync(() => this._waitSteps(timeout));
  }

  /** As {@link wait}, blocking this thread. */
  waitSync(timeout?: number | null): number {
    return runSync(this._waitSteps(timeout));
  }

  /** Returns the barrier to its empty state; parties waiting now get {@link BrokenBarrierError}. */
  reset(): void {
    this._locked(() => {
      if (this._count() > 0) {
        const state = this._state();
        if (state === FILLING || state === BROKEN) this._setState(RESETTING);
      } else {
        this._setState(FILLING);
      }
      this._condition.notifyAll();
    });
  }

  /** Breaks the barrier: waiting and future `wait` calls get {@link BrokenBarrierError} until {@link reset}. */
  abort(): void {
    this._locked(() => this._break());
  }

  /** @internal */
  *_waitSteps(timeoutArg: number | null | undefined): Steps<number> {
    const timeout = timeoutArg === undefined || timeoutArg === null ? this._timeout : validateTimeout(timeoutArg);
    const condition = this._condition;
    yield* condition._lock._acquireSteps(null);
    try {
      yield* this._enterSteps();
      const index = this._count();
      // Counted before it takes a slot: a party killed in between is one too many, never one too few.
      this._setCount(index + 1);
      const slot = this._claimSlot();
      try {
        if (index + 1 === this._parties) this._release();
        else yield* this._sleepSteps(timeout);
        return index;
      } finally {
        if (slot >= 0) Atomics.store(this._words, slot, 0);
        this._setCount(this._count() - 1);
        this._exit();
      }
    } finally {
      condition.release();
    }
  }

  /** Counts out the parties that died inside, then waits while the barrier drains or resets. */
  private *_enterSteps(): Steps<void> {
    let checkMs = FIRST_CHECK_MS;
    for (;;) {
      if (this._countOutDead() > 0) this._exit();
      if (this._state() !== RESETTING && this._state() !== DRAINING) break;
      // Those still inside may die before they leave: look again now and then.
      yield* this._condition._waitSteps(checkMs);
      checkMs = Math.min(2 * checkMs, LAST_CHECK_MS);
    }
    if (this._state() < 0) throw new BrokenBarrierError('the barrier is broken');
  }

  /** Frees the slots of the parties inside whose threads have ended and counts them out; returns how many. */
  private _countOutDead(): number {
    const words = this._words;
    let dead = 0;
    for (let slot = FIRST_PARTY; slot < words.length; slot++) {
      const party = Atomics.load(words, slot);
      if (party === 0 || !hasEnded(party)) continue;
      Atomics.store(words, slot, 0);
      dead++;
    }
    if (dead > 0) this._setCount(Math.max(0, this._count() - dead));
    return dead;
  }

  /** Records this thread in a free party slot; returns the slot, or -1 past the first 1024 parties. */
  private _claimSlot(): number {
    const words = this._words;
    for (let slot = FIRST_PARTY; slot < words.length; slot++) {
      if (Atomics.load(words, slot) === 0) {
        Atomics.store(words, slot, ownTid());
        return slot;
      }
    }
    return -1;
  }

  /** The last party: run the action, then let everyone go. */
  private _release(): void {
    try {
      this._action?.();
      this._setState(DRAINING);
      this._condition.notifyAll();
    } catch (error) {
      this._break();
      throw error;
    }
  }

  private *_sleepSteps(timeout: number | null): Steps<void> {
    const released = yield* this._condition._waitForSteps(() => this._state() !== FILLING, timeout);
    if (!released) {
      this._break();
      throw new BrokenBarrierError('the barrier timed out');
    }
    if (this._state() < 0) throw new BrokenBarrierError('the barrier is broken');
  }

  /** The last party out lets new ones in. */
  private _exit(): void {
    if (this._count() === 0 && (this._state() === RESETTING || this._state() === DRAINING)) {
      this._setState(FILLING);
      this._condition.notifyAll();
    }
  }

  private _break(): void {
    this._setState(BROKEN);
    this._condition.notifyAll();
  }

  private _locked(body: () => void): void {
    this._condition.acquireSync();
    try {
      body();
    } finally {
      this._condition.release();
    }
  }

  private _state(): number {
    return Atomics.load(this._words, BARRIER_STATE);
  }

  private _setState(state: number): void {
    Atomics.store(this._words, BARRIER_STATE, state);
  }

  private _count(): number {
    return Atomics.load(this._words, BARRIER_COUNT);
  }

  private _setCount(count: number): void {
    Atomics.store(this._words, BARRIER_COUNT, count);
  }
}

// --- crossing to other processes -------------------------------------------------------

/** A Lock or RLock reduced, as part of a Condition's state. */
interface LockState {
  readonly recursive: boolean;
  readonly block: BlockState;
}

interface ConditionState {
  readonly lock: LockState;
  readonly block: BlockState;
}

function reduceLock(lock: Lock | RLock): LockState {
  return { recursive: lock instanceof RLock, block: reduceBlock(lock._block) };
}

function rebuildLock(state: LockState): Lock | RLock {
  const adopted = { block: rebuildBlock(state.block) };
  return adopt(adopted, () => (state.recursive ? new RLock() : new Lock()));
}

function reduceCondition(condition: Condition): ConditionState {
  return { lock: reduceLock(condition._lock), block: reduceBlock(condition._block) };
}

function rebuildCondition(state: ConditionState): Condition {
  const lock = rebuildLock(state.lock);
  return adopt({ block: rebuildBlock(state.block), lock }, () => new Condition());
}

registerReducer(Lock, { kind: 'Lock', reduce: (lock) => reduceLock(lock).block, rebuild: (block: BlockState) => rebuildLock({ recursive: false, block }) as Lock });
registerReducer(RLock, { kind: 'RLock', reduce: (lock) => reduceLock(lock).block, rebuild: (block: BlockState) => rebuildLock({ recursive: true, block }) as RLock });

interface SemaphoreState {
  readonly block: BlockState;
  readonly bound: number;
}

registerReducer(Semaphore, {
  kind: 'Semaphore',
  reduce: (semaphore): SemaphoreState => ({ block: reduceBlock(semaphore._block), bound: semaphore._bound }),
  rebuild: (state: SemaphoreState) => {
    const adopted = { block: rebuildBlock(state.block) };
    // The bound of a BoundedSemaphore is its initial value.
    return adopt(adopted, () => (state.bound === SEM_VALUE_MAX ? new Semaphore(0) : new BoundedSemaphore(state.bound)));
  },
});

registerReducer(Condition, { kind: 'Condition', reduce: reduceCondition, rebuild: rebuildCondition });

registerReducer(Event, {
  kind: 'Event',
  reduce: (event) => reduceBlock(event._block),
  rebuild: (block: BlockState) => adopt({ block: rebuildBlock(block) }, () => new Event()),
});

interface BarrierState {
  readonly block: BlockState;
  readonly condition: ConditionState;
  readonly parties: number;
  readonly timeout: number | null;
}

registerReducer(Barrier, {
  kind: 'Barrier',
  reduce: (barrier): BarrierState => {
    if (barrier._action !== undefined) {
      throw new TypeError(
        'a Barrier with an action cannot be sent to another process (a function does not cross); ' +
          'use the fork start method, or run the action after wait() in the party that gets index 0',
      );
    }
    return {
      block: reduceBlock(barrier._block),
      condition: reduceCondition(barrier._condition),
      parties: barrier.parties,
      timeout: barrier._timeout,
    };
  },
  rebuild: (state: BarrierState) => {
    const condition = rebuildCondition(state.condition);
    const adopted = { block: rebuildBlock(state.block), condition };
    return adopt(adopted, () => new Barrier(state.parties, { timeout: state.timeout }));
  },
});
