/**
 * The wire format of a cluster job: what a client puts in a BullMQ job's data
 * and what a node returns as the job's value. BullMQ stores both as JSON; the
 * task arguments, results and errors inside are V8-serialised (the structured
 * clone algorithm, as between local processes: Map, Set, Date, BigInt, typed
 * arrays...) and base64-encoded. Errors cross as mp.Pool's do
 * (pool/remote_error.ts): described where thrown, rebuilt by class name.
 * @internal
 */
import { deserialize, serialize } from 'v8';

import { WorkerLostError } from '../errors';
import { describeError, ErrorDescription, rebuildError } from '../pool/remote_error';
import type { Reference } from '../reference';

/** Bumped on any incompatible change: a node refuses jobs of another version with a clear error. */
export const WIRE_VERSION = 2;

/** What every task of a pool runs on a node first, and how long its processes live. */
export interface Setup {
  initializer: Reference | null;
  /** base64 of the serialised `initargs`. */
  initargs: string;
  maxtasksperchild: number | null;
}

/** One chunk of one call: the data of one BullMQ job. */
export interface ChunkJob {
  v: number;
  /** The call's id: the cancel channel names calls by it. */
  call: string;
  /** The chunk's index within its call. */
  index: number;
  fn: Reference;
  /** starmap: each item is the array of a task's arguments. */
  star: boolean;
  /** base64 of the serialised items. */
  items: string;
  setup: Setup | null;
  /** How many times the chunk may run again after its node was lost. */
  retries: number;
  /** The client's reply channel (see replies.ts). */
  reply: string;
}

/**
 * A chunk's outcome: base64 of the serialised results, or of the serialised
 * {@link ErrorDescription} of the first task error; or that the node stopped
 * it (cancelled). As the job's return value, `replied` says that the outcome
 * went to the client on its reply channel; `lost` that the node lost the
 * job's lock and stopped the chunk without an outcome (its completion then
 * fails: BullMQ hands the job to a node again, or fails it past its stall count).
 */
export type ChunkResult = { ok: string } | { error: string } | { cancelled: true };
export type JobResult = ChunkResult | { replied: true } | { lost: true };

export function encodeValues(values: unknown[], what: string): string {
  try {
    return serialize(values).toString('base64');
  } catch (error) {
    throw new TypeError(`${what} cannot be sent over Redis: ${(error as Error).message}`, { cause: error });
  }
}

export function decodeValues(base64: string): unknown[] {
  return deserialize(Buffer.from(base64, 'base64')) as unknown[];
}

/** What was thrown, described as mp.Pool's workers describe it, ready for the job's value. */
export function encodeError(thrown: unknown): string {
  const description = describeError(thrown);
  try {
    return serialize(description).toString('base64');
  } catch {
    // A thrown non-Error value that cannot cross: its text still does.
    return serialize({ ...description, value: undefined, props: {} }).toString('base64');
  }
}

/**
 * The error to reject with for an encoded one: as mp.Pool rebuilds a worker's
 * (same class name, message, properties, remote stack); a `WorkerLostError`
 * (a node's process or the node itself was lost) is one again.
 */
export function decodeError(base64: string): unknown {
  const description = deserialize(Buffer.from(base64, 'base64')) as ErrorDescription;
  const rebuilt = rebuildError(description);
  if (description.name !== 'WorkerLostError') return rebuilt;
  const error = new WorkerLostError(description.message, description.props as ConstructorParameters<typeof WorkerLostError>[1]);
  Object.defineProperties(error, {
    stack: { value: (rebuilt as Error).stack, writable: true, configurable: true },
    remoteStack: { value: description.stack, writable: true, configurable: true },
  });
  return error;
}

/** A WorkerLostError as a node returns it (the node knows the lost process). */
export function lostResult(message: string, details: { pid?: number | null; exitCode?: number | null; signal?: NodeJS.Signals | null }): ChunkResult {
  return { error: encodeError(new WorkerLostError(message, details)) };
}
