/**
 * Timers for the package's waits, whatever their length. `setTimeout` takes
 * at most 2^31-1 ms (24.8 days) and fires after 1 ms beyond that, so a
 * `join(2 ** 31)` would return at once: this one re-arms in steps until the
 * deadline. Timeouts themselves are checked by `validateTimeout` (validate.ts).
 * @internal
 */

/** The longest delay `setTimeout` honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Calls `callback` once `ms` milliseconds (any finite number >= 0) have passed; returns the function that cancels it. */
export function setLongTimeout(callback: () => void, ms: number): () => void {
  const deadline = performance.now() + ms;
  let timer: NodeJS.Timeout;
  const arm = (): void => {
    const left = deadline - performance.now();
    timer = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(callback, Math.max(0, left));
  };
  arm();
  return () => clearTimeout(timer);
}
