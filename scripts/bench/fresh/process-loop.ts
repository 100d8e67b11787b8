/**
 * `node process-loop.js <method> <join|joinSync> <runs>`: Process start + join
 * of an empty target in a freshly started Node that has loaded this package
 * and nothing else (see fork-loop.ts). Prints the median, in ms, as JSON.
 * Run by ../20-process.ts.
 */
import * as mp from '../../..';
import { empty } from '../20-targets/empty';
import { median, timeRunsAsync } from '../timing';

async function startJoin(ctx: mp.BaseContext, join: 'join' | 'joinSync'): Promise<void> {
  const p = new ctx.Process({ target: empty });
  p.start();
  if (join === 'join') await p.join();
  else p.joinSync();
  if (p.exitCode !== 0) throw new Error(`${p.name} exited with ${p.exitCode}`);
}

async function main(): Promise<void> {
  const [method, join, runs] = process.argv.slice(2) as [mp.StartMethod, 'join' | 'joinSync', string];
  const ctx = mp.getContext(method);
  console.log(JSON.stringify(median(await timeRunsAsync(() => startJoin(ctx, join), Number(runs)))));
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
