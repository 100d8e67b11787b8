/**
 * `node first-fork.js`: the first fork() + _exit() + waitpid() of a freshly
 * started Node that has loaded this package, in ms, as JSON. It includes what
 * is done once, at the first fork (node's code moved into huge pages, see
 * native/shared_code.cc). Run by ../10-fork.ts.
 */
import * as mp from '../../..';

const start = process.hrtime.bigint();
const pid = mp.os.fork();
if (pid === 0) mp.os._exit(0);
mp.os.waitpid(pid);
console.log(JSON.stringify(Number(process.hrtime.bigint() - start) / 1e6));
