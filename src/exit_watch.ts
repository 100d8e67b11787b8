/**
 * Waiting for a child to end without blocking the event loop, as every waiter
 * of this library does: `Process.join()` under fork, `os.waitpidAsync()`, the
 * forkserver. The addon watches each child from the event loop (its pidfd)
 * and reports them all to one function here, which passes each report on: a
 * child costs no JS object of the addon's, reference or async context. Where
 * the loop cannot watch (no pidfds, pid -1, a worker thread), a thread of the
 * addon blocked in waitpid() does.
 * @internal
 */
import { forkGeneration } from './at_fork';
import type { ExitCallback, NativeBinding, NativeExitWatcher } from './native';

/** A wait for a child's end: whether it keeps the event loop alive, and its cancellation. */
export type ExitWatch = NativeExitWatcher;

/** The callbacks of the children the event loop watches, by pid. */
const callbacks = new Map<number, ExitCallback>();
/** Whether the addon reports here (null: not asked yet in this process). */
let loopWatches: boolean | null = null;
/** The fork generation `callbacks` belongs to: a forked child does not wait for its parent's children. */
let generation = forkGeneration();

function report(error: Error | null, pid: number, status: number): void {
  const onExit = callbacks.get(pid);
  if (onExit === undefined) return;
  callbacks.delete(pid);
  onExit(error, pid, status);
}

/** A child watched by the event loop. */
class LoopWatch implements ExitWatch {
  constructor(
    private readonly native: NativeBinding,
    private readonly pid: number,
  ) {}

  ref(): void {
    this.native.keepChildAlive(this.pid, true);
  }

  unref(): void {
    this.native.keepChildAlive(this.pid, false);
  }

  close(): void {
    if (callbacks.delete(this.pid)) this.native.unwatchChild(this.pid);
  }
}

/**
 * Whether `watch` may have reaped its child and not reported it yet: a
 * thread's report reaches the event loop a moment after its waitpid(). The
 * event loop's watch reaps and reports in one callback: a child it watches
 * that cannot be reaped (ECHILD) was reaped by someone else.
 */
export function mayReportLater(watch: ExitWatch): boolean {
  return !(watch instanceof LoopWatch);
}

/**
 * Reaps `pid` once it ends and calls `onExit` with its wait status (an ECHILD
 * error when someone else reaped it first). Throws ECHILD at once for a pid
 * that is not a child. The wait keeps the event loop alive as `keepAlive` says.
 */
export function watchExit(native: NativeBinding, pid: number, onExit: ExitCallback, keepAlive = true): ExitWatch {
  if (generation !== forkGeneration()) {
    generation = forkGeneration();
    callbacks.clear();
  }
  loopWatches ??= native.setChildExitHandler(report);
  if (loopWatches && native.watchChild(pid, keepAlive)) {
    callbacks.set(pid, onExit);
    return new LoopWatch(native, pid);
  }
  const watcher = new native.ExitWatcher(pid, onExit);
  if (!keepAlive) watcher.unref();
  return watcher;
}
