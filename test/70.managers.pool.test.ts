/**
 * A manager's Pool: the pool and its workers live in the manager's server
 * process; this process and its children submit tasks through a PoolProxy
 * (task functions cross by module reference). Terminated through the proxy,
 * released with its last proxy, and torn down with the server.
 */
import * as v8 from 'v8';
import * as vm from 'vm';

import * as mp from '..';
import { procStat, waitFor } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/managers_targets') as {
  square(x: number): number;
  add(a: number, b: number): number;
  workerPid(): number;
  failWith(x: number): never;
  hang(dict: mp.DictProxy<string, number>, key: string): Promise<never>;
  mapInChild(pool: mp.PoolProxy, dict: mp.DictProxy, items: number[]): Promise<void>;
  abortInChild(pool: mp.PoolProxy, dict: mp.DictProxy): Promise<void>;
};

function gone(pids: number[]): boolean {
  return pids.every((pid) => procStat(pid) === null);
}

describe.each(mp.getAllStartMethods())('a Pool of a manager of the %s start method', (method) => {
  const ctx = mp.getContext(method);
  let manager: mp.SyncManager;

  beforeAll(async () => {
    manager = await ctx.Manager();
  });

  afterAll(async () => {
    await manager.shutdown();
  });

  test("mp.Pool's methods through the proxy: apply, map, starmap, their Async forms, imap, imapUnordered, Sync twins", async () => {
    await using pool = await manager.Pool(2);
    expect(await pool.apply(targets.add, [2, 3])).toBe(5);
    expect(pool.applySync(targets.square, [4])).toBe(16);
    expect(await pool.map(targets.square, [1, 2, 3, 4], 2)).toEqual([1, 4, 9, 16]);
    expect(pool.mapSync(targets.square, new Set([5, 6]))).toEqual([25, 36]);
    expect(await pool.starmap(targets.add, [[1, 2], [3, 4]])).toEqual([3, 7]);
    expect(pool.starmapSync(targets.add, [[5, 6]], { chunksize: 1 })).toEqual([11]);

    const result = await pool.applyAsync(targets.square, [9]);
    expect(await result.get()).toBe(81);
    expect([await result.ready(), result.successfulSync()]).toEqual([true, true]);
    const mapped = pool.mapAsyncSync(targets.square, [1, 2, 3]);
    await mapped.wait();
    expect(mapped.getSync()).toEqual([1, 4, 9]);
    expect(await (await pool.starmapAsync(targets.add, [[1, 1]])).get()).toEqual([2]);
    const called = await new Promise((resolve) => void pool.applyAsync(targets.square, [3], { callback: resolve }));
    expect(called).toBe(9);

    const ordered: number[] = [];
    for await (const square of pool.imap(targets.square, [1, 2, 3], 1)) ordered.push(square);
    expect(ordered).toEqual([1, 4, 9]);
    const unordered: number[] = [];
    for await (const square of pool.imapUnordered(targets.square, [1, 2, 3])) unordered.push(square);
    expect(unordered.sort()).toEqual([1, 4, 9]);
    expect([...pool.imapSync(targets.square, [7, 8])]).toEqual([49, 64]);
  });

  test("a task's error rejects with its class name and message; a function that cannot cross is a TypeError at once", async () => {
    await using pool = await manager.Pool(1);
    await expect(pool.apply(targets.failWith, [7])).rejects.toMatchObject({ name: 'RangeError', message: 'no good: 7' });
    const failed = await pool.applyAsync(targets.failWith, [8], { errorCallback: () => undefined });
    await failed.wait();
    expect([await failed.ready(), await failed.successful()]).toEqual([true, false]);
    await expect(failed.get()).rejects.toBeInstanceOf(RangeError);
    await expect(pool.apply((x: number) => x, [1])).rejects.toThrow(/cannot cross to the manager's server.*module reference/);
    expect(() => pool.imap((x: number) => x, [1])).toThrow(TypeError);
    // A signal is for the Promise forms only; progress is never reported (one answer per call).
    const signal = new AbortController().signal;
    const withSignal = { signal } as unknown as mp.ManagedMapOptions; // as a JS caller could
    expect(() => pool.mapSync(targets.square, [1], withSignal)).toThrow(/options.signal: a Sync call/);
    expect(() => pool.applySync(targets.square, [1], withSignal)).toThrow(TypeError);
    await expect(pool.mapAsync(targets.square, [1], withSignal)).rejects.toThrow(/options.signal: the AsyncResult/);
    await expect(pool.applyAsync(targets.square, [1], withSignal)).rejects.toThrow(TypeError);
    const withProgress = { onProgress: () => undefined } as unknown as mp.ManagedMapOptions;
    await expect(pool.map(targets.square, [1], withProgress)).rejects.toThrow(/options.onProgress: .*answers each call once/);
    await expect(pool.apply(targets.square, [1], { signal: 'no' as unknown as AbortSignal })).rejects.toThrow(/must be an AbortSignal/);
    await expect(manager.Pool(0)).rejects.toBeInstanceOf(RangeError);
    // The pool still serves.
    expect(await pool.apply(targets.square, [3])).toBe(9);
  });

  test('a child process given the Pool proxy runs tasks through it', async () => {
    await using pool = await manager.Pool(2);
    const results = await manager.dict();
    const child = new ctx.Process({ target: targets.mapInChild, args: [pool, results, [2, 3, 4]] });
    child.start();
    await child.join();
    expect(child.exitCode).toBe(0);
    expect(await results.toObject()).toEqual({ squares: [4, 9, 16], sum: 5 });
  });

  test("a signal aborts a running task from the owner: AbortError at once, the task's worker is killed and replaced, the pool serves on", async () => {
    await using pool = await manager.Pool(1);
    const seen = await manager.dict<string, number>();
    const controller = new AbortController();
    const running = pool.apply(targets.hang, [seen, 'w'], { signal: controller.signal });
    while (!(await seen.has('w'))) await new Promise((resolve) => setImmediate(resolve));
    const pid = (await seen.get('w')) as number;
    const reason = new Error('enough');
    controller.abort(reason);
    await expect(running).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: reason });
    expect(await waitFor(() => procStat(pid) === null)).toBe(true);
    expect(await pool.apply(targets.workerPid)).not.toBe(pid);
    expect((mp.managers.PoolProxy as unknown as { _exposed: string[] })._exposed).toContain('abort');
    expect(await pool.starmap(targets.add, [[1, 2]], { signal: controller.signal, chunksize: 1 }).catch((error: Error) => error.name)).toBe('AbortError');
    const unaborted: mp.AbortableMapOptions = { signal: new AbortController().signal, chunksize: 2 };
    expect(await pool.map(targets.square, [1, 2, 3], unaborted)).toEqual([1, 4, 9]);
  });

  test('a signal aborts a running task from a child process given the Pool proxy; the pool serves on', async () => {
    await using pool = await manager.Pool(1);
    const seen = await manager.dict<string, unknown>();
    const child = new ctx.Process({ target: targets.abortInChild, args: [pool, seen] });
    child.start();
    await child.join();
    expect(child.exitCode).toBe(0);
    expect(await seen.get('outcome')).toEqual(['AbortError', 'ABORT_ERR', 'enough']);
    const pid = (await seen.get('child')) as number;
    expect(await waitFor(() => procStat(pid) === null)).toBe(true);
    expect(await pool.apply(targets.square, [6])).toBe(36);
  });

  test('a signal aborted already rejects at once with AbortError and runs nothing; the pool serves on', async () => {
    await using pool = await manager.Pool(1);
    const seen = await manager.dict<string, number>();
    const controller = new AbortController();
    controller.abort();
    await expect(pool.apply(targets.hang, [seen, 'never'], { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(pool.map(targets.square, [1], { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(await pool.apply(targets.square, [7])).toBe(49); // served after anything the aborted calls could have started
    expect(await seen.has('never')).toBe(false);
  });

  test('terminate() through the proxy ends a running task and every worker; join() resolves', async () => {
    const pool = await manager.Pool(2);
    const seen = await manager.dict<string, number>();
    const running = await pool.applyAsync(targets.hang, [seen, 'w']);
    while (!(await seen.has('w'))) await new Promise((resolve) => setImmediate(resolve));
    const pids = await workerPidsOf(pool, seen);
    await pool.terminate();
    await pool.join();
    await expect(running.get()).rejects.toThrow(/terminated/);
    expect(gone(pids)).toBe(true);
    await expect(pool.apply(targets.square, [1])).rejects.toThrow(/not running|terminated|closed/);
  });
});

/** The pid of each worker of a 2-worker pool, one of which runs a hanging task (its pid is in `seen`). */
async function workerPidsOf(pool: mp.PoolProxy, seen: mp.DictProxy<string, number>): Promise<number[]> {
  const busy = (await seen.get('w')) as number;
  const free = await pool.apply(targets.workerPid);
  return [busy, free];
}

describe("a manager's Pool and the manager's end", () => {
  test('shutdown() of the manager ends the pool and its workers: no process is left', async () => {
    const manager = await mp.Manager();
    const pool = await manager.Pool(2);
    const seen = await manager.dict<string, number>();
    await pool.applyAsync(targets.hang, [seen, 'w']);
    while (!(await seen.has('w'))) await new Promise((resolve) => setImmediate(resolve));
    const pids = [manager._process?.pid as number, ...(await workerPidsOf(pool, seen))];
    await manager.shutdown();
    expect(gone(pids)).toBe(true);
  });

  test('dropping the last proxy of a Pool terminates its workers', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    await using manager = await mp.Manager();
    const pid = await (async () => {
      const pool = await manager.Pool(1);
      return pool.apply(targets.workerPid);
    })();
    while (procStat(pid) !== null) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10)); // a turn with a timers phase: the registry's cleanup runs, its decref goes out
    }
    expect(await manager._numberOfObjects()).toBe(0);
  });
});

