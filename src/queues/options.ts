/**
 * What every kind of queue checks alike, with the addon (queues.ts) or
 * without (queues/portable.ts).
 * @internal
 */
import type { QueueOptions } from '../queues';
import { describe, validateTimeout } from '../validate';

/** The time limit `options` ask for: `null` for none, 0 for a single try. */
export function limitOf(options: QueueOptions | undefined): number | null {
  if (options === undefined) return null;
  if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object, got ${describe(options)}`);
  const { block = true, timeout } = options;
  if (typeof block !== 'boolean') throw new TypeError(`options.block must be a boolean, got ${describe(block)}`);
  const limit = validateTimeout(timeout, 'options.timeout');
  return block ? limit : 0;
}

/** The error of any use of a queue closed in this process. */
export function closedError(): Error {
  return Object.assign(new Error('the queue is closed'), { code: 'ERR_QUEUE_CLOSED' });
}
