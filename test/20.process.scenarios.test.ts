/**
 * Process behaviour that needs a parent of its own: each case runs a fixture
 * in a fresh node (test/fixtures/process_*) and checks its output, its exit
 * status and the kernel's view of its children (/proc).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '..';
import { FIXTURES, jsonLines, runFixture, spawnTracked } from './helpers';
import { running, waitFor } from './fixtures/process_helpers';

const methods = mp.getAllStartMethods();
const NO_ADDON = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1';
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-scenarios-'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});



describe.each(methods)('%s', (method) => {
  test('an uncaught error in the target is printed on stderr with the process name and its stack', () => {
    const run = runFixture('process_scenarios.js', ['error', method]);
    expect(run.status).toBe(0);
    const [report] = jsonLines<{ exitCode: number; name: string }>(run.stdout);
    expect(report.exitCode).toBe(1);
    expect(run.stderr).toContain(`Process ${report.name}:\nError: boom from the target\n`);
    expect(run.stderr).toMatch(/\n\s+at .*fail .*process_targets\.js:\d+:\d+/);
  });

  test('when the script ends, non-daemonic children are joined and daemonic ones terminated', () => {
    const file = path.join(dir, `exit-join-${method}.json`);
    const started = Date.now();
    const run = runFixture('process_scenarios.js', ['exit-join', method, file]);
    expect(run.status).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ after: 300 });
    const [{ daemonPid }] = jsonLines<{ daemonPid: number }>(run.stdout);
    expect(running(daemonPid)).toBe(false);
  });

  test("the seed's foo/bar: when the parent's work is done its daemon is terminated first, then the other joined, as Python", () => {
    const run = runFixture('process_daemons_at_exit.js', [method]);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const lines = run.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('{'));
    // foo may be terminated before it prints 123 (Python's may too): the rest is certain.
    expect(lines.filter((line) => line !== '123').sort()).toEqual(['456', 'end456', 'main-------']);
    expect(lines.indexOf('456')).toBeLessThan(lines.indexOf('end456'));
    expect(jsonLines(run.stdout)).toEqual([{ exitCodes: [-15, 0] }]);
  });

  test('process.exit() in the parent still joins its non-daemonic children first, as Python', () => {
    const file = path.join(dir, `process-exit-${method}.json`);
    const run = runFixture('process_scenarios.js', ['process-exit', method, file]);
    expect(run.status).toBe(0);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ after: 300 });
    const [{ daemonPid }] = jsonLines<{ daemonPid: number }>(run.stdout);
    expect(running(daemonPid)).toBe(false);
  });

  test('an ES module target: by export (named or default); a non-exported one or a closure gets an Error saying how to fix it', () => {
    const out = path.join(dir, `esm-${method}`);
    fs.mkdirSync(out);
    const run = runFixture('process_esm_main.mjs', [method, out]);
    expect(run.status).toBe(0);
    const results = Object.fromEntries(jsonLines<{ label: string }>(run.stdout).map((r) => [r.label, r]));
    expect(results['named export']).toMatchObject({ exitCode: 0, wrote: expect.stringMatching(/Process-1 ok$/) });
    expect(results['default export']).toMatchObject({ exitCode: 0, wrote: 'default export' });
    if (method === 'fork') {
      // The child has the parent's heap: any function runs.
      expect(results['not exported']).toMatchObject({ exitCode: 0, wrote: 'should not run' });
      expect(results.closure).toMatchObject({ exitCode: 0, wrote: 'captured' });
    } else {
      const notExported = results['not exported'] as { exitCode?: number; startError?: string };
      // The module is evaluated: start() finds out at once (require() of an ES module), before any child exists.
      expect(notExported.exitCode).toBeUndefined();
      expect(notExported.startError).toMatch(
        new RegExp(`function notExported\\) cannot be sent to a child of the '${method}' start method: it is not exported by file:.*process_esm_targets\\.mjs`),
      );
      expect((results.closure as unknown as { startError: string }).startError).toMatch(/cannot be sent to a child of the '\w+' start method.*export/);
    }
  });

  test('TypeScript run through a require hook (node -r): the child loads the .ts target the same way', () => {
    const file = path.join(dir, `ts-${method}.json`);
    const result = spawnSync(
      process.execPath,
      ['-r', path.join(FIXTURES, 'process_ts_register.js'), path.join(FIXTURES, 'process_ts_main.ts'), method, file],
      { encoding: 'utf8', env: process.env, timeout: 60000 },
    );
    expect(result.stderr).toBe('');
    expect(jsonLines(result.stdout)).toEqual([{ exitCode: 0 }]);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ doubled: 42 });
  });

  test('TypeScript ES modules run through a loader (node --import): the child imports the .mts target the same way', () => {
    const file = path.join(dir, `ts-esm-${method}.json`);
    const result = spawnSync(
      process.execPath,
      ['--import', path.join(FIXTURES, 'process_ts_loader.mjs'), path.join(FIXTURES, 'process_ts_esm_main.mts'), method, file],
      { encoding: 'utf8', env: process.env, timeout: 60000 },
    );
    expect(jsonLines(result.stdout)).toEqual([{ exitCode: 0 }]);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ doubled: 42 });
  });

  test('require.main === module guards the main script: a child that loads it to find the target does not run the guarded code', () => {
    const file = path.join(dir, `guard-${method}.txt`);
    const run = runFixture('process_guard_main.js', [method, file]);
    expect(run.status).toBe(0);
    const lines = jsonLines<{ loadedIn?: string; exitCode?: number; name?: string }>(run.stdout);
    const [result] = lines.filter((line) => line.exitCode !== undefined);
    expect(result.exitCode).toBe(0);
    expect(fs.readFileSync(file, 'utf8')).toBe(result.name);
    const loadedIn = lines.filter((line) => line.loadedIn !== undefined).map((line) => line.loadedIn);
    // fork: the child has the script already; spawn: the child loads it (as a
    // module); forkserver: the server loads it once, before forking.
    const expected = { fork: ['MainProcess'], spawn: ['MainProcess', result.name], forkserver: ['MainProcess', 'MainProcess'] };
    expect(loadedIn.sort()).toEqual(expected[method].sort());
  });
});

describe.each(methods.filter((method) => method !== 'fork'))('an unguarded main module under %s', (method) => {
  // A child loads the main module to find its target: the start() at its top level must not start another child.
  const mains: [string, string[]][] = [
    ['CommonJS', [path.join(FIXTURES, 'process_unguarded_main.js')]],
    ['an ES module', [path.join(FIXTURES, 'process_unguarded_main.mjs')]],
    ['TypeScript (require hook)', ['-r', path.join(FIXTURES, 'process_ts_register.js'), path.join(FIXTURES, 'process_unguarded_main.ts')]],
  ];
  test.each(mains)("%s: the child's start() throws Python's bootstrapping error, the child exits 1, nothing else starts", (_kind, argv) => {
    const run = spawnSync(process.execPath, argv, {
      encoding: 'utf8',
      env: { ...process.env, MP_METHOD: method, MP_DEPTH: '0' },
      timeout: 60000,
      killSignal: 'SIGKILL',
    });
    expect(run.status).toBe(0);
    expect(jsonLines(run.stdout)).toEqual([{ startedAtDepth: 0 }, { depth: 0, exitCode: 1 }]);
    expect(run.stderr).toContain('An attempt has been made to start a new process before the current process has finished its bootstrapping phase');
    expect(run.stderr).toContain('if (require.main === module)');
    expect(run.stderr).toContain('if (import.meta.main)');
    expect(run.stderr.match(/bootstrapping phase/g)).toHaveLength(1);
  });
});

(NO_ADDON ? describe.skip : describe)('fork', () => {
  test("a child whose target returns a Promise never runs the caller's code after start(), nor the parent's pending callbacks", () => {
    const run = runFixture('process_leave_stack.js', []);
    expect(run.status).toBe(0);
    const lines = jsonLines<{ label: string; parent: boolean }>(run.stdout);
    const byLabel = new Map<string, boolean[]>();
    for (const line of lines) byLabel.set(line.label, [...(byLabel.get(line.label) ?? []), line.parent]);
    for (const where of ['top-level', 'timer', 'immediate', 'nextTick', 'after await']) {
      expect(byLabel.get(`after start ${where}`)).toEqual([true]);
      expect(byLabel.get(`target ${where}`)).toEqual([false]);
    }
    expect(byLabel.get('finally top-level')).toEqual([true]);
    expect(byLabel.get('catch main rejects in the parent only')).toEqual([true]);
    expect(byLabel.get('exit codes 0,0,0,0,0,5')).toEqual([true]);
    expect(byLabel.get('exit listener')).toEqual([true]);
    expect(lines).toHaveLength(14);
  });

  test("the target's own nextTick callbacks run when the parent had some pending at start() (its never run there)", () => {
    const run = runFixture('process_parent_ticks.js', []);
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ targetTickRan: true, parentTickRanInChild: false, exitCode: 0 }]);
  });
});

(NO_ADDON ? describe.skip : describe)('forkserver', () => {
  test('the fork server exits when its parent is killed (SIGKILL)', async () => {
    const parent = spawnTracked(process.execPath, [path.join(FIXTURES, 'process_scenarios.js'), 'forkserver-parent', 'forkserver'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: process.env,
    });
    let output = '';
    parent.stdout?.on('data', (data: Buffer) => (output += data.toString()));
    expect(await waitFor(() => output.includes('\n'), 60000)).toBe(true);
    const [{ exitCode, serverPid }] = jsonLines<{ exitCode: number; serverPid: number }>(output);
    expect(exitCode).toBe(0);
    expect(running(serverPid)).toBe(true);
    parent.kill('SIGKILL');
    await new Promise((resolve) => parent.once('exit', resolve));
    expect(await waitFor(() => !running(serverPid), 60000)).toBe(true);
  });
});
