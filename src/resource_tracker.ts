/**
 * The resource tracker, as CPython's `resource_tracker.py`: a helper process
 * that removes named resources (shared memory segments) left behind by
 * processes that ended without removing them, also when they were killed with
 * SIGKILL.
 *
 * The first {@link register} starts it: a fresh `node` running
 * `resource_tracker_main.js`, unref'd so it never keeps this process alive,
 * reading short `REGISTER:name:type` / `UNREGISTER:name:type` lines on its
 * stdin. This process keeps the writing end of that pipe (a socket) open;
 * forked children inherit it, spawned children get it when their launcher
 * passes it on (see {@link trackerFd} and {@link TRACKER_FD_ENV}). When every
 * writer is gone the tracker reads EOF, unlinks what is still registered,
 * warns on stderr about leaked `shared_memory` segments, and exits.
 *
 * Writes are synchronous: a resource is registered before the call that
 * created it returns.
 *
 * A tracker that dies (killed by someone) is relaunched, as CPython does: at
 * once by the process that launched it when its event loop sees the exit, or
 * by any process at its next write (EPIPE). Each process then tells the new
 * tracker again of every name it registered and has not unregistered, so a
 * segment made before the restart is still removed after a SIGKILL of its
 * creator, or at a normal exit.
 * @internal
 */
import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { loadNative } from './native';

/**
 * What a registered name is: `shared_memory` is a user's `SharedMemory` (its
 * leak is warned about, as in Python); `heap` is an arena of the shared heap
 * (removed silently: arenas are the library's own business).
 */
export type ResourceType = 'shared_memory' | 'heap';

/** Every type the tracker knows, for validation on both ends of the pipe. */
export const RESOURCE_TYPES: readonly ResourceType[] = ['shared_memory', 'heap'];

/**
 * Set in the environment of a spawned child to the fd number (in the child)
 * under which its launcher passed {@link trackerFd}: the child then writes to
 * its parent's tracker instead of starting its own. Read and removed from
 * `process.env` when this module loads, so it never leaks to grandchildren.
 */
export const TRACKER_FD_ENV = 'NODE_MULTIPROCESSING_TRACKER_FD';

const MAIN = path.join(__dirname, 'resource_tracker_main.js');

interface TrackerState {
  /** The writing end of the tracker's stdin, shared with forked children. */
  fd: number | null;
  /** The tracker process, in the process that launched it. */
  child: ChildProcess | null;
}

const state: TrackerState = { fd: null, child: null };

/**
 * The names this process registered and has not unregistered (`type:name` ->
 * type and the registering pid): told again to a relaunched tracker. A forked
 * child has a copy of its parent's; it tells only its own.
 */
const registered = new Map<string, { readonly name: string; readonly type: ResourceType; readonly pid: number }>();

/** This process's pid from the kernel (a forked child's `process.pid` may be its parent's). */
function currentPid(): number {
  return loadNative()?.getpid() ?? process.pid;
}

/** Reads a tracker fd passed by a spawning parent, if any. */
function adoptInheritedFd(): void {
  const value = process.env[TRACKER_FD_ENV];
  if (value === undefined) return;
  delete process.env[TRACKER_FD_ENV];
  const fd = Number(value);
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    const info = fs.fstatSync(fd);
    if (info.isSocket() || info.isFIFO()) state.fd = fd;
  } catch {
    // Not open here: the launcher did not pass it; start our own when needed.
  }
}

function launch(): void {
  // Loaded on first use, not with the package (see index.ts).
  const { spawn } = require('child_process') as typeof import('child_process');
  const child = spawn(process.execPath, [MAIN], {
    stdio: ['pipe', 'ignore', 'inherit'],
    // A process group of its own: a SIGKILL sent to its writers' group (a
    // killed test run, a supervisor) must not take the cleaner with them.
    detached: true,
    // The tracker must not inherit a parent's inspector or loaders.
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  // Node gives no public way to the fd of a child's stdin; its handle has it.
  const handle = (child.stdin as unknown as { _handle?: { fd?: number } } | null)?._handle;
  if (handle?.fd === undefined || handle.fd < 0) {
    child.kill('SIGKILL');
    throw new Error('resource tracker: cannot get the fd of its stdin');
  }
  child.unref();
  (child.stdin as unknown as { unref(): void }).unref();
  child.on('error', () => undefined); // a launch failure shows as EPIPE on the first write
  // It ends only once every writer is gone, so an exit seen here is a death.
  child.once('exit', () => {
    if (state.child === child) relaunch();
  });
  state.child = child;
  state.fd = handle.fd;
}

/** Starts a new tracker in place of a dead one, and tells it what this process registered. */
function relaunch(): void {
  process.emitWarning('resource tracker: process died unexpectedly, relaunching. Some resources might leak.', {
    code: 'MP_RESOURCE_TRACKER',
  });
  state.fd = null;
  state.child = null;
  const fd = trackerFd();
  const pid = currentPid();
  for (const { name, type, pid: owner } of registered.values()) {
    if (owner === pid) writeAll(fd, commandLine('REGISTER', name, type));
  }
}

/**
 * The fd of this process's tracker pipe, starting the tracker if needed. A
 * launcher of spawned children passes it on: put it in the child's `stdio`
 * array at some index `n` and set `env[TRACKER_FD_ENV] = String(n)`, see
 * {@link inheritTracker}. Forked children need nothing: they inherit it.
 */
export function trackerFd(): number {
  if (state.fd === null) launch();
  return state.fd as number;
}

/**
 * Adds this process's tracker to `stdio` and `env` of a `child_process.spawn`
 * call, so that the child registers with it: returns the fd number the child
 * will see.
 */
export function inheritTracker(stdio: Array<string | number | null | undefined>, env: NodeJS.ProcessEnv): number {
  const index = Math.max(stdio.length, 3);
  while (stdio.length < index) stdio.push(stdio.length < 3 ? 'inherit' : 'ignore');
  stdio.push(trackerFd());
  env[TRACKER_FD_ENV] = String(index);
  return index;
}

/** The tracker's pid in the process that started it, else `null` (for tests). */
export function trackerPid(): number | null {
  return state.child?.pid ?? null;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Writes all of `line`; the fd is non-blocking, so a full pipe is waited out. */
function writeAll(fd: number, line: Buffer): void {
  for (let offset = 0; offset < line.length; ) {
    try {
      offset += fs.writeSync(fd, line, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      sleepMs(1);
    }
  }
}

function commandLine(command: 'REGISTER' | 'UNREGISTER', name: string, type: ResourceType): Buffer {
  return Buffer.from(`${command}:${name}:${type}\n`);
}

function send(command: 'REGISTER' | 'UNREGISTER', name: string, type: ResourceType): void {
  if (/[\n\0]/.test(name)) throw new TypeError(`a resource name cannot contain a newline or NUL: ${JSON.stringify(name)}`);
  const key = `${type}:${name}`;
  if (command === 'REGISTER') registered.set(key, { name, type, pid: currentPid() });
  else registered.delete(key);
  try {
    writeAll(trackerFd(), commandLine(command, name, type));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPIPE') throw error;
    // The tracker died: a new one learns this line with the rest.
    relaunch();
  }
}

/**
 * Asks the tracker to unlink `name` (a POSIX shm name with its leading slash)
 * if it is still there when every process of this family has ended.
 */
export function register(name: string, type: ResourceType): void {
  send('REGISTER', name, type);
}

/** The resource was removed by its owner: the tracker forgets it. */
export function unregister(name: string, type: ResourceType): void {
  send('UNREGISTER', name, type);
}

adoptInheritedFd();
