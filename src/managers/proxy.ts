/**
 * Proxies, as CPython's `BaseProxy`: an object of a manager's server seen
 * from another process. Every method call is a request to the server; a
 * method returns a Promise, and its `Sync` twin blocks for the answer.
 *
 * A process talks to a server over two connections, each opened on first
 * use: one for asynchronous calls, answered in any order (a call id pairs
 * each answer with its call), and one for blocking calls, answered in order.
 * (Python opens one per thread; a Node process has one thread but calls
 * without waiting.)
 *
 * Reference counting, as Python's: the server holds an object as long as a
 * proxy of it lives anywhere. A proxy rebuilt in another process (a Process
 * argument, a proxy inside a proxy's value) adds a reference (incref), and a
 * FinalizationRegistry takes it back (decref) once the proxy is garbage.
 * A proxy inherited through fork() adds its reference on its first call.
 * @internal
 */
import { forkGeneration, registerAtFork } from '../at_fork';
import { EOFError } from '../errors';
import { registerReducer } from '../reduction';
import { Link, LinkConnection, takeOver } from './link';
import { addressKey, HeldProxy, localServer } from './server';
import { ERROR, NO_ANSWER, ObjectInfo, PROXY, rebuildError, RemoteErrorState, Reply, Request } from './protocol';

/** An address a manager's server listens on: a Unix socket path or `[host, port]`. */
export type Address = string | [host: string, port: number];

/** What managers use of connection.ts: Pipe, Listener and Client. */
interface ConnectionLayer {
  Pipe: unknown;
  Listener: unknown;
  Client(address: Address, options: { authkey: Buffer }): LinkConnection;
}

/** connection.ts, checked for what managers need of it. @internal */
export function connectionLayer(): ConnectionLayer {
  let layer: Partial<ConnectionLayer> = {};
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    layer = require('../connection') as Partial<ConnectionLayer>;
  } catch {
    // reported below, with what is missing
  }
  const missing = (['Pipe', 'Listener', 'Client'] as const).filter((name) => typeof layer[name] !== 'function');
  if (missing.length > 0) {
    throw Object.assign(new Error(`managers need mp.connection's ${missing.join(', ')}, which this build of node-multiprocessing does not have`), {
      code: 'ERR_MANAGER_NO_CONNECTION',
    });
  }
  return layer as ConnectionLayer;
}

/** Opens an authenticated connection to a server (mp.connection.Client). */
function connect(address: Address, authkey: Buffer): LinkConnection {
  return connectionLayer().Client(address, { authkey });
}

/** A call of a server that is gone: a clear Error naming the server, the cause attached. */
function serverGone(address: Address, cause: unknown): Error {
  const error = new Error(`the manager's server at ${JSON.stringify(address)} is gone (${(cause as Error)?.message ?? String(cause)})`, { cause });
  (error as { code?: string }).code = 'ERR_MANAGER_GONE';
  return error;
}

/**
 * Calls of one process sent and not answered yet, at most. `send()` blocks
 * while the peer's buffer is full, and a Unix socket's buffer holds a few
 * hundred small messages: a burst of unanswered calls (Promise.all of 1,000
 * sets) would fill the server's buffer while its answers fill ours, each side
 * blocked in send(). Answers to this many always fit.
 */
const MAX_IN_FLIGHT = 32;

interface PendingCall {
  resolve(reply: Reply): void;
  reject(error: Error): void;
}

/** This process's connections to one server. */
export class ServerLink {
  readonly #address: Address;
  readonly #authkey: Buffer;
  #async: Link | null = null;
  #sync: Link | null = null;
  readonly #pending = new Map<number, PendingCall>();
  /** Calls not sent yet: at most MAX_IN_FLIGHT are. */
  #waiting: Request[] = [];
  #nextCall = 1;
  /** The async link reads its answers (while calls are pending, and a turn of the loop after). */
  #reading = false;
  #idleCheck = false;
  #broken: Error | null = null;
  /** How the async link's answers are taken. */
  readonly #reader = {
    onMessage: (reply: unknown): void => this.#answered(reply as Reply),
    onEnd: (error: Error): void => void this.#breakWith(error),
    more: (): boolean => this.#pending.size > 0,
  };

  constructor(address: Address, authkey: Buffer) {
    this.#address = address;
    this.#authkey = authkey;
  }

  get address(): Address {
    return this.#address;
  }

  get authkey(): Buffer {
    return this.#authkey;
  }

  /**
   * A link that said which process it belongs to (calls of both links are
   * one caller's). The hello is answered before anything else is sent: its
   * Connection has nothing buffered past that answer when the link takes it
   * over (link.ts).
   */
  #open(evented: boolean): Link {
    let connection: LinkConnection;
    try {
      connection = connect(this.#address, this.#authkey);
    } catch (error) {
      if ((error as Error).name === 'AuthenticationError') throw error;
      throw serverGone(this.#address, error);
    }
    let answer: Reply;
    try {
      connection.send([0, null, 'hello', [clientId()]] satisfies Request);
      answer = connection.recvSync() as Reply;
    } catch (error) {
      connection.close();
      throw serverGone(this.#address, error);
    }
    if (answer[1] === ERROR) {
      connection.close();
      throw serverGone(this.#address, rebuildError(answer[2] as RemoteErrorState));
    }
    return takeOver(connection, evented);
  }

  /** Sends a call and resolves with its answer. */
  call(objectId: string | null, method: string, args: unknown[]): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      if (this.#broken !== null) return reject(this.#broken);
      const request: Request = [this.#nextCall++, objectId, method, args];
      if (this.#pending.size < MAX_IN_FLIGHT) {
        try {
          this.#send(request);
        } catch (error) {
          return reject(this.#failure(error));
        }
      } else {
        this.#waiting.push(request);
      }
      this.#pending.set(request[0], { resolve, reject });
      this.#readAnswers();
    });
  }

  #send(request: Request): void {
    this.#async ??= this.#open(true);
    this.#async.send(request);
  }

  /** An answer came: the oldest call waiting to be sent goes out. */
  #sendNext(): void {
    const request = this.#waiting.shift();
    if (request === undefined) return;
    try {
      this.#send(request);
    } catch (error) {
      const call = this.#pending.get(request[0]);
      this.#pending.delete(request[0]);
      call?.reject(this.#failure(error));
    }
  }

  /**
   * Reads answers while calls are pending. Not longer: an idle link must not
   * keep the process alive; but a turn of the loop later, so that a caller
   * that awaits one call and makes the next keeps its link reading.
   */
  #readAnswers(): void {
    if (this.#async === null) return;
    this.#reading = true;
    this.#async.read(this.#reader); // again on each call: a link without the addon stops once nothing is pending
  }

  #stopReading(): void {
    if (!this.#reading) return;
    this.#reading = false;
    this.#async?.pause();
  }

  #answered(reply: Reply): void {
    const call = this.#pending.get(reply[0]);
    this.#pending.delete(reply[0]);
    this.#sendNext();
    call?.resolve(reply);
    if (this.#pending.size === 0 && !this.#idleCheck) {
      this.#idleCheck = true;
      setImmediate(() => {
        this.#idleCheck = false;
        if (this.#pending.size === 0) this.#stopReading();
      });
    }
  }

  /** Sends a call and blocks for its answer. */
  callSync(objectId: string | null, method: string, args: unknown[]): Reply {
    if (this.#broken !== null) throw this.#broken;
    try {
      this.#sync ??= this.#open(false);
      return this.#sync.call([0, objectId, method, args] satisfies Request) as Reply;
    } catch (error) {
      throw this.#failure(error);
    }
  }

  /** A call's failure: an argument that cannot be sent is the caller's TypeError; a broken connection breaks the link. */
  #failure(error: unknown): Error {
    if (error instanceof TypeError || (error as Error).name === 'AuthenticationError') return error as Error;
    if ((error as { code?: unknown }).code === 'ERR_MANAGER_GONE') return error as Error;
    return this.#breakWith(error);
  }

  #breakWith(cause: unknown): Error {
    const error = cause instanceof Error && (cause as { code?: string }).code === 'ERR_MANAGER_GONE' ? cause : serverGone(this.#address, cause instanceof EOFError ? new EOFError('the connection was closed') : cause);
    this.#broken = error;
    for (const call of this.#pending.values()) call.reject(error);
    this.#pending.clear();
    this.#waiting = [];
    this.#reading = false;
    this.#async?.close();
    this.#sync?.close();
    this.#async = this.#sync = null;
    return error;
  }

  /**
   * In a forked child, at once: the parent's reading of its answers is the
   * parent's, and its poll (copied by the fork) must not keep the child's
   * event loop alive.
   */
  _forgetInChild(): void {
    this.#stopReading();
  }

  /** A call the server does not answer (hello, incref, decref); lost with a broken link. */
  tell(objectId: string | null, method: string, args: unknown[]): void {
    if (this.#broken !== null) return;
    try {
      this.#send([NO_ANSWER, objectId, method, args]);
    } catch (error) {
      this.#failure(error);
    }
  }
}

// --- links per process ---------------------------------------------------------

let links = new Map<string, ServerLink>();
let linksGeneration = forkGeneration();
let ownId: string | null = null;

/** This process's id for servers: a forked child's is its own. */
function clientId(): string {
  if (ownId === null || linksGeneration !== forkGeneration()) ownId = `${process.pid}-${forkGeneration()}-${Math.random().toString(36).slice(2)}`;
  return ownId;
}

let forkHooked = false;

/** This process's link to the server at `address` (a forked child never uses its parent's connections). */
export function linkTo(address: Address, authkey: Buffer): ServerLink {
  if (!forkHooked) {
    forkHooked = true;
    registerAtFork({ afterInChild: () => links.forEach((link) => link._forgetInChild()) });
  }
  if (linksGeneration !== forkGeneration()) {
    linksGeneration = forkGeneration();
    links = new Map();
    ownId = null;
  }
  const key = `${addressKey(address)} ${authkey.toString('hex')}`; // a client with another key gets a link of its own
  let link = links.get(key);
  if (link === undefined) {
    link = new ServerLink(address, authkey);
    links.set(key, link);
  }
  return link;
}

// --- proxies ------------------------------------------------------------------

/** Where a proxy's object is, as Python's `Token` (with the exposed names and the authkey). */
export interface ProxyState extends ObjectInfo {
  address: Address;
  authkey: Buffer;
}

/** Symbol-keyed: a Namespace proxy is a JS Proxy, whose target private fields cannot be read through. */
const STATE = Symbol('proxy state');
const GENERATION = Symbol('proxy generation');
const LINK = Symbol('proxy link');

interface Referenced {
  link: ServerLink;
  id: string;
  generation: number;
}

/** Takes back a proxy's reference once it is garbage, in the process that added it. */
const released = new FinalizationRegistry<Referenced>(({ link, id, generation }) => {
  if (generation === forkGeneration() && linksGeneration === forkGeneration()) link.tell(null, 'decref', [id]);
});

/** A proxy's class, made from its state. */
export type ProxyClass = new (state: ProxyState, incref: boolean) => BaseProxy;

/**
 * A proxy of an object held by a manager's server, as Python's
 * `managers.BaseProxy`. Subclasses call {@link _callMethod} and
 * {@link _callMethodSync}; {@link exposeMethods} writes both for a list of names.
 */
export class BaseProxy {
  /** @internal */ readonly [STATE]: ProxyState;
  /** @internal The fork generation whose reference this proxy holds. */ [GENERATION]: number;
  /** @internal Its link, found once per fork generation (a call costs no lookup). */ [LINK]: ServerLink | null = null;

  /** @internal Proxies are made by a manager's factories and when they cross into a process. */
  constructor(state: ProxyState, incref: boolean) {
    this[STATE] = state;
    this[GENERATION] = forkGeneration();
    if (incref) addReference(this);
    else released.register(this, { link: this._link(), id: state.id, generation: this[GENERATION] });
  }

  /** @internal This process's link to the server (a forked child's proxy adds its reference on first use). */
  _link(): ServerLink {
    if (this[GENERATION] !== forkGeneration()) addReference(this);
    return (this[LINK] ??= linkTo(this[STATE].address, this[STATE].authkey));
  }

  /** The typeid of the object in its server (`'dict'`, `'Queue'`...). */
  get _typeid(): string {
    return this[STATE].typeid;
  }

  /** The id of the object in its server. */
  get _id(): string {
    return this[STATE].id;
  }

  /** The address of the server. */
  get _address(): Address {
    return this[STATE].address;
  }

  /** Calls `method` of the object in the server; resolves with its result, rejects with its error. */
  async _callMethod(method: string, args: unknown[] = []): Promise<unknown> {
    return resultOf(this, await this._link().call(this[STATE].id, method, args));
  }

  /** {@link _callMethod}, blocking for the answer. */
  _callMethodSync(method: string, args: unknown[] = []): unknown {
    return resultOf(this, this._link().callSync(this[STATE].id, method, args));
  }

  /** `<DictProxy object, typeid 'dict' at 1f>`, as Python's repr. */
  toString(): string {
    return `<${this.constructor.name} object, typeid '${this[STATE].typeid}' at ${this[STATE].id}>`;
  }
}

// Functions, not private methods: `this` may be a Namespace proxy's JS Proxy, through which no private member is reached.

/** `proxy` holds a reference of this process from now on, taken back once it is garbage. */
function addReference(proxy: BaseProxy): void {
  proxy[GENERATION] = forkGeneration();
  const link = linkTo(proxy[STATE].address, proxy[STATE].authkey);
  proxy[LINK] = link;
  link.tell(null, 'incref', [proxy[STATE].id]);
  released.register(proxy, { link, id: proxy[STATE].id, generation: proxy[GENERATION] });
}

/** What a call of `proxy`'s method answered: its value, its error thrown, or a proxy of a new object of the server. */
function resultOf(proxy: BaseProxy, [, status, value]: Reply): unknown {
  if (status === ERROR) throw rebuildError(value as RemoteErrorState);
  if (status === PROXY) return makeProxy({ ...(value as ObjectInfo), address: proxy[STATE].address, authkey: proxy[STATE].authkey }, false);
  return value;
}

/** Defines `name(...args)` (a Promise) and `nameSync(...args)` for each of `names` on `type`'s prototype. */
export function exposeMethods(type: abstract new (...args: never[]) => BaseProxy, names: readonly string[]): void {
  for (const name of names) {
    Object.defineProperty(type.prototype, name, {
      configurable: true,
      writable: true,
      value: function (this: BaseProxy, ...args: unknown[]) {
        return this._callMethod(name, args);
      },
    });
    Object.defineProperty(type.prototype, `${name}Sync`, {
      configurable: true,
      writable: true,
      value: function (this: BaseProxy, ...args: unknown[]) {
        return this._callMethodSync(name, args);
      },
    });
  }
}

// --- proxy types by typeid ----------------------------------------------------------

const proxyTypes = new Map<string, ProxyClass>();
const autoProxyTypes = new Map<string, ProxyClass>();

/** Proxies of `typeid` are made with `type` in this process (BaseManager.register). */
export function setProxyType(typeid: string, type: ProxyClass): void {
  proxyTypes.set(typeid, type);
}

/** A proxy class with a method (and its Sync twin) for each exposed name, as Python's `AutoProxy`. */
export function autoProxyType(exposed: readonly string[]): ProxyClass {
  const key = [...exposed].sort().join(',');
  let type = autoProxyTypes.get(key);
  if (type === undefined) {
    type = class AutoProxy extends BaseProxy {};
    exposeMethods(type, exposed);
    autoProxyTypes.set(key, type);
  }
  return type;
}

/** A proxy of `state`: of its typeid's registered class, else an AutoProxy of its exposed methods. */
export function makeProxy(state: ProxyState, incref: boolean): BaseProxy {
  const type = proxyTypes.get(state.typeid) ?? autoProxyType(state.exposed);
  return new type(state, incref);
}

// --- crossing into other processes --------------------------------------------------

const proxyReducer = {
  kind: 'ManagerProxy',
  reduce: (proxy: BaseProxy | HeldProxy): ProxyState => (proxy instanceof HeldProxy ? (proxy.state as ProxyState) : { ...proxy[STATE] }),
  /** In the proxy's own server: the server keeps it and its object; elsewhere: a proxy with a reference of its own. */
  rebuild(state: ProxyState): BaseProxy | HeldProxy {
    const server = localServer(state.address);
    if (server !== undefined) return new HeldProxy(state, server.referent(state.id));
    return makeProxy(state, true);
  },
};
registerReducer(BaseProxy, proxyReducer);
registerReducer(HeldProxy, proxyReducer);
