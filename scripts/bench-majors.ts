/**
 * `npm run bench:majors`: the fork loop and Process start + joinSync() (fork,
 * forkserver) on every supported Node major, each as a ratio to Python's
 * multiprocessing measured right after it, and that ratio against Node 20's
 * (issue 15: within 10% of Node 20's on every major).
 *
 * Each major runs its official binary (scripts/node-dist.js, .cache/node/)
 * with the prebuilt addon of its ABI: run `npm run build:prebuilds` first (a
 * major without one is skipped). Figures are medians in ms; the machine's load
 * moves them all, the ratios less.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { inFreshNode, printTable, pythonForkLoop, pythonProcessLoop, Row } from './bench/lib';

const root = path.resolve(__dirname, '..');
const FORKS = 300;
const PROCESSES = 200;

interface Figures {
  version: string;
  fork: [number | null, number | null];
  processFork: [number | null, number | null];
  processForkserver: [number | null, number | null];
}

function nodeScript(script: string, args: string[], node = process.execPath): string {
  return execFileSync(node, [path.join(root, 'scripts', script), ...args], { cwd: root, encoding: 'utf8' }).trim();
}

/** The official binary of `major` and the prebuilt addon of its ABI. */
function runtimeOf(major: number): { node: string; addon: string } {
  const node = path.join(nodeScript('node-dist.js', ['dir', String(major)]), 'bin', 'node');
  const abi = execFileSync(node, ['-p', 'process.versions.modules'], { encoding: 'utf8' }).trim();
  return { node, addon: path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `node.abi${abi}.glibc.node`) };
}

function measure(major: number): Figures | null {
  const { node, addon } = runtimeOf(major);
  if (!fs.existsSync(addon)) {
    console.error(`Node ${major}: no prebuilt addon (${addon}); run npm run build:prebuilds`);
    return null;
  }
  const env = { NODE_MULTIPROCESSING_ADDON: addon };
  const ours = (program: string, args: Array<string | number>): number | null => inFreshNode(program, args, env, node);
  const version = execFileSync(node, ['-p', '`${process.version} (V8 ${process.versions.v8})`'], { encoding: 'utf8' }).trim();
  console.error(`measuring ${version}`);
  // Each figure of ours is followed at once by Python's, so that both see the same load.
  return {
    version,
    fork: [ours('fork-loop', [FORKS]), pythonForkLoop(FORKS)],
    processFork: [ours('process-loop', ['fork', 'joinSync', PROCESSES]), pythonProcessLoop('fork', PROCESSES)],
    processForkserver: [ours('process-loop', ['forkserver', 'joinSync', PROCESSES]), pythonProcessLoop('forkserver', PROCESSES)],
  };
}

function ratio([ours, python]: [number | null, number | null]): number | null {
  return ours !== null && python !== null && python > 0 ? ours / python : null;
}

function rows(all: Figures[], key: 'fork' | 'processFork' | 'processForkserver'): Row[] {
  const first = ratio(all[0][key]);
  return all.map((figures) => {
    const own = ratio(figures[key]);
    const drift = own !== null && first !== null ? own / first : null;
    return {
      name: figures.version,
      value: figures[key][0],
      unit: 'ms',
      note:
        own === null
          ? 'n/a'
          : `Python ${figures[key][1]?.toFixed(2)} ms; ours/Python ${own.toFixed(2)}` +
            (drift === null ? '' : `, ${drift.toFixed(2)}x Node ${all[0].version.split('.')[0]}'s`),
      target: figures === all[0] ? '' : "<= 1.10x the first's",
    };
  });
}

function main(): void {
  const majors = nodeScript('node-dist.js', ['majors']).split(/\s+/).map(Number);
  const all = majors.map(measure).filter((figures): figures is Figures => figures !== null);
  if (all.length === 0) return;
  printTable(`fork() + _exit() + waitpid(), median of ${FORKS}, per Node major`, rows(all, 'fork'));
  printTable(`Process start + joinSync(), fork, median of ${PROCESSES}`, rows(all, 'processFork'));
  printTable(`Process start + joinSync(), forkserver, median of ${PROCESSES}`, rows(all, 'processForkserver'));
}

main();
