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
});
