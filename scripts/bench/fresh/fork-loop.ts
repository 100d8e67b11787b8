/**
 * `node fork-loop.js <runs>`: fork() + _exit() + waitpid() in a freshly started
 * Node that has loaded this package and nothing else (the benchmark's own
 * helpers, child_process among them, would be memory that every fork copies).
 * Prints the median per fork, in ms, as JSON. Run by ../10-fork.ts.
 */
import * as mp from '../../..';
import { median, timeRuns } from '../timing';

function forkExitWait(): void {
  const pid = mp.os.fork();
  if (pid === 0) mp.os._exit(0);
  mp.os.waitpid(pid);
}

console.log(JSON.stringify(median(timeRuns(forkExitWait, Number(process.argv[2])))));
