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

// --- processes -------------------------------------------------------------

/** This process's pid, from the kernel (right in a forked child, also under jest's own `process`). */
function currentPid(): number {
  return loadNative()?.getpid() ?? process.pid;
}

/** The owner id of an RLock held here; a variable, as `process.pid` is slow to read on a hot path. */
let pid = currentPid();
let pidGeneration = forkGeneration();

/** {@link pid}, caught up lazily in a forked child (see at_fork.ts). */
function ownPid(): number {
  if (pidGeneration !== forkGeneration()) {
    pid = currentPid();
    pidGeneration = forkGeneration();
  }
  return pid;
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
 * Tries `tryOnce` until it succeeds or `deadline` passes, sleeping on
 * `view[index]` while it holds `sleepOn()` in between. `sleepOn()` is asked
 * right after a failed try: the value the word had when that try failed, so
 * that a change in between ends the sleep at once ('not-equal').
 * `sleepersIndex`, when >= 0, counts the sleepers, so that wakers may skip the
 * system call when there are none.
 */
function* sleepUntil(
  view: Int32Array,
  index: number,
  tryOnce: () => boolean,
  sleepOn: () => number,
  deadline: Deadline,
  sleepersIndex = -1,
): Steps<boolean> {
  for (;;) {
    if (tryOnce()) return true;
    const timeoutMs = msUntil(deadline);
    if (timeoutMs === 0) return false;
    const expected = sleepOn();
    if (sleepersIndex >= 0) Atomics.add(view, sleepersIndex, 1);
    let result: FutexWaitResult;
    try {
      result = yield { view, index, expected, timeoutMs };
    } finally {
      if (sleepersIndex >= 0) Atomics.sub(view, sleepersIndex, 1);
    }
    // A wake-up taken and then given up would be lost to the other sleepers:
    // always try once more before leaving.
    if (result === 'timed-out') return tryOnce();
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

const FREE = 0;
const LOCKED = 1;
const CONTENDED = 2;

/*
 * The mutex word, as Drepper's mutex but taken with exchange instead of
 * compare-and-exchange: V8 runs every Atomics call as a builtin, and
 * `Atomics.exchange` is the cheapest read-modify-write of them (~1.5x faster
 * than `compareExchange` measured here). The fast path writes LOCKED
 * unconditionally; when the word was CONTENDED that hides the sleepers, so the
 * slow path first puts CONTENDED back. A release that saw LOCKED in between
 * skipped its wake-up, but then the fix-up finds the word FREE and takes the
 * lock as CONTENDED: its own release wakes a sleeper. No wake-up is lost.
 */

/**
 * Takes the mutex word `words[index]`, the slow path: `previous` is what the
 * fast path's exchange to LOCKED returned, if it made one.
 */
function* lockWord(
  words: Int32Array,
  index: number,
  timeout: number | null,
  previous = Atomics.exchange(words, index, LOCKED),
): Steps<boolean> {
  if (previous === FREE) return true;
  if (previous === CONTENDED && Atomics.exchange(words, index, CONTENDED) === FREE) return true;
  if (timeout === 0) return false;
  // From now on take it as CONTENDED: we cannot know whether others sleep too.
  const take = (): boolean => Atomics.exchange(words, index, CONTENDED) === FREE;
  return yield* sleepUntil(words, index, take, () => CONTENDED, deadlineAfter(timeout));
}

/** Frees the mutex word; wakes one sleeper when there may be some. */
function unlockWord(words: Int32Array, index: number, what: string): void {
  const previous = Atomics.exchange(words, index, FREE);
  if (previous === LOCKED) return;
  if (previous === FREE) throw new Error(`release of an unlocked ${what}`);
  wake(words, index, 1);
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
}

/**
 * A non-recursive lock shared between processes, as `multiprocessing.Lock`.
 * Any process (and any async function of a process) may release it, not only
 * the one that acquired it; acquiring it again while held waits, also in the
 * process that holds it.
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
  /** @internal The mutex word: 0 free, 1 locked, 2 locked with (maybe) sleepers. */
  readonly _words: Int32Array;

  /** A new, unlocked lock in shared memory. */
  constructor() {
    super();
    [this._block, this._words] = claimWords(1);
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
    const previous = Atomics.exchange(this._words, 0, LOCKED);
    return previous === FREE || runSync(lockWord(this._words, 0, null, previous));
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
    const previous = Atomics.exchange(this._words, 0, LOCKED);
    return previous === FREE ? RESOLVED_TRUE : runAsync(() => lockWord(this._words, 0, null, previous));
  }

  /** Releases the lock. Throws an Error when it is not locked. */
  release(): void {
    unlockWord(this._words, 0, 'Lock');
  }

  /** @internal */
  _acquireSteps(timeout: number | null): Steps<boolean> {
    return lockWord(this._words, 0, timeout);
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

const OWNER = 1;
const COUNT = 2;

/**
 * A recursive lock shared between processes, as `multiprocessing.RLock`: the
 * process that holds it may acquire it again, and must release it as many
 * times. Only that process may release it.
 *
 * The owner is the process (Python's is a thread of a process): two async
 * functions of one process both "own" it, so an RLock does not keep them
 * apart; use a {@link Lock} for that.
 */
export class RLock extends Acquirable implements ConditionLock {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: the mutex, the owner's pid, the recursion count. */
  readonly _words: Int32Array;

  /** A new, unlocked recursive lock in shared memory. */
  constructor() {
    super();
    [this._block, this._words] = claimWords(3);
  }

  /**
   * Acquires the lock (again, when this process holds it), blocking this
   * thread until it is free or `timeout` ms passed; returns whether it was.
   */
  acquireSync(options?: AcquireOptions): boolean;
  /** Python's positional form: `acquireSync(false)`, `acquireSync(true, 1000)`. */
  acquireSync(block: boolean, timeout?: number | null): boolean;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    if (options !== undefined || timeout !== undefined) return runSync(this._acquireSteps(acquireTimeout(options, timeout)));
    const words = this._words;
    const previous = Atomics.exchange(words, 0, LOCKED);
    if (previous === FREE) {
      words[OWNER] = ownPid();
      words[COUNT] = 1;
      return true;
    }
    return this._recurse(previous) || runSync(this._lockSteps(null, previous));
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
   * Error when this process does not hold it.
   */
  release(): void {
    const words = this._words;
    if (words[OWNER] !== ownPid() || words[COUNT] <= 0) {
      throw new Error('cannot release un-acquired lock: this RLock is not held by this process');
    }
    if (--words[COUNT] === 0) {
      words[OWNER] = 0;
      unlockWord(words, 0, 'RLock');
    }
  }

  /** @internal */
  _acquireSteps(timeout: number | null): Steps<boolean> {
    const words = this._words;
    if (words[OWNER] === ownPid() && words[COUNT] > 0) return this._lockSteps(timeout, LOCKED);
    return this._lockSteps(timeout, Atomics.exchange(words, 0, LOCKED));
  }

  /**
   * Counts one more level when this process holds the lock. `previous` is what
   * an exchange to LOCKED returned: CONTENDED is put back.
   */
  private _recurse(previous: number): boolean {
    const words = this._words;
    if (words[OWNER] !== ownPid() || words[COUNT] <= 0) return false;
    if (previous === CONTENDED) Atomics.exchange(words, 0, CONTENDED);
    words[COUNT]++;
    return true;
  }

  private *_lockSteps(timeout: number | null, previous: number): Steps<boolean> {
    if (this._recurse(previous)) return true;
    if (!(yield* lockWord(this._words, 0, timeout, previous))) return false;
    this._own(1);
    return true;
  }

  /** @internal */
  _isOwned(): boolean {
    return this._words[OWNER] === ownPid() && this._words[COUNT] > 0;
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
    yield* lockWord(this._words, 0, null);
    this._own(count);
  }

  private _own(count: number): void {
    Atomics.store(this._words, OWNER, ownPid());
    Atomics.store(this._words, COUNT, count);
  }
}

// --- Semaphore -------------------------------------------------------------------

const VALUE = 0;
const SLEEPERS = 1;

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
 */
export class Semaphore extends Acquirable {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: the count, the number of sleepers. */
  readonly _words: Int32Array;
  /** @internal The largest count `release` may make. */
  readonly _bound: number;

  /** A semaphore whose count starts at `value` (an integer >= 0, default 1). */
  constructor(value = 1) {
    super();
    validateInteger(value, 'value', 0, SEM_VALUE_MAX);
    const [block, words, adopted] = claimWords(2);
    this._block = block;
    this._words = words;
    this._bound = this._boundFor(value);
    if (adopted === undefined) Atomics.store(words, VALUE, value);
  }

  /**
   * Takes one from the count, blocking this thread while it is 0, until
   * `timeout` ms passed; returns whether it took one.
   */
  acquireSync(options?: AcquireOptions): boolean;
  /** Python's positional form: `acquireSync(false)`, `acquireSync(true, 1000)`. */
  acquireSync(block: boolean, timeout?: number | null): boolean;
  acquireSync(options?: AcquireOptions | boolean, timeout?: number | null): boolean {
    if (options === undefined && timeout === undefined && tryDecrement(this._words)) return true;
    return runSync(this._acquireSteps(acquireTimeout(options, timeout)));
  }

  /** Takes one from the count without blocking the event loop; resolves to whether it did. */
  acquire(options?: AcquireOptions): Promise<boolean>;
  /** Python's positional form: `acquire(false)`, `acquire(true, 1000)`. */
  acquire(block: boolean, timeout?: number | null): Promise<boolean>;
  acquire(options?: AcquireOptions | boolean, timeout?: number | null): Promise<boolean> {
    return runAsync(() => this._acquireSteps(acquireTimeout(options, timeout)));
  }

  /** Gives one back to the count, waking one waiter. */
  release(): void {
    const words = this._words;
    const bound = this._bound;
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
  _acquireSteps(timeout: number | null): Steps<boolean> {
    const words = this._words;
    return sleepUntil(words, VALUE, () => tryDecrement(words), () => 0, deadlineAfter(timeout), SLEEPERS);
  }

  /** @internal */
  protected _boundFor(_value: number): number {
    return SEM_VALUE_MAX;
  }

  /** @internal */
  protected _overflowMessage(): string {
    return `semaphore count would exceed ${SEM_VALUE_MAX}`;
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

const SEQUENCE = 0;
const WAITERS = 1;
const TOKENS = 2;

/** Takes one of the notifications that `notify` handed out, if any is left. */
function takeToken(words: Int32Array): boolean {
  for (;;) {
    const tokens = Atomics.load(words, TOKENS);
    if (tokens <= 0) return false;
    if (Atomics.compareExchange(words, TOKENS, tokens, tokens - 1) === tokens) return true;
  }
}

/**
 * A condition variable shared between processes, as
 * `multiprocessing.Condition`: `wait` releases the lock, sleeps until
 * notified, and takes the lock again. `notify(n)` wakes at most `n` waiters.
 *
 * State: a sequence number that every notify changes (the futex word waiters
 * sleep on), the number of waiters not yet notified, and the notifications
 * handed out but not yet taken. The last two change only under the lock, a
 * waiter takes a notification only from a notify made after it began to wait,
 * and it leaves only with one or after its time ran out: `notify(n)` never
 * wakes more than `n`, and never one that came after it.
 */
export class Condition extends Acquirable {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: sequence, waiters, notifications. */
  readonly _words: Int32Array;
  /** @internal */ readonly _lock: Lock | RLock;

  /** A condition on `lock` (a {@link Lock} or {@link RLock}; a new RLock by default). */
  constructor(lock?: Lock | RLock) {
    super();
    const [block, words, adopted] = claimWords(3);
    this._block = block;
    this._words = words;
    const given = adopted?.lock ?? lock;
    if (given !== undefined && !(given instanceof Lock) && !(given instanceof RLock)) {
      throw new TypeError(`lock must be a Lock or an RLock, got ${describe(given)}`);
    }
    this._lock = given ?? new RLock();
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

  /** Wakes at most `n` (default 1) waiting processes. The lock must be held. */
  notify(n = 1): void {
    validateInteger(n, 'n', 0, Number.MAX_SAFE_INTEGER);
    this._checkOwned('notify');
    const words = this._words;
    const count = Math.min(n, Atomics.load(words, WAITERS));
    if (count <= 0) return;
    Atomics.sub(words, WAITERS, count);
    Atomics.add(words, TOKENS, count);
    Atomics.add(words, SEQUENCE, 1);
    wake(words, SEQUENCE, count);
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
    Atomics.add(words, WAITERS, 1);
    // Only a notify after this point is for us: a waiter must not take the
    // notification of one that waited before it.
    const start = Atomics.load(words, SEQUENCE);
    const saved = lock._releaseAll();
    let sequence = start;
    const notified = (): boolean => {
      sequence = Atomics.load(words, SEQUENCE); // read first: a notify after it ends the sleep at once
      return sequence !== start && takeToken(words);
    };
    let done = false;
    try {
      done = yield* sleepUntil(words, SEQUENCE, notified, () => sequence, deadlineAfter(timeout));
    } finally {
      yield* lock._restoreSteps(saved);
      // Under the lock again: a notification may have come with the timeout.
      if (!done) done = notified();
      if (!done) Atomics.sub(words, WAITERS, 1);
    }
    return done;
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
 */
export class Barrier {
  /** @internal */ readonly _block: SharedBlock;
  /** @internal Words: state (filling, draining, resetting, broken), count. */
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
    const [block, words, adopted] = claimWords(2);
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
      this._setCount(index + 1);
      try {
        if (index + 1 === this._parties) this._release();
        else yield* this._sleepSteps(timeout);
        return index;
      } finally {
        this._setCount(this._count() - 1);
        this._exit();
      }
    } finally {
      condition.release();
    }
  }

  /** Waits while the barrier drains or resets. */
  private *_enterSteps(): Steps<void> {
    while (this._state() === RESETTING || this._state() === DRAINING) yield* this._condition._waitSteps(null);
    if (this._state() < 0) throw new BrokenBarrierError('the barrier is broken');
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
