/**
 * The resource tracker: segments left behind are removed when every process
 * of the family has ended (also after SIGKILL), normal use leaves /dev/shm as
 * it found it, and the tracker process itself never outlives its writers.
 * Each case runs in fixture processes (test/fixtures/shm_*.js), so that the
 * family ends within the test.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';

import { FIXTURES, jsonLines, procStat, runFixture, waitFor } from './helpers';

interface Started {
  child: ChildProcess;
  report: Record<string, unknown>;
}

/** Starts a fixture and resolves with the first JSON line it prints. */
function start(name: string, args: string[] = []): Promise<Started> {
  // stderr piped: the tracker shares it and warns about the segment left by a killed creator.
  const child = spawn(process.execPath, [path.join(FIXTURES, name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
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

const exists = (name: string) => fs.existsSync(`/dev/shm/${name}`);
const alive = (pid: number) => {
  const stat = procStat(pid);
  return stat !== null && stat.state !== 'Z';
};

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
}

test('SIGKILL of the creator: its segment and its heap arena are gone within seconds, and so is the tracker', async () => {
  const { child, report } = await start('shm_sigkill.js');
  const names = [report.shm as string, ...(report.heap as string[])];
  const tracker = report.tracker as number;
  expect(names.length).toBeGreaterThanOrEqual(2);
  expect(names.every(exists)).toBe(true);
  expect(alive(tracker)).toBe(true);
  child.kill('SIGKILL');
  await exited(child);
  expect(await waitFor(() => !names.some(exists), 5000)).toBe(true);
  expect(await waitFor(() => !alive(tracker), 5000)).toBe(true);
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
  expect(await waitFor(() => !exists(name), 5000)).toBe(true);
  expect(await waitFor(() => !alive(report.tracker as number), 5000)).toBe(true);
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
  expect(await waitFor(() => !alive(parent.tracker as number), 5000)).toBe(true);
});

test('a segment its creator never unlinked is removed at the end, with a warning naming it', async () => {
  const run = runFixture('shm_leak.js');
  expect(run.status).toBe(0);
  const [report] = jsonLines(run.stdout);
  expect(exists(report.shm as string)).toBe(false);
  expect(run.stderr).toMatch(/resource_tracker: There appear to be 1 leaked shared_memory objects to clean up at shutdown/);
  expect(run.stderr).toContain(`/${report.shm as string}`);
  expect(await waitFor(() => !alive(report.tracker as number), 5000)).toBe(true);
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
