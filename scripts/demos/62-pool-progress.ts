/**
 * A long map with a live progress bar: onProgress(done, total) as chunks
 * complete, then the same map cancelled half-way with an AbortSignal.
 *
 * `node dist-scripts/demos/62-pool-progress.js [fork|spawn|forkserver]`
 */
import * as mp from '../..';

/** Blocks this process for `ms`. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** A task of about 5 ms (exported: spawn and forkserver workers load it by reference). */
export function slowSquare(x: number): number {
  sleepSync(5);
  return x * x;
}

const WIDTH = 40;

function bar(done: number, total: number): string {
  const filled = Math.round((done / total) * WIDTH);
  return `[${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${done}/${total}`;
}

/** Draws the bar in place on a terminal, a line per 25% elsewhere. */
function progress(label: string): (done: number, total: number) => void {
  let shown = -1;
  return (done, total) => {
    if (process.stdout.isTTY) process.stdout.write(`\r${label} ${bar(done, total)}`);
    else if (Math.floor((done / total) * 4) > shown) {
      shown = Math.floor((done / total) * 4);
      console.log(`${label} ${bar(done, total)}`);
    }
  };
}

async function main(): Promise<void> {
  const method = (process.argv[2] as mp.StartMethod | undefined) ?? mp.getStartMethod();
  await using pool = new (mp.getContext(method).Pool)(4);
  const numbers = Array.from({ length: 2000 }, (_, i) => i);
  const started = Date.now();
  const squares = await pool.map(slowSquare, numbers, { chunksize: 10, onProgress: progress('squares') });
  if (process.stdout.isTTY) process.stdout.write('\n');
  console.log(`2000 tasks of 5 ms on 4 workers: ${((Date.now() - started) / 1000).toFixed(2)} s; sum ${squares.reduce((a, b) => a + b, 0)}`);

  const controller = new AbortController();
  const show = progress('cancelled at half');
  const cancelled = pool.map(slowSquare, numbers, {
    chunksize: 10,
    signal: controller.signal,
    onProgress: (done, total) => {
      show(done, total);
      if (done >= total / 2) controller.abort();
    },
  });
  const error = (await cancelled.catch((e: unknown) => e)) as Error;
  if (process.stdout.isTTY) process.stdout.write('\n');
  console.log(`the second map: ${error.name} (its queued tasks dropped, its running workers replaced)`);
}

if (require.main === module) void main();
