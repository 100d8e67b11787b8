/**
 * Queue, SimpleQueue and JoinableQueue: one process, many producers and
 * consumers across processes, nothing lost when a producer is SIGKILLed after
 * a put, a consumer killed in get() takes nothing, every start method.
 */
import * as mp from '..';
import { jsonLines, runFixture } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/queue_targets.js') as {
  produce(queue: mp.Queue, producer: number, count: number): void;
  produceAsync(queue: mp.Queue, producer: number, count: number): Promise<void>;
  double(tasks: mp.Queue<number>, results: mp.SimpleQueue<number>): Promise<void>;
  putThenDie(queue: mp.Queue, value: unknown): void;
  getForever(queue: mp.Queue, ready: mp.Event): Promise<void>;
  consumeAndMarkDone(queue: mp.JoinableQueue, count: number): Promise<void>;
  putBig(queue: mp.Queue, size: number): void;
};

describe('Queue in one process', () => {
  test('put/get in order, sync and async twins, qsize, empty, full', async () => {
    const q = new mp.Queue<unknown>(3);
    expect(q.empty()).toBe(true);
    expect(q.qsize()).toBe(0);
    await q.put({ a: 1 });
    q.putSync(new Map([[1, 2]]));
    q.putNowait('three');
    expect(q.full()).toBe(true);
    expect(q.qsize()).toBe(3);
    expect(() => q.putNowait(4)).toThrow(mp.Full);
    await expect(q.put(4, { timeout: 5 })).rejects.toBeInstanceOf(mp.Full);
    expect(() => q.putSync(4, { block: false })).toThrow(mp.Full);
    expect(await q.get()).toEqual({ a: 1 });
    expect((q.getSync() as Map<number, number>).get(1)).toBe(2);
    expect(q.getNowait()).toBe('three');
    expect(q.empty()).toBe(true);
    expect(() => q.getNowait()).toThrow(mp.Empty);
    await expect(q.get({ timeout: 5 })).rejects.toBeInstanceOf(mp.Empty);
    expect(() => q.getSync({ timeout: 0 })).toThrow(mp.Empty);
    q.close();
  });

  test('text items arrive exactly: any Unicode, a lone surrogate, small and larger than a slot', async () => {
    const q = new mp.Queue<unknown>();
    const items = ['', 'é', '€ and 😀', '\ud800 alone', { k: 'ü'.repeat(3000) }, ['😀'.repeat(100_000)], 'x'.repeat(200_000)];
    for (const item of items) q.putSync(item);
    for (const item of items) expect(await q.get()).toEqual(item);
    expect(q.empty()).toBe(true);
    q.close();
  });

  test('a waiting get() is answered by a later put(); bad arguments and use after close throw', async () => {
    const q = new mp.Queue<string>();
    const waiting = q.get();
    await q.put('late');
    expect(await waiting).toBe('late');
    expect(() => new mp.Queue(1.5)).toThrow(TypeError);
    await expect(q.get({ timeout: -1 })).rejects.toThrow(RangeError);
    await expect(q.put('x', { block: 'no' as unknown as boolean })).rejects.toThrow(TypeError);
    await expect(q.put((() => 1) as unknown as string)).rejects.toThrow(/obj/);
    expect(q.qsize()).toBe(0); // nothing was put by the failed calls
    q.close();
    q.close();
    expect(q.closed).toBe(true);
    expect(() => q.putSync('x')).toThrow(/closed/);
    await expect(q.get()).rejects.toThrow(/closed/);
    expect(() => q.qsize()).toThrow(/closed/);
    await q.joinThread();
    q.cancelJoinThread();
  });

  test('SimpleQueue and JoinableQueue', async () => {
    const simple = new mp.SimpleQueue<number>();
    expect(simple.empty()).toBe(true);
    simple.put(1);
    simple.put(2);
    expect(simple.empty()).toBe(false);
    expect(await simple.get()).toBe(1);
    expect(simple.getSync()).toBe(2);
    simple.close();
    expect(() => simple.put(3)).toThrow(/closed/);

    const joinable = new mp.JoinableQueue<number>();
    await joinable.put(1);
    joinable.putSync(2);
    let joined = false;
    const join = joinable.join().then(() => (joined = true));
    expect(await joinable.get()).toBe(1);
    joinable.taskDone();
    expect(joined).toBe(false);
    expect(joinable.getSync()).toBe(2);
    joinable.taskDone();
    await join;
    joinable.joinSync();
    expect(() => joinable.taskDone()).toThrow(/taskDone/);
    joinable.close();
  });

  test('1,000 queues and pipes created and closed leave no descriptor, /dev/shm segment or thread behind', () => {
    const run = runFixture('queue_leak.js');
    expect(run.stderr).toBe('');
    const [{ before, after }] = jsonLines<{ before: object; after: object }>(run.stdout);
    expect(after).toEqual(before);
  });
});

describe.each(mp.getAllStartMethods())('Queue with the %s start method', (method) => {
  const ctx = mp.getContext(method);

  test('4 producers x 2,500 items reach one consumer exactly once, in order per producer', async () => {
    const q = new ctx.Queue<{ producer: number; i: number }>();
    const count = 2500;
    const producers = [0, 1, 2, 3].map(
      (producer) => new ctx.Process({ target: producer % 2 ? targets.produceAsync : targets.produce, args: [q, producer, count] }),
    );
    for (const p of producers) p.start();
    const next = [0, 0, 0, 0];
    for (let n = 0; n < 4 * count; n++) {
      const { producer, i } = await q.get();
      expect(i).toBe(next[producer]);
      next[producer]++;
    }
    expect(next).toEqual([count, count, count, count]);
    for (const p of producers) await p.join();
    expect(producers.map((p) => p.exitCode)).toEqual([0, 0, 0, 0]);
    expect(q.empty()).toBe(true);
    q.close();
  });

  test('consumers in children take tasks; results come back through a SimpleQueue', async () => {
    const tasks = new ctx.Queue<number>();
    const results = new ctx.SimpleQueue<number>();
    const workers = [1, 2, 3].map(() => new ctx.Process({ target: targets.double, args: [tasks, results] }));
    for (const w of workers) w.start();
    for (const n of [10, 20, 30]) await tasks.put(n);
    const got = [await results.get(), await results.get(), await results.get()].sort((a, b) => a - b);
    expect(got).toEqual([20, 40, 60]);
    for (const w of workers) await w.join();
    tasks.close();
    results.close();
  });

  test('an item put by a producer SIGKILLed right after put returned is delivered', async () => {
    const q = new ctx.Queue<string>();
    const p = new ctx.Process({ target: targets.putThenDie, args: [q, 'survivor'] });
    p.start();
    await p.join();
    expect(p.exitCode).toBe(-9);
    expect(await q.get()).toBe('survivor');
    q.close();
  });

  test('a consumer killed while blocked in get() takes nothing; the queue stays usable', async () => {
    const q = new ctx.Queue<string>();
    const ready = new mp.Event();
    const p = new ctx.Process({ target: targets.getForever, args: [q, ready] });
    p.start();
    expect(await ready.wait()).toBe(true);
    p.kill();
    await p.join();
    await q.put('kept');
    expect(q.getSync()).toBe('kept');
    q.close();
  });

  test('JoinableQueue: join() resolves once a child marked every item done', async () => {
    const q = new ctx.JoinableQueue<number>();
    const p = new ctx.Process({ target: targets.consumeAndMarkDone, args: [q, 20] });
    p.start();
    for (let i = 0; i < 20; i++) await q.put(i);
    await q.join();
    await p.join();
    expect(p.exitCode).toBe(0);
    q.close();
  });
});

test('a 64 MiB Buffer through a Queue arrives intact', async () => {
  const q = new mp.Queue<Buffer>();
  const size = 64 * 1024 * 1024;
  const p = new mp.Process({ target: targets.putBig, args: [q, size] });
  p.start();
  const got = Buffer.from(await q.get());
  expect(got.length).toBe(size);
  let wrong = -1;
  for (let k = 0; k < size && wrong < 0; k++) if (got[k] !== k % 251) wrong = k;
  expect(wrong).toBe(-1);
  await p.join();
  q.close();
});
