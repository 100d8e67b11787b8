/**
 * Resident memory of the shared heap, measured in child processes (bounds,
 * never times): blocks dropped in a synchronous loop are reused without the
 * event loop, and a big new array does not touch its pages.
 */
import { jsonLines, runFixture } from './helpers';

interface LoopFigures {
  before: number;
  peak: number;
  liveKb: number;
  zeroAfterReuse: boolean;
}

interface BigFigures {
  before: number;
  after: number;
  length: number;
  ends: number[];
}

function measure<T>(mode: string): T {
  const run = runFixture('heap_sync_loop.js', [mode]);
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  return jsonLines<T>(run.stdout)[0];
}

/** What V8 may keep before a collection finds dropped buffers, and the heap's own arenas. */
const SLACK_KB = 256 * 1024;

test('30,000 RawArray(100 KiB) in a synchronous loop keeping 10: resident memory stays within 2x live + a constant', () => {
  const figures = measure<LoopFigures>('loop');
  // Without reuse: 30,000 x 100 KiB = 2.9 GiB.
  expect(figures.peak - figures.before).toBeLessThan(2 * figures.liveKb + SLACK_KB);
  expect(figures.zeroAfterReuse).toBe(true);
}, 300000);

test('RawArray(1 GiB) does not touch its pages: new shared memory is zero already', () => {
  const figures = measure<BigFigures>('big');
  expect(figures.length).toBe(1024 * 1024 * 1024);
  expect(figures.ends).toEqual([0, 0]);
  expect(figures.after - figures.before).toBeLessThan(64 * 1024);
}, 300000);
