/**
 * The resource tracker: segments left behind are removed when every process
 * of the family has ended (also after SIGKILL), normal use leaves /dev/shm as
 * it found it, and the tracker process itself never outlives its writers.
 * Each case runs in fixture processes (test/fixtures/shm_*.js), so that the
 * family ends within the test.
 */
import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';

import { exited, FIXTURES, jsonLines, procStat, runFixture, spawnTracked, waitFor } from './helpers';

interface Started {
  child: ChildProcess;
  report: Record<string, unknown>;
}

/** Starts a fixture and resolves with the first JSON line it prints. */
function start(name: string, args: string[] = []): Promise<Started> {
  // stderr piped: the tracker shares it and warns about the segment left by a killed creator.
  const child = spawnTracked(process.execPath, [path.join(FIXTURES, name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.once('line', (line) => {
      lines.close();
      resolve({ child, report: JSON.parse(line) as Record<string, unknown> });
    });
    child.once('exit', (code, signal) => reject(new Error(`${name} ended first: ${code ?? signal}\n${stderr}`)));
  });
}

/** A deadline for what the tracker does on its own: generous, since the machine may be slowed many times over. */
const TRACKER_DEADLINE_MS = 60000;

const exists = (name: string) => fs.existsSync(`/dev/shm/${name}`);
const alive = (pid: number) => {
  const stat = procStat(pid);
  return stat !== null && stat.state !== 'Z';
};

test('SIGKILL of the creator: its segment and its heap arena are gone within seconds, and so is the tracker', async () => {
  const { child, report } = await start('shm_sigkill.js');
  const names = [report.shm as string, ...(report.heap as string[])];
  const tracker = report.tracker as number;
  expect(names.length).toBeGreaterThanOrEqual(2);
  expect(names.every(exists)).toBe(true);
  expect(alive(tracker)).toBe(true);
  child.kill('SIGKILL');
  await exited(child);
  expect(await waitFor(() => !names.some(exists), TRACKER_DEADLINE_MS)).toBe(true);
  expect(await waitFor(() => !alive(tracker), TRACKER_DEADLINE_MS)).toBe(true);
});

test('SIGKILL of the creator while a forked child lives: the segment stays until the child ends too', async () => {
  const { child, report } = await start('shm_sigkill.js', ['--fork-child']);
  const name = report.shm as string;
  const grandchild = report.child as number;
  child.kill('SIGKILL');
  await exited(child);
  await new Promise((resolve) => setTimeout(resolve, 500));
  expect(exists(name)).toBe(true); // the forked child still holds the tracker's pipe
  expect(alive(report.tracker as number)).toBe(true);
  process.kill(grandchild, 'SIGKILL');
  expect(await waitFor(() => !exists(name), TRACKER_DEADLINE_MS)).toBe(true);
  expect(await waitFor(() => !alive(report.tracker as number), TRACKER_DEADLINE_MS)).toBe(true);
});

test('normal use in a parent and a forked child leaves /dev/shm exactly as found, without warnings', async () => {
  // spawnSync returns once the tracker (which shares the fixture's stderr) has ended too.
  const run = runFixture('shm_normal_use.js');
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  const [child, parent] = jsonLines(run.stdout);
  expect(parent).toMatchObject({ status: 0, value: 7.5, big: 9 });
  const segments = [...(child.segments as string[]), ...(parent.segments as string[])];
  // 2 user segments, 2 parent arenas (small, big) in the parent; 1 own segment, 1 own arena more in the child
  expect(new Set(segments).size).toBeGreaterThanOrEqual(6);
  expect(segments.filter(exists)).toEqual([]);
  // Its stderr closes as it exits, a moment before it is gone (Node 24 takes longer over it).
  expect(await waitFor(() => !alive(parent.tracker as number), TRACKER_DEADLINE_MS)).toBe(true);
});

test('a segment its creator never unlinked is removed at the end, with a warning naming it', async () => {
  const run = runFixture('shm_leak.js');
  expect(run.status).toBe(0);
  const [report] = jsonLines(run.stdout);
  expect(exists(report.shm as string)).toBe(false);
  expect(run.stderr).toMatch(/resource_tracker: There appear to be 1 leaked shared_memory objects to clean up at shutdown/);
  expect(run.stderr).toContain(`/${report.shm as string}`);
  expect(await waitFor(() => !alive(report.tracker as number), TRACKER_DEADLINE_MS)).toBe(true);
});

test('a spawned child given the tracker fd registers with its parent\'s tracker, not a tracker of its own', () => {
  const run = runFixture('shm_spawn_parent.js');
  expect(run.status).toBe(0);
  const [child, parent] = jsonLines(run.stdout);
  expect(child.ownTracker).toBeNull();
  expect(child.fd).toBeGreaterThanOrEqual(3);
  expect(parent.status).toBe(0);
  expect(exists(child.leaked as string)).toBe(false);
  expect(run.stderr).toContain(`/${child.leaked as string}`);
  expect(run.stderr.match(/leaked shared_memory/g)).toHaveLength(1); // one tracker
});

/** A fixture that reads commands on stdin: its JSON lines in order, and its stderr. */
function startInteractive(name: string): { child: ChildProcess; next(): Promise<Record<string, unknown>>; stderr(): string } {
  const child = spawnTracked(process.execPath, [path.join(FIXTURES, name)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = readline.createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const queued: string[] = [];
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => (waiting.length > 0 ? waiting.shift()?.(line) : queued.push(line)));
  const nextLine = (): Promise<string> =>
    queued.length > 0 ? Promise.resolve(queued.shift() as string) : new Promise((resolve) => waiting.push(resolve));
  return {
    child,
    next: async () => JSON.parse(await nextLine()) as Record<string, unknown>,
    stderr: () => stderr,
  };
}

interface TrackerReport {
  shm: string[];
  heap: string[];
  tracker: number;
}

/** Starts shm_tracker_restart.js, SIGKILLs its tracker, has it make one more segment; returns both reports. */
async function killTrackerThenRegister(): Promise<{ fixture: ReturnType<typeof startInteractive>; first: TrackerReport; after: TrackerReport }> {
  const fixture = startInteractive('shm_tracker_restart.js');
  const first = (await fixture.next()) as unknown as TrackerReport;
  expect([...first.shm, ...first.heap].every(exists)).toBe(true);
  process.kill(first.tracker, 'SIGKILL');
  // Wait for the fixture to see the death, not for the tracker to look dead: a
  // killed process shows as a zombie while its other threads still hold its
  // fds, so a write made then still succeeds and nothing relaunches yet.
  expect(await waitFor(() => /relaunching/.test(fixture.stderr()), TRACKER_DEADLINE_MS)).toBe(true);
  fixture.child.stdin?.write('again\n');
  const after = (await fixture.next()) as unknown as TrackerReport;
  expect(after.tracker).not.toBe(first.tracker);
  expect(alive(after.tracker)).toBe(true);
  return { fixture, first, after };
}

describe('a tracker killed and relaunched is told of everything registered before', () => {
  test('SIGKILL of the creator afterwards: segments made before and after the restart are removed', async () => {
    const { fixture, after } = await killTrackerThenRegister();
    const names = [...after.shm, ...after.heap];
    expect(after.shm.length).toBe(2);
    fixture.child.kill('SIGKILL');
    await exited(fixture.child);
    expect(await waitFor(() => !alive(after.tracker), TRACKER_DEADLINE_MS)).toBe(true);
    expect(names.filter(exists)).toEqual([]);
  }, 180000);

  test('normal exit afterwards: nothing is left, the segments never unlinked are warned about', async () => {
    const { fixture, after } = await killTrackerThenRegister();
    const names = [...after.shm, ...after.heap];
    fixture.child.stdin?.write('exit\n');
    await exited(fixture.child);
    expect(fixture.child.exitCode).toBe(0);
    expect(await waitFor(() => !alive(after.tracker), TRACKER_DEADLINE_MS)).toBe(true);
    expect(names.filter(exists)).toEqual([]);
    for (const name of after.shm) expect(fixture.stderr()).toContain(name);
  }, 180000);
});
