/**
 * The seeds' Pipe example, in TypeScript, as Python's
 *
 * ```python
 * def f(conn):
 *     conn.send([42, None, 'hello'])
 *     conn.close()
 *
 * parent_conn, child_conn = Pipe()
 * p = Process(target=f, args=(child_conn,))
 * p.start()
 * print(parent_conn.recv())   # prints "[42, None, 'hello']"
 * p.join()
 * ```
 */
import * as mp from '../..';

function f(conn: mp.Connection): void {
  conn.send([42, null, 'hello']);
  conn.close();
}

async function main(): Promise<void> {
  const [parentConn, childConn] = mp.Pipe();
  const p = new mp.Process({ target: f, args: [childConn] });
  p.start();
  console.log(await parentConn.recv()); // [ 42, null, 'hello' ]
  await p.join();
  parentConn.close();
  childConn.close();
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
