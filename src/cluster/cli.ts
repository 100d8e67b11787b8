#!/usr/bin/env node
/**
 * `npx node-multiprocessing worker --connection redis://host:6379 --queue name
 * --processes N --require ./tasks.js`: a worker node of the cluster Pool.
 * SIGINT or SIGTERM drains it (running chunks finish, none is left locked);
 * a second one stops it at once.
 * @internal
 */
import { parseArgs } from 'util';

const USAGE = `Usage: node-multiprocessing worker --connection redis://host:6379 --queue <name> [options]

Serves the cluster Pool's tasks of <name> (import { Pool } from 'node-multiprocessing/cluster').

Options:
  -c, --connection <url>       Redis, as redis://[user:password@]host:port[/db] (default redis://127.0.0.1:6379)
  -q, --queue <name>           the queue the pools submit to (required)
  -p, --processes <n>          processes of the node's local pool (default: the number of CPUs)
  -r, --require <module>       a module whose exported functions are tasks (repeatable)
      --concurrency <n>        chunk jobs worked on at once (default: 2 x processes)
      --lock-duration <ms>     a lost node's chunks are held this long at most (default 5000)
      --stalled-interval <ms>  how often lost nodes' chunks are looked for (default 5000)
      --max-stalled-count <n>  hand-backs of a chunk from lost nodes before BullMQ fails it (default 100)
      --prefix <prefix>        BullMQ's key prefix (default bull)
      --name <name>            the node's name on the jobs it runs (default host:pid)
  -h, --help                   this text
`;

function integer(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new RangeError(`--${option} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

async function worker(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      connection: { type: 'string', short: 'c', default: 'redis://127.0.0.1:6379' },
      queue: { type: 'string', short: 'q' },
      processes: { type: 'string', short: 'p' },
      require: { type: 'string', short: 'r', multiple: true },
      concurrency: { type: 'string' },
      'lock-duration': { type: 'string' },
      'stalled-interval': { type: 'string' },
      'max-stalled-count': { type: 'string' },
      prefix: { type: 'string' },
      name: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.queue === undefined) throw new TypeError('--queue is required');
  const { runWorker } = await import('./node');
  const node = await runWorker({
    connection: values.connection as string,
    queue: values.queue,
    processes: integer(values.processes, 'processes'),
    require: values.require,
    concurrency: integer(values.concurrency, 'concurrency'),
    lockDuration: integer(values['lock-duration'], 'lock-duration'),
    stalledInterval: integer(values['stalled-interval'], 'stalled-interval'),
    maxStalledCount: integer(values['max-stalled-count'], 'max-stalled-count'),
    prefix: values.prefix,
    name: values.name,
  });
  process.stdout.write(`node-multiprocessing worker ${node.name}: serving queue ${values.queue} on ${values.connection}\n`);
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`node-multiprocessing worker ${node.name}: ${signal} again, stopping without draining\n`);
      process.exit(130);
    }
    stopping = true;
    process.stdout.write(`node-multiprocessing worker ${node.name}: ${signal}, draining\n`);
    void node.close().then(() => {
      process.stdout.write(`node-multiprocessing worker ${node.name}: drained\n`);
      process.exit(0);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'worker') return worker(rest);
  if (command === undefined || command === '-h' || command === '--help') {
    process.stdout.write(USAGE);
    return;
  }
  throw new TypeError(`unknown command ${JSON.stringify(command)}: the one command is worker`);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`node-multiprocessing: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(2);
});
