/**
 * A zombie, as the kernel makes it: the child exits at once, but until its
 * parent calls waitpid() it stays in the process table as <defunct> (state Z).
 * This demo shows `ps` (or /proc when ps is missing) before and after.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';

import * as mp from '../..';

function show(pid: number, when: string): void {
  console.log(`--- ${when}`);
  try {
    console.log(execFileSync('ps', ['-o', 'pid,ppid,stat,cmd', '-p', String(pid)], { encoding: 'utf8' }).trimEnd());
  } catch (error) {
    // ps exits 1 when the pid is gone; it may also not be installed.
    const stat = fs.existsSync(`/proc/${pid}/stat`) ? fs.readFileSync(`/proc/${pid}/stat`, 'utf8').trim() : null;
    console.log(stat ? `/proc/${pid}/stat: ${stat}` : `no process ${pid} any more`);
  }
}

const pid = mp.os.fork();
if (pid === 0) mp.os._exit(0); // the child ends at once

// Give the child time to exit; nobody reaps it: not us, not libuv.
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
show(pid, `child ${pid} has exited, parent has not called waitpid(): a zombie (STAT Z, <defunct>)`);
const [, status] = mp.os.waitpid(pid);
show(pid, `after waitpid(): exit code ${mp.os.waitstatusToExitcode(status)}, the zombie is gone`);
