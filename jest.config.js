'use strict';
// Tests fork real processes: run them one file at a time (a fork inside a jest
// worker would also inherit the worker's IPC channel) and against the built
// package in dist/, exactly as a user gets it.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'test/tsconfig.json', isolatedModules: true }] },
  maxWorkers: 1,
  testTimeout: 30000,
};
