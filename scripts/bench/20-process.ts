/**
 * Process start + join of an empty target, median, per start method, side by
 * side with Python's multiprocessing (get_context(method)) measured in the
 * same run, and spawn next to a bare child_process.fork() start + exit. The
 * target lives in a module of its own that loads nothing (20-targets/empty.ts):
 * a spawned child loads it by reference, as Python's loads `os.getpid`.
 */
import { fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '../..';
import { inFreshNode, median, printTable, PYTHON_TIMING, pythonProcessLoop, Row, runPython, timeRunsAsync } from './lib';

const RUNS: Record<mp.StartMethod, number> = { fork: 300, forkserver: 300, spawn: 40 };

/** A bare child_process.fork() of an empty script, until its 'exit'. */
function bareFork(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    fork(script, [], { stdio: 'ignore' }).on('exit', () => resolve()).on('error', reject);
  });
}

const LARGE_ARGUMENT_MIB = [4, 16];
const LARGE_ARGUMENT_RUNS = 3;

function pythonLargeArgument(method: mp.StartMethod, mebibytes: number): number | null {
  return runPython<number>(`${PYTHON_TIMING}
import multiprocessing, os
if __name__ == '__main__':
    ctx = multiprocessing.get_context('${method}')
    data = bytes(${mebibytes} * 1024 * 1024)
    def once():
        p = ctx.Process(target=len, args=(data,))
        p.start()
        p.join()
    print(json.dumps(median(samples(once, ${LARGE_ARGUMENT_RUNS}, 1))))`);
}

function timesSpawn(forkserver: number | undefined, spawn: number | undefined): string {
  return forkserver !== undefined && spawn !== undefined ? `${(forkserver / spawn).toFixed(2)}x spawn's` : '';
}

/**
 * start() and start + joinSync() with a 4 and a 16 MiB argument, spawn and
 * forkserver side by side (the forkserver's request used to be read in time
 * quadratic in its size), and Python's forkserver with the same bytes.
 */
function largeArgumentRows(): Row[] {
  const rows: Row[] = [];
  for (const mebibytes of LARGE_ARGUMENT_MIB) {
    const spawn = inFreshNode<[number, number]>('large-argument', ['spawn', mebibytes, LARGE_ARGUMENT_RUNS]);
    const forkserver = inFreshNode<[number, number]>('large-argument', ['forkserver', mebibytes, LARGE_ARGUMENT_RUNS]);
    rows.push({ name: `start(), ${mebibytes} MiB, spawn`, value: spawn?.[0] ?? null, unit: 'ms' });
    rows.push({ name: `start() + joinSync(), ${mebibytes} MiB, spawn`, value: spawn?.[1] ?? null, unit: 'ms' });
    rows.push({
      name: `start(), ${mebibytes} MiB, forkserver`,
      value: forkserver?.[0] ?? null,
      unit: 'ms',
      note: timesSpawn(forkserver?.[0], spawn?.[0]),
      target: '<= 2x spawn',
    });
    rows.push({
      name: `start() + joinSync(), ${mebibytes} MiB, forkserver`,
      value: forkserver?.[1] ?? null,
      unit: 'ms',
      note: timesSpawn(forkserver?.[1], spawn?.[1]),
    });
    rows.push({
      name: `Python start + join, ${mebibytes} MiB, forkserver`,
      value: pythonLargeArgument('forkserver', mebibytes),
      unit: 'ms',
      baseline: forkserver?.[1],
    });
  }
  return rows;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const targets: Record<mp.StartMethod, string> = { fork: '<= 1.5 ms', forkserver: '<= 5 ms', spawn: '<= 1.10x bare fork' };
  let bare: number | null = null;
  for (const method of mp.getAllStartMethods()) {
    // In a Node of its own (see fresh/process-loop.ts), as Python's runs.
    const ours = inFreshNode('process-loop', [method, 'join', RUNS[method]]);
    const sync = inFreshNode('process-loop', [method, 'joinSync', RUNS[method]]);
    rows.push({ name: `Process start + join(), ${method}`, value: ours, unit: 'ms', target: targets[method] });
    rows.push({ name: `Process start + joinSync(), ${method}`, value: sync, unit: 'ms' });
    rows.push({ name: `Python Process start + join(), ${method}`, value: pythonProcessLoop(method, Math.min(RUNS[method], 100)), unit: 'ms', baseline: ours });
    if (method === 'spawn') {
      const script = path.join(os.tmpdir(), `mp-bench-empty-${process.pid}.js`);
      fs.writeFileSync(script, '');
      bare = median(await timeRunsAsync(() => bareFork(script), RUNS.spawn));
      fs.unlinkSync(script);
      rows.push({ name: 'bare child_process.fork() start + exit', value: bare, unit: 'ms', baseline: ours });
    }
  }
  printTable('Process start + join of an empty target, median', rows);
  printTable('Process with one large Buffer argument (issue 13 item 7: linear, forkserver <= 2x spawn), median', largeArgumentRows());
  const spawnRow = rows.find((row) => row.name === 'Process start + join(), spawn');
  if (bare !== null && spawnRow?.value != null) {
    console.log(`\nspawn / bare child_process.fork = ${(spawnRow.value / bare).toFixed(2)} (target <= 1.10)`);
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
