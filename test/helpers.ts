/**
 * Shared test helpers: run a fixture in a fresh node process, and read the
 * kernel's view of processes from /proc (never the demos' text).
 */
import { ChildProcess, spawn, SpawnOptions, spawnSync, SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import * as mp from '..';

export const FIXTURES = path.join(__dirname, 'fixtures');

export interface FixtureRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * How long a fixture may run before it counts as hung: long, since the
 * machine may be slowed ten times over (the slowest fixtures, heap_sync_loop
 * and a fork-stress of 100 forks, take up to a minute on a quiet one).
 */
const FIXTURE_HANG_GUARD_MS = 600000;

/** Runs test/fixtures/<name> with node; a run that hangs is killed and fails. */
export function runFixture(
  name: string,
  args: string[] = [],
  options: { env?: NodeJS.ProcessEnv; stdio?: 'pipe' | [string, number | string, number | string]; uid?: number; gid?: number } = {},
): FixtureRun {
  const result: SpawnSyncReturns<string> = spawnSync(process.execPath, [path.join(FIXTURES, name), ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...options.env },
    uid: options.uid,
    gid: options.gid,
    timeout: FIXTURE_HANG_GUARD_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.error) throw result.error;
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

/** Processes started by {@link spawnTracked}: killed after each test that left them running. */
const spawnedChildren = new Set<ChildProcess>();

/** Resolves once `child` has exited (at once if it has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

afterEach(async () => {
  const running = [...spawnedChildren].filter((child) => child.exitCode === null && child.signalCode === null);
  spawnedChildren.clear();
  for (const child of running) child.kill('SIGKILL');
  await Promise.all(running.map(exited));
});

/**
 * `child_process.spawn` for a test's long-lived helper process (a fixture
 * that waits to be killed, a peer): one that is still running when the test
 * ends, also because it failed, is killed then; a live child would keep jest
 * from exiting, and CI would hang.
 */
export function spawnTracked(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const child = spawn(command, args, options);
  spawnedChildren.add(child);
  return child;
}

/** The JSON lines a fixture printed, parsed. */
export function jsonLines<T = Record<string, unknown>>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as T);
}

export interface ProcStat {
  pid: number;
  state: string;
  ppid: number;
  /** Clock ticks from boot to its start: with the pid, names one process (pids are reused). */
  startTime: number;
}

/** /proc/<pid>/stat, or null when there is no such process (reaped). */
export function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After ')': state is field 3 of stat(5), ppid 4, starttime 22.
  return { pid, state: fields[0], ppid: Number(fields[1]), startTime: Number(fields[19]) };
}

/** Pids of the zombie children of `ppid`, from /proc. */
export function zombieChildren(ppid = process.pid): number[] {
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map((entry) => procStat(Number(entry)))
    .filter((stat): stat is ProcStat => stat !== null && stat.ppid === ppid && stat.state === 'Z')
    .map((stat) => stat.pid);
}

/** Open file descriptors of this process. */
export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 5 ms until it holds or `timeoutMs` passes; returns its last value. */
export async function waitFor(condition: () => boolean, timeoutMs = 60000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

/**
 * Children of {@link forkChild} not reaped by {@link exitcodeOf} (pid -> start
 * time): a test that fails before it reaps its children leaves them to the
 * hook below, or their zombies would fail every later zombie check of the file.
 */
const forkedChildren = new Map<number, number>();

afterEach(() => {
  for (const [pid, startTime] of forkedChildren) {
    const stat = procStat(pid);
    // Reaped some other way (and the pid maybe reused): none of ours.
    if (stat !== null && stat.ppid === process.pid && stat.startTime === startTime) {
      if (stat.state !== 'Z') mp.os.kill(pid, 'SIGKILL');
      mp.os.waitpid(pid);
    }
  }
  forkedChildren.clear();
});

/**
 * Forks a child that runs `body` then leaves with _exit(its return value), 70
 * if it throws: a child forked inside jest must never return into jest.
 */
export function forkChild(body: () => number = () => 0): number {
  const pid = mp.os.fork();
  if (pid === 0) {
    let code = 70;
    try {
      code = body();
    } finally {
      mp.os._exit(code);
    }
  }
  forkedChildren.set(pid, procStat(pid)?.startTime ?? -1);
  return pid;
}

/** Reaps `pid` and returns its exit code (`-signal` when a signal killed it). */
export function exitcodeOf(pid: number): number {
  forkedChildren.delete(pid);
  const [reaped, status] = mp.os.waitpid(pid);
  if (reaped !== pid) throw new Error(`waitpid(${pid}) reaped ${reaped}`);
  return mp.os.waitstatusToExitcode(status);
}
