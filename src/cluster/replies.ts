/**
 * The reply channel: a node publishes a chunk's result on its client's
 * Redis pub/sub channel as soon as it has it, before it tells BullMQ that the
 * job completed, so that the client does not wait for BullMQ's completion
 * script and its event stream (a round trip less for `apply()`). BullMQ
 * stays the record: when no client received the reply (it went away), the
 * result travels as the job's return value through the event stream instead.
 * @internal
 */
import type { Redis } from 'ioredis';

import type { ChunkResult } from './wire';

/** The reply channel of one client of a queue (a channel is not a key: nothing is left behind). */
export function replyChannel(prefix: string, queue: string, client: string): string {
  return `${prefix}:${queue}:node-multiprocessing:reply:${client}`;
}

/** Publishes job `jobId`'s result on `channel`; whether a client received it. */
export async function publishReply(publisher: Redis, channel: string, jobId: string, result: ChunkResult): Promise<boolean> {
  return (await publisher.publish(channel, `${jobId}\n${JSON.stringify(result)}`)) > 0;
}

/** A reply message as the client receives it. */
export function parseReply(message: string): { jobId: string; result: ChunkResult } {
  const newline = message.indexOf('\n');
  return { jobId: message.slice(0, newline), result: JSON.parse(message.slice(newline + 1)) as ChunkResult };
}
