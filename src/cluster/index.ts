/**
 * node-multiprocessing/cluster: the Pool API across machines, its tasks
 * carried by BullMQ on Redis to worker nodes that each run a local pool.
 * Needs the optional peer dependencies `bullmq` and `ioredis`.
 * @packageDocumentation
 */
import { loadEngine } from './engine';

// Fails at import, with what to install, when bullmq or ioredis is missing.
loadEngine();

export { Pool, ClusterConnectionError } from './pool';
export type { ClusterPoolOptions, CallOptions, MapOptions, ApplyAsyncOptions, MapAsyncOptions } from './pool';
export { AsyncResult, IMapIterator } from '../pool/results';
export { runWorker } from './node';
export type { WorkerNode, WorkerNodeOptions } from './node';
export type { ConnectionOption } from './connection';
export { ProcessError, TimeoutError, WorkerLostError } from '../errors';
