#!/usr/bin/env node
'use strict';
// `npm run prebuild` (and `npm pack`, through prepack): the prebuilt addons the
// npm tarball ships, one per supported Node ABI, for this platform:
// prebuilds/<platform>-<arch>/node.abi<N>.<libc>.node, the names prebuildify
// gives (src/native.ts loads them). Each is built with node-gyp against the
// headers of the newest release of its major (scripts/node-dist.js), in a
// scratch directory: build/ stays the machine's own build. One that is newer
// than the addon's sources is kept.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const SOURCES = ['binding.gyp', 'native'];

function newestSourceTime() {
  let newest = 0;
  const visit = (file) => {
    const stat = fs.statSync(file);
    if (stat.isDirectory()) for (const entry of fs.readdirSync(file)) visit(path.join(file, entry));
    else newest = Math.max(newest, stat.mtimeMs);
  };
  for (const source of SOURCES) visit(path.join(root, source));
  return newest;
}

function nodeGyp() {
  return process.env.npm_config_node_gyp || require.resolve('node-gyp/bin/node-gyp.js');
}

/** The ABI, libc and target of the Node in `nodeDir`. */
function describe(nodeDir) {
  const node = path.join(nodeDir, 'bin', 'node');
  const script = "const r=process.report.getReport().header;console.log(process.versions.modules, r.glibcVersionRuntime ? 'glibc' : 'musl', process.version)";
  const [abi, libc, version] = execFileSync(node, ['-e', script], { encoding: 'utf8' }).trim().split(' ');
  return { abi, libc, version };
}

function build(major, sourcesTime) {
  const nodeDir = execFileSync(process.execPath, [path.join(__dirname, 'node-dist.js'), 'dir', String(major)], { encoding: 'utf8' }).trim();
  const { abi, libc, version } = describe(nodeDir);
  const target = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `node.abi${abi}.${libc}.node`);
  if (fs.existsSync(target) && fs.statSync(target).mtimeMs >= sourcesTime) {
    console.log(`prebuild: ${path.relative(root, target)} is up to date`);
    return;
  }
  const scratch = path.join(root, '.cache', 'prebuild', String(major));
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(scratch, { recursive: true });
  for (const source of SOURCES) fs.symlinkSync(path.join(root, source), path.join(scratch, source));
  console.log(`prebuild: Node ${version} (ABI ${abi})`);
  execFileSync(process.execPath, [nodeGyp(), 'rebuild', '--loglevel=warn', `--nodedir=${nodeDir}`], { cwd: scratch, stdio: 'inherit' });
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(path.join(scratch, 'build', 'Release', 'multiprocessing.node'), target);
  fs.rmSync(scratch, { recursive: true, force: true });
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.log(`prebuild: prebuilt addons are made for linux-x64 only, not ${process.platform}-${process.arch}`);
  process.exit(0);
}
const majors = execFileSync(process.execPath, [path.join(__dirname, 'node-dist.js'), 'majors'], { encoding: 'utf8' }).trim().split(' ');
const sourcesTime = newestSourceTime();
for (const major of majors) build(Number(major), sourcesTime);
