/**
 * starmapAsync() with ready() polling, in a pool used with `await using`
 * (Python's `with`). The TypeScript twin of:
 *
 *     def add(a, b):
 *         return a + b
 *
 *     if __name__ == '__main__':
 *         with Pool(processes=4) as pool:
 *             results = pool.starmap_async(add, [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14)])
 *             while not results.ready():
 *                 # Do other work while waiting for results
 *                 pass
 *             output = results.get()
 *             print(output)
 *
 * Python's loop spins; here the event loop must turn for the results to come
 * in, so the "other work" is awaited: wait(ms) gives it a turn.
 *
 * `node dist-scripts/demos/61-pool-starmap-async.js [fork|spawn|forkserver]`
 */
import * as mp from '../..';

/** The task (exported: spawn and forkserver workers load it by reference). */
export function add(a: number, b: number): number {
  return a + b;
}

async function main(): Promise<void> {
  const method = (process.argv[2] as mp.StartMethod | undefined) ?? mp.getStartMethod();
  await using pool = new (mp.getContext(method).Pool)({ processes: 4 });
  const results = pool.starmapAsync(add, [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14]]);
  let turns = 0;
  while (!results.ready()) {
    turns++; // other work while waiting for the results
    await results.wait(1);
  }
  const output = await results.get();
  console.log(output);
  console.log(`(${turns} turns of other work while waiting; successful: ${results.successful()})`);
}

if (require.main === module) void main();
