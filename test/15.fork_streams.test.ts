/**
 * A fork never repeats the parent's socket and pipe I/O: a write still queued
 * in libuv at the instant of a fork (its reader slow), the end() behind it,
 * and a connect in flight are the parent's alone. The peer gets every byte
 * once, in order; the child's copy of the loop, which runs meanwhile, writes
 * nothing, shuts nothing down and runs none of the parent's callbacks.
 * (Before: 4 MiB arrived as 4.6-4.9 MiB, garbled, and the child died of EPIPE.)
 *
 * A Process child or a Pool worker goes further, as Python's: it runs its
 * target only, so the parent's sockets fall silent there. (Before: a Pool's
 * workers answered two thirds of the connections to their parent's server.)
 */
import { FixtureRun, jsonLines, runFixture } from './helpers';

const WAYS = ['fork', 'process'];

function reportsOf(run: FixtureRun): Record<string, unknown>[] {
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  return jsonLines<Record<string, unknown>>(run.stdout);
}

describe.each(WAYS)('a fork (%s) while a socket has I/O in flight', (how) => {
  test('a write queued for a slow reader, and the end() behind it: every byte once, in order; the child holds none', () => {
    const reports = reportsOf(runFixture('fork_stream_writes.js', [how]));
    expect(reports).toEqual([
      { child: { queuedInLibuv: 0 } },
      { queued: true, reader: { got: 4 << 20, inOrder: true }, exitCode: 0 },
    ]);
  });

  test("a connect in flight: the 'connect' handler runs in the parent only", () => {
    const reports = reportsOf(runFixture('fork_stream_connect.js', [how]));
    expect(reports).toEqual([{ child: { handlerRan: false } }, { parentConnected: true, exitCode: 0 }]);
  });
});

describe.each(['pool', 'process'])('a %s child while the parent serves connections', (how) => {
  test("never accepts on the parent's listening socket; its own sockets work", () => {
    const [report] = reportsOf(runFixture('fork_quiet_parent_io.js', [how]));
    expect(report).toMatchObject({ pids: 30, answeredByOthers: 0 });
    if (how === 'process') expect(report).toMatchObject({ childAskedOk: true, exitCode: 0 });
  });
});
