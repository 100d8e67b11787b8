/**
 * A BaseManager of our own, as Python's documentation builds one: typeids
 * registered with a class (made with `new`), exposed names, methodToTypeid; a
 * server started with an initializer under each start method; a second
 * manager connect()ing to it with the authkey; shutdown, address, await using.
 */
import * as mp from '..';
import { procStat } from './helpers';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/managers_targets') as {
  Counter: new (start?: number) => object;
  initCounterServer(value: string): void;
  startValue(): { get(): string };
};

interface CounterProxy extends mp.BaseProxy {
  increment(by?: number): Promise<number>;
  incrementSync(by?: number): number;
  value(): Promise<number>;
  split(): Promise<CounterProxy>;
}

interface CounterManager extends mp.BaseManager {
  Counter(start?: number): Promise<CounterProxy>;
  CounterSync(start?: number): CounterProxy;
  startValue(): Promise<mp.BaseProxy & { get(): Promise<string> }>;
}

class CounterManagerBase extends mp.BaseManager {}
CounterManagerBase.register('Counter', { callable: targets.Counter, exposed: ['increment', 'value', 'split'], methodToTypeid: { split: 'Counter' } });
CounterManagerBase.register('startValue', { callable: targets.startValue });

/** A client's view of the same typeids: no callables (the server has them). */
class CounterClient extends mp.BaseManager {}
CounterClient.register('Counter', { exposed: ['increment', 'value', 'split'] });

describe.each(mp.getAllStartMethods())('a BaseManager of our own typeids, started under %s', (method) => {
  test('register(), start(initializer, initargs), factories, exposed, methodToTypeid, connect() from another manager, shutdown()', async () => {
    const manager = new CounterManagerBase({ context: mp.getContext(method) }) as CounterManager;
    expect(manager.address).toBeNull();
    await manager.start(targets.initCounterServer, ['from the initializer']);
    expect(typeof manager.address).toBe('string');
    const serverPid = manager._process?.pid as number;
    try {
      const counter = await manager.Counter(10);
      expect(await counter.increment(5)).toBe(15);
      expect(counter.incrementSync()).toBe(16);
      expect((counter as unknown as Record<string, unknown>).secret).toBeUndefined(); // not exposed: no method here
      await expect(counter._callMethod('secret')).rejects.toMatchObject({ name: 'AttributeError' }); // nor there
      const half = await counter.split(); // kept in the server, answered as a proxy of typeid Counter
      expect(half._typeid).toBe('Counter');
      expect(await half.increment()).toBe(17);
      expect(await counter.value()).toBe(16);
      const made = await manager.startValue(); // an AutoProxy of its object's public methods
      expect(await made.get()).toBe('from the initializer');

      const client = new CounterClient({ address: manager.address, authkey: manager.authkey }) as unknown as CounterManager;
      await client.connect();
      const remote = await client.Counter(1);
      expect(await remote.increment(1)).toBe(2);
      await client.shutdown(); // a connected manager just stops using the server
      expect(await counter.value()).toBe(16);

      const intruder = new CounterClient({ address: manager.address, authkey: 'not the key' });
      await expect(intruder.connect()).rejects.toBeInstanceOf(mp.AuthenticationError);
    } finally {
      await manager.shutdown();
    }
    expect(procStat(serverPid)).toBeNull();
    await expect(manager.start()).rejects.toThrow(/already/);
  });
});

test('an initializer that throws: start() rejects with its error, no server is left', async () => {
  const manager = new CounterManagerBase();
  await expect(manager.start(() => {
    throw new RangeError('bad start');
  })).rejects.toMatchObject({ name: 'RangeError', message: 'bad start' });
  const pid = manager._process?.pid as number;
  while (procStat(pid) !== null) await new Promise((resolve) => setTimeout(resolve, 10)); // it leaves and is reaped
});

test('await using shuts a started BaseManager down; its address was a Unix socket that is gone', async () => {
  let pid = 0;
  {
    await using manager = new CounterManagerBase() as CounterManager;
    await manager.start();
    pid = manager._process?.pid as number;
    expect(await (await manager.Counter()).increment()).toBe(1);
  }
  expect(procStat(pid)).toBeNull();
});
