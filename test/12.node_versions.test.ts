/**
 * What differs between the supported Node majors (docs/node-versions.md),
 * checked on the Node that runs the suite: CI runs it on each (.ci/run).
 */
import * as fs from 'fs';

import { loadNative } from '../dist/native';
import { jsonLines, runFixture } from './helpers';

describe(`Node ${process.version} (V8 ${process.versions.v8}, ABI ${process.versions.modules})`, () => {
  test('has every internal the addon relies on: platform vtable, libuv layout (nothing to warn about)', () => {
    expect(loadNative()!.missingInternals()).toEqual([]);
  });

  test('a child leaving a timer, an immediate or an I/O callback empties the async id stack unseen by the parent\'s listeners', () => {
    const run = runFixture('node_escape_hooks.js', []);
    expect(run.stderr).toBe('');
    const lines = jsonLines(run.stdout);
    expect(lines.filter((line) => 'target' in line).map((line) => line.target).sort()).toEqual(['immediate', 'io', 'timer']);
    expect(lines.filter((line) => 'event' in line)).toEqual([]);
    expect(lines.find((line) => 'exitCodes' in line)).toEqual({ exitCodes: [0, 0, 0] });
  });

  test('the fork stress with several forking parents at once counts each child once, under its exit path', () => {
    const run = runFixture('../../dist-scripts/fork-stress.js', ['--jobs', '3', '--per-path', '2']);
    const [result] = jsonLines<Record<string, unknown> & { paths: Record<string, Record<string, unknown>> }>(run.stdout);
    expect(result).toMatchObject({ jobs: 3, forks: 18, ok: 18, hang: 0, crash: 0, 'wrong-status': 0, crashes: [], parentDeaths: [] });
    expect(Object.keys(result.paths)).toHaveLength(9);
    for (const figures of Object.values(result.paths)) {
      expect(figures).toMatchObject({ ok: 2, hang: 0, crash: 0, 'wrong-status': 0 });
      expect(figures.medianMs).toEqual(expect.any(Number));
    }
    expect(run.status).toBe(0);
  });

  test('the fork stress tells a hung child from a slow one: one asleep on a futex nobody wakes is a hang, the run fails', () => {
    const run = runFixture('../../dist-scripts/fork-stress.js', ['--paths', 'stuck,_exit', '--per-path', '1']);
    const [result] = jsonLines<Record<string, unknown> & { paths: Record<string, Record<string, unknown>>; hangs: Array<{ stacks?: string | null }> }>(
      run.stdout,
    );
    // The hung child's stacks, when gdb is there, land in the working directory.
    for (const { stacks } of result.hangs) if (stacks) fs.rmSync(stacks, { force: true });
    expect(result).toMatchObject({ forks: 2, ok: 1, hang: 1, crash: 0, parentDeaths: [] });
    expect(result.paths.stuck).toMatchObject({ hang: 1 });
    expect(result.hangs).toEqual([expect.objectContaining({ path: 'stuck', outcome: 'hang' })]);
    expect(run.stderr).toContain('not ok: {"path":"stuck"');
    expect(run.status).toBe(1);
  });
});
