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
import { loadNative } from './native';

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
  atForkHooks.push(hooks);
  return () => {
    const index = atForkHooks.indexOf(hooks);
    if (index >= 0) atForkHooks.splice(index, 1);
  };
}
