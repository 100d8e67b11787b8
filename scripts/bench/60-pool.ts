/**
 * mp.Pool against Python's multiprocessing.Pool, piscina (worker threads) and
 * workerpool (process mode), all measured here in this run, medians:
 * - the apply round trip of a tiny task on 2 workers;
 * - map of 200,000 tiny tasks, default chunksize (the peers chunked by hand
 *   as Python's default: 8 chunks for 2 workers);
 * - a CPU-bound map (8 tasks of ~200 ms) on 2 workers against 1: wall time,
 *   and CPU time over wall time (this shared machine may not give 2 cores);
 * - a pool of 4 started, used once by 4 tasks, terminated.
 */
import * as os from 'os';
import * as path from 'path';

import * as mp from '../../dist';
import { median, printTable, PYTHON_TIMING, Row, runPython, timeRunsAsync } from './lib';
import { burn, noop, square } from './60-workers/tasks';

const APPLY_RUNS = 3000;
/**
 * Untimed round trips first, the same for every pool: after a fork, parent
 * and workers take a copy-on-write fault on each page they write until it has
 * been copied once (some 5,000 here, tens of µs each on this virtual
 * machine); the first few thousand round trips measure those, not the trip.
 */
const APPLY_WARMUP = APPLY_RUNS; // Python's samples() warms up at most `runs` times
const TASKS = 200_000;
const MAP_RUNS = 7;
const CPU_TASKS = 8;
const START_RUNS = 15;

const ctx = mp.getContext('fork');
const PISCINA_WORKER = path.join(__dirname, '60-workers', 'piscina_square.js');
const WORKERPOOL_SCRIPT = path.join(__dirname, '60-workers', 'tasks.js');

/** Median µs of one apply round trip. */
async function applyMicros(call: () => Promise<unknown>): Promise<number> {
  return median(await timeRunsAsync(async () => void (await call()), APPLY_RUNS, APPLY_WARMUP)) * 1000;
}

/** Tasks per µs... as millions of tasks/s: `TASKS` over the median ms of `run`. */
async function mapRate(run: () => Promise<unknown>): Promise<number> {
  return TASKS / median(await timeRunsAsync(async () => void (await run()), MAP_RUNS, 2)) / 1000;
}

function chunks(input: number[], count: number): number[][] {
  const size = Math.ceil(input.length / count);
  return Array.from({ length: count }, (_, i) => input.slice(i * size, (i + 1) * size));
}

async function ours(): Promise<{ apply: number; map: number }> {
  const pool = new ctx.Pool(2);
  const input = Array.from({ length: TASKS }, (_, i) => i);
  const apply = await applyMicros(() => pool.apply(square, [3]));
  const map = await mapRate(() => pool.map(square, input));
  pool.terminate();
  await pool.join();
  return { apply, map };
}

async function piscina(): Promise<{ apply: number; map: number } | null> {
  let Piscina: typeof import('piscina').Piscina;
  try {
    ({ Piscina } = await import('piscina'));
  } catch {
    console.error('piscina is not installed (npm install): its rows are skipped');
    return null;
  }
  const pool = new Piscina({ filename: PISCINA_WORKER, minThreads: 2, maxThreads: 2 });
  const input = Array.from({ length: TASKS }, (_, i) => i);
  const apply = await applyMicros(() => pool.run(3));
  const map = await mapRate(() => Promise.all(chunks(input, 8).map((chunk) => pool.run(chunk))));
  await pool.destroy();
  return { apply, map };
}

async function workerpool(): Promise<{ apply: number; map: number } | null> {
  let wp: typeof import('workerpool');
  try {
    wp = await import('workerpool');
  } catch {
    console.error('workerpool is not installed (npm install): its rows are skipped');
    return null;
  }
  const pool = wp.pool(WORKERPOOL_SCRIPT, {
    workerType: 'process',
    minWorkers: 2,
    maxWorkers: 2,
    forkOpts: { env: { ...process.env, NODE_MULTIPROCESSING_BENCH_WORKERPOOL: '1' } },
  });
  const input = Array.from({ length: TASKS }, (_, i) => i);
  const apply = await applyMicros(() => pool.exec('square', [3]));
  const map = await mapRate(() => Promise.all(chunks(input, 8).map((chunk) => pool.exec('squares', [chunk]))));
  await pool.terminate();
  return { apply, map };
}

function python(): { apply: number; map: number; start: number } | null {
  return runPython<{ apply: number; map: number; start: number }>(`${PYTHON_TIMING}
import multiprocessing
def square(x): return x * x
def noop(x): return None
def start():
    pool = multiprocessing.Pool(4)
    pool.map(noop, range(4), 1)
    pool.terminate()
if __name__ == '__main__':
    multiprocessing.set_start_method('fork')
    with multiprocessing.Pool(2) as pool:
        apply = median(samples(lambda: pool.apply(square, (3,)), ${APPLY_RUNS}, ${APPLY_WARMUP})) * 1000
        data = range(${TASKS})
        rate = ${TASKS} / median(samples(lambda: pool.map(square, data), ${MAP_RUNS}, 2)) / 1000
    start_ms = median(samples(start, ${START_RUNS}, 2))
    print(json.dumps({'apply': apply, 'map': rate, 'start': start_ms}))`);
}

/** `burn` iterations that take about `ms` of CPU here. */
function calibrate(ms: number): number {
  const probe = 2_000_000;
  return Math.round((probe * ms) / Math.max(1, burn(probe)));
}

/** Wall ms of the CPU-bound map on `processes` workers, and the CPU ms the tasks took. */
async function cpuMap(processes: number, iterations: number): Promise<{ wall: number; cpu: number }> {
  const pool = new ctx.Pool(processes);
  await pool.map(noop, Array.from({ length: processes }), 1); // started
  const start = process.hrtime.bigint();
  const cpu = await pool.map(burn, Array.from({ length: CPU_TASKS }, () => iterations), 1);
  const wall = Number(process.hrtime.bigint() - start) / 1e6;
  pool.terminate();
  await pool.join();
  return { wall, cpu: cpu.reduce((a, b) => a + b, 0) };
}

async function startTerminate(): Promise<number> {
  const samples = await timeRunsAsync(
    async () => {
      const pool = new ctx.Pool(4);
      await pool.map(noop, [0, 1, 2, 3], 1);
      pool.terminate();
      await pool.join();
    },
    START_RUNS,
    2,
  );
  return median(samples);
}

/** The machine's 1-minute load average: the figures swing with it. */
function load(): string {
  return `load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} CPUs`;
}

async function main(): Promise<void> {
  const loadBefore = load();
  const py = python();
  // First, while this process is small: a fork copies the page tables of all it holds, and the
  // other rows leave it with hundreds of MB (their 200,000-item inputs), which no program that
  // starts a pool would hold (Python's start is measured in its process, some 10 MB).
  const start = await startTerminate();
  const mine = await ours();
  const threads = await piscina();
  const processes = await workerpool();
  const iterations = calibrate(200);
  const one = await cpuMap(1, iterations);
  const two = await cpuMap(2, iterations);

  const rows: Row[] = [
    { name: 'apply round trip, 2 workers (ours)', value: mine.apply, unit: 'µs', target: '<= 1/4 of Python, <= piscina' },
    { name: "  Python's multiprocessing.Pool", value: py?.apply ?? null, unit: 'µs', baseline: mine.apply },
    { name: '  piscina (threads)', value: threads?.apply ?? null, unit: 'µs', baseline: mine.apply },
    { name: '  workerpool (processes)', value: processes?.apply ?? null, unit: 'µs', baseline: mine.apply },
    { name: `map of ${TASKS} tiny tasks, 2 workers (ours)`, value: mine.map, unit: 'M tasks/s', target: ">= 2x Python's" },
    { name: "  Python's, default chunksize", value: py?.map ?? null, unit: 'M tasks/s', baseline: mine.map, higherIsBetter: true },
    { name: '  piscina, 8 chunks by hand', value: threads?.map ?? null, unit: 'M tasks/s', baseline: mine.map, higherIsBetter: true },
    { name: '  workerpool, 8 chunks by hand', value: processes?.map ?? null, unit: 'M tasks/s', baseline: mine.map, higherIsBetter: true },
    { name: `CPU-bound map, ${CPU_TASKS} x ~200 ms, 1 worker`, value: one.wall, unit: 'ms' },
    {
      name: '  2 workers',
      value: two.wall,
      unit: 'ms',
      note: `${(one.wall / two.wall).toFixed(2)}x faster; CPU/wall ${(two.cpu / two.wall).toFixed(2)} (1 worker: ${(one.cpu / one.wall).toFixed(2)})`,
      target: '>= 1.8x',
    },
    { name: 'start (4 workers) + 4 tasks + terminate (ours)', value: start, unit: 'ms', target: "<= Python's" },
    { name: "  Python's", value: py?.start ?? null, unit: 'ms', baseline: start },
  ];
  printTable('Pool (fork start method)', rows);
  console.log(`(60-pool: ${loadBefore} at the start, ${load()} at the end)`);
}

void main();
