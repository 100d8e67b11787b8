/**
 * Redis connection options of a cluster pool or node: a `redis://` URL or
 * ioredis options, checked once and turned into the ioredis options each of
 * our connections is made from, with the settings each role needs.
 * @internal
 */
import type { ConnectionOptions } from 'bullmq';
import type { RedisOptions } from 'ioredis';

import { describe } from '../validate';
import { loadEngine } from './engine';

/** Where Redis is: a `redis://[user:password@]host:port[/db]` URL (`rediss://` for TLS) or ioredis options. */
export type ConnectionOption = string | RedisOptions;

/** The ioredis options of `connection` (a URL parsed by ioredis itself); TypeError when it is neither. */
export function redisOptions(connection: unknown, name = 'connection'): RedisOptions {
  if (typeof connection === 'string') {
    if (!/^rediss?:\/\//.test(connection)) {
      throw new TypeError(`${name} must be a redis:// or rediss:// URL or ioredis options, got ${describe(connection)}`);
    }
    const { Redis } = loadEngine();
    const parser = new Redis(connection, { lazyConnect: true });
    const { lazyConnect: _parserOnly, ...options } = parser.options;
    parser.disconnect();
    return options;
  }
  if (typeof connection === 'object' && connection !== null && !Array.isArray(connection)) {
    return { ...(connection as RedisOptions) };
  }
  throw new TypeError(`${name} must be a redis:// URL or ioredis options, got ${describe(connection)}`);
}

/** `host:port` (or the socket path) of `options`, for messages. */
export function redisAddress(options: RedisOptions): string {
  return options.path ?? `${options.host ?? 'localhost'}:${options.port ?? 6379}`;
}

/**
 * Options for a connection that must fail fast while Redis is away (a client's
 * commands: the call is rejected, it does not wait for Redis to come back).
 */
export function failFast(options: RedisOptions): RedisOptions {
  return { ...options, enableOfflineQueue: false, maxRetriesPerRequest: 1 };
}

/** Options for a connection that waits for Redis across outages (BullMQ's blocking reads, a node's work). */
export function persistent(options: RedisOptions): RedisOptions {
  return { ...options, maxRetriesPerRequest: null };
}

/**
 * `options` without what cannot cross into another process (functions:
 * retryStrategy, a custom Connector...), for a node's pool processes, which
 * connect with them (see chunk.ts). Those processes then use ioredis's
 * defaults for what was dropped; one that cannot connect with what is left
 * leaves its replies to the node.
 */
export function portable(options: RedisOptions): RedisOptions {
  return withoutFunctions(options) as RedisOptions;
}

function withoutFunctions(value: unknown): unknown {
  if (Array.isArray(value)) return value.filter((item) => typeof item !== 'function').map(withoutFunctions);
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) return value;
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) if (typeof item !== 'function') copy[key] = withoutFunctions(item);
  return copy;
}

/** ioredis options as BullMQ's connection option (BullMQ declares its own, looser, copy of their type). */
export function bullConnection(options: RedisOptions): ConnectionOptions {
  return options as ConnectionOptions;
}
