/**
 * fork() + _exit() + waitpid() of a freshly started Node, side by side with the
 * same loop in Python (os.fork), in C (the floor) and with child_process.spawn
 * of `node -e 0`; the fork stress (hangs and crashes under GC load); and the
 * speed of fresh code in a forked child against the parent.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '../..';
import { inFreshNode, median, printTable, pythonForkLoop, runC, timeRunsAsync } from './lib';

const FORKS = 500;

const C_FORK = `
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static int cmp(const void* a, const void* b) { double x = *(const double*)a, y = *(const double*)b; return (x > y) - (x < y); }
int main(int argc, char** argv) {
  int n = atoi(argv[1]);
  double* t = malloc(sizeof(double) * n);
  for (int i = 0; i < n; i++) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    int status;
    waitpid(pid, &status, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    t[i] = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
  }
  qsort(t, n, sizeof(double), cmp);
  printf("%f\\n", n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2);
  return 0;
}
`;

function cForks(): number | null {
  const out = runC('fork-exit-wait', C_FORK, [String(FORKS)]);
  return out === null ? null : Number(out.trim());
}

function spawnNode(): Promise<void> {
  return new Promise((resolve, reject) => {
    spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }).on('exit', () => resolve()).on('error', reject);
  });
}

let freshFunctions = 0;

/**
 * A function compiled from source now: fresh code, never run before. The
 * source differs each time (V8 would otherwise find the last one's compiled
 * code in its cache) and by process.
 */
function freshWork(): (x: number) => number {
  freshFunctions++;
  return new Function('x', `/* ${process.pid}.${freshFunctions} */
    let h = x;
    for (let i = 0; i < 2000; i++) h = (h * 31 + (i ^ (h >>> 7))) | 0;
    return h;`) as (x: number) => number;
}

/**
 * Milliseconds a fresh function takes for 30,000 calls made from 1,500
 * macrotasks, as work arriving in callbacks runs: it gets optimised the
 * regular way (a compile on a worker thread), not by on-stack replacement.
 */
function timeFresh(): Promise<number> {
  const work = freshWork();
  const start = process.hrtime.bigint();
  return new Promise((resolve) => {
    let tasks = 0;
    const step = (): void => {
      for (let call = 0; call < 20; call++) work(call);
      if (++tasks < 1500) setImmediate(step);
      else resolve(Number(process.hrtime.bigint() - start) / 1e6);
    };
    step();
  });
}

/** Median time of fresh code in forked children and in the parent, alternating. */
async function freshCodeSpeed(rounds = 5): Promise<{ parent: number; child: number }> {
  const file = path.join(os.tmpdir(), `mp-bench-fresh-${process.pid}`);
  const parent: number[] = [];
  const child: number[] = [];
  for (let i = 0; i < rounds; i++) {
    parent.push(await timeFresh());
    const pid = mp.os.fork();
    if (pid === 0) {
      fs.writeFileSync(file, String(await timeFresh()));
      mp.os._exit(0);
    }
    await mp.os.waitpidAsync(pid);
    child.push(Number(fs.readFileSync(file, 'utf8')));
  }
  fs.unlinkSync(file);
  return { parent: median(parent), child: median(child) };
}

function forkStress(forks = 2000): { hang: number; crash: number; ok: number; forks: number } | null {
  const script = path.join(__dirname, '..', 'fork-stress.js');
  const run = spawnSync(process.execPath, [script, String(forks)], { encoding: 'utf8', timeout: 600000 });
  const line = run.stdout.trim().split('\n').pop();
  return line ? JSON.parse(line) : null;
}

async function main(): Promise<void> {
  // In a Node of its own, as Python's and C's loops run in processes of their own.
  const ours = inFreshNode('fork-loop', [FORKS]);
  // The same without node's code in huge pages (see native/shared_code.cc).
  const fileCode = inFreshNode('fork-loop', [FORKS], { NODE_MULTIPROCESSING_LARGE_PAGES: '0' });
  const firstForks: number[] = [];
  for (let i = 0; i < 5; i++) firstForks.push(inFreshNode('first-fork', []) ?? NaN);
  const python = pythonForkLoop(FORKS);
  const c = cForks();
  const spawned = median(await timeRunsAsync(spawnNode, 30));
  printTable('fork() + _exit() + waitpid(), median per child', [
    { name: 'node-multiprocessing mp.os.fork', value: ours, unit: 'ms', target: '<= 1.0 ms' },
    { name: '  the same, node code left in the binary (LARGE_PAGES=0)', value: fileCode, unit: 'ms', baseline: ours },
    { name: '  the first fork of a fresh Node (code moved, once)', value: median(firstForks), unit: 'ms' },
    { name: 'Python os.fork (same loop)', value: python, unit: 'ms', baseline: ours },
    { name: 'C fork (the floor)', value: c, unit: 'ms', baseline: ours },
    { name: 'child_process.spawn node -e 0', value: spawned, unit: 'ms', baseline: ours },
  ]);

  const fresh = await freshCodeSpeed();
  printTable('fresh code in a forked child vs the parent (optimising compiler at work)', [
    { name: 'parent: fresh function, 30,000 calls from 1,500 callbacks', value: fresh.parent, unit: 'ms' },
    {
      name: 'forked child: the same, fresh',
      value: fresh.child,
      unit: 'ms',
      note: `child/parent = ${(fresh.child / fresh.parent).toFixed(2)}`,
      target: 'child/parent <= 1.2',
    },
  ]);

  const stress = forkStress();
  console.log(
    stress
      ? `\nfork stress under GC load (default flags): ${stress.forks} forks, ` +
          `${stress.ok} ok, ${stress.hang} hangs, ${stress.crash} crashes (target: 0 hangs, 0 crashes)`
      : '\nfork stress: no result',
  );
}

void main();
