/**
 * Queues and connections without the addon, as on Windows (the no-addon jest
 * project sets NODE_MULTIPROCESSING_NO_NATIVE=1): every queue and pipe lives
 * in the broker of the process that made it, children of the spawn start
 * method reach it over a Unix socket with an authkey. The seeds' examples,
 * many producers, the end of a pipe, a broker whose process has ended, a
 * wrong authkey, and nothing left behind.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import * as mp from '..';
import { fdCount } from './helpers';

/**
 * Only where the addon is off. The addon project leaves this file out, but a
 * `--testPathIgnorePatterns` on jest's command line (as `.ci/run` gives) replaces
 * the projects' own patterns; with the addon loaded, the blocking Client() of a
 * Listener in this same thread below would wait for ever.
 */
const test = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1' ? global.test : global.test.skip;

// eslint-disable-next-line @typescript-eslint/no-var-requires
const queueTargets = require('./fixtures/queue_targets.js') as {
  produce(queue: mp.Queue, producer: number, count: number): void;
  produceAsync(queue: mp.Queue, producer: number, count: number): Promise<void>;
  consumeAndMarkDone(queue: mp.JoinableQueue, count: number): Promise<void>;
  putBig(queue: mp.Queue, size: number): void;
};
// eslint-disable-next-line @typescript-eslint/no-var-requires
const connectionTargets = require('./fixtures/connection_targets.js') as {
  echoSync(conn: mp.Connection): void;
  sendBig(conn: mp.Connection, size: number): void;
};
// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/portable_targets.js') as {
  sendAndExit(conn: mp.Connection, count: number): void;
  shareAndExit(outbox: mp.Queue): void;
  serveQueue(outbox: mp.Queue): Promise<void>;
  getForever(queue: mp.Queue, ready: mp.Queue): Promise<void>;
  lendPipe(outbox: mp.Queue): Promise<void>;
};

const spawn = mp.getContext('spawn');

async function run(target: (...args: never[]) => unknown, args: unknown[]): Promise<mp.Process> {
  const p = new spawn.Process({ target: target as (...args: unknown[]) => unknown, args });
  p.start();
  return p;
}

/**
 * Starts a child that does not know the broker of this process (as a child
 * started before this process made its first queue): what it makes lives in
 * its own broker.
 */
async function runOnItsOwn(target: (...args: never[]) => unknown, args: unknown[]): Promise<mp.Process> {
  const inherited = process.env.NODE_MULTIPROCESSING_BROKER;
  delete process.env.NODE_MULTIPROCESSING_BROKER;
  try {
    return await run(target, args);
  } finally {
    if (inherited !== undefined) process.env.NODE_MULTIPROCESSING_BROKER = inherited;
  }
}

async function joinAll(processes: mp.Process[]): Promise<void> {
  for (const p of processes) {
    await p.join();
    expect(p.exitCode).toBe(0);
  }
}

test('this project runs without the addon', () => {
  expect(process.env.NODE_MULTIPROCESSING_NO_NATIVE).toBe('1');
  expect(mp.getAllStartMethods()).toEqual(['spawn']);
});

test.each(['50-queue', '51-pipe'])("the seeds' %s example runs as it is", async (demo) => {
  const script = path.join(__dirname, '..', 'dist-scripts', 'demos', `${demo}.js`);
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [script], (error, out) => (error === null ? resolve(out) : reject(error))),
  );
  expect(stdout).toBe("[ 42, null, 'hello' ]\n");
});

test('a queue in one process: maxsize, timeouts, a waiting get() answered by a later put(), bad arguments', async () => {
  const q = new mp.Queue<unknown>(2);
  const waiting = q.get();
  await q.put('late');
  expect(await waiting).toBe('late');
  q.putSync({ a: 1 });
  q.putNowait([2]);
  expect([q.qsize(), q.full(), q.empty()]).toEqual([2, true, false]);
  expect(() => q.putNowait(3)).toThrow(mp.Full);
  await expect(q.put(3, { timeout: 5 })).rejects.toBeInstanceOf(mp.Full);
  const blocked = q.put('third'); // waits for a place
  expect(q.getSync()).toEqual({ a: 1 });
  await blocked;
  expect(q.getNowait()).toEqual([2]);
  expect(await q.get({ timeout: 60000 })).toBe('third');
  expect(() => q.getNowait()).toThrow(mp.Empty);
  expect(() => q.getSync({ timeout: 5 })).toThrow(mp.Empty);
  await expect(q.get({ block: false })).rejects.toBeInstanceOf(mp.Empty);
  await expect(q.get({ timeout: -1 })).rejects.toThrow(RangeError);
  await expect(q.put((() => 1) as unknown as string)).rejects.toThrow(/obj/);
  expect(() => new mp.Queue(1.5)).toThrow(TypeError);
  q.close();
  expect(q.closed).toBe(true);
  expect(() => q.qsize()).toThrow(/closed/);
  await expect(q.get()).rejects.toThrow(/closed/);
});

test('a consumer killed while it waits in get() takes nothing; the queue stays usable', async () => {
  const q = new mp.Queue<string>();
  const ready = new mp.Queue<string>();
  const p = await run(targets.getForever, [q, ready]);
  expect(await ready.get()).toBe('waiting');
  p.kill();
  await p.join();
  expect(p.exitCode).toBe(-9);
  await q.put('kept');
  expect(await q.get()).toBe('kept');
  q.close();
  ready.close();
});

test('4 producers x 1,000 messages arrive exactly once, in order per producer', async () => {
  const q = new mp.Queue<{ producer: number; i: number }>();
  const count = 1000;
  const producers = [0, 1, 2, 3].map((producer) => run(producer % 2 === 0 ? queueTargets.produce : queueTargets.produceAsync, [q, producer, count]));
  const next = [0, 0, 0, 0];
  for (let n = 0; n < 4 * count; n++) {
    const { producer, i } = n % 2 === 0 ? await q.get() : q.getSync();
    expect(i).toBe(next[producer]);
    next[producer]++;
  }
  expect(next).toEqual([count, count, count, count]);
  await joinAll(await Promise.all(producers));
  expect(q.empty()).toBe(true);
  expect(q.qsize()).toBe(0);
  q.close();
});

test('a child echoes over a Pipe, blocking in recvSync(); once it closes, EOFError', async () => {
  const [parentEnd, childEnd] = mp.Pipe();
  const p = await run(connectionTargets.echoSync, [childEnd]);
  childEnd.close(); // the child holds its own
  const messages = [{ a: 1 }, [1, 'two', null], 12345678901234567890n, 'x'.repeat(100000)];
  for (const message of messages) {
    parentEnd.send(message);
    expect(await parentEnd.recv()).toEqual(message);
  }
  parentEnd.send(new Map([[1, 'one']]));
  expect([...(await parentEnd.recv<Map<number, string>>())]).toEqual([[1, 'one']]);
  parentEnd.send('sync');
  expect(parentEnd.recvSync()).toBe('sync');
  parentEnd.send(null); // the child returns, closing its end
  await expect(parentEnd.recv()).rejects.toBeInstanceOf(mp.EOFError);
  expect(() => parentEnd.recvSync()).toThrow(mp.EOFError);
  expect(parentEnd.poll()).toBe(true);
  await joinAll([p]);
  parentEnd.close();
});

test('a one-way pipe: all a child sent before it exited arrives, then EOFError', async () => {
  const [reader, writer] = mp.Pipe(false);
  const p = await run(targets.sendAndExit, [writer, 500]);
  writer.close();
  for (let i = 0; i < 500; i++) expect(await reader.recv()).toEqual({ i });
  await expect(reader.recv()).rejects.toBeInstanceOf(mp.EOFError);
  await joinAll([p]);
  reader.close();
});

test('a child that never uses its end of a pipe gives it up when it ends: EOFError', async () => {
  const [reader, writer] = mp.Pipe(false);
  const p = await run(targets.sendAndExit, [writer, 0]);
  writer.close();
  await expect(reader.recv()).rejects.toBeInstanceOf(mp.EOFError);
  await joinAll([p]);
  reader.close();
});

test('JoinableQueue: join() resolves once two children marked every item done', async () => {
  const q = new mp.JoinableQueue<number>();
  for (let i = 0; i < 20; i++) await q.put(i);
  const consumers = [run(queueTargets.consumeAndMarkDone, [q, 10]), run(queueTargets.consumeAndMarkDone, [q, 10])];
  await q.join();
  q.joinSync();
  expect(q.qsize()).toBe(0);
  expect(() => q.taskDone()).toThrow(/more times/);
  await joinAll(await Promise.all(consumers));
  q.close();
});

test.each([
  ['this process', run],
  ['the child', runOnItsOwn],
])("a queue made in a child (kept by %s's broker) serves the parent's puts and gets while the child lives", async (_, start) => {
  const outbox = new mp.Queue<unknown>();
  const p = await start(targets.serveQueue, [outbox]);
  const childQueue = (await outbox.get()) as mp.Queue<number | string>;
  await childQueue.put(1);
  expect(await outbox.get()).toBe(10);
  childQueue.putSync(2);
  expect(outbox.getSync()).toBe(20);
  await childQueue.put('done');
  await joinAll([p]);
  childQueue.close();
  outbox.close();
});

test('a queue and a pipe made in a child outlive it: what it put and sent arrives, then EOFError', async () => {
  const outbox = new mp.Queue<{ queue: mp.Queue; conn: mp.Connection }>();
  const p = await run(targets.shareAndExit, [outbox]);
  await joinAll([p]);
  const { queue, conn } = await outbox.get();
  expect(await queue.get()).toBe('kept by the child');
  expect(conn.recvSync()).toBe('sent by the child');
  await expect(conn.recv()).rejects.toBeInstanceOf(mp.EOFError);
  for (const object of [queue, conn, outbox]) object.close();
});

test('a queue and a pipe kept by a broker whose process has ended fail with a clear error, never hang', async () => {
  const outbox = new mp.Queue<{ queue: mp.Queue; conn: mp.Connection }>();
  const p = await runOnItsOwn(targets.shareAndExit, [outbox]);
  await joinAll([p]);
  const { queue, conn } = await outbox.get();
  await expect(queue.get()).rejects.toMatchObject({ code: 'ERR_MP_OWNER_GONE', message: expect.stringMatching(/has ended/) });
  expect(() => queue.getSync()).toThrow(/has ended/);
  expect(conn.poll()).toBe(true); // recv() answers at once
  expect(await conn.poll(null)).toBe(true);
  await expect(conn.recv()).rejects.toBeInstanceOf(mp.EOFError);
  expect(() => conn.send('x')).toThrow(/has ended/);
  queue.close();
  conn.close();
  outbox.close();
});

test('a wrong authkey is refused with AuthenticationError, by a Listener and by a broker', async () => {
  const listener = new mp.connection.Listener(null, { authkey: 'right' });
  const [acceptedWrong, connectedWrong] = await Promise.allSettled([listener.accept(), mp.connection.ClientAsync(listener.address, { authkey: 'wrong' })]);
  expect(acceptedWrong).toMatchObject({ status: 'rejected', reason: expect.any(mp.AuthenticationError) });
  expect(connectedWrong).toMatchObject({ status: 'rejected', reason: expect.any(mp.AuthenticationError) });
  const accepted = listener.accept();
  const client = mp.connection.Client(listener.address, { authkey: 'right' });
  const server = await accepted;
  client.send({ over: 'a socket' });
  expect(server.recvSync()).toEqual({ over: 'a socket' });
  client.close();
  await expect(server.recv()).rejects.toBeInstanceOf(mp.EOFError);
  server.close();
  listener.close();
  expect(fs.existsSync(listener.address as string)).toBe(false);

  // The broker of this process's queues takes only its own key.
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { theBridge } = require('../dist/broker/bridge') as { theBridge(): { self: { address: string } } };
  expect(() => mp.connection.Client(theBridge().self.address, { authkey: 'a guess' })).toThrow(mp.AuthenticationError);
});

test('wait() and waitSync() over pipes of two owners: the ready ones, or [] after the timeout', async () => {
  const [quietReader, quietWriter] = mp.Pipe(false);
  const outbox = new mp.Queue<mp.Connection>();
  const p = await runOnItsOwn(targets.lendPipe, [outbox]);
  const childsPipe = await outbox.get(); // its messages are kept by the child's broker
  expect(mp.connection.waitSync([quietReader, childsPipe], 0)).toEqual([]);
  expect(await mp.connection.wait([quietReader, childsPipe], 5)).toEqual([]);
  const waiting = mp.connection.wait([quietReader, childsPipe]);
  childsPipe.send('now');
  expect(await waiting).toEqual([childsPipe]);
  expect(mp.connection.waitSync([quietReader, childsPipe])).toEqual([childsPipe]);
  expect(childsPipe.recvSync()).toBe('now!');
  await expect(mp.connection.wait([quietReader, 3 as unknown as mp.Connection])).rejects.toThrow(TypeError);
  childsPipe.close(); // the child ends then
  await joinAll([p]);
  for (const end of [quietReader, quietWriter, outbox]) end.close();
});

test('misuse throws: use after close, a one-way end the other way, fileno()', async () => {
  const [reader, writer] = mp.Pipe(false);
  expect(() => reader.send(1)).toThrow(/read-only/);
  expect(() => writer.recvSync()).toThrow(/write-only/);
  expect(() => writer.fileno()).toThrow(expect.objectContaining({ code: 'ENOSYS' }));
  reader.close();
  expect(() => writer.send(1)).toThrow(/closed/);
  writer.close();
  expect(() => writer.send(1)).toThrow(/closed/);
  await expect(reader.recv()).rejects.toThrow(/closed/);
  const q = new mp.SimpleQueue<number>();
  q.put(1);
  expect(await q.get()).toBe(1);
  q.close();
  expect(() => q.put(2)).toThrow(/closed/);
});

test('1,000 Pipes and Queues created, used and closed leave no descriptor, thread or socket file behind', async () => {
  const threads = (): string => /Threads:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  const entries = (): string[] => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('mp-') && name.includes(String(process.pid)));
  const useOnce = async (): Promise<void> => {
    const [a, b] = mp.Pipe();
    a.send(1);
    await b.recv();
    a.close();
    b.close();
    const q = new mp.JoinableQueue();
    q.putSync(1);
    await q.get();
    q.taskDone();
    q.close();
  };
  await useOnce(); // the I/O thread starts with the first
  const before = { fds: fdCount(), threads: threads(), entries: entries() };
  for (let i = 0; i < 1000; i++) await useOnce();
  expect({ fds: fdCount(), threads: threads(), entries: entries() }).toEqual(before);
});

test('64 MiB through a Pipe and through a Queue from a child arrive intact', async () => {
  const size = 64 * 1024 * 1024;
  const expected = Buffer.allocUnsafe(size);
  for (let k = 0; k < size; k++) expected[k] = k % 251;
  const [reader, writer] = mp.Pipe(false);
  const q = new mp.Queue<Buffer>();
  const processes = [await run(connectionTargets.sendBig, [writer, size]), await run(queueTargets.putBig, [q, size])];
  writer.close();
  expect((await reader.recvBytes()).equals(expected)).toBe(true);
  expect(Buffer.from(await q.get()).equals(expected)).toBe(true);
  await joinAll(processes);
  reader.close();
  q.close();
});

test('a Python peer talks to our Listener and Client (Python 3 multiprocessing.connection)', async () => {
  const python = (args: string[]): { port: Promise<number>; output: Promise<string> } => {
    const child = execFile('python3', [path.join(__dirname, 'fixtures', 'connection_python.py'), ...args]);
    let out = '';
    const port = new Promise<number>((resolve) => child.stdout?.on('data', (chunk: string) => (out += chunk).includes('\n') && resolve(Number(out))));
    const output = new Promise<string>((resolve, reject) => child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`python3 exited with ${code}`)))));
    return { port, output };
  };
  const listener = new mp.connection.Listener(['127.0.0.1', 0], { authkey: 'shared key' });
  const connecting = python(['connect', 'shared key', '127.0.0.1', String((listener.address as [string, number])[1])]);
  const server = await listener.accept();
  expect((await server.recvBytes()).toString()).toBe('hello from python');
  server.sendBytes(Buffer.from('hello from node'));
  expect((await connecting.output).trim()).toBe('hello from node');
  server.close();
  listener.close();

  const listening = python(['listen', 'shared key']);
  const client = mp.connection.Client(['127.0.0.1', await listening.port], { authkey: 'shared key' });
  client.sendBytes(Buffer.from('abc'));
  expect(client.recvBytesSync().toString()).toBe('cba');
  client.close();
  await listening.output;
});

test("a subclass of Queue works, its super calls reaching this path's methods", async () => {
  class Doubling<T> extends mp.Queue<T> {
    override putSync(obj: T): void {
      super.putSync(obj);
      super.putSync(obj);
    }
  }
  const q = new Doubling<number>();
  expect(q).toBeInstanceOf(Doubling);
  expect(q).toBeInstanceOf(mp.Queue);
  q.putSync(7);
  expect([await q.get(), q.getSync(), q.qsize()]).toEqual([7, 7, 0]);
  q.close();
});
