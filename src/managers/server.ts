/**
 * A manager's server, as CPython's `managers.Server`: it holds the objects
 * its clients made, each under an id with a reference count, and serves calls
 * of their exposed methods. One event loop serves every connection: a call
 * whose method returns a Promise is answered when it settles, the others at
 * once, and a call that waits (a Lock, an empty Queue) never holds up another.
 * @internal
 */
import { forkGeneration } from '../at_fork';
import { isThenable } from '../util';
import { describe } from '../validate';
import { Link, LinkConnection, takeOver } from './link';
import { pythonError } from './objects';
import { ERROR, errorState, isRequest, NO_ANSWER, ObjectInfo, PROXY, Reply, Request, RETURN } from './protocol';
import { Caller, runAs } from './waiting';

/** A function that makes (or returns) the object a typeid serves. */
export type ServedCallable = (...args: never[]) => unknown;

/** A typeid as a server knows it, as the entries of Python's `BaseManager._registry`. */
export interface ServedType {
  readonly typeid: string;
  /** Makes the object; `null`: the typeid is only known to clients (a `connect()`ed manager's). */
  readonly callable: ServedCallable | null;
  /** The methods clients may call; `null`: every public method of the object. */
  readonly exposed: readonly string[] | null;
  /** Methods whose result the server keeps and the client gets as a proxy of this typeid. */
  readonly methodToTypeid: Readonly<Record<string, string>> | null;
}

/** What the server needs of a Listener (connection.ts's). */
export interface ServerListener<A = unknown> {
  readonly address: A;
  accept(): Promise<LinkConnection>;
  close(): void;
}

interface HeldObject {
  readonly object: object;
  readonly typeid: string;
  readonly exposed: ReadonlySet<string>;
  readonly methodToTypeid: Readonly<Record<string, string>> | null;
  refcount: number;
}

/**
 * The method a held object may have to let go of what it holds (a Pool's
 * workers) when the server releases it: its last proxy dropped, or the
 * server stopped.
 */
export const RELEASE = Symbol('release by the manager server');

function release(object: object): void {
  const hook = (object as { [RELEASE]?: unknown })[RELEASE];
  if (typeof hook !== 'function') return;
  try {
    hook.call(object);
  } catch {
    // An object that fails to let go must not stop the server from serving the others.
  }
}

/** A result that the server keeps and answers as a proxy. */
class NewObject {
  constructor(readonly info: ObjectInfo) {}
}

/** The public methods of `object`: every function on its prototype chain whose name does not start with `_`. */
export function publicMethods(object: object): string[] {
  const names = new Set<string>();
  for (let proto: object | null = object; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name === 'constructor' || name.startsWith('_')) continue;
      const descriptor = Object.getOwnPropertyDescriptor(proto, name);
      if (typeof descriptor?.value === 'function') names.add(name);
    }
  }
  return [...names];
}

/**
 * The servers running in this process, by address: a proxy of theirs sent
 * back to them is their own object. A forked child (a Pool's worker in the
 * server) has a copy of this map but serves nothing: its proxies are proxies.
 */
const runningServers = new Map<string, Server>();
let serversGeneration = forkGeneration();

export function addressKey(address: unknown): string {
  return JSON.stringify(address);
}

/** The server of this process at `address`, if any. */
export function localServer(address: unknown): Server | undefined {
  return servers().get(addressKey(address));
}

function servers(): Map<string, Server> {
  if (serversGeneration !== forkGeneration()) {
    serversGeneration = forkGeneration();
    runningServers.clear();
  }
  return runningServers;
}

/** Server-level calls, as the `public` methods of Python's Server. */
type Control = (this: Server, caller: MutableCaller, args: unknown[]) => unknown;

interface MutableCaller extends Caller {
  id: string;
}

/**
 * Serves the objects of `registry` on `listener` (whose authkey has already
 * checked each client). Get one with `manager.getServer()`; `serveForever()`
 * resolves once a client or the owner asked it to shut down.
 */
export class Server {
  readonly #registry: ReadonlyMap<string, ServedType>;
  readonly #listener: ServerListener;
  readonly #objects = new Map<string, HeldObject>();
  readonly #ids = new Map<object, string>();
  /** Clients' links, and connections that have not said hello yet. */
  readonly #connections = new Set<Link | LinkConnection>();
  #nextId = 0;
  #nextConnection = 0;
  #stopped: Promise<void>;
  #stop!: () => void;
  #serving = false;
  #closed = false;

  /** @internal Use `manager.getServer()`. */
  constructor(registry: ReadonlyMap<string, ServedType>, listener: ServerListener) {
    this.#registry = registry;
    this.#listener = listener;
    this.#stopped = new Promise((resolve) => (this.#stop = resolve));
    servers().set(addressKey(listener.address), this);
  }

  /** The address clients connect to (a Unix socket path or `[host, port]`). */
  get address(): unknown {
    return this.#listener.address;
  }

  /** Accepts clients and serves their calls until {@link shutdown}; resolves then. */
  serveForever(): Promise<void> {
    if (this.#closed) throw new Error('the server has been shut down');
    if (!this.#serving) {
      this.#serving = true;
      void this.#acceptLoop();
    }
    return this.#stopped;
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let connection: LinkConnection;
      try {
        connection = await this.#listener.accept();
      } catch (error) {
        // A client refused by the authkey handshake is not the server's end.
        if ((error as Error).name === 'AuthenticationError' || (error as Error).name === 'EOFError') continue;
        if (!this.#closed) this.shutdown();
        return;
      }
      if (this.#closed) connection.close();
      else this.#serveConnection(connection);
    }
  }

  /**
   * Serves a client: its first message (a hello) read on its Connection,
   * which then has nothing buffered past it (the client waits for the
   * answer), the rest on the link that takes the connection over (link.ts),
   * each batch of requests in the read's own callback, in order.
   */
  #serveConnection(connection: LinkConnection): void {
    const gone = new AbortController();
    const caller: MutableCaller = { id: `connection-${this.#nextConnection++}`, signal: gone.signal };
    this.#connections.add(connection);
    void connection.recv().then(
      (hello) => {
        if (!this.#connections.delete(connection)) return; // the server stopped meanwhile
        if (!isRequest(hello)) {
          connection.close();
          return;
        }
        let link: Link;
        try {
          link = takeOver(connection, true);
        } catch {
          return; // closed by takeOver: the client sees the end
        }
        const end = (): void => {
          gone.abort();
          this.#connections.delete(link);
          link.close();
        };
        this.#connections.add(link);
        this.#handle(link, caller, hello);
        link.read({
          onMessage: (message) => {
            if (isRequest(message)) this.#handle(link, caller, message);
            else end(); // nonsense: drop the client, keep serving the others
          },
          onEnd: end,
        });
      },
      () => {
        this.#connections.delete(connection);
        connection.close();
      },
    );
  }

  #handle(connection: Link, caller: MutableCaller, [callId, objectId, method, args]: Request): void {
    let result: unknown;
    try {
      result = runAs(caller, () => (objectId === null ? this.#control(caller, method, args) : this.#callMethod(objectId, method, args)));
    } catch (error) {
      return this.#answer(connection, [callId, ERROR, errorState(error)]);
    }
    if (isThenable(result)) {
      Promise.resolve(result).then(
        (value) => this.#answer(connection, this.#reply(callId, value)),
        (error: unknown) => this.#answer(connection, [callId, ERROR, errorState(error)]),
      );
    } else {
      this.#answer(connection, this.#reply(callId, result));
    }
  }

  #reply(callId: number, value: unknown): Reply {
    if (value instanceof NewObject) return [callId, PROXY, value.info];
    return value === undefined ? [callId, RETURN] : [callId, RETURN, value]; // JSON carries the short form
  }

  #answer(connection: Link, reply: Reply): void {
    if (reply[0] === NO_ANSWER || !this.#connections.has(connection)) return; // not asked for, or the caller is gone
    try {
      connection.send(reply);
    } catch (error) {
      // A result that cannot be sent (a function in it...) is the caller's error.
      if (reply[1] === ERROR) return;
      try {
        connection.send([reply[0], ERROR, errorState(error)]);
      } catch {
        // The connection broke: its serving loop ends on its own.
      }
    }
  }

  // --- calls on held objects -------------------------------------------------

  #held(objectId: string): HeldObject {
    const held = this.#objects.get(objectId);
    if (held === undefined) throw new ReferenceError(`the manager's server holds no object ${objectId}: it was released (every proxy of it was dropped)`);
    return held;
  }

  #callMethod(objectId: string, method: string, args: unknown[]): unknown {
    const held = this.#held(objectId);
    if (!held.exposed.has(method)) {
      throw pythonError('AttributeError', `method '${method}' of the '${held.typeid}' object is not exposed`);
    }
    const fn = (held.object as Record<string, unknown>)[method];
    if (typeof fn !== 'function') throw new TypeError(`'${method}' of the '${held.typeid}' object is not a method`);
    const result: unknown = fn.apply(held.object, args);
    const typeid = held.methodToTypeid?.[method];
    if (typeid === undefined) return result;
    return isThenable(result) ? Promise.resolve(result).then((value) => this.#keep(typeid, value)) : this.#keep(typeid, result);
  }

  // --- server-level calls ------------------------------------------------------

  #control(caller: MutableCaller, method: string, args: unknown[]): unknown {
    const control = Object.prototype.hasOwnProperty.call(CONTROLS, method) ? CONTROLS[method] : undefined;
    if (control === undefined) throw pythonError('AttributeError', `the manager's server has no call '${method}'`);
    return control.call(this, caller, args);
  }

  /** Makes an object of `typeid` with `args`, held with one reference (the creating proxy's). */
  create(typeid: unknown, args: unknown): unknown {
    if (typeof typeid !== 'string') throw new TypeError(`typeid must be a string, got ${describe(typeid)}`);
    const type = this.#registry.get(typeid);
    if (type === undefined) throw new TypeError(`the manager's server has no typeid '${typeid}' registered`);
    if (type.callable === null) throw new TypeError(`typeid '${typeid}' has no callable in the manager's server`);
    const values = (Array.isArray(args) ? args : []).map((arg) => (arg instanceof HeldProxy ? arg.referent : arg));
    const made: unknown = (type.callable as (...args: unknown[]) => unknown)(...values);
    return isThenable(made) ? Promise.resolve(made).then((object) => this.#keep(typeid, object).info) : this.#keep(typeid, made).info;
  }

  /** Holds `object` (one more reference when it is held already). */
  #keep(typeid: string, object: unknown): NewObject {
    if ((typeof object !== 'object' && typeof object !== 'function') || object === null) {
      throw new TypeError(`the callable of typeid '${typeid}' returned ${describe(object)}: a manager serves objects`);
    }
    const known = this.#ids.get(object);
    if (known !== undefined) {
      const held = this.#held(known);
      held.refcount += 1;
      return new NewObject({ typeid: held.typeid, id: known, exposed: [...held.exposed] });
    }
    const type = this.#registry.get(typeid);
    const exposed = type?.exposed ?? publicMethods(object);
    const id = (this.#nextId++).toString(16);
    this.#objects.set(id, { object, typeid, exposed: new Set(exposed), methodToTypeid: type?.methodToTypeid ?? null, refcount: 1 });
    this.#ids.set(object, id);
    return new NewObject({ typeid, id, exposed: [...exposed] });
  }

  incref(objectId: unknown): void {
    this.#held(String(objectId)).refcount += 1;
  }

  /** One reference fewer; the object is released with its last one. */
  decref(objectId: unknown): void {
    const id = String(objectId);
    const held = this.#objects.get(id);
    if (held === undefined) return; // released already (a proxy of a server that was restarted...)
    held.refcount -= 1;
    if (held.refcount > 0) return;
    this.#objects.delete(id);
    this.#ids.delete(held.object);
    release(held.object);
  }

  /** The object of a proxy sent back to this server, held for as long as the server runs. */
  referent(objectId: string): object {
    const held = this.#held(objectId);
    held.refcount += 1;
    return held.object;
  }

  /** How many objects the server holds. */
  numberOfObjects(): number {
    return this.#objects.size;
  }

  /** Stops serving: closes the listener and every connection; {@link serveForever} resolves. */
  shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    servers().delete(addressKey(this.#listener.address));
    this.#listener.close();
    for (const connection of this.#connections) connection.close();
    this.#connections.clear();
    for (const held of this.#objects.values()) release(held.object);
    this.#stop();
  }
}

const CONTROLS: Record<string, Control> = {
  /** A client says which process it is: its calls over each of its connections are one caller's. */
  hello(caller, [clientId]) {
    if (typeof clientId !== 'string') throw new TypeError(`clientId must be a string, got ${describe(clientId)}`);
    caller.id = clientId;
    return null;
  },
  create(_caller, [typeid, args]) {
    return this.create(typeid, args);
  },
  incref(_caller, [objectId]) {
    this.incref(objectId);
    return null;
  },
  decref(_caller, [objectId]) {
    this.decref(objectId);
    return null;
  },
  numberOfObjects() {
    return this.numberOfObjects();
  },
  /** Answered, then the server stops: the caller's answer goes out first. */
  shutdown() {
    setImmediate(() => this.shutdown());
    return null;
  },
};

/**
 * A proxy of a server's own object, sent to that server (a list stored in a
 * dict): the server keeps it as it came, so that it goes back to clients as a
 * proxy again, and holds its object for as long as it runs.
 */
export class HeldProxy {
  constructor(
    /** The proxy's state, sent on as it came. */
    readonly state: unknown,
    /** The object it stands for. */
    readonly referent: object,
  ) {}
}
