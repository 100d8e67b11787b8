/**
 * `mp.os`: the POSIX process calls of Python's `os` module, on the real system
 * calls: `fork`, `waitpid`, `wait`, `kill`, `getpid`, `getppid`, `_exit` and the
 * wait-status macros. Where there is no addon (Windows), each throws an Error
 * with `code === 'ENOSYS'`.
 *
 * @example
 * ```ts
 * import { os } from 'node-multiprocessing';
 * const pid = os.fork();
 * if (pid === 0) {
 *   console.log('child', os.getpid(), 'of', os.getppid());
 *   os._exit(7);
 * }
 * const [, status] = os.waitpid(pid);
 * console.log(os.WEXITSTATUS(status)); // 7
 * ```
 * @packageDocumentation
 */
import * as nodeOs from 'os';

import { atForkHooks, forkGeneration, runHook } from './at_fork';
import { watchExit } from './exit_watch';
import { loadNative, NativeBinding, requireNative, unsupported } from './native';
import { validateInteger } from './validate';

/** `waitpid` flag: return `[0, 0]` at once when no child has changed state. */
export const WNOHANG: number = loadNative()?.WNOHANG ?? 1;
/** `waitpid` flag: also report stopped children. */
export const WUNTRACED: number = loadNative()?.WUNTRACED ?? 2;

export type { AtForkHooks } from './at_fork';
/**
 * Registers callbacks to run around each {@link fork}, as Python's
 * `os.register_at_fork`: `before` in the parent just before (in reverse order
 * of registration), `afterInParent(childPid)` and `afterInChild` just after.
 * Returns a function that removes them.
 */
export { registerAtFork } from './at_fork';

/**
 * Forks this process: returns 0 in the child and the child's pid in the parent.
 *
 * The child is a copy of the parent: the same JS heap (globals, closures),
 * the same open files, the same pending timers. It runs its event loop as
 * usual and ends on every path (end of the script, `process.exit(n)`, an
 * uncaught error, a signal) with the status Node would give; `'exit'`
 * listeners run where Node would run them. The child stays a zombie until the
 * parent reaps it with {@link waitpid}, {@link wait} or {@link waitpidAsync}.
 *
 * Forking while other threads of yours run (worker_threads) is unsafe, as in
 * C; a warning says so, as Python does. Forking from a worker thread throws.
 */
export function fork(): number {
  const native = requireNative('fork');
  if (!native.isMainThread()) throw new Error('fork() can only be called from the main thread, not from a worker thread');
  warnIfOtherThreads(native);
  warnMissingInternals(native);
  // Without hooks the child runs no JS of ours after the fork (see at_fork.ts).
  return atForkHooks.length === 0 ? native.fork() : forkWithHooks(native);
}

function forkWithHooks(native: NativeBinding): number {
  // Copies: a hook may unregister hooks while they run.
  for (const hooks of atForkHooks.slice().reverse()) runHook(hooks.before, 'before');
  const pid = native.fork();
  for (const hooks of atForkHooks.slice()) {
    if (pid === 0) runHook(hooks.afterInChild, 'afterInChild');
    else runHook(hooks.afterInParent, 'afterInParent', pid);
  }
  return pid;
}

/**
 * Waits for the child `pid` (or any child when `pid` is -1) to change state and
 * returns `[pid, status]`; `[0, 0]` with {@link WNOHANG} when none has. Blocks
 * the event loop: see {@link waitpidAsync}. A pid that is not a child of this
 * process gets an Error with `code === 'ECHILD'`.
 */
export function waitpid(pid: number, flags = 0): [number, number] {
  validateInteger(pid, 'pid');
  validateInteger(flags, 'flags', 0);
  return requireNative('waitpid').waitpid(pid, flags);
}

/** Waits for any child to end: `waitpid(-1, 0)`. */
export function wait(): [number, number] {
  return requireNative('wait').waitpid(-1, 0);
}

/**
 * Waits for the child `pid` to end without blocking the event loop, then reaps
 * it: resolves to `[pid, status]`. Rejects with `code === 'ECHILD'` at once when
 * `pid` is not a child of this process.
 */
export function waitpidAsync(pid: number): Promise<[number, number]> {
  validateInteger(pid, 'pid');
  const native = requireNative('waitpidAsync');
  return new Promise((resolve, reject) => {
    watchExit(native, pid, (error, reaped, status) => {
      if (error) reject(error);
      else resolve([reaped, status]);
    });
  });
}

type StatusMacro = 'WIFEXITED' | 'WEXITSTATUS' | 'WIFSIGNALED' | 'WTERMSIG' | 'WIFSTOPPED' | 'WSTOPSIG';

/** The wait-status macro `name` of the C library, its argument checked first. */
function statusMacro<M extends StatusMacro>(name: M): (status: number) => ReturnType<NativeBinding[M]> {
  return (status) => requireNative(name)[name](validateInteger(status, 'status')) as ReturnType<NativeBinding[M]>;
}

/** True when the child ended normally (`exit`, `_exit`, end of script). */
export const WIFEXITED = statusMacro('WIFEXITED');
/** The exit code of a child for which {@link WIFEXITED} is true. */
export const WEXITSTATUS = statusMacro('WEXITSTATUS');
/** True when a signal ended the child. */
export const WIFSIGNALED = statusMacro('WIFSIGNALED');
/** The signal that ended a child for which {@link WIFSIGNALED} is true. */
export const WTERMSIG = statusMacro('WTERMSIG');
/** True when the child is stopped (only reported with {@link WUNTRACED}). */
export const WIFSTOPPED = statusMacro('WIFSTOPPED');
/** The signal that stopped a child for which {@link WIFSTOPPED} is true. */
export const WSTOPSIG = statusMacro('WSTOPSIG');

/**
 * The exit code of a wait status, as Python's `os.waitstatus_to_exitcode`: the
 * exit code when the child exited, `-signal` when a signal killed it. A status
 * of a stopped child gets a RangeError.
 */
export function waitstatusToExitcode(status: number): number {
  const native = requireNative('waitstatusToExitcode');
  validateInteger(status, 'status');
  if (native.WIFEXITED(status)) return native.WEXITSTATUS(status);
  if (native.WIFSIGNALED(status)) return -native.WTERMSIG(status);
  throw new RangeError(`invalid wait status: ${status} (neither exited nor killed by a signal)`);
}

/** This process's pid, from the kernel (also right in a forked child). */
export function getpid(): number {
  return requireNative('getpid').getpid();
}

/** The parent's pid, from the kernel: 1 or a subreaper's pid once orphaned. */
export function getppid(): number {
  return requireNative('getppid').getppid();
}

/**
 * Ends this process at once with `code` (default 0): no `'exit'` listeners, no
 * cleanup, as Python's `os._exit`. Output already written to stdout/stderr is
 * kept. A non-integer code gets a TypeError.
 */
// The addon's function itself: a JS wrapper would be compiled anew in every
// forked child that calls it, page fault by page fault.
export const _exit: (code?: number) => never =
  loadNative()?._exit ??
  (() => {
    throw unsupported('_exit');
  });

/** Sends `signal` (a number or a name such as `'SIGTERM'`) to `pid`. */
export function kill(pid: number, signal: number | NodeJS.Signals = 'SIGTERM'): void {
  validateInteger(pid, 'pid');
  requireNative('kill').kill(pid, signalNumber(signal));
}

function signalNumber(signal: number | string): number {
  if (typeof signal === 'number') return validateInteger(signal, 'signal', 0, 64);
  const signals = nodeOs.constants.signals as Record<string, number | undefined>;
  const number = typeof signal === 'string' ? signals[signal] : undefined;
  if (number === undefined) throw new TypeError(`unknown signal: ${String(signal)}`);
  return number;
}

// --- the forked child ---------------------------------------------------------
//
// The addon sets the child up itself (own pid, V8 flags, own epoll): JS that
// ran only in children would be compiled anew, page fault by page fault, in
// every child.

/** The code Node would exit with now. */
function currentExitCode(): number {
  const code = Number(process.exitCode ?? 0);
  return Number.isInteger(code) ? code : 0;
}

/**
 * What a forked child does when its event loop runs dry, in Node's order:
 * `'beforeExit'` (which may schedule more work), then `'exit'`, then leave.
 */
function installForkChildHooks(native: NativeBinding): void {
  native.setForkChildHooks(
    () => {
      process.emit('beforeExit', currentExitCode());
    },
    () => {
      (process as { _exiting?: boolean })._exiting = true;
      process.emit('exit', currentExitCode());
      native._exit(currentExitCode());
    },
  );
}

// --- the warning for forks with other threads running ----------------------

/** Threads of Node's own when this module loaded (1 in a forked child). */
let baselineThreads = 1;
let warnedAboutThreads = false;
/** The fork generation the two above were measured in (see at_fork.ts). */
let threadsGeneration = forkGeneration();

function threadPoolSize(): number {
  const size = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isInteger(size) && size > 0 ? Math.min(size, 1024) : 4;
}

/**
 * Node's own threads (platform workers, the inspector's signal thread, then
 * libuv's pool, all of whose threads start together on first use) are known;
 * any other thread (a Worker's, another addon's) may hold a lock at the
 * instant of the fork and deadlock the child. Python >= 3.12 warns then too.
 */
function warnIfOtherThreads(native: NativeBinding): void {
  if (threadsGeneration !== forkGeneration()) {
    // A forked child has only its main thread (and its own pool, once used).
    threadsGeneration = forkGeneration();
    baselineThreads = 1;
    warnedAboutThreads = false;
  }
  if (warnedAboutThreads) return;
  const threads = native.threadCount() - native.ownThreadCount();
  const extra = threads - baselineThreads;
  if (extra <= 0 || extra === threadPoolSize()) return;
  warnedAboutThreads = true;
  process.emitWarning(
    `This process (pid=${process.pid}) is multi-threaded (${threads} threads, ${baselineThreads} of them Node's own ` +
      `besides libuv's pool): use of fork() may lead to deadlocks in the child.`,
    { type: 'RuntimeWarning', code: 'MP_FORK_WITH_THREADS' },
  );
}

let checkedInternals = false;

/**
 * Once per process tree (children inherit the flag): what this Node lacks of
 * the internals the addon relies on (native/internals.cc), and what goes
 * without it.
 */
function warnMissingInternals(native: NativeBinding): void {
  if (checkedInternals) return;
  checkedInternals = true;
  for (const line of native.missingInternals()) {
    process.emitWarning(`node-multiprocessing on Node ${process.version} goes without ${line}`, { code: 'MP_NODE_INTERNALS' });
  }
}

function initialise(): void {
  const native = loadNative();
  if (native === null) return;
  baselineThreads = native.isForkedChild() ? 1 : native.threadCount() - native.ownThreadCount();
  // The hooks replace the process-exit handler of the main thread's Node
  // environment; a worker thread has its own, which must stay.
  if (native.isMainThread()) installForkChildHooks(native);
}

initialise();
