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
 * Each child inherits the lock (the fork start method; under spawn or
 * forkserver it would cross as an argument), whose state lives in shared
 * memory. Each child writes its line in two pieces with a pause between:
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
    // Unbuffered writes, one piece at a time: only the lock keeps a line whole.
    fs.writeSync(1, 'hello ');
    sleepSync(5);
    fs.writeSync(1, `world ${i}\n`);
  } finally {
    l.release();
  }
}

async function main(): Promise<void> {
  const lock = new mp.Lock();
  const children: mp.Process[] = [];
  for (let num = 0; num < 10; num++) {
    const p = new mp.Process({ target: f, args: [lock, num] });
    p.start();
    children.push(p);
  }
  for (const p of children) {
    await p.join();
    if (p.exitCode !== 0) throw new Error(`${p.name} failed with exit code ${p.exitCode}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
