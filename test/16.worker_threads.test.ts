/**
 * Worker threads that use the package start and end safely, whether the main
 * thread loaded it first or not at all until they ended: per-environment
 * native state with cleanup hooks, and an addon that stays loaded (a worker's
 * exit used to unload it under V8's feet: SIGSEGV; waitpidAsync in a worker
 * left a prepare handle on its loop: SIGABRT).
 */
import { runFixture, jsonLines } from './helpers';

describe.each(['main-first', 'workers-first'])('20 workers using the package, %s', (order) => {
  test('each works and ends, and so does the process', () => {
    const run = runFixture('workers_use_package.js', [order]);
    expect(run.signal).toBeNull();
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const [{ reports }] = jsonLines<{ reports: { ok: boolean; exitCode: number | null; code: number }[] }>(run.stdout);
    const exitCode = order === 'main-first' ? 5 : null;
    expect(reports).toEqual(Array(20).fill({ ok: true, exitCode, code: 1 })); // 1: terminated
  });
});
