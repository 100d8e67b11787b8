/**
 * The cancel channel: a Redis pub/sub channel per queue on which a client
 * names the calls it gave up (terminate(), an aborted signal, a timeout, a
 * failed task), so that every node stops that call's running chunks; BullMQ's
 * own job cancellation reaches only the worker in the same process.
 * @internal
 */
import type { Redis } from 'ioredis';

/** The channel of a queue (a channel is not a key: it leaves nothing behind in Redis). */
export function cancelChannel(prefix: string, queue: string): string {
  return `${prefix}:${queue}:node-multiprocessing:cancel`;
}

/** Names `calls` as cancelled to every node listening on `channel`. */
export async function publishCancel(publisher: Redis, channel: string, calls: string[]): Promise<void> {
  if (calls.length > 0) await publisher.publish(channel, calls.join('\n'));
}

/** The reason of a chunk's abort when its node lost the job's lock (see {@link CancelledCalls.lose}). */
export class LostLock extends Error {}

/**
 * What a node knows of cancelled calls: it aborts their running chunks and
 * answers chunks of them it picks up later without running them. The most
 * recent `remembered` call ids are kept (a chunk of a call cancelled longer
 * ago than that may still run: its result is dropped by the client).
 */
export class CancelledCalls {
  private readonly recent = new Set<string>();
  private readonly running = new Map<string, Set<AbortController>>();
  private readonly byJob = new Map<string, AbortController>();

  constructor(private readonly remembered = 10_000) {}

  /** Subscribes `subscriber` (a connection of its own) to `channel`. */
  async listen(subscriber: Redis, channel: string): Promise<void> {
    subscriber.on('message', (from: string, message: string) => {
      if (from === channel) for (const call of message.split('\n')) this.cancel(call);
    });
    await subscriber.subscribe(channel);
  }

  has(call: string): boolean {
    return this.recent.has(call);
  }

  /**
   * An AbortSignal that fires when `call` is cancelled or the node loses job
   * `job` (see {@link lose}); `release()` once the job is done.
   */
  watch(call: string, job: string): { signal: AbortSignal; release: () => void } {
    const controller = new AbortController();
    let controllers = this.running.get(call);
    if (controllers === undefined) this.running.set(call, (controllers = new Set()));
    controllers.add(controller);
    this.byJob.set(job, controller);
    return {
      signal: controller.signal,
      release: () => {
        controllers.delete(controller);
        if (controllers.size === 0 && this.running.get(call) === controllers) this.running.delete(call);
        if (this.byJob.get(job) === controller) this.byJob.delete(job);
      },
    };
  }

  /**
   * Stops the chunks of `jobs`, whose locks the node could not renew (Redis
   * was away or restarted): BullMQ hands such a job to another node, or its
   * call is gone; running it on here only holds a process.
   */
  lose(jobs: string[]): void {
    for (const job of jobs) this.byJob.get(job)?.abort(new LostLock(`the node lost the lock of job ${job}`));
  }

  cancel(call: string): void {
    this.recent.add(call);
    if (this.recent.size > this.remembered) this.recent.delete(this.recent.values().next().value as string);
    for (const controller of this.running.get(call) ?? []) controller.abort(new Error(`call ${call} was cancelled by its client`));
  }
}
