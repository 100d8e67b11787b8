/**
 * Faithful zombies under Process (the fork start method, whose children are
 * this process's own: libuv reaps spawn's children itself, the fork server
 * reaps forkserver's): a child that ended and that nobody joined stays a
 * zombie (`Z` in /proc) until join(), isAlive(), exitCode, activeChildren() or
 * the next start() reaps it, as in Python. A join() awaited when the child
 * ends still resolves at once.
 */
import * as mp from '..';
import { procStat } from './helpers';
import { waitFor } from './fixtures/process_helpers';

const NO_ADDON = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/process_targets.js') as { noop(): void; sleep(ms: number): Promise<void> };

/** One turn of the event loop through its poll phase, where a watch of the child would reap it. */
function pollPhase(): Promise<void> {
  return new Promise((resolve) => setTimeout(() => setImmediate(resolve), 0));
}

const isZombie = (pid: number): boolean => procStat(pid)?.state === 'Z';

/** Starts a child that ends at once; resolves once it is a zombie, and stays one through event loop turns. */
async function endedChild(): Promise<mp.Process> {
  const p = new (mp.getContext('fork').Process)({ target: targets.noop });
  p.start();
  const pid = p.pid as number;
  expect(await waitFor(() => isZombie(pid), 30000)).toBe(true);
  for (let turn = 0; turn < 3; turn++) await pollPhase();
  expect(isZombie(pid)).toBe(true);
  return p;
}

(NO_ADDON ? describe.skip : describe)('an ended child nobody joined stays a zombie until', () => {
  test('join() reaps it (at once)', async () => {
    const p = await endedChild();
    await p.join();
    expect(procStat(p.pid as number)).toBeNull();
    expect(p.exitCode).toBe(0);
  });

  test('isAlive() reaps it', async () => {
    const p = await endedChild();
    expect(p.isAlive()).toBe(false);
    expect(procStat(p.pid as number)).toBeNull();
  });

  test('exitCode reaps it', async () => {
    const p = await endedChild();
    expect(p.exitCode).toBe(0);
    expect(procStat(p.pid as number)).toBeNull();
  });

  test('activeChildren() reaps it', async () => {
    const p = await endedChild();
    expect(mp.activeChildren()).not.toContain(p);
    expect(procStat(p.pid as number)).toBeNull();
  });

  test('the next start() reaps it', async () => {
    const p = await endedChild();
    const next = new (mp.getContext('fork').Process)({ target: targets.noop });
    next.start();
    expect(procStat(p.pid as number)).toBeNull();
    await next.join();
    expect(p.exitCode).toBe(0);
  });

  test('a join() awaited while the child runs resolves when it ends, and reaps it', async () => {
    const p = new (mp.getContext('fork').Process)({ target: targets.sleep, args: [50] });
    p.start();
    await p.join();
    expect(procStat(p.pid as number)).toBeNull();
    expect(p.exitCode).toBe(0);
  });

  test('a join(timeout) that ran out leaves the child to end as a zombie', async () => {
    const release = new mp.Event();
    const p = new (mp.getContext('fork').Process)({ target: () => release.waitSync() });
    p.start();
    await p.join(10);
    expect(p.exitCode).toBeNull();
    release.set();
    const pid = p.pid as number;
    expect(await waitFor(() => isZombie(pid), 30000)).toBe(true);
    await pollPhase();
    expect(isZombie(pid)).toBe(true);
    p.joinSync();
    expect(procStat(pid)).toBeNull();
    expect(p.exitCode).toBe(0);
  });
});
