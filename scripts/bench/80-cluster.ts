/**
 * The cluster Pool on a local cluster (a redis-server of our own, two worker
 * nodes as processes) against bare BullMQ in the same run: `map` of 200,000
 * tiny tasks (chunked jobs) against one BullMQ job per task, and the `apply`
 * round trip against a bare `add` + `waitUntilFinished` served by a bare
 * BullMQ worker process. Python's multiprocessing.Pool on this one machine is
 * printed for scale (it crosses no network).
 */
import { Queue, QueueEvents } from 'bullmq';
import * as os from 'os';

import { Pool } from '../../dist/cluster';
import { hasRedisServer, NodeProcess, RedisServer, square, startBareWorker } from '../cluster_local';
import { median, printTable, PYTHON_TIMING, Row, runPython, timeRunsAsync } from './lib';

const TASKS = 200_000;
const MAP_RUNS = 5;
const BARE_JOBS = 5_000;
const BARE_RUNS = 3;
/** apply() round trips timed against as many bare ones, after APPLY_WARMUP pairs not kept. */
const APPLY_PAIRS = 600;
const APPLY_WARMUP = 60;

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

/** The apply() comparison: medians, and how often ours won a pair. */
interface ApplyFigures {
  ours: number;
  bare: number;
  /** Share of the pairs in which ours was the faster (0..1). */
  wins: number;
  /** The 1-minute load average before and after the timed pairs. */
  load: [number, number];
}

/**
 * `pool.apply` and a bare BullMQ `add` + `waitUntilFinished`, timed in pairs
 * (one of each, which one first alternating): the machine's load drifts, and
 * both sides of a pair see the same. The first APPLY_WARMUP pairs are not kept.
 */
async function applyTimes(pool: Pool, queue: Queue, events: QueueEvents): Promise<ApplyFigures> {
  const ours: number[] = [];
  const bare: number[] = [];
  const time = async (fn: () => Promise<unknown>): Promise<number> => {
    const start = process.hrtime.bigint();
    await fn();
    return Number(process.hrtime.bigint() - start) / 1e6;
  };
  const apply = (): Promise<unknown> => pool.apply(square, [3]);
  const bareRound = async (): Promise<unknown> => (await queue.add('sum', { a: 1, b: 2 })).waitUntilFinished(events);
  let load: [number, number] = [0, 0];
  for (let pair = 0; pair < APPLY_WARMUP + APPLY_PAIRS; pair++) {
    if (pair === APPLY_WARMUP) load = [os.loadavg()[0], 0];
    const oursFirst = pair % 2 === 0;
    const first = await time(oursFirst ? apply : bareRound);
    const second = await time(oursFirst ? bareRound : apply);
    if (pair < APPLY_WARMUP) continue;
    ours.push(oursFirst ? first : second);
    bare.push(oursFirst ? second : first);
  }
  load[1] = os.loadavg()[0];
  const wins = ours.filter((value, i) => value < bare[i]).length / ours.length;
  return { ours: median(ours), bare: median(bare), wins, load };
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
        print(json.dumps(median(samples(lambda: pool.apply(square, (3,)), ${APPLY_PAIRS}, 20))))`);
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
    const apply = await applyTimes(pool, queue, events);
    await events.close();
    await queue.obliterate({ force: true });
    await queue.close();

    const rows: Row[] = [
      { name: `map of ${TASKS / 1000}k tiny tasks over 2 nodes`, value: ours, unit: 'k tasks/s', higherIsBetter: true, target: '>= 200 k/s' },
      { name: 'bare BullMQ, one job a task, 2 workers', value: bare, unit: 'k tasks/s', higherIsBetter: true, baseline: ours },
      { name: 'Python multiprocessing.Pool(4).map, one machine', value: pythonMap(), unit: 'k tasks/s', higherIsBetter: true, baseline: ours },
      { name: `apply() round trip, 2 nodes (median of ${APPLY_PAIRS})`, value: apply.ours, unit: 'ms', target: '<= 2 ms, <= bare BullMQ' },
      {
        name: `bare BullMQ add + waitUntilFinished, 2 workers (paired)`,
        value: apply.bare,
        unit: 'ms',
        baseline: apply.ours,
      },
      {
        name: 'apply() pairs won by ours / load average (1 min) while timed',
        value: apply.wins * 100,
        unit: '%',
        note: `load ${apply.load[0].toFixed(1)} -> ${apply.load[1].toFixed(1)} on ${os.cpus().length} CPUs`,
      },
      { name: 'Python multiprocessing.Pool(4).apply, one machine', value: pythonApply(), unit: 'ms', baseline: apply.ours },
    ];
    printTable('cluster Pool (BullMQ on a local Redis, 2 worker nodes)', rows);
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
}

void main();
