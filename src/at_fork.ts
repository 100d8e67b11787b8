/**
 * What runs around a fork(), as Python's `os.register_at_fork`, and the count
 * of forks this process descends from.
 *
 * Code that runs only in a forked child meets everything cold there: a
 * function is compiled anew (about 0.1 ms), an inline cache misses, a field
 * written for the first time deoptimises its readers, each at a few page
 * faults of its own. This library's own modules therefore do not hook the
 * fork: they compare {@link forkGeneration} with the one they last saw and
 * catch up lazily, as CPython's modules compare `os.getpid()`, and the addon
 * counts the generations, so that the child runs no JS of ours for it. Hooks
 * are for what must happen at once.
 * @internal
 */
import * as fs from 'fs';

import { loadNative } from './native';
import { describe, validateOptions } from './validate';

/** Callbacks run around every fork, as Python's `os.register_at_fork`. */
export interface AtForkHooks {
  /** In the parent, just before the fork. */
  before?: () => void;
  /** In the parent, just after the fork. */
  afterInParent?: (childPid: number) => void;
  /** In the child, just after the fork, before `fork()` returns 0. */
  afterInChild?: () => void;
}

/** The registered hooks, in order of registration (read by `os.fork()`). */
export const atForkHooks: AtForkHooks[] = [];

/** The addon's count (no addon, no fork: always 0). */
const generation: Uint32Array = loadNative()?.forkGeneration ?? new Uint32Array(1);

/** How many forks this process descends from: one more in every forked child, nested forks included. */
export function forkGeneration(): number {
  return generation[0];
}

/**
 * Registers hooks to run around each fork; returns a function that removes
 * them. `before` hooks run in reverse order of registration, the others in
 * order, as in Python.
 */
export function registerAtFork(hooks: AtForkHooks): () => void {
  validateHooks(hooks);
  atForkHooks.push(hooks);
  return () => {
    const index = atForkHooks.indexOf(hooks);
    if (index >= 0) atForkHooks.splice(index, 1);
  };
}

const HOOK_NAMES = ['before', 'afterInParent', 'afterInChild'] as const;

/** Checked at registration, as Python does, not at the next fork. */
function validateHooks(hooks: unknown): asserts hooks is AtForkHooks {
  if (typeof hooks !== 'object' || hooks === null || Array.isArray(hooks)) {
    throw new TypeError(`hooks must be an object of functions ({ before, afterInParent, afterInChild }), got ${describe(hooks)}`);
  }
  const given = validateOptions(hooks, HOOK_NAMES, 'hooks');
  for (const name of HOOK_NAMES) {
    const hook = given[name];
    if (hook !== undefined && typeof hook !== 'function') throw new TypeError(`hooks.${name} must be a function, got ${describe(hook)}`);
  }
  if (HOOK_NAMES.every((name) => given[name] === undefined)) {
    throw new TypeError('hooks must have at least one of before, afterInParent, afterInChild');
  }
}

/**
 * Runs one hook. What it throws is reported on stderr and ignored, as Python
 * does ("Exception ignored in: ..."): the fork goes on, and a child never
 * leaves fork() by an exception into the parent's code after the call.
 * Written synchronously: the child may leave through _exit() next.
 */
export function runHook<A extends unknown[]>(hook: ((...args: A) => void) | undefined, name: string, ...args: A): void {
  if (hook === undefined) return;
  try {
    hook(...args);
  } catch (error) {
    const detail = error instanceof Error ? (error.stack ?? String(error)) : String(error);
    try {
      fs.writeSync(2, `Exception ignored in at-fork hook ${name} (${hook.name || 'anonymous'}):\n${detail}\n`);
    } catch {
      // No stderr to report to: ignored all the same.
    }
  }
}
