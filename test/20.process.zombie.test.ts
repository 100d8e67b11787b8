/**
 * Faithful zombies under Process (the fork and spawn start methods, whose
 * children this process reaps itself; the fork server reaps forkserver's): a
 * child that ended and that nobody joined stays a zombie (`Z` in /proc) until
 * join(), isAlive(), exitCode, activeChildren() or the next start() reaps it,
 * as in Python, with or without the event loop. A join() awaited when the
 * child ends still resolves at once.
 */
import * as fs from 'fs';

import * as mp from '..';
import { procStat, zombieChildren } from './helpers';
import { waitFor } from './fixtures/process_helpers';

const NO_ADDON = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/process_targets.js') as { noop(): void; sleep(ms: number): Promise<void> };

/** One turn of the event loop through its poll phase, where a watch of the child would reap it. */
function pollPhase(): Promise<void> {
  return new Promise((resolve) => setTimeout(() => setImmediate(resolve), 0));
}

/**
 * Whether `pid` has ended and can be reaped: a zombie whose threads are all
 * gone. (A spawned child is a multi-threaded node: its main thread shows `Z`
 * a moment before the others have exited, and waitpid() reports it only then.)
 */
function isZombie(pid: number): boolean {
  if (procStat(pid)?.state !== 'Z') return false;
  try {
    return /^Threads:\s+1$/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Starts a child that ends at once; resolves once it is a zombie, and stays one through event loop turns. */
async function endedChild(method: mp.StartMethod): Promise<mp.Process> {
  const p = new (mp.getContext(method).Process)({ target: targets.noop });
  p.start();
  const pid = p.pid as number;
  expect(await waitFor(() => isZombie(pid), 60000)).toBe(true);
  for (let turn = 0; turn < 3; turn++) await pollPhase();
  expect(isZombie(pid)).toBe(true);
  return p;
}

(NO_ADDON ? describe.skip : describe).each(['fork', 'spawn'] as const)('an ended %s child nobody joined stays a zombie until', (method) => {
  test('join() reaps it (at once)', async () => {
    const p = await endedChild(method);
    await p.join();
    expect(procStat(p.pid as number)).toBeNull();
    expect(p.exitCode).toBe(0);
  });

  test('isAlive() reaps it', async () => {
    const p = await endedChild(method);
    expect(p.isAlive()).toBe(false);
    expect(procStat(p.pid as number)).toBeNull();
  });

  test('exitCode reaps it', async () => {
    const p = await endedChild(method);
    expect(p.exitCode).toBe(0);
    expect(procStat(p.pid as number)).toBeNull();
  });

  test('activeChildren() reaps it', async () => {
    const p = await endedChild(method);
    expect(mp.activeChildren()).not.toContain(p);
    expect(procStat(p.pid as number)).toBeNull();
  });

  test('the next start() reaps it', async () => {
    const p = await endedChild(method);
    const next = new (mp.getContext(method).Process)({ target: targets.noop });
    next.start();
    expect(procStat(p.pid as number)).toBeNull();
    await next.join();
    expect(p.exitCode).toBe(0);
  });

  test('a join() awaited while the child runs resolves when it ends, and reaps it', async () => {
    const p = new (mp.getContext(method).Process)({ target: targets.sleep, args: [50] });
    p.start();
    await p.join();
    expect(procStat(p.pid as number)).toBeNull();
    expect(p.exitCode).toBe(0);
  });

});

(NO_ADDON ? describe.skip : describe)('without the event loop', () => {
  test('a join(timeout) that ran out leaves the child to end as a zombie', async () => {
    const release = new mp.Event();
    const p = new (mp.getContext('fork').Process)({ target: () => release.waitSync() });
    p.start();
    await p.join(10);
    expect(p.exitCode).toBeNull();
    release.set();
    const pid = p.pid as number;
    expect(await waitFor(() => isZombie(pid), 60000)).toBe(true);
    await pollPhase();
    expect(isZombie(pid)).toBe(true);
    p.joinSync();
    expect(procStat(pid)).toBeNull();
    expect(p.exitCode).toBe(0);
  });

  test.each(['fork', 'spawn'] as const)(
    'start() + joinSync() of 20 %s children in a synchronous loop leaves no zombie before the loop runs',
    async (method) => {
      const Process = mp.getContext(method).Process;
      const children: mp.Process[] = [];
      for (let i = 0; i < 20; i++) {
        const p = new Process({ target: targets.noop });
        p.start();
        p.joinSync();
        children.push(p);
      }
      const pids = children.map((p) => p.pid as number);
      expect(zombieChildren().filter((pid) => pids.includes(pid))).toEqual([]);
      expect(children.map((p) => p.exitCode)).toEqual(pids.map(() => 0));
      // The event loop, when it runs, neither loses nor reports them again.
      for (let turn = 0; turn < 3; turn++) await pollPhase();
      expect(children.map((p) => p.exitCode)).toEqual(pids.map(() => 0));
      expect(mp.activeChildren()).toEqual([]);
      for (const p of children) p.close();
    },
    120000,
  );
});
