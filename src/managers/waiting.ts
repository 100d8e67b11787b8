/**
 * Waiting inside a manager's server, which serves every client from one event
 * loop: a call that must wait (a Lock held elsewhere, an empty Queue) parks a
 * waiter instead of blocking a thread, as CPython's server parks the thread
 * serving that client. A waiter ends when it is handed what it waits for, when
 * its timeout runs out, or when its caller is gone (the client's connection
 * closed: it must not take an item or a lock with it).
 * @internal
 */

/** Who is calling: the client process (its id) and a signal aborted when it is gone. */
export interface Caller {
  readonly id: string;
  readonly signal: AbortSignal;
}

const NOBODY: Caller = { id: 'server', signal: new AbortController().signal };

let current: Caller = NOBODY;

/**
 * Runs `call` as `caller`: the server's objects read {@link currentCaller}
 * synchronously, at the start of the method (as Python's server objects see
 * the thread that serves the client).
 */
export function runAs<T>(caller: Caller, call: () => T): T {
  const previous = current;
  current = caller;
  try {
    return call();
  } finally {
    current = previous;
  }
}

/** The caller of the method running now (the server itself outside any call). */
export function currentCaller(): Caller {
  return current;
}

interface Waiter<T> {
  wake(value: T): void;
}

/**
 * Waiters in the order they came. `wait()` resolves with what `wakeNext()`
 * hands over, or with `onTimeout` when the timeout runs out or the caller
 * goes: a waiter that gave up is never handed anything.
 */
export class WaitQueue<T> {
  readonly #waiters = new Set<Waiter<T>>();

  get size(): number {
    return this.#waiters.size;
  }

  wait(timeoutMs: number | null, onTimeout: T, caller: Caller = currentCaller()): Promise<T> {
    return new Promise<T>((resolve) => {
      if (caller.signal.aborted || timeoutMs === 0) return resolve(onTimeout);
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter<T> = {
        wake: (value) => {
          this.#waiters.delete(waiter);
          if (timer !== undefined) clearTimeout(timer);
          caller.signal.removeEventListener('abort', giveUp);
          resolve(value);
        },
      };
      const giveUp = (): void => waiter.wake(onTimeout);
      this.#waiters.add(waiter);
      caller.signal.addEventListener('abort', giveUp, { once: true });
      if (timeoutMs !== null) timer = setTimeout(giveUp, timeoutMs);
    });
  }

  /** Hands `value` to the longest-waiting waiter; false when nobody waits. */
  wakeNext(value: T): boolean {
    const first = this.#waiters.values().next();
    if (first.done === true) return false;
    first.value.wake(value);
    return true;
  }

  /** Hands `value` to every waiter. */
  wakeAll(value: T): void {
    for (const waiter of [...this.#waiters]) waiter.wake(value);
  }
}
