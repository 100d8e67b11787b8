/**
 * What a manager's clients and server say to each other over a Connection,
 * as CPython's managers.py (`(ident, methodname, args, kwds)` answered by
 * `('#RETURN', result)`, `('#ERROR', exc)` or `('#PROXY', token)`), with a
 * call id added: a process sends its asynchronous calls over one connection
 * without waiting for each answer, and the server answers each as it is done.
 * @internal
 */

/** The call id of a call the server does not answer (hello, incref, decref). */
export const NO_ANSWER = -1;

/** `[callId, objectId (null: the server itself), method, args]`. */
export type Request = [callId: number, objectId: string | null, method: string, args: unknown[]];

/** The call returned `value`. */
export const RETURN = 0;
/** The call threw: `value` is a {@link RemoteErrorState}. */
export const ERROR = 1;
/** The call returned an object the server now holds: `value` is its {@link ObjectInfo}, for a proxy. */
export const PROXY = 2;

/** `[callId, RETURN]` (no value) is a call that returned `undefined`: JSON carries it, as it does not `[id, 0, undefined]`. */
export type Reply = [callId: number, status: typeof RETURN | typeof ERROR | typeof PROXY, value?: unknown];

/** An object of the server as a client sees it, as Python's `Token` with the exposed names. */
export interface ObjectInfo {
  typeid: string;
  id: string;
  exposed: string[];
}

/** An Error as it crosses: class name, message, the server's stack and `code` when it has one. */
export interface RemoteErrorState {
  name: string;
  message: string;
  stack: string;
  code?: unknown;
}

export function isRequest(message: unknown): message is Request {
  return (
    Array.isArray(message) &&
    message.length === 4 &&
    typeof message[0] === 'number' &&
    (message[1] === null || typeof message[1] === 'string') &&
    typeof message[2] === 'string' &&
    Array.isArray(message[3])
  );
}

export function errorState(error: unknown): RemoteErrorState {
  if (error instanceof Error) {
    const { code } = error as { code?: unknown };
    return { name: error.name, message: error.message, stack: error.stack ?? '', ...(code === undefined ? {} : { code }) };
  }
  return { name: 'Error', message: `a non-Error was thrown: ${String(error)}`, stack: '' };
}

/** The server's and the Process path's error classes, by name. */
function errorClasses(): Record<string, new (message: string) => Error> {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const errors = require('../errors') as Record<string, new (message: string) => Error>;
  return { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, ...errors };
}

/**
 * The Error a caller gets for an error of the server: of the same class when
 * it is a standard or a library class, else an Error whose `name` is the
 * server's (`KeyError`); `remoteStack` holds the server's stack.
 */
export function rebuildError(state: RemoteErrorState): Error {
  const Class = Object.prototype.hasOwnProperty.call(errorClasses(), state.name) ? errorClasses()[state.name] : Error;
  const error = new Class(state.message);
  if (error.name !== state.name) error.name = state.name;
  Object.defineProperty(error, 'remoteStack', { value: state.stack, enumerable: false, writable: true, configurable: true });
  if (state.code !== undefined) (error as { code?: unknown }).code = state.code;
  return error;
}
