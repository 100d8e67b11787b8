/**
 * The forkserver start method, as CPython's `popen_forkserver.py`: the fork
 * server of this process (forkserver.ts, started on first use) forks the
 * child, reports its pid at once and its exit code when it ends. The target
 * travels by reference, as with spawn.
 * @internal
 */
import { ForkServerChild, ForkServerClient } from '../forkserver';
import type { BaseProcess } from '../process';
import { childSpec, encodeSpec } from '../spawn';
import { BasePopen, StartMethod } from './popen';

export class ForkServerPopen extends BasePopen implements ForkServerChild {
  readonly method = 'forkserver';
  readonly pid: number;
  keepsAlive = false;
  /** The server reports the child's end on its events socket: join() need not ask it first. */
  protected override readonly pollsBeforeWaiting = false;
  private readonly client: ForkServerClient;

  /** @param defaultMethod the parent's start method when one was set: the child's default too. */
  constructor(process_: BaseProcess, defaultMethod: StartMethod | null) {
    super();
    const spec = encodeSpec(childSpec(process_, 'forkserver', defaultMethod));
    this.client = ForkServerClient.get();
    this.pid = this.client.fork(spec, this);
    this.updateWaitedFor();
  }

  exited(code: number): void {
    this.settle(code);
  }

  protected check(): void {
    this.settleFrom(this.client.waitSync(this.pid, 0));
  }

  waitSync(timeoutMs: number | null): number | null {
    if (!this.ended) this.settleFrom(this.client.waitSync(this.pid, timeoutMs));
    return this.returncode;
  }

  protected override settle(code: number | null): void {
    if (this.ended) return;
    super.settle(code);
    this.client.forget(this.pid);
  }

  protected setWaitedFor(waitedFor: boolean): void {
    this.keepsAlive = waitedFor;
    this.client.updateKeepAlive();
  }

  close(): void {}

  abandon(): void {}

  private settleFrom(code: number | undefined): void {
    if (code !== undefined) this.settle(code);
  }
}
