/**
 * The fork start method, as CPython's `popen_fork.py`: the child is a copy of
 * the parent made by the native `fork()`, and runs the process object it finds
 * in its copy of the heap (any target, closures included).
 *
 * The child never returns from `start()`. A target that completes
 * synchronously runs inside `start()` and the child leaves through `_exit()`
 * at once, as Python's does. A target that returns a Promise needs the child's
 * event loop: the child then leaves the parent's JS stack for good (the
 * caller's code after `start()`, its catch and finally blocks, never run in
 * the child) and awaits the Promise on a fresh stack (see native/popen.cc).
 * @internal
 */
import { executionAsyncId } from 'async_hooks';

import type { NativeBinding } from '../native';
import { requireNative } from '../native';
import * as os from '../os';
import { createStdio, flushStdio, stdioPending, usesFork } from '../util';
import { findNodeQueues, forgetParentCallbacks, forgetParentTicks, ParentCallbacks, parentCallbacks } from './pending';
import { BasePopen, Launchable } from './popen';
import { Reaper } from './reaper';

/** What the forked child runs. */
export interface Bootstrappable extends Launchable {
  /** In the parent, just before the fork; `precompile` compiles a function the child will call. */
  _beforeFork?(precompile: (fn: (...args: never[]) => unknown) => void): void;
  /** In the child: makes this process the current one and forgets the parent's state; `leave` ends the child at once. */
  _becomeChild(leave: (code: number) => never): void;
  /** In the child: runs the process; its exit code, or a Promise of it when `run()` returned one. Never throws. */
  _bootstrap(): number | Promise<number>;
}

export class ForkPopen extends BasePopen {
  readonly method = 'fork';
  readonly pid: number;
  private readonly reaper: Reaper;

  constructor(launched: Bootstrappable) {
    super();
    const native = requireNative('the fork start method');
    this.pid = runForkedChild(native, launched);
    this.reaper = new Reaper(native, this.pid, (code) => this.settle(code));
  }

  protected setWaitedFor(waitedFor: boolean): void {
    this.reaper.setWaitedFor(waitedFor);
  }

  protected check(): void {
    this.reaper.poll();
  }

  waitSync(timeoutMs: number | null): number | null {
    if (!this.ended) this.reaper.waitSync(timeoutMs);
    return this.returncode;
  }

  close(): void {
    this.reaper.abandon();
  }

  abandon(): void {
    this.reaper.abandon();
  }
}

// Node's function that clearAsyncIdStack() asks in a child escaping a
// microtask: called here once, it is compiled here, not in every such child.
executionAsyncId();

/**
 * In the parent: loads and compiles what clearAsyncIdStack() has Node run in
 * the child, which a process that never set an uncaught-exception capture
 * callback has not: its functions that get and set the callback, and the
 * `process.report` they read and set, a lazy getter that loads Node's report
 * module on first use (a third of a forked pool worker's CPU time before it
 * is ready, in every child, otherwise).
 */
let escapePrepared = false;
function prepareClearAsyncIdStack(native: NativeBinding): void {
  if (escapePrepared) return;
  escapePrepared = true;
  const report = (process as { report?: object }).report;
  const trigger = report === undefined ? undefined : Object.getOwnPropertyDescriptor(report, 'reportOnUncaughtException');
  for (const fn of [errorWithoutStack, process.hasUncaughtExceptionCaptureCallback, process.setUncaughtExceptionCaptureCallback, trigger?.get, trigger?.set]) {
    if (typeof fn === 'function') native.precompile(fn as (...args: never[]) => unknown);
  }
}

// --- in the child -----------------------------------------------------------------

/**
 * Empties Node's stack of async ids, which the unwound frames (a timer's, an
 * I/O callback's) pushed and would never pop: Node would take it for a
 * corrupted stack and exit. Node empties it after an uncaught exception that
 * is handled, and nothing else public does: so the child raises one, caught
 * by a capture callback of its own for the instant (no 'uncaughtException'
 * listener sees it), with Node's 'uncaughtExceptionMonitor' event held back.
 */
function clearAsyncIdStack(native: NativeBinding): void {
  if (executionAsyncId() === 0) return; // nothing pushed
  if (process.hasUncaughtExceptionCaptureCallback()) {
    clearAsyncIdStackByBinding();
    return;
  }
  const marker = errorWithoutStack('node-multiprocessing: emptying the async id stack');
  type Emit = (this: NodeJS.Process, event: string | symbol, ...args: unknown[]) => boolean;
  const emitter = process as unknown as { emit: Emit };
  const emit = Object.getOwnPropertyDescriptor(process, 'emit');
  const inherited = emitter.emit;
  emitter.emit = function emitButMarker(event, ...args) {
    return args[0] === marker || inherited.call(this, event, ...args);
  };
  process.setUncaughtExceptionCaptureCallback(() => {});
  try {
    native.raiseHandled(marker);
  } finally {
    process.setUncaughtExceptionCaptureCallback(null);
    if (emit) Object.defineProperty(process, 'emit', emit);
    else delete (process as { emit?: unknown }).emit;
  }
}

/**
 * An Error without its stack: capturing the parent's deep stack costs a
 * forked child page faults. (Where `Error` is frozen, with its stack.)
 */
function errorWithoutStack(message: string): Error {
  const limit = Error.stackTraceLimit;
  try {
    Error.stackTraceLimit = 0;
  } catch {
    return new Error(message);
  }
  try {
    return new Error(message);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/**
 * Where a capture callback is set (the `domain` module sets one), raising
 * would run it: Node up to 22 still lets process.binding() empty the stack.
 */
function clearAsyncIdStackByBinding(): void {
  const quiet = process.noDeprecation;
  process.noDeprecation = true; // DEP0111 is about process.binding() in general
  try {
    (process as unknown as { binding(name: string): { clearAsyncIdStack(): void } }).binding('async_wrap').clearAsyncIdStack();
  } catch {
    process.stderr.write(
      `node-multiprocessing: a forked child leaving a callback cannot empty Node ${process.version}'s async id stack ` +
        'while an uncaught-exception capture callback (domain) is set; Node may abort it\n',
    );
  } finally {
    process.noDeprecation = quiet;
  }
}

/**
 * In the parent, once: has Node clear a timer that empties its list, as the
 * child does to forget the parent's timers (forgetParentCallbacks()): Node's
 * functions for it are compiled here, and its timers' debug logger (set up on
 * its first call) made here, not in every child.
 */
let clearTimeoutPrepared = false;
function prepareClearTimeout(): void {
  if (clearTimeoutPrepared) return;
  clearTimeoutPrepared = true;
  clearTimeout(setTimeout(doNothing, UNUSED_DURATION_MS));
}

/** A timer duration no other timer is likely to have (its list is made, then emptied and dropped). */
const UNUSED_DURATION_MS = 2 ** 31 - 3;

function doNothing(): void {}

/**
 * Forks; in the child, runs `process` and leaves through `_exit()` (never
 * returns there). Returns the child's pid in the parent.
 */
export function runForkedChild(native: NativeBinding, process: Bootstrappable): number {
  usesFork(native);
  createStdio();
  // The child asks this before it leaves; asked here first, the getter of
  // Node's streams it calls is compiled once, not in every child.
  stdioPending();
  prepareClearAsyncIdStack(native);
  findNodeQueues();
  escapeHolder = native;
  native.prepareEscape(runAfterEscape);
  process._beforeFork?.(native.precompile);
  const parents = parentCallbacks();
  if (parents !== null && parents.timers.length > 0) prepareClearTimeout();
  const pid = os.fork();
  if (pid === 0) runChild(native, process, parents);
  return pid;
}

function runChild(native: NativeBinding, process: Bootstrappable, parents: ParentCallbacks | null): never {
  try {
    // Before anything of the child's own exists: what the loop watches and
    // the nextTick callbacks queued now are the parent's.
    native.quietParentIo();
    forgetParentTicks(parents);
    process._becomeChild(native._exit);
    // A termination inside a microtask also drops the microtasks queued after
    // it, the target's own included: call the target only after escaping.
    if (native.isRunningMicrotasks()) escapeToLoop(native, () => finish(native, process._bootstrap(), parents, false));
    return finish(native, process._bootstrap(), parents, true);
  } catch (error) {
    // Not reached unless this library has a bug: leave, never run the caller's code.
    console.error(`Process ${process.name}: internal error in the forked child:`, error);
    return native._exit(70);
  }
}

/**
 * Leaves through `_exit()` once the exit code is known and stdout/stderr are
 * flushed: at once when both are already so, otherwise from the event loop,
 * where none of the parent's pending callbacks may run.
 */
type Result = number | Promise<number>;
function finish(native: NativeBinding, result: Result, parents: ParentCallbacks | null, onCallerStack: true): never;
function finish(native: NativeBinding, result: Result, parents: ParentCallbacks | null, onCallerStack: false): void;
function finish(native: NativeBinding, result: Result, parents: ParentCallbacks | null, onCallerStack: boolean): void {
  if (typeof result === 'number' && !stdioPending()) native._exit(result);
  forgetParentCallbacks(parents);
  const leave = (): void => {
    void Promise.resolve(result)
      .then((code) => flushStdio().then(() => native._exit(code)))
      .catch(() => native._exit(70));
  };
  if (onCallerStack) escapeToLoop(native, leave);
  leave();
}

/** Does nothing: V8 checks for interrupts as a function is entered. */
function interruptCheck(): void {}

/**
 * What the child runs once it has escaped (see escapeToLoop()), kept on the
 * addon's binding: the addon keeps the first escape callback it is given, and
 * a test runner that loads this module anew for each test file (jest) would
 * otherwise have it call a forgotten instance's, which has nothing to run.
 */
const AFTER_ESCAPE = Symbol.for('node-multiprocessing.afterEscape');
type EscapeHolder = NativeBinding & { [AFTER_ESCAPE]?: (() => void) | null };
/** The binding, once this module has forked. */
let escapeHolder: EscapeHolder | null = null;

/**
 * The callback of every escape, given to the addon in the parent: a child
 * that made its own reference to its callback would pay for it in page faults.
 */
function runAfterEscape(): void {
  if (escapeHolder === null) return;
  const callback = escapeHolder[AFTER_ESCAPE];
  escapeHolder[AFTER_ESCAPE] = null;
  callback?.();
}

/** Ends every JS frame of the parent's on this stack; `callback` then runs on a fresh one. */
function escapeToLoop(native: NativeBinding, callback: () => void): never {
  clearAsyncIdStack(native);
  (native as EscapeHolder)[AFTER_ESCAPE] = callback;
  native.escapeToLoop();
  // The termination takes effect at the first interrupt check: a function's
  // entry (a loop checks only once it has used up its budget).
  interruptCheck();
  for (let spins = 0; spins < 1e9; spins++) interruptCheck();
  console.error('node-multiprocessing: a forked child could not leave the parent\'s code (no termination)');
  return native._exit(70);
}
