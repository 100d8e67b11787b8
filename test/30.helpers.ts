/**
 * Helpers of the shared-memory tests (test/30.*): children forked inside jest
 * run a body and leave at once through _exit, never returning into jest.
 */
import * as mp from '..';

/** Forks a child that runs `body` then leaves with _exit(its return value), 70 if it throws. */
export function forkChild(body: () => number): number {
  const pid = mp.os.fork();
  if (pid === 0) {
    let code = 70;
    try {
      code = body();
    } finally {
      mp.os._exit(code);
    }
  }
  return pid;
}

/** Reaps `pid` and returns its exit code (`-signal` when killed). */
export function exitcodeOf(pid: number): number {
  return mp.os.waitstatusToExitcode(mp.os.waitpid(pid)[1]);
}
