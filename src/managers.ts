/**
 * Managers, as CPython's `multiprocessing.managers`: a server process holds
 * objects (a dict, a list, a Namespace, a Queue, a Lock...) and other
 * processes use them through proxies, on this machine or across the network.
 *
 * @example
 * ```ts
 * import * as mp from 'node-multiprocessing';
 *
 * await using manager = await mp.Manager();
 * const results = await manager.dict<string, number>();
 * const workers = [1, 2, 3].map((n) => new mp.Process({ target: async (d, n) => d.set(`w${n}`, n * n), args: [results, n] }));
 * for (const w of workers) w.start();
 * for (const w of workers) await w.join();
 * console.log(await results.toObject()); // { w1: 1, w2: 4, w3: 9 }
 * ```
 * @packageDocumentation
 */
import type * as Crypto from 'crypto';

import { forkGeneration, registerAtFork } from './at_fork';
import type { BaseContext } from './context';
import type { BaseProcess } from './process';
import { Reference, referenceOf, resolveReference } from './reference';
import { describe, validateFunction, validateOptions, validateTimeout } from './validate';
import * as objects from './managers/objects';
import { ERROR, ObjectInfo, rebuildError, RemoteErrorState, Reply, errorState } from './managers/protocol';
import { AsyncResultProxy, IteratorProxy, IteratorProxyLater, makePool, PoolProxy } from './managers/pool';
import type { AbortableCallOptions, AbortableMapOptions, ManagedCallbacks, ManagedCallOptions, ManagedMapOptions } from './managers/pool';
import * as proxies from './managers/proxies';
import type { AcquireOptions, BlockOptions, DictKey } from './managers/proxies';
import type { LinkConnection } from './managers/link';
import { Address, autoProxyType, BaseProxy, connectionLayer, linkTo, ProxyClass, ProxyState, ServerLink, setProxyType } from './managers/proxy';
import { Server, ServedCallable, ServedType, ServerListener } from './managers/server';

export {
  AcquirerProxy,
  ArrayProxy,
  BarrierProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  JoinableQueueProxy,
  ListProxy,
  NamespaceProxy,
  QueueProxy,
  SemaphoreProxy,
  ValueProxy,
} from './managers/proxies';
export { AsyncResultProxy, BaseProxy, IteratorProxy, IteratorProxyLater, PoolProxy, Server };
export type {
  AbortableCallOptions,
  AbortableMapOptions,
  AcquireOptions,
  Address,
  BlockOptions,
  DictKey,
  ManagedCallbacks,
  ManagedCallOptions,
  ManagedMapOptions,
  ProxyClass,
  ProxyState,
};

/**
 * The objects a SyncManager's server holds, for a server of your own
 * (`getServer()`): `new mp.managers.Queue()` is what Python's remote-manager
 * examples serve as `queue.Queue()`.
 */
export {
  ServerArray as Array,
  ServerBarrier as Barrier,
  ServerBoundedSemaphore as BoundedSemaphore,
  ServerCondition as Condition,
  ServerDict as Dict,
  ServerEvent as Event,
  ServerJoinableQueue as JoinableQueue,
  ServerList as List,
  ServerLock as Lock,
  ServerNamespace as Namespace,
  ServerQueue as Queue,
  ServerRLock as RLock,
  ServerSemaphore as Semaphore,
  ServerValue as Value,
} from './managers/objects';

// --- what the connection layer gives ------------------------------------------------

type PipeEnd = LinkConnection;

interface ConnectionModule {
  Pipe(duplex?: boolean): [PipeEnd, PipeEnd];
  Listener: new (address?: Address | null, options?: { authkey?: Buffer | null; backlog?: number }) => ServerListener<Address>;
}

function connection(): ConnectionModule {
  return connectionLayer() as ConnectionModule;
}

/** Clients that may wait to be accepted, as Python's Server listens (every process of a Pool connecting at once). */
const BACKLOG = 128;

function randomKey(): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return (require('crypto') as typeof Crypto).randomBytes(32);
}

// --- registering typeids ------------------------------------------------------------

/** How `register()` describes a typeid, as the arguments of Python's `BaseManager.register`. */
export interface RegisterOptions {
  /**
   * Makes the object in the server (a function, or a class: called with
   * `new`). Omit it on a manager that only `connect()`s: the server has it.
   * Under the spawn and forkserver start methods it must be exported by a
   * module, as a Process target.
   */
  callable?: ((...args: never[]) => unknown) | (new (...args: never[]) => unknown) | null;
  /** The proxy class (a subclass of {@link BaseProxy}); default: one made from the exposed names (AutoProxy). */
  proxytype?: ProxyClass | null;
  /** The methods clients may call; default: the proxytype's `_exposed`, else every public method. */
  exposed?: readonly string[] | null;
  /** Methods whose results stay in the server, returned as proxies of the given typeid. */
  methodToTypeid?: Readonly<Record<string, string>> | null;
  /** Whether the manager gets a `typeid()` factory method (and `typeidSync()`). Default true. */
  createMethod?: boolean;
}

interface RegisteredType extends ServedType {
  readonly proxytype: ProxyClass | null;
}

/** A class called as a function throws: a registered class is made with `new`. */
function asCallable(callable: RegisterOptions['callable']): ServedCallable | null {
  if (callable == null) return null;
  validateFunction(callable, 'options.callable');
  if (/^class[\s{]/.test(Function.prototype.toString.call(callable))) {
    const type = callable as unknown as new (...args: unknown[]) => unknown;
    const make = (...args: unknown[]): unknown => new type(...args);
    originals.set(make, type as unknown as ServedCallable);
    return make;
  }
  return callable as ServedCallable;
}

/** The class behind a made-with-new callable: what a spawned server finds by reference. */
const originals = new WeakMap<ServedCallable, ServedCallable>();

// --- the server process -----------------------------------------------------------------

/** A typeid as it crosses into the server process: its callable as a function (fork) or by reference. */
interface TypeSpec {
  typeid: string;
  callable: ServedCallable | Reference | null;
  isClass: boolean;
  exposed: readonly string[] | null;
  methodToTypeid: Readonly<Record<string, string>> | null;
}

/** What the server process is started with. */
export interface ServerSpec {
  types: TypeSpec[];
  address: Address | null;
  authkey: Buffer;
  initializer: ServedCallable | Reference | null;
  initargs: unknown[];
}

/** What the server says to its owner once it listens (or failed to). */
type StartReport = { address: Address } | { error: RemoteErrorState };

async function resolveCallable(callable: ServedCallable | Reference | null, what: string): Promise<ServedCallable | null> {
  if (callable === null || typeof callable === 'function') return callable;
  return (await resolveReference(callable, what)) as ServedCallable;
}

async function resolveTypes(types: readonly TypeSpec[]): Promise<Map<string, ServedType>> {
  const registry = new Map<string, ServedType>();
  for (const type of types) {
    let callable = await resolveCallable(type.callable, `callable of typeid '${type.typeid}'`);
    if (callable !== null && type.isClass) callable = asCallable(callable);
    registry.set(type.typeid, { typeid: type.typeid, callable, exposed: type.exposed, methodToTypeid: type.methodToTypeid });
  }
  return registry;
}

/**
 * The manager server process's target: serves until its owner shuts it down
 * or is gone (the owner's end of `ownerLink` closes, by any exit, SIGKILL
 * included). @internal
 */
export async function serveManager(spec: ServerSpec, ownerLink: PipeEnd): Promise<void> {
  allowChildren();
  let server: Server;
  try {
    const registry = await resolveTypes(spec.types);
    const initializer = await resolveCallable(spec.initializer, 'initializer');
    if (initializer !== null) await (initializer as (...args: unknown[]) => unknown)(...spec.initargs);
    server = new Server(registry, new (connection().Listener)(spec.address, { authkey: Buffer.from(spec.authkey), backlog: BACKLOG }));
  } catch (error) {
    ownerLink.send({ error: errorState(error) } satisfies StartReport);
    ownerLink.close();
    return;
  }
  // The owner's exit terminates its daemonic children: leave as cleanly as on a shutdown.
  process.on('SIGTERM', () => server.shutdown());
  ownerLink.send({ address: server.address as Address } satisfies StartReport);
  // Any message, or the end of the owner's end, stops the server.
  ownerLink.recv().then(
    () => server.shutdown(),
    () => server.shutdown(),
  );
  await server.serveForever();
  ownerLink.close();
  // As Python's server process (serve_forever ends in sys.exit(0)): nothing an initializer
  // left behind (a timer, a socket) keeps it running. A forked server leaves through
  // _exit once this target settles; a spawned one would wait for its event loop.
  if (forkGeneration() === 0) process.exit(0);
}

/**
 * The server is daemonic to its owner (it never keeps the owner alive and is
 * ended with it), yet it may start children, as Python's manager process
 * does (a Pool's workers): on its way out, by a shutdown, its owner's end or
 * SIGTERM, it terminates and joins them as any process does.
 */
function allowChildren(): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  (require('./process') as typeof import('./process')).currentProcess().daemon = false;
}

// --- BaseManager ---------------------------------------------------------------------

/** The options of `new BaseManager()`, as Python's `BaseManager(address, authkey, serializer, ctx, shutdown_timeout)`. */
export interface ManagerOptions {
  /** Where the server listens (a Unix socket path or `[host, port]`); default: a new Unix socket. */
  address?: Address | null;
  /** The key clients must know (HMAC challenge); default: 32 random bytes. */
  authkey?: Buffer | Uint8Array | string | null;
  /** The context whose start method starts the server; default: the default context. */
  context?: BaseContext | null;
  /** How long `shutdown()` waits for the server to end before terminating it, in ms. Default 1000. */
  shutdownTimeout?: number;
}

type ManagerState = 'initial' | 'started' | 'connected' | 'shutdown';

/** An initializer run in the server process before it serves. */
export type Initializer<A extends unknown[] = unknown[]> = (...args: A) => unknown;

/**
 * A manager, as Python's `BaseManager`: register typeids with
 * {@link BaseManager.register}, then `start()` a server process, `connect()`
 * to a server elsewhere, or serve in this process with `getServer()`.
 * Each typeid registered with a callable gets a factory method of its name
 * (`manager.typeid(...args)` → Promise of a proxy, `typeidSync`).
 *
 * @example
 * ```ts
 * // One machine serves a queue (as Python's documentation does):
 * class QueueManager extends mp.BaseManager {}
 * const queue = new mp.managers.Queue();
 * QueueManager.register('getQueue', { callable: () => queue });
 * const m = new QueueManager({ address: ['0.0.0.0', 50000], authkey: 'abracadabra' });
 * await m.getServer().serveForever();
 *
 * // Another connects, puts and gets:
 * class QueueManager extends mp.BaseManager {}
 * QueueManager.register('getQueue');
 * const m = new QueueManager({ address: ['server.example', 50000], authkey: 'abracadabra' });
 * await m.connect();
 * const q = await m.getQueue();
 * await q.put('hello');
 * ```
 */
export class BaseManager {
  /** @internal This class's typeids (a subclass starts with a copy of its parent's). */
  static _registry: Map<string, RegisteredType> = new Map();

  /**
   * Registers `typeid`: the callable that makes its objects in the server,
   * the proxy class clients use, the exposed methods. Adds the factory
   * method `typeid(...args)` (and `typeidSync`) to the class unless
   * `createMethod` is false.
   */
  static register(typeid: string, options: RegisterOptions = {}): void {
    if (typeof typeid !== 'string' || typeid === '') throw new TypeError(`typeid must be a non-empty string, got ${describe(typeid)}`);
    const { callable, proxytype = null, exposed = null, methodToTypeid = null, createMethod = true } = validateOptions(options, [
      'callable',
      'proxytype',
      'exposed',
      'methodToTypeid',
      'createMethod',
    ] as const) as RegisterOptions;
    if (proxytype !== null && !(typeof proxytype === 'function' && proxytype.prototype instanceof BaseProxy)) {
      throw new TypeError(`options.proxytype must be a subclass of BaseProxy, got ${describe(proxytype)}`);
    }
    if (exposed !== null && !(Array.isArray(exposed) && exposed.every((name) => typeof name === 'string'))) {
      throw new TypeError(`options.exposed must be an array of method names, got ${describe(exposed)}`);
    }
    if (typeof createMethod !== 'boolean') throw new TypeError(`options.createMethod must be a boolean, got ${describe(createMethod)}`);
    if (!Object.prototype.hasOwnProperty.call(this, '_registry')) this._registry = new Map(this._registry);
    const defaultExposed = (proxytype as { _exposed?: readonly string[] } | null)?._exposed ?? null;
    this._registry.set(typeid, {
      typeid,
      callable: asCallable(callable),
      exposed: exposed ?? defaultExposed,
      methodToTypeid,
      proxytype,
    });
    if (proxytype !== null) setProxyType(typeid, proxytype);
    if (createMethod) defineFactory(this.prototype, typeid);
  }

  readonly #options: { address: Address | null; authkey: Buffer; context: BaseContext | null; shutdownTimeout: number };
  #state: ManagerState = 'initial';
  #address: Address | null;
  #process: BaseProcess | null = null;
  #ownerLink: PipeEnd | null = null;
  #serverLink: PipeEnd | null = null;

  constructor(options: ManagerOptions = {}) {
    const { address = null, authkey = null, context = null, shutdownTimeout = 1000 } = validateOptions(options, [
      'address',
      'authkey',
      'context',
      'shutdownTimeout',
    ] as const) as ManagerOptions;
    validateTimeout(shutdownTimeout, 'options.shutdownTimeout');
    this.#options = { address: validateAddress(address), authkey: toKey(authkey), context, shutdownTimeout };
    this.#address = this.#options.address;
  }

  /** The server's address (known once started, connected or served). */
  get address(): Address | null {
    return this.#address;
  }

  /** @internal The server process of a started manager (Python's `_process`). */
  get _process(): BaseProcess | null {
    return this.#process;
  }

  /** The key clients must know. */
  get authkey(): Buffer {
    return this.#options.authkey;
  }

  /** @internal This manager's link to its server. */
  _link(): ServerLink {
    if (this.#state === 'initial') throw new Error('the manager has not been started: call start() or connect() first');
    if (this.#state === 'shutdown') throw new Error('the manager has been shut down');
    return linkTo(this.#address as Address, this.#options.authkey);
  }

  #registry(): Map<string, RegisteredType> {
    return (this.constructor as typeof BaseManager)._registry;
  }

  /**
   * Starts the server process (with the context's start method) and resolves
   * once it listens. `initializer(...initargs)` runs in it first.
   */
  async start<A extends unknown[]>(initializer?: Initializer<A> | null, initargs?: A): Promise<void> {
    const ownerLink = this.#launch(initializer, initargs);
    this.#started(await ownerLink.recv().catch((error: unknown) => this.#lostAtStart(error)));
  }

  /** {@link start}, blocking until the server listens. */
  startSync<A extends unknown[]>(initializer?: Initializer<A> | null, initargs?: A): void {
    const ownerLink = this.#launch(initializer, initargs);
    let report: unknown;
    try {
      report = ownerLink.recvSync();
    } catch (error) {
      report = this.#lostAtStart(error);
    }
    this.#started(report);
  }

  #launch<A extends unknown[]>(initializer: Initializer<A> | null | undefined, initargs: A | undefined): PipeEnd {
    if (this.#state !== 'initial') throw new Error(`the manager has already been ${this.#state === 'started' ? 'started' : this.#state}`);
    if (initializer != null) validateFunction(initializer, 'initializer');
    if (initargs !== undefined && !Array.isArray(initargs)) throw new TypeError(`initargs must be an array, got ${describe(initargs)}`);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const context = this.#options.context ?? (require('./context') as typeof import('./context')).getContext();
    const method = context.getStartMethod();
    const byReference = method !== 'fork';
    const send = (fn: ServedCallable | null, what: string): ServedCallable | Reference | null =>
      fn === null ? null : byReference ? referenceOf(originals.get(fn) ?? fn, what, method) : fn;
    const spec: ServerSpec = {
      types: [...this.#registry().values()].map((type) => ({
        typeid: type.typeid,
        callable: send(type.callable, `callable of typeid '${type.typeid}'`),
        isClass: type.callable !== null && originals.has(type.callable),
        exposed: type.exposed,
        methodToTypeid: type.methodToTypeid,
      })),
      address: this.#options.address,
      authkey: this.#options.authkey,
      initializer: send((initializer ?? null) as ServedCallable | null, 'initializer'),
      initargs: initargs ?? [],
    };
    const [ownerLink, serverLink] = connection().Pipe(true);
    // Daemonic: a server must not keep its owner's event loop alive (it ends with its owner anyway).
    const name = `${this.constructor.name}-${++managerCount}`;
    const server = new context.Process({ target: serveManager, args: [spec, serverLink], name, daemon: true });
    holdOwnerLink(ownerLink); // before the fork: a forked server must not keep a copy of it
    try {
      server.start();
    } catch (error) {
      releaseOwnerLink(ownerLink);
      serverLink.close();
      throw error;
    }
    this.#process = server;
    this.#ownerLink = ownerLink;
    // A spawned server takes its end from this process while it starts: closed once it reported.
    this.#serverLink = serverLink;
    this.#state = 'started';
    return ownerLink;
  }

  #lostAtStart(error: unknown): never {
    this.#state = 'shutdown';
    this.#serverLink?.close();
    throw new Error(`the manager's server process ended before it listened (exit code ${this.#process?.exitCode ?? 'unknown'})`, { cause: error });
  }

  #started(report: unknown): void {
    this.#serverLink?.close();
    this.#serverLink = null;
    const result = report as StartReport;
    if ('error' in result) {
      this.#state = 'shutdown';
      if (this.#ownerLink !== null) releaseOwnerLink(this.#ownerLink);
      void this.#process?.join();
      throw rebuildError(result.error);
    }
    this.#address = result.address;
  }

  /** Connects to a running server at `address` (checks the authkey: `mp.AuthenticationError`). */
  async connect(): Promise<void> {
    const link = this.#connecting();
    this.#checked(await link.call(null, 'numberOfObjects', []));
  }

  /** {@link connect}, blocking. */
  connectSync(): void {
    this.#checked(this.#connecting().callSync(null, 'numberOfObjects', []));
  }

  #connecting(): ServerLink {
    if (this.#state !== 'initial') throw new Error(`the manager has already been ${this.#state}`);
    if (this.#address === null) throw new TypeError('connect() needs the address of a server: new BaseManager({ address, authkey })');
    this.#state = 'connected';
    return this._link();
  }

  #checked([, status, value]: Reply): void {
    if (status === ERROR) {
      this.#state = 'initial';
      throw rebuildError(value as RemoteErrorState);
    }
  }

  /**
   * A server of this manager's typeids in this process, listening on the
   * manager's address: `await manager.getServer().serveForever()` serves
   * until a client shuts it down.
   */
  getServer(): Server {
    if (this.#state !== 'initial') throw new Error(`getServer() needs a manager that was not started or connected (it is ${this.#state})`);
    const listener = new (connection().Listener)(this.#options.address, { authkey: this.#options.authkey, backlog: BACKLOG });
    const server = new Server(this.#registry(), listener);
    this.#address = listener.address;
    return server;
  }

  /**
   * Stops the server process (waits `shutdownTimeout` for it, then
   * terminates it). Proxies of its objects then reject. A connected manager
   * just stops using the server.
   */
  async shutdown(): Promise<void> {
    const server = this.#stopping();
    if (server === null) return;
    await server.join(this.#options.shutdownTimeout);
    if (server.exitCode === null) server.terminate();
    await server.join();
  }

  /** {@link shutdown}, blocking. */
  shutdownSync(): void {
    const server = this.#stopping();
    if (server === null) return;
    server.joinSync(this.#options.shutdownTimeout);
    if (server.exitCode === null) server.terminate();
    server.joinSync();
  }

  #stopping(): BaseProcess | null {
    const wasStarted = this.#state === 'started';
    this.#state = 'shutdown';
    if (!wasStarted) return null;
    if (this.#ownerLink !== null) releaseOwnerLink(this.#ownerLink); // the server's watch of it ends: the server stops
    this.#ownerLink = null;
    return this.#process;
  }

  /** Shuts a started manager down, as Python's `with` block does: `await using manager = await mp.Manager()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  /** @internal Makes an object of `typeid` in the server: a proxy with the creation's reference. */
  async _create(typeid: string, args: unknown[]): Promise<BaseProxy> {
    return this.#proxyOf(typeid, await this._link().call(null, 'create', [typeid, args]));
  }

  /** @internal {@link _create}, blocking. */
  _createSync(typeid: string, args: unknown[]): BaseProxy {
    return this.#proxyOf(typeid, this._link().callSync(null, 'create', [typeid, args]));
  }

  #proxyOf(typeid: string, [, status, value]: Reply): BaseProxy {
    if (status === ERROR) throw rebuildError(value as RemoteErrorState);
    const info = value as ObjectInfo;
    const state: ProxyState = { ...info, address: this.#address as Address, authkey: this.#options.authkey };
    const proxytype = this.#registry().get(typeid)?.proxytype ?? autoProxyType(info.exposed);
    return new proxytype(state, false);
  }

  /** @internal How many objects the server holds (as Python's `_number_of_objects`). */
  async _numberOfObjects(): Promise<number> {
    const [, status, value] = await this._link().call(null, 'numberOfObjects', []);
    if (status === ERROR) throw rebuildError(value as RemoteErrorState);
    return value as number;
  }
}

let managerCount = 0;

// --- the owner's ends of the links to its servers -------------------------------------
// A server stops when its owner's end closes. So the owner closes them all as
// it exits (the exit handler then joins the servers, as Python's shuts its
// managers down before joining its children), and a forked child closes its
// copies at once: a child that outlives a killed owner must not keep its
// servers running.

const ownerLinks = new Set<PipeEnd>();
let hooked = false;

function holdOwnerLink(link: PipeEnd): void {
  ownerLinks.add(link);
  if (hooked) return;
  hooked = true;
  registerAtFork({ afterInChild: closeOwnerLinks });
  process.prependListener('exit', closeOwnerLinks);
}

function releaseOwnerLink(link: PipeEnd): void {
  ownerLinks.delete(link);
  link.close();
}

function closeOwnerLinks(): void {
  for (const link of ownerLinks) link.close();
  ownerLinks.clear();
}

/** The factory `typeid(...args)` and its Sync twin, on a manager class's prototype. */
function defineFactory(prototype: BaseManager, typeid: string): void {
  Object.defineProperty(prototype, typeid, {
    configurable: true,
    writable: true,
    value: function (this: BaseManager, ...args: unknown[]) {
      return this._create(typeid, args);
    },
  });
  Object.defineProperty(prototype, `${typeid}Sync`, {
    configurable: true,
    writable: true,
    value: function (this: BaseManager, ...args: unknown[]) {
      return this._createSync(typeid, args);
    },
  });
}

function validateAddress(address: unknown): Address | null {
  if (address === null || address === undefined) return null;
  if (typeof address === 'string') return address;
  if (Array.isArray(address) && address.length === 2 && typeof address[0] === 'string' && Number.isInteger(address[1])) {
    return [address[0], address[1] as number];
  }
  throw new TypeError(`options.address must be a Unix socket path or [host, port], got ${describe(address)}`);
}

function toKey(authkey: unknown): Buffer {
  if (authkey === null || authkey === undefined) return randomKey();
  if (typeof authkey === 'string') return Buffer.from(authkey);
  if (authkey instanceof Uint8Array) return Buffer.from(authkey);
  throw new TypeError(`options.authkey must be a Buffer, a Uint8Array or a string, got ${describe(authkey)}`);
}

// --- SyncManager ---------------------------------------------------------------------

/**
 * The manager of `mp.Manager()`, as Python's `SyncManager`: factories of
 * shared objects held by its server, each returning a Promise of a proxy,
 * with a blocking `Sync` twin (`dictSync()`...).
 */
export class SyncManager extends BaseManager {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface SyncManager {
  /** A dict (init: a plain object, a Map or [key, value] pairs). */
  dict<K extends DictKey = DictKey, V = unknown>(init?: Record<string, V> | Map<K, V> | [K, V][]): Promise<proxies.DictProxy<K, V>>;
  dictSync<K extends DictKey = DictKey, V = unknown>(init?: Record<string, V> | Map<K, V> | [K, V][]): proxies.DictProxy<K, V>;
  /** A list (init: an array or any iterable). */
  list<T = unknown>(init?: Iterable<T>): Promise<proxies.ListProxy<T>>;
  listSync<T = unknown>(init?: Iterable<T>): proxies.ListProxy<T>;
  /** A Namespace, with the values of `init`. */
  Namespace(init?: Record<string, unknown>): Promise<proxies.NamespaceProxy>;
  NamespaceSync(init?: Record<string, unknown>): proxies.NamespaceProxy;
  /** A typed value, as `mp.RawValue(typecode, value)` in the server. */
  Value<V extends number | bigint | string = number>(typecode: string, value?: number | bigint | string): Promise<proxies.ValueProxy<V>>;
  ValueSync<V extends number | bigint | string = number>(typecode: string, value?: number | bigint | string): proxies.ValueProxy<V>;
  /** A typed array, as `mp.RawArray(typecode, sizeOrValues)` in the server. */
  Array<V extends number | bigint = number>(typecode: string, sizeOrValues: number | Iterable<number | bigint>): Promise<proxies.ArrayProxy<V>>;
  ArraySync<V extends number | bigint = number>(typecode: string, sizeOrValues: number | Iterable<number | bigint>): proxies.ArrayProxy<V>;
  /** A FIFO queue (`maxsize` 0: unbounded). */
  Queue<T = unknown>(maxsize?: number): Promise<proxies.QueueProxy<T>>;
  QueueSync<T = unknown>(maxsize?: number): proxies.QueueProxy<T>;
  JoinableQueue<T = unknown>(maxsize?: number): Promise<proxies.JoinableQueueProxy<T>>;
  JoinableQueueSync<T = unknown>(maxsize?: number): proxies.JoinableQueueProxy<T>;
  Lock(): Promise<proxies.AcquirerProxy>;
  LockSync(): proxies.AcquirerProxy;
  /** A recursive lock owned by the process that acquired it. */
  RLock(): Promise<proxies.AcquirerProxy>;
  RLockSync(): proxies.AcquirerProxy;
  Semaphore(value?: number): Promise<proxies.SemaphoreProxy>;
  SemaphoreSync(value?: number): proxies.SemaphoreProxy;
  BoundedSemaphore(value?: number): Promise<proxies.SemaphoreProxy>;
  BoundedSemaphoreSync(value?: number): proxies.SemaphoreProxy;
  /** A condition over `lock` (a Lock or RLock proxy of the same manager; default a new RLock). */
  Condition(lock?: proxies.AcquirerProxy): Promise<proxies.ConditionProxy>;
  ConditionSync(lock?: proxies.AcquirerProxy): proxies.ConditionProxy;
  Event(): Promise<proxies.EventProxy>;
  EventSync(): proxies.EventProxy;
  /** A barrier for `parties` (a function `action` cannot cross to the server: TypeError). */
  Barrier(parties: number, options?: { timeout?: number | null }): Promise<proxies.BarrierProxy>;
  BarrierSync(parties: number, options?: { timeout?: number | null }): proxies.BarrierProxy;
  /**
   * A process pool in the server, as `new mp.Pool(processes, options)` there:
   * its workers are the server's children (ended with it). The initializer
   * and every task function cross by module reference.
   */
  Pool<I extends unknown[] = unknown[]>(processes?: number | null, options?: Omit<ManagerPoolOptions<I>, 'processes'>): Promise<PoolProxy>;
  Pool<I extends unknown[] = unknown[]>(options: ManagerPoolOptions<I>): Promise<PoolProxy>;
  PoolSync<I extends unknown[] = unknown[]>(processes?: number | null, options?: Omit<ManagerPoolOptions<I>, 'processes'>): PoolProxy;
  PoolSync<I extends unknown[] = unknown[]>(options: ManagerPoolOptions<I>): PoolProxy;
}

/** The options of a manager's `Pool()`, as `mp.Pool`'s (the workers are the server's: no context). */
export interface ManagerPoolOptions<I extends unknown[] = unknown[]> {
  /** How many worker processes. Default: the server machine's `mp.cpuCount()`. */
  processes?: number | null;
  /** Run by each worker before its first task; exported by a module (it crosses by reference). */
  initializer?: ((...args: I) => unknown) | null;
  initargs?: I;
  /** A worker leaves after this many tasks and is replaced. */
  maxtasksperchild?: number | null;
}

const SYNC_TYPES: [string, RegisterOptions['callable'], ProxyClass][] = [
  ['dict', objects.ServerDict, proxies.DictProxy],
  ['list', objects.ServerList, proxies.ListProxy],
  ['Namespace', objects.ServerNamespace, proxies.NamespaceProxy],
  ['Value', objects.ServerValue, proxies.ValueProxy],
  ['Array', objects.ServerArray, proxies.ArrayProxy],
  ['Queue', objects.ServerQueue, proxies.QueueProxy],
  ['JoinableQueue', objects.ServerJoinableQueue, proxies.JoinableQueueProxy],
  ['Lock', objects.ServerLock, proxies.AcquirerProxy],
  ['RLock', objects.ServerRLock, proxies.AcquirerProxy],
  ['Semaphore', objects.ServerSemaphore, proxies.SemaphoreProxy],
  ['BoundedSemaphore', objects.ServerBoundedSemaphore, proxies.SemaphoreProxy],
  ['Condition', objects.ServerCondition, proxies.ConditionProxy],
  ['Event', objects.ServerEvent, proxies.EventProxy],
  ['Barrier', objects.ServerBarrier, proxies.BarrierProxy],
];
for (const [typeid, callable, proxytype] of SYNC_TYPES) SyncManager.register(typeid, { callable, proxytype });
// The Pool's factory (below) sends its initializer by reference; its results stay in the server, as Python's.
SyncManager.register('Pool', {
  callable: makePool,
  proxytype: PoolProxy,
  createMethod: false,
  methodToTypeid: { applyAsync: 'AsyncResult', mapAsync: 'AsyncResult', starmapAsync: 'AsyncResult', imap: 'Iterator', imapUnordered: 'Iterator' },
});
SyncManager.register('AsyncResult', { proxytype: AsyncResultProxy, createMethod: false });
SyncManager.register('Iterator', { proxytype: IteratorProxy, createMethod: false });

/** `Pool(processes?, options?)`'s arguments as they cross: the initializer by reference. */
function poolArguments(first: unknown, second: unknown): [number | null, Record<string, unknown>] {
  const byOptions = typeof first === 'object' && first !== null;
  const options = validateOptions(byOptions ? first : second ?? {}, ['processes', 'initializer', 'initargs', 'maxtasksperchild'] as const);
  if (byOptions && second !== undefined) throw new TypeError('Pool(options) takes one argument: put processes in the options');
  const processes = (byOptions ? options.processes : first) ?? null;
  if (processes !== null && (!Number.isInteger(processes) || (processes as number) < 1)) {
    throw new RangeError(`processes must be a positive integer or null, got ${describe(processes)}`);
  }
  const { initializer = null, initargs = [], maxtasksperchild = null } = options;
  if (initializer !== null) validateFunction(initializer, 'options.initializer');
  if (!Array.isArray(initargs)) throw new TypeError(`options.initargs must be an array, got ${describe(initargs)}`);
  const reference = initializer === null ? null : referenceOf(initializer as ServedCallable, 'options.initializer', 'spawn');
  return [processes as number | null, { initializer: reference, initargs, maxtasksperchild }];
}

Object.defineProperties(SyncManager.prototype, {
  Pool: {
    configurable: true,
    writable: true,
    value: function (this: SyncManager, first?: unknown, second?: unknown) {
      try {
        return this._create('Pool', poolArguments(first, second));
      } catch (error) {
        return Promise.reject(error);
      }
    },
  },
  PoolSync: {
    configurable: true,
    writable: true,
    value: function (this: SyncManager, first?: unknown, second?: unknown) {
      return this._createSync('Pool', poolArguments(first, second));
    },
  },
});

/**
 * Starts a {@link SyncManager}'s server process (default context's start
 * method) and resolves with the manager, as Python's `multiprocessing.Manager()`.
 * Shut it down with `shutdown()`, or `await using manager = await mp.Manager()`.
 */
export async function Manager(options: ManagerOptions = {}): Promise<SyncManager> {
  const manager = new SyncManager(options);
  await manager.start();
  return manager;
}

/** {@link Manager}, blocking until the server listens. */
export function ManagerSync(options: ManagerOptions = {}): SyncManager {
  const manager = new SyncManager(options);
  manager.startSync();
  return manager;
}
