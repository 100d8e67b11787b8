/**
 * How values cross into another process (src/reduction.ts): shared objects
 * nested anywhere in plain data are reduced and rebuilt; what cannot cross
 * gets a TypeError naming it. Under jest, v8.deserialize makes objects of
 * another realm than the test's: the rebuild must not depend on the realm.
 */
import * as mp from '..';
import { dumps, loads } from '../dist/reduction';

describe('dumps() / loads()', () => {
  test('shared objects nested in objects, arrays, Maps and Sets arrive rebuilt', () => {
    const lock = new mp.Lock();
    const counter = mp.Value('i', 7);
    const value = { deep: { list: [1, { lock }], map: new Map([['counter', counter]]), set: new Set([lock]) } };
    const copy = loads(dumps(value)) as typeof value;
    const rebuiltLock = (copy.deep.list[1] as { lock: InstanceType<typeof mp.Lock> }).lock;
    expect(rebuiltLock).toBeInstanceOf(mp.Lock);
    expect(rebuiltLock).not.toBe(lock);
    expect(lock.acquireSync()).toBe(true);
    expect(rebuiltLock.acquireSync({ block: false })).toBe(false); // the same lock underneath
    lock.release();
    const rebuiltCounter = copy.deep.map.get('counter')!;
    expect(rebuiltCounter.value).toBe(7);
    counter.value = 8;
    expect(rebuiltCounter.value).toBe(8);
    expect([...copy.deep.set][0]).toBeInstanceOf(mp.Lock);
  });

  test('plain data round-trips as structured clone', () => {
    const value = { n: 1, s: 'two', d: new Date(3), list: [null, true, 4.5], bytes: new Uint8Array([6]) };
    expect(loads(dumps(value))).toEqual(value);
  });

  test('what JSON would read otherwise than structured clone takes the clone path: -0, NaN, toJSON (own or inherited), inherited keys', () => {
    const odd = { zero: -0, nan: NaN, big: Infinity, own: { toJSON: 'not called', kept: 1 } };
    expect(loads(dumps(odd))).toEqual(odd);
    const proto = { inherited: 1 };
    const child = Object.assign(Object.create(proto) as object, { own: 2 });
    expect(loads(dumps({ child }))).toEqual({ child: { own: 2 } });
    Object.defineProperty(Object.prototype, 'toJSON', { value: () => 'replaced', configurable: true, writable: true });
    try {
      expect(loads(dumps({ a: 1, nested: { b: [2] } }))).toEqual({ a: 1, nested: { b: [2] } });
    } finally {
      delete (Object.prototype as { toJSON?: unknown }).toJSON;
    }
  });

  test('a function anywhere gets a TypeError naming where it is', () => {
    expect(() => dumps({ options: { callback: () => 1 } }, 'args[1]')).toThrow(TypeError);
    expect(() => dumps({ options: { callback: () => 1 } }, 'args[1]')).toThrow(/args\[1\]\.options\.callback/);
  });
});
