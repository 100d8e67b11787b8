/**
 * Synchronisation primitives against Python's `multiprocessing` in the same
 * run: uncontended acquire + release of Lock, RLock and Semaphore (ours never
 * leaves JavaScript there), a Lock contended by two processes, and a
 * Semaphore ping-pong between two processes (each hand-off is a futex wake
 * and a sleep).
 */
import * as mp from '../..';
import { median, printTable, PYTHON_TIMING, runPython, timeRuns, timeRunsAsync } from './lib';

const PAIRS = 2_000_000;
const RUNS = 7;
const CONTENDED = 200_000;
const PING_PONGS = 20_000;

interface Acquirable {
  acquireSync(): boolean;
  release(): void;
}

/** Median M acquire + release pairs/s, uncontended, in this process. */
function pairs(lock: Acquirable): number {
  const samples = timeRuns(
    () => {
      for (let i = 0; i < PAIRS; i++) {
        lock.acquireSync();
        lock.release();
      }
    },
    RUNS,
    2,
  );
  return PAIRS / median(samples) / 1e3;
}

async function asyncPairs(): Promise<number> {
  const lock = new mp.Lock();
  const n = PAIRS / 10;
  const samples = await timeRunsAsync(
    async () => {
      for (let i = 0; i < n; i++) {
        await lock.acquire();
        lock.release();
      }
    },
    RUNS,
    2,
  );
  return n / median(samples) / 1e3;
}

function pythonPairs(kind: 'Lock' | 'RLock' | 'Semaphore'): number | null {
  return runPython<number>(`${PYTHON_TIMING}
import multiprocessing as mp
lock = mp.${kind}()
a, r = lock.acquire, lock.release
N = ${PAIRS}
def run():
    for _ in range(N):
        a(); r()
print(json.dumps(N / median(samples(run, ${RUNS}, warmup=2)) / 1e3))`);
}

/** Forks `n` children that each run `body` and leave through _exit; waits for all. */
function inChildren(n: number, body: () => void): void {
  const pids = Array.from({ length: n }, () => {
    const pid = mp.os.fork();
    if (pid === 0) {
      body();
      mp.os._exit(0);
    }
    return pid;
  });
  for (const pid of pids) {
    const [, status] = mp.os.waitpid(pid);
    if (mp.os.waitstatusToExitcode(status) !== 0) throw new Error(`a benchmark child failed (status ${status})`);
  }
}

/** Two processes each incrementing a shared counter CONTENDED times under one Lock: M increments/s. */
function contended(): number {
  const lock = new mp.Lock();
  const counter = mp.RawArray('i', 1);
  const samples = timeRuns(
    () => {
      counter[0] = 0;
      inChildren(2, () => {
        for (let i = 0; i < CONTENDED; i++) {
          lock.acquireSync();
          counter[0]++;
          lock.release();
        }
      });
      if (counter[0] !== 2 * CONTENDED) throw new Error(`lost updates: ${counter[0]}`);
    },
    5,
    1,
  );
  return (2 * CONTENDED) / median(samples) / 1e3;
}

const PYTHON_CONTENDED = `${PYTHON_TIMING}
import multiprocessing as mp
N = ${CONTENDED}
def work(lock, counter):
    a, r = lock.acquire, lock.release
    for _ in range(N):
        a(); counter.value += 1; r()
ctx = mp.get_context('fork')
lock = ctx.Lock(); counter = ctx.RawValue('i', 0)
def run():
    counter.value = 0
    ps = [ctx.Process(target=work, args=(lock, counter)) for _ in range(2)]
    for p in ps: p.start()
    for p in ps: p.join()
    assert counter.value == 2 * N
print(json.dumps(2 * N / median(samples(run, 5, warmup=1)) / 1e3))`;

/** Hand-offs/s between two processes through two Semaphore(0)s: each one wakes the other. */
function pingPong(): number {
  const ping = new mp.Semaphore(0);
  const pong = new mp.Semaphore(0);
  const samples = timeRuns(
    () => {
      const pid = mp.os.fork();
      if (pid === 0) {
        for (let i = 0; i < PING_PONGS; i++) {
          ping.acquireSync();
          pong.release();
        }
        mp.os._exit(0);
      }
      for (let i = 0; i < PING_PONGS; i++) {
        ping.release();
        pong.acquireSync();
      }
      mp.os.waitpid(pid);
    },
    5,
    1,
  );
  return (2 * PING_PONGS) / median(samples);
}

const PYTHON_PING_PONG = `${PYTHON_TIMING}
import multiprocessing as mp, os
N = ${PING_PONGS}
ctx = mp.get_context('fork')
ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)
def run():
    pid = os.fork()
    if pid == 0:
        for _ in range(N):
            ping.acquire(); pong.release()
        os._exit(0)
    for _ in range(N):
        ping.release(); pong.acquire()
    os.waitpid(pid, 0)
print(json.dumps(2 * N / median(samples(run, 5, warmup=1))))`;

async function main(): Promise<void> {
  const lock = pairs(new mp.Lock());
  const rlock = pairs(new mp.RLock());
  const semaphore = pairs(new mp.Semaphore());
  const viaPromise = await asyncPairs();
  printTable('Lock / RLock / Semaphore: acquire + release, uncontended, one process', [
    { name: 'ours: Lock.acquireSync() + release()', value: lock, unit: 'M pairs/s' },
    { name: 'Python: multiprocessing.Lock', value: pythonPairs('Lock'), unit: 'M pairs/s', baseline: lock, higherIsBetter: true, target: 'ours >= 2x' },
    { name: 'ours: RLock.acquireSync() + release()', value: rlock, unit: 'M pairs/s' },
    { name: 'Python: multiprocessing.RLock', value: pythonPairs('RLock'), unit: 'M pairs/s', baseline: rlock, higherIsBetter: true },
    { name: 'ours: Semaphore.acquireSync() + release()', value: semaphore, unit: 'M pairs/s' },
    { name: 'Python: multiprocessing.Semaphore', value: pythonPairs('Semaphore'), unit: 'M pairs/s', baseline: semaphore, higherIsBetter: true },
    { name: 'ours: await Lock.acquire() + release()', value: viaPromise, unit: 'M pairs/s' },
  ]);
  const ours = contended();
  const oursPing = pingPong();
  const pythonPing = runPython<number>(PYTHON_PING_PONG);
  printTable('Across two forked processes', [
    { name: 'ours: Lock contended, counter += 1 under it', value: ours, unit: 'M incr/s' },
    { name: 'Python: the same with multiprocessing.Lock', value: runPython<number>(PYTHON_CONTENDED), unit: 'M incr/s', baseline: ours, higherIsBetter: true },
    { name: 'ours: Semaphore ping-pong (futex wake + sleep each)', value: oursPing, unit: 'k hand-offs/s' },
    {
      name: 'Python: the same with multiprocessing.Semaphore',
      value: pythonPing,
      unit: 'k hand-offs/s',
      baseline: oursPing,
      higherIsBetter: true,
    },
  ]);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
