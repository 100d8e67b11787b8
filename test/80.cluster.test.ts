/**
 * The cluster Pool against a real redis-server and worker nodes in processes
 * of their own (standing in for machines). Every wait is for an event: a line
 * a node prints, a list a task pushes onto, a call settling, Redis state.
 */
import * as mp from '../dist';
import { Pool, ClusterConnectionError, TimeoutError, WorkerLostError } from '../dist/cluster';
import { client, lineOf, NodeProcess, queueName, RedisServer, startNode, until } from './80.helpers';

import * as tasks from './fixtures/cluster_tasks';

jest.setTimeout(120_000);

let redis: RedisServer;
const nodes: NodeProcess[] = [];
const pools: Pool[] = [];

beforeAll(async () => {
  redis = await RedisServer.start();
});

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool[Symbol.asyncDispose]();
  await Promise.all(nodes.splice(0).map((node) => node.stop('SIGKILL')));
});

afterAll(async () => {
  await redis.stop();
});

async function startNodes(queue: string, names: string[], args: string[] = []): Promise<NodeProcess[]> {
  const started = await Promise.all(names.map((name) => startNode(redis, queue, name, args)));
  nodes.push(...started);
  return started;
}

function pool(queue: string, options: Partial<ConstructorParameters<typeof Pool>[0]> = {}): Pool {
  const created = new Pool({ connection: redis.url, queue, ...options });
  pools.push(created);
  return created;
}

/** What each step of an imap gives: the value, or the error's name and message. */
async function outcomes(iterator: AsyncIterator<number>): Promise<Array<number | string>> {
  const seen: Array<number | string> = [];
  for (;;) {
    try {
      const step = await iterator.next();
      if (step.done === true) return seen;
      seen.push(step.value);
    } catch (error) {
      seen.push(`${(error as Error).name}: ${(error as Error).message}`);
    }
  }
}

/** Waits until `count` tasks pushed onto `key` (they are running) and returns what they pushed. */
async function started(key: string, count: number): Promise<string[]> {
  const redisClient = client(redis);
  try {
    const seen: string[] = [];
    while (seen.length < count) seen.push((await redisClient.blpop(key, 0))![1]);
    return seen;
  } finally {
    redisClient.disconnect();
  }
}

async function jobCounts(queue: string): Promise<number> {
  const redisClient = client(redis);
  try {
    const keys = ['wait', 'active', 'prioritized', 'delayed'].map((state) => `bull:${queue}:${state}`);
    const [wait, active, prioritized, delayed] = await Promise.all([
      redisClient.llen(keys[0]),
      redisClient.llen(keys[1]),
      redisClient.zcard(keys[2]),
      redisClient.zcard(keys[3]),
    ]);
    return wait + active + prioritized + delayed;
  } finally {
    redisClient.disconnect();
  }
}

describe('cluster Pool', () => {
  test('map: 10,000 tasks over 2 nodes, results in input order; starmap, apply, imap, imapUnordered', async () => {
    const queue = queueName();
    await startNodes(queue, ['A', 'B']);
    const p = pool(queue);
    const input = Array.from({ length: 10_000 }, (_, i) => i);
    const results = await p.map(tasks.withPid, input);
    expect(results.map(([x]) => x)).toEqual(input);
    expect(await p.starmap(tasks.add, [[1, 2], [3, 4]])).toEqual([3, 7]);
    expect(await p.apply(tasks.add, [20, 22])).toBe(42);
    const ordered: number[] = [];
    for await (const value of p.imap(tasks.square, [1, 2, 3, 4], 2)) ordered.push(value);
    expect(ordered).toEqual([1, 4, 9, 16]);
    const unordered: number[] = [];
    for await (const value of p.imapUnordered(tasks.square, (async function* () { yield* [5, 6, 7]; })())) unordered.push(value);
    expect(unordered.sort((a, b) => a - b)).toEqual([25, 36, 49]);
    const async = p.mapAsync(tasks.square, [3]);
    expect(await async.get()).toEqual([9]);
    expect(async.ready() && async.successful()).toBe(true);
  });

  test('a node\'s pool process publishes the reply of the chunk it ran itself, on a connection of its own', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']);
    const p = pool(queue);
    const admin = client(redis);
    try {
      // A process connects after its first chunk (the node publishes until then): wait until the process that
      // ran an apply() has a connection whose last command was a PUBLISH (it sends nothing else).
      for (let direct = false; !direct; ) {
        const [, pid] = await p.apply(tasks.withPid, [1]);
        const clients = ((await admin.client('LIST')) as string).split('\n');
        direct = clients.some((line) => line.includes(` name=node-multiprocessing:reply:${pid} `) && line.includes(' cmd=publish '));
      }
    } finally {
      admin.disconnect();
    }
  });

  test('the first task error rejects with its class name, message, properties and remote stack; the rest of the call is removed', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']);
    const p = pool(queue);
    const input = Array.from({ length: 100 }, (_, i) => [i, 7] as [number, number]);
    const error = (await p.starmap(tasks.failAt, input, 1).catch((e: unknown) => e)) as Error & { code?: string };
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('TaskFailure');
    expect(error.message).toBe('task 7 failed');
    expect(error.code).toBe('E_TASK');
    expect(error.stack).toContain('cluster_tasks.js');
    await until(async () => (await jobCounts(queue)) === 0);
  });

  test('imap yields a task error at its place and goes on, as mp.Pool\'s imap (a failed chunk\'s other items skipped)', async () => {
    const queue = queueName();
    await startNodes(queue, ['A', 'B']);
    const p = pool(queue);
    const input = Array.from({ length: 9 }, (_, i) => i);
    await using local = new (mp.getContext('spawn').Pool)(2);
    for (const chunksize of [1, 2]) {
      const expected = await outcomes(local.imap(tasks.failOdd, input, chunksize));
      expect(await outcomes(p.imap(tasks.failOdd, input, chunksize))).toEqual(expected);
      const unordered = await outcomes(p.imapUnordered(tasks.failOdd, input, chunksize));
      expect(unordered.map(String).sort()).toEqual(expected.map(String).sort());
    }
    expect(await outcomes(p.imap(tasks.failOdd, input))).toEqual([0, 'TaskFailure: task 1 is odd', 2, 'TaskFailure: task 3 is odd', 4, 'TaskFailure: task 5 is odd', 6, 'TaskFailure: task 7 is odd', 8]);
  });

  test('imap reads an endless input only `window` chunks ahead of its consumer; leaving the loop closes the input', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']);
    const p = pool(queue, { window: 4 });
    let read = 0;
    let closed = false;
    async function* naturals(): AsyncGenerator<number> {
      try {
        for (;;) yield read++;
      } finally {
        closed = true;
      }
    }
    const seen: number[] = [];
    for await (const square of p.imap(tasks.square, naturals(), 2)) {
      seen.push(square);
      expect(read).toBeLessThanOrEqual(seen.length + 4 * 2 + 2); // a chunk may be half read
      if (seen.length === 20) break;
    }
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => i * i));
    await until(async () => closed);
  });

  test('a worker process killed mid-task fails its chunk with WorkerLostError; the node replaces it and goes on', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']);
    const p = pool(queue);
    const error = (await p.apply(tasks.killSelfAt, [4, 4]).catch((e: unknown) => e)) as WorkerLostError;
    expect(error).toBeInstanceOf(WorkerLostError);
    expect(error.signal).toBe('SIGKILL');
    expect(typeof error.pid).toBe('number');
    expect(error.message).toMatch(/on worker node A/);
    expect(await p.map(tasks.square, [1, 2, 3], 1)).toEqual([1, 4, 9]);
  });

  test('maxtasksperchild applies on every node: each chunk of { maxtasksperchild: 1 } runs in a fresh process', async () => {
    const queue = queueName();
    await startNodes(queue, ['A', 'B']);
    const p = pool(queue, { maxtasksperchild: 1 });
    const results = await p.map(tasks.withPid, Array.from({ length: 8 }, (_, i) => i), 1);
    expect(results.map(([x]) => x)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(results.map(([, pid]) => pid)).size).toBe(8);
  });

  test('a closure gets a clear error at submit time', () => {
    const p = pool(queueName());
    const offset = 1;
    expect(() => p.map((x: number) => x + offset, [1])).toThrow(/cannot run on a worker node.*exported by a module.*--require/s);
  });

  test('progress: onProgress counts the tasks done up to the total', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']);
    const p = pool(queue);
    const seen: Array<[number, number]> = [];
    await p.map(tasks.square, Array.from({ length: 1000 }, (_, i) => i), { chunksize: 100, onProgress: (done, total) => seen.push([done, total]) });
    expect(seen).toHaveLength(10);
    expect(seen[seen.length - 1]).toEqual([1000, 1000]);
    expect(seen.map(([done]) => done)).toEqual([...seen.map(([done]) => done)].sort((a, b) => a - b));
  });

  test('abort: the call rejects with an AbortError (cause: the reason), running chunks stop, waiting ones are removed', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']); // 2 processes: 2 chunks run, the rest wait
    const p = pool(queue);
    const key = `${queue}:started`;
    const controller = new AbortController();
    const call = p.starmap(tasks.hang, Array.from({ length: 20 }, (_, i) => [i, key] as [number, string]), { chunksize: 1, signal: controller.signal });
    await started(key, 2);
    const reason = new Error('enough');
    controller.abort(reason);
    await expect(call).rejects.toMatchObject({ name: 'AbortError', code: 'ABORT_ERR', cause: reason });
    await until(async () => (await jobCounts(queue)) === 0);
    // The node is free again: its hanging chunks were stopped.
    expect(await p.map(tasks.square, [1, 2, 3], 1)).toEqual([1, 4, 9]);
  });

  test('timeout rejects with TimeoutError and stops the call', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']);
    const p = pool(queue);
    const key = `${queue}:started`;
    await expect(p.apply(tasks.hang, [1, key], { timeout: 200 })).rejects.toBeInstanceOf(TimeoutError);
    await until(async () => (await jobCounts(queue)) === 0);
  });

  test('terminate(): every call rejects, jobs are removed or stopped on every node', async () => {
    const queue = queueName();
    await startNodes(queue, ['A', 'B']);
    const p = pool(queue);
    const key = `${queue}:started`;
    const call = p.starmap(tasks.hang, Array.from({ length: 30 }, (_, i) => [i, key] as [number, string]), 1);
    await started(key, 4); // 2 chunks running on each node
    p.terminate();
    await expect(call).rejects.toThrow('terminated');
    await p.join();
    await until(async () => (await jobCounts(queue)) === 0);
    expect(() => p.map(tasks.square, [1])).toThrow(/terminated/);
  });

  test('SIGTERM drains a node: its running chunks finish and are reported, then it exits with 0', async () => {
    const queue = queueName();
    const [a] = await startNodes(queue, ['A']);
    const p = pool(queue);
    const key = `${queue}:started`;
    const call = p.starmap(tasks.gate, [[1, key], [2, key]], 1);
    await started(key, 2);
    const exited = a.stop('SIGTERM');
    await lineOf(a.child, a.child.stdout!, /SIGTERM, draining/);
    const redisClient = client(redis);
    try {
      await redisClient.rpush(`${key}:release`, '1', '2');
    } finally {
      redisClient.disconnect();
    }
    expect(await call).toEqual([1, 2]);
    expect(await exited).toBe(0);
    expect(a.output.stdout).toMatch(/drained/);
    expect(await jobCounts(queue)).toBe(0);
  });

  test('a node SIGKILLed mid-map: another node runs its chunks within the stall time', async () => {
    const queue = queueName();
    const fast = ['--lock-duration', '1000', '--stalled-interval', '1000'];
    const [a] = await startNodes(queue, ['A'], fast);
    // A 1 s lock is renewed every 500 ms: a node held up longer (a loaded
    // machine) has a chunk handed back with nothing wrong; enough retries
    // keep such a hand-back from failing the call.
    const p = pool(queue, { retries: 100 });
    const key = `${queue}:started`;
    const input = Array.from({ length: 40 }, (_, i) => [i, key, 'A'] as [number, string, string]);
    const call = p.starmap(tasks.hangOn, input, 1);
    await started(key, 2); // A holds 4 chunks (2 running, 2 waiting for a process) and hangs in them
    await startNodes(queue, ['B'], fast);
    await a.stop('SIGKILL');
    expect(await call).toEqual(input.map(([x]) => x * x));
  });

  /** One chunk hangs on node A, B starts, A is SIGKILLed: what the call ends with. */
  async function lostNodeOutcome(poolOptions: Partial<ConstructorParameters<typeof Pool>[0]>, nodeArgs: string[]): Promise<unknown> {
    const queue = queueName();
    const [a] = await startNodes(queue, ['A'], nodeArgs);
    const p = pool(queue, poolOptions);
    const key = `${queue}:started`;
    const outcome = p.starmap(tasks.hangOn, [[1, key, 'A']], 1).catch((e: unknown) => e);
    await started(key, 1);
    await startNodes(queue, ['B'], nodeArgs);
    await a.stop('SIGKILL');
    return outcome;
  }

  test('a node that lost a running chunk\'s lock stops it without an outcome: BullMQ hands the job on, the call gets its result', async () => {
    const queue = queueName();
    await startNodes(queue, ['A'], ['--lock-duration', '1000', '--stalled-interval', '1000']);
    const p = pool(queue, { retries: 100 }); // as above: a loaded node's late renewal must not fail the call
    const key = `${queue}:started`;
    const call = p.apply(tasks.gate, [7, key]);
    await started(key, 1);
    const admin = client(redis);
    try {
      const [jobId] = await admin.lrange(`bull:${queue}:active`, 0, -1);
      await admin.del(`bull:${queue}:${jobId}:lock`); // as when the node was cut off from Redis for longer than the lock
      await started(key, 1); // the node's renewal failed and it stopped the chunk; the stalled check handed it back
      await admin.rpush(`${key}:release`, '1');
    } finally {
      admin.disconnect();
    }
    expect(await call).toBe(7);
  });

  test('a node SIGKILLed with { retries: 0 }: its chunks fail with WorkerLostError', async () => {
    const error = await lostNodeOutcome({ retries: 0 }, ['--lock-duration', '1000', '--stalled-interval', '1000']);
    expect(error).toBeInstanceOf(WorkerLostError);
    expect((error as Error).message).toMatch(/retries: 0/);
  });

  test('a chunk handed back from lost nodes more often than their maxStalledCount: BullMQ fails it, the call rejects with WorkerLostError', async () => {
    const error = await lostNodeOutcome({ retries: 5 }, ['--lock-duration', '1000', '--stalled-interval', '1000', '--max-stalled-count', '0']);
    expect(error).toBeInstanceOf(WorkerLostError);
    expect((error as Error).message).toMatch(/maxStalledCount \(0\)/);
  });

  test('Redis restarted mid-map: the call rejects with ClusterConnectionError; the pool and nodes work again after', async () => {
    const queue = queueName();
    await startNodes(queue, ['A']);
    const p = pool(queue);
    const key = `${queue}:started`;
    const outcome = p.starmap(tasks.hang, [[1, key], [2, key]], 1).catch((e: unknown) => e);
    await started(key, 2);
    await redis.kill();
    const error = await outcome;
    expect(error).toBeInstanceOf(ClusterConnectionError);
    expect((error as Error).message).toMatch(/connection to Redis at 127\.0\.0\.1:\d+ was lost/);
    await redis.launch();
    await until(async () => p.map(tasks.square, [3], 1).then((values) => values[0] === 9, () => false));
  });

  test('initializer and initargs run on every node before the pool\'s tasks', async () => {
    const queue = queueName();
    await startNodes(queue, ['A', 'B']);
    const p = pool(queue, { initializer: tasks.initialize, initargs: ['ready'] });
    const values = await p.map(tasks.initializedValue, Array.from({ length: 64 }, (_, i) => i), 1);
    expect(new Set(values)).toEqual(new Set(['ready']));
  });

  test('{ cleanup: true }: no key of the queue is left after close() + join() and the nodes\' drain', async () => {
    const queue = queueName();
    const started = await startNodes(queue, ['A', 'B']);
    const p = new Pool({ connection: redis.url, queue, cleanup: true });
    expect(await p.map(tasks.square, Array.from({ length: 500 }, (_, i) => i))).toHaveLength(500);
    p.close();
    await p.join();
    for (const node of started) expect(await node.stop('SIGTERM')).toBe(0);
    const redisClient = client(redis);
    try {
      const keys = await redisClient.keys(`bull:${queue}:*`);
      // What is left expires on its own: BullMQ's stalled-check marker, set with a TTL.
      const lasting = [];
      for (const name of keys) if ((await redisClient.pttl(name)) === -1) lasting.push(name); // -1: no expiry; -2: gone meanwhile
      expect(lasting).toEqual([]);
    } finally {
      redisClient.disconnect();
    }
  });

  test('bad arguments: TypeError/RangeError naming them', () => {
    expect(() => new Pool({ connection: 'http://x', queue: 'q' })).toThrow(TypeError);
    expect(() => new Pool({ connection: redis.url, queue: '' })).toThrow(/queue/);
    expect(() => new Pool({ connection: redis.url, queue: 'q', retries: -1 })).toThrow(RangeError);
    const p = pool(queueName());
    expect(() => p.map(tasks.square, 5 as unknown as number[])).toThrow(/iterable/);
    expect(() => p.map(tasks.square, [1], 0)).toThrow(/chunksize/);
    expect(() => p.map(tasks.square, [1], { timeout: -1 })).toThrow(/timeout/);
  });
});
