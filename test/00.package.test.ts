/** The package as users load it: require() and import, by its name; and as `npm pack` ships it. */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { jsonLines, runFixture } from './helpers';

const ROOT = path.join(__dirname, '..');

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
    for (const name of ['Process', 'getContext', 'cpuCount', 'Lock', 'Barrier', 'Value', 'Array', 'SharedMemory', 'Manager', 'managers', 'Pool']) {
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

  test('npm pack ships the docs the README links to, the repository fields, and no sources that cannot run from an install', () => {
    const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
    expect(pack.status).toBe(0);
    const files = new Set((JSON.parse(pack.stdout) as [{ files: { path: string }[] }])[0].files.map((file) => file.path));
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\((?!https?:)([^)#]+)(?:#[^)]*)?\)/g)].map((match) => match[1]);
    expect(linked.length).toBeGreaterThan(0);
    for (const link of linked) expect([link, files.has(link)]).toEqual([link, true]);
    for (const file of ['package.json', 'README.md', 'LICENSE', 'binding.gyp', 'dist/index.js', 'dist/index.mjs', 'dist/index.d.ts']) {
      expect([file, files.has(file)]).toEqual([file, true]);
    }
    // The demos and benchmarks need the dev build (dist-scripts/, devDependencies): not shipped.
    // scripts/install.js is the install step (prebuilds first, then a source build).
    expect([...files].filter((file) => (file.startsWith('scripts/') && file !== 'scripts/install.js') || file.includes('tsbuildinfo'))).toEqual([]);
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, { url?: string } | string>;
    expect(manifest.repository).toMatchObject({ type: 'git', url: expect.stringMatching(/^git\+https:/) });
    expect(manifest.homepage).toEqual(expect.stringMatching(/^https:/));
    expect(manifest.bugs).toMatchObject({ url: expect.stringMatching(/^https:/) });
  });
});
