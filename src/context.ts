/**
 * Start methods and contexts, as CPython's `context.py`. A context is an
 * object per start method (`'fork'`, `'spawn'`, `'forkserver'`) that carries
 * every factory of the library: `ctx.Process` starts its children with that
 * method, whatever the default is.
 *
 * @example
 * ```ts
 * import * as mp from 'node-multiprocessing';
 *
 * mp.setStartMethod('spawn');          // once, before starting anything
 * const ctx = mp.getContext('fork');   // or: a context, leaving the default alone
 * const p = new ctx.Process({ target: () => console.log('forked') });
 * p.start();
 * await p.join();
 * ```
 * @packageDocumentation
 */
import type * as Native from './native';
import { onFirstUse } from './lazy';
import { actualStartMethod, setActualStartMethod } from './popen/method';
import type { Popen, StartMethod } from './popen/popen';
import { activeChildren, BaseProcess, cpuCount, currentProcess, parentProcess } from './process';
import type { ProcessOptions } from './process';
import { describe, validateOptions } from './validate';

// Modules are loaded on first use, as Python's context imports them: a
// spawned child that runs one function loads neither the start methods it
// does not use nor the synchronisation primitives (~15 ms each).
/* eslint-disable @typescript-eslint/no-var-requires */
const synchronize = onFirstUse((): typeof import('./synchronize') => require('./synchronize'));
const sharedctypes = onFirstUse((): typeof import('./sharedctypes') => require('./sharedctypes'));
const sharedMemory = onFirstUse((): typeof import('./shared_memory') => require('./shared_memory'));
const connection = onFirstUse((): typeof import('./connection') => require('./connection'));
const queues = onFirstUse((): typeof import('./queues') => require('./queues'));
const native = onFirstUse((): typeof Native => require('./native'));
const managers = onFirstUse((): typeof import('./managers') => require('./managers'));
const forkPopen = onFirstUse((): typeof import('./popen/fork') => require('./popen/fork'));
const spawnPopen = onFirstUse((): typeof import('./popen/spawn') => require('./popen/spawn'));
const forkServerPopen = onFirstUse((): typeof import('./popen/forkserver') => require('./popen/forkserver'));
const pool = onFirstUse((): typeof import('./pool') => require('./pool'));

export type { StartMethod } from './popen/popen';

const START_METHODS: readonly StartMethod[] = ['fork', 'spawn', 'forkserver'];

/**
 * How each start method launches a child. A child of spawn or forkserver is
 * told the start method set here (its own default then), as Python's prepare().
 */
const LAUNCHERS: Record<StartMethod, (process: BaseProcess) => Popen> = {
  fork: (process) => new (forkPopen().ForkPopen)(process),
  spawn: (process) => new (spawnPopen().SpawnPopen)(process, getStartMethod(true)),
  forkserver: (process) => new (forkServerPopen().ForkServerPopen)(process, getStartMethod(true)),
};
/* eslint-enable @typescript-eslint/no-var-requires */

/** Whether `method` can run here: fork and forkserver need the addon (not on Windows). */
function isAvailable(method: StartMethod): boolean {
  return method === 'spawn' || native().loadNative() !== null;
}

function validateMethod(method: unknown): StartMethod {
  if (!START_METHODS.includes(method as StartMethod)) {
    throw new TypeError(`start method must be one of ${START_METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(method)}`);
  }
  if (!isAvailable(method as StartMethod)) {
    throw Object.assign(native().unsupported(`the '${String(method)}' start method`), { method });
  }
  return method as StartMethod;
}

/**
 * A process of the default context: started with the start method in force
 * when {@link BaseProcess.start | start()} is called ({@link getStartMethod}).
 * Subclass it and override {@link BaseProcess.run | run()} to run something
 * other than a target.
 *
 * @example
 * ```ts
 * class Worker extends mp.Process {
 *   override run(): void { console.log('working in', mp.currentProcess().name); }
 * }
 * const w = new Worker();
 * w.start();
 * await w.join();
 * ```
 */
export class Process<A extends unknown[] = unknown[]> extends BaseProcess<A> {
  /** @param options what the child runs and how it is named; see {@link ProcessOptions}. */
  constructor(options: ProcessOptions<A> = {}) {
    super(options);
  }

  /** The start method of this class's context; `null`: the default one, when started. @internal */
  static readonly _startMethod: StartMethod | null = null;

  protected override _Popen(): Popen {
    return LAUNCHERS[getStartMethod()](this as BaseProcess);
  }
}

/** The Process class of a context: started with that context's method, whatever the default. */
function processClassFor(method: StartMethod): typeof Process {
  const launch = LAUNCHERS[method];
  const ContextProcess = class<A extends unknown[] = unknown[]> extends Process<A> {
    static override readonly _startMethod: StartMethod | null = method;

    protected override _Popen(): Popen {
      return launch(this as BaseProcess);
    }

    // As Python's _bootstrap(): the child's own default is the method it was
    // started with (set directly: a forked child pays for each function it runs).
    protected override _childStarted(): void {
      setActualStartMethod(method);
    }
  };
  // Python's names: a context's processes are named 'ForkProcess-1' and so on.
  const name = { fork: 'ForkProcess', spawn: 'SpawnProcess', forkserver: 'ForkServerProcess' }[method];
  Object.defineProperty(ContextProcess, 'name', { value: name });
  return ContextProcess;
}

/**
 * The factories and functions of the library, bound to a start method: as
 * Python's `multiprocessing.context.BaseContext`. Get one with
 * {@link getContext}.
 */
export class BaseContext {
  /** The Process class of this context. */
  readonly Process: typeof Process;

  /** See {@link currentProcess}. */
  readonly currentProcess = currentProcess;
  /** See {@link parentProcess}. */
  readonly parentProcess = parentProcess;
  /** See {@link activeChildren}. */
  readonly activeChildren = activeChildren;
  /** See {@link cpuCount}. */
  readonly cpuCount = cpuCount;

  // Synchronisation and shared memory work across processes of every start
  // method (they cross into spawned children through reduction.ts): the
  // factories are the library's own, one line each.
  /** See `Lock`. */
  get Lock() { return synchronize().Lock; } // prettier-ignore
  /** See `RLock`. */
  get RLock() { return synchronize().RLock; } // prettier-ignore
  /** See `Semaphore`. */
  get Semaphore() { return synchronize().Semaphore; } // prettier-ignore
  /** See `BoundedSemaphore`. */
  get BoundedSemaphore() { return synchronize().BoundedSemaphore; } // prettier-ignore
  /** See `Condition`. */
  get Condition() { return synchronize().Condition; } // prettier-ignore
  /** See `Event`. */
  get Event() { return synchronize().Event; } // prettier-ignore
  /** See `Barrier`. */
  get Barrier() { return synchronize().Barrier; } // prettier-ignore
  /** See `Value`. */
  get Value() { return sharedctypes().Value; } // prettier-ignore
  /** See `Array`. */
  get Array() { return sharedctypes().Array; } // prettier-ignore
  /** See `RawValue`. */
  get RawValue() { return sharedctypes().RawValue; } // prettier-ignore
  /** See `RawArray`. */
  get RawArray() { return sharedctypes().RawArray; } // prettier-ignore
  /** See `SharedMemory`. */
  get SharedMemory() { return sharedMemory().SharedMemory; } // prettier-ignore
  /** See `ShareableList`. */
  get ShareableList() { return sharedMemory().ShareableList; } // prettier-ignore

  /** See `Pipe`. */
  get Pipe() { return connection().Pipe; } // prettier-ignore
  /** See `Queue`. */
  get Queue() { return queues().Queue; } // prettier-ignore
  /** See `SimpleQueue`. */
  get SimpleQueue() { return queues().SimpleQueue; } // prettier-ignore
  /** See `JoinableQueue`. */
  get JoinableQueue() { return queues().JoinableQueue; } // prettier-ignore

  /** See `Manager`: its server process starts with this context's start method. */
  Manager(options: Omit<import('./managers').ManagerOptions, 'context'> = {}): Promise<import('./managers').SyncManager> {
    return managers().Manager({ ...options, context: this });
  }

  /** See `ManagerSync`: its server process starts with this context's start method. */
  ManagerSync(options: Omit<import('./managers').ManagerOptions, 'context'> = {}): import('./managers').SyncManager {
    return managers().ManagerSync({ ...options, context: this });
  }
  /** See `Pool`: this context's pools start their workers with its start method. */
  get Pool(): typeof import('./pool').Pool { return pool().Pool._ofContext(this); } // prettier-ignore

  /** @param method the start method of this context; `null` for the default context. */
  constructor(private readonly method: StartMethod | null) {
    this.Process = method === null ? Process : processClassFor(method);
  }

  /** The start method of this context (for the default context: {@link getStartMethod}). */
  getStartMethod(): StartMethod {
    return this.method ?? getStartMethod();
  }

  /** See {@link getContext}. */
  getContext(method?: StartMethod | null): BaseContext {
    return getContext(method);
  }

  /** See {@link getAllStartMethods}. */
  getAllStartMethods(): StartMethod[] {
    return getAllStartMethods();
  }
}

const contexts = new Map<StartMethod, BaseContext>();
const defaultContext = new BaseContext(null);

/** The start method used when none was set: fork where the addon is, spawn elsewhere (Windows). */
function defaultStartMethod(): StartMethod {
  return isAvailable('fork') ? 'fork' : 'spawn';
}

/**
 * The context of `method` (`'fork'`, `'spawn'` or `'forkserver'`): an object
 * with every factory of the library, whose `Process` starts children with
 * that method. Without `method`: the default context (`mp` itself). A method
 * that does not exist gets a TypeError; one not available here (fork and
 * forkserver on Windows) an Error with `code === 'ENOSYS'`.
 */
export function getContext(method?: StartMethod | null): BaseContext {
  if (method == null) return defaultContext;
  const valid = validateMethod(method);
  let context = contexts.get(valid);
  if (context === undefined) {
    context = new BaseContext(valid);
    contexts.set(valid, context);
  }
  return context;
}

/**
 * Sets the start method of `mp.Process` (and of every factory of the default
 * context). Call it once, before starting anything: a second call (or one after
 * the method was used) throws, unless `force` is set; `setStartMethod(null,
 * { force: true })` goes back to the default.
 */
export function setStartMethod(method: StartMethod | null, options: { force?: boolean } = {}): void {
  const force = validateOptions(options, ['force'] as const).force ?? false;
  if (typeof force !== 'boolean') throw new TypeError(`force must be a boolean, got ${describe(force)}`);
  const actual = actualStartMethod();
  if (actual !== null && !force) {
    throw new Error(`the start method has already been set to '${actual}': use setStartMethod(method, { force: true }) to change it`);
  }
  setActualStartMethod(method === null && force ? null : validateMethod(method));
}

/**
 * The start method of `mp.Process`. Like Python's, it fixes the method when none
 * was set yet (a later {@link setStartMethod} then needs `force`), unless
 * `allowNone` is set, which returns `null` instead.
 */
export function getStartMethod(allowNone: true): StartMethod | null;
export function getStartMethod(allowNone?: false): StartMethod;
export function getStartMethod(allowNone = false): StartMethod | null {
  if (actualStartMethod() === null && !allowNone) setActualStartMethod(defaultStartMethod());
  return actualStartMethod();
}

/** The start methods available here, the default first: `['fork', 'spawn', 'forkserver']` on Linux and macOS, `['spawn']` on Windows. */
export function getAllStartMethods(): StartMethod[] {
  const methods = START_METHODS.filter(isAvailable);
  const first = defaultStartMethod();
  return [first, ...methods.filter((m) => m !== first)];
}
