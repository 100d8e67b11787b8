/**
 * A fork Process started from the callback of an immediate, while other
 * immediates of the same batch are pending (Node runs a batch in one loop,
 * which the child leaves mid-way): the child runs its async target to the end
 * on a live event loop, and the parent's other immediates run in the parent
 * only. Run in a fixture: a clean event loop, whose batches are the fixture's.
 */
import { jsonLines, runFixture } from './helpers';

const NO_ADDON = process.env.NODE_MULTIPROCESSING_NO_NATIVE === '1';

(NO_ADDON ? test.skip : test)('a child forked from the first, middle or last immediate of a batch runs to the end; the others run in the parent only', () => {
  const run = runFixture('process_fork_in_immediates.js', []);
  expect(run.stderr).toBe('');
  expect(jsonLines(run.stdout)).toEqual([
    { position: 0, exitCode: 0, ranInParent: [1, 2] },
    { position: 1, exitCode: 0, ranInParent: [0, 2] },
    { position: 2, exitCode: 0, ranInParent: [0, 1] },
  ]);
});
