/**
 * mp.os on the real system calls: fork, waitpid, wait, waitpidAsync, kill,
 * pids, _exit and the wait-status macros. Children forked inside jest leave at
 * once through _exit; anything that needs the child's event loop runs in a
 * fixture process (test/fixtures/os_*.js).
 */
import { execFileSync, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '..';
import { forkGeneration } from '../dist/at_fork';
import { loadNative } from '../dist/native';
import { exitcodeOf, fdCount, forkChild, jsonLines, procStat, runFixture, sleep, waitFor, zombieChildren } from './helpers';

const SIGKILL = os.constants.signals.SIGKILL;
const SIGTERM = os.constants.signals.SIGTERM;

describe('fork()', () => {
  test('returns the child pid in the parent and 0 in the child', () => {
    const pid = forkChild(() => 3);
    expect(pid).toBeGreaterThan(0);
    expect(pid).not.toBe(process.pid);
    expect(exitcodeOf(pid)).toBe(3);
  });

  test('the child has a copy of the heap: globals and closures', () => {
    const state = { counter: 41, items: [1, 2, 3] };
    const read = () => state.counter + state.items.length - 3;
    const pid = forkChild(() => {
      state.counter++;
      return read();
    });
    expect(exitcodeOf(pid)).toBe(42);
    expect(state.counter).toBe(41); // the child's change never reaches the parent
  });

  // (process.pid in the child is checked in a fixture: jest gives tests a
  // process object of its own.)
  test('the child sees its own pid in getpid(), its parent in getppid()', () => {
    const parent = mp.os.getpid();
    const pid = forkChild(() => (mp.os.getpid() !== parent && mp.os.getppid() === parent ? 0 : 1));
    expect(exitcodeOf(pid)).toBe(0);
    expect(mp.os.getpid()).toBe(parent);
  });

  test('nested forks work: a child forks a grandchild and reaps it', () => {
    const pid = forkChild(() => {
      const grandchild = mp.os.fork();
      if (grandchild === 0) mp.os._exit(5);
      return mp.os.waitstatusToExitcode(mp.os.waitpid(grandchild)[1]) + 1;
    });
    expect(exitcodeOf(pid)).toBe(6);
  });

  test('100 forks under GC load: no hang, no crash (fork barrier)', () => {
    const run = runFixture('../../dist-scripts/fork-stress.js', ['100']);
    const [result] = jsonLines(run.stdout);
    expect(result).toMatchObject({ forks: 100, ok: 100, hang: 0, crash: 0, 'wrong-status': 0 });
    expect(run.status).toBe(0);
  });

  test('the fork generation is counted by the addon: 0 here, 1 in a child, 2 in its child', () => {
    const generation = (): number => forkGeneration();
    const pid = forkChild(() => {
      const grandchild = forkChild(() => 10 * generation());
      return exitcodeOf(grandchild) + generation();
    });
    expect(exitcodeOf(pid)).toBe(21);
    expect(generation()).toBe(0);
  });

  test('precompile() compiles a function without calling it; anything else gets a TypeError', () => {
    const native = loadNative()!;
    let called = false;
    native.precompile(() => {
      called = true;
    });
    native.precompile(Math.max); // native code: nothing to compile, nothing thrown
    expect(called).toBe(false);
    expect(() => native.precompile(42 as never)).toThrow(/precompile\(fn: Function\)/);
    expect(() => native.setV8Flags(42 as never)).toThrow(/setV8Flags\(flags: string\)/);
  });

  test('a child forks 40 times while its own V8 worker thread is busy: no hang, every grandchild ends well', () => {
    const run = runFixture('os_nested_busy.js', ['40']);
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ forks: 40, ok: 40 }, { childExitcode: 0 }]);
  });

  test('forking from a worker thread throws', async () => {
    const { Worker } = await import('worker_threads');
    const script = `
      const { parentPort } = require('worker_threads');
      try { require(${JSON.stringify(path.resolve(__dirname, '..'))}).os.fork(); parentPort.postMessage('forked'); }
      catch (error) { parentPort.postMessage(error.message); }`;
    const worker = new Worker(script, { eval: true });
    const message = await new Promise((resolve) => worker.once('message', resolve));
    await worker.terminate();
    expect(message).toMatch(/main thread/);
  });

  test('warns when other threads (worker_threads) run, as Python does; not for Node\'s own', () => {
    const run = runFixture('os_threads_warning.js');
    const [result] = jsonLines<{ before: number; during: number; warningsWithoutWorker: number; warnings: { name: string; code: string; message: string }[] }>(run.stdout);
    expect(result.before).toBe(0);
    expect(result.during).toBe(0);
    expect(result.warningsWithoutWorker).toBe(0);
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toMatchObject({ name: 'RuntimeWarning', code: 'MP_FORK_WITH_THREADS' });
    expect(result.warnings[0].message).toMatch(/multi-threaded.*deadlocks/);
  });
});

describe('every way out of a forked child', () => {
  const cases: [string, number, RegExp?, RegExp?][] = [
    // [way, exit code, stdout must match, stderr must match]
    ['end', 0, /exit listener: 0/],
    ['end-with-timer', 0, /timer fired in child[\s\S]*exit listener: 0/],
    ['exit-code', 4, /exit listener: 4/],
    ['throw', 1, /exit listener: 1/, /boom in child/],
    ['throw-later', 1, /exit listener: 1/, /late boom/],
    ['reject', 1, /exit listener: 1/, /rejected in child/],
    ['process-exit', 7, /exit listener: 7/],
    ['process-exit-later', 8, /exit listener: 8/],
    ['_exit', 9],
    ['signal', -SIGKILL],
    ['sigterm', -SIGTERM],
    ['before-exit-throws', 1, /exit listener: 1/, /thrown in beforeExit/],
    ['before-exit-work', 0, /beforeExit round 1[\s\S]*beforeExit round 2[\s\S]*exit listener: 0/],
  ];

  const rows = cases.map(([way, exitcode, stdout, stderr]) => ({ way, exitcode, stdout, stderr }));
  test.each(rows)('$way → exit code $exitcode', ({ way, exitcode, stdout, stderr }) => {
    const run = runFixture('os_exit_paths.js', [way]);
    expect(run.status).toBe(0);
    const [result] = jsonLines(run.stdout);
    expect(result).toEqual({ exitcode });
    if (stdout) expect(run.stdout).toMatch(stdout);
    if (stderr) expect(run.stderr).toMatch(stderr);
    // 'exit' listeners run where Node runs them: not after _exit() or a signal.
    if (!stdout) expect(run.stdout).not.toMatch(/exit listener/);
  });
});

describe('the forked child runs its event loop', () => {
  test('timers, promises, fs and child_process work in the child', () => {
    const run = runFixture('os_child_runtime.js');
    expect(run.status).toBe(0);
    const lines = jsonLines<Record<string, unknown>>(run.stdout);
    const child = lines.find((line) => line.role === 'child')!;
    const parent = lines.find((line) => line.role === 'parent')!;
    expect(child).toMatchObject({ timer: true, promise: 42, fs: true, execSync: 'hi', execAsync: 'async hi' });
    expect(child.pid).toBe(child.getpid);
    expect(child.pid).toBe(parent.childPid);
    expect(child.getppid).toBe(parent.pid);
    expect(child.ppid).toBe(parent.pid);
    expect(parent).toMatchObject({ exitcode: 0, reaped: parent.childPid });
  });

  test('a child optimises its hot code as its parent does, and so does its own child', () => {
    const run = runFixture('os_child_optimizes.js', []);
    expect(run.stderr).toBe('');
    const byRole = Object.fromEntries(jsonLines<{ role: string; optimized: boolean }>(run.stdout).map((line) => [line.role, line.optimized]));
    expect(byRole).toEqual({ parent: true, child: true, grandchild: true, reaped: true });
  }, 180000);

  test.each([1, 8])('output written before the fork appears once on a pipe (%i forks)', (forks) => {
    const run = runFixture('os_output_once.js', [String(forks)]);
    expect(run.status).toBe(0);
    expect(run.stdout.match(/written before the fork/g)).toHaveLength(1);
    expect(run.stderr.match(/stderr before the fork/g)).toHaveLength(1);
    expect(run.stdout.match(/child \d+/g)).toHaveLength(forks);
    expect(run.stdout).toMatch(/parent done\n$/);
  });

  test('output still queued for a slow reader at the fork is written once, by the parent', () => {
    const fixture = path.join(__dirname, 'fixtures', 'os_output_pending.js');
    const forked = path.join(os.tmpdir(), `mp-forked-${process.pid}`);
    fs.rmSync(forked, { force: true });
    // The reader waits until the fixture sees its 512 KiB write queued in libuv (the pipe is full) and is about to fork.
    const reader = `(until [ -e "${forked}" ]; do sleep 0.01; done; cat)`;
    let out: string;
    try {
      out = execFileSync('sh', ['-c', `"${process.execPath}" "${fixture}" "${forked}" | ${reader}`], { encoding: 'utf8', timeout: 600000 }); // a hang guard
    } finally {
      fs.rmSync(forked, { force: true });
    }
    expect(out).not.toMatch(/not queued/);
    expect(out.match(/^x{1023}$/gm)).toHaveLength(512);
    expect(out.match(/^start$/gm)).toHaveLength(1);
    expect(out.match(/^end of the big write$/gm)).toHaveLength(1);
    expect(out.match(/^child$/gm)).toHaveLength(1); // written after the inherited queue, in the child
    expect(out).toMatch(/parent done 0\n$/);
  });

  test('output written before the fork appears once in a file', () => {
    const file = path.join(os.tmpdir(), `mp-output-${process.pid}.txt`);
    const fd = fs.openSync(file, 'w');
    try {
      const result = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'os_output_once.js'), '4'], {
        stdio: ['ignore', fd, fd],
        timeout: 600000, // a hang guard
      });
      expect(result.status).toBe(0);
      const text = fs.readFileSync(file, 'utf8');
      expect(text.match(/written before the fork/g)).toHaveLength(1);
      expect(text.match(/stderr before the fork/g)).toHaveLength(1);
      expect(text.match(/child \d+/g)).toHaveLength(4);
    } finally {
      fs.closeSync(fd);
      fs.unlinkSync(file);
    }
  });
});

describe('the parent\'s machine code, shared with its children', () => {
  // Where the kernel offers transparent huge pages, the first fork moves node's
  // code into them (native/shared_code.cc); elsewhere it is left as it is.
  const thp = fs.existsSync('/sys/kernel/mm/transparent_hugepage/enabled')
    ? fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8')
    : '[never]';
  const onOffer = /\[(always|madvise)\]/.test(thp);
  type Report = { shared: boolean; hugeCodeKb: number; child: number; worker: number };

  test('the first fork moves it into huge pages; children and later worker threads run', () => {
    const run = runFixture('os_shared_code.js');
    expect(run.stderr).toBe('');
    const [report] = jsonLines<Report>(run.stdout);
    expect(report).toEqual({ shared: onOffer, hugeCodeKb: expect.any(Number), child: 5, worker: 42 });
    if (onOffer) expect(report.hugeCodeKb).toBeGreaterThanOrEqual(2048);
    else expect(report.hugeCodeKb).toBe(0);
  });

  test('NODE_MULTIPROCESSING_LARGE_PAGES=0 leaves it mapped from the binary', () => {
    const run = runFixture('os_shared_code.js', [], { env: { NODE_MULTIPROCESSING_LARGE_PAGES: '0' } });
    expect(jsonLines<Report>(run.stdout)).toEqual([{ shared: false, hugeCodeKb: 0, child: 5, worker: 42 }]);
  });

  // Node 26 still accepts --use-largepages but ignores it, saying so on stderr.
  const nodeHasLargePages = spawnSync(process.execPath, ['--use-largepages=on', '-e', ''], { encoding: 'utf8' }).stderr === '';
  (onOffer && nodeHasLargePages ? test : test.skip)('under node --use-largepages=on it stays where node put it (a Node that has the option)', () => {
    const run = runFixture('os_shared_code.js', [], { env: { NODE_OPTIONS: '--use-largepages=on' } });
    const [report] = jsonLines<Report>(run.stdout);
    expect(report).toEqual({ shared: false, hugeCodeKb: expect.any(Number), child: 5, worker: 42 });
    expect(report.hugeCodeKb).toBeGreaterThanOrEqual(2048);
  });
});

describe('waitpid(), wait(), waitpidAsync()', () => {
  test('WNOHANG answers [0, 0] while the child runs, then reaps it', () => {
    const go = new mp.Event();
    const pid = mp.os.fork();
    if (pid === 0) {
      // Runs until the parent has asked (blocking here: the child must not return into jest).
      go.waitSync(60000);
      mp.os._exit(0);
    }
    expect(mp.os.waitpid(pid, mp.os.WNOHANG)).toEqual([0, 0]);
    go.set();
    expect(exitcodeOf(pid)).toBe(0);
  });

  test('wait() reaps any child', () => {
    const pid = forkChild(() => 12);
    const [reaped, status] = mp.os.wait();
    expect(reaped).toBe(pid);
    expect(mp.os.WIFEXITED(status)).toBe(true);
    expect(mp.os.WEXITSTATUS(status)).toBe(12);
  });

  test('waitpidAsync() does not block the event loop', async () => {
    // The child ends only once a timer of the parent's has run while it waits.
    const timerRan = new mp.Event();
    const pid = forkChild(() => (timerRan.waitSync(), 2));
    const waiting = mp.os.waitpidAsync(pid);
    setTimeout(() => timerRan.set(), 10);
    const [reaped, status] = await waiting;
    expect(timerRan.isSet()).toBe(true);
    expect(reaped).toBe(pid);
    expect(mp.os.waitstatusToExitcode(status)).toBe(2);
  });

  test('a fork-start Process whose async target runs right after an awaited waitpidAsync', () => {
    // The child leaves the parent's stack from inside waitpidAsync's callback.
    const run = runFixture('os_wait_then_process.js');
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ exitCode: 0, ran: true }]);
  });

  test('a pid that is not a child: ECHILD, with code and syscall', async () => {
    expect(() => mp.os.waitpid(1)).toThrow(expect.objectContaining({ code: 'ECHILD', syscall: 'waitpid' }));
    await expect(mp.os.waitpidAsync(process.pid)).rejects.toMatchObject({ code: 'ECHILD', syscall: 'waitpid' });
  });

  test('bad arguments get a TypeError naming them', () => {
    expect(() => mp.os.waitpid('12' as unknown as number)).toThrow(/pid must be an integer/);
    expect(() => mp.os.waitpid(1.5)).toThrow(TypeError);
    expect(() => mp.os.waitpid(1, -1)).toThrow(RangeError);
    expect(() => mp.os.waitpidAsync(NaN)).toThrow(TypeError);
    expect(() => mp.os._exit('x' as unknown as number)).toThrow(/code must be an integer/);
  });
});

describe('status macros', () => {
  test('exit status and signals decode as in C', () => {
    const exited = mp.os.waitpid(forkChild(() => 200))[1];
    expect(mp.os.WIFEXITED(exited)).toBe(true);
    expect(mp.os.WIFSIGNALED(exited)).toBe(false);
    expect(mp.os.WEXITSTATUS(exited)).toBe(200);
    expect(mp.os.waitstatusToExitcode(exited)).toBe(200);

    const pid = mp.os.fork();
    if (pid === 0) {
      for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
    }
    mp.os.kill(pid, 'SIGKILL');
    const killed = mp.os.waitpid(pid)[1];
    expect(mp.os.WIFEXITED(killed)).toBe(false);
    expect(mp.os.WIFSIGNALED(killed)).toBe(true);
    expect(mp.os.WTERMSIG(killed)).toBe(SIGKILL);
    expect(mp.os.waitstatusToExitcode(killed)).toBe(-SIGKILL);
  });

  test('a stopped status is not an exit code', () => {
    expect(() => mp.os.waitstatusToExitcode(0x137f)).toThrow(RangeError); // stopped by SIGSTOP
  });
});

describe('kill()', () => {
  test('sends a signal by number or by name', () => {
    for (const signal of [SIGTERM, 'SIGTERM'] as const) {
      const pid = mp.os.fork();
      if (pid === 0) {
        for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      }
      mp.os.kill(pid, signal);
      expect(mp.os.waitstatusToExitcode(mp.os.waitpid(pid)[1])).toBe(-SIGTERM);
    }
  });

  test('a missing pid: ESRCH; an unknown signal: TypeError', () => {
    const pid = forkChild();
    exitcodeOf(pid); // reaped: the pid is free now
    expect(() => mp.os.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH', syscall: 'kill' }));
    expect(() => mp.os.kill(process.pid, 'SIGNOPE' as NodeJS.Signals)).toThrow(/unknown signal/);
  });
});

describe('zombies and orphans, as the kernel makes them', () => {
  test('an exited child stays a zombie until waitpid(), then is gone', async () => {
    const pid = forkChild(() => 0);
    expect(await waitFor(() => procStat(pid)?.state === 'Z')).toBe(true);
    expect(procStat(pid)).toMatchObject({ state: 'Z', ppid: process.pid });
    await sleep(50);
    expect(procStat(pid)?.state).toBe('Z'); // nobody reaps it behind our back
    expect(exitcodeOf(pid)).toBe(0);
    expect(procStat(pid)).toBeNull();
    expect(zombieChildren()).toEqual([]);
  });

  test('child_process keeps working beside forked children, and reaps only its own', async () => {
    const zombie = forkChild(() => 0);
    expect(await waitFor(() => procStat(zombie)?.state === 'Z')).toBe(true);
    const status = await new Promise<number | null>((resolve) => {
      spawn(process.execPath, ['-e', 'process.exit(3)']).on('exit', (code) => resolve(code));
    });
    expect(status).toBe(3);
    expect(procStat(zombie)?.state).toBe('Z');
    expect(exitcodeOf(zombie)).toBe(0);
  });

  test('an orphan is re-parented when its parent exits first', () => {
    const run = runFixture('os_orphan.js');
    const lines = jsonLines<{ parent?: number; child?: number; before?: number; after?: number; processPpid?: number }>(run.stdout);
    const parent = lines.find((line) => line.parent !== undefined)!;
    const orphan = lines.find((line) => line.before !== undefined)!;
    expect(orphan.child).toBe(parent.child);
    expect(orphan.before).toBe(parent.parent);
    expect(orphan.after).not.toBe(parent.parent);
    expect(orphan.processPpid).toBe(orphan.after);
  });
});

describe('no leaks', () => {
  test('200 forks reaped leave no zombie and no extra fd', () => {
    const fds = fdCount();
    for (let i = 0; i < 200; i++) exitcodeOf(forkChild());
    expect(zombieChildren()).toEqual([]);
    expect(fdCount()).toBe(fds);
  });

  test('waitpidAsync leaves no fd behind', async () => {
    const fds = fdCount();
    for (let i = 0; i < 20; i++) await mp.os.waitpidAsync(forkChild());
    expect(fdCount()).toBe(fds);
  });
});

describe('without the addon (the Windows path)', () => {
  test('every mp.os function throws an Error with code ENOSYS', () => {
    const run = runFixture('os_no_native.js', [], { env: { NODE_MULTIPROCESSING_NO_NATIVE: '1' } });
    expect(run.status).toBe(0);
    const [codes] = jsonLines<Record<string, string>>(run.stdout);
    expect(Object.keys(codes)).toHaveLength(13);
    for (const code of Object.values(codes)) expect(code).toBe('ENOSYS');
  });
});

describe('the addon built by cmake-js', () => {
  const cmakeAddon = path.join(__dirname, '..', 'build-cmake', 'Release', 'multiprocessing.node');
  // CI builds it (npm run build:cmake) so that neither build rots.
  const maybe = fs.existsSync(cmakeAddon) || process.env.CI ? test : test.skip;
  maybe('forks and reaps like the node-gyp build', () => {
    const run = runFixture('os_exit_paths.js', ['process-exit'], { env: { NODE_MULTIPROCESSING_ADDON: cmakeAddon } });
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ exitcode: 7 }]);
  });

  test('a missing addon is reported with every path tried', () => {
    const run = runFixture('os_no_native.js', [], { env: { NODE_MULTIPROCESSING_ADDON: '/nonexistent/multiprocessing.node' } });
    const [codes] = jsonLines<Record<string, string>>(run.stdout);
    expect(codes.fork).toBe('ENOSYS');
    const { stdout: message, stderr } = spawnSync(
      process.execPath,
      ['-e', `try { require(${JSON.stringify(path.join(__dirname, '..'))}).os.fork() } catch (e) { console.log(e.message) }`],
      { encoding: 'utf8', env: { ...process.env, NODE_MULTIPROCESSING_ADDON: '/nonexistent/multiprocessing.node' } },
    );
    expect(message).toMatch(/\/nonexistent\/multiprocessing\.node \(not found\)/);
    // Said once, when the package first looks for it: what runs without it.
    expect(stderr.match(/\[MP_NO_ADDON\] Warning: node-multiprocessing runs without its native addon: Process uses the spawn start method/g)).toHaveLength(1);
  });
});
