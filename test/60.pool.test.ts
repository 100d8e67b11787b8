/**
 * mp.Pool under every start method (describe.each over getAllStartMethods()),
 * on real worker processes. The jest project "no-addon" runs this file again
 * with the addon disabled, as on Windows: only spawn is there then.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '..';
import { fdCount, jsonLines, runFixture, zombieChildren } from './helpers';
import { running, waitFor } from './fixtures/process_helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const tasks = require('./fixtures/pool_tasks.js') as {
  square(x: number): number;
  add(a: number, b: number): number;
  pid(): number;
  whoAmI(): { pid: number; name: string; initialized: unknown };
  asyncSquare(x: number): Promise<number>;
  throwTypeError(message: string): never;
  throwCustom(message: string): never;
  rejectLater(message: string): Promise<never>;
  failOn(x: number): number;
  exitWith(code: number): never;
  killSelf(): never;
  startThenWait(dir: string, file: string): Promise<number>;
  waitFor(file: string): Promise<string>;
  writeSquare(array: Int32Array, i: number): number;
  initialize(value: unknown): void;
  failToInitialize(): never;
  returnFunction(): () => number;
  pidThenWait(dir: string, file: string): Promise<void>;
  pidAtBarrier(dir: string, count: number): Promise<number>;
};

const NO_ADDON = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1';
const methods = mp.getAllStartMethods();
let tmp: string;
let files = 0;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-pool-'));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * Where tasks report their start (a file per worker pid) and the file they
 * wait for: files, as the no-addon project (Windows) has no shared memory.
 */
function signals(): { dir: string; release: string; started(): number[]; set(): void } {
  files += 1;
  const dir = path.join(tmp, `started-${files}`);
  fs.mkdirSync(dir);
  const release = path.join(tmp, `release-${files}`);
  return {
    dir,
    release,
    started: () => fs.readdirSync(dir).map(Number),
    set: () => fs.writeFileSync(release, ''),
  };
}

test('new Pool() checks its arguments', () => {
  expect(() => new mp.Pool(0)).toThrow(RangeError);
  expect(() => new mp.Pool(-1)).toThrow(RangeError);
  expect(() => new mp.Pool(1.5)).toThrow(TypeError);
  expect(() => new mp.Pool('2' as unknown as number)).toThrow(/processes must be an integer/);
  expect(() => new mp.Pool({ processes: 0 })).toThrow(RangeError);
  expect(() => new mp.Pool(1, { maxtasksperchild: 0 })).toThrow(/maxtasksperchild/);
  expect(() => new mp.Pool(1, { initializer: 42 as unknown as () => void })).toThrow(/initializer must be a function/);
  expect(() => new mp.Pool(1, { initargs: 'x' as unknown as [] })).toThrow(/initargs must be an array/);
  expect(() => new mp.Pool(1, { context: {} as mp.BaseContext })).toThrow(/context/);
});

describe.each(methods)('Pool with the %s start method', (method) => {
  const ctx = mp.getContext(method);
  let pool: mp.Pool;

  beforeAll(() => {
    pool = new ctx.Pool(2);
  });

  afterAll(async () => {
    pool.terminate();
    await pool.join();
  });

  test('apply and applyAsync run the function in a worker', async () => {
    expect(await pool.apply(tasks.square, [7])).toBe(49);
    expect(await pool.apply(tasks.add, [2, 3])).toBe(5);
    expect(await pool.apply(tasks.asyncSquare, [9])).toBe(81);
    const worker = await pool.apply(tasks.whoAmI);
    expect(worker.pid).not.toBe(process.pid);
    const prefix = { fork: 'ForkPoolWorker-', spawn: 'SpawnPoolWorker-', forkserver: 'ForkServerPoolWorker-' }[method];
    expect(worker.name.startsWith(prefix)).toBe(true);

    const calls: unknown[] = [];
    const result = pool.applyAsync(tasks.square, [5], { callback: (value) => calls.push(value) });
    expect(await result.get()).toBe(25);
    expect(result.ready()).toBe(true);
    expect(result.successful()).toBe(true);
    expect(calls).toEqual([25]);
  });

  test('arguments and results of any size cross, larger than a forked worker\'s mailbox (1 MiB) and small ones after them', async () => {
    const big = 'x'.repeat(3 * 1024 * 1024);
    const concat = tasks.add as unknown as (a: string, b: string) => string;
    for (let round = 0; round < 2; round++) {
      const joined = await pool.apply(concat, [big, `${round}`]);
      expect(joined.length).toBe(big.length + 1);
      expect(joined.endsWith(`x${round}`)).toBe(true);
      expect(await pool.apply(tasks.square, [round + 2])).toBe((round + 2) ** 2);
    }
    expect(await pool.map(tasks.square, Array.from({ length: 300_000 }, (_, i) => i % 7), 150_000)).toHaveLength(300_000);
  });

  test('AsyncResult: get(timeout) rejects with TimeoutError, wait() resolves either way, successful() throws before ready', async () => {
    const event = signals();
    const result = pool.applyAsync(tasks.waitFor, [event.release]);
    expect(result.ready()).toBe(false);
    expect(() => result.successful()).toThrow(/not ready/);
    await expect(result.get(0)).rejects.toBeInstanceOf(mp.TimeoutError);
    await expect(result.get(20)).rejects.toThrow(mp.TimeoutError);
    await result.wait(0);
    expect(result.ready()).toBe(false);
    event.set();
    await result.wait();
    expect(await result.get(0)).toBe('set');
    expect(() => result.get(-1)).toThrow(RangeError);
    expect(() => result.wait('1' as unknown as number)).toThrow(TypeError);
  });

  test('map, starmap and their Async forms, in order, with Python\'s default chunksize', async () => {
    const numbers = Array.from({ length: 1000 }, (_, i) => i);
    expect(await pool.map(tasks.square, numbers)).toEqual(numbers.map((x) => x * x));
    expect(await pool.map(tasks.square, new Set([1, 2, 3]), 2)).toEqual([1, 4, 9]);
    expect(await pool.map(tasks.square, [])).toEqual([]);
    expect(await pool.map(tasks.asyncSquare, [1, 2, 3, 4, 5], { chunksize: 2 })).toEqual([1, 4, 9, 16, 25]);
    expect(await pool.starmap(tasks.add, [[1, 2], [3, 4], [5, 6]])).toEqual([3, 7, 11]);
    expect(await pool.map(tasks.whoAmI, ['a', { nested: [1] }]).then((r) => r.length)).toBe(2);

    const results: number[][] = [];
    const mapped = pool.mapAsync(tasks.square, [3, 4], { callback: (values) => results.push(values) });
    expect(await mapped.get()).toEqual([9, 16]);
    expect(results).toEqual([[9, 16]]);
    const starred = pool.starmapAsync(tasks.add, [[1, 1], [2, 2]]);
    await starred.wait();
    expect(starred.successful()).toBe(true);
    expect(await starred.get()).toEqual([2, 4]);
    expect(() => pool.map(tasks.square, [1], 0)).toThrow(RangeError);
    expect(() => pool.starmap(tasks.add, [1] as unknown as [number, number][])).toThrow(/iterable\[0\] must be an array/);
  });

  test('onProgress reports the items done out of the total, up to the total', async () => {
    const reports: Array<[number, number]> = [];
    await pool.map(tasks.square, Array.from({ length: 10 }, (_, i) => i), {
      chunksize: 3,
      onProgress: (done, total) => reports.push([done, total]),
    });
    expect(reports.length).toBe(4);
    expect(reports.map(([, total]) => total)).toEqual([10, 10, 10, 10]);
    expect(reports.map(([done]) => done)).toEqual([...reports.map(([done]) => done)].sort((a, b) => a - b));
    expect(reports[3][0]).toBe(10);
  });

  test('imap and imapUnordered yield every result; imap in order', async () => {
    const input = Array.from({ length: 50 }, (_, i) => i);
    const ordered: number[] = [];
    for await (const value of pool.imap(tasks.square, input)) ordered.push(value);
    expect(ordered).toEqual(input.map((x) => x * x));
    const unordered: number[] = [];
    for await (const value of pool.imapUnordered(tasks.square, input, 7)) unordered.push(value);
    expect(unordered.sort((a, b) => a - b)).toEqual(input.map((x) => x * x));
    const empty: number[] = [];
    for await (const value of pool.imap(tasks.square, [])) empty.push(value);
    expect(empty).toEqual([]);
  });

  test('imap reads an infinite async generator lazily, with a bounded number of tasks in flight', async () => {
    let pulled = 0;
    async function* naturals(): AsyncGenerator<number> {
      for (let i = 0; ; i++) {
        pulled = i + 1;
        yield i;
      }
    }
    const got: number[] = [];
    for await (const value of pool.imap(tasks.square, naturals())) {
      got.push(value);
      if (got.length === 20) break;
    }
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i * i));
    expect(pulled).toBeLessThanOrEqual(20 + 2 * 2 + 1);
    // The pool goes on after the consumer left early.
    expect(await pool.apply(tasks.square, [3])).toBe(9);
  });

  test('an error in a task rejects with the same class, message and the remote stack; the pool goes on', async () => {
    const error = (await pool.apply(tasks.throwTypeError, ['bad input']).catch((e: unknown) => e)) as mp.RemoteError;
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('bad input');
    expect(error.remoteStack).toMatch(/throwTypeError/);
    expect(error.stack).toMatch(/remote stack/);

    const custom = (await pool.apply(tasks.throwCustom, ['custom']).catch((e: unknown) => e)) as Error & { code: string };
    expect(custom.name).toBe('CustomError');
    expect(custom.message).toBe('custom');
    expect(custom.code).toBe('E_CUSTOM');

    await expect(pool.apply(tasks.rejectLater, ['later'])).rejects.toThrow(RangeError);
    await expect(pool.map(tasks.failOn, [1, 2, 3, 4], 1)).rejects.toThrow('bad item');
    const errors: unknown[] = [];
    const failed = pool.starmapAsync(tasks.failOn, [[2]], { errorCallback: (e) => errors.push(e) });
    await failed.wait();
    expect(failed.successful()).toBe(false);
    expect(errors).toHaveLength(1);
    await expect(pool.apply(tasks.returnFunction)).rejects.toThrow(/the result.* cannot be sent to another process/);

    const results: unknown[] = [];
    const iterator = pool.imap(tasks.failOn, [1, 2, 3], { chunksize: 1 });
    for (;;) {
      try {
        const step = await iterator.next();
        if (step.done === true) break;
        results.push(step.value);
      } catch (e) {
        results.push((e as Error).message);
      }
    }
    expect(results).toEqual([1, 'bad item 2', 3]);
    expect(await pool.apply(tasks.square, [4])).toBe(16);
  });

  test('imap goes on past many failed chunks: their skipped places do not close its window', async () => {
    // Every chunk of 3 fails: one error each, its other two places skipped.
    // Were the skipped places never counted as consumed, submission would stop
    // after a few chunks and next() would wait for ever.
    const input = Array.from({ length: 60 }, (_, i) => `item ${i}`);
    const messages: string[] = [];
    const iterator = pool.imap(tasks.throwTypeError, input, { chunksize: 3 });
    for (;;) {
      try {
        const step = await iterator.next();
        if (step.done === true) break;
        messages.push(`value ${String(step.value)}`);
      } catch (e) {
        messages.push((e as Error).message);
      }
    }
    expect(messages).toEqual(input.filter((_, i) => i % 3 === 0));
  });

  test('a worker that dies mid-task rejects exactly that task with WorkerLostError; the pool goes on', async () => {
    const exited = (await pool.apply(tasks.exitWith, [3]).catch((e: unknown) => e)) as mp.WorkerLostError;
    expect(exited).toBeInstanceOf(mp.WorkerLostError);
    expect(exited.exitCode).toBe(3);
    expect(exited.signal).toBeNull();
    expect(exited.pid).toEqual(expect.any(Number));
    const killed = (await pool.apply(tasks.killSelf).catch((e: unknown) => e)) as mp.WorkerLostError;
    expect(killed).toBeInstanceOf(mp.WorkerLostError);
    expect(killed.signal).toBe('SIGKILL');
    expect(killed.exitCode).toBeNull();
    expect(await pool.map(tasks.square, [1, 2, 3])).toEqual([1, 4, 9]);
  });

  test('{ signal }: aborting kills the workers running the call and drops its queued tasks', async () => {
    const event = signals();
    const controller = new AbortController();
    const call = pool.starmap(tasks.startThenWait, Array.from({ length: 6 }, () => [event.dir, event.release] as [string, string]), {
      chunksize: 1,
      signal: controller.signal,
    });
    void call.catch(() => {});
    // Both workers run a task of the call; the other four are queued.
    expect(await waitFor(() => event.started().length === 2, 60000)).toBe(true);
    const busy = event.started();
    controller.abort();
    const error = (await call.catch((e: unknown) => e)) as Error & { code: string };
    expect(error.name).toBe('AbortError');
    expect(error.code).toBe('ABORT_ERR');
    expect(await waitFor(() => busy.every((pid) => !running(pid)), 60000)).toBe(true);
    expect(await pool.apply(tasks.square, [6])).toBe(36);
    expect(event.started()).toEqual(busy);
    event.set();
    expect(() => pool.apply(tasks.square, [1], { signal: 'x' as unknown as AbortSignal })).toThrow(/signal must be an AbortSignal/);
    await expect(pool.apply(tasks.square, [1], { signal: AbortSignal.abort() })).rejects.toThrow('aborted');
  });

  test('{ timeout }: a call that takes longer rejects with TimeoutError and its worker is killed', async () => {
    const event = signals();
    await expect(pool.apply(tasks.pidThenWait, [event.dir, event.release], { timeout: 50 })).rejects.toBeInstanceOf(mp.TimeoutError);
    // The task had started (its worker is killed) or was still queued (it is dropped).
    for (const pid of event.started()) expect(await waitFor(() => !running(pid), 60000)).toBe(true);
    expect(await pool.map(tasks.square, [1, 2, 3, 4], 1)).toEqual([1, 4, 9, 16]);
    event.set();
  });

  (NO_ADDON ? test.skip : test)('shared mp.Array arguments are the same memory in the workers', async () => {
    const squares = mp.Array('i', 16);
    await pool.starmap(
      tasks.writeSquare,
      Array.from({ length: 16 }, (_, i) => [squares, i] as [Int32Array, number]),
      4,
    );
    expect([...squares]).toEqual(Array.from({ length: 16 }, (_, i) => i * i));
  });

  test('a value that cannot cross gets a TypeError naming it, at once', () => {
    expect(() => pool.apply(tasks.add, [1, () => 2] as unknown as [number, number])).toThrow(/args\[1\].* cannot be sent to another process/);
    expect(() => pool.apply('square' as unknown as () => void)).toThrow(/the task function must be a function/);
  });

  test('initializer and initargs run in each worker; maxtasksperchild replaces workers', async () => {
    const initialized = new ctx.Pool({ processes: 2, initializer: tasks.initialize, initargs: ['ready'], maxtasksperchild: 1 });
    try {
      const seen = await initialized.map(tasks.whoAmI, [1, 2, 3, 4], 1);
      expect(seen.map((w) => w.initialized)).toEqual(['ready', 'ready', 'ready', 'ready']);
      expect(new Set(seen.map((w) => w.pid)).size).toBe(4);
    } finally {
      initialized.terminate();
      await initialized.join();
    }
  });

  test('an initializer that throws fails the calls with its error', async () => {
    const broken = new ctx.Pool(1, { initializer: tasks.failToInitialize });
    try {
      await expect(broken.apply(tasks.square, [1])).rejects.toThrow(/initializer failed: cannot initialize/);
    } finally {
      broken.terminate();
      await broken.join();
    }
  });

  // (Under fork its workers are forked from an immediate of the same batch as
  // the describe's pool's, when this test runs alone: test/20.process.immediates.)
  test('close() then join(): pending calls complete, then every worker is reaped; a closed pool throws', async () => {
    // The describe's pool at rest first (both workers connected), or its sockets change the count.
    const barrier = signals();
    await pool.starmap(tasks.pidAtBarrier, [[barrier.dir, 2], [barrier.dir, 2]], 1);
    const fds = fdCount();
    const closing = new ctx.Pool(2);
    const result = closing.mapAsync(tasks.asyncSquare, [1, 2, 3, 4, 5], { chunksize: 1 });
    expect(() => closing.join()).toThrow(/still running/);
    closing.close();
    expect(() => closing.apply(tasks.square, [1])).toThrow(/closed/);
    expect(() => closing.imap(tasks.square, [1])).toThrow(/closed/);
    await closing.join();
    expect(await result.get(0)).toEqual([1, 4, 9, 16, 25]);
    expect(await waitFor(() => zombieChildren().length === 0, 60000)).toBe(true);
    // Not one more descriptor than before (fewer can be: an earlier test's pool may close its last ones
    // meanwhile, on a loaded machine after this count was taken).
    expect(await waitFor(() => fdCount() <= fds, 60000)).toBe(true);
  });

  test('await using terminates the pool; calls in progress reject', async () => {
    const event = signals();
    let pending: Promise<unknown> | null = null;
    {
      await using disposable = new ctx.Pool(1);
      expect(await disposable.apply(tasks.square, [2])).toBe(4);
      pending = disposable.apply(tasks.waitFor, [event.release]).catch((e: unknown) => e);
    }
    expect(((await pending) as Error).message).toMatch(/terminated/);
    // (A spawned child is reaped by libuv, on its own SIGCHLD event.)
    expect(await waitFor(() => zombieChildren().length === 0, 60000)).toBe(true);
  });

  if (method === 'fork') {
    test('under fork any function runs: closures, and functions made after the pool started', async () => {
      const base = 10;
      expect(await pool.apply((x: number) => x + base, [5])).toBe(15);
      const made = (y: number): number => y * base;
      expect(await pool.map(made, [1, 2, 3])).toEqual([10, 20, 30]);
      const later = await new Promise<(s: string) => string>((resolve) => setImmediate(() => resolve((s) => `${s}!${base}`)));
      expect(await pool.map(later, ['a', 'b'])).toEqual(['a!10', 'b!10']);
      expect(await pool.apply((x: number) => x + base, [6])).toBe(16);
    });

    test('typed arrays in arguments and results are their own: later tasks through the same mailbox leave them as they were', async () => {
      const kept: Array<{ bytes: Uint8Array; doubles: Float64Array }> = [];
      const keptArgs: Array<[Uint8Array, number]> = [];
      const fill = (bytes: Uint8Array, value: number): { bytes: Uint8Array; doubles: Float64Array } => {
        keptArgs.push([bytes, value]); // in the worker's copy of this array: later tasks must not change them
        const check = keptArgs.every(([arg, filled]) => arg.every((b) => b === filled));
        return { bytes: new Uint8Array(64).fill(check ? value : 0), doubles: new Float64Array(8).fill(value) };
      };
      for (let value = 1; value <= 3; value++) kept.push(await pool.apply(fill, [new Uint8Array(64).fill(value), value]));
      kept.forEach((result, i) => {
        expect(result.bytes.every((b) => b === i + 1)).toBe(true);
        expect(result.doubles.every((d) => d === i + 1)).toBe(true);
      });
    });
  } else {
    test(`under ${method} a closure gets the clear error of Process`, () => {
      const base = 10;
      expect(() => pool.apply((x: number) => x + base, [5])).toThrow(/cannot be sent to a child of the '\w+' start method/);
    });
  }
});

describe('a pool\'s processes', () => {
  /** The lines `workers` printed, `lines` each, with `fill` as pool_tasks' print tasks make them. */
  function expectedLines(workers: number[], lines: number, fill: string): string[] {
    return workers.flatMap((worker) => Array.from({ length: lines }, (_, i) => `worker ${worker} line ${i} ${fill.repeat(200)} end`));
  }

  test.each(methods)('worker output reaches the parent\'s stdout and stderr line-intact, every line once (%s)', (method) => {
    const run = runFixture('pool_output.js', [method]);
    expect(run.status).toBe(0);
    const sorted = (text: string): string[] => text.split('\n').filter((line) => line !== '').sort();
    expect(sorted(run.stdout)).toEqual([...expectedLines([0, 1], 500, 'x'), ...expectedLines([2, 3, 4, 5], 500, 'x')].sort());
    expect(sorted(run.stderr)).toEqual(expectedLines([2, 3, 4, 5], 500, 'y').sort());
  });

  test('a pool whose parent dies leaves no worker behind', async () => {
    const run = runFixture('pool_orphan.js', [methods[0]]);
    const [report] = jsonLines<{ pids: number[] }>(run.stdout);
    expect(run.signal).toBe('SIGKILL');
    expect(report.pids.length).toBe(2);
    expect(await waitFor(() => report.pids.every((pid) => !running(pid)), 60000)).toBe(true);
  });
});
