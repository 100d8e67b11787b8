/**
 * A worker node: BullMQ Workers on the pool's queue whose processor runs each
 * chunk job on the node's local mp.Pool (see executor.ts) and publishes its
 * outcome on the client's reply channel, listens on the cancel channel, and
 * lets BullMQ's lock and stalled-job check hand the jobs of a lost node to
 * another one.
 * @packageDocumentation
 */
import type { Job, Worker as BullWorker } from 'bullmq';
import type { Redis } from 'ioredis';
import { hostname } from 'os';
import { serialize } from 'v8';

import { WorkerLostError } from '../errors';
import { cpuCount } from '../process';
import { validateInteger, validateOptions } from '../validate';
import { CancelledCalls, cancelChannel, LostLock } from './cancel';
import { ConnectionOption, failFast, persistent, portable, redisOptions } from './connection';
import { loadEngine } from './engine';
import { Executor, localPoolExecutor, ResolvedSetup } from './executor';
import { TaskModules } from './tasks';
import { DirectReply, publishReply } from './replies';
import { ChunkJob, decodeValues, encodeError, JobResult, lostResult, Setup, WIRE_VERSION } from './wire';

/** Options of {@link runWorker} (and of `node-multiprocessing worker`). */
export interface WorkerNodeOptions {
  /** Where Redis is: a `redis://` URL or ioredis options. */
  connection: ConnectionOption;
  /** The queue the pools submit to. */
  queue: string;
  /** BullMQ's key prefix (default `'bull'`); clients must use the same. */
  prefix?: string;
  /** Processes of the node's local pool (default: the number of CPUs). */
  processes?: number;
  /** Modules whose exported functions are the tasks this node runs (paths, relative to the working directory). */
  require?: string | string[];
  /** Chunk jobs the node works on at once (default: `2 * processes`, so that the pool stays busy between chunks). */
  concurrency?: number;
  /**
   * How long (ms) a running chunk's lock lasts without being renewed (default 5000): a node that dies holds its
   * chunks this long at most. With `stalledInterval`, bounds the time before another node picks them up.
   */
  lockDuration?: number;
  /** How often (ms) the node looks for chunks whose lock expired (default 5000). */
  stalledInterval?: number;
  /** How many times a chunk may be handed back after lost nodes (default 100; the client's `retries` decides below that). */
  maxStalledCount?: number;
  /** The node's name, stored on the jobs it runs (default `host:pid`). */
  name?: string;
  /** Called with the node's errors (Redis unreachable...), which it survives; default: printed to stderr, once per message. */
  onError?: (error: Error) => void;
}

/** A running worker node. */
export interface WorkerNode {
  /** The node's name, as stored on the jobs it runs. */
  readonly name: string;
  /** Stops taking chunks, lets the running ones finish (no job is left locked), then disconnects. */
  close(): Promise<void>;
}

const NODE_OPTIONS = [
  'connection',
  'queue',
  'prefix',
  'processes',
  'require',
  'concurrency',
  'lockDuration',
  'stalledInterval',
  'maxStalledCount',
  'name',
  'onError',
] as const;

const DEFAULT_LOCK_DURATION = 5000;
const DEFAULT_STALLED_INTERVAL = 5000;

/**
 * Starts a worker node serving `queue`: the same as `npx node-multiprocessing worker`.
 * Resolves once the node has loaded its modules and is connected.
 */
export async function runWorker(options: WorkerNodeOptions): Promise<WorkerNode> {
  const settings = nodeSettings(options);
  const tasks = new TaskModules();
  for (const path of settings.modules) await tasks.load(path);
  const node = new Node(settings, tasks);
  try {
    await node.start();
  } catch (error) {
    await node.close();
    throw error;
  }
  return node;
}

interface NodeSettings {
  connection: ReturnType<typeof redisOptions>;
  queue: string;
  prefix: string;
  processes: number;
  modules: string[];
  concurrency: number;
  lockDuration: number;
  stalledInterval: number;
  maxStalledCount: number;
  name: string;
  onError: (error: Error) => void;
}

function nodeSettings(options: WorkerNodeOptions): NodeSettings {
  validateOptions(options ?? null, NODE_OPTIONS, 'runWorker() options');
  if (typeof options.queue !== 'string' || options.queue === '') throw new TypeError('queue must be a non-empty string');
  const processes = validateInteger(options.processes ?? cpuCount(), 'processes', 1);
  const modules = options.require === undefined ? [] : ([] as string[]).concat(options.require);
  for (const module of modules) if (typeof module !== 'string') throw new TypeError('require must be a path or an array of paths');
  return {
    connection: redisOptions(options.connection),
    queue: options.queue,
    prefix: options.prefix ?? 'bull',
    processes,
    modules,
    concurrency: validateInteger(options.concurrency ?? 2 * processes, 'concurrency', 1),
    lockDuration: validateInteger(options.lockDuration ?? DEFAULT_LOCK_DURATION, 'lockDuration', 100),
    stalledInterval: validateInteger(options.stalledInterval ?? DEFAULT_STALLED_INTERVAL, 'stalledInterval', 100),
    maxStalledCount: validateInteger(options.maxStalledCount ?? 100, 'maxStalledCount', 0),
    name: options.name ?? `${hostname()}:${process.pid}`,
    onError: options.onError ?? printOnce(),
  };
}

/** Prints each error message to stderr once until a different one comes (Redis away: one line, not one a second). */
function printOnce(): (error: Error) => void {
  let last = '';
  return (error) => {
    if (error.message === last) return;
    last = error.message;
    process.stderr.write(`node-multiprocessing worker: ${error.message}\n`);
  };
}

/** `value` when it can be sent to a process (structured clone), else null. */
function crosses<T>(value: T): T | null {
  try {
    serialize(value);
    return value;
  } catch {
    return null;
  }
}

class Node implements WorkerNode {
  readonly name: string;
  /**
   * One BullMQ Worker of concurrency 1 per chunk the node works on at once:
   * a Worker of concurrency n, woken by a job, first asks Redis for another
   * one before it starts the first (a round trip more for every `apply()`).
   * They share one connection for their commands; each blocks on one of its own.
   */
  private readonly workers: BullWorker<ChunkJob, JobResult>[] = [];
  private commands: Redis | undefined;
  private subscriber: Redis | undefined;
  /** Publishes the chunks' replies; fails fast while Redis is away (the result then waits for BullMQ). */
  private publisher: Redis | undefined;
  private readonly cancelled = new CancelledCalls();
  /** The local pools, one per client setup (initializer, initargs, maxtasksperchild). */
  private readonly executors = new Map<string, Promise<Executor>>();
  private closing: Promise<void> | undefined;
  /**
   * The node's connection options as its pool processes get them (see
   * connection.ts `portable`); null when they cannot cross (the node then
   * publishes every reply).
   */
  private readonly portableConnection: ReturnType<typeof portable> | null;
  private readonly portableKey: string;

  constructor(
    private readonly settings: NodeSettings,
    private readonly tasks: TaskModules,
  ) {
    this.name = settings.name;
    this.portableConnection = crosses(portable(settings.connection));
    this.portableKey = JSON.stringify(this.portableConnection);
  }

  async start(): Promise<void> {
    const { bullmq, Redis } = loadEngine();
    const { settings } = this;
    void this.executor(null); // the pool of calls without a setup starts now: the first chunk finds its processes ready
    this.subscriber = new Redis(persistent(settings.connection));
    this.subscriber.on('error', settings.onError);
    this.publisher = new Redis(failFast(settings.connection));
    this.publisher.on('error', () => undefined); // the worker's connections report Redis errors
    await this.cancelled.listen(this.subscriber, cancelChannel(settings.prefix, settings.queue));
    const commands = (this.commands = new Redis(persistent(settings.connection)));
    commands.on('error', () => undefined); // the workers report Redis errors
    for (let i = 0; i < settings.concurrency; i++) {
      const worker = new bullmq.Worker<ChunkJob, JobResult>(settings.queue, async (job) => this.settle(job, await this.process(job)), {
        connection: commands,
        prefix: settings.prefix,
        name: settings.name,
        concurrency: 1,
        lockDuration: settings.lockDuration,
        stalledInterval: settings.stalledInterval,
        maxStalledCount: settings.maxStalledCount,
        skipStalledCheck: i > 0, // one check for lost nodes' jobs is enough
        removeOnComplete: { count: 0 },
        removeOnFail: { count: 0 },
        autorun: false,
      });
      worker.on('error', settings.onError);
      worker.on('lockRenewalFailed', (jobIds: string[]) => this.cancelled.lose(jobIds));
      worker.on('failed', (job, error) => void this.replyFailure(job, error));
      this.workers.push(worker);
      void worker.run().catch(settings.onError);
    }
    await Promise.all(this.workers.map((worker) => worker.waitUntilReady()));
  }

  close(): Promise<void> {
    return (this.closing ??= this.drain());
  }

  private async drain(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
    const executors = await Promise.allSettled(this.executors.values());
    await Promise.all(executors.map((result) => (result.status === 'fulfilled' ? result.value.close() : undefined)));
    await this.subscriber?.quit().catch(() => undefined);
    await this.publisher?.quit().catch(() => this.publisher?.disconnect());
    await this.commands?.quit().catch(() => this.commands?.disconnect());
  }

  /**
   * Sends `result` to the chunk's client on its reply channel unless the pool
   * process did; the job's value says whether it went (else it is the result).
   */
  private async settle(job: Job<ChunkJob, JobResult>, result: JobResult): Promise<JobResult> {
    const channel = job.data.reply;
    if ('replied' in result || 'lost' in result || typeof channel !== 'string' || this.publisher === undefined) return result;
    const received = await publishReply(this.publisher, channel, job.id ?? '', result).catch(() => false);
    return received ? { replied: true } : result;
  }

  /**
   * BullMQ failed a job itself (it was handed back from lost nodes more often
   * than maxStalledCount allows): its client hears of it on its reply channel.
   */
  private async replyFailure(job: Job<ChunkJob, JobResult> | undefined, error: Error): Promise<void> {
    if (job === undefined || typeof job.data.reply !== 'string' || this.publisher === undefined) return;
    const chunk = job.data;
    const result = /stalled/i.test(error.message)
      ? lostResult(
          `chunk ${chunk.index} of call ${chunk.call} was handed back from lost worker nodes more often than their ` +
            `maxStalledCount (${this.settings.maxStalledCount}) allows: BullMQ failed it (${error.message})`,
          {},
        )
      : { error: encodeError(error) };
    await publishReply(this.publisher, chunk.reply, job.id ?? '', result).catch(() => false);
  }

  private async process(job: Job<ChunkJob, JobResult>): Promise<JobResult> {
    const chunk = job.data;
    if (chunk.v !== WIRE_VERSION) {
      return { error: encodeError(new Error(`node ${this.name} speaks wire version ${WIRE_VERSION}, the job ${chunk.v}: update one of them`)) };
    }
    if (this.cancelled.has(chunk.call)) return { cancelled: true };
    if (job.stalledCounter > chunk.retries) {
      return lostResult(
        `chunk ${chunk.index} of call ${chunk.call} was running on a worker node that was lost (its lock expired) ` +
          `and { retries: ${chunk.retries} } allows no further run`,
        {},
      );
    }
    const watch = this.cancelled.watch(chunk.call, job.id ?? '');
    const { signal } = watch;
    try {
      const fn = this.tasks.locate(chunk.fn);
      const executor = await this.executor(chunk.setup);
      return await executor.run(fn, chunk.items, chunk.star, signal, this.directReply(job));
    } catch (error) {
      // A lost lock is no outcome for the client: the chunk runs again where BullMQ hands it.
      if (signal.aborted) return signal.reason instanceof LostLock ? { lost: true } : { cancelled: true };
      if (error instanceof WorkerLostError) return lostResult(`${error.message} on worker node ${this.name}`, error);
      return { error: encodeError(error) };
    } finally {
      watch.release();
    }
  }

  /** Where the pool process that runs `job` publishes its reply itself (see replies.ts). */
  private directReply(job: Job<ChunkJob, JobResult>): DirectReply | null {
    const channel = job.data.reply;
    if (typeof channel !== 'string' || job.id === undefined || this.portableConnection === null) return null;
    return { channel, jobId: job.id, redis: this.portableConnection, key: this.portableKey };
  }

  /** The executor of a client's setup: one per distinct initializer, initargs and maxtasksperchild. */
  private executor(setup: Setup | null): Promise<Executor> {
    const key = setup === null ? '' : JSON.stringify(setup);
    let executor = this.executors.get(key);
    if (executor === undefined) {
      executor = this.resolveSetup(setup).then((resolved) => localPoolExecutor(resolved, this.settings.processes));
      this.executors.set(key, executor);
      executor.catch(() => this.executors.delete(key));
    }
    return executor;
  }

  private async resolveSetup(setup: Setup | null): Promise<ResolvedSetup> {
    if (setup === null) return { initializer: null, initargs: [], maxtasksperchild: null };
    return {
      initializer: setup.initializer === null ? null : await this.tasks.resolve(setup.initializer),
      initargs: decodeValues(setup.initargs),
      maxtasksperchild: setup.maxtasksperchild,
    };
  }
}
