/**
 * Workers fill a shared dict, as Python's Manager example:
 *
 * ```python
 * def f(d, l, i):
 *     d[i] = i * i
 *     l.append(i)
 *
 * with Manager() as manager:
 *     d = manager.dict(); l = manager.list()
 *     ps = [Process(target=f, args=(d, l, i)) for i in range(4)]
 *     ...
 *     print(d, l)
 * ```
 *
 * The dict and the list live in the manager's server process; each worker
 * gets proxies (as Process arguments) whose calls go to that server.
 */
import * as mp from '../..';

async function f(d: mp.DictProxy<number, number>, l: mp.ListProxy<number>, i: number): Promise<void> {
  await d.set(i, i * i);
  l.appendSync(i); // the blocking twin
}

async function main(): Promise<void> {
  await using manager = await mp.Manager();
  const d = await manager.dict<number, number>();
  const l = await manager.list<number>();
  const workers = [0, 1, 2, 3].map((i) => new mp.Process({ target: f, args: [d, l, i] }));
  for (const w of workers) w.start();
  for (const w of workers) await w.join();
  console.log('dict:', await d.toObject());
  const items = await l.toArray();
  console.log('list (in the order the workers appended):', items);
  await l.sort();
  console.log('sorted:', await l.toArray());
}

main().catch((error: Error) => {
  if ((error as { code?: string }).code === 'ERR_MANAGER_NO_CONNECTION') console.log(`skipped: ${error.message}`);
  else {
    console.error(error);
    process.exitCode = 1;
  }
});
