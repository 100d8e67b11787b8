#!/usr/bin/env node
'use strict';
// `npm run build:prebuilds` (and `npm pack`, through prepack): the prebuilt addons the
// npm tarball ships, one per supported Node ABI, for this platform:
// prebuilds/<platform>-<arch>/node.abi<N>.<libc>.node, the names prebuildify
// gives (src/native.ts loads them). Each is built with node-gyp against the
// headers of the newest release of its major (scripts/node-dist.js), in a
// scratch directory: build/ stays the machine's own build. One made from the
// same sources for the same Node is kept.
const { execFileSync } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const SOURCES = ['binding.gyp', 'native'];

/** What a prebuilt addon is made from: the sources' contents and the Node whose headers it is built against. */
function recipe(version) {
  const hash = crypto.createHash('sha256').update(version);
  const visit = (file) => {
    if (fs.statSync(file).isDirectory()) for (const entry of fs.readdirSync(file).sort()) visit(path.join(file, entry));
    else hash.update(path.relative(root, file)).update(fs.readFileSync(file));
  };
  for (const source of SOURCES) visit(path.join(root, source));
  return hash.digest('hex');
}

/** The devDependency's node-gyp, else npm's. */
function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
  } catch {
    return process.env.npm_config_node_gyp;
  }
}

/** The ABI, libc and target of the Node in `nodeDir`. */
function describe(nodeDir) {
  const node = path.join(nodeDir, 'bin', 'node');
  const script = "const r=process.report.getReport().header;console.log(process.versions.modules, r.glibcVersionRuntime ? 'glibc' : 'musl', process.version)";
  const [abi, libc, version] = execFileSync(node, ['-e', script], { encoding: 'utf8' }).trim().split(' ');
  return { abi, libc, version };
}

function build(major) {
  const nodeDir = execFileSync(process.execPath, [path.join(__dirname, 'node-dist.js'), 'dir', String(major)], { encoding: 'utf8' }).trim();
  const { abi, libc, version } = describe(nodeDir);
  const target = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `node.abi${abi}.${libc}.node`);
  const stamp = path.join(root, '.cache', 'prebuild', `${path.basename(target)}.recipe`);
  const wanted = recipe(version);
  if (fs.existsSync(target) && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === wanted) {
    console.log(`prebuild: ${path.relative(root, target)} is up to date (Node ${version})`);
    return;
  }
  const scratch = path.join(root, '.cache', 'prebuild', String(major));
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(scratch, { recursive: true });
  for (const source of SOURCES) fs.symlinkSync(path.join(root, source), path.join(scratch, source));
  console.log(`prebuild: Node ${version} (ABI ${abi})`);
  // npm_config_nodedir wins over --nodedir (and npm passes its own, from npmrc).
  const env = { ...process.env, npm_config_nodedir: nodeDir };
  execFileSync(process.execPath, [nodeGyp(), 'rebuild', '--loglevel=warn'], { cwd: scratch, stdio: 'inherit', env });
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(path.join(scratch, 'build', 'Release', 'multiprocessing.node'), target);
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.writeFileSync(stamp, wanted);
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.log(`prebuild: prebuilt addons are made for linux-x64 only, not ${process.platform}-${process.arch}`);
  process.exit(0);
}
const majors = execFileSync(process.execPath, [path.join(__dirname, 'node-dist.js'), 'majors'], { encoding: 'utf8' }).trim().split(' ');
for (const major of majors) build(Number(major));
