/**
 * mp.Process under every start method (describe.each over getAllStartMethods()),
 * on real processes. The jest project "no-addon" runs this file again with the
 * addon disabled, as on Windows: only spawn is there then.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '..';
import { fdCount, jsonLines, runFixture, zombieChildren } from './helpers';
import { waitFor } from './fixtures/process_helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/process_targets.js') as {
  noop(): void;
  record(file: string, ...args: unknown[]): void;
  fail(stderrFile?: string): void;
  exitWith(code: number, stderrFile?: string): void;
  sleep(ms: number): Promise<void>;
  asyncRecord(file: string, ms: number): Promise<void>;
  rejectLater(ms: number, stderrFile?: string): Promise<void>;
  nested(file: string, childFile: string): Promise<void>;
  tryToStartAChild(file: string): void;
  setGlobal(file: string, value: string): void;
  leaveATimer(file: string): void;
  RecordingProcess: new (file: string, label: string) => mp.Process;
  AsyncRecordingProcess: new (file: string) => mp.Process;
};

interface Report {
  pid: number;
  name: string;
  daemon: boolean;
  parent: { name: string; pid: number; alive: boolean } | null;
  args?: unknown[];
  [key: string]: unknown;
}

const NO_ADDON = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1';
const methods = mp.getAllStartMethods();
let dir: string;
let files = 0;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-process-'));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function tmpFile(): string {
  files += 1;
  return path.join(dir, `report-${files}.json`);
}

function readReport(file: string): Report {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Report;
}


test('the start methods available here, the default first', () => {
  if (NO_ADDON) expect(methods).toEqual(['spawn']);
  else expect(methods).toEqual(['fork', 'spawn', 'forkserver']);
});

describe.each(methods)('Process with the %s start method', (method) => {
  const ctx = mp.getContext(method);

  test('the child runs the target with its arguments, in another process', async () => {
    const file = tmpFile();
    const p = new ctx.Process({ target: targets.record, args: [file, 1, 'two', { three: [3] }, null] });
    expect(p.pid).toBeNull();
    expect(p.exitCode).toBeNull();
    p.start();
    expect(p.pid).toEqual(expect.any(Number));
    await p.join();
    expect(p.exitCode).toBe(0);
    const report = readReport(file);
    expect(report.args).toEqual([1, 'two', { three: [3] }, null]);
    expect(report.pid).toBe(p.pid);
    expect(report.pid).not.toBe(process.pid);
    expect(report.name).toBe(p.name);
    expect(report.parent).toEqual({ name: 'MainProcess', pid: process.pid, alive: true });
  });

  test('exit codes: 0, 1 after an uncaught error, n after process.exit(n), -signal after terminate() or kill()', async () => {
    const [failingStderr, exitingStderr] = [tmpFile(), tmpFile()];
    const ok = new ctx.Process({ target: targets.noop });
    const failing = new ctx.Process({ target: targets.fail, args: [failingStderr] });
    const exiting = new ctx.Process({ target: targets.exitWith, args: [7, exitingStderr] });
    const terminated = new ctx.Process({ target: targets.sleep, args: [60000] });
    const killed = new ctx.Process({ target: targets.sleep, args: [60000] });
    const all = [ok, failing, exiting, terminated, killed];
    for (const p of all) p.start();
    expect(terminated.isAlive()).toBe(true);
    expect(terminated.exitCode).toBeNull();
    terminated.terminate();
    killed.kill();
    await Promise.all(all.map((p) => p.join()));
    expect(all.map((p) => p.exitCode)).toEqual([0, 1, 7, -os.constants.signals.SIGTERM, -os.constants.signals.SIGKILL]);
    for (const p of all) expect(p.isAlive()).toBe(false);
    expect(fs.readFileSync(failingStderr, 'utf8')).toContain(`Process ${failing.name}:\nError: boom from the target\n`);
  });

  test('an async target keeps the child alive until it settles; a rejected one ends it with 1', async () => {
    const file = tmpFile();
    const resolving = new ctx.Process({ target: targets.asyncRecord, args: [file, 100] });
    const rejectingStderr = tmpFile();
    const rejecting = new ctx.Process({ target: targets.rejectLater, args: [50, rejectingStderr] });
    resolving.start();
    rejecting.start();
    await resolving.join();
    await rejecting.join();
    expect(resolving.exitCode).toBe(0);
    expect(readReport(file).after).toBe(100);
    expect(rejecting.exitCode).toBe(1);
    expect(fs.readFileSync(rejectingStderr, 'utf8')).toContain(`Process ${rejecting.name}:\nError: rejected by the target\n`);
  });

  test('a target that returns ends the child, even with a timer left behind', async () => {
    const file = tmpFile();
    const p = new ctx.Process({ target: targets.leaveATimer, args: [file] });
    p.start();
    await p.join(); // a child kept alive by the timer would fail by the test's time limit
    expect(p.exitCode).toBe(0);
    expect(readReport(file).name).toBe(p.name);
  });

  test("names: Python's Process-N, nested Process-N:M; currentProcess() and parentProcess() in the child", async () => {
    const file = tmpFile();
    const childFile = tmpFile();
    const p = new ctx.Process({ target: targets.nested, args: [file, childFile] });
    const prefix = { fork: 'ForkProcess', spawn: 'SpawnProcess', forkserver: 'ForkServerProcess' }[method];
    expect(p.name).toMatch(new RegExp(`^${prefix}-(\\d+)$`));
    const n = /-(\d+)$/.exec(p.name)?.[1];
    p.start();
    await p.join();
    expect(p.exitCode).toBe(0);
    const report = readReport(file);
    expect(report.name).toBe(p.name);
    expect(report.childName).toBe(`Process-${n}:1`);
    expect(report.childExitCode).toBe(0);
    const nested = readReport(childFile);
    expect(nested.name).toBe(`Process-${n}:1`);
    expect(nested.parent).toEqual({ name: p.name, pid: p.pid, alive: true });
    const named = new ctx.Process({ target: targets.record, args: [tmpFile()], name: 'worker' });
    expect(named.name).toBe('worker');
  });

  test('join(timeout) and joinSync(timeout) return after the timeout without throwing; exitCode stays null', async () => {
    const p = new ctx.Process({ target: targets.sleep, args: [60000] });
    p.start();
    const started = Date.now();
    await p.join(100);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(p.exitCode).toBeNull();
    p.joinSync(50);
    expect(p.exitCode).toBeNull();
    expect(p.isAlive()).toBe(true);
    p.kill();
    p.joinSync();
    expect(p.exitCode).toBe(-os.constants.signals.SIGKILL);
  });

  test('joinSync() waits for the end and reaps', () => {
    const p = new ctx.Process({ target: targets.exitWith, args: [3, tmpFile()] });
    p.start();
    p.joinSync();
    expect(p.exitCode).toBe(3);
    expect(mp.activeChildren()).not.toContain(p);
  });

  test('misuse throws: a negative timeout, start() twice, join() before start(), any use after close(), close() while running', async () => {
    const p = new ctx.Process({ target: targets.sleep, args: [60000] });
    expect(() => p.join()).toThrow(/started process/);
    expect(() => p.joinSync()).toThrow(/started process/);
    expect(() => p.terminate()).toThrow(/not been started/);
    p.start();
    expect(() => p.start()).toThrow(/twice/);
    expect(() => p.join(-1)).toThrow(RangeError);
    expect(() => p.joinSync(-5)).toThrow(RangeError);
    expect(() => p.join('soon' as unknown as number)).toThrow(TypeError);
    expect(() => p.close()).toThrow(/still running/);
    expect(() => {
      p.daemon = true;
    }).toThrow(/already started/);
    p.terminate();
    await p.join();
    p.close();
    expect(() => p.exitCode).toThrow(/closed/);
    expect(() => p.pid).toThrow(/closed/);
    expect(() => p.isAlive()).toThrow(/closed/);
    expect(() => p.join()).toThrow(/closed/);
    expect(() => p.start()).toThrow(/closed/);
    expect(() => p.kill()).toThrow(/closed/);
    expect(p.name).toMatch(/Process-\d+$/);
  });

  test('bad options get a TypeError naming the option', () => {
    expect(() => new ctx.Process({ target: 42 as unknown as () => void })).toThrow(/target must be a function/);
    expect(() => new ctx.Process({ args: 'abc' as unknown as [] })).toThrow(/args must be an array/);
    expect(() => new ctx.Process({ name: 5 as unknown as string })).toThrow(/name must be a string/);
    expect(() => new ctx.Process({ daemon: 'yes' as unknown as boolean })).toThrow(/daemon must be a boolean/);
  });

  test('activeChildren() lists running children and reaps the finished ones', async () => {
    const running = new ctx.Process({ target: targets.sleep, args: [60000] });
    const quick = new ctx.Process({ target: targets.noop });
    running.start();
    quick.start();
    expect(mp.activeChildren()).toEqual(expect.arrayContaining([running]));
    expect(await waitFor(() => !mp.activeChildren().includes(quick), 60000)).toBe(true);
    expect(quick.exitCode).toBe(0);
    expect(mp.activeChildren()).toContain(running);
    running.kill();
    await running.join();
    expect(mp.activeChildren()).not.toContain(running);
  });

  describe('as the default start method', () => {
    beforeAll(() => mp.setStartMethod(method, { force: true }));
    afterAll(() => mp.setStartMethod(null, { force: true }));

    test('mp.Process is named Process-N and starts with it', async () => {
      const file = tmpFile();
      const p = new mp.Process({ target: targets.record, args: [file] });
      expect(p.name).toMatch(/^Process-\d+$/);
      p.start();
      await p.join();
      expect(p.exitCode).toBe(0);
      expect(readReport(file).name).toBe(p.name);
      expect(mp.getStartMethod()).toBe(method);
    });

    test('a subclass that overrides run() runs it, with its own fields', async () => {
      const file = tmpFile();
      const p = new targets.RecordingProcess(file, 'label-1');
      p.start();
      await p.join();
      expect(p.exitCode).toBe(0);
      const report = readReport(file);
      expect(report).toMatchObject({ label: 'label-1', className: 'RecordingProcess', name: p.name });
      expect(p.name).toMatch(/^RecordingProcess-\d+$/);
    });

    test('an async run() keeps the child alive until it settles', async () => {
      const file = tmpFile();
      const p = new targets.AsyncRecordingProcess(file);
      p.start();
      await p.join();
      expect(p.exitCode).toBe(0);
      expect(readReport(file)).toMatchObject({ name: 'async-worker', className: 'AsyncRecordingProcess' });
    });
  });

  test('daemon: the flag reaches the child, which may not have children of its own', async () => {
    const file = tmpFile();
    const p = new ctx.Process({ target: targets.tryToStartAChild, args: [file], daemon: true });
    expect(p.daemon).toBe(true);
    p.start();
    await p.join();
    expect(p.exitCode).toBe(0);
    const report = readReport(file);
    expect(report.daemon).toBe(true);
    expect(report.error).toMatch(/daemonic processes are not allowed to have children/);
  });

  test('memory isolation: a global the child sets stays the parent\'s own', async () => {
    const file = tmpFile();
    (globalThis as { processTestValue?: string }).processTestValue = 'parent';
    const p = new ctx.Process({ target: targets.setGlobal, args: [file, 'child'] });
    p.start();
    await p.join();
    expect(readReport(file).value).toBe('child');
    expect((globalThis as { processTestValue?: string }).processTestValue).toBe('parent');
  });

  if (method === 'fork') {
    test('fork: a closure is a fine target (the child has the parent\'s heap)', async () => {
      const file = tmpFile();
      const secret = { value: 'captured' };
      const p = new ctx.Process({ target: () => fs.writeFileSync(file, JSON.stringify(secret)) });
      p.start();
      await p.join();
      expect(p.exitCode).toBe(0);
      expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(secret);
    });
  } else {
    test(`${method}: a closure or a function nobody exports gets an Error saying how to fix it`, () => {
      const local = 42;
      const closure = new ctx.Process({ target: () => local });
      expect(() => closure.start()).toThrow(/cannot be sent to a child of the '\w+' start method.*export/s);
      expect(closure.pid).toBeNull();
      expect(() => closure.start()).toThrow(/'fork' start method/);
    });

    test(`${method}: an argument that cannot be sent gets a TypeError naming it`, () => {
      const p = new ctx.Process({ target: targets.record, args: ['file', { callback: () => 1 }] });
      expect(() => p.start()).toThrow(TypeError);
      expect(() => p.start()).toThrow(/args\[1\]\.callback/);
    });
  }

  test('200 processes started and joined leave no zombie and no extra fd', async () => {
    const warmUp = new ctx.Process({ target: targets.noop });
    warmUp.start();
    await warmUp.join();
    const fds = fdCount();
    const batch = method === 'spawn' ? 8 : 4;
    for (let started = 0; started < 200; started += batch) {
      const group = Array.from({ length: batch }, () => new ctx.Process({ target: targets.noop }));
      for (const p of group) p.start();
      await Promise.all(group.map((p) => p.join()));
      for (const p of group) expect(p.exitCode).toBe(0);
      for (const p of group) p.close();
    }
    expect(zombieChildren()).toEqual([]);
    // A closed child_process pipe leaves with later turns of the loop: the
    // warm-up's may still be counted in fds, so no more than fds is the test.
    expect(await waitFor(() => fdCount() <= fds)).toBe(true);
  }, 600000);
});

describe('start methods and contexts', () => {
  afterEach(() => mp.setStartMethod(null, { force: true }));

  test('setStartMethod() once; a second call needs force; getStartMethod() fixes the default as Python does', () => {
    expect(mp.getStartMethod(true)).toBeNull();
    mp.setStartMethod('spawn');
    expect(mp.getStartMethod()).toBe('spawn');
    expect(() => mp.setStartMethod('spawn')).toThrow(/already been set.*force/);
    mp.setStartMethod(methods[0], { force: true });
    expect(mp.getStartMethod()).toBe(methods[0]);
    mp.setStartMethod(null, { force: true });
    expect(mp.getStartMethod(true)).toBeNull();
    expect(mp.getStartMethod()).toBe(methods[0]);
    expect(() => mp.setStartMethod('spawn')).toThrow(/already been set/);
  });

  test('an unknown start method gets a TypeError', () => {
    expect(() => mp.getContext('thread' as mp.StartMethod)).toThrow(TypeError);
    expect(() => mp.setStartMethod('thread' as mp.StartMethod, { force: true })).toThrow(/one of 'fork', 'spawn', 'forkserver'/);
  });

  test('a context carries the process functions and the factories of the library', () => {
    const ctx = mp.getContext('spawn');
    expect(ctx.getStartMethod()).toBe('spawn');
    expect(ctx.getContext('spawn')).toBe(ctx);
    expect(mp.getContext()).not.toBe(ctx);
    expect(ctx.currentProcess()).toBe(mp.currentProcess());
    expect(ctx.activeChildren).toBe(mp.activeChildren);
    expect(ctx.cpuCount()).toBe(mp.cpuCount());
    expect(ctx.Lock).toBe(mp.Lock);
    expect(ctx.Value).toBe(mp.Value);
    expect(ctx.SharedMemory).toBe(mp.SharedMemory);
    expect(new ctx.Process()).toBeInstanceOf(mp.Process);
  });

  test('currentProcess(), parentProcess() and cpuCount() in the main process', () => {
    expect(mp.currentProcess().name).toBe('MainProcess');
    expect(mp.currentProcess().pid).toBe(process.pid);
    expect(mp.currentProcess().isAlive()).toBe(true);
    expect(mp.parentProcess()).toBeNull();
    expect(mp.cpuCount()).toBe(os.cpus().length);
  });

  if (NO_ADDON) {
    test('without the addon, fork and forkserver give clear errors (ENOSYS), and spawn is the default', () => {
      for (const method of ['fork', 'forkserver'] as const) {
        expect(() => mp.getContext(method)).toThrow(expect.objectContaining({ code: 'ENOSYS' }));
        expect(() => mp.getContext(method)).toThrow(/'\w+' start method is not supported here.*NODE_MULTIPROCESSING_NO_NATIVE/);
      }
      expect(mp.getStartMethod()).toBe('spawn');
    });
  }
});

(NO_ADDON ? describe.skip : describe)('the fork start method watches its child from the event loop', () => {
  test('a child forked from a callback, its target async, leaves the parent\'s stack where Error is frozen', () => {
    const run = runFixture('process_frozen_error.js');
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ exitCode: 0 }]);
  });

  test('a copy made by os.fork() in the same tick does not take up watching its sibling', () => {
    const run = runFixture('process_fork_same_tick.js');
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ process: 0, forked: 7 }]);
  });

  test.each([
    ['before the event loop watches it', false],
    ['once the event loop watches it', true],
  ])('a child the user reaps (os.waitpid) %s: its exit code is lost, join() resolves', async (_when, turn) => {
    // It lives on long enough for the loop to watch it before it ends.
    const sleep = (): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    const p = new (mp.getContext('fork').Process)({ target: sleep });
    p.start();
    if (turn) await new Promise((resolve) => setImmediate(resolve));
    const [reaped] = mp.os.waitpid(p.pid!);
    expect(reaped).toBe(p.pid);
    expect(p.isAlive()).toBe(false);
    await p.join();
    expect(p.exitCode).toBeNull();
  });

  test('a child reaped by an at-fork hook before Process watches it: its exit code is lost, join() resolves', () => {
    const result = runFixture('process_reaped_by_any.js', ['at-fork']);
    expect(result.stderr).toBe('');
    expect(jsonLines(result.stdout)).toEqual([{ reaper: 'hook', exitCode: null, alive: false }]);
  });

  test('a pending os.waitpidAsync(-1) racing Process to reap its child: whoever wins, join() resolves', () => {
    for (let run = 0; run < 3; run++) {
      const result = runFixture('process_reaped_by_any.js', ['any']);
      expect(result.stderr).toBe('');
      const [report] = jsonLines<{ reaper: string; exitCode: number | null; alive: boolean }>(result.stdout);
      // The exit code is Process's only when Process reaped the child itself.
      expect([{ reaper: 'any', exitCode: null, alive: false }, { reaper: 'process', exitCode: 0, alive: false }]).toContainEqual(report);
    }
  });
});
