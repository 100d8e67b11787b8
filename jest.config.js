'use strict';
// Tests fork real processes: run them one file at a time (a fork inside a jest
// worker would also inherit the worker's IPC channel) and against the built
// package in dist/, exactly as a user gets it.
const project = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'test/tsconfig.json', isolatedModules: true }] },
  setupFiles: ['<rootDir>/test/setup_realm.js'],
};

module.exports = {
  maxWorkers: 1,
  testSequencer: '<rootDir>/test/sequencer.js',
  // A hang guard only: these machines slow down up to 10x without warning.
  testTimeout: 180000,
  projects: [
    // 50.portable is the queues' and connections' no-addon suite alone.
    { ...project, displayName: 'addon', testPathIgnorePatterns: ['/node_modules/', '/test/50\\.portable\\.test\\.ts$'] },
    // The Process and Pool suites once more without the addon, as on Windows:
    // only the spawn start method (child_process) is there.
    {
      ...project,
      displayName: 'no-addon',
      testMatch: ['**/20.*.test.ts', '**/50.portable.test.ts', '**/60.pool.test.ts'],
      setupFiles: [...project.setupFiles, '<rootDir>/test/fixtures/process_no_addon.js'],
    },
  ],
};
