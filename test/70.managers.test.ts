/**
 * Managers across real processes: a server process started with each start
 * method, proxies used here and passed to children (as Process arguments and
 * inside other proxies), errors of the server, its end (shutdown, its owner
 * killed), remote use on 127.0.0.1 with an authkey, load and reference counts.
 */
import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as v8 from 'v8';
import * as vm from 'vm';

import * as mp from '..';
import { exited, FIXTURES, procStat, spawnTracked } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/managers_targets') as Record<string, (...args: never[]) => unknown>;

const methods = mp.getAllStartMethods();

/**
 * Managers stand on mp.connection's Listener and Client (another part of the
 * library): in a build without them, Manager() says so and the rest waits.
 */
const connectionReady = ((): boolean => {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    (require('../dist/managers/proxy') as { connectionLayer(): unknown }).connectionLayer();
    return true;
  } catch {
    return false;
  }
})();
const describeWithConnection = connectionReady ? describe : describe.skip;

(connectionReady ? test.skip : test)('without the connection layer, Manager() rejects with an Error naming what is missing', async () => {
  await expect(mp.Manager()).rejects.toMatchObject({ code: 'ERR_MANAGER_NO_CONNECTION', message: expect.stringMatching(/Listener/) });
});

type Call = [(...args: never[]) => unknown, unknown[]];

async function runAll(ctx: mp.BaseContext, calls: Call[]): Promise<(number | null)[]> {
  const children = calls.map(([target, args]) => new ctx.Process({ target: target as (...args: unknown[]) => unknown, args }));
  for (const child of children) child.start();
  for (const child of children) await child.join();
  return children.map((child) => child.exitCode);
}

describeWithConnection.each(methods)('a Manager of the %s start method', (method) => {
  const ctx = mp.getContext(method);
  let manager: mp.SyncManager;

  beforeAll(async () => {
    manager = await ctx.Manager();
  });

  afterAll(async () => {
    await manager.shutdown();
  });

  test('children set entries of a dict passed as an argument; the parent sees them all', async () => {
    const d = await manager.dict<string, number>();
    const codes = await runAll(ctx, [1, 2, 3].map((n): Call => [targets.setEntry, [d, `w${n}`, n * n]]));
    expect(codes).toEqual([0, 0, 0]);
    expect(await d.toObject()).toEqual({ w1: 1, w2: 4, w3: 9 });
  });

  test('a dict of lists: the list a child gets from the dict is the same list everywhere', async () => {
    const d = await manager.dict();
    await d.set('a', await manager.list([0]));
    await d.set('b', await manager.list());
    const codes = await runAll(ctx, [
      [targets.appendToNested, [d, 'a', 1]],
      [targets.appendToNested, [d, 'b', 'x']],
    ]);
    expect(codes).toEqual([0, 0]);
    const a = (await d.get('a')) as mp.ListProxy<number>;
    expect(a).toBeInstanceOf(mp.managers.ListProxy);
    expect(await a.toArray()).toEqual([0, 1]);
    expect(((await d.get('b')) as mp.ListProxy).toArraySync()).toEqual(['x']);
  });

  test('a Namespace read and written with plain properties under a manager Lock: 3 processes x 50 increments', async () => {
    const ns = await manager.Namespace({ count: 0 });
    const lock = await manager.Lock();
    const codes = await runAll(ctx, [1, 2, 3].map((): Call => [targets.countInNamespace, [ns, lock, 50]]));
    expect(codes).toEqual([0, 0, 0]);
    expect(ns.count).toBe(150);
    ns.label = 'done';
    expect(await ns.getAttr('label')).toBe('done');
    expect('label' in ns).toBe(true);
    expect(delete ns.label).toBe(true);
    expect(ns.label).toBeUndefined();
  });

  test("a server's errors reject in the child with Python's class name and message; the server keeps serving", async () => {
    const d = await manager.dict();
    const l = await manager.list();
    const out = await manager.dict();
    expect(await runAll(ctx, [[targets.errorsInChild, [d, l, out]]])).toEqual([0]);
    expect(await out.get('errors')).toEqual([
      ['KeyError', '"missing"'],
      ['IndexError', 'list index out of range'],
    ]);
    await d.set('after', 1);
    expect(await d.get('after')).toBe(1);
  });
});

describeWithConnection('SyncManager factories, here', () => {
  let manager: mp.SyncManager;

  beforeAll(() => {
    manager = mp.ManagerSync();
  });

  afterAll(() => {
    manager.shutdownSync();
  });

  test('dict: every method, async and Sync, and async iteration', async () => {
    const d = await manager.dict<string, number>({ a: 1 });
    await d.set('b', 2);
    d.updateSync([['c', 3]]);
    expect(await d.get('a')).toBe(1);
    expect(d.getSync('zz', -1)).toBe(-1);
    expect(await d.has('b')).toBe(true);
    expect(d.sizeSync()).toBe(3);
    expect(await d.setDefault('d', 4)).toBe(4);
    expect(d.popSync('d')).toBe(4);
    await expect(d.pop('d')).rejects.toMatchObject({ name: 'KeyError' });
    expect(await d.delete('c')).toBe(true);
    expect(await d.keys()).toEqual(['a', 'b']);
    expect(d.valuesSync()).toEqual([1, 2]);
    const seen: [string, number][] = [];
    for await (const entry of d) seen.push(entry);
    expect(seen).toEqual(await d.entries());
    await d.clear();
    expect(await d.size()).toBe(0);
    expect(() => d.setSync({} as unknown as string, 1)).toThrow(TypeError);
  });

  test('list: every method, async and Sync', async () => {
    const l = manager.listSync<number>([3, 1, 2]);
    await l.append(5);
    l.extendSync([4]);
    await l.insert(0, 0);
    expect(await l.pop()).toBe(4);
    await l.remove(0);
    expect(l.indexSync(2)).toBe(2);
    await l.sort({ reverse: true });
    expect(await l.toArray()).toEqual([5, 3, 2, 1]);
    expect(await l.slice(1, 3)).toEqual([3, 2]);
    l.setSync(-1, 10);
    expect(await l.get(-1)).toBe(10);
    expect(await l.length()).toBe(4);
    await expect(l.get(9)).rejects.toMatchObject({ name: 'IndexError', message: 'list index out of range' });
    const items: number[] = [];
    for await (const item of l) items.push(item);
    expect(items).toEqual([5, 3, 2, 10]);
  });

  test('Value and Array, typed as mp.RawValue/RawArray', async () => {
    const v = await manager.Value('i', 7);
    expect(v.value).toBe(7);
    v.value = 8;
    expect(await v.get()).toBe(8);
    await expect(v.set('x' as unknown as number)).rejects.toThrow(TypeError);
    const a = manager.ArraySync('d', [1, 2]);
    await a.set(0, 1.5);
    expect(a.toArraySync()).toEqual([1.5, 2]);
    expect(await a.length()).toBe(2);
  });

  test('Queue and JoinableQueue: Empty and Full as mp.Queue', async () => {
    const q = await manager.Queue<string>(1);
    await q.put('a');
    await expect(q.putNowait('b')).rejects.toBeInstanceOf(mp.Full);
    expect(q.fullSync()).toBe(true);
    expect(q.getSync()).toBe('a');
    await expect(q.get({ timeout: 10 })).rejects.toBeInstanceOf(mp.Empty);
    const j = await manager.JoinableQueue<number>();
    await j.put(1);
    expect(await j.get()).toBe(1);
    await j.taskDone();
    await j.join();
    await expect(j.taskDone()).rejects.toMatchObject({ name: 'ValueError' });
  });

  test('Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier', async () => {
    const lock = await manager.Lock();
    expect(await lock.acquire()).toBe(true);
    expect(lock.acquireSync({ timeout: 5 })).toBe(false);
    await lock.release();
    const rlock = await manager.RLock();
    expect(rlock.acquireSync()).toBe(true);
    expect(await rlock.acquire()).toBe(true); // the sync and async connections are one caller
    await rlock.release();
    rlock.releaseSync();
    const sem = await manager.BoundedSemaphore(1);
    expect(await sem.acquire()).toBe(true);
    expect(await sem.getValue()).toBe(0);
    await sem.release();
    await expect(sem.release()).rejects.toMatchObject({ name: 'ValueError' });
    const cond = await manager.Condition(await manager.Lock());
    await cond.acquire();
    expect(await cond.wait(5)).toBe(false);
    expect(await cond.waitFor(() => true)).toBe(true);
    await cond.release();
    const event = manager.EventSync();
    const waiting = event.wait();
    await event.set();
    expect(await waiting).toBe(true);
    const barrier = await manager.Barrier(2);
    const [i, j] = await Promise.all([barrier.wait(), barrier.wait()]);
    expect([i, j].sort()).toEqual([0, 1]);
    expect(barrier.parties).toBe(2);
    expect(barrier.broken).toBe(false);
    await expect(manager.Barrier(2, { action: () => {} } as object)).rejects.toThrow(TypeError); // a function cannot cross to the server
  });

  test('4 processes x 10,000 dict set+get (half async, half Sync): nothing lost', async () => {
    const d = await manager.dict();
    const ctx = mp.getContext('fork');
    const codes = await runAll(ctx, [0, 1, 2, 3].map((worker): Call => [targets.hammer, [d, worker, 10000, worker % 2 === 0]]));
    expect(codes).toEqual([0, 0, 0, 0]);
    expect(await d.size()).toBe(40004);
    for (const worker of [0, 1, 2, 3]) expect(await d.get(`wrong:${worker}`)).toEqual([]);
  }, 180000);

  test('1,000 proxies made and dropped: the server releases their objects', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    await using own = await mp.Manager(); // its server holds nothing of the other tests
    const before = await own._numberOfObjects();
    expect(before).toBe(0);
    for (let i = 0; i < 1000; i++) await own.dict({ i });
    expect(await own._numberOfObjects()).toBeGreaterThan(0);
    // Each dropped proxy's decref reaches the server after a collection: wait for it, not for a time.
    let held = await own._numberOfObjects();
    while (held > before) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10)); // a turn of the loop with its timers phase: the registry's cleanup task runs
      held = await own._numberOfObjects();
    }
    expect(held).toBe(before);
  }, 600000);
});

describeWithConnection("a manager's end", () => {
  test('after shutdown() its server process is gone, and proxies reject (Sync twins throw) with a clear Error', async () => {
    const manager = await mp.Manager();
    const d = await manager.dict();
    const pid = manager._process?.pid as number;
    const address = manager.address as string;
    await manager.shutdown();
    expect(procStat(pid)).toBeNull();
    expect(fs.existsSync(address)).toBe(false);
    await expect(d.get('x')).rejects.toMatchObject({ code: 'ERR_MANAGER_GONE', message: expect.stringMatching(/manager's server .* is gone/) });
    expect(() => d.getSync('x')).toThrow(expect.objectContaining({ code: 'ERR_MANAGER_GONE' }));
  });

  test('`await using` shuts it down', async () => {
    let pid = 0;
    {
      await using manager = await mp.Manager();
      pid = manager._process?.pid as number;
      expect(procStat(pid)).not.toBeNull();
    }
    expect(procStat(pid)).toBeNull();
  });

  test.each(methods)("its owner killed by SIGKILL (%s): the server and its Pool's workers end, leaving no process or socket file", async (method) => {
    const owner = spawnTracked(process.execPath, [path.join(FIXTURES, 'managers_owner.js'), method], { stdio: ['ignore', 'pipe', 'pipe'] });
    const { serverPid, address, poolPid } = (await firstLine(owner)) as { serverPid: number; address: string; poolPid: number };
    expect(procStat(serverPid)).not.toBeNull();
    expect(procStat(poolPid)).not.toBeNull();
    owner.kill('SIGKILL');
    await exited(owner);
    await until(() => procStat(serverPid) === null && procStat(poolPid) === null);
    expect(fs.existsSync(address)).toBe(false);
  });
});

/** The environment of a child process run with the addon, or without it (as on Windows). */
function envOf(addon: boolean): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (addon) delete env.NODE_MULTIPROCESSING_NO_NATIVE;
  else env.NODE_MULTIPROCESSING_NO_NATIVE = '1';
  return env;
}

/** A fixture run with or without the addon; killed after its test if still running (helpers' spawnTracked). */
function spawnFixture(fixture: string, args: string[], addon = true): ChildProcess {
  return spawnTracked(process.execPath, [path.join(FIXTURES, fixture), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: envOf(addon) });
}

describeWithConnection('remote use, as in Python\'s documentation (two processes on 127.0.0.1)', () => {
  // The wire is the same with and without the addon: either kind of server serves either kind of client.
  test.each([
    ['with', 'without'],
    ['without', 'with'],
  ])('a QueueManager serves a queue on 0.0.0.0 (%s the addon); another process (%s it) puts, this one gets; a wrong authkey is refused', async (serverAddon, clientAddon) => {
    const server = spawnFixture('managers_queue_server.js', [], serverAddon === 'with');
    const { address: listening } = (await firstLine(server)) as { address: [string, number] };
    expect(listening[0]).toBe('0.0.0.0');
    const address: [string, number] = ['127.0.0.1', listening[1]]; // every interface: this machine's loopback too
    const client = spawnFixture('managers_queue_client.js', [JSON.stringify(address)], clientAddon === 'with');
    expect(await firstLine(client)).toEqual({ put: 3 });
    await exited(client);

    class QueueManager extends mp.BaseManager {}
    QueueManager.register('getQueue');
    const m = new QueueManager({ address, authkey: 'abracadabra' });
    await m.connect();
    const queue = await (m as unknown as { getQueue(): Promise<mp.QueueProxy<string>> }).getQueue();
    expect([await queue.get(), await queue.get(), queue.getSync()]).toEqual(['hello', 'from', 'afar']);

    const intruder = new QueueManager({ address, authkey: 'wrong' });
    await expect(intruder.connect()).rejects.toMatchObject({ name: 'AuthenticationError' });
  });
});

describeWithConnection('values larger than a link reads at once (64 KiB)', () => {
  test('a 300,000-character string and a 1 MiB Buffer go and come back whole, Sync and Promise', async () => {
    const manager = await mp.Manager();
    try {
      const d = await manager.dict<string, unknown>();
      const text = 'x'.repeat(299_999) + 'y';
      const bytes = Buffer.alloc(1 << 20, 7);
      bytes[bytes.length - 1] = 9;
      d.setSync('text', text);
      await d.set('bytes', bytes);
      expect(await d.get('text')).toBe(text);
      expect(Buffer.from(d.getSync('bytes') as Uint8Array).equals(bytes)).toBe(true);
      // Many answers in one read, then a large one split over reads, in order.
      const small = Array.from({ length: 50 }, (_, i) => d.set(`k${i}`, i));
      const large = d.get('text');
      await Promise.all(small);
      expect(await large).toBe(text);
    } finally {
      await manager.shutdown();
    }
  });
});

describeWithConnection('without the addon (as on Windows)', () => {
  const seen = { a: 1, b: '2', size: 102, error: 'KeyError', errorSync: 'KeyError' };

  test('a Manager serves a dict: Promise and Sync calls, a burst of 100, the server\'s errors', async () => {
    expect(await firstLine(spawnFixture('managers_plain_client.js', [], false))).toEqual(seen);
  });

  test('a client without it uses a server with it', async () => {
    const manager = await mp.Manager();
    try {
      const client = spawnFixture('managers_plain_client.js', [JSON.stringify(manager.address), manager.authkey.toString('hex')], false);
      expect(await firstLine(client)).toEqual(seen);
    } finally {
      await manager.shutdown();
    }
  });
});

// --- helpers ----------------------------------------------------------------------

/** The first JSON line a child prints (its stderr collected for the failure message). */
function firstLine(child: ChildProcess): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const end = out.indexOf('\n');
      if (end >= 0) resolve(JSON.parse(out.slice(0, end)));
    });
    child.on('exit', (code) => reject(new Error(`the child exited (${code}) before printing a line: ${err}`)));
  });
}

/** Waits until `condition()` holds, checking after each turn of the event loop (bounded by the test's timeout). */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}
