#!/usr/bin/env node
'use strict';
// npm's install step. The package ships prebuilt addons (prebuilds/, made by
// scripts/prebuild.js): where the one of this Node loads, nothing is built and
// no compiler is needed. Otherwise the addon is built from source with
// node-gyp. Where that fails (no compiler), the install still succeeds: the
// package then runs without the addon (the spawn start method only), as it
// says when loaded. In this package's own repository a build always runs, and
// its failure fails the install.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const developing = process.env.INIT_CWD !== undefined && path.resolve(process.env.INIT_CWD) === root;

/** Whether the prebuilt addon of this Node is there and loads. */
function prebuildLoads() {
  const loader = path.join(root, 'dist', 'native.js');
  if (!fs.existsSync(loader)) return false;
  const prebuild = require(loader).prebuildPath();
  if (!fs.existsSync(prebuild)) return false;
  try {
    require(prebuild);
    return true;
  } catch (error) {
    console.warn(`node-multiprocessing: the prebuilt addon ${prebuild} does not load here (${error.message}); building it`);
    return false;
  }
}

/** This package's own node-gyp where it is installed (a devDependency), else npm's. */
function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
  } catch {
    return process.env.npm_config_node_gyp;
  }
}

function buildFromSource() {
  const gyp = nodeGyp();
  if (gyp === undefined) {
    console.warn('node-multiprocessing: no node-gyp to build the addon with (npm did not say where its own is)');
    return 1;
  }
  return spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: root, stdio: 'inherit' }).status ?? 1;
}

if (developing || !prebuildLoads()) {
  const status = buildFromSource();
  if (status !== 0 && developing) process.exit(status);
  if (status !== 0) {
    console.warn(
      `node-multiprocessing: no prebuilt addon for Node ${process.version} (ABI ${process.versions.modules}) on ` +
        `${process.platform}-${process.arch}, and building it failed (above). The package works without it: Process ` +
        'uses the spawn start method. For fork() and the rest, install a C++ compiler, make and Python, then run ' +
        '"npm rebuild node-multiprocessing".',
    );
  }
}
