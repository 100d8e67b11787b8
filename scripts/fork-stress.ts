/**
 * Fork stress (`npm run stress`):
 *
 *   node dist-scripts/fork-stress.js [--per-path N] [--hogs N] [--jobs N] [--paths a,b,...] [forks]
 *
 * Forks again and again while the garbage collector is busy in the parent (a
 * churning, growing heap keeps V8's concurrent marking and the platform
 * workers at work at the instant of each fork) and in every child, which
 * allocates, then leaves by one of the exit paths below, in turn. `--hogs N`
 * runs N CPU-burning processes beside it for the whole run (as a loaded CI
 * machine: children that crashed on Node 24/26 did so under load). Without the
 * fork barrier about one child in three deadlocked; the result must be 0 hangs,
 * 0 crashes and every child's expected exit code. A child still running after
 * 10 s is a hang once it sits asleep without gaining CPU time for 5 s (or runs
 * past 5 minutes): a child that is only slow on a loaded machine is not one.
 * The stacks of a hung child's threads are taken with gdb before it is killed.
 *
 * `--jobs N` runs N forking parents at once (default 1), each a process of its
 * own doing exactly what a single one does, one child after another, with its
 * share of the children: a parent forks with nothing of another child's in
 * flight (no timer or wait a child could inherit), as in a run of one job, and
 * the other parents are more load beside it. The hogs are shared: `--hogs 2
 * --jobs 4` is four parents beside two hogs.
 *
 * `--per-path N` forks N children per exit path; a plain `forks` count spreads
 * that many over the paths. Prints one JSON line: the Node and V8 versions,
 * the totals, the figures per path (with each child's time from fork to reap,
 * median and maximum, in ms), every hang (with its stacks' file), every crash (path, pid, signal, the core file
 * kept when the kernel wrote one: `ulimit -c unlimited` with core_pattern
 * `core` writes it in the working directory, renamed here `core.<pid>`), and
 * any forking parent that itself died; on SIGINT or SIGTERM, those so far,
 * marked `interrupted`. Exits 1 if any child hung, crashed or left with
 * another code than its path's, a parent died, or the run was interrupted.
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as readline from 'readline';

import * as mp from '..';

/** A child still running after this long is watched for a hang (see ends()). */
const HANG_AFTER_MS = 10000;
/** Asleep without a CPU tick this long: stuck. */
const STUCK_MS = 5000;
/** Any child still running after this long counts as hung. */
const GIVE_UP_MS = 300000;

/** Objects kept alive in a ring, so old-space grows and marking runs concurrently. */
const retained: unknown[] = new Array(20000);
let cursor = 0;

function churn(objects: number): void {
  for (let i = 0; i < objects; i++) {
    retained[cursor] = { index: i, payload: new Array(8).fill(cursor), text: `item-${cursor}` };
    cursor = (cursor + 1) % retained.length;
  }
}

/** Sends this child's stderr to /dev/null: the report of an expected uncaught error is not news. */
function quietStderr(): void {
  fs.closeSync(2);
  fs.openSync('/dev/null', 'w'); // the lowest free descriptor: 2
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface ExitPath {
  /** The exit code the child must end with. */
  code: number;
  /** Forks with mp.os.fork() and runs this in the child, which then leaves as it says. */
  child?: () => void;
  /** Runs this as the target of an mp.Process (fork start method) instead. */
  target?: () => unknown;
}

/** The ways out of a forked child, each with the exit code Node would give. */
const PATHS: Record<string, ExitPath> = {
  '_exit': { code: 5, child: () => mp.os._exit(5) },
  'process.exit': { code: 3, child: () => process.exit(3) },
  // The path that crashed 13-15 children in 100 on Node 24/26 (issue 15).
  'process.exit-later': { code: 4, child: () => setTimeout(() => process.exit(4), 1) },
  'loop-end': { code: 0, child: () => setTimeout(() => churn(5000), 1) },
  'microtask-end': { code: 0, child: () => void Promise.resolve().then(() => churn(5000)) },
  'throw-later': {
    code: 1,
    child: () => {
      quietStderr();
      setTimeout(() => {
        throw new Error('thrown in a timer');
      }, 1);
    },
  },
  'reject': {
    code: 1,
    child: () => {
      quietStderr();
      void Promise.reject(new Error('rejected'));
    },
  },
  'Process-return': { code: 0, target: () => churn(5000) },
  'Process-async': {
    code: 0,
    target: async () => {
      await sleep(1);
      churn(5000);
    },
  },
};

/**
 * Paths that are not run unless named: `stuck` deadlocks (its only thread
 * waits on a futex nobody wakes), to show that the run tells a hang.
 */
const SELF_TESTS: Record<string, ExitPath> = {
  stuck: { code: 0, child: () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0) },
};

type Outcome = 'ok' | 'hang' | 'crash' | 'wrong-status';
type Counts = Record<Outcome, number>;

/** What a forking parent (`--worker`) prints for each child, one JSON line each. */
interface ChildReport {
  path: string;
  outcome: Outcome;
  /** From fork to reap. */
  ms: number;
  pid: number;
  /** The signal that ended a crashed child, and the core file kept, if any. */
  signal?: number;
  core?: string | null;
  /** A hung child's threads' stacks (gdb), written before it was killed, if gdb could. */
  stacks?: string | null;
}

/** Hang, crash (a signal), wrong code, or ok, from the exit code of a child that ended (`null`: still running). */
function outcome(code: number | null, expected: number): Outcome {
  if (code === null) return 'hang';
  if (code < 0) return 'crash';
  return code === expected ? 'ok' : 'wrong-status';
}

/** The core file a crashed child left in the working directory, renamed after it so the next one does not overwrite it. */
function keepCore(pid: number): string | null {
  try {
    fs.renameSync('core', `core.${pid}`);
    return `${process.cwd()}/core.${pid}`;
  } catch {
    return null;
  }
}

/** The stacks of every thread of a hung child, from gdb, in `hang.<pid>.txt`: that file, or null. */
function keepStacks(pid: number): string | null {
  const file = `${process.cwd()}/hang.${pid}.txt`;
  try {
    const stacks = execFileSync('gdb', ['-p', String(pid), '-batch', '-ex', 'thread apply all bt'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120000,
    });
    fs.writeFileSync(file, stacks);
    return file;
  } catch {
    return null;
  }
}

/** A child's report from its pid, exit code and the time it was forked. */
function childReport(name: string, path: ExitPath, pid: number, code: number | null, started: number): ChildReport {
  const report: ChildReport = { path: name, outcome: outcome(code, path.code), ms: Date.now() - started, pid };
  if (report.outcome === 'crash') {
    report.signal = -(code as number);
    report.core = keepCore(pid);
  }
  return report;
}

/** A child's CPU time so far (clock ticks) and scheduler state, from /proc; null when it is gone. */
function cpuOf(pid: number): { ticks: number; state: string } | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

/**
 * Waits for a child to end (`waitFor(ms)`: whether it ended within `ms`):
 * true when it did, false when it hung. A child still there after
 * HANG_AFTER_MS hangs only once it is stuck, asleep with no CPU time gained
 * for STUCK_MS (a deadlock: it waits on a lock or condition no thread will
 * release); a child that is only slow on a loaded machine is runnable or
 * gains CPU time. Past GIVE_UP_MS any child counts as hung.
 */
async function ends(pid: number, waitFor: (ms: number) => Promise<boolean>): Promise<boolean> {
  if (await waitFor(HANG_AFTER_MS)) return true;
  const since = Date.now();
  let last = cpuOf(pid);
  let still = Date.now();
  while (Date.now() - since < GIVE_UP_MS) {
    if (await waitFor(1000)) return true;
    const now = cpuOf(pid);
    if (now === null || last === null || now.state === 'R' || now.state === 'Z' || now.ticks !== last.ticks) {
      last = now;
      still = Date.now();
    } else if (Date.now() - still >= STUCK_MS) {
      return false;
    }
  }
  return false;
}

/** Forks a child that leaves by `path`: its report; `null` in the child, which must then return to its event loop. */
async function forkOnce(name: string, path: ExitPath): Promise<ChildReport | null> {
  churn(2000);
  const started = Date.now();
  const pid = mp.os.fork();
  if (pid === 0) {
    churn(20000);
    (path.child as () => void)();
    return null;
  }
  // One wait for the child's whole life: a second one could find it reaped already (ECHILD).
  let status: number | null = null;
  const exit = mp.os.waitpidAsync(pid).then(([, raw]) => {
    status = raw;
  });
  // No timer of this parent's may outlive the wait: the next child would inherit it.
  const waitFor = async (ms: number): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exit, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
    return status !== null;
  };
  if (!(await ends(pid, waitFor))) {
    const report = childReport(name, path, pid, null, started);
    report.stacks = keepStacks(pid);
    mp.os.kill(pid, 'SIGKILL');
    await exit;
    return report;
  }
  return childReport(name, path, pid, mp.os.waitstatusToExitcode(status as unknown as number), started);
}

/** Starts an mp.Process (fork) whose target leaves by `path`: its report. */
async function processOnce(name: string, path: ExitPath): Promise<ChildReport> {
  churn(2000);
  const started = Date.now();
  const p = new (mp.getContext('fork').Process)({ target: path.target as () => unknown });
  p.start();
  const pid = p.pid as number;
  const waitFor = async (ms: number): Promise<boolean> => {
    await p.join(ms);
    return p.exitCode !== null;
  };
  let report: ChildReport;
  if (await ends(pid, waitFor)) {
    report = childReport(name, path, pid, p.exitCode, started);
  } else {
    report = childReport(name, path, pid, null, started);
    report.stacks = keepStacks(pid);
    p.kill();
    await p.join();
  }
  p.close();
  return report;
}

/** Burns a CPU until its parent is gone (a run killed outright leaves no hog behind). */
const HOG = 'const parent = process.ppid; for (let n = 1; n % 1e7 !== 0 || process.ppid === parent; n++);';

/**
 * Starts `count` CPU-burning processes: their handles, to stop them at the
 * end. Unreferenced: they must not keep the run alive.
 */
function startHogs(count: number): ChildProcess[] {
  return Array.from({ length: count }, () => {
    const hog = spawn(process.execPath, ['-e', HOG], { stdio: 'ignore' });
    hog.unref();
    return hog;
  });
}

interface Options {
  perPath: number;
  /** A total number of forks, spread over the paths (instead of perPath each). */
  total: number | null;
  hogs: number;
  jobs: number;
  paths: string[];
  /** A forking parent started by the run: prints a ChildReport line per child. */
  worker: boolean;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { perPath: 250, total: null, hogs: 0, jobs: 1, paths: Object.keys(PATHS), worker: false };
  for (let i = 0; i < argv.length; i++) {
    const value = (): string => {
      if (i + 1 >= argv.length) throw new RangeError(`${argv[i]} needs a value`);
      return argv[++i];
    };
    if (argv[i] === '--per-path') options.perPath = count(value(), '--per-path');
    else if (argv[i] === '--hogs') options.hogs = count(value(), '--hogs');
    else if (argv[i] === '--jobs') options.jobs = Math.max(1, count(value(), '--jobs'));
    else if (argv[i] === '--paths') options.paths = value().split(',');
    else if (argv[i] === '--worker') options.worker = true;
    else options.total = count(argv[i], 'forks');
  }
  const unknown = options.paths.filter((name) => pathOf(name) === undefined);
  if (unknown.length > 0) throw new RangeError(`unknown exit paths: ${unknown.join(', ')} (known: ${Object.keys(PATHS).join(', ')})`);
  return options;
}

function pathOf(name: string): ExitPath | undefined {
  return Object.hasOwn(PATHS, name) ? PATHS[name] : Object.hasOwn(SELF_TESTS, name) ? SELF_TESTS[name] : undefined;
}

function count(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, got ${JSON.stringify(text)}`);
  return value;
}

/** A forking parent: its children one after another, a report line for each. */
async function worker(options: Options): Promise<void> {
  const forks = options.total ?? options.perPath * options.paths.length;
  const parent = mp.os.getpid();
  // Stopped by the run, or the run is gone (its end of the pipe closed): a
  // child forked from here just ends as its path says.
  process.once('SIGTERM', () => {
    if (mp.os.getpid() === parent) process.exit(0);
  });
  process.stdout.on('error', () => process.exit(0));
  for (let n = 0; n < forks; n++) {
    const name = options.paths[n % options.paths.length];
    const path = pathOf(name) as ExitPath;
    const report = path.child !== undefined ? await forkOnce(name, path) : await processOnce(name, path);
    if (report === null) return; // the child: back to its event loop
    process.stdout.write(`${JSON.stringify(report)}\n`);
  }
}

/** The arguments of job `index` of `jobs`: its share of the children. */
function workerArgs(options: Options, index: number, jobs: number): string[] {
  const share = (n: number): number => Math.floor(n / jobs) + (index < n % jobs ? 1 : 0);
  const amount = options.total !== null ? [String(share(options.total))] : ['--per-path', String(share(options.perPath))];
  return ['--worker', '--paths', options.paths.join(','), ...amount];
}

interface PathFigures extends Counts {
  /** Each child's time from fork to reap, ms. */
  times: number[];
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Runs the forking parents beside the hogs and sums up what they report. */
async function run(options: Options): Promise<void> {
  const forks = options.total ?? options.perPath * options.paths.length;
  const perPath: Record<string, PathFigures> = {};
  for (const name of options.paths) perPath[name] = { ok: 0, hang: 0, crash: 0, 'wrong-status': 0, times: [] };
  const totals: Counts = { ok: 0, hang: 0, crash: 0, 'wrong-status': 0 };
  const crashes: ChildReport[] = [];
  const hangs: ChildReport[] = [];
  const parentDeaths: Array<{ job: number; code: number | null; signal: string | null }> = [];
  const hogs = startHogs(options.hogs);
  const started = Date.now();
  let seen = 0;
  const step = forks >= 1000 ? Math.ceil(forks / 20) : Infinity;
  const jobCount = Math.min(options.jobs, Math.max(1, forks));
  const jobs = Array.from({ length: jobCount }, (_, index) => {
    const args = [...process.execArgv, __filename, ...workerArgs(options, index, jobCount)];
    const job = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    readline.createInterface({ input: job.stdout }).on('line', (line) => {
      const report = JSON.parse(line) as ChildReport;
      const figures = perPath[report.path];
      figures[report.outcome]++;
      figures.times.push(report.ms);
      totals[report.outcome]++;
      if (report.outcome === 'crash') crashes.push(report);
      if (report.outcome === 'hang') hangs.push(report);
      // Said at once: a long run stopped before its end still tells what went wrong and where to look.
      if (report.outcome !== 'ok') console.error(`not ok: ${line}`);
      if (++seen % step === 0) {
        console.error(`${seen}/${forks} children, ${totals.ok} ok, ${seen - totals.ok} not, ${Math.round((Date.now() - started) / 1000)} s`);
      }
    });
    const ended = new Promise<void>((resolve) => {
      job.on('close', (code, signal) => {
        if (code !== 0) parentDeaths.push({ job: index, code, signal });
        resolve();
      });
    });
    return { job, ended };
  });
  const report = (interrupted: boolean): void => {
    for (const hog of hogs) hog.kill('SIGKILL');
    const paths: Record<string, Counts & { medianMs: number | null; maxMs: number | null }> = {};
    for (const [name, { times, ...counts }] of Object.entries(perPath)) {
      paths[name] = { ...counts, medianMs: median(times), maxMs: times.length > 0 ? Math.max(...times) : null };
    }
    const figures = { node: process.version, v8: process.versions.v8, hogs: options.hogs, jobs: jobs.length, forks, ...totals };
    const failures = { crashes, hangs, parentDeaths };
    console.log(JSON.stringify({ ...figures, ...(interrupted ? { interrupted } : {}), ms: Date.now() - started, paths, ...failures }));
    process.exitCode = totals.ok === forks && parentDeaths.length === 0 && !interrupted ? 0 : 1;
  };
  // A long run stopped (Ctrl-C, a CI limit) still says what it saw.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const { job } of jobs) job.kill('SIGTERM');
      report(true);
      process.exit(1);
    });
  }
  await Promise.all(jobs.map(({ ended }) => ended));
  report(false);
}

const options = parseOptions(process.argv.slice(2));
(options.worker ? worker(options) : run(options)).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 2;
});
