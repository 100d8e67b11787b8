/**
 * Pipe against Python's `multiprocessing.Pipe` in the same run: the round trip
 * of a small object (the parent sends, a forked child echoes), with `recv()`
 * and with `recvSync()`, and 64 MiB through `sendBytes` from a child.
 */
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

async function main(): Promise<void> {
  const asyncTrip = await roundTrip(false);
  const syncTrip = await roundTrip(true);
  const pythonTrip = runPython<number>(PYTHON_ROUND_TRIP);
  printTable('Pipe round trip of a small object (parent sends, forked child echoes)', [
    { name: 'ours: send + await recv()', value: asyncTrip, unit: 'µs', baseline: pythonTrip, target: '<= 1/2 of Python' },
    { name: 'ours: send + recvSync()', value: syncTrip, unit: 'µs', baseline: pythonTrip },
    { name: 'Python: multiprocessing.Pipe send + recv', value: pythonTrip, unit: 'µs' },
  ]);
  const ours = await bigBytes();
  const python = runPython<number>(PYTHON_BIG);
  printTable('64 MiB through a Pipe (sendBytes from a child)', [
    { name: 'ours: sendBytes / recvBytes', value: ours, unit: 'MB/s', baseline: python, higherIsBetter: true, target: ">= Python's" },
    { name: 'Python: send_bytes / recv_bytes', value: python, unit: 'MB/s' },
  ]);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
