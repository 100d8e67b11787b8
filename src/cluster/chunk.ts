/**
 * What a node's local pool process runs for a chunk job: the chunk's tasks,
 * one after the other, as an mp.Pool worker runs a chunk of `map`. It takes
 * the items and returns the results in their wire encoding, so that the node
 * forwards them between Redis and the process without decoding them. It is
 * the task function of the node's mp.Pool, found by module reference.
 * @internal
 */
import type { Redis } from 'ioredis';

import { Reference, resolveCommonJs, resolveReference } from '../reference';
import { failFast } from './connection';
import { loadRedis } from './engine';
import { DirectReply, publishReply, replyConnectionName } from './replies';
import { ChunkResult, decodeValues, encodeError, encodeValues, JobResult } from './wire';

type Task = (...args: unknown[]) => unknown;

/** The tasks this process loaded, by module and export. */
const loaded = new Map<string, Task | Promise<Task>>();

/**
 * Runs `fn` (a reference to the node's copy of the task's module) on each of
 * the serialised `items` (spread as arguments when `star`), in order; stops at
 * the first task error and returns it. A task that returns a Promise is awaited
 * before the next one starts. With `reply`, publishes the outcome on the
 * client's reply channel itself and returns `{ replied: true }` once a client
 * received it; else (not connected yet, Redis away, no client listening) the
 * outcome, which the node then sends.
 */
export function runChunk(fn: Reference, items: string, star: boolean, reply: DirectReply | null = null): JobResult | Promise<JobResult> {
  const result = run(fn, items, star);
  if (reply === null) return result;
  return result instanceof Promise ? result.then((settled) => replyDirectly(settled, reply)) : replyDirectly(result, reply);
}

function run(fn: Reference, items: string, star: boolean): ChunkResult | Promise<ChunkResult> {
  try {
    const task = taskOf(fn);
    const args = decodeValues(items);
    return task instanceof Promise ? task.then((loadedTask) => runFrom(loadedTask, args, star, [], 0), failed) : runFrom(task, args, star, [], 0);
  } catch (error) {
    return failed(error);
  }
}

function taskOf(reference: Reference): Task | Promise<Task> {
  const key = reference.kind === 'commonjs' ? `${reference.filename}#${reference.key ?? ''}` : `${reference.url}#${reference.name}`;
  let task = loaded.get(key);
  if (task === undefined) {
    task = (reference.kind === 'commonjs' ? resolveCommonJs(reference, 'task') : resolveReference(reference, 'task')) as Task | Promise<Task>;
    loaded.set(key, task);
  }
  return task;
}

/** Runs the tasks from item `from` on, synchronously until one returns a Promise. */
function runFrom(task: Task, args: unknown[], star: boolean, results: unknown[], from: number): ChunkResult | Promise<ChunkResult> {
  for (let i = from; i < args.length; i++) {
    let value: unknown;
    try {
      value = star ? task(...(args[i] as unknown[])) : task(args[i]);
    } catch (error) {
      return failed(error);
    }
    if (isThenable(value)) {
      return Promise.resolve(value).then((settled) => {
        results[i] = settled;
        return runFrom(task, args, star, results, i + 1);
      }, failed);
    }
    results[i] = value;
  }
  try {
    return { ok: encodeValues(results, 'a task result') };
  } catch (error) {
    return failed(error);
  }
}

/**
 * This process's reply connections, by key: `null` while one is being made,
 * `false` when ioredis cannot be loaded here (the node then sends every reply).
 */
const publishers = new Map<string, Redis | null | false>();

function replyDirectly(result: ChunkResult, reply: DirectReply): JobResult | Promise<JobResult> {
  const publisher = publishers.get(reply.key);
  if (publisher === undefined) {
    publishers.set(reply.key, null);
    // After this chunk's result is on its way: loading ioredis takes tens of ms.
    setImmediate(() => publishers.set(reply.key, connect(reply)));
  }
  if (!publisher || publisher.status !== 'ready') return result;
  return publishReply(publisher, reply.channel, reply.jobId, result).then(
    (received): JobResult => (received ? { replied: true } : result),
    () => result,
  );
}

/** A fail-fast connection (a reply it cannot publish at once is the node's to send). */
function connect(reply: DirectReply): Redis | false {
  try {
    const Redis = loadRedis();
    const publisher = new Redis({ ...failFast(reply.redis), lazyConnect: false, connectionName: replyConnectionName(process.pid) });
    publisher.on('error', () => undefined); // the node reports Redis errors; this one's replies fall back to it
    return publisher;
  } catch {
    return false;
  }
}

function failed(error: unknown): ChunkResult {
  return { error: encodeError(error) };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
