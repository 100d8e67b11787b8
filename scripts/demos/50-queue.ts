/**
 * The seeds' Queue example, in TypeScript, as Python's
 *
 * ```python
 * def f(q):
 *     q.put([42, None, 'hello'])
 *
 * if __name__ == '__main__':
 *     q = Queue()
 *     p = Process(target=f, args=(q,))
 *     p.start()
 *     print(q.get())    # prints "[42, None, 'hello']"
 *     p.join()
 * ```
 *
 * `null` stands for Python's `None`. The child's put is in the queue when it
 * returns: the child may exit at once, the parent still gets the item.
 *
 * `node dist-scripts/demos/50-queue.js [fork|spawn|forkserver]`; it runs
 * without the addon too (`NODE_MULTIPROCESSING_NO_NATIVE=1`, as on Windows).
 */
import * as mp from '../..';

/** The child's target (exported, so that spawn and forkserver children can load it). */
export function f(q: mp.Queue<unknown[]>): void {
  q.putSync([42, null, 'hello']);
}

async function main(): Promise<void> {
  const method = (process.argv[2] as mp.StartMethod | undefined) ?? mp.getStartMethod();
  const q = new mp.Queue<unknown[]>();
  const p = new (mp.getContext(method).Process)({ target: f, args: [q] });
  p.start();
  console.log(await q.get()); // [ 42, null, 'hello' ]
  await p.join();
  q.close();
}

// The guard of Python's `if __name__ == '__main__'`: a spawned child that
// loads this file to find `f` does not run main() again.
if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
