/**
 * `npm run bench:majors`: the fork loop and Process start + joinSync() (fork,
 * forkserver) on every supported Node major, each as a ratio to Python's
 * multiprocessing, and that ratio against Node 20's (issue 15: within 10% of
 * Node 20's on every major).
 *
 *   node dist-scripts/bench-majors.js [--rounds N] [--forks N] [--processes N] [--json FILE]
 *
 * Built to cancel a noisy machine's drift: the majors are measured in rounds,
 * one after another (the first of each round rotating), and each figure of ours
 * is paired with Python's same loop measured right before or after it (the
 * order alternating), so the pair sees the same load. A round gives each major
 * a ratio ours/Python per loop and, against Node 20's ratio of the same round,
 * a relative ratio. Per major it prints the medians over the rounds and their
 * spread (interquartile range), and the verdict per loop: within 10% of Node
 * 20's (median relative ratio <= 1.10), not within, or not decidable here when
 * the relative ratios' interquartile range is wider than 0.10.
 *
 * Each major runs its official binary (scripts/node-dist.js, .cache/node/)
 * with the prebuilt addon of its ABI: run `npm run build:prebuilds` first (a
 * major without one is skipped). `--json FILE` writes every round's figures
 * (after each round), and `--report FILE` prints the tables of a saved run
 * (of the rounds done so far, when it was stopped early).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { inFreshNode, pythonForkLoop, pythonProcessLoop } from './bench/lib';

const root = path.resolve(__dirname, '..');
/** Node 20: the major the others are held against. */
const REFERENCE = 20;
/** Largest relative ratio to Node 20's that meets the target, and widest spread that can decide it. */
const TARGET = 1.1;
const DECIDABLE_IQR = 0.1;

interface Runtime {
  major: number;
  version: string;
  node: string;
  addon: string;
}

/** A loop measured for ours and for Python: each run gives both medians, in ms. */
interface Loop {
  name: string;
  ours: (runtime: Runtime, options: Options) => number | null;
  python: (options: Options) => number | null;
}

const LOOPS: Loop[] = [
  {
    name: 'fork() + _exit() + waitpid()',
    ours: (rt, o) => inFreshNode('fork-loop', [o.forks], { NODE_MULTIPROCESSING_ADDON: rt.addon }, rt.node),
    python: (o) => pythonForkLoop(o.forks),
  },
  {
    name: 'Process start + joinSync(), fork',
    ours: (rt, o) => inFreshNode('process-loop', ['fork', 'joinSync', o.processes], { NODE_MULTIPROCESSING_ADDON: rt.addon }, rt.node),
    python: (o) => pythonProcessLoop('fork', o.processes),
  },
  {
    name: 'Process start + joinSync(), forkserver',
    ours: (rt, o) =>
      inFreshNode('process-loop', ['forkserver', 'joinSync', o.processes], { NODE_MULTIPROCESSING_ADDON: rt.addon }, rt.node),
    python: (o) => pythonProcessLoop('forkserver', o.processes),
  },
];

interface Options {
  rounds: number;
  forks: number;
  processes: number;
  json: string | null;
  /** Prints the tables of the figures a `--json` run saved, measuring nothing. */
  report: string | null;
}

/** What `--json` saves, after every round. */
interface Saved {
  options: Options;
  versions: Array<{ major: number; version: string }>;
  loops: Array<{ name: string; rounds: Record<number, Array<[number | null, number | null]>> }>;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { rounds: 15, forks: 200, processes: 100, json: null, report: null };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, text] = [argv[i], argv[i + 1]];
    if ((flag === '--json' || flag === '--report') && text !== undefined) {
      options[flag === '--json' ? 'json' : 'report'] = text;
      continue;
    }
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${flag} needs a whole number >= 1, got ${JSON.stringify(text)}`);
    if (flag === '--rounds') options.rounds = value;
    else if (flag === '--forks') options.forks = value;
    else if (flag === '--processes') options.processes = value;
    else throw new RangeError(`unknown option ${flag} (--rounds, --forks, --processes, --json, --report)`);
  }
  return options;
}

function nodeScript(script: string, args: string[]): string {
  return execFileSync(process.execPath, [path.join(root, 'scripts', script), ...args], { cwd: root, encoding: 'utf8' }).trim();
}

/** The official binary of `major` and the prebuilt addon of its ABI; `null` (and why, on stderr) without one. */
function runtimeOf(major: number): Runtime | null {
  const node = path.join(nodeScript('node-dist.js', ['dir', String(major)]), 'bin', 'node');
  const [abi, version] = execFileSync(node, ['-p', '`${process.versions.modules} ${process.version} (V8 ${process.versions.v8})`'], {
    encoding: 'utf8',
  })
    .trim()
    .split(/ (.*)/);
  const addon = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `node.abi${abi}.glibc.node`);
  if (!fs.existsSync(addon)) {
    console.error(`Node ${major}: no prebuilt addon (${addon}); run npm run build:prebuilds`);
    return null;
  }
  return { major, version, node, addon };
}

/** Ours and Python's medians (ms) of one loop, back to back, Python first when `pythonFirst`. */
function pair(loop: Loop, runtime: Runtime, options: Options, pythonFirst: boolean): [number | null, number | null] {
  if (pythonFirst) {
    const python = loop.python(options);
    return [loop.ours(runtime, options), python];
  }
  const ours = loop.ours(runtime, options);
  return [ours, loop.python(options)];
}

/** The `q` quantile (0..1) of `values`, interpolated. */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  return sorted[low] + (sorted[Math.ceil(at)] - sorted[low]) * (at - low);
}

interface Spread {
  median: number;
  q1: number;
  q3: number;
  n: number;
}

function spread(values: number[]): Spread | null {
  if (values.length === 0) return null;
  return { median: quantile(values, 0.5), q1: quantile(values, 0.25), q3: quantile(values, 0.75), n: values.length };
}

/** [ours, python] per round, per major, per loop. */
type Samples = Array<Record<number, Array<[number | null, number | null]>>>;

function ratio([ours, python]: [number | null, number | null]): number | null {
  return ours !== null && python !== null && python > 0 ? ours / python : null;
}

function verdict(relative: Spread | null): string {
  if (relative === null) return 'no figures';
  const iqr = relative.q3 - relative.q1;
  if (iqr > DECIDABLE_IQR) return `cannot be decided on this machine (IQR ${iqr.toFixed(2)} > ${DECIDABLE_IQR})`;
  return relative.median <= TARGET ? `within 10% (${relative.median.toFixed(2)}x)` : `NOT within 10% (${relative.median.toFixed(2)}x)`;
}

function format(s: Spread | null, digits = 2): string {
  return s === null ? 'n/a' : `${s.median.toFixed(digits)} [${s.q1.toFixed(digits)}-${s.q3.toFixed(digits)}]`;
}

function printLoop(name: string, index: number, runtimes: Array<{ major: number; version: string }>, samples: Samples): void {
  console.log(`\n## ${name}: per round ours/Python, and that against Node ${REFERENCE}'s of the same round\n`);
  console.log('| Node (V8) | ours ms | Python ms | ours/Python median [IQR] | / Node 20 median [IQR] | rounds | verdict |');
  console.log('|---|---|---|---|---|---|---|');
  const perRound = samples[index];
  for (const runtime of runtimes) {
    const rounds = perRound[runtime.major];
    const ratios = rounds.map(ratio).filter((r): r is number => r !== null);
    const relatives = rounds
      .map((figures, round) => {
        const own = ratio(figures);
        const reference = ratio(perRound[REFERENCE]?.[round] ?? [null, null]);
        return own !== null && reference !== null ? own / reference : null;
      })
      .filter((r): r is number => r !== null);
    const ours = spread(rounds.map(([o]) => o).filter((v): v is number => v !== null));
    const python = spread(rounds.map(([, p]) => p).filter((v): v is number => v !== null));
    const relative = runtime.major === REFERENCE ? null : spread(relatives);
    const cells = [
      runtime.version,
      ours === null ? 'n/a' : ours.median.toFixed(3),
      python === null ? 'n/a' : python.median.toFixed(3),
      format(spread(ratios)),
      runtime.major === REFERENCE ? '(reference)' : format(relative),
      String(ratios.length),
      runtime.major === REFERENCE ? '' : verdict(relative),
    ];
    console.log(`| ${cells.join(' | ')} |`);
  }
}

function printAll(options: Options, rounds: number, runtimes: Array<{ major: number; version: string }>, samples: Samples): void {
  console.log(`# bench:majors: ${rounds} rounds; fork loop median of ${options.forks}, Process loops of ${options.processes} per run`);
  LOOPS.forEach((loop, index) => printLoop(loop.name, index, runtimes, samples));
}

function main(): void {
  const options = parseOptions(process.argv.slice(2));
  if (options.report !== null) {
    const saved = JSON.parse(fs.readFileSync(options.report, 'utf8')) as Saved;
    const samples: Samples = saved.loops.map((loop) => loop.rounds);
    printAll(saved.options, samples[0][saved.versions[0].major].length, saved.versions, samples);
    return;
  }
  const majors = nodeScript('node-dist.js', ['majors']).split(/\s+/).map(Number);
  const runtimes = majors.map(runtimeOf).filter((runtime): runtime is Runtime => runtime !== null);
  if (!runtimes.some((runtime) => runtime.major === REFERENCE)) {
    console.error(`no Node ${REFERENCE} to hold the others against`);
    process.exitCode = 1;
    return;
  }
  const samples: Samples = LOOPS.map(() => Object.fromEntries(runtimes.map((runtime) => [runtime.major, []])));
  let done = 0;
  const started = Date.now();
  for (let round = 0; round < options.rounds; round++) {
    // Rotate who goes first, so that no major always meets the start (or end) of a round.
    const order = runtimes.map((_, i) => runtimes[(i + round) % runtimes.length]);
    const figures = LOOPS.map(() => new Map<number, [number | null, number | null]>());
    for (const runtime of order) {
      LOOPS.forEach((loop, index) => figures[index].set(runtime.major, pair(loop, runtime, options, round % 2 === 1)));
    }
    // A round counts whole or not at all: every major has the same rounds.
    figures.forEach((perMajor, index) => perMajor.forEach((pairOf, major) => samples[index][major].push(pairOf)));
    done++;
    if (options.json !== null) {
      const saved: Saved = {
        options,
        versions: runtimes.map(({ major, version }) => ({ major, version })),
        loops: LOOPS.map(({ name }, i) => ({ name, rounds: samples[i] })),
      };
      fs.writeFileSync(options.json, `${JSON.stringify(saved)}\n`);
    }
    console.error(`round ${done}/${options.rounds} done, ${Math.round((Date.now() - started) / 1000)} s`);
  }
  printAll(options, done, runtimes, samples);
}

main();
