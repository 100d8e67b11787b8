/**
 * node-multiprocessing: Python's `multiprocessing` for Node.js, on real POSIX
 * processes. Every name here follows Python's, in camelCase; timeouts are in
 * milliseconds; methods that may wait return Promises and have a `Sync` twin.
 * @packageDocumentation
 */
import * as os from './os';

export { os };
export * from './errors';
export * from './context';
export * from './process';
export * from './synchronize';
export * from './sharedctypes';
export * from './shared_memory';
