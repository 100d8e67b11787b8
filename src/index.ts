/**
 * node-multiprocessing: Python's `multiprocessing` for Node.js, on real POSIX
 * processes. Every name here follows Python's, in camelCase; timeouts are in
 * milliseconds; methods that may wait return Promises and have a `Sync` twin.
 * @packageDocumentation
 */
// What a Process child of the fork start method runs is compiled eagerly, so
// that forked children find it compiled (see eager/compilation.ts).
import './eager/begin';
import * as os from './os';
import './popen/fork';
import './process';
import './eager/end';

export { os };
export * from './errors';
export * from './context';
export * from './process';
export * from './synchronize';
export * from './sharedctypes';
export * from './shared_memory';
