/**
 * The exception classes of Python's `multiprocessing`, as Error subclasses
 * whose `name` is the class name.
 * @packageDocumentation
 */

/** Base class of this library's own errors, as `multiprocessing.ProcessError`. */
export class ProcessError extends Error {
  constructor(message?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A wait ran out of time (`AsyncResult.get(timeout)`), as `multiprocessing.TimeoutError`. */
export class TimeoutError extends ProcessError {}

/** The other end of a connection was closed, as Python's `EOFError`. */
export class EOFError extends ProcessError {}

/** A received message is larger than the buffer given for it, as `multiprocessing.BufferTooShort`. */
export class BufferTooShort extends ProcessError {}

/** `get` on an empty queue without waiting, or after the timeout, as `queue.Empty`. */
export class Empty extends ProcessError {}

/** `put` on a full queue without waiting, or after the timeout, as `queue.Full`. */
export class Full extends ProcessError {}

/** A `Barrier` was broken (aborted, reset or timed out) while waiting, as `threading.BrokenBarrierError`. */
export class BrokenBarrierError extends ProcessError {}

/**
 * A pool task's worker ended before the task finished (killed, crashed, or, in
 * a cluster pool, its whole worker node lost). `pid`, `exitCode` and `signal`
 * describe the worker's end where they are known, `null` where not.
 */
export class WorkerLostError extends ProcessError {
  /** The pid of the lost worker, or null when unknown (a remote node). */
  readonly pid: number | null;
  /** Its exit code, or null when it was killed by a signal or is unknown. */
  readonly exitCode: number | null;
  /** The signal that killed it, or null. */
  readonly signal: NodeJS.Signals | null;

  constructor(
    message: string,
    details: { pid?: number | null; exitCode?: number | null; signal?: NodeJS.Signals | null } = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.pid = details.pid ?? null;
    this.exitCode = details.exitCode ?? null;
    this.signal = details.signal ?? null;
  }
}

/** The authkey handshake of a Listener or Client failed, as `multiprocessing.AuthenticationError`. */
export class AuthenticationError extends ProcessError {}
