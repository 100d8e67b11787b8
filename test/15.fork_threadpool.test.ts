/**
 * A fork never repeats the parent's thread-pool work: fs calls, crypto, DNS
 * and zlib jobs in flight at the instant of a fork complete once, in the
 * process that started them, with the right data; the child never runs their
 * callbacks, and its loop is not kept alive by them.
 *
 * Each case runs test/fixtures/fork_threadpool.js with UV_THREADPOOL_SIZE=1,
 * where a gate (a write into a FIFO nobody drains) holds the pool's one thread
 * so that the work is provably in the state under test when fork() is called
 * (see fork_threadpool_work.js). 'finished': the work's first step has run and
 * its callback waits in the loop's done queue (before the fix the child ran it
 * and carried the parent's chain on: an appendFile() written twice).
 * 'queued': it waits behind the gate in the pool's queue.
 */
import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { FIXTURES } from './helpers';

interface Outcome {
  reports: { who: 'origin' | 'copy'; kind: string; ok: boolean }[];
  fileOk: boolean;
  exitCode: number | null;
}

const KINDS = ['appendFile', 'writeFile', 'writeFilePromises', 'readFile', 'pbkdf2', 'dnsLookup', 'zlib'];
const WAYS = ['fork', 'process', 'forkserver'];

function forkWhileInFlight(kind: string, state: 'finished' | 'queued', how: string): Promise<Outcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-threadpool-'));
  execFileSync('mkfifo', [path.join(dir, 'gate'), path.join(dir, 'done')]);
  return new Promise<Outcome>((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(FIXTURES, 'fork_threadpool.js'), kind, state, how, dir],
      { env: { ...process.env, UV_THREADPOOL_SIZE: '1' }, timeout: 60000, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        fs.rmSync(dir, { recursive: true, force: true });
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split('\n').pop() as string) as Outcome);
      },
    );
  });
}

const exactlyOnceInOrigin = (kind: string): Outcome => ({
  reports: [{ who: 'origin', kind, ok: true }],
  fileOk: true,
  exitCode: 0,
});

describe.each(WAYS)('%s while the pool has work', (how) => {
  test.each(KINDS)('%s finished, its callback not yet run: once, in the parent, with its data', async (kind) => {
    expect(await forkWhileInFlight(kind, 'finished', how)).toEqual(exactlyOnceInOrigin(kind));
  });

  test.each(['appendFile', 'readFile'])('%s still queued: once, in the parent', async (kind) => {
    expect(await forkWhileInFlight(kind, 'queued', how)).toEqual(exactlyOnceInOrigin(kind));
  });
});
