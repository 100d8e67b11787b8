/**
 * Small helpers of the Process machinery, as CPython's `multiprocessing.util`:
 * flushing the standard streams before a child leaves, sleeping and reading
 * without the event loop for the `Sync` twins.
 * @internal
 */
import * as fs from 'fs';
import { inspect } from 'util';

import type { NativeBinding } from './native';

/** The addon, once a fork made it necessary (set before forking: inherited by the child). */
let forkNative: NativeBinding | null = null;

/** Records that this process forks (or was forked) with `native`: see {@link getpid}. */
export function usesFork(native: NativeBinding): void {
  forkNative = native;
}

/**
 * This process's pid, from the kernel. `process.pid` is read once at start-up
 * (and may be a copy, in a test runner's sandbox): a forked child must see its
 * own. A process that never forked has a right `process.pid` and does not pay
 * for loading the addon.
 */
export function getpid(): number {
  return forkNative?.getpid() ?? process.pid;
}

/** The parent's pid, from the kernel (it changes when the parent dies); `null` without the addon. */
export function getppid(): number | null {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const native = forkNative ?? (require('./native') as typeof import('./native')).loadNative();
  return native?.getppid() ?? null;
}

/**
 * The fields of `/proc/<pid>/stat` from the third (the state letter: `R`,
 * `S`, `Z` for a zombie...) on; `null` when there is no such process,
 * `undefined` where there is no /proc.
 */
function procStat(pid: number): string[] | null | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    return fs.existsSync('/proc/self/stat') ? null : undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The exit code of a wait status: the code, or `-signal`. */
export function exitCodeOfStatus(status: number): number {
  const signal = status & 0x7f;
  return signal === 0 ? (status >> 8) & 0xff : -signal;
}

/**
 * The exit code of the child `pid` once it has ended but is not reaped yet
 * (Linux shows the wait status of a zombie in /proc: field 52, `exit_code`);
 * `undefined` while it runs, or where there is no /proc.
 */
export function procExitStatus(pid: number): number | undefined {
  const fields = procStat(pid);
  if (!fields || fields[0] !== 'Z' || fields.length < 50) return undefined;
  return exitCodeOfStatus(Number(fields[49]));
}

/** Whether `pid` is a process that has not ended (a zombie has). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const fields = procStat(pid);
  return fields !== null && fields?.[0] !== 'Z' && fields?.[0] !== 'X';
}

/** True for a Promise or any object with a `then` method, as `await` sees it. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** Node's AbortError, as its own APIs (and the pools) reject with: `name` 'AbortError', `code` 'ABORT_ERR', the signal's reason as `cause`. */
export function abortError(signal: AbortSignal): Error {
  const error = new Error('The operation was aborted', { cause: signal.reason });
  error.name = 'AbortError';
  return Object.assign(error, { code: 'ABORT_ERR' });
}

const STDIO = ['stdout', 'stderr'] as const;
type StdioName = (typeof STDIO)[number];

/** The stream, or `undefined` when nothing created it yet. */
function createdStream(name: StdioName): NodeJS.WriteStream | undefined {
  const descriptor = Object.getOwnPropertyDescriptor(process, name);
  return descriptor !== undefined && 'value' in descriptor ? (descriptor.value as NodeJS.WriteStream) : undefined;
}

/** The standard streams created so far (see {@link memoize}). */
const createdStreams: NodeJS.WriteStream[] = [];

function memoize(name: StdioName, stream: NodeJS.WriteStream): NodeJS.WriteStream {
  Object.defineProperty(process, name, { value: stream, writable: false, enumerable: true, configurable: true });
  if (!createdStreams.includes(stream)) createdStreams.push(stream);
  return stream;
}

/**
 * Creates stdout and stderr now, in the parent: creating them in a forked
 * child costs it 1 to 2 ms (its first access runs code never compiled there),
 * every child again. Each becomes a plain property holding the same stream.
 */
export function createStdio(): void {
  for (const name of STDIO) {
    const stream = createdStream(name);
    if (stream === undefined || !createdStreams.includes(stream)) memoize(name, stream ?? process[name]);
  }
}

/**
 * In a fresh process: records when stdout or stderr gets created, so that
 * {@link flushStdio} need not create a stream nobody wrote to.
 */
export function trackStdioCreation(): void {
  for (const name of STDIO) {
    const descriptor = Object.getOwnPropertyDescriptor(process, name);
    const getter = descriptor?.get;
    if (getter === undefined || !descriptor?.configurable) continue;
    Object.defineProperty(process, name, {
      get: () => memoize(name, getter.call(process) as NodeJS.WriteStream),
      enumerable: true,
      configurable: true,
    });
  }
}

/** Whether stdout or stderr holds output not yet written to its descriptor. */
export function stdioPending(): boolean {
  // Allocates nothing: a forked child pays for each page it writes.
  for (let i = 0; i < createdStreams.length; i++) if (createdStreams[i].writableLength > 0) return true;
  return false;
}

/**
 * Resolves once everything written to stdout and stderr has reached the file
 * descriptors, as Python's `util._flush_std_streams()` before `os._exit`.
 * Writes to files, TTYs and pipes with room are synchronous on POSIX: this
 * waits only for a pipe whose reader is slow. A stream that was never created
 * (see {@link createStdio}) has nothing pending.
 */
export function flushStdio(): Promise<void> {
  const pending = createdStreams.filter((stream) => stream.writableLength > 0);
  if (pending.length === 0) return Promise.resolve();
  return Promise.all(
    pending.map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))),
  ).then(() => undefined);
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks this thread for `ms` milliseconds, without spinning. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/**
 * Reads exactly `length` bytes from the blocking descriptor `fd`; `null` when
 * the other end closed first (end of file).
 */
export function readExactlySync(fd: number, length: number): Buffer | null {
  const buffer = Buffer.allocUnsafe(length);
  let offset = 0;
  while (offset < length) {
    let read: number;
    try {
      read = fs.readSync(fd, buffer, offset, length - offset, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EINTR') continue;
      throw error;
    }
    if (read === 0) return null;
    offset += read;
  }
  return buffer;
}

/**
 * Writes all of `data` to `fd`, blocking the thread. A non-blocking
 * descriptor (a socket of libuv's) that is full is retried after a short sleep.
 */
export function writeAllSync(fd: number, data: Uint8Array): void {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += fs.writeSync(fd, data, offset, data.length - offset);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') sleepSync(1);
      else if (code !== 'EINTR') throw error;
    }
  }
}

/**
 * Calls `poll` with a growing pause (from 0.1 ms up to 10 ms) until it returns
 * something other than `undefined` or `timeoutMs` (null: no limit) has passed;
 * then returns its last answer. For waits that have nothing to block on.
 */
export function pollSync<T>(poll: () => T | undefined, timeoutMs: number | null): T | undefined {
  const deadline = timeoutMs === null ? Infinity : Date.now() + timeoutMs;
  let pause = 0.1;
  for (;;) {
    const answer = poll();
    if (answer !== undefined) return answer;
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    sleepSync(Math.min(pause, left));
    pause = Math.min(pause * 2, 10);
  }
}

/**
 * Prints an uncaught error of the child as Python does (`Process Process-1:`
 * and the traceback); returns 1, the exit code. @internal
 */
export function reportError(name: string, error: unknown): number {
  const text = `Process ${name}:\n${inspect(error)}\n`;
  try {
    fs.writeSync(2, text);
  } catch {
    process.stderr.write(text);
  }
  return 1;
}
