/**
 * What runs around a fork(), as Python's `os.register_at_fork`, and the count
 * of forks this process descends from.
 *
 * Code that runs only in a forked child is compiled anew in every child, page
 * fault by page fault (about 0.1 ms a function): this library's own modules
 * therefore do not hook the fork; they compare {@link forkState}`.generation`
 * with the one they last saw and catch up lazily, as CPython's modules compare
 * `os.getpid()`. Hooks are for what must happen at once.
 * @internal
 */

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

/** `generation` goes up by one in every forked child, nested forks included. */
export const forkState = { generation: 0 };

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
