/**
 * Shared helpers of the benchmarks: timing, medians, Python and C runs, and the
 * side-by-side table. Benchmarks print; they never assert (machines are noisy).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export { median, timeRuns, timeRunsAsync } from './timing';

/**
 * Runs `fresh/<program>.js` with `args` in a new Node (`node`: another
 * binary than this one) and returns the JSON
 * value it prints on its last line (a median); `null`, with a note on stderr,
 * when it fails.
 */
export function inFreshNode<T = number>(
  program: string,
  args: Array<string | number>,
  env: NodeJS.ProcessEnv = {},
  node: string = process.execPath,
): T | null {
  try {
    const script = path.join(__dirname, 'fresh', `${program}.js`);
    const out = execFileSync(node, [script, ...args.map(String)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    const lines = out.trim().split('\n');
    return JSON.parse(lines[lines.length - 1]) as T;
  } catch (error) {
    console.error(`${program} failed: ${(error as Error).message}`);
    return null;
  }
}

/**
 * Runs a Python 3 snippet that prints one JSON value on its last line and
 * returns that value; `null` (and a note on stderr) when python3 is missing.
 */
export function runPython<T>(code: string): T | null {
  try {
    const out = execFileSync('python3', ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = out.trim().split('\n');
    return JSON.parse(lines[lines.length - 1]) as T;
  } catch (error) {
    console.error(`python3 run failed: ${(error as Error).message}`);
    return null;
  }
}

/** Python helper: `samples(fn, runs)` returns the per-call times in ms. */
export const PYTHON_TIMING = `
import json, time
def samples(fn, runs, warmup=10):
    for _ in range(min(warmup, runs)): fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter_ns(); fn(); out.append((time.perf_counter_ns() - t) / 1e6)
    return out
def median(xs):
    xs = sorted(xs); n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
`;

/** Python's os.fork() + os._exit(0) + os.waitpid(), median per child, in ms. */
export function pythonForkLoop(runs: number): number | null {
  return runPython<number>(`${PYTHON_TIMING}
import os
def once():
    pid = os.fork()
    if pid == 0: os._exit(0)
    os.waitpid(pid, 0)
print(json.dumps(median(samples(once, ${runs}))))`);
}

/** Python's Process(target=os.getpid) start + join under `method`, median, in ms. */
export function pythonProcessLoop(method: string, runs: number): number | null {
  return runPython<number>(`${PYTHON_TIMING}
import multiprocessing, os
if __name__ == '__main__':
    ctx = multiprocessing.get_context('${method}')
    def once():
        p = ctx.Process(target=os.getpid)
        p.start()
        p.join()
    print(json.dumps(median(samples(once, ${runs}, 5))))`);
}

/**
 * Compiles a C program (cached under the OS temp dir) and runs it with `args`;
 * returns its stdout. `null` when no C compiler is there.
 */
export function runC(name: string, source: string, args: string[] = []): string | null {
  const dir = path.join(os.tmpdir(), 'node-multiprocessing-bench');
  fs.mkdirSync(dir, { recursive: true });
  const binary = path.join(dir, name);
  const sourcePath = `${binary}.c`;
  try {
    if (!fs.existsSync(binary) || fs.readFileSync(sourcePath, 'utf8') !== source) {
      fs.writeFileSync(sourcePath, source);
      execFileSync('cc', ['-O2', '-o', binary, sourcePath], { stdio: 'inherit' });
    }
    return execFileSync(binary, args, { encoding: 'utf8' });
  } catch (error) {
    console.error(`C benchmark ${name} failed: ${(error as Error).message}`);
    return null;
  }
}

export interface Row {
  /** What was measured. */
  name: string;
  /** The figure, e.g. a median in ms or a rate. */
  value: number | null;
  unit: string;
  /** A figure of ours that this row is compared with, to print a ratio. */
  baseline?: number | null;
  /** True when a larger value is better (rates), false for times. */
  higherIsBetter?: boolean;
  /** Printed in the ratio column instead of a computed ratio. */
  note?: string;
  /** A target from an issue, printed next to the figure. */
  target?: string;
}

function format(value: number | null, unit: string): string {
  if (value === null) return 'n/a';
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : value >= 1 ? 2 : 3;
  return `${value.toFixed(digits)} ${unit}`;
}

/**
 * Prints a titled table. For each row with a baseline, the ratio says how many
 * times faster (or slower) `baseline` is than the row's value, from our side.
 */
export function printTable(title: string, rows: Row[]): void {
  console.log(`\n## ${title}\n`);
  const header = ['measure', 'figure', 'ours vs this', 'target'];
  const body = rows.map((row) => {
    let ratio = row.note ?? '';
    if (row.baseline != null && row.value != null && row.value > 0 && row.baseline > 0) {
      const factor = row.higherIsBetter ? row.baseline / row.value : row.value / row.baseline;
      ratio = factor >= 1 ? `ours ${factor.toFixed(2)}x faster` : `ours ${(1 / factor).toFixed(2)}x slower`;
    }
    return [row.name, format(row.value, row.unit), ratio, row.target ?? ''];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of body) console.log(line(row));
}
