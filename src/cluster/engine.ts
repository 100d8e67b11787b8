/**
 * The distributed engine, BullMQ on Redis (through ioredis): optional peer
 * dependencies, loaded here only, so that the single-machine package never
 * loads them and a missing one gets an error that says what to install.
 * @internal
 */
import type * as BullMQ from 'bullmq';
import type IORedis from 'ioredis';

export interface Engine {
  bullmq: typeof BullMQ;
  Redis: typeof IORedis;
}

function load(name: string): unknown {
  try {
    return require(name) as unknown;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND' || !String((error as Error).message).includes(`'${name}'`)) {
      throw error;
    }
    throw new Error(
      `node-multiprocessing/cluster needs the optional peer dependencies bullmq (>= 6) and ioredis (>= 5), ` +
        `and '${name}' is not installed: npm install bullmq ioredis`,
      { cause: error },
    );
  }
}

let engine: Engine | undefined;
let redisOnly: typeof IORedis | undefined;

/**
 * ioredis alone, for a node's pool process that publishes its chunks' replies
 * (see chunk.ts): it needs no BullMQ.
 */
export function loadRedis(): typeof IORedis {
  if (engine !== undefined) return engine.Redis;
  if (redisOnly === undefined) {
    const ioredis = load('ioredis') as { default?: typeof IORedis } & typeof IORedis;
    redisOnly = ioredis.default ?? ioredis;
  }
  return redisOnly;
}

/** BullMQ and ioredis, loaded on the first call. */
export function loadEngine(): Engine {
  if (engine === undefined) {
    const bullmq = load('bullmq') as typeof BullMQ;
    const ioredis = load('ioredis') as { default?: typeof IORedis } & typeof IORedis;
    engine = { bullmq, Redis: ioredis.default ?? ioredis };
  }
  return engine;
}
