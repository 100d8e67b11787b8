/**
 * Fork stress (`npm run stress`):
 *
 *   node dist-scripts/fork-stress.js [--per-path N] [--hogs N] [--paths a,b,...] [forks]
 *
 * Forks again and again while the garbage collector is busy in the parent (a
 * churning, growing heap keeps V8's concurrent marking and the platform
 * workers at work at the instant of each fork) and in every child, which
 * allocates, then leaves by one of the exit paths below, in turn. `--hogs N`
 * runs N CPU-burning processes beside it for the whole run (as a loaded CI
 * machine: children that crashed on Node 24/26 did so under load). Without the
 * fork barrier about one child in three deadlocked; the result must be 0 hangs,
 * 0 crashes and every child's expected exit code.
 *
 * `--per-path N` forks N children per exit path; a plain `forks` count spreads
 * that many over the paths. Prints one JSON line (the Node and V8 versions,
 * the totals and the figures per path; on SIGINT or SIGTERM, those so far,
 * marked `interrupted`); exits 1 if any child hung, crashed or left with
 * another code than its path's, or the run was interrupted.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';

import * as mp from '..';

const HANG_AFTER_MS = 10000;

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

type Outcome = 'ok' | 'hang' | 'crash' | 'wrong-status';
type Counts = Record<Outcome, number>;

/** Hang, crash (a signal), wrong code, or ok, from the exit code of a child that ended (`null`: still running). */
function outcome(code: number | null, expected: number): Outcome {
  if (code === null) return 'hang';
  if (code < 0) return 'crash';
  return code === expected ? 'ok' : 'wrong-status';
}

/** Forks a child that leaves by `path`: its outcome; `null` in the child, which must then return to its event loop. */
async function forkOnce(path: ExitPath): Promise<Outcome | null> {
  churn(2000);
  const pid = mp.os.fork();
  if (pid === 0) {
    churn(20000);
    (path.child as () => void)();
    return null;
  }
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), HANG_AFTER_MS);
  });
  const result = await Promise.race([mp.os.waitpidAsync(pid), hung]);
  clearTimeout(timer);
  if (result === null) {
    mp.os.kill(pid, 'SIGKILL');
    await mp.os.waitpidAsync(pid);
    return 'hang';
  }
  return outcome(mp.os.waitstatusToExitcode(result[1]), path.code);
}

/** Starts an mp.Process (fork) whose target leaves by `path`: its outcome. */
async function processOnce(path: ExitPath): Promise<Outcome> {
  churn(2000);
  const p = new (mp.getContext('fork').Process)({ target: path.target as () => unknown });
  p.start();
  await p.join(HANG_AFTER_MS);
  const code = p.exitCode;
  if (code === null) {
    p.kill();
    await p.join();
  }
  p.close();
  return outcome(code, path.code);
}

/**
 * Starts `count` CPU-burning processes: their handles, to stop them at the
 * end. Unreferenced: a child whose loop must run dry does not wait for them.
 */
function startHogs(count: number): ChildProcess[] {
  return Array.from({ length: count }, () => {
    const hog = spawn(process.execPath, ['-e', 'for (;;);'], { stdio: 'ignore' });
    hog.unref();
    return hog;
  });
}

interface Options {
  perPath: number;
  /** A total number of forks, spread over the paths (instead of perPath each). */
  total: number | null;
  hogs: number;
  paths: string[];
}

function parseOptions(argv: string[]): Options {
  const options: Options = { perPath: 250, total: null, hogs: 0, paths: Object.keys(PATHS) };
  for (let i = 0; i < argv.length; i++) {
    const value = (): string => {
      if (i + 1 >= argv.length) throw new RangeError(`${argv[i]} needs a value`);
      return argv[++i];
    };
    if (argv[i] === '--per-path') options.perPath = count(value(), '--per-path');
    else if (argv[i] === '--hogs') options.hogs = count(value(), '--hogs');
    else if (argv[i] === '--paths') options.paths = value().split(',');
    else options.total = count(argv[i], 'forks');
  }
  const unknown = options.paths.filter((name) => !(name in PATHS));
  if (unknown.length > 0) throw new RangeError(`unknown exit paths: ${unknown.join(', ')} (known: ${Object.keys(PATHS).join(', ')})`);
  return options;
}

function count(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, got ${JSON.stringify(text)}`);
  return value;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const forks = options.total ?? options.perPath * options.paths.length;
  const perPath: Record<string, Counts> = {};
  for (const name of options.paths) perPath[name] = { ok: 0, hang: 0, crash: 0, 'wrong-status': 0 };
  const totals: Counts = { ok: 0, hang: 0, crash: 0, 'wrong-status': 0 };
  const hogs = startHogs(options.hogs);
  const started = Date.now();
  const parent = mp.os.getpid();
  const report = (interrupted: boolean): void => {
    for (const hog of hogs) hog.kill('SIGKILL');
    const figures = { node: process.version, v8: process.versions.v8, hogs: options.hogs, forks, ...totals };
    console.log(JSON.stringify({ ...figures, ...(interrupted ? { interrupted } : {}), ms: Date.now() - started, paths: perPath }));
    process.exitCode = totals.ok === forks ? 0 : 1;
  };
  // A long run stopped (Ctrl-C, a CI limit) still says what it saw; a child just ends.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      if (mp.os.getpid() === parent) report(true);
      process.exit(process.exitCode ?? 1);
    });
  }
  for (let n = 0; n < forks; n++) {
    const name = options.paths[n % options.paths.length];
    const path = PATHS[name];
    const result = path.child !== undefined ? await forkOnce(path) : await processOnce(path);
    if (result === null) return; // the child: back to its event loop
    perPath[name][result]++;
    totals[result]++;
  }
  report(false);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 2;
});
