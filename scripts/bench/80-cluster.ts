/**
 * The cluster Pool on a local cluster (a redis-server of our own, two worker
 * nodes as processes) against bare BullMQ in the same run: `map` of 200,000
 * tiny tasks (chunked jobs) against one BullMQ job per task, and the `apply`
 * round trip against a bare `add` + `waitUntilFinished` served by a bare
 * BullMQ worker process. Python's multiprocessing.Pool on this one machine is
 * printed for scale (it crosses no network).
 */
import { Queue, QueueEvents } from 'bullmq';

import { Pool } from '../../dist/cluster';
import { hasRedisServer, NodeProcess, RedisServer, square, startBareWorker } from '../cluster_local';
import { median, printTable, PYTHON_TIMING, Row, runPython, timeRunsAsync } from './lib';

const TASKS = 200_000;
const MAP_RUNS = 5;
const BARE_JOBS = 5_000;
const BARE_RUNS = 3;
const APPLY_RUNS = 300;

/** Median tasks/s of `pool.map(square, range(TASKS))`. */
async function mapRate(pool: Pool): Promise<number> {
  const input = Array.from({ length: TASKS }, (_, i) => i);
  const samples = await timeRunsAsync(async () => void (await pool.map(square, input)), MAP_RUNS, 1);
  return TASKS / median(samples); // tasks/ms: k tasks/s
}

/** BullMQ's own rate, one job a task: BARE_JOBS added in bulk, until the last one completed (thousands/s). */
async function bareRate(queue: Queue, events: QueueEvents): Promise<number> {
  const samples = await timeRunsAsync(
    async () => {
      let left = BARE_JOBS;
      const done = new Promise<void>((resolve) => {
        const onCompleted = (): void => {
          if (--left === 0) {
            events.off('completed', onCompleted);
            resolve();
          }
        };
        events.on('completed', onCompleted);
      });
      await queue.addBulk(Array.from({ length: BARE_JOBS }, (_, i) => ({ name: 'sum', data: { a: i, b: 1 }, opts: { removeOnComplete: true } })));
      await done;
    },
    BARE_RUNS,
    1,
  );
  return BARE_JOBS / median(samples);
}

/**
 * Runs as many one-task jobs through our nodes as bareRate ran through the bare workers (its warm-up run and
 * timed runs), so that apply() is timed against workers as warm: V8 optimises BullMQ's and ioredis's paths
 * only after thousands of jobs (the bare round trip halves).
 */
async function warmUp(pool: Pool): Promise<void> {
  for (let run = 0; run < BARE_RUNS + 1; run++) await Promise.all(Array.from({ length: BARE_JOBS }, (_, i) => pool.apply(square, [i])));
}

/**
 * Median ms of `pool.apply` and of a bare BullMQ `add` + `waitUntilFinished`,
 * in alternating blocks (the machine's load drifts; both see the same).
 */
async function applyTimes(pool: Pool, queue: Queue, events: QueueEvents): Promise<[number, number]> {
  const ours: number[] = [];
  const bare: number[] = [];
  const time = async (samples: number[], fn: () => Promise<unknown>): Promise<void> => {
    const start = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  };
  for (let block = 0; block < APPLY_RUNS / 10 + 2; block++) {
    for (let i = 0; i < 10; i++) await time(ours, () => pool.apply(square, [3]));
    for (let i = 0; i < 10; i++) await time(bare, async () => (await queue.add('sum', { a: 1, b: 2 })).waitUntilFinished(events));
  }
  // The first two blocks warm up.
  return [median(ours.slice(20)), median(bare.slice(20))];
}

function pythonMap(): number | null {
  return runPython<number>(`${PYTHON_TIMING}
import multiprocessing
def square(x): return x * x
if __name__ == '__main__':
    with multiprocessing.Pool(4) as pool:
        data = range(${TASKS})
        print(json.dumps(${TASKS} / median(samples(lambda: pool.map(square, data), ${MAP_RUNS}, 1))))`);
}

function pythonApply(): number | null {
  return runPython<number>(`${PYTHON_TIMING}
import multiprocessing
def square(x): return x * x
if __name__ == '__main__':
    with multiprocessing.Pool(4) as pool:
        print(json.dumps(median(samples(lambda: pool.apply(square, (3,)), ${APPLY_RUNS}, 20))))`);
}

async function main(): Promise<void> {
  if (!hasRedisServer()) {
    console.log('\n## cluster Pool\n\nskipped: no redis-server on the PATH (apt-get install redis-server)');
    return;
  }
  const redis = await RedisServer.start();
  const nodes: NodeProcess[] = [];
  try {
    // Two of our nodes and two bare BullMQ workers, each on a queue of its own; idle ones wait in Redis.
    nodes.push(...(await Promise.all(['A', 'B'].map((name) => NodeProcess.start(redis.url, 'bench', { name, processes: 2 })))));
    nodes.push(await startBareWorker(redis.url, 'bare'), await startBareWorker(redis.url, 'bare'));
    await using pool = new Pool({ connection: redis.url, queue: 'bench' });
    const connection = { url: redis.url, maxRetriesPerRequest: null };
    // Room in the event stream for every event of a bare run (4 a job): a reader that lags behind on a busy
    // machine would otherwise miss completions trimmed away (BullMQ keeps ~10,000) and wait forever.
    const queue = new Queue('bare', { connection, streams: { events: { maxLen: 10 * BARE_JOBS } } });
    const events = new QueueEvents('bare', { connection });
    await events.waitUntilReady();
    const ours = await mapRate(pool);
    const bare = await bareRate(queue, events);
    await warmUp(pool);
    const [oursApply, bareRound] = await applyTimes(pool, queue, events);
    await events.close();
    await queue.obliterate({ force: true });
    await queue.close();

    const rows: Row[] = [
      { name: `map of ${TASKS / 1000}k tiny tasks over 2 nodes`, value: ours, unit: 'k tasks/s', higherIsBetter: true, target: '>= 200 k/s' },
      { name: 'bare BullMQ, one job a task, 2 workers', value: bare, unit: 'k tasks/s', higherIsBetter: true, baseline: ours },
      { name: 'Python multiprocessing.Pool(4).map, one machine', value: pythonMap(), unit: 'k tasks/s', higherIsBetter: true, baseline: ours },
      { name: 'apply() round trip, 2 nodes', value: oursApply, unit: 'ms', target: '<= 2 ms, <= bare BullMQ' },
      { name: 'bare BullMQ add + waitUntilFinished, 2 workers', value: bareRound, unit: 'ms', baseline: oursApply },
      { name: 'Python multiprocessing.Pool(4).apply, one machine', value: pythonApply(), unit: 'ms', baseline: oursApply },
    ];
    printTable('cluster Pool (BullMQ on a local Redis, 2 worker nodes)', rows);
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
}

void main();
