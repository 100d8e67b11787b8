/**
 * An error thrown in another process, carried back to the caller: the worker
 * describes it ({@link describeError}) and the parent makes an Error of the
 * same class name and message from that ({@link rebuildError}), with the
 * remote stack attached, as Python's pool re-raises the worker's exception
 * with its `RemoteTraceback` as the cause. The process pool and the cluster
 * pool (BullMQ) both report task errors this way.
 * @packageDocumentation
 */

/** What crosses for a thrown value: plain data, structured-cloneable. */
export interface ErrorDescription {
  /** The class name (`'TypeError'`, `'MyError'`); `null` when what was thrown is not an Error. */
  name: string | null;
  message: string;
  /** The stack in the process that threw it. */
  stack: string;
  /** The error's own enumerable properties that could be cloned (`code`, `errno`...). */
  props: Record<string, unknown>;
  /** What was thrown, when it is not an Error (and can be cloned): `throw 42`. */
  value?: unknown;
}

/** An Error as it arrives from another process: `remoteStack` is the stack where it was thrown. */
export interface RemoteError extends Error {
  /** The stack trace in the process that threw it. */
  remoteStack: string;
}

/**
 * The global Error class called `name` (TypeError, RangeError...), made from
 * a message alone; `Error` for any other name (AggregateError takes a list first).
 */
function builtInClass(name: string): ErrorConstructor {
  const candidate = (globalThis as Record<string, unknown>)[name];
  const isErrorClass =
    typeof candidate === 'function' && (candidate === Error || candidate.prototype instanceof Error) && candidate.length <= 1;
  return isErrorClass ? (candidate as ErrorConstructor) : Error;
}

/** Whether `value` survives the structured clone (functions and symbols do not). */
function cloneable(value: unknown, depth = 0): boolean {
  if (typeof value === 'function' || typeof value === 'symbol') return false;
  if (typeof value !== 'object' || value === null) return true;
  if (depth > 4) return false;
  return Object.values(value).every((item) => cloneable(item, depth + 1));
}

/** Describes `thrown` (any value) so that {@link rebuildError} can make it again elsewhere. */
export function describeError(thrown: unknown): ErrorDescription {
  if (!(thrown instanceof Error) && !(typeof thrown === 'object' && thrown !== null && 'message' in thrown && 'stack' in thrown)) {
    return cloneable(thrown)
      ? { name: null, message: String(thrown), stack: '', props: {}, value: thrown }
      : { name: null, message: String(thrown), stack: '', props: {} };
  }
  const error = thrown as Error;
  const props: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) {
    if (key !== 'name' && key !== 'message' && key !== 'stack' && cloneable(value)) props[key] = value;
  }
  return {
    name: typeof error.name === 'string' ? error.name : error.constructor?.name ?? 'Error',
    message: String(error.message),
    stack: String(error.stack ?? ''),
    props,
  };
}

/**
 * The error to reject with for `description`: an instance of the built-in
 * class of that name (TypeError...), otherwise an Error whose `name` is the
 * remote class name; same message, own properties, the remote stack as
 * `remoteStack` and after the local one in `stack`. A thrown non-Error value
 * comes back as that value.
 */
export function rebuildError(description: ErrorDescription): unknown {
  if (description.name === null) return 'value' in description ? description.value : new Error(description.message);
  const error = new (builtInClass(description.name))(description.message) as RemoteError;
  if (error.name !== description.name) {
    Object.defineProperty(error, 'name', { value: description.name, writable: true, configurable: true, enumerable: false });
  }
  Object.assign(error, description.props);
  Object.defineProperty(error, 'remoteStack', { value: description.stack, writable: true, configurable: true, enumerable: false });
  const local = (error.stack ?? '').split('\n').slice(1).join('\n');
  error.stack = `${description.name}: ${description.message}\n${local}\n    --- remote stack ---\n${remoteFrames(description)}`;
  return error;
}

/** The frames of the remote stack (its first line repeats name and message). */
function remoteFrames(description: ErrorDescription): string {
  const lines = description.stack.split('\n');
  const first = lines.findIndex((line) => /^\s+at /.test(line));
  return first < 0 ? description.stack : lines.slice(first).join('\n');
}
