/**
 * Fork stress: `node dist-scripts/fork-stress.js [forks=2000]`.
 *
 * Forks again and again while the garbage collector is busy in the parent
 * (a churning, growing heap keeps V8's concurrent marking and the platform
 * workers at work at the instant of each fork) and in every child (which
 * allocates, then leaves by one of several exit paths). Without the fork
 * barrier about one child in three deadlocked; the result must be 0 hangs and
 * 0 crashes. Prints one JSON line; exits 1 if any child hung or crashed.
 */
import * as mp from '..';

const HANG_AFTER_MS = 10000;

/** Objects kept alive in a ring, so old-space grows and marking runs concurrently. */
const retained: unknown[] = new Array(20000);
let cursor = 0;

function churn(objects: number): void {
  for (let i = 0; i < objects; i++) {
    retained[cursor] = { index: i, payload: new Array(8).fill(cursor), text: `item-${cursor}` };
    cursor = (cursor + 1) % retained.length;
  }
}

/** What a child does: allocate, then leave in the way its number picks. */
function childBody(n: number): void {
  churn(20000);
  switch (n % 4) {
    case 0:
      mp.os._exit(0);
      break;
    case 1:
      process.exit(0);
      break;
    case 2:
      setTimeout(() => churn(5000), 1); // the loop runs dry afterwards
      break;
    default:
      Promise.resolve().then(() => churn(5000)); // ends after a microtask
  }
}

type Outcome = 'ok' | 'hang' | 'crash' | 'wrong-status';

async function reap(pid: number): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hang'>((resolve) => {
    timer = setTimeout(() => resolve('hang'), HANG_AFTER_MS);
  });
  const result = await Promise.race([mp.os.waitpidAsync(pid), hung]);
  clearTimeout(timer);
  if (result === 'hang') {
    mp.os.kill(pid, 'SIGKILL');
    await mp.os.waitpidAsync(pid);
    return 'hang';
  }
  const code = mp.os.waitstatusToExitcode(result[1]);
  if (code < 0) return 'crash';
  return code === 0 ? 'ok' : 'wrong-status';
}

async function main(): Promise<void> {
  const forks = Number(process.argv[2] ?? 2000);
  const counts: Record<Outcome, number> = { ok: 0, hang: 0, crash: 0, 'wrong-status': 0 };
  const started = Date.now();
  for (let n = 0; n < forks; n++) {
    churn(2000);
    const pid = mp.os.fork();
    if (pid === 0) {
      childBody(n);
      return;
    }
    counts[await reap(pid)]++;
  }
  const result = { forks, ...counts, ms: Date.now() - started };
  console.log(JSON.stringify(result));
  process.exitCode = counts.ok === forks ? 0 : 1;
}

void main();
