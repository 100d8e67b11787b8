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

function buildFromSource() {
  const nodeGyp = process.env.npm_config_node_gyp || require.resolve('node-gyp/bin/node-gyp.js');
  return spawnSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: root, stdio: 'inherit' }).status ?? 1;
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
