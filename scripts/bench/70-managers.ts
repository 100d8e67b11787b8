/**
 * Managers against Python's `multiprocessing.Manager()` in the same run: a
 * dict.set + dict.get round trip from a child process (both blocking twins,
 * and both Promises), and a Manager start + shutdown. Ours and Python's take
 * turns (ROUNDS each): on a shared machine the load changes from one second to
 * the next, and each side's median is taken over its turns.
 */
import * as os from 'os';

import * as mp from '../..';
import { median, printTable, PYTHON_TIMING, runPython, timeRunsAsync } from './lib';

const ROUND_TRIPS = 2_000;
const STARTS = 5;
const ROUNDS = 3;

/** µs per set + get round trip pair, measured in a forked child and reported through the dict. */
async function roundTrip(manager: mp.SyncManager, sync: boolean): Promise<number> {
  const d = await manager.dict<string, number>();
  const child = new mp.Process({
    target: async (dict: mp.DictProxy<string, number>, n: number, blocking: boolean) => {
      const times: number[] = [];
      for (let run = 0; run < 5; run++) {
        const start = process.hrtime.bigint();
        for (let i = 0; i < n; i++) {
          if (blocking) {
            dict.setSync('k', i);
            dict.getSync('k');
          } else {
            await dict.set('k', i);
            await dict.get('k');
          }
        }
        times.push(Number(process.hrtime.bigint() - start) / 1e3 / n);
      }
      await dict.set('us', median(times.slice(2)));
    },
    args: [d, ROUND_TRIPS, sync],
  });
  child.start();
  await child.join();
  return (await d.get('us')) as number;
}

const PYTHON_ROUND_TRIP = `${PYTHON_TIMING}
import multiprocessing as mp
N = ${ROUND_TRIPS}
def child(d):
    def run():
        for i in range(N):
            d['k'] = i; d['k']
    d['us'] = median(samples(run, 3, warmup=2)) * 1e3 / N
if __name__ == '__main__':
    mp.set_start_method('fork')
    with mp.Manager() as m:
        d = m.dict()
        p = mp.Process(target=child, args=(d,)); p.start(); p.join()
        print(json.dumps(d['us']))`;

const PYTHON_START = `${PYTHON_TIMING}
import multiprocessing as mp
def run():
    m = mp.Manager(); m.shutdown()
if __name__ == '__main__':
    mp.set_start_method('fork')
    print(json.dumps(median(samples(run, ${STARTS}, warmup=1))))`;

async function main(): Promise<void> {
  try {
    await mp.Manager().then((m) => m.shutdown());
  } catch (error) {
    console.log(`\n## Managers\n\nskipped: ${(error as Error).message}`);
    return;
  }
  const loadAtStart = os.loadavg()[0];
  const manager = await mp.Manager();
  const ours = { blocking: [] as number[], promised: [] as number[], starts: [] as number[] };
  const python = { roundTrip: [] as number[], starts: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    ours.blocking.push(await roundTrip(manager, true));
    ours.promised.push(await roundTrip(manager, false));
    python.roundTrip.push(runPython<number>(PYTHON_ROUND_TRIP) ?? NaN);
    ours.starts.push(median(await timeRunsAsync(async () => (await mp.Manager()).shutdown(), STARTS, 1)));
    python.starts.push(runPython<number>(PYTHON_START) ?? NaN);
  }
  await manager.shutdown();
  const pythonFigure = (samples: number[]): number | null => (samples.some(Number.isNaN) ? null : median(samples));
  const blocking = median(ours.blocking);
  const starts = median(ours.starts);
  const loads = `load average ${loadAtStart.toFixed(1)} at the start, ${os.loadavg()[0].toFixed(1)} at the end, ${os.cpus().length} CPUs`;
  printTable(`Managers: a dict through the server process (medians of ${ROUNDS} turns each, taken in turn; ${loads})`, [
    { name: 'ours: dict.setSync + getSync from a child', value: blocking, unit: 'µs' },
    { name: 'ours: await dict.set + get from a child', value: median(ours.promised), unit: 'µs' },
    { name: "Python: d['k'] = i; d['k'] from a child", value: pythonFigure(python.roundTrip), unit: 'µs', baseline: blocking, target: 'ours <= 1/2' },
    { name: 'ours: await Manager() + shutdown()', value: starts, unit: 'ms' },
    { name: 'Python: Manager() + shutdown()', value: pythonFigure(python.starts), unit: 'ms', baseline: starts, target: "ours <= Python's" },
  ]);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
