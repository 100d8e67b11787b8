/**
 * What differs between the supported Node majors (docs/node-versions.md),
 * checked on the Node that runs the suite: CI runs it on each (.ci/run).
 */
import { loadNative } from '../dist/native';
import { jsonLines, runFixture } from './helpers';

describe(`Node ${process.version} (V8 ${process.versions.v8}, ABI ${process.versions.modules})`, () => {
  test('has every internal the addon relies on: platform vtable, libuv layout (nothing to warn about)', () => {
    expect(loadNative()!.missingInternals()).toEqual([]);
  });

  test('a child leaving a timer, an immediate or an I/O callback empties the async id stack unseen by the parent\'s listeners', () => {
    const run = runFixture('node_escape_hooks.js', [], { timeoutMs: 60000 });
    expect(run.stderr).toBe('');
    const lines = jsonLines(run.stdout);
    expect(lines.filter((line) => 'target' in line).map((line) => line.target).sort()).toEqual(['immediate', 'io', 'timer']);
    expect(lines.filter((line) => 'event' in line)).toEqual([]);
    expect(lines.find((line) => 'exitCodes' in line)).toEqual({ exitCodes: [0, 0, 0] });
  });
});
