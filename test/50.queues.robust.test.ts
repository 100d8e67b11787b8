/**
 * What a Queue's ring survives (native/queue_ring.cc, "Deaths"): producers and
 * consumers SIGKILLed at the awkward instants (in the reserve lock, part-way
 * through a large item, as the assembler), its head and tail wrapping many
 * times, a full ring, many producers and consumers at once.
 */
import * as mp from '..';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const targets = require('./fixtures/queue_targets.js') as {
  produce(queue: mp.Queue, producer: number, count: number): void;
  produceMixed(queue: mp.Queue, producer: number, count: number): void;
  putPartThenWait(queue: mp.Queue, value: unknown, slots: number, ready: mp.Event): Promise<void>;
  takePartThenWait(queue: mp.Queue, slots: number, ready: mp.Event): Promise<void>;
  drainPartThenWait(queue: mp.Queue, ready: mp.Event): Promise<void>;
  forward(queue: mp.Queue, results: mp.SimpleQueue): Promise<void>;
  getForever(queue: mp.Queue, ready: mp.Event): Promise<void>;
  getSyncForever(queue: mp.Queue): void;
};

/** The internals these tests reach: the native ring's state. */
interface QueueInternals {
  _ring: { ring: { _state(): [number, number, number, number, number, number] } };
}

/** `[head, tail, reserve lock holder, assembler, consumers registered asleep, bell]` of the queue's ring. */
function ringState(q: mp.Queue): [number, number, number, number, number, number] {
  return (q as unknown as QueueInternals)._ring.ring._state();
}

/** Bytes of items the ring holds (src/queues/ring.ts). */
const CAPACITY = 1024 * 1024;
/** Larger than a slot of the ring: written in several. */
const LARGE = 'y'.repeat(300_000);

const children: mp.Process[] = [];

function start(target: (...args: never[]) => unknown, args: unknown[]): mp.Process {
  const p = new mp.Process({ target: target as (...args: unknown[]) => unknown, args });
  children.push(p);
  p.start();
  return p;
}

afterEach(async () => {
  for (const p of children.splice(0)) {
    if (p.exitCode === null) p.kill();
    await p.join();
  }
});

/** Waits (turning the event loop) until `ready()` holds: the shared state says a child got there. */
async function until(ready: () => boolean): Promise<void> {
  while (!ready()) await new Promise((resolve) => setImmediate(resolve));
}

async function killAndJoin(p: mp.Process): Promise<void> {
  p.kill();
  await p.join();
  expect(p.exitCode).toBe(-9);
}

describe('a producer SIGKILLed', () => {
  test('while it held the reserve lock: the next put takes the lock over', async () => {
    const q = new mp.Queue<string>();
    const ready = new mp.Event();
    const p = start(targets.putPartThenWait, [q, 'never', 0, ready]);
    await ready.wait();
    expect(ringState(q)[2]).toBe(p.pid); // the lock is the child's
    await killAndJoin(p);
    q.putSync('next');
    expect(await q.get()).toBe('next');
    expect(q.empty()).toBe(true);
    q.close();
  });

  test('part-way through a large item: its slots are dropped, its place given back, the queue goes on', async () => {
    const q = new mp.Queue<string>();
    const ready = new mp.Event();
    const p = start(targets.putPartThenWait, [q, LARGE, 1, ready]);
    await ready.wait();
    expect(q.empty()).toBe(false); // its first slot is in
    await killAndJoin(p);
    q.putSync('next');
    expect(q.getSync()).toBe('next');
    expect(q.qsize()).toBe(0);
    expect(q.empty()).toBe(true);
    q.close();
  });

  test('part-way through a large item while a consumer assembles it: the consumer drops it and takes the next', async () => {
    const q = new mp.Queue<string | null>();
    const results = new mp.SimpleQueue<string | null>();
    const ready = new mp.Event();
    const producer = start(targets.putPartThenWait, [q, LARGE, 2, ready]);
    await ready.wait();
    start(targets.forward, [q, results]);
    await until(() => ringState(q)[3] !== 0); // the consumer is the assembler, waiting for the rest
    await killAndJoin(producer);
    q.putSync('next');
    q.putSync(null);
    expect(await results.get()).toBe('next');
    expect(await results.get()).toBe(null);
    expect(q.qsize()).toBe(0);
    q.close();
    results.close();
  });
});

describe('a consumer SIGKILLed', () => {
  test('as the assembler of a large item before taking any of it: the next consumer gets it whole', async () => {
    const q = new mp.Queue<string>();
    q.putSync(LARGE);
    q.putSync('next');
    const ready = new mp.Event();
    const p = start(targets.takePartThenWait, [q, 0, ready]);
    await ready.wait();
    expect(ringState(q)[3]).toBe(p.pid);
    await killAndJoin(p);
    expect(q.getSync()).toBe(LARGE);
    expect(await q.get()).toBe('next');
    q.close();
  });

  test('part-way through a large item: that item went with it, its place is given back, the queue stays in step', async () => {
    const q = new mp.Queue<string>();
    q.putSync(LARGE);
    q.putSync('next');
    const ready = new mp.Event();
    const p = start(targets.takePartThenWait, [q, 1, ready]);
    await ready.wait();
    await killAndJoin(p);
    expect(await q.get()).toBe('next');
    expect(q.qsize()).toBe(0);
    expect(q.empty()).toBe(true);
    q.close();
  });

  test('while draining the bell: the next put takes its place and rings, a sleeping consumer wakes', async () => {
    const q = new mp.Queue<string | null>();
    const results = new mp.SimpleQueue<string | null>();
    start(targets.forward, [q, results]);
    await until(() => ringState(q)[4] === 1); // the consumer sleeps on the bell
    const ready = new mp.Event();
    const drainer = start(targets.drainPartThenWait, [q, ready]);
    await ready.wait();
    expect(ringState(q)[5]).toBe((drainer.pid! | 0x80000000) >>> 0); // its mark: a live drainer, which would look again
    await killAndJoin(drainer);
    q.putSync('after');
    expect(await results.get()).toBe('after');
    q.putSync(null);
    expect(await results.get()).toBe(null);
    q.close();
    results.close();
  });

  test.each([
    ['await get()', (q: mp.Queue) => start(targets.getForever, [q, new mp.Event()])],
    ['getSync()', (q: mp.Queue) => start(targets.getSyncForever, [q])],
  ])('while asleep in %s: the next consumer to sleep frees its registration, the queue goes on', async (_, consume) => {
    const q = new mp.Queue<string>();
    const p = consume(q);
    await until(() => ringState(q)[4] === 1); // registered asleep on the bell
    await killAndJoin(p);
    expect(ringState(q)[4]).toBe(1); // left behind: producers would ring for it
    await expect(q.get({ timeout: 0 })).rejects.toBeInstanceOf(mp.Empty); // registers: frees the dead one's
    expect(ringState(q)[4]).toBe(0);
    expect(() => q.getSync({ timeout: 0 })).toThrow(mp.Empty);
    expect(ringState(q)[4]).toBe(0);
    q.putSync('after');
    expect(await q.get()).toBe('after');
    q.close();
  });
});

test('the ring wraps many times: items of every size, large ones across the end, intact and in order', async () => {
  const q = new mp.Queue<string>();
  let seed = 7;
  const random = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n) + 1;
  const sizes = [...Array.from({ length: 400 }, () => random(3000)), 131_000, 140_000, 1, 2, 3, 300_000];
  const sent: string[] = [];
  let total = 0;
  for (let round = 0; total < 4 * CAPACITY; round++) {
    // A few items in, as many out once 20 wait: head follows tail round and round.
    for (let k = 0; k < 5; k++) {
      const size = sizes[(round * 5 + k) % sizes.length];
      const item = `${round}:${k}:`.padEnd(size, String.fromCharCode(97 + ((round + k) % 26)));
      q.putSync(item);
      sent.push(item);
      total += size;
    }
    while (sent.length > 20) expect(q.getSync()).toBe(sent.shift()); // at most ~900 KB waiting: it fits
  }
  while (sent.length > 0) expect(await q.get()).toBe(sent.shift());
  expect(q.empty()).toBe(true);
  const [head, tail] = ringState(q);
  expect(head).toBe(tail);
  expect(tail).toBeGreaterThan(4 * CAPACITY);
  q.close();
});

test('a full ring: a producer waits for room (its puts resume as the consumer takes), nothing is lost', async () => {
  const q = new mp.Queue<{ producer: number; i: number }>();
  const count = 60_000; // about 2 MiB of items: twice what the ring holds
  start(targets.produce, [q, 0, count]);
  await until(() => {
    const [head, tail] = ringState(q);
    return tail - head > CAPACITY - 64; // full: the producer waits
  });
  for (let i = 0; i < count; i++) expect((await q.get()).i).toBe(i);
  expect(q.empty()).toBe(true);
  q.close();
});

test('4 producers of small and large items at once: each item once, intact, in order per producer', async () => {
  const q = new mp.Queue<{ producer: number; i: number; pad: string }>();
  const count = 60;
  const producers = [0, 1, 2, 3].map((producer) => start(targets.produceMixed, [q, producer, count]));
  const next = [0, 0, 0, 0];
  for (let n = 0; n < 4 * count; n++) {
    const { producer, i, pad } = await q.get();
    expect(i).toBe(next[producer]);
    expect(pad).toBe(i % 3 === 0 ? 'x'.repeat(150000 + i) : '');
    next[producer]++;
  }
  for (const p of producers) await p.join();
  expect(producers.map((p) => p.exitCode)).toEqual([0, 0, 0, 0]);
  expect(q.empty()).toBe(true);
  q.close();
});

test('3 consumers and 2 producers: every item delivered exactly once, in order per producer', async () => {
  const q = new mp.Queue<{ producer: number; i: number } | null>();
  const results = new mp.SimpleQueue<{ producer: number; i: number } | null>();
  const count = 3000;
  const consumers = [0, 1, 2].map(() => start(targets.forward, [q, results]));
  const producers = [0, 1].map((producer) => start(targets.produce, [q, producer, count]));
  for (const p of producers) await p.join();
  for (let k = 0; k < consumers.length; k++) q.putSync(null);
  const seen = [new Set<number>(), new Set<number>()];
  let ends = 0;
  while (ends < consumers.length) {
    const item = await results.get();
    if (item === null) {
      ends++;
      continue;
    }
    expect(seen[item.producer].has(item.i)).toBe(false);
    seen[item.producer].add(item.i);
  }
  expect(seen.map((s) => s.size)).toEqual([count, count]);
  for (const p of consumers) await p.join();
  q.close();
  results.close();
});
