/**
 * Compiles the Process path of this library eagerly, once, in the process that
 * loads it.
 *
 * V8 compiles a function the first time it runs. Code that runs only in a
 * forked child (a Process's bootstrap, its way out) would therefore be
 * compiled in every child anew, page fault by page fault: about 0.1 ms a
 * function, 0.5 ms a Process start measured on a 2-core machine. Compiled as
 * it loads instead (V8's `--no-lazy` while those modules load, then back to
 * `--lazy`), every child finds it compiled. The cost: about 7 ms once. A user
 * who runs Node with `--no-lazy` keeps it.
 * @internal
 */
import { loadNative } from '../native';

const chosenByUser = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].includes('--no-lazy');
/** Without the addon there is no fork, and nothing to compile ahead. */
const native = chosenByUser ? null : loadNative();

export function beginEagerCompilation(): void {
  native?.setV8Flags('--no-lazy');
}

export function endEagerCompilation(): void {
  native?.setV8Flags('--lazy');
}

/** `load()`'s result, every module it loads compiled eagerly. */
export function compileEagerly<T>(load: () => T): T {
  beginEagerCompilation();
  try {
    return load();
  } finally {
    endEagerCompilation();
  }
}
