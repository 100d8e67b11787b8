/**
 * node-multiprocessing: Python's `multiprocessing` for Node.js, on real POSIX
 * processes. Every name here follows Python's, in camelCase; timeouts are in
 * milliseconds; methods that may wait return Promises and have a `Sync` twin.
 * @packageDocumentation
 */
// Loading the package loads as little as it can: every byte of heap it adds
// is copied by each fork() and torn down by each child's exit. Loaded with the
// package, the Process, shared memory and synchronisation modules made
// fork + _exit + waitpid 0.15 ms slower on a 2-core machine. So:
// - `os` and the errors load with the package, everything else on first use
//   of one of its exports (see `lazy.ts`);
// - Node modules that only some features need (crypto, child_process, which
//   brings net and dgram, v8, worker_threads) are required where first used.
//
// What a forked child runs of `os` and of the Process path is compiled
// eagerly, so that forked children find it compiled (see eager/compilation.ts).
import './eager/begin';
import * as os from './os';
import './eager/end';

import type * as ConnectionModule from './connection';
import type * as Context from './context';
import type * as Managers from './managers';
import { compileEagerly } from './eager/compilation';
import { defineLazyExports } from './lazy';
import type * as PoolModule from './pool';
import type * as ProcessModule from './process';
import type * as Queues from './queues';
import type * as SharedCtypes from './sharedctypes';
import type * as SharedMemoryModule from './shared_memory';
import type * as Synchronize from './synchronize';

export { os };
export * from './errors';

// --- loaded on first use ---------------------------------------------------
// The types are exported as usual; each value is declared here and defined by
// defineLazyExports() below (test/00.package checks the lists against the
// modules' own exports).

export type * from './context';
export type * from './process';
export type * from './synchronize';
export type * from './sharedctypes';
export type * from './shared_memory';
export type {
  ManagerOptions,
  RegisterOptions,
  Initializer,
  Address,
  DictKey,
  ProxyClass,
  DictProxy,
  ListProxy,
  NamespaceProxy,
  ValueProxy,
  ArrayProxy,
  QueueProxy,
  JoinableQueueProxy,
  AcquirerProxy,
  SemaphoreProxy,
  ConditionProxy,
  EventProxy,
  BarrierProxy,
  PoolProxy,
  AsyncResultProxy,
  IteratorProxy,
  IteratorProxyLater,
  ManagerPoolOptions,
  ManagedCallOptions,
  ManagedMapOptions,
  AbortableCallOptions,
  AbortableMapOptions,
  ManagedCallbacks,
  Server,
} from './managers';
export type * from './connection';
export type * from './queues';
export type * from './pool';

export declare const Process: typeof Context.Process;
export type Process<A extends unknown[] = unknown[]> = Context.Process<A>;
export declare const BaseContext: typeof Context.BaseContext;
export type BaseContext = Context.BaseContext;
export declare const getContext: typeof Context.getContext;
export declare const setStartMethod: typeof Context.setStartMethod;
export declare const getStartMethod: typeof Context.getStartMethod;
export declare const getAllStartMethods: typeof Context.getAllStartMethods;
export declare const BaseProcess: typeof ProcessModule.BaseProcess;
export type BaseProcess<A extends unknown[] = unknown[]> = ProcessModule.BaseProcess<A>;
export declare const currentProcess: typeof ProcessModule.currentProcess;
export declare const parentProcess: typeof ProcessModule.parentProcess;
export declare const activeChildren: typeof ProcessModule.activeChildren;
export declare const cpuCount: typeof ProcessModule.cpuCount;

export declare const Lock: typeof Synchronize.Lock;
export type Lock = Synchronize.Lock;
export declare const RLock: typeof Synchronize.RLock;
export type RLock = Synchronize.RLock;
export declare const Semaphore: typeof Synchronize.Semaphore;
export type Semaphore = Synchronize.Semaphore;
export declare const BoundedSemaphore: typeof Synchronize.BoundedSemaphore;
export type BoundedSemaphore = Synchronize.BoundedSemaphore;
export declare const Condition: typeof Synchronize.Condition;
export type Condition = Synchronize.Condition;
export declare const Event: typeof Synchronize.Event;
export type Event = Synchronize.Event;
export declare const Barrier: typeof Synchronize.Barrier;
export type Barrier = Synchronize.Barrier;
export declare const Held: typeof Synchronize.Held;
export type Held = Synchronize.Held;
export declare const Acquirable: typeof Synchronize.Acquirable;
export type Acquirable = Synchronize.Acquirable;

export declare const SharedValue: typeof SharedCtypes.SharedValue;
export type SharedValue<V extends number | bigint | string = number | bigint | string> = SharedCtypes.SharedValue<V>;
export declare const Synchronized: typeof SharedCtypes.Synchronized;
export type Synchronized<
  V extends number | bigint | string = number | bigint | string,
  L extends SharedCtypes.SharedLock = SharedCtypes.SharedLock,
> = SharedCtypes.Synchronized<V, L>;
export declare const RawValue: typeof SharedCtypes.RawValue;
export declare const Value: typeof SharedCtypes.Value;
export declare const RawArray: typeof SharedCtypes.RawArray;
export declare const Array: typeof SharedCtypes.Array;

export declare const SharedMemory: typeof SharedMemoryModule.SharedMemory;
export type SharedMemory = SharedMemoryModule.SharedMemory;
export declare const ShareableList: typeof SharedMemoryModule.ShareableList;
export type ShareableList = SharedMemoryModule.ShareableList;

export declare const Manager: typeof Managers.Manager;
export declare const ManagerSync: typeof Managers.ManagerSync;
export declare const SyncManager: typeof Managers.SyncManager;
export type SyncManager = Managers.SyncManager;
export declare const BaseManager: typeof Managers.BaseManager;
export type BaseManager = Managers.BaseManager;
export declare const BaseProxy: typeof Managers.BaseProxy;
export type BaseProxy = Managers.BaseProxy;
export declare const Namespace: typeof Managers.Namespace;
export type Namespace = Managers.Namespace;
/** `multiprocessing.managers`: the proxy classes, the Server, and the objects a server holds. */
export declare const managers: typeof Managers;
export declare const Pipe: typeof ConnectionModule.Pipe;
export declare const Connection: typeof ConnectionModule.Connection;
export type Connection = ConnectionModule.Connection;
/**
 * `multiprocessing.connection`: {@link Connection}, `Listener`, `Client`,
 * `wait` and {@link Pipe}.
 */
export declare const connection: typeof ConnectionModule;

export declare const Queue: typeof Queues.Queue;
export type Queue<T = unknown> = Queues.Queue<T>;
export declare const SimpleQueue: typeof Queues.SimpleQueue;
export type SimpleQueue<T = unknown> = Queues.SimpleQueue<T>;
export declare const JoinableQueue: typeof Queues.JoinableQueue;
export type JoinableQueue<T = unknown> = Queues.JoinableQueue<T>;
export declare const Pool: typeof PoolModule.Pool;
export type Pool = PoolModule.Pool;
export declare const AsyncResult: typeof PoolModule.AsyncResult;
export type AsyncResult<T> = PoolModule.AsyncResult<T>;
export declare const MapResult: typeof PoolModule.MapResult;
export type MapResult<T> = PoolModule.MapResult<T>;
export declare const IMapIterator: typeof PoolModule.IMapIterator;
export type IMapIterator<T> = PoolModule.IMapIterator<T>;

/** The Process path, compiled eagerly as it loads (the fork start method's included). */
function loadProcessPath(): typeof Context & typeof ProcessModule {
  return compileEagerly(() => {
    require('./popen/fork');
    return { ...(require('./process') as typeof ProcessModule), ...(require('./context') as typeof Context) };
  });
}

defineLazyExports(exports, loadProcessPath, [
  'Process',
  'BaseContext',
  'getContext',
  'setStartMethod',
  'getStartMethod',
  'getAllStartMethods',
  'BaseProcess',
  'currentProcess',
  'parentProcess',
  'activeChildren',
  'cpuCount',
]);
defineLazyExports(exports, () => require('./synchronize') as typeof Synchronize, [
  'Lock',
  'RLock',
  'Semaphore',
  'BoundedSemaphore',
  'Condition',
  'Event',
  'Barrier',
  'Held',
  'Acquirable',
]);
defineLazyExports(exports, () => require('./sharedctypes') as typeof SharedCtypes, [
  'SharedValue',
  'Synchronized',
  'RawValue',
  'Value',
  'RawArray',
  'Array',
]);
defineLazyExports(exports, () => require('./shared_memory') as typeof SharedMemoryModule, [
  'SharedMemory',
  'ShareableList',
]);
defineLazyExports(exports, () => require('./managers') as typeof Managers, [
  'Manager',
  'ManagerSync',
  'SyncManager',
  'BaseManager',
  'BaseProxy',
  'Namespace',
]);
defineLazyExports(exports, () => ({ managers: require('./managers') as typeof Managers }), ['managers']);
defineLazyExports(exports, () => require('./connection') as typeof ConnectionModule, ['Pipe', 'Connection']);
defineLazyExports(exports, () => ({ connection: require('./connection') as typeof ConnectionModule }), ['connection']);
defineLazyExports(exports, () => require('./queues') as typeof Queues, ['Queue', 'SimpleQueue', 'JoinableQueue']);
defineLazyExports(exports, () => require('./pool') as typeof PoolModule, ['Pool', 'AsyncResult', 'MapResult', 'IMapIterator']);
