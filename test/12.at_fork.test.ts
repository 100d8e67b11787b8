/**
 * os.registerAtFork(): hooks are checked when registered, and one that throws
 * is reported (as Python's "Exception ignored in...") without stopping the
 * fork or sending the child down the parent's path.
 */
import * as mp from '..';
import { jsonLines, runFixture } from './helpers';

describe('registerAtFork()', () => {
  test.each([
    [5, /hooks must be an object/],
    [null, /hooks must be an object/],
    [() => {}, /hooks must be an object/],
    [{ before: 5 }, /hooks.before must be a function, got number 5/],
    [{ afterInChild: 'x' }, /hooks.afterInChild must be a function/],
    [{ afterinchild: () => {} }, /unknown key 'afterinchild' \(did you mean 'afterInChild'\?\)/],
    [{}, /at least one of before, afterInParent, afterInChild/],
  ])('refuses %p at registration, with a TypeError', (hooks, message) => {
    expect(() => mp.os.registerAtFork(hooks as unknown as mp.os.AtForkHooks)).toThrow(TypeError);
    expect(() => mp.os.registerAtFork(hooks as unknown as mp.os.AtForkHooks)).toThrow(message);
  });

  test('a refused registration leaves later forks working', () => {
    expect(() => mp.os.registerAtFork({ before: 5 } as unknown as mp.os.AtForkHooks)).toThrow(TypeError);
    const pid = mp.os.fork();
    if (pid === 0) mp.os._exit(4);
    expect(mp.os.waitstatusToExitcode(mp.os.waitpid(pid)[1])).toBe(4);
  });

  test('a hook that throws is reported on stderr and ignored; the child carries on in its own branch', () => {
    const run = runFixture('os_at_fork_throws.js');
    expect(run.status).toBe(0);
    const lines = jsonLines(run.stdout);
    expect(lines).toEqual([
      { who: 'child', ran: ['afterInChild'] },
      { who: 'parent', ran: ['afterInParent'], childExit: 0 },
    ]);
    expect(run.stderr).toContain('Exception ignored in at-fork hook before (throwingBefore):\nError: boom before');
    expect(run.stderr).toContain('Exception ignored in at-fork hook afterInChild (throwingInChild):\nError: boom in child');
    expect(run.stderr).toContain('Exception ignored in at-fork hook afterInParent (throwingInParent):\nError: boom in parent');
  });
});
