/**
 * The program a child of the spawn start method runs (`node spawn_main.js`,
 * with the parent's `execArgv`): as CPython's `spawn.spawn_main()`. It reads
 * its spec from fd 3, loads the target by reference, runs the process and
 * exits with its exit code.
 * @internal
 */
import { FIRST_PASSED_FD, inheritDescriptors, prepare, readSpec, resolveSpec, restoreProcess } from './spawn';
import { flushStdio, reportError, trackStdioCreation } from './util';

/** The descriptor the parent writes the spec to (see popen/spawn.ts). */
const SPEC_FD = 3;

async function main(): Promise<number> {
  trackStdioCreation();
  const spec = readSpec(SPEC_FD);
  try {
    inheritDescriptors(spec, spec.fds.map((_, i) => FIRST_PASSED_FD + i));
    prepare(spec);
    const process_ = restoreProcess(spec, await resolveSpec(spec));
    return await process_._bootstrap();
  } catch (error) {
    // The target's module failed to load, or it is not exported: as Python's
    // child does when it cannot unpickle, it prints why and exits with 1.
    return reportError(spec.state.name, error);
  }
}

void main()
  .catch((error: unknown) => {
    process.stderr.write(`node-multiprocessing: the spawned child could not start: ${String(error)}\n`);
    return 1;
  })
  .then(async (code) => {
    await flushStdio();
    process.exit(code);
  });
