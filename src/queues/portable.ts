/**
 * Queue, SimpleQueue and JoinableQueue without the addon (on Windows, or with
 * `NODE_MULTIPROCESSING_NO_NATIVE=1`): the same classes and methods, their
 * items kept by a broker (broker/thread.ts), the main process's as a rule
 * (see broker/bridge.ts), as Python's queues keep theirs in a pipe and a
 * named semaphore on Windows.
 *
 * `put()` resolves (and `putSync()` returns) once the owner holds the item:
 * it is delivered whatever happens to its producer next. Each item goes to
 * one `get()`, in the order each producer put them. The `Sync` twins block
 * the thread, waiting for the I/O thread's answer. A queue whose broker's
 * process has ended fails every call with an Error whose `code` is
 * `ERR_MP_OWNER_GONE`.
 * @internal
 */
import { theBridge } from '../broker/bridge';
import { BrokerHandle, HandleState } from '../broker/handle';
import type { QueueCounts } from '../broker/wire';
import { dumps, loads, registerReducer } from '../reduction';
import { JoinableQueue, Queue, QueueOptions, SimpleQueue } from '../queues';
import { closedError as queueClosedError, limitOf } from './options';

/** The handle of a portable queue, and whether puts count tasks (a JoinableQueue's). */
interface PortableState {
  _h: BrokerHandle;
}

function openHandle(queue: PortableState): BrokerHandle {
  if (queue._h.closed) throw queueClosedError();
  return queue._h;
}

/** Rejects instead of throwing, as an async method does. */
function rejecting<T>(run: () => Promise<T>): Promise<T> {
  try {
    return run();
  } catch (error) {
    return Promise.reject(error);
  }
}

/** A Queue (and the queue half of a JoinableQueue) whose items its owner's broker keeps. */
export class PortableQueue<T = unknown> extends Queue<T> {
  declare _h: BrokerHandle;

  override put(obj: T, options?: QueueOptions): Promise<void> {
    return rejecting(() => {
      const timeout = limitOf(options);
      const item = dumps(obj, 'obj');
      const handle = openHandle(this);
      return handle.call<void>({ op: 'put', oid: handle.oid, item, timeout, counted: this instanceof JoinableQueue });
    });
  }

  override putSync(obj: T, options?: QueueOptions): void {
    const timeout = limitOf(options);
    const item = dumps(obj, 'obj');
    const handle = openHandle(this);
    handle.callSync<void>({ op: 'put', oid: handle.oid, item, timeout, counted: this instanceof JoinableQueue });
  }

  override get(options?: QueueOptions): Promise<T> {
    return rejecting(async () => {
      const timeout = limitOf(options);
      const handle = openHandle(this);
      return loads(await handle.call<Buffer>({ op: 'get', oid: handle.oid, timeout })) as T;
    });
  }

  override getSync(options?: QueueOptions): T {
    const timeout = limitOf(options);
    const handle = openHandle(this);
    return loads(handle.callSync<Buffer>({ op: 'get', oid: handle.oid, timeout })) as T;
  }

  override qsize(): number {
    return counts(this).size;
  }

  override empty(): boolean {
    return counts(this).size === 0;
  }

  override full(): boolean {
    const { size, maxsize } = counts(this);
    return maxsize > 0 && size >= maxsize;
  }

  override close(): void {
    this._h.close();
  }

  override get closed(): boolean {
    return this._h.closed;
  }
}

function counts(queue: PortableState): QueueCounts {
  const handle = openHandle(queue);
  return handle.callSync<QueueCounts>({ op: 'state', oid: handle.oid });
}

/** A JoinableQueue: a {@link PortableQueue} whose broker also counts unfinished tasks. */
export class PortableJoinableQueue<T = unknown> extends JoinableQueue<T> {
  declare _h: BrokerHandle;

  override taskDone(): void {
    const handle = openHandle(this);
    handle.callSync<void>({ op: 'taskDone', oid: handle.oid });
  }

  override join(): Promise<void> {
    return rejecting(() => {
      const handle = openHandle(this);
      return handle.call<void>({ op: 'join', oid: handle.oid });
    });
  }

  override joinSync(): void {
    const handle = openHandle(this);
    handle.callSync<void>({ op: 'join', oid: handle.oid });
  }
}

// A JoinableQueue is a Queue: its queue methods are PortableQueue's.
for (const name of Object.getOwnPropertyNames(PortableQueue.prototype)) {
  if (name === 'constructor' || Object.prototype.hasOwnProperty.call(PortableJoinableQueue.prototype, name)) continue;
  Object.defineProperty(PortableJoinableQueue.prototype, name, Object.getOwnPropertyDescriptor(PortableQueue.prototype, name) as PropertyDescriptor);
}

/** A SimpleQueue whose items its owner's broker keeps. */
export class PortableSimpleQueue<T = unknown> extends SimpleQueue<T> {
  declare _h: BrokerHandle;

  override put(obj: T): void {
    const item = dumps(obj, 'obj');
    const handle = openHandle(this);
    handle.callSync<void>({ op: 'put', oid: handle.oid, item, timeout: null, counted: false });
  }

  override get(): Promise<T> {
    return rejecting(async () => {
      const handle = openHandle(this);
      return loads(await handle.call<Buffer>({ op: 'get', oid: handle.oid, timeout: null })) as T;
    });
  }

  override getSync(): T {
    const handle = openHandle(this);
    return loads(handle.callSync<Buffer>({ op: 'get', oid: handle.oid, timeout: null })) as T;
  }

  override empty(): boolean {
    return counts(this).size === 0;
  }

  override close(): void {
    this._h.close();
  }

  override get closed(): boolean {
    return this._h.closed;
  }
}

// --- making them ----------------------------------------------------------------------------------

/** The library's class -> its portable twin. */
const TWINS = new Map<object, object>([
  [Queue.prototype, PortableQueue.prototype],
  [JoinableQueue.prototype, PortableJoinableQueue.prototype],
  [SimpleQueue.prototype, PortableSimpleQueue.prototype],
]);
const PORTABLE = new Set(TWINS.values());

/**
 * The prototype a new queue of class `type` takes. A user's subclass is
 * re-parented once onto the portable twin of the library class it extends:
 * without the addon every queue of the process is portable, and its
 * `super.put()` must reach the portable `put`.
 */
function prototypeFor(type: abstract new (...args: never[]) => unknown): object {
  const twin = TWINS.get(type.prototype);
  if (twin !== undefined) return twin;
  for (let proto = type.prototype as object; ; proto = Object.getPrototypeOf(proto) as object) {
    const parent = Object.getPrototypeOf(proto) as object;
    if (PORTABLE.has(parent)) break;
    const parentTwin = TWINS.get(parent);
    if (parentTwin !== undefined) {
      Object.setPrototypeOf(proto, parentTwin);
      break;
    }
  }
  return type.prototype as object;
}

function make<Q>(prototype: object, handle: BrokerHandle): Q {
  const queue = Object.create(prototype) as Q & PortableState;
  queue._h = handle;
  handle.watch(queue);
  return queue;
}

/** A new queue of class `type` (Queue, JoinableQueue, or a subclass) in the broker queues are made in; `maxsize` 0: no limit. */
export function newQueue<Q>(type: abstract new (...args: never[]) => unknown, maxsize: number): Q {
  const [home, oid] = theBridge().create<number>({ op: 'queue', maxsize });
  return make<Q>(prototypeFor(type), new BrokerHandle(home, oid));
}

/** A new SimpleQueue (or subclass). */
export function newSimpleQueue<Q>(type: abstract new (...args: never[]) => unknown): Q {
  return newQueue<Q>(type, 0);
}

for (const [type, kind] of [
  [PortableQueue, 'PortableQueue'],
  [PortableJoinableQueue, 'PortableJoinableQueue'],
  [PortableSimpleQueue, 'PortableSimpleQueue'],
] as const) {
  registerReducer<PortableState, HandleState>(type as unknown as abstract new () => PortableState, {
    kind,
    reduce: (queue) => openHandle(queue).reduce(),
    rebuild: (state) => make<PortableState>(type.prototype, BrokerHandle.rebuild(state)),
  });
}
