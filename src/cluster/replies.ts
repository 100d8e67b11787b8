/**
 * The reply channel: a chunk's result is published on its client's Redis
 * pub/sub channel as soon as it is known, before the node tells BullMQ that
 * the job completed, so that the client does not wait for BullMQ's completion
 * script and its event stream (a round trip less for `apply()`). The process
 * of the node's pool that ran the chunk publishes it itself, on a connection
 * it keeps open (see chunk.ts): the result does not travel through the node
 * first (a process wake-up less); the node publishes when that process could
 * not (not connected yet, Redis away). BullMQ stays the record: when no client
 * received the reply (it went away), the result is the job's return value.
 * @internal
 */
import type { Redis, RedisOptions } from 'ioredis';

import type { ChunkResult } from './wire';

/** The reply channel of one client of a queue (a channel is not a key: nothing is left behind). */
export function replyChannel(prefix: string, queue: string, client: string): string {
  return `${prefix}:${queue}:node-multiprocessing:reply:${client}`;
}

/** Where a node's pool process publishes the reply of the chunk it runs. */
export interface DirectReply {
  channel: string;
  jobId: string;
  /** Portable connection options (see connection.ts `portable`). */
  redis: RedisOptions;
  /** Names `redis`: a process keeps one connection per key. */
  key: string;
}

/** The Redis client name of the reply connection of a node's pool process (CLIENT LIST shows it). */
export function replyConnectionName(pid: number): string {
  return `node-multiprocessing:reply:${pid}`;
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
