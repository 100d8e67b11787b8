/**
 * The resource tracker process (see `resource_tracker.ts`): reads
 * `REGISTER:name:type` / `UNREGISTER:name:type` lines on stdin; at EOF (every
 * writer gone) unlinks what is still registered and exits.
 * @internal
 */
import { loadNative } from './native';
import { RESOURCE_TYPES, ResourceType } from './resource_tracker';

const registered = new Map<ResourceType, Set<string>>(RESOURCE_TYPES.map((type) => [type, new Set<string>()]));

function warn(message: string): void {
  process.stderr.write(`node-multiprocessing resource_tracker: ${message}\n`);
}

/** Names may contain ':', types never do: the type is after the last one. */
function handleLine(line: string): void {
  const first = line.indexOf(':');
  const last = line.lastIndexOf(':');
  const names = registered.get(line.slice(last + 1) as ResourceType);
  if (first < 0 || first === last || names === undefined) {
    warn(`ignoring a malformed line: ${JSON.stringify(line)}`);
    return;
  }
  const command = line.slice(0, first);
  const name = line.slice(first + 1, last);
  if (command === 'REGISTER') names.add(name);
  else if (command === 'UNREGISTER') names.delete(name);
  else warn(`ignoring an unknown command: ${JSON.stringify(line)}`);
}

function unlinkLeftovers(): void {
  const native = loadNative();
  for (const [type, names] of registered) {
    if (names.size === 0) continue;
    if (type === 'shared_memory') {
      warn(`There appear to be ${names.size} leaked shared_memory objects to clean up at shutdown: ${[...names].join(', ')}`);
    }
    for (const name of names) {
      try {
        native?.shmUnlink(name);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') warn(`cannot unlink ${name}: ${(error as Error).message}`);
      }
    }
  }
}

function main(): void {
  // Ctrl-C reaches the whole process group: the tracker must outlive its
  // writers to clean up after them, so it ends only at EOF.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  let pending = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line !== '') handleLine(line);
  });
  process.stdin.on('end', () => {
    if (pending !== '') handleLine(pending);
    unlinkLeftovers();
  });
}

main();
