/**
 * node-multiprocessing: Python's `multiprocessing` for Node.js, on real POSIX
 * processes. Every name here follows Python's, in camelCase; timeouts are in
 * milliseconds; methods that may wait return Promises and have a `Sync` twin.
 * @packageDocumentation
 */
// Loading the package loads as little as it can: every byte of heap it adds
// is copied by each fork() and torn down by each child's exit (the package's
// shared memory and synchronisation modules alone, loaded eagerly, made
// fork + _exit + waitpid 0.1 ms slower here). So:
// - those modules load on first use of one of their exports (see `lazy`);
// - Node modules that only some features need (crypto, child_process, which
//   brings net and dgram, v8, worker_threads) are required where first used.
//
// What a Process child of the fork start method runs is compiled eagerly, so
// that forked children find it compiled (see eager/compilation.ts).
import './eager/begin';
import * as os from './os';
import './popen/fork';
import './process';
import './context';
import './eager/end';

import { defineLazyExports } from './lazy';
import type * as SharedCtypes from './sharedctypes';
import type * as SharedMemoryModule from './shared_memory';
import type * as Synchronize from './synchronize';

export { os };
export * from './errors';
export * from './context';
export * from './process';

// --- loaded on first use ---------------------------------------------------
// The types are exported as usual; each value is declared here and defined by
// defineLazyExports() below (test/00.package checks the two lists agree).

export type * from './synchronize';
export type * from './sharedctypes';
export type * from './shared_memory';

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

defineLazyExports(exports, () => require('./synchronize') as typeof Synchronize, [
  'Lock',
  'RLock',
  'Semaphore',
  'BoundedSemaphore',
  'Condition',
  'Event',
  'Barrier',
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
