/**
 * The npm tarball installed where there is no C++ compiler: the prebuilt addon
 * of each supported Node (scripts/prebuild.js) is what runs, on Node 20 and 24.
 * The Node binaries are the official ones from the npm registry, kept in
 * .cache/node/ by scripts/node-dist.js (CI fetches them; see .ci/run).
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { jsonLines } from './helpers';

const ROOT = path.join(__dirname, '..');
const CACHE = path.join(ROOT, '.cache', 'node');

/** The newest node binary of `major` in the cache, or this one when it is of that major. */
function nodeBinary(major: number): string | null {
  const prefix = `node-${process.platform}-${process.arch}-${major}.`;
  const cached = fs.existsSync(CACHE)
    ? fs
        .readdirSync(CACHE)
        .filter((name) => name.startsWith(prefix) && fs.existsSync(path.join(CACHE, name, 'bin', 'node')))
        .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }))
    : [];
  if (cached.length > 0) return path.join(CACHE, cached[cached.length - 1], 'bin', 'node');
  return process.versions.node.startsWith(`${major}.`) ? process.execPath : null;
}

/** npm's own entry point, run by the node under test. */
function npmCli(): string {
  const npm = process.env.npm_execpath ?? fs.realpathSync(execFileSync('which', ['npm'], { encoding: 'utf8' }).trim());
  return npm.endsWith('.js') ? npm : path.join(path.dirname(npm), 'npm-cli.js');
}

/**
 * How this machine's npm reaches the registry: its cache, its config files (the
 * global one lives beside the machine's node, not beside the node under test),
 * its CA and proxy. Without them an install behind a TLS-inspecting proxy fails
 * with SELF_SIGNED_CERT_IN_CHAIN. Nothing that names this project (such as
 * npm_config_local_prefix) is passed: the install must not see the repository.
 */
function networkSettings(): NodeJS.ProcessEnv {
  const npmKeys = ['cache', 'cafile', 'ca', 'strict_ssl', 'registry', 'proxy', 'https_proxy', 'noproxy', 'userconfig', 'globalconfig'];
  const envKeys = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy'];
  const settings: NodeJS.ProcessEnv = {};
  for (const key of [...npmKeys.map((name) => `npm_config_${name}`), ...envKeys]) {
    if (process.env[key] !== undefined) settings[key] = process.env[key];
  }
  settings.npm_config_globalconfig ??= execFileSync('npm', ['config', 'get', 'globalconfig'], { encoding: 'utf8' }).trim();
  return settings;
}

const node20 = nodeBinary(20);
const node24 = nodeBinary(24);
const missing = [node20 === null ? 'Node 20' : null, node24 === null ? 'Node 24' : null].filter(Boolean).join(' and ');
const maybe = missing === '' ? describe : describe.skip;
if (missing !== '') {
  // Said once in the test log: the test needs the official binaries.
  console.warn(`test/90.install.test.ts skipped: no ${missing} binary in .cache/node (node scripts/node-dist.js dir 24 fetches it)`);
}

maybe('the npm tarball, installed without a C++ compiler', () => {
  let scratch: string;
  let tarball: string;

  beforeAll(() => {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-install-'));
    // Every supported ABI's prebuilt addon, fresh (built only when the sources are newer).
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.js')], { cwd: ROOT, stdio: 'ignore' });
    // --ignore-scripts: dist/ is built already (pretest); prepare would rebuild it under the running tests.
    const packed = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', scratch], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    const [{ filename, files }] = JSON.parse(packed) as { filename: string; files: { path: string }[] }[];
    tarball = path.join(scratch, filename);
    expect(files.map((file) => file.path)).toEqual(expect.arrayContaining(['prebuilds/linux-x64/node.abi115.glibc.node', 'prebuilds/linux-x64/node.abi137.glibc.node']));
  }, 600000);

  afterAll(() => {
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  test.each([
    ['20', () => node20 as string],
    ['24', () => node24 as string],
  ])('on Node %s: installs with no compiler on PATH, forks and runs a Process', (major, node) => {
    const project = path.join(scratch, `node${major}`);
    const bin = path.join(project, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.symlinkSync(node(), path.join(bin, 'node'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh')); // npm runs scripts with sh
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: `scratch-${major}`, private: true }));
    // PATH has node and sh, nothing else: no cc, c++, make or python for node-gyp.
    const env: NodeJS.ProcessEnv = { ...networkSettings(), HOME: process.env.HOME, PATH: bin, CI: 'true' };
    for (const tool of ['c++', 'g++', 'cc', 'make', 'python3']) {
      expect(spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { env }).status).not.toBe(0);
    }
    const install = spawnSync(node(), [npmCli(), 'install', '--no-audit', '--no-fund', '--prefer-offline', tarball], {
      cwd: project,
      env,
      encoding: 'utf8',
      timeout: 300000,
    });
    expect({ status: install.status, stderr: install.stderr }).toEqual({ status: 0, stderr: expect.not.stringMatching(/gyp ERR|failed/) });
    // A copy in the project: from test/fixtures, require() would find this repository by its name.
    fs.copyFileSync(path.join(__dirname, 'fixtures', 'install_check.js'), path.join(project, 'check.js'));
    const run = spawnSync(node(), ['check.js'], {
      cwd: project,
      env,
      encoding: 'utf8',
      timeout: 60000,
    });
    expect(run.stderr).toBe('');
    expect(jsonLines(run.stdout)).toEqual([{ node: expect.stringMatching(new RegExp(`^v${major}\\.`)), fork: 7, process: 3 }]);
  }, 600000);
});
