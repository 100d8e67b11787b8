/**
 * A queue served to other machines, as Python's documentation shows with
 * `QueueManager` (two processes on 127.0.0.1 stand in for two machines):
 *
 * ```python
 * class QueueManager(BaseManager): pass
 * QueueManager.register('get_queue', callable=lambda: queue)
 * m = QueueManager(address=('', 50000), authkey=b'abracadabra')
 * m.get_server().serve_forever()
 * # on another machine:
 * QueueManager.register('get_queue')
 * m = QueueManager(address=('foo.bar.org', 50000), authkey=b'abracadabra')
 * m.connect(); queue = m.get_queue(); queue.put('hello')
 * ```
 *
 * The "server machine" is a child process serving on a free port; the
 * "client machine" (this process) connects, puts and gets; a client with a
 * wrong authkey is refused before any call.
 */
import * as mp from '../..';

class QueueManager extends mp.BaseManager {}

/** The server machine: serves one queue on 127.0.0.1, tells its port through `ready`, serves until killed. */
async function serve(ready: mp.SharedValue<number>): Promise<void> {
  const queue = new mp.managers.Queue();
  QueueManager.register('getQueue', { callable: () => queue });
  const server = new QueueManager({ address: ['127.0.0.1', 0], authkey: 'abracadabra' }).getServer();
  ready.value = (server.address as [string, number])[1];
  await server.serveForever();
}

async function main(): Promise<void> {
  const port = mp.RawValue('i', 0);
  const started = new mp.Event();
  const machine = new mp.Process({
    target: async (ready: mp.SharedValue<number>, event: mp.Event) => {
      const serving = serve(ready); // listening once this returns (or failed: port stays 0)
      event.set();
      await serving;
    },
    args: [port, started],
  });
  machine.start();
  await started.wait();
  if (port.value === 0) {
    await machine.join();
    console.log('skipped: the server could not listen (see its error above)');
    return;
  }
  console.log(`server "machine" serving on 127.0.0.1:${port.value}`);

  QueueManager.register('getQueue');
  const client = new QueueManager({ address: ['127.0.0.1', port.value], authkey: 'abracadabra' });
  await client.connect();
  const queue = (await (client as unknown as { getQueue(): Promise<mp.QueueProxy<string>> }).getQueue()) as mp.QueueProxy<string>;
  await queue.put('hello');
  await queue.put('from afar');
  console.log('got:', await queue.get(), '/', await queue.get());

  const intruder = new QueueManager({ address: ['127.0.0.1', port.value], authkey: 'wrong' });
  await intruder.connect().catch((error: Error) => console.log(`a wrong authkey: ${error.name}: ${error.message}`));

  machine.terminate();
  await machine.join();
}

main().catch((error: Error) => {
  if ((error as { code?: string }).code === 'ERR_MANAGER_NO_CONNECTION') console.log(`skipped: ${error.message}`);
  else {
    console.error(error);
    process.exitCode = 1;
  }
});
