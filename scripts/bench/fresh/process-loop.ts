/**
 * `node process-loop.js <method> <join|joinSync> <runs>`: Process start + join
 * of an empty target in a freshly started Node that has loaded this package
 * and nothing else (see fork-loop.ts). Prints the median, in ms, as JSON.
 * `joinSync` runs in a plain loop, as Python's `join()` does; `join` in an
 * async one (`await p.join()`), where each start() after the first runs inside
 * a microtask. Run by ../20-process.ts.
 */
import * as mp from '../../..';
import { empty } from '../20-targets/empty';
import { median, timeRuns, timeRunsAsync } from '../timing';

function started(ctx: mp.BaseContext): mp.BaseProcess {
  const p = new ctx.Process({ target: empty });
  p.start();
  return p;
}

function checked(p: mp.BaseProcess): void {
  if (p.exitCode !== 0) throw new Error(`${p.name} exited with ${p.exitCode}`);
}

async function measure(ctx: mp.BaseContext, join: string, runs: number): Promise<number[]> {
  if (join === 'joinSync') {
    return timeRuns(() => {
      const p = started(ctx);
      p.joinSync();
      checked(p);
    }, runs);
  }
  return timeRunsAsync(async () => {
    const p = started(ctx);
    await p.join();
    checked(p);
  }, runs);
}

async function main(): Promise<void> {
  const [method, join, runs] = process.argv.slice(2);
  console.log(JSON.stringify(median(await measure(mp.getContext(method as mp.StartMethod), join, Number(runs)))));
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
