/**
 * The forkserver start method, as CPython's `popen_forkserver.py`: the fork
 * server of this process (forkserver.ts, started on first use) forks the
 * child, reports its pid at once and its exit code when it ends. The target
 * travels by reference, as with spawn.
 * @internal
 */
import { getStartMethod } from '../context';
import { ForkServerChild, ForkServerClient } from '../forkserver';
import type { BaseProcess } from '../process';
import { childSpec, encodeSpec } from '../spawn';
import { BasePopen } from './popen';

export class ForkServerPopen extends BasePopen implements ForkServerChild {
  readonly method = 'forkserver';
  readonly pid: number;
  keepsAlive = false;
  /** The server reports the child's end on its events socket: join() need not ask it first. */
  protected override readonly pollsBeforeWaiting = false;
  private readonly client: ForkServerClient;

  constructor(process_: BaseProcess) {
    super(process_.daemon);
    const spec = encodeSpec(childSpec(process_, 'forkserver', getStartMethod(true)));
    this.client = ForkServerClient.get();
    this.pid = this.client.fork(spec, this);
    this.updateKeepAlive();
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

  protected setKeepAlive(keepAlive: boolean): void {
    this.keepsAlive = keepAlive;
    this.client.updateKeepAlive();
  }

  close(): void {}

  abandon(): void {}

  private settleFrom(code: number | undefined): void {
    if (code !== undefined) this.settle(code);
  }
}
