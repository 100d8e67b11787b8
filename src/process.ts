/**
 * Process objects and the process tree, as CPython's `process.py`: a
 * {@link BaseProcess} never touches the OS itself; the start method behind it
 * (its Popen, chosen by its context) does.
 *
 * @example
 * ```ts
 * import * as mp from 'node-multiprocessing';
 *
 * const p = new mp.Process({ target: (n: number) => console.log('child got', n), args: [42] });
 * p.start();
 * await p.join();
 * console.log(p.exitCode); // 0
 * ```
 * @packageDocumentation
 */
import * as fs from 'fs';
import * as nodeOs from 'os';
import { inspect } from 'util';

import type { Popen } from './popen/popen';
import { getpid, getppid, isRunning, isThenable, pollSync, reportError } from './util';
import { describe, validateOptions, validateTimeout } from './validate';

/** The options of `new Process()`. */
export interface ProcessOptions<A extends unknown[] = unknown[]> {
  /**
   * The function the child runs, with `args`. With the fork start method it
   * may be any function, closures included; with spawn and forkserver it must
   * be exported by a module (see the start methods). A target that returns a
   * Promise keeps the child alive until it settles. Default: none (`run()`
   * does nothing unless a subclass overrides it).
   */
  target?: ((...args: A) => unknown) | null;
  /** The arguments of `target`. Default: `[]`. */
  args?: A;
  /** The process's name. Default: `'<Class>-N'` (`'Process-1'`), `'Process-N:M'` in a child. */
  name?: string | null;
  /**
   * A daemonic process is terminated when its parent ends, and cannot have
   * children of its own. Default: the current process's flag (false).
   */
  daemon?: boolean | null;
}

/** The state a process object is made from when it is not constructed by `new` (in a child, the parent). @internal */
export interface ProcessState {
  name: string;
  identity: readonly number[];
  daemon: boolean;
  parentPid: number;
  parentName: string;
}

/** The current process (`MainProcess` at the top of the tree). */
let current: BaseProcess;
/** The parent of the current process once made, `null` at the top or until asked for. */
let parent: BaseProcess | null = null;
/** The process whose parent {@link parentProcess} makes on first use (the current one in a child). */
let parentOf: BaseProcess | null = null;
/** How many Process objects the current process created (the last number of their names). */
let counter = 0;
/** Started children that have not been found ended yet. */
let children = new Set<BaseProcess>();
/** Set while a process object is made from a state rather than options. */
let restoring: ProcessState | null = null;

/**
 * A process: the common base of `Process`, of the current process
 * (`currentProcess()`) and of its parent (`parentProcess()`). Subclasses may
 * override {@link run}.
 */
export abstract class BaseProcess<A extends unknown[] = unknown[]> {
  // Stored without A: a Process<[number]> is still a BaseProcess.
  #target: ((...args: unknown[]) => unknown) | null = null;
  #args: unknown[] = [];
  #name: string;
  #daemon: boolean;
  readonly #identity: readonly number[];
  readonly #parentPid: number;
  readonly #parentName: string;
  #popen: Popen | null = null;
  #sentinel: number | null = null;
  #closed = false;

  /**
   * @param options what the child runs and how it is named; see
   * {@link ProcessOptions}. Bad options get a TypeError naming the option.
   */
  constructor(options: ProcessOptions<A> = {}) {
    const restored = restoring;
    restoring = null;
    if (restored === null) validateProcessOptions(options);
    const state = restored ?? BaseProcess.#newState(options.name, options.daemon, new.target.name);
    this.#name = state.name;
    this.#identity = state.identity;
    this.#daemon = state.daemon;
    this.#parentPid = state.parentPid;
    this.#parentName = state.parentName;
    if (restored === null) {
      this.#target = (options.target as ((...args: unknown[]) => unknown) | null | undefined) ?? null;
      this.#args = options.args ?? [];
    }
  }

  static #newState(name: string | null | undefined, daemon: boolean | null | undefined, className: string): ProcessState {
    counter += 1;
    const identity = [...current.#identity, counter];
    return {
      name: name ?? `${className || 'Process'}-${identity.join(':')}`,
      identity,
      daemon: daemon ?? current.#daemon,
      parentPid: getpid(),
      parentName: current.#name,
    };
  }

  /**
   * Makes a process object of class `type` from `state`, without running the
   * constructors (as unpickling does): `fields` are its own properties.
   * @internal
   */
  static _restore<T extends BaseProcess>(
    type: abstract new (...args: never[]) => T,
    state: ProcessState,
    fields: Record<string, unknown> = {},
    call?: { target: ((...args: unknown[]) => unknown) | null; args: unknown[] },
  ): T {
    restoring = state;
    try {
      const made = Reflect.construct(BaseProcess as unknown as new () => T, [], type) as T;
      if (call !== undefined) {
        made.#target = call.target;
        made.#args = call.args;
      }
      return Object.assign(made, fields);
    } finally {
      restoring = null;
    }
  }

  /** The name, for messages and `currentProcess().name`; any string. */
  get name(): string {
    return this.#name;
  }

  set name(name: string) {
    if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${describe(name)}`);
    this.#name = name;
  }

  /** Whether the process is daemonic; may only be set before {@link start}. */
  get daemon(): boolean {
    return this.#daemon;
  }

  set daemon(daemonic: boolean) {
    if (this.#popen !== null) throw new Error('process has already started: daemon can only be set before start()');
    if (typeof daemonic !== 'boolean') throw new TypeError(`daemon must be a boolean, got ${describe(daemonic)}`);
    this.#daemon = daemonic;
  }

  /** The child's pid once started, `null` before. Throws after {@link close}. */
  get pid(): number | null {
    if (this === current) return getpid();
    this.#checkClosed();
    return this.#popen?.pid ?? null;
  }

  /**
   * A descriptor that becomes readable once the child has ended, as Python's
   * `sentinel`: for `mp.connection.wait()`. Closed by {@link close}. Throws
   * before {@link start}.
   */
  get sentinel(): number {
    const popen = this.#started('sentinel');
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    this.#sentinel ??= (require('./connection') as typeof import('./connection'))._openSentinel(popen.pid, popen.ended);
    return this.#sentinel;
  }

  /** Same as {@link pid}, as Python's `ident`. */
  get ident(): number | null {
    return this.pid;
  }

  /**
   * `null` until the child ends; then `0`, `1` after an uncaught error (or a
   * rejected Promise) in the target, `n` after `process.exit(n)`, `-signal`
   * when a signal killed it. Throws after {@link close}.
   */
  get exitCode(): number | null {
    this.#checkClosed();
    return this.#popen?.poll() ?? null;
  }

  /** `[1, 2]` for `Process-1:2`: the numbers of this process and its ancestors. @internal */
  get _identity(): readonly number[] {
    return this.#identity;
  }

  /** The pid of the process that created this object. @internal */
  get _parentPid(): number {
    return this.#parentPid;
  }

  /** The target and arguments, for a start method that sends them to the child. @internal */
  get _call(): { target: ((...args: unknown[]) => unknown) | null; args: unknown[] } {
    return { target: this.#target, args: this.#args };
  }

  /** What makes this object in another process, with {@link _restore}. @internal */
  get _state(): ProcessState {
    return {
      name: this.#name,
      identity: this.#identity,
      daemon: this.#daemon,
      parentPid: this.#parentPid,
      parentName: this.#parentName,
    };
  }

  /**
   * What the child runs: calls the target with the arguments and returns what
   * it returns (a Promise keeps the child alive until it settles). Override it
   * in a subclass to run something else.
   */
  run(): unknown {
    return this.#target === null ? undefined : this.#target(...this.#args);
  }

  /**
   * Starts the child with this object's start method. Throws when called
   * twice, after {@link close}, from another process than the one that made
   * this object, or from a daemonic process.
   */
  start(): void {
    this.#checkClosed();
    if (this.#popen !== null) throw new Error('cannot start a process twice');
    if (this.#parentPid !== getpid()) throw new Error('can only start a process object created by the current process');
    if (current.#daemon) throw new Error('daemonic processes are not allowed to have children');
    activeChildren();
    this.#popen = this._Popen();
    // The child has its copy (or was sent them): drop ours, as Python does.
    this.#target = null;
    this.#args = [];
    children.add(this);
  }

  /**
   * Resolves once the child has ended, or after `timeout` milliseconds (never
   * rejects on a timeout: check {@link exitCode}). Throws before
   * {@link start}, after {@link close}, or from another process than the
   * parent; a negative timeout gets a RangeError.
   */
  join(timeout?: number | null): Promise<void> {
    const limit = validateTimeout(timeout);
    const popen = this.#joinable('join');
    return popen.wait(limit).then(() => {
      if (popen.ended) children.delete(this);
    });
  }

  /** {@link join}, blocking the thread until the child ends or `timeout` milliseconds pass. */
  joinSync(timeout?: number | null): void {
    const limit = validateTimeout(timeout);
    const popen = this.#joinable('joinSync');
    popen.waitSync(limit);
    if (popen.ended) children.delete(this);
  }

  /** Whether the child has started and not ended yet (reaps it if it has). */
  isAlive(): boolean {
    this.#checkClosed();
    if (this === current) return true;
    if (this.#parentPid !== getpid()) throw new Error('can only test a child process');
    if (this.#popen === null) return false;
    if (this.#popen.poll() === null && !this.#popen.ended) return true;
    children.delete(this);
    return false;
  }

  /** Sends SIGTERM to the child (nothing once it has ended). Throws before {@link start}. */
  terminate(): void {
    this.#started('terminate').terminate();
  }

  /** Sends SIGKILL to the child (nothing once it has ended). Throws before {@link start}. */
  kill(): void {
    this.#started('kill').kill();
  }

  /**
   * Releases what this object holds for its child; any use but `name` and
   * `daemon` throws afterwards. Throws while the child is still running.
   */
  close(): void {
    if (this.#popen !== null) {
      if (this.#popen.poll() === null && !this.#popen.ended) {
        throw new Error('cannot close a process while it is still running: call join() or terminate() first');
      }
      this.#popen.close();
      this.#popen = null;
      if (this.#sentinel !== null) fs.closeSync(this.#sentinel);
      this.#sentinel = null;
      children.delete(this);
    }
    this.#closed = true;
  }

  /** Launches the child with this object's start method. @internal */
  protected abstract _Popen(): Popen;

  /** Called in the child once it is the current process (contexts fix their start method). @internal */
  protected _childStarted(): void {}

  /**
   * In the parent, just before a fork: notes what the child will have to
   * forget, so that the child itself only reads, and has what the child will
   * call first compiled (V8 compiles a function on its first call: in every
   * child otherwise). @internal
   */
  _beforeFork(precompile: (fn: (...args: never[]) => unknown) => void): void {
    parentHasListeners = PARENT_EVENTS.some((event) => process.listenerCount(event) > 0);
    precompile(this.run);
    if (this.#target !== null) precompile(this.#target);
  }

  /**
   * In the child: makes this object the current process and forgets the
   * parent's tree. (A forked child pays for every page it writes, each
   * allocation included: this does the least it can.) `leave` ends a forked
   * child at once: `process.exit(n)` in it leaves through it.
   * @internal
   */
  _becomeChild(leave?: (code: number) => never): void {
    if (current === this) return;
    if (leave !== undefined) leaveForkedChild = leave;
    if (children.size > 0) {
      for (const child of children) child.#popen?.abandon();
      children = new Set();
    }
    counter = 0;
    parent = null;
    parentOf = this;
    current = this;
    if (parentHasListeners) forgetParentListeners();
    this._childStarted();
  }

  /** The parent of this process as seen from it (in the child). @internal */
  _parent(): BaseProcess {
    return new ParentProcess(this.#parentName, this.#parentPid);
  }

  /**
   * In the child: runs {@link run} and joins the children it left; returns
   * the exit code, or a Promise of it when `run()` returned one. Never throws:
   * an uncaught error is printed with the process name on stderr (exit code 1).
   * @internal
   */
  _bootstrap(): number | Promise<number> {
    this._becomeChild();
    let result: unknown;
    try {
      result = this.run();
    } catch (error) {
      return leaving(reportError(this.#name, error));
    }
    if (!isThenable(result)) return leaving(0);
    return Promise.resolve(result).then(
      () => leaving(0),
      (error: unknown) => leaving(reportError(this.#name, error)),
    );
  }

  /** `<Process name='Process-1' pid=4242 parent=4241 started daemon>`, as Python's repr. */
  [inspect.custom](): string {
    return `<${this.constructor.name} ${this.#describeState()}>`;
  }

  /** The same text as `util.inspect()` gives. */
  toString(): string {
    return this[inspect.custom]();
  }

  #describeState(): string {
    const parts = [`name=${JSON.stringify(this.#name)}`];
    if (this.#closed) return `${parts[0]} closed`;
    if (this === current) parts.push('started');
    else if (this.#popen === null) parts.push('initial');
    else {
      parts.push(`pid=${this.#popen.pid}`, `parent=${this.#parentPid}`);
      const code = this.#popen.poll();
      parts.push(code === null && !this.#popen.ended ? 'started' : `stopped exitcode=${String(code)}`);
    }
    if (this.#daemon) parts.push('daemon');
    return parts.join(' ');
  }

  #checkClosed(): void {
    if (this.#closed) throw new Error('process object is closed');
  }

  #started(what: string): Popen {
    this.#checkClosed();
    if (this.#popen === null) throw new Error(`cannot ${what} a process that has not been started`);
    return this.#popen;
  }

  #joinable(what: string): Popen {
    this.#checkClosed();
    if (this.#parentPid !== getpid()) throw new Error(`can only ${what} a child process`);
    if (this.#popen === null) throw new Error(`can only ${what} a started process`);
    return this.#popen;
  }
}

/** The keys of {@link ProcessOptions}. */
const PROCESS_OPTIONS = ['target', 'args', 'name', 'daemon'] as const;

function validateProcessOptions(options: unknown): void {
  const { target, args, name, daemon } = validateOptions(options, PROCESS_OPTIONS);
  if (target != null && typeof target !== 'function') {
    throw new TypeError(`target must be a function, got ${describe(target)}`);
  }
  if (args !== undefined && !Array.isArray(args)) throw new TypeError(`args must be an array, got ${describe(args)}`);
  if (name != null && typeof name !== 'string') throw new TypeError(`name must be a string, got ${describe(name)}`);
  if (daemon != null && typeof daemon !== 'boolean') {
    throw new TypeError(`daemon must be a boolean, got ${describe(daemon)}`);
  }
}

/** The current process or its parent: neither can be started. */
class ProcessView extends BaseProcess {
  protected _Popen(): Popen {
    throw new Error(`${this.name} is not a process object of this process: it cannot be started`);
  }
}

/** The process at the top of the tree, `'MainProcess'`. */
class MainProcess extends ProcessView {}

/**
 * The parent, as seen from a child (Python's `_ParentProcess`): its name and
 * pid, whether it is alive, and waiting for its end.
 */
class ParentProcess extends ProcessView {
  readonly #pid: number;

  constructor(name: string, pid: number) {
    restoring = { name, identity: [], daemon: false, parentPid: pid, parentName: name };
    super();
    this.#pid = pid;
  }

  override get pid(): number {
    return this.#pid;
  }

  override get exitCode(): null {
    return null;
  }

  /** Whether the parent is still running (a parent that ended but was not reaped yet is not). */
  override isAlive(): boolean {
    return getppid() === this.#pid || isRunning(this.#pid);
  }

  /** Resolves once the parent has ended (polling), or after `timeout` milliseconds. */
  override join(timeout?: number | null): Promise<void> {
    const limit = validateTimeout(timeout);
    const deadline = limit === null ? Infinity : Date.now() + limit;
    return new Promise((resolve) => {
      const check = (): void => {
        if (!this.isAlive() || Date.now() >= deadline) resolve();
        else setTimeout(check, Math.min(50, Math.max(0, deadline - Date.now())));
      };
      check();
    });
  }

  override joinSync(timeout?: number | null): void {
    const limit = validateTimeout(timeout);
    pollSync(() => (this.isAlive() ? undefined : true), limit);
  }
}

const main: BaseProcess = BaseProcess._restore(MainProcess, {
  name: 'MainProcess',
  identity: [],
  daemon: false,
  parentPid: 0,
  parentName: '',
});
current = main;


/** What the child does after `run()`, before it leaves with `code`: as Python's `util._exit_function()`. */
function leaving(code: number): number {
  exitFunction();
  return code;
}

/**
 * At the end of a process: its daemonic children are terminated, then every
 * child is joined, as Python's `atexit` handler does.
 */
function exitFunction(): void {
  if (children.size === 0) return;
  for (const child of activeChildren()) if (child.daemon) child.terminate();
  for (const child of activeChildren()) child.joinSync();
}

/**
 * In a forked child, the parent's listeners of the process's own events
 * belong to the parent's program (its test runner, its shutdown code): a
 * Process child runs only its target. (The parent's 'exit' listeners are
 * skipped by {@link childExit}, at no cost to a child that never exits so.)
 */
function forgetParentListeners(): void {
  for (const event of PARENT_EVENTS) if (process.listenerCount(event) > 0) process.removeAllListeners(event);
}

const PARENT_EVENTS = ['uncaughtException', 'unhandledRejection', 'SIGINT', 'SIGTERM', 'SIGHUP'];
/** Whether the parent had such listeners when it last forked (see `_beforeFork()`). */
let parentHasListeners = true;

/**
 * The first 'exit' listener: in a forked Process child, `process.exit(n)`
 * joins the child's own children and leaves at once with `n`, as Python's
 * child on `sys.exit(n)`; the parent's 'exit' listeners never run there.
 */
function childExit(code: number): void {
  if (current !== main && leaveForkedChild !== null) {
    exitFunction();
    leaveForkedChild(code);
  }
}

/** In a forked Process child: leaves at once (the addon's `_exit`); see `_becomeChild()`. */
let leaveForkedChild: ((code: number) => never) | null = null;

/**
 * The end of the process's own work: its event loop has nothing left to do
 * (children nobody joins do not keep it alive). As Python's interpreter at the
 * end of the main module, daemonic children are terminated first, then the
 * others joined; once they have ended, the loop is empty again and Node exits.
 * (A child process ends its work when `run()` returns: see `leaving()`.)
 */
function endOfWork(): void {
  if (children.size === 0) return;
  const left = activeChildren();
  for (const child of left) if (child.daemon) child.terminate();
  void Promise.all(left.map((child) => child.join()));
}

process.prependListener('exit', childExit);
process.on('beforeExit', endOfWork);
process.on('exit', exitFunction);

/** The process object of the process this code runs in (`name` is `'MainProcess'` at the top). */
export function currentProcess(): BaseProcess {
  return current;
}

/** The parent of the current process, `null` in the main process. */
export function parentProcess(): BaseProcess | null {
  if (parent === null && parentOf !== null) parent = parentOf._parent();
  return parent;
}

/**
 * The children of the current process that are still alive; those found
 * ended are reaped and dropped from the list, as in Python.
 */
export function activeChildren(): BaseProcess[] {
  for (const child of children) child.isAlive();
  return [...children];
}

/** The number of CPUs of the machine, as Python's `multiprocessing.cpu_count()`. */
export function cpuCount(): number {
  return nodeOs.cpus().length || nodeOs.availableParallelism();
}
