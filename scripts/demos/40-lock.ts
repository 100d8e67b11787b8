/**
 * The seeds' Lock example, in TypeScript: ten processes print "hello world N"
 * under one shared Lock, so that no two lines ever interleave, as Python's
 *
 * ```python
 * def f(l, i):
 *     l.acquire()
 *     try:
 *         print('hello world', i)
 *     finally:
 *         l.release()
 *
 * lock = Lock()
 * for num in range(10):
 *     Process(target=f, args=(lock, num)).start()
 * ```
 *
 * The children are made with mp.os.fork() (mp.Process was not there when this
 * was written); each inherits the lock, whose state lives in shared memory.
 * Each child writes its line in small pieces, with a pause in the middle:
 * without the lock the pieces of different children would mix.
 */
import * as fs from 'fs';

import * as mp from '../..';

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function f(l: mp.Lock, i: number): void {
  l.acquireSync();
  try {
    // Unbuffered writes, one word at a time: only the lock keeps a line whole.
    fs.writeSync(1, 'hello ');
    sleepSync(5);
    fs.writeSync(1, `world ${i}\n`);
  } finally {
    l.release();
  }
}

function main(): void {
  const lock = new mp.Lock();
  const start = new mp.Event(); // all ten start together, to contend for the lock
  const pids: number[] = [];
  for (let num = 0; num < 10; num++) {
    const pid = mp.os.fork();
    if (pid === 0) {
      start.waitSync();
      f(lock, num);
      mp.os._exit(0);
    }
    pids.push(pid);
  }
  start.set();
  for (const pid of pids) {
    const [, status] = mp.os.waitpid(pid);
    if (mp.os.waitstatusToExitcode(status) !== 0) throw new Error(`child ${pid} failed with status ${status}`);
  }
}

main();
