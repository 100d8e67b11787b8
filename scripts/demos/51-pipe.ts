/**
 * The seeds' Pipe example, in TypeScript, as Python's
 *
 * ```python
 * def f(conn):
 *     conn.send([42, None, 'hello'])
 *     conn.close()
 *
 * if __name__ == '__main__':
 *     parent_conn, child_conn = Pipe()
 *     p = Process(target=f, args=(child_conn,))
 *     p.start()
 *     print(parent_conn.recv())   # prints "[42, None, 'hello']"
 *     p.join()
 * ```
 *
 * `node dist-scripts/demos/51-pipe.js [fork|spawn|forkserver]`; it runs
 * without the addon too (`NODE_MULTIPROCESSING_NO_NATIVE=1`, as on Windows).
 */
import * as mp from '../..';

/** The child's target (exported, so that spawn and forkserver children can load it). */
export function f(conn: mp.Connection): void {
  conn.send([42, null, 'hello']);
  conn.close();
}

async function main(): Promise<void> {
  const method = (process.argv[2] as mp.StartMethod | undefined) ?? mp.getStartMethod();
  const [parentConn, childConn] = mp.Pipe();
  const p = new (mp.getContext(method).Process)({ target: f, args: [childConn] });
  p.start();
  console.log(await parentConn.recv()); // [ 42, null, 'hello' ]
  await p.join();
  parentConn.close();
  childConn.close();
}

// The guard of Python's `if __name__ == '__main__'`: a spawned child that
// loads this file to find `f` does not run main() again.
if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
