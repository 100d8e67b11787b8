/**
 * The wire format of a cluster job: what a client puts in a BullMQ job's data
 * and what a node returns as the job's value. BullMQ stores both as JSON; the
 * task arguments and results inside are V8-serialised (the structured clone
 * algorithm, as between local processes: Map, Set, Date, BigInt, typed
 * arrays...) and base64-encoded.
 * @internal
 */
import { deserialize, serialize } from 'v8';

import { WorkerLostError } from '../errors';
import type { Reference } from '../reference';

/** Bumped on any incompatible change: a node refuses jobs of another version with a clear error. */
export const WIRE_VERSION = 1;

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
}

/** A task's error as it crosses back: class name, message, remote stack, own properties. */
export interface RemoteError {
  name: string;
  message: string;
  stack: string;
  /** base64 of the serialised own enumerable properties (code, errno...), or '' when there are none. */
  props: string;
}

/** The value a node returns for a chunk job. */
export type ChunkResult = { ok: string } | { error: RemoteError } | { cancelled: true };

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

export function encodeError(error: unknown): RemoteError {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: `a task threw a non-Error value: ${String(error)}`, stack: '', props: '' };
  }
  const props: Record<string, unknown> = {};
  for (const key of Object.keys(error)) {
    if (key !== 'name' && key !== 'message' && key !== 'stack') props[key] = (error as unknown as Record<string, unknown>)[key];
  }
  let encoded = '';
  if (Object.keys(props).length > 0) {
    try {
      encoded = serialize(props).toString('base64');
    } catch {
      encoded = ''; // properties that cannot cross are left behind; name, message and stack still do
    }
  }
  return { name: error.name, message: error.message, stack: error.stack ?? '', props: encoded };
}

const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

/** An Error of the remote error's class name and message, the remote stack as its stack. */
export function decodeError(remote: RemoteError): Error {
  const props = remote.props === '' ? {} : (deserialize(Buffer.from(remote.props, 'base64')) as Record<string, unknown>);
  let error: Error;
  if (remote.name === 'WorkerLostError') {
    error = new WorkerLostError(remote.message, props as ConstructorParameters<typeof WorkerLostError>[1]);
  } else {
    error = new (BUILTIN_ERRORS[remote.name] ?? Error)(remote.message);
    if (error.name !== remote.name) {
      Object.defineProperty(error, 'name', { value: remote.name, writable: true, configurable: true });
    }
    Object.assign(error, props);
  }
  if (remote.stack !== '') error.stack = remote.stack;
  return error;
}

/** A WorkerLostError as a node returns it (the node knows the lost process). */
export function lostResult(message: string, details: { pid?: number | null; exitCode?: number | null; signal?: string | null }): ChunkResult {
  const error = new WorkerLostError(message, details as ConstructorParameters<typeof WorkerLostError>[1]);
  return { error: encodeError(error) };
}
