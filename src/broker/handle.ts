/**
 * A handle of a broker's object (thread.ts), held by a Queue or Connection of
 * this process: it sends the object's requests to its broker, crosses to
 * another process as the broker's address, key and a ticket, and gives its
 * hold up when closed (or garbage-collected unclosed, as Python closes a
 * descriptor).
 * @internal
 */
import { isOwnBroker, theBridge } from './bridge';
import type { Addressed, BrokerAddress } from './wire';

/** How a handle crosses to another process. */
export interface HandleState {
  home: BrokerAddress;
  oid: number;
  /** Counts the handle as held until the receiver attaches with it. */
  ticket: number;
}

/** Gives up the hold of a handle whose owner was collected without close(). */
const unclosed = new FinalizationRegistry<BrokerHandle>((handle) => handle.close());

export class BrokerHandle {
  private closedHere = false;

  /** @param home the broker that owns `oid`; `null`: this process's. */
  constructor(
    readonly home: BrokerAddress | null,
    readonly oid: number,
  ) {}

  /** Closes this handle when `owner` is collected unclosed. */
  watch(owner: object): void {
    unclosed.register(owner, this, this);
  }

  get closed(): boolean {
    return this.closedHere;
  }

  call<T>(request: Addressed): Promise<T> {
    return theBridge().call<T>({ ...request, home: this.home });
  }

  callSync<T>(request: Addressed): T {
    return theBridge().callSync<T>({ ...request, home: this.home });
  }

  /**
   * Gives up this process's hold (after every request sent before). `wait`:
   * returns once the broker has (a Listener's path is removed then). Twice
   * does nothing.
   */
  close(wait = false): void {
    if (this.closedHere) return;
    this.closedHere = true;
    unclosed.unregister(this);
    const request = { op: 'detach', oid: this.oid, home: this.home } as const;
    if (wait) theBridge().callSync<void>(request);
    else theBridge().post(request);
  }

  /** The state the handle crosses as: the object stays held until the receiver attaches. */
  reduce(): HandleState {
    const bridge = theBridge();
    const ticket = bridge.callSync<number>({ op: 'ticket', oid: this.oid, home: this.home });
    return { home: this.home ?? bridge.self, oid: this.oid, ticket };
  }

  /**
   * The handle {@link reduce} made, attached in this process before this
   * returns: from then on the owner counts it as this process's, and this
   * process's end gives it up, whether the process closes it, never uses it
   * or is killed.
   */
  static rebuild(state: HandleState): BrokerHandle {
    const home = isOwnBroker(state.home) ? null : { address: state.home.address, authkey: Buffer.from(state.home.authkey) };
    try {
      theBridge().callSync<void>({ op: 'attach', oid: state.oid, ticket: state.ticket, home });
    } catch {
      // The owner cannot be reached: every use of the handle will say so.
    }
    return new BrokerHandle(home, state.oid);
  }
}
