/**
 * Pipe against Python's `multiprocessing.Pipe` in the same run: the round trip
 * of a small object (the parent sends, a forked child echoes), with `recv()`
 * and with `recvSync()`, and 64 MiB through `sendBytes` from a child; a Queue
 * of small items from one, then four, producer children to the parent; the
 * CPU time a Queue spends per item, ours and Python's.
 */
import * as os from 'os';

import * as mp from '../..';
import { median, printTable, PYTHON_TIMING, runPython, timeRunsAsync } from './lib';

const ROUND_TRIPS = 5_000;
const RUNS = 5;
const BIG = 64 * 1024 * 1024;

/** The child's side: echoes objects until `null`. */
function echo(conn: mp.Connection): void {
  for (;;) {
    const message = conn.recvSync();
    if (message === null) return;
    conn.send(message);
  }
}

/** Median µs per round trip, `recv()` (async) or `recvSync()` in the parent. */
async function roundTrip(sync: boolean): Promise<number> {
  const [parentEnd, childEnd] = mp.Pipe();
  const p = new mp.Process({ target: echo, args: [childEnd] });
  p.start();
  const samples = await timeRunsAsync(
    async () => {
      for (let i = 0; i < ROUND_TRIPS; i++) {
        parentEnd.send({ i, s: 'x' });
        if (sync) parentEnd.recvSync();
        else await parentEnd.recv();
      }
    },
    RUNS,
    1,
  );
  parentEnd.send(null);
  await p.join();
  parentEnd.close();
  childEnd.close();
  return (median(samples) * 1000) / ROUND_TRIPS;
}

/** Median MB/s of 64 MiB sent by a child with sendBytes and received by the parent. */
async function bigBytes(): Promise<number> {
  const payload = Buffer.alloc(BIG, 7);
  const samples = await timeRunsAsync(
    async () => {
      const [reader, writer] = mp.Pipe(false);
      const p = new mp.Process({ target: (conn: mp.Connection) => conn.sendBytes(payload), args: [writer] });
      p.start();
      writer.close();
      await reader.recvBytes();
      await p.join();
      reader.close();
    },
    RUNS,
    1,
  );
  return BIG / 1e6 / (median(samples) / 1000);
}

const PYTHON_ROUND_TRIP = `${PYTHON_TIMING}
import multiprocessing as mp
def echo(conn):
    while True:
        m = conn.recv()
        if m is None: return
        conn.send(m)
mp.set_start_method('fork')
a, b = mp.Pipe()
p = mp.Process(target=echo, args=(b,)); p.start()
def run():
    for i in range(${ROUND_TRIPS}):
        a.send({'i': i, 's': 'x'}); a.recv()
times = samples(run, ${RUNS}, 1)
a.send(None); p.join()
times.sort()
print(json.dumps(times[len(times) // 2] * 1000 / ${ROUND_TRIPS}))
`;

const PYTHON_BIG = `${PYTHON_TIMING}
import multiprocessing as mp
payload = bytes(${BIG})
def send(conn): conn.send_bytes(payload)
mp.set_start_method('fork')
def run():
    r, w = mp.Pipe(False)
    p = mp.Process(target=send, args=(w,)); p.start(); w.close()
    r.recv_bytes(); p.join(); r.close()
times = samples(run, ${RUNS}, 1)
times.sort()
print(json.dumps(${BIG} / 1e6 / (times[len(times) // 2] / 1000)))
`;

/**
 * Items of a Queue run for the msgs/s (its target): a run long enough
 * that each child's puts are mostly past its start-up, so that the figure is
 * the queue's rate, fork and start-up included but not dominant.
 */
const QUEUE_ITEMS = 200_000;
/**
 * Items of a short Queue run, where each child's start-up weighs much (a
 * forked Node child runs its first thousands of puts cold; Python's puts are
 * always interpreted): printed, without a target, to show that cost.
 */
const QUEUE_ITEMS_SHORT = 20_000;

/** Puts `count` small items. */
function produce(queue: mp.Queue<{ i: number; s: string }>, count: number): void {
  for (let i = 0; i < count; i++) queue.putSync({ i, s: 'x' });
}

/**
 * Median items/s from `producers` children (`items` in all) to the
 * parent's await get(). Each timed run, ours and Python's alike (one untimed
 * run first for both): making the queue, forking and starting the children,
 * every item put by them and got by the parent, joining the children. So the
 * figure includes each child's start-up (a forked Node child also compiles
 * its put path on its own main thread, and copies each heap page it or its
 * parent writes first), not only the per-item cost.
 */
async function queueRate(producers: number, items: number): Promise<number> {
  const samples = await timeRunsAsync(
    async () => {
      const q = new mp.Queue<{ i: number; s: string }>();
      const children = Array.from({ length: producers }, () => new mp.Process({ target: produce, args: [q, items / producers] }));
      for (const child of children) child.start();
      for (let n = 0; n < items; n++) await q.get();
      for (const child of children) await child.join();
      q.close();
    },
    RUNS,
    1,
  );
  return items / (median(samples) / 1000) / 1000;
}

const pythonQueue = (producers: number, items: number): string => `${PYTHON_TIMING}
import multiprocessing as mp
def produce(q, n):
    for i in range(n): q.put({'i': i, 's': 'x'})
mp.set_start_method('fork')
def run():
    q = mp.Queue()
    ps = [mp.Process(target=produce, args=(q, ${items} // ${producers})) for _ in range(${producers})]
    for p in ps: p.start()
    for _ in range(${items}): q.get()
    for p in ps: p.join()
times = samples(run, ${RUNS}, 1)
times.sort()
print(json.dumps(${items} / (times[len(times) // 2] / 1000) / 1000))
`;

const CPU_ITEMS = 20_000;

/**
 * Median CPU µs (user + system) per small item, putSync then getSync in one
 * process: what a queue costs per item whatever the machine's load, which
 * swings the wall-clock figures above.
 */
function queueCpu(): number {
  const q = new mp.Queue<{ i: number; s: string }>();
  const samples: number[] = [];
  for (let run = 0; run < RUNS + 1; run++) {
    const before = process.cpuUsage();
    for (let i = 0; i < CPU_ITEMS; i++) q.putSync({ i, s: 'x' });
    for (let i = 0; i < CPU_ITEMS; i++) q.getSync();
    const spent = process.cpuUsage(before);
    if (run > 0) samples.push((spent.user + spent.system) / CPU_ITEMS);
  }
  q.close();
  return median(samples);
}

const PYTHON_QUEUE_CPU = `
import json, time, multiprocessing as mp
q = mp.Queue()
out = []
for run in range(${RUNS + 1}):
    t = time.process_time()
    for i in range(${CPU_ITEMS}): q.put({'i': i, 's': 'x'})
    for i in range(${CPU_ITEMS}): q.get()
    if run > 0: out.append((time.process_time() - t) * 1e6 / ${CPU_ITEMS})
out.sort()
print(json.dumps(out[len(out) // 2]))
`;

/** The machine's 1-minute load average, to read the figures by (they swing with it). */
function load(): string {
  return os.loadavg()[0].toFixed(1);
}

/** The Queue rows for runs of `items` items, 1 and 4 producers, ours and Python's. */
async function printQueueRates(items: number): Promise<void> {
  const one = await queueRate(1, items);
  const four = await queueRate(4, items);
  const target = items === QUEUE_ITEMS ? 'ours >= 3x' : undefined;
  printTable(`Queue of small items ({ i, s }) from producer children to the parent, ${items.toLocaleString('en')} items a run (each run: queue, fork, start, all items, join)`, [
    { name: 'ours: 1 producer', value: one, unit: 'k items/s' },
    { name: 'Python: 1 producer', value: runPython<number>(pythonQueue(1, items)), unit: 'k items/s', baseline: one, higherIsBetter: true, target },
    { name: 'ours: 4 producers', value: four, unit: 'k items/s' },
    { name: 'Python: 4 producers', value: runPython<number>(pythonQueue(4, items)), unit: 'k items/s', baseline: four, higherIsBetter: true, target },
  ]);
}

async function main(): Promise<void> {
  console.log(`\n(50-connection: load average ${load()} on ${os.cpus().length} CPUs at the start)`);
  const asyncTrip = await roundTrip(false);
  const syncTrip = await roundTrip(true);
  const pythonTrip = runPython<number>(PYTHON_ROUND_TRIP);
  printTable('Pipe round trip of a small object (parent sends, forked child echoes)', [
    { name: 'ours: send + await recv()', value: asyncTrip, unit: 'µs' },
    { name: 'ours: send + recvSync()', value: syncTrip, unit: 'µs' },
    { name: 'Python: Pipe send + recv (vs await recv())', value: pythonTrip, unit: 'µs', baseline: asyncTrip, target: 'ours <= 1/2' },
    { name: 'Python: Pipe send + recv (vs recvSync())', value: pythonTrip, unit: 'µs', baseline: syncTrip },
  ]);
  const ours = await bigBytes();
  const python = runPython<number>(PYTHON_BIG);
  printTable('64 MiB through a Pipe (sendBytes from a child)', [
    { name: 'ours: sendBytes / recvBytes', value: ours, unit: 'MB/s', target: '>= 1,000 on a quiet machine' },
    { name: 'Python: send_bytes / recv_bytes', value: python, unit: 'MB/s', baseline: ours, higherIsBetter: true, target: ">= Python's" },
  ]);
  for (const items of [QUEUE_ITEMS, QUEUE_ITEMS_SHORT]) await printQueueRates(items);
  const cpu = queueCpu();
  printTable('Queue CPU time per small item (put then get, one process; Python: its feeder thread included)', [
    { name: 'ours: putSync + getSync', value: cpu, unit: 'µs' },
    { name: 'Python: put + get', value: runPython<number>(PYTHON_QUEUE_CPU), unit: 'µs', baseline: cpu },
  ]);
  console.log(`(50-connection: load average ${load()} at the end)`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
