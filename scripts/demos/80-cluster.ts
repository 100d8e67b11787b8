/**
 * Beyond one machine: the Pool's map over two worker nodes through Redis, with
 * a progress bar. The demo starts its own redis-server and two nodes (each a
 * process standing in for a machine, `node-multiprocessing worker`), then maps
 * countPrimes over 240 inputs, as a user's script would:
 *
 * ```ts
 * import { Pool } from 'node-multiprocessing/cluster';
 * await using pool = new Pool({ connection: 'redis://127.0.0.1:6379', queue: 'primes' });
 * const counts = await pool.map(countPrimes, inputs, { onProgress: (done, total) => ... });
 * ```
 */
import { Pool } from '../../dist/cluster';
import { countPrimes, hasRedisServer, NodeProcess, RedisServer } from '../cluster_local';

const INPUTS = Array.from({ length: 240 }, (_, i) => 20_000 + 500 * i);

function bar(done: number, total: number): string {
  const width = 30;
  const filled = Math.round((width * done) / total);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
}

async function main(): Promise<void> {
  if (!hasRedisServer()) {
    console.log('skipped: this demo starts a redis-server of its own, and there is none on the PATH (apt-get install redis-server)');
    return;
  }
  const redis = await RedisServer.start();
  const nodes: NodeProcess[] = [];
  try {
    console.log(`redis-server on ${redis.url}`);
    for (const name of ['node-1', 'node-2']) {
      nodes.push(await NodeProcess.start(redis.url, 'primes', { name, processes: 2 }));
      console.log(`${name}: node-multiprocessing worker --connection ${redis.url} --queue primes --processes 2 --require cluster_local.js`);
    }
    await using pool = new Pool({ connection: redis.url, queue: 'primes' });
    let shown = -1;
    const counts = await pool.map(countPrimes, INPUTS, {
      chunksize: 8,
      onProgress: (done, total) => {
        if (process.stdout.isTTY) process.stdout.write(`\r${bar(done, total)}`);
        else if (Math.floor((4 * done) / total) > shown) {
          shown = Math.floor((4 * done) / total);
          console.log(bar(done, total));
        }
      },
    });
    if (process.stdout.isTTY) process.stdout.write('\n');
    console.log(`primes below ${INPUTS[0]}: ${counts[0]}; below ${INPUTS[INPUTS.length - 1]}: ${counts[counts.length - 1]}`);
    console.log(`the same as on one machine: ${counts.every((count, i) => count === countPrimes(INPUTS[i]))}`);
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
}

void main();
