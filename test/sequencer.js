'use strict';
// Test files run in name order (00.package first, 80.cluster last), the same
// on every machine: jest's default order follows its cache of past runs.
const Sequencer = require('@jest/test-sequencer').default;

class ByName extends Sequencer {
  sort(tests) {
    return [...tests].sort((a, b) => a.path.localeCompare(b.path));
  }
}

module.exports = ByName;
