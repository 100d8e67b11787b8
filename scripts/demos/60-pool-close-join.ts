/**
 * A pool of 4 running 5 tasks, then close() and join(): the fifth task waits
 * for a free worker. The TypeScript twin of the classic Python example:
 *
 *     def long_time_task(name):
 *         print('Run task %s (%s)...' % (name, os.getpid()))
 *         start = time.time()
 *         time.sleep(random.random() * 3)
 *         print('Task %s runs %0.2f seconds.' % (name, time.time() - start))
 *
 *     if __name__ == '__main__':
 *         print('Parent process %s.' % os.getpid())
 *         p = Pool(4)
 *         for i in range(5):
 *             p.apply_async(long_time_task, args=(i,))
 *         print('Waiting for all subprocesses done...')
 *         p.close()
 *         p.join()
 *         print('All subprocesses done.')
 *
 * `node dist-scripts/demos/60-pool-close-join.js [fork|spawn|forkserver]`
 */
import * as mp from '../..';

/** Blocks this process for `ms`, as Python's time.sleep(). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A task: up to a second of work (exported: spawn and forkserver workers load it by reference). */
export function longTimeTask(name: number): void {
  console.log(`Run task ${name} (${mp.currentProcess().pid})...`);
  const start = Date.now();
  sleepSync(Math.random() * 1000);
  console.log(`Task ${name} runs ${((Date.now() - start) / 1000).toFixed(2)} seconds.`);
}

async function main(): Promise<void> {
  const method = (process.argv[2] as mp.StartMethod | undefined) ?? mp.getStartMethod();
  console.log(`Parent process ${process.pid} (start method: ${method}).`);
  const pool = new (mp.getContext(method).Pool)(4);
  for (let i = 0; i < 5; i++) pool.applyAsync(longTimeTask, [i]);
  console.log('Waiting for all subprocesses done...');
  pool.close();
  await pool.join();
  console.log('All subprocesses done.');
}

if (require.main === module) void main();
