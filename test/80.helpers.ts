/**
 * Helpers of the cluster tests (test/80.*): the local cluster of the scripts
 * (a real redis-server on a free 127.0.0.1 port, worker nodes as processes of
 * their own) with the tests' task module, and waits for Redis state.
 */
import * as path from 'path';

import IORedis from 'ioredis';

import { lineOf, NodeProcess, RedisServer } from '../scripts/cluster_local';

export { lineOf, NodeProcess, RedisServer };

export const TASKS = path.join(__dirname, 'fixtures', 'cluster_tasks.js');

/** A node serving `queue` with the tests' tasks; they reach Redis and know the node's name through the environment. */
export function startNode(redis: RedisServer, queue: string, name: string, args: string[] = []): Promise<NodeProcess> {
  return NodeProcess.start(redis.url, queue, {
    name,
    require: [TASKS],
    args,
    env: { CLUSTER_TEST_REDIS: redis.url, CLUSTER_TEST_NODE: name },
  });
}

/** A client of the test's own (disconnect it). */
export function client(redis: RedisServer): IORedis {
  return new IORedis(redis.url, { maxRetriesPerRequest: null });
}

/** Polls `condition` (Redis state) until it holds: the state is the event waited for; jest's timeout bounds it. */
export async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

let queues = 0;
/** A queue name of its own for each test. */
export function queueName(): string {
  return `test-${process.pid}-${++queues}`;
}
