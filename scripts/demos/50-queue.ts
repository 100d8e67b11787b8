/**
 * The seeds' Queue example, in TypeScript, as Python's
 *
 * ```python
 * def f(q):
 *     q.put([42, None, 'hello'])
 *
 * q = Queue()
 * p = Process(target=f, args=(q,))
 * p.start()
 * print(q.get())    # prints "[42, None, 'hello']"
 * p.join()
 * ```
 *
 * `null` stands for Python's `None`. The child's put is in the queue when it
 * returns: the child may exit at once, the parent still gets the item.
 */
import * as mp from '../..';

function f(q: mp.Queue<unknown[]>): void {
  q.putSync([42, null, 'hello']);
}

async function main(): Promise<void> {
  const q = new mp.Queue<unknown[]>();
  const p = new mp.Process({ target: f, args: [q] });
  p.start();
  console.log(await q.get()); // [ 42, null, 'hello' ]
  await p.join();
  q.close();
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
