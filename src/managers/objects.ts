/**
 * The objects a SyncManager's server holds, one class per typeid, as the
 * objects CPython's server holds (`dict`, `list`, `Namespace`, `queue.Queue`,
 * `threading.Lock`...). They live in the server process only; clients call
 * their methods through proxies. The server runs every call on one event
 * loop, so none needs a lock of its own; a call that must wait parks a waiter
 * (waiting.ts) instead of a thread.
 *
 * Errors keep Python's class names (`KeyError`, `IndexError`, `ValueError`):
 * a proxy rejects with an Error of the same name and message.
 * @internal
 */
import { isDeepStrictEqual } from 'util';

import { BrokenBarrierError, Empty, Full } from '../errors';
import { describe, validateInteger, validateOptions, validateTimeout } from '../validate';
import { Caller, currentCaller, WaitQueue } from './waiting';

/** An Error whose `name` is Python's class name, e.g. `KeyError`. */
export function pythonError(name: 'KeyError' | 'IndexError' | 'ValueError' | 'AttributeError', message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

// --- dict ------------------------------------------------------------------

/** What a dict key may be: compared by value, as Map compares them. */
export type DictKey = string | number | bigint | boolean | null | undefined | symbol;

function validateKey(key: unknown): DictKey {
  if (typeof key === 'object' && key !== null) {
    throw new TypeError(`a manager dict's keys are compared by value: a key must be a string, number, bigint, boolean, null or undefined, got ${describe(key)}`);
  }
  if (typeof key === 'function' || typeof key === 'symbol') throw new TypeError(`a manager dict's key cannot be ${describe(key)}`);
  return key as DictKey;
}

function keyName(key: unknown): string {
  return typeof key === 'string' ? JSON.stringify(key) : String(key);
}

/** The entries of what `update()` takes: a plain object, a Map, or an array of [key, value]. */
function entriesOf(other: unknown, what: string): Iterable<[unknown, unknown]> {
  if (other instanceof Map || other instanceof ServerDict) return other.entries();
  if (Array.isArray(other)) {
    for (const [i, item] of other.entries()) {
      if (!Array.isArray(item) || item.length !== 2) throw new TypeError(`${what}[${i}] must be a [key, value] pair, got ${describe(item)}`);
    }
    return other as [unknown, unknown][];
  }
  if (typeof other === 'object' && other !== null) return Object.entries(other);
  throw new TypeError(`${what} must be an object, a Map or an array of [key, value] pairs, got ${describe(other)}`);
}

/** A dict: a Map of values by key, with Python's dict methods in JS's names. */
export class ServerDict {
  readonly #map = new Map<DictKey, unknown>();

  constructor(init?: unknown) {
    if (init !== undefined && init !== null) this.update(init, 'init');
  }

  get(key: unknown, defaultValue?: unknown): unknown {
    const k = validateKey(key);
    return this.#map.has(k) ? this.#map.get(k) : defaultValue;
  }

  set(key: unknown, value: unknown): void {
    this.#map.set(validateKey(key), value);
  }

  has(key: unknown): boolean {
    return this.#map.has(validateKey(key));
  }

  delete(key: unknown): boolean {
    return this.#map.delete(validateKey(key));
  }

  keys(): DictKey[] {
    return [...this.#map.keys()];
  }

  values(): unknown[] {
    return [...this.#map.values()];
  }

  entries(): [DictKey, unknown][] {
    return [...this.#map.entries()];
  }

  size(): number {
    return this.#map.size;
  }

  clear(): void {
    this.#map.clear();
  }

  update(other: unknown, what = 'other'): void {
    for (const [key, value] of entriesOf(other, what)) this.set(key, value);
  }

  setDefault(key: unknown, defaultValue?: unknown): unknown {
    const k = validateKey(key);
    if (!this.#map.has(k)) this.#map.set(k, defaultValue);
    return this.#map.get(k);
  }

  /** Removes `key` and returns its value; without `defaultValue`, a missing key is a KeyError. */
  pop(key: unknown, ...defaultValue: [unknown?]): unknown {
    const k = validateKey(key);
    if (this.#map.has(k)) {
      const value = this.#map.get(k);
      this.#map.delete(k);
      return value;
    }
    if (defaultValue.length > 0) return defaultValue[0];
    throw pythonError('KeyError', keyName(key));
  }

  toObject(): Record<string, unknown> {
    const object: Record<string, unknown> = {};
    for (const [key, value] of this.#map) object[String(key)] = value;
    return object;
  }
}

// --- list ------------------------------------------------------------------

/** `index` as Python reads it (negative counts from the end); `null` when out of range. */
function listIndex(index: unknown, length: number): number | null {
  const i = validateInteger(index, 'index', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const at = i < 0 ? length + i : i;
  return at >= 0 && at < length ? at : null;
}

/** Python's ordering of sortable values: numbers and bigints together, strings apart, nothing else. */
function compareItems(a: unknown, b: unknown): number {
  const numeric = (v: unknown): boolean => typeof v === 'number' || typeof v === 'bigint';
  if ((numeric(a) && numeric(b)) || (typeof a === 'string' && typeof b === 'string')) {
    return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
  }
  throw new TypeError(`'<' not supported between ${describe(a)} and ${describe(b)}`);
}

/** A list: an array with Python's list methods in JS's names. */
export class ServerList {
  readonly #items: unknown[];

  constructor(init?: unknown) {
    if (init === undefined || init === null) this.#items = [];
    else if (typeof init === 'object' && Symbol.iterator in init) this.#items = [...(init as Iterable<unknown>)];
    else throw new TypeError(`init must be an array or an iterable, got ${describe(init)}`);
  }

  get(index: unknown): unknown {
    const at = listIndex(index, this.#items.length);
    if (at === null) throw pythonError('IndexError', 'list index out of range');
    return this.#items[at];
  }

  set(index: unknown, value: unknown): void {
    const at = listIndex(index, this.#items.length);
    if (at === null) throw pythonError('IndexError', 'list assignment index out of range');
    this.#items[at] = value;
  }

  append(value: unknown): void {
    this.#items.push(value);
  }

  extend(values: unknown): void {
    if (typeof values !== 'object' || values === null || !(Symbol.iterator in values)) {
      throw new TypeError(`values must be an array or an iterable, got ${describe(values)}`);
    }
    for (const value of values as Iterable<unknown>) this.#items.push(value);
  }

  /** Inserts before `index`; an index past either end inserts at that end, as Python's. */
  insert(index: unknown, value: unknown): void {
    const i = validateInteger(index, 'index', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const length = this.#items.length;
    const at = i < 0 ? Math.max(0, length + i) : Math.min(i, length);
    this.#items.splice(at, 0, value);
  }

  pop(index: unknown = -1): unknown {
    if (this.#items.length === 0) throw pythonError('IndexError', 'pop from empty list');
    const at = listIndex(index, this.#items.length);
    if (at === null) throw pythonError('IndexError', 'pop index out of range');
    return this.#items.splice(at, 1)[0];
  }

  /** Removes the first item equal (deeply) to `value`; ValueError when there is none. */
  remove(value: unknown): void {
    const at = this.#items.findIndex((item) => isDeepStrictEqual(item, value));
    if (at < 0) throw pythonError('ValueError', 'list.remove(x): x not in list');
    this.#items.splice(at, 1);
  }

  /** The index of the first item equal (deeply) to `value` in [start, end); ValueError when there is none. */
  index(value: unknown, start = 0, end = this.#items.length): number {
    const from = validateInteger(start, 'start', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const to = validateInteger(end, 'end', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const length = this.#items.length;
    const clamp = (i: number): number => (i < 0 ? Math.max(0, length + i) : Math.min(i, length));
    for (let i = clamp(from); i < clamp(to); i++) if (isDeepStrictEqual(this.#items[i], value)) return i;
    throw pythonError('ValueError', `${describe(value)} is not in list`);
  }

  length(): number {
    return this.#items.length;
  }

  slice(start?: number, end?: number): unknown[] {
    return this.#items.slice(start, end);
  }

  /** Sorts in place as Python does: numbers (and bigints) or strings, ascending unless `reverse`. */
  sort(options: { reverse?: boolean } = {}): void {
    const { reverse = false } = validateOptions(options, ['reverse'] as const);
    if (typeof reverse !== 'boolean') throw new TypeError(`options.reverse must be a boolean, got ${describe(reverse)}`);
    this.#items.sort(reverse ? (a, b) => compareItems(b, a) : compareItems);
  }

  toArray(): unknown[] {
    return [...this.#items];
  }
}

// --- Namespace -------------------------------------------------------------

function validateName(name: unknown): string {
  if (typeof name !== 'string') throw new TypeError(`an attribute name must be a string, got ${describe(name)}`);
  return name;
}

/** A Namespace: named values, as Python's `managers.Namespace`. */
export class ServerNamespace {
  readonly #values = new Map<string, unknown>();

  constructor(init?: unknown) {
    if (init === undefined || init === null) return;
    if (typeof init !== 'object') throw new TypeError(`init must be an object, got ${describe(init)}`);
    for (const [name, value] of Object.entries(init)) this.#values.set(name, value);
  }

  getAttr(name: unknown): unknown {
    return this.#values.get(validateName(name));
  }

  setAttr(name: unknown, value: unknown): void {
    this.#values.set(validateName(name), value);
  }

  hasAttr(name: unknown): boolean {
    return this.#values.has(validateName(name));
  }

  delAttr(name: unknown): boolean {
    return this.#values.delete(validateName(name));
  }

  keys(): string[] {
    return [...this.#values.keys()];
  }

  toObject(): Record<string, unknown> {
    return Object.fromEntries(this.#values);
  }
}

// --- Queue -----------------------------------------------------------------

/** Options of `put`/`get`, as Python's `block=True, timeout=None`. */
export interface BlockOptions {
  block?: boolean;
  timeout?: number | null;
}

/** How long `options` allow to wait: `null` for ever, 0 not at all. */
function waitLimit(options: BlockOptions | undefined): number | null {
  if (options === null) return null;
  const { block = true, timeout } = validateOptions(options, ['block', 'timeout'] as const);
  if (typeof block !== 'boolean') throw new TypeError(`options.block must be a boolean, got ${describe(block)}`);
  const limit = validateTimeout(timeout, 'options.timeout');
  return block ? limit : 0;
}

const TIMED_OUT = Symbol('timed out');

/** A FIFO queue of the server, as Python's `queue.Queue`: what a manager's `Queue()` serves. */
export class ServerQueue {
  readonly #items: unknown[] = [];
  readonly #getters = new WaitQueue<unknown>();
  /** Producers waiting for room; woken with `true` when their item went in. */
  readonly #putters = new WaitQueue<boolean>();
  readonly #waitingItems = new Map<symbol, unknown>();
  readonly #maxsize: number;

  constructor(maxsize: unknown = 0) {
    this.#maxsize = validateInteger(maxsize, 'maxsize', -(2 ** 31), 2 ** 31 - 1);
  }

  /** Called once an item went in: the queue owes one `taskDone()` more (JoinableQueue). */
  protected added(): void {}

  #isFull(): boolean {
    return this.#maxsize > 0 && this.#items.length >= this.#maxsize;
  }

  async put(item: unknown, options?: BlockOptions): Promise<void> {
    const limit = waitLimit(options);
    const caller = currentCaller();
    if (this.#getters.wakeNext(item)) return this.added();
    if (!this.#isFull()) {
      this.#items.push(item);
      return this.added();
    }
    if (!(await this.#waitForRoom(item, limit, caller))) throw new Full('the queue is full');
  }

  putNowait(item: unknown): Promise<void> {
    return this.put(item, { block: false });
  }

  /** Parks `item` until a `get` takes room for it; false when the time ran out first. */
  async #waitForRoom(item: unknown, limit: number | null, caller: Caller): Promise<boolean> {
    const key = Symbol('item');
    this.#waitingItems.set(key, item);
    this.#putterKeys.push(key);
    const done = await this.#putters.wait(limit, false, caller);
    if (!done) {
      this.#waitingItems.delete(key);
      this.#putterKeys.splice(this.#putterKeys.indexOf(key), 1);
    }
    return done;
  }

  readonly #putterKeys: symbol[] = [];

  async get(options?: BlockOptions): Promise<unknown> {
    const limit = waitLimit(options);
    if (this.#items.length > 0) {
      const item = this.#items.shift();
      this.#admitWaitingPutter();
      return item;
    }
    const item = await this.#getters.wait(limit, TIMED_OUT);
    if (item === TIMED_OUT) throw new Empty('the queue is empty');
    return item;
  }

  getNowait(): Promise<unknown> {
    return this.get({ block: false });
  }

  /** Room was made: the longest-waiting producer's item goes in. */
  #admitWaitingPutter(): void {
    const key = this.#putterKeys.shift();
    if (key === undefined) return;
    this.#items.push(this.#waitingItems.get(key));
    this.#waitingItems.delete(key);
    this.added();
    this.#putters.wakeNext(true);
  }

  qsize(): number {
    return this.#items.length;
  }

  empty(): boolean {
    return this.#items.length === 0;
  }

  full(): boolean {
    return this.#isFull();
  }
}

/** A queue whose consumers say when each item is done, as Python's `queue.Queue` with `join()`. */
export class ServerJoinableQueue extends ServerQueue {
  #unfinished = 0;
  readonly #joiners = new WaitQueue<boolean>();

  protected override added(): void {
    this.#unfinished += 1;
  }

  taskDone(): void {
    if (this.#unfinished === 0) throw pythonError('ValueError', 'taskDone() called too many times');
    this.#unfinished -= 1;
    if (this.#unfinished === 0) this.#joiners.wakeAll(true);
  }

  async join(): Promise<void> {
    if (this.#unfinished > 0) await this.#joiners.wait(null, false);
  }
}

// --- locks and semaphores --------------------------------------------------

/** Options of `acquire`, as Python's `acquire(block=True, timeout=None)`. */
export type AcquireOptions = BlockOptions;

/** What a {@link ServerCondition} needs of its lock. */
interface ConditionLock {
  acquire(options?: AcquireOptions): Promise<boolean>;
  release(): void;
  /** True when the calling client may wait or notify. */
  isOwned(caller: Caller): boolean;
  /** Releases completely for a wait; returns what {@link restore} needs. */
  releaseAll(caller: Caller): number;
  restore(caller: Caller, saved: number): Promise<void>;
}

/** A lock without an owner, as `threading.Lock`: any client may release it. */
export class ServerLock implements ConditionLock {
  #locked = false;
  readonly #waiters = new WaitQueue<boolean>();

  async acquire(options?: AcquireOptions): Promise<boolean> {
    const limit = waitLimit(options);
    if (!this.#locked) return (this.#locked = true);
    return this.#waiters.wait(limit, false);
  }

  release(): void {
    if (!this.#locked) throw pythonError('ValueError', 'release of an unlocked Lock');
    // Handed over to the longest waiter: it stays locked.
    if (!this.#waiters.wakeNext(true)) this.#locked = false;
  }

  locked(): boolean {
    return this.#locked;
  }

  isOwned(): boolean {
    return this.#locked;
  }

  releaseAll(): number {
    this.release();
    return 1;
  }

  async restore(caller: Caller): Promise<void> {
    if (!this.#locked) this.#locked = true;
    else await this.#waiters.wait(null, false, caller);
  }
}

/** A recursive lock owned by the client process that acquired it, as `threading.RLock`. */
export class ServerRLock implements ConditionLock {
  #owner: string | null = null;
  #count = 0;
  readonly #waiters = new WaitQueue<boolean>();

  async acquire(options?: AcquireOptions): Promise<boolean> {
    const limit = waitLimit(options);
    const caller = currentCaller();
    if (this.#owner === caller.id) {
      this.#count += 1;
      return true;
    }
    if (this.#owner === null) {
      this.#owner = caller.id;
      this.#count = 1;
      return true;
    }
    return this.#waitFor(caller, limit, 1);
  }

  async #waitFor(caller: Caller, limit: number | null, count: number): Promise<boolean> {
    // The releaser hands the lock over by making the woken waiter its owner.
    const got = await this.#waiters.wait(limit, false, caller);
    if (got) {
      this.#owner = caller.id;
      this.#count = count;
    }
    return got;
  }

  release(): void {
    if (this.#owner !== currentCaller().id) throw new Error('cannot release un-acquired lock');
    this.#count -= 1;
    if (this.#count === 0) this.#handOver();
  }

  #handOver(): void {
    this.#owner = null;
    // The woken waiter's continuation runs later: keep the lock taken until then.
    if (this.#waiters.size > 0) {
      this.#owner = '';
      this.#waiters.wakeNext(true);
    }
  }

  isOwned(caller: Caller): boolean {
    return this.#owner === caller.id;
  }

  releaseAll(): number {
    const count = this.#count;
    this.#count = 0;
    this.#handOver();
    return count;
  }

  async restore(caller: Caller, saved: number): Promise<void> {
    if (this.#owner === null) {
      this.#owner = caller.id;
      this.#count = saved;
    } else {
      await this.#waitFor(caller, null, saved);
    }
  }
}

/** A counter of permits, as `threading.Semaphore`. */
export class ServerSemaphore {
  protected value: number;
  readonly #waiters = new WaitQueue<boolean>();

  constructor(value: unknown = 1) {
    this.value = validateInteger(value, 'value', 0);
  }

  async acquire(options?: AcquireOptions): Promise<boolean> {
    const limit = waitLimit(options);
    if (this.value > 0) {
      this.value -= 1;
      return true;
    }
    return this.#waiters.wait(limit, false);
  }

  release(): void {
    // A waiter takes the permit directly.
    if (!this.#waiters.wakeNext(true)) this.value += 1;
  }

  getValue(): number {
    return this.value;
  }
}

/** A semaphore that may not be released above its initial value, as `threading.BoundedSemaphore`. */
export class ServerBoundedSemaphore extends ServerSemaphore {
  readonly #bound: number;

  constructor(value: unknown = 1) {
    super(value);
    this.#bound = this.value;
  }

  override release(): void {
    if (this.value >= this.#bound) throw pythonError('ValueError', 'Semaphore released too many times');
    super.release();
  }
}

// --- Condition, Event, Barrier ---------------------------------------------

/** A condition variable over a lock of the server (an RLock by default), as `threading.Condition`. */
export class ServerCondition {
  readonly #lock: ConditionLock;
  readonly #waiters = new WaitQueue<boolean>();

  constructor(lock?: unknown) {
    if (lock === undefined || lock === null) this.#lock = new ServerRLock();
    else if (lock instanceof ServerLock || lock instanceof ServerRLock) this.#lock = lock;
    else throw new TypeError(`lock must be a Lock or an RLock of the same manager, got ${describe(lock)}`);
  }

  acquire(options?: AcquireOptions): Promise<boolean> {
    return this.#lock.acquire(options);
  }

  release(): void {
    this.#lock.release();
  }

  #checkOwned(caller: Caller, what: string): void {
    if (!this.#lock.isOwned(caller)) throw new Error(`cannot ${what} on un-acquired lock`);
  }

  /** Releases the lock, waits for a notify (or the timeout), takes the lock again; false on timeout. */
  async wait(timeout?: number | null): Promise<boolean> {
    const limit = validateTimeout(timeout);
    const caller = currentCaller();
    this.#checkOwned(caller, 'wait');
    const saved = this.#lock.releaseAll(caller);
    const notified = await this.#waiters.wait(limit, false, caller);
    await this.#lock.restore(caller, saved);
    return notified;
  }

  notify(n: unknown = 1): void {
    const count = validateInteger(n, 'n', 0);
    this.#checkOwned(currentCaller(), 'notify');
    for (let i = 0; i < count && this.#waiters.wakeNext(true); i++);
  }

  notifyAll(): void {
    this.#checkOwned(currentCaller(), 'notify');
    this.#waiters.wakeAll(true);
  }
}

/** A flag clients wait for, as `threading.Event`. */
export class ServerEvent {
  #flag = false;
  readonly #waiters = new WaitQueue<boolean>();

  isSet(): boolean {
    return this.#flag;
  }

  set(): void {
    this.#flag = true;
    this.#waiters.wakeAll(true);
  }

  clear(): void {
    this.#flag = false;
  }

  /** True once the flag is set; false when the timeout ran out first. */
  async wait(timeout?: number | null): Promise<boolean> {
    const limit = validateTimeout(timeout);
    if (this.#flag) return true;
    return this.#waiters.wait(limit, false);
  }
}

/** A cycle of the barrier: the parties waiting in it, and whether it broke. */
interface BarrierCycle {
  broken: boolean;
  readonly waiters: WaitQueue<boolean>;
}

/** A barrier for `parties` clients, as `threading.Barrier` (an action cannot cross to the server). */
export class ServerBarrier {
  readonly #parties: number;
  readonly #timeout: number | null;
  #count = 0;
  #cycle: BarrierCycle = { broken: false, waiters: new WaitQueue<boolean>() };

  constructor(parties: unknown, options: { timeout?: number | null } = {}) {
    this.#parties = validateInteger(parties, 'parties', 1);
    const { action, timeout } = validateOptions(options, ['action', 'timeout'] as const);
    if (action !== undefined) {
      throw new TypeError("a manager's Barrier takes no action: a function cannot be sent to the server; run it where wait() resolves with index 0");
    }
    this.#timeout = validateTimeout(timeout, 'options.timeout');
  }

  /** Resolves with this party's index (0 .. parties - 1) once all have come; BrokenBarrierError otherwise. */
  async wait(timeout?: number | null): Promise<number> {
    const limit = timeout === undefined ? this.#timeout : validateTimeout(timeout);
    const cycle = this.#cycle;
    if (cycle.broken) throw new BrokenBarrierError('the barrier is broken');
    const index = this.#count;
    this.#count += 1;
    if (this.#count === this.#parties) {
      this.#count = 0;
      this.#cycle = { broken: false, waiters: new WaitQueue<boolean>() };
      cycle.waiters.wakeAll(true);
      return index;
    }
    const passed = await cycle.waiters.wait(limit, false);
    if (!passed) {
      if (!cycle.broken) this.#break(cycle);
      throw new BrokenBarrierError('the barrier is broken');
    }
    return index;
  }

  #break(cycle: BarrierCycle): void {
    cycle.broken = true;
    if (cycle === this.#cycle) this.#count = 0;
    cycle.waiters.wakeAll(false);
  }

  abort(): void {
    this.#break(this.#cycle);
  }

  reset(): void {
    const cycle = this.#cycle;
    this.#cycle = { broken: false, waiters: new WaitQueue<boolean>() };
    this.#count = 0;
    if (cycle.waiters.size > 0) {
      cycle.broken = true;
      cycle.waiters.wakeAll(false);
    }
  }

  parties(): number {
    return this.#parties;
  }

  nWaiting(): number {
    return this.#count;
  }

  broken(): boolean {
    return this.#cycle.broken;
  }
}

// --- Value and Array ---------------------------------------------------------

type SharedCtypes = typeof import('../sharedctypes');

/** sharedctypes, loaded by the first Value or Array of the server. */
function sharedctypes(): SharedCtypes {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('../sharedctypes') as SharedCtypes;
}

/**
 * One typed item, as the server's `Value(typecode, value)`: held in a
 * RawValue of the server, so that writes are checked and converted as
 * `mp.RawValue` does (`'i'` wraps, `'c'` is a one-character string...).
 */
export class ServerValue {
  readonly #item: ReturnType<SharedCtypes['RawValue']>;

  constructor(typecode: unknown, value?: unknown) {
    this.#item = sharedctypes().RawValue(typecode as 'd', value as number | undefined);
  }

  get(): unknown {
    return this.#item.value;
  }

  set(value: unknown): void {
    this.#item.value = value as number;
  }
}

/** Typed items, as the server's `Array(typecode, sequence)`: a RawArray of the server. */
export class ServerArray {
  readonly #items: ReturnType<SharedCtypes['RawArray']>;
  /** Checks and converts a written item as a RawValue of the same typecode does. */
  readonly #scratch: ServerValue;

  constructor(typecode: unknown, sizeOrValues: unknown) {
    this.#items = sharedctypes().RawArray(typecode as 'd', sizeOrValues as number);
    this.#scratch = new ServerValue(typecode);
  }

  get(index: unknown): unknown {
    const at = listIndex(index, this.#items.length);
    if (at === null) throw pythonError('IndexError', 'array index out of range');
    return this.#items[at];
  }

  set(index: unknown, value: unknown): void {
    const at = listIndex(index, this.#items.length);
    if (at === null) throw pythonError('IndexError', 'array assignment index out of range');
    this.#scratch.set(value);
    const item = this.#scratch.get();
    this.#items[at] = (typeof item === 'string' ? item.charCodeAt(0) : item) as number;
  }

  length(): number {
    return this.#items.length;
  }

  toArray(): unknown[] {
    return [...(this.#items as ArrayLike<unknown> & Iterable<unknown>)];
  }
}
