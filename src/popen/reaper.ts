/**
 * Reaping a child this process waits for itself with waitpid(): every child
 * of the fork start method, and spawned children once taken from libuv (see
 * popen/spawn.ts). Nothing reaps it behind the user's back: an ended child
 * stays a zombie until a poll or a wait reaps it, as in Python, and neither
 * needs the event loop.
 * @internal
 */
import { ExitWatch, mayReportLater, watchExit } from '../exit_watch';
import type { NativeBinding } from '../native';
import * as os from '../os';

export class Reaper {
  private watch: ExitWatch | null = null;

  /** @param settle told the exit code once the child is reaped; `null` when someone else reaped it (its code is lost). */
  constructor(
    private readonly native: NativeBinding,
    private readonly pid: number,
    private readonly settle: (code: number | null) => void,
  ) {}

  /**
   * While a join() waits, the event loop watches the child (its pidfd) and
   * reaps and reports it as it ends. Otherwise nothing does: an ended child
   * stays a zombie until {@link poll} or {@link waitSync} reap it (exitCode,
   * isAlive(), activeChildren(), the next start()), as in Python.
   */
  setWaitedFor(waitedFor: boolean): void {
    if (waitedFor && this.watch === null) this.watch = this.watchChild();
    else if (!waitedFor) this.abandon();
  }

  /** Reaps the child if it has ended, without waiting. */
  poll(): void {
    this.reaped(() => this.native.waitpid(this.pid, os.WNOHANG));
  }

  /** Waits up to `timeoutMs` (null: no limit) for the child to end, blocking the thread, and reaps it. */
  waitSync(timeoutMs: number | null): void {
    this.reaped(() => this.native.waitpidTimeout(this.pid, timeoutMs ?? -1));
  }

  /** Stops watching the child (left unreaped). */
  abandon(): void {
    this.watch?.close();
    this.watch = null;
  }

  /** Reaps and reports the child once it ends; `null` when it was reaped already (by someone else). */
  private watchChild(): ExitWatch | null {
    const onExit = (error: Error | null, _pid: number, status: number): void => {
      this.watch = null;
      // ECHILD: the user reaped it (os.wait()): its exit code is lost.
      this.settle(error === null ? os.waitstatusToExitcode(status) : null);
    };
    try {
      return watchExit(this.native, this.pid, onExit);
    } catch (error) {
      // Reaped already, by someone waiting for any child (waitpid(-1)).
      if ((error as NodeJS.ErrnoException).code !== 'ECHILD') throw error;
      this.settle(null);
      return null;
    }
  }

  /**
   * Runs a waitpid; settles when it reaped the child. ECHILD: a watching
   * thread reaped it and will report it, or someone else did (os.wait()) and
   * its exit code is lost.
   */
  private reaped(waitpid: () => [number, number]): void {
    let result: [number, number];
    try {
      result = waitpid();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ECHILD') throw error;
      if (this.watch !== null && mayReportLater(this.watch)) return;
      this.abandon();
      this.settle(null);
      return;
    }
    if (result[0] === 0) return;
    this.abandon();
    this.settle(os.waitstatusToExitcode(result[1]));
  }
}
