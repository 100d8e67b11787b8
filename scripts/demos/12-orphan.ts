/**
 * An orphan, as the kernel makes it: the parent exits first; the child, still
 * running, is re-parented to init (pid 1) or to the nearest "subreaper" (a
 * process that asked to adopt orphans, such as a container's init or systemd
 * --user). The child prints getppid() before and after.
 */
import * as mp from '../..';

// The child tells the parent (SIGUSR2) once it has seen its parent: only then
// does the parent exit. Listening before the fork avoids a race; signal
// listeners do not keep Node alive, the timer does (at most 10 s).
const keepAlive = setTimeout(() => {}, 10000);
process.once('SIGUSR2', () => {
  console.log(`parent ${mp.os.getpid()}: exiting without waiting for my child`);
  mp.os._exit(0);
});

const pid = mp.os.fork();
if (pid === 0) {
  process.removeAllListeners('SIGUSR2');
  clearTimeout(keepAlive);
  const before = mp.os.getppid();
  console.log(`child ${mp.os.getpid()}: my parent is ${before}`);
  mp.os.kill(before, 'SIGUSR2');
  const poll = setInterval(() => {
    const after = mp.os.getppid();
    if (after === before) return;
    clearInterval(poll);
    console.log(`child ${mp.os.getpid()}: my parent is gone; I was adopted by ${after}${after === 1 ? ' (init)' : ' (a subreaper)'}`);
  }, 5);
} else {
  console.log(`parent ${mp.os.getpid()}: forked ${pid}`);
  // The child still holds our stdout, so `npm run demo` waits for its last line.
}
