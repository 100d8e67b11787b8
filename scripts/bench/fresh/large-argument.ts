/**
 * `node large-argument.js <method> <MiB> <runs>`: Process start() and start +
 * joinSync() with one Buffer argument of `MiB` MiB, in a fresh Node (see
 * fork-loop.ts). Prints `[start median, start + joinSync median]`, in ms, as
 * JSON. Run by ../20-process.ts.
 */
import * as mp from '../../..';
import { discard } from '../20-targets/empty';
import { median } from '../timing';

function measure(ctx: mp.BaseContext, argument: Buffer): [number, number] {
  const begin = process.hrtime.bigint();
  const p = new ctx.Process({ target: discard, args: [argument] });
  p.start();
  const started = process.hrtime.bigint();
  p.joinSync();
  const joined = process.hrtime.bigint();
  if (p.exitCode !== 0) throw new Error(`${p.name} exited with ${p.exitCode}`);
  p.close();
  return [Number(started - begin) / 1e6, Number(joined - begin) / 1e6];
}

const [method, mebibytes, runs] = process.argv.slice(2);
const ctx = mp.getContext(method as mp.StartMethod);
const argument = Buffer.alloc(Number(mebibytes) * 1024 * 1024, 1);
measure(ctx, Buffer.alloc(1)); // the fork server, the target's module: loaded before timing
const samples = Array.from({ length: Number(runs) }, () => measure(ctx, argument));
console.log(JSON.stringify([median(samples.map(([start]) => start)), median(samples.map(([, total]) => total))]));
