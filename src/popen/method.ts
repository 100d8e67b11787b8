/**
 * The start method in force (Python's `_actual_context`), kept apart from
 * context.ts so that a child can take its parent's without validating it again
 * (validating 'fork' loads the addon, which a spawned child may never need).
 * @internal
 */
import type { StartMethod } from './popen';

let actual: StartMethod | null = null;

/** The start method set (or fixed by first use); `null` before. */
export function actualStartMethod(): StartMethod | null {
  return actual;
}

/** Sets it; the caller has checked that `method` is available. */
export function setActualStartMethod(method: StartMethod | null): void {
  actual = method;
}
