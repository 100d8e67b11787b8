/**
 * The tasks of scripts/bench/60-pool.ts, for every pool measured: ours and
 * piscina take the functions, workerpool (process mode) runs this file as its
 * worker script.
 */
/** The tiny task. */
export function square(x: number): number {
  return x * x;
}

/** A chunk of tiny tasks, for the pools that have no map of their own. */
export function squares(xs: number[]): number[] {
  return xs.map(square);
}

/** About `iterations` of floating-point work; returns the CPU milliseconds it took this process. */
export function burn(iterations: number): number {
  const start = process.cpuUsage();
  let x = 0;
  for (let i = 0; i < iterations; i++) x += Math.sqrt(i) * Math.sin(i);
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 + (x === 0.5 ? 1 : 0);
}

export function noop(): null {
  return null;
}

// workerpool's process mode runs this file: it serves the functions.
if (process.env.NODE_MULTIPROCESSING_BENCH_WORKERPOOL === '1') {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  (require('workerpool') as typeof import('workerpool')).worker({ square, squares });
}
