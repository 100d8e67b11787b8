/**
 * The one small interface behind which each start method launches and watches
 * a child, as CPython's `popen_fork.Popen` and its spawn and forkserver
 * variants: `Process` never touches the OS itself.
 * @internal
 */
import { setLongTimeout } from '../timeout';

/** How a child process is started: see `setStartMethod()`. */
export type StartMethod = 'fork' | 'spawn' | 'forkserver';

/** What a Popen needs from the Process it launches. */
export interface Launchable {
  /** `Process-N`, or the name given. */
  readonly name: string;
  /** Whether the parent may end (and terminate this child) without joining it. */
  readonly daemon: boolean;
}

/** A started child, as the parent sees it. */
export interface Popen {
  readonly method: StartMethod;
  readonly pid: number;
  /** True once the child has ended and been reaped. */
  readonly ended: boolean;
  /**
   * The exit code, or `null` while the child runs; does not wait (reaps a
   * child that has ended). `-signal` when a signal killed it.
   */
  poll(): number | null;
  /** Resolves with the exit code once the child ends, or `null` after `timeoutMs` (null: no limit). */
  wait(timeoutMs: number | null): Promise<number | null>;
  /** {@link wait}, blocking the thread. */
  waitSync(timeoutMs: number | null): number | null;
  /** Sends SIGTERM, unless the child has ended. */
  terminate(): void;
  /** Sends SIGKILL, unless the child has ended. */
  kill(): void;
  /** Releases what watches the child; it must have ended. */
  close(): void;
  /** In a forked child of this process: drops what watched the child, which belongs to the parent. */
  abandon(): void;
}

/**
 * What every start method shares: the exit code once known, the waiters of
 * `wait()`, signals, and whether the child is waited for: only a `join()` in
 * progress keeps the event loop alive (at the end of the parent's own work,
 * process.ts joins the children left, as Python's parent does at exit).
 */
export abstract class BasePopen implements Popen {
  abstract readonly method: StartMethod;
  abstract readonly pid: number;
  ended = false;
  protected returncode: number | null = null;
  private readonly waiters = new Set<(code: number | null) => void>();

  /** Looks, without waiting, whether the child ended; {@link settle}s if so. */
  protected abstract check(): void;
  /** Someone waits for the child (its end must be reported, the event loop kept alive), or nobody does. */
  protected abstract setWaitedFor(waitedFor: boolean): void;
  abstract waitSync(timeoutMs: number | null): number | null;
  abstract close(): void;
  abstract abandon(): void;

  poll(): number | null {
    if (!this.ended) this.check();
    return this.returncode;
  }

  /**
   * Whether wait() first looks (poll) whether the child has ended: where the
   * child's end is reported anyway and looking costs more than waiting for the
   * report (a round trip to the fork server), it does not.
   */
  protected readonly pollsBeforeWaiting: boolean = true;

  wait(timeoutMs: number | null): Promise<number | null> {
    if (this.pollsBeforeWaiting || timeoutMs === 0) this.poll();
    if (this.ended || timeoutMs === 0) return Promise.resolve(this.returncode);
    return new Promise((resolve) => {
      let cancelTimer: (() => void) | undefined;
      const done = (code: number | null): void => {
        cancelTimer?.();
        this.waiters.delete(done);
        this.updateWaitedFor();
        resolve(code);
      };
      this.waiters.add(done);
      this.updateWaitedFor();
      if (timeoutMs !== null) cancelTimer = setLongTimeout(() => done(this.poll()), timeoutMs);
    });
  }

  terminate(): void {
    this.signal('SIGTERM');
  }

  kill(): void {
    this.signal('SIGKILL');
  }

  /**
   * Records the end of the child: its exit code, or `null` when it is lost
   * (someone else reaped it). Code awaiting `join()` may fork again from here,
   * inside an I/O callback: the child drops the I/O events its parent had yet
   * to handle (see DropParentEvents in native/fork.cc).
   */
  protected settle(code: number | null): void {
    if (this.ended) return;
    this.ended = true;
    this.returncode = code;
    this.setWaitedFor(false);
    for (const waiter of [...this.waiters]) waiter(code);
  }

  protected updateWaitedFor(): void {
    if (!this.ended) this.setWaitedFor(this.waiters.size > 0);
  }

  private signal(signal: NodeJS.Signals): void {
    if (this.poll() !== null || this.ended) return;
    try {
      process.kill(this.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
}
