/**
 * The seeds' fork example, in TypeScript: os.fork() returns 0 in the child and
 * the child's pid in the parent; each side prints who it is; the parent waits
 * for the child and decodes its exit status.
 *
 * Python:
 *   pid = os.fork()
 *   if pid == 0:
 *       print(f"child: pid={os.getpid()} parent={os.getppid()}"); os._exit(3)
 *   _, status = os.waitpid(pid, 0)
 *   print(f"parent: child {pid} exited with {os.waitstatus_to_exitcode(status)}")
 */
import * as mp from '../..';

let shared = 'set by the parent before the fork';

const pid = mp.os.fork();
if (pid === 0) {
  console.log(`child:  pid=${mp.os.getpid()} parent=${mp.os.getppid()} sees "${shared}"`);
  shared = 'changed by the child';
  mp.os._exit(3);
}
console.log(`parent: pid=${mp.os.getpid()} forked child ${pid}`);
const [, status] = mp.os.waitpid(pid);
console.log(`parent: child ${pid} exited with code ${mp.os.waitstatusToExitcode(status)}`);
console.log(`parent: still sees "${shared}" (the child changed only its own copy)`);
