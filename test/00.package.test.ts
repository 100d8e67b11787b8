/** The package as users load it: require() and import, by its name. */
import { jsonLines, runFixture } from './helpers';

describe('the package', () => {
  test('require() works and forks', () => {
    const run = runFixture('package_cjs.js');
    expect(run.stderr).toBe('');
    const [result] = jsonLines<{ exitcode: number; names: string[] }>(run.stdout);
    expect(result.exitcode).toBe(6);
    expect(result.names).toContain('os');
  });

  test('loading it loads only os and the errors; the rest loads on first use, as the same objects', () => {
    const run = runFixture('package_lazy.js');
    expect(run.stderr).toBe('');
    const [report] = jsonLines<{
      loadedWithPackage: string[];
      builtinsWithPackage: string[];
      mismatches: string[];
      gettersLeft: string[];
    }>(run.stdout);
    expect(report.loadedWithPackage).toEqual([]);
    expect(report.builtinsWithPackage).toEqual([]);
    expect(report.mismatches).toEqual([]);
    // Once read, every lazy export of a module is a plain value.
    for (const name of ['Process', 'getContext', 'cpuCount', 'Lock', 'Barrier', 'Value', 'Array', 'SharedMemory']) {
      expect(report.gettersLeft).not.toContain(name);
    }
  });

  test('import works, with the same names as require()', () => {
    const esm = runFixture('package_esm.mjs');
    const cjs = runFixture('package_cjs.js');
    expect(esm.stderr).toBe('');
    const [result] = jsonLines<{ exitcode: number; sameAsDefault: boolean; names: string[] }>(esm.stdout);
    expect(result.exitcode).toBe(5);
    expect(result.sameAsDefault).toBe(true);
    const cjsNames = jsonLines<{ names: string[] }>(cjs.stdout)[0].names;
    expect(result.names.filter((name) => name !== 'default')).toEqual(cjsNames);
  });
  test('node-multiprocessing/cluster: require() and import give the same names; only it loads BullMQ', () => {
    const cjs = runFixture('package_cluster.js');
    const esm = runFixture('package_cluster.mjs');
    expect(cjs.stderr).toBe('');
    expect(esm.stderr).toBe('');
    const [required] = jsonLines<{ byMainPackage: boolean; byCluster: boolean; names: string[] }>(cjs.stdout);
    const [imported] = jsonLines<{ sameAsDefault: boolean; names: string[] }>(esm.stdout);
    expect(required.byMainPackage).toBe(false);
    expect(required.byCluster).toBe(true);
    expect(required.names).toEqual(expect.arrayContaining(['Pool', 'runWorker', 'AsyncResult', 'WorkerLostError']));
    expect(imported.names).toEqual(required.names);
    expect(imported.sameAsDefault).toBe(true);
  });

  test('node-multiprocessing/cluster without bullmq says what to install', () => {
    const run = runFixture('package_cluster.js', ['missing']);
    const [result] = jsonLines<{ loaded: boolean; message: string }>(run.stdout);
    expect(result.loaded).toBe(false);
    expect(result.message).toMatch(/npm install bullmq ioredis/);
  });
});
