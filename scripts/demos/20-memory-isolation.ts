/**
 * Memory isolation: each process has its own copy of the program's globals.
 * The child sets a global; the parent still sees its own value.
 *
 * The TypeScript twin of Python's:
 *
 *     counter = 0
 *     def child():
 *         global counter
 *         counter = 100
 *         print('child:', counter)
 *     if __name__ == '__main__':
 *         counter = 1
 *         p = Process(target=child); p.start(); p.join()
 *         print('parent:', counter)      # still 1
 *
 * `node dist-scripts/demos/20-memory-isolation.js [fork|spawn|forkserver]`
 */
import * as mp from '../..';

/** A global of this module: every process has its own. */
let counter = 0;

/** The child's target (exported, so that spawn and forkserver children can load it). */
export function child(): void {
  counter = 100;
  console.log(`child  ${mp.currentProcess().name.padEnd(17)} pid ${process.pid}: counter = ${counter}`);
}

async function main(): Promise<void> {
  const method = (process.argv[2] as mp.StartMethod | undefined) ?? mp.getStartMethod();
  counter = 1;
  console.log(`parent ${'MainProcess'.padEnd(17)} pid ${process.pid}: counter = ${counter} (start method: ${method})`);
  const p = new (mp.getContext(method).Process)({ target: child });
  p.start();
  await p.join();
  console.log(`parent ${'MainProcess'.padEnd(17)} pid ${process.pid}: counter = ${counter} after the child set its own to 100`);
  if (counter !== 1 || p.exitCode !== 0) process.exitCode = 1;
}

// The guard of Python's `if __name__ == '__main__'`: a spawned child that
// loads this file to find `child` does not run main() again.
if (require.main === module) void main();
