/**
 * Three processes that each work for half a second: started together and
 * joined afterwards they take about half a second in all; started and joined
 * one after the other, about one and a half.
 *
 * The TypeScript twin of Python's:
 *
 *     def work(n):
 *         time.sleep(0.5)
 *     if __name__ == '__main__':
 *         procs = [Process(target=work, args=(i,)) for i in range(3)]
 *         for p in procs: p.start()
 *         for p in procs: p.join()           # concurrent
 *         for i in range(3):
 *             p = Process(target=work, args=(i,)); p.start(); p.join()   # serial
 *
 * `node dist-scripts/demos/21-concurrent-vs-serial.js [fork|spawn|forkserver]`
 */
import * as mp from '../..';

const WORK_MS = 500;

/** Blocks this process for `ms`, as Python's time.sleep(). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The target: half a second of work in the child. */
export function work(n: number): void {
  sleepSync(WORK_MS);
  console.log(`  ${mp.currentProcess().name} (pid ${process.pid}) finished job ${n}`);
}

async function timed(label: string, run: () => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await run();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`${label}: ${seconds.toFixed(2)} s\n`);
  return seconds;
}

async function main(): Promise<void> {
  const method = (process.argv[2] as mp.StartMethod | undefined) ?? mp.getStartMethod();
  const ctx = mp.getContext(method);
  console.log(`3 processes of ${WORK_MS} ms each (start method: ${method})\n`);
  console.log('concurrent: start all three, then join all three');
  const concurrent = await timed('concurrent', async () => {
    const procs = [0, 1, 2].map((n) => new ctx.Process({ target: work, args: [n] }));
    for (const p of procs) p.start();
    for (const p of procs) await p.join();
  });
  console.log('serial: start one, join it, then the next');
  const serial = await timed('serial', async () => {
    for (const n of [0, 1, 2]) {
      const p = new ctx.Process({ target: work, args: [n] });
      p.start();
      await p.join();
    }
  });
  console.log(`serial / concurrent = ${(serial / concurrent).toFixed(1)}x`);
}

if (require.main === module) void main();
