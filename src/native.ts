/**
 * The native addon's exact contract, and the one place that loads it.
 *
 * Every export of `native/*.cc` is declared here. The addon is optional at run
 * time: where it cannot load (Windows, or `NODE_MULTIPROCESSING_NO_NATIVE=1`,
 * which tests use to prove the Windows path on Linux), {@link loadNative}
 * returns `null` and the library runs on `child_process` alone.
 * @internal
 */
import * as fs from 'fs';
import * as path from 'path';

/** A child being watched for its exit by a thread of the addon (see `native/wait.cc`). */
export interface NativeExitWatcher {
  /** The wait keeps the event loop alive (the default). */
  ref(): void;
  /** The wait does not keep the event loop alive. */
  unref(): void;
  /** Stops watching; the child is left unreaped. */
  close(): void;
}

export type ExitCallback = (error: Error | null, pid: number, status: number) => void;

// --- native/futex.cc: process-shared futex waits -----------------------------

/** How a futex wait ended: woken (or spuriously), the word differed, or time ran out. */
export type FutexWaitResult = 'ok' | 'not-equal' | 'timed-out';

export type FutexCallback = (error: Error | null, result: FutexWaitResult) => void;

/** A futex wait on a thread of the addon's, reported to the event loop. */
export interface NativeFutexWaiter {
  /** The pending wait keeps the event loop alive (the default). */
  ref(): void;
  /** The pending wait does not keep the event loop alive. */
  unref(): void;
  /** Ends the wait; its callback is not called. */
  cancel(): void;
}
// --- end native/futex.cc -----------------------------------------------------

/** The ids of heap slices that V8 has freed (native/shm.cc). */
export interface NativeShmFreeList {
  /** The ids reported since the last call (forgotten here), or undefined when there are none. */
  take(): number[] | undefined;
}

// --- native/framed_channel.cc: framed byte streams --------------------------

/** A frame as a channel hands it over: bytes, or (a `text` channel) the text of a JSON payload, after its tag byte. */
export type ChannelFrame = Buffer | string;

/** Frames read on the event loop: `ended` at end of file, `error` when reading failed (then ended too). */
export type FramesCallback<Frame extends ChannelFrame = Buffer> = (frames: Frame[], ended: boolean, error: Error | null) => void;

/** How a channel takes its descriptor and hands frames over (all off by default). */
export interface ChannelOptions {
  /** Own a close-on-exec copy of the descriptor (the caller closes the original). */
  copy?: boolean;
  /** Keep the descriptor blocking: a `recvSync()` or `call()` is one read(); no `start()` nor `sendAsync()`. */
  blocking?: boolean;
  /** Hand a payload whose first byte is 1 (reduction.ts's JSON tag) over as the text after it. */
  text?: boolean;
  /**
   * Wait for frames awake for a while before sleeping: `recvSync()`, `call()`
   * and `poll()` look for 100 µs (within their timeout), a started channel keeps
   * the event loop turning for 200 µs after `start()` and each send; down to
   * 1/8 of that while frames come later (see native/framed_channel.cc, "Spinning").
   */
  spin?: boolean;
  /** A `sendAsync()` backlog's write failed (the backlog is dropped). */
  onWriteError?: (error: Error) => void;
}

/**
 * Python's framing (4-byte big-endian length, or -1 and an 8-byte length)
 * over a descriptor it owns (made non-blocking unless `blocking`).
 */
export interface NativeChannel<Frame extends ChannelFrame = Buffer> {
  readonly fd: number;
  /** Writes one whole frame, blocking while the peer is full. */
  send(bytes: Uint8Array): void;
  /**
   * Writes one whole frame as far as the peer takes it now and keeps a copy of
   * the rest, written in order from the event loop: never blocks. True when
   * all of it was written now.
   */
  sendAsync(bytes: Uint8Array): boolean;
  /** Sends a frame, then blocks for the next one; `undefined` at end of file. */
  call(bytes: Uint8Array): Frame | undefined;
  /** The next frame; `null`: timed out (timeoutMs < 0: never); `undefined`: end of file. */
  recvSync(timeoutMs: number): Frame | null | undefined;
  /** Whether a whole frame or the end of file is there, waiting up to `timeoutMs`. */
  poll(timeoutMs: number): boolean;
  /** Reads on the event loop, reporting to the callback given to the constructor. */
  start(): void;
  stop(): void;
  ref(): void;
  unref(): void;
  /** Stops reading, drops what `sendAsync()` kept and closes the descriptor. */
  close(): void;
}

/** A descriptor watched from the event loop (a duplicate of it, closed by `close()`). */
export interface NativeFdWatch {
  start(): void;
  stop(): void;
  ref(): void;
  unref(): void;
  close(): void;
}

/**
 * A Queue's ring of items in shared memory (native/queue_ring.cc); `take`
 * answers an item, `0` (nothing there) or `1` (busy: look again soon).
 */
export interface NativeQueueRing {
  /** The bell's read end: readable once a producer rang for sleeping consumers. */
  readonly bellFd: number;
  /** The descriptor of the ring's memory (see queueRingMemory). */
  readonly memoryFd: number;
  /**
   * Puts one item: bytes, or text (written as the ring's text tag and its
   * UTF-8, taken back as a string); it is in the ring when this returns
   * (blocks while there is no room).
   */
  put(item: Uint8Array | string): void;
  take(): Buffer | string | 0 | 1;
  /** The next item, blocking up to `timeoutMs` (< 0: no limit); `null`: timed out. */
  takeSync(timeoutMs: number): Buffer | string | null;
  /** Registers this consumer as asleep, then tries again (an item: registration undone). */
  prepareWait(): Buffer | string | 0 | 1;
  /** Ends the registration of {@link prepareWait} after the wait. */
  endWait(): void;
  empty(): boolean;
  /** Closes the bell's descriptors here. */
  close(): void;
  /** Tests: the item's first `slots` slots (0: none), the reserve lock kept (a producer killed there). */
  _putPartial(bytes: Uint8Array, slots: number): void;
  /** Tests: stops after `slots` slots of a large item (0: none), the assembler kept (a consumer killed there). */
  _takePartial(slots: number): Buffer | string | 0 | 1;
  /** Tests: drains the bell under this thread's mark, the mark kept (a consumer killed there). */
  _drainPartial(): void;
  /** Called with the count of items dropped that will never be delivered (see native/queue_ring.cc, "Deaths"). */
  onLost?: (count: number) => void;
  /** Tests: `[head, tail, reserve lock holder, assembler, consumers registered asleep, bell word]`. */
  _state(): [number, number, number, number, number, number];
}

/** `pollFds`/`FdWatch` events: 1 readable, 2 writable, 3 either. */
export type FdEvents = 1 | 2 | 3;
// --- end native/connection.cc -------------------------------------------------

export interface NativeBinding {
  // native/fork.cc
  fork(): number;
  _exit(code?: number): never;
  setForkChildHooks(beforeExit: () => void, exit: () => void): void;
  isForkedChild(): boolean;
  /** In a Process child, before its target runs: the parent's sockets, servers, pipes and stdin are watched no more (native/fork_streams.cc). */
  quietParentIo(): void;
  /** Whether the first fork moved node's machine code into anonymous huge pages (see native/shared_code.cc). */
  sharesCodeWithChildren(): boolean;
  /** One line per internal of Node's the addon relies on that this Node lacks, saying what goes without it. */
  missingInternals(): string[];
  /** True on the process's main thread, false on a worker_threads Worker. */
  isMainThread(): boolean;
  /** Compiles `fn`'s bytecode now if V8 has not yet (forked children then find it compiled). */
  precompile(fn: (...args: never[]) => unknown): void;
  /** `v8.setFlagsFromString()`, without loading Node's `v8` module. */
  setV8Flags(flags: string): void;
  /** `[0]`: how many forks this process descends from (a view of the addon's counter). */
  readonly forkGeneration: Uint32Array;
  /** Threads in this process; -1 where the system does not tell (no /proc): no warning then. */
  threadCount(): number;
  /** Threads the addon started itself (see native/own_threads.h). */
  ownThreadCount(): number;
  // native/wait.cc
  waitpid(pid: number, flags: number): [number, number];
  waitpidTimeout(pid: number, timeoutMs: number): [number, number];
  ExitWatcher: new (pid: number, onExit: ExitCallback) => NativeExitWatcher;
  /**
   * Makes `onExit` the report of every child watched with {@link watchChild};
   * false where the event loop of this thread cannot watch children (no
   * pidfds, or a worker thread).
   */
  setChildExitHandler(onExit: ExitCallback): boolean;
  /**
   * Watches `pid` from the event loop until it ends, then reaps it and reports
   * it; false when it cannot (see setChildExitHandler) or `pid` is watched
   * already. Throws ECHILD for a pid that is not a child of this process.
   */
  watchChild(pid: number, keepAlive: boolean): boolean;
  /** Stops watching `pid`, left unreaped. */
  unwatchChild(pid: number): void;
  /** Whether waiting for `pid` keeps the event loop alive. */
  keepChildAlive(pid: number, keepAlive: boolean): void;
  kill(pid: number, signal: number): void;
  getpid(): number;
  getppid(): number;
  WIFEXITED(status: number): boolean;
  WIFSIGNALED(status: number): boolean;
  WIFSTOPPED(status: number): boolean;
  WEXITSTATUS(status: number): number;
  WTERMSIG(status: number): number;
  WSTOPSIG(status: number): number;
  readonly WNOHANG: number;
  readonly WUNTRACED: number;
  // native/futex.cc (words of an Int32Array over MAP_SHARED memory; timeoutMs < 0: for ever)
  futexWait(array: Int32Array, index: number, expected: number, timeoutMs: number): FutexWaitResult;
  futexWake(array: Int32Array, index: number, count: number): number;
  FutexWaiter: new (
    array: Int32Array,
    index: number,
    expected: number,
    timeoutMs: number,
    onDone: FutexCallback,
  ) => NativeFutexWaiter;
  /** The calling thread's id (the pid on a process's main thread): what a Lock records as its holder. */
  gettid(): number;
  /** False once thread `tid` has ended: gone, or a zombie not yet reaped. */
  threadAlive(tid: number): boolean;
  // end native/futex.cc
  // native/shm.cc
  /**
   * An ArrayBuffer over the whole POSIX shared memory segment `name` (with its
   * leading slash). `create`: a new segment of `size` (>= 1) bytes, EEXIST if
   * the name is taken; otherwise the existing segment (ENOENT if none), `size`
   * ignored. Errors carry `code`, `syscall` and `path` (the name).
   */
  shmOpen(name: string, create: boolean, size: number): ArrayBuffer;
  /** Removes the name; existing mappings stay valid. ENOENT if there is none. */
  shmUnlink(name: string): void;
  /**
   * A new ArrayBuffer over `[offset, offset + length)` of `buffer`'s memory, keeping the mapping alive.
   * With a free list, `id` is reported there once V8 has freed the new buffer (at a GC, loop or not).
   */
  shmSlice(buffer: ArrayBuffer, offset: number, length: number, freeList?: NativeShmFreeList, id?: number): ArrayBuffer;
  /** Where slices report their end: see shmSlice. */
  ShmFreeList: new () => NativeShmFreeList;
  /** `[offset, offset + length)` of `buffer`'s memory reads as zeros again; its whole pages go back to the system. */
  shmZero(buffer: ArrayBuffer, offset: number, length: number): void;
  /** Detaches `buffer` now; the mapping is unmapped once no buffer over it is left. */
  shmRelease(buffer: ArrayBuffer): void;
  // end native/shm.cc
  // native/popen.cc (the start methods of Process)
  /**
   * In a forked child: terminates the JS execution on the current stack (no
   * catch or finally block runs; inside a microtask, the microtasks queued are
   * dropped) and calls the callback given to {@link prepareEscape} before the
   * fork once it is unwound: at the end of the
   * microtask checkpoint, or at the next turn of the event loop, which then
   * stays alive until the child leaves through `_exit`. The caller must run JS
   * that checks for interrupts right after (a loop).
   */
  escapeToLoop(): void;
  /** In the parent, just before a fork: readies what escapeToLoop() in the child will use, and the callback it calls. */
  prepareEscape(callback: () => void): void;
  /** Whether the JS running now runs inside a microtask. */
  isRunningMicrotasks(): boolean;
  /** Raises `error` as an uncaught exception now, through Node's handler; the caller makes sure it is handled. */
  raiseHandled(error: Error): void;
  // end native/popen.cc
  // native/connection.cc
  /** A connected AF_UNIX stream pair, both ends close-on-exec. */
  socketpair(): [number, number];
  /** A pipe `[readFd, writeFd]`, both ends close-on-exec; `size`: its capacity in bytes, as the system allows. */
  streamPipe(size?: number): [number, number];
  /** A blocking pipe, both ends close-on-exec: `[readFd, writeFd]` (streamPipe without a size). */
  pipe(): [number, number];
  /** A close-on-exec copy of descriptor `fd` of process `pid` (pidfd_getfd). */
  takeFd(pid: number, fd: number): number;
  /** native/framed_channel.cc: see {@link NativeChannel}. */
  Channel: new <Frame extends ChannelFrame = Buffer>(fd: number, onFrames?: FramesCallback<Frame>, options?: ChannelOptions) => NativeChannel<Frame>;
  // native/queue_ring.cc
  /** Where a ring's data starts in its shared block (bytes). */
  queueRingHeaderBytes: number;
  /** `[fd, buffer]`: zero-filled shared memory without a name (memfd), unmapped once `buffer` is collected. */
  queueRingMemory(bytes: number): [number, ArrayBuffer];
  /** The memory of descriptor `fd` (from queueRingMemory, passed to this process), mapped. */
  queueRingMap(fd: number): ArrayBuffer;
  QueueRing: new (
    words: Int32Array,
    memoryFd: number,
    bellRead: number,
    bellWrite: number,
    textTag: number,
  ) => NativeQueueRing;
  // native/fd_wait.cc
  /** The indices of `fds` ready for `events` (an error or hang-up counts), waiting up to `timeoutMs` (< 0: no limit). */
  pollFds(fds: number[], events: FdEvents, timeoutMs: number): number[];
  /** A descriptor that becomes readable when process `pid` ends. */
  pidfdOpen(pid: number): number;
  FdWatch: new (fd: number, events: FdEvents, onReady: () => void) => NativeFdWatch;
  // native/socket.cc (non-blocking, close-on-exec descriptors)
  /** A listening Unix socket at `path` ('\0...': Linux's abstract namespace). */
  listenUnix(path: string, backlog: number): number;
  /** A listening TCP socket: `[fd, host, port]` as bound (port 0: a free one). */
  listenTcp(host: string, port: number, backlog: number): [number, string, number];
  /** `[fd, peer address]` of a connection accepted, or `null` when none is waiting. */
  accept(fd: number): [number, string | [string, number]] | null;
  /** `[fd, pending]`: when pending, wait until writable, then {@link socketError}. */
  connectUnix(path: string): [number, boolean];
  connectTcp(host: string, port: number): [number, boolean];
  /** Throws the error a pending connect ended with, if any. */
  socketError(fd: number): void;
  // end native/connection.cc
  // native/pool_link.cc
  /** Replies are copied into `scratch` (as large as any mailbox): `onReply(id, length)` reads them there at once. */
  PoolHub: new (scratch: Buffer, onReply: (id: number, length: number) => void) => NativePoolHub;
  /**
   * A forked worker's end of mailbox `id` of the hub it inherited (taken from
   * it: `hub.detach()` then releases the rest); tasks are copied into
   * `scratch`, where `onTask(length)` reads them at once.
   */
  PoolLink: new (hub: NativePoolHub, id: number, scratch: Buffer, onTask: (length: number) => void) => NativePoolLink;
}

// --- native/pool_link.cc: a forked pool worker's mailboxes ---------------------

/**
 * The pool's side of its forked workers' mailboxes in shared memory: one
 * message each way at a time, woken by a bell only when the other side sleeps.
 */
export interface NativePoolHub {
  /** A new mailbox of `capacity` bytes each way (at most the scratch's); made before its worker is forked (which inherits it). */
  open(capacity: number): number;
  /** Puts `head` then `payload` in mailbox `id`; false when too large or the last one is not taken yet (send it another way). */
  send(id: number, head: Uint8Array, payload?: Uint8Array): boolean;
  /** Drops mailbox `id` here. */
  close(id: number): void;
  /** Whether waiting for replies keeps the event loop alive. */
  ref(): void;
  unref(): void;
  /** Releases every mailbox and descriptor, calling nothing back. */
  detach(): void;
}

/** A forked worker's end of its mailbox: tasks go to the constructor's callback once started. */
export interface NativePoolLink {
  start(): void;
  /** Puts `head` then `payload` in the mailbox; false when too large (send it another way). */
  reply(head: Uint8Array, payload?: Uint8Array): boolean;
  ref(): void;
  unref(): void;
  close(): void;
}

/** Set to `1` to run without the addon, exactly as on Windows. */
export const NO_NATIVE_ENV = 'NODE_MULTIPROCESSING_NO_NATIVE';
/** Set to a path to load that addon binary instead of searching for one (tests load cmake-js's build). */
export const ADDON_PATH_ENV = 'NODE_MULTIPROCESSING_ADDON';

const ADDON_NAME = 'multiprocessing.node';
const packageRoot = path.resolve(__dirname, '..');

/**
 * The prebuilt addon the npm package ships for this Node (its ABI), platform
 * and C library, named as prebuildify names them (see scripts/prebuild.js).
 */
export function prebuildPath(): string {
  const libc = process.platform !== 'linux' ? '' : fs.existsSync('/etc/alpine-release') ? '.musl' : '.glibc';
  return path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, `node.abi${process.versions.modules}${libc}.node`);
}

/**
 * Where the addon may be, first match wins: a build from source (node-gyp's,
 * then cmake-js's), then the prebuilt one.
 */
export function addonCandidates(): string[] {
  const chosen = process.env[ADDON_PATH_ENV];
  if (chosen) return [path.resolve(chosen)];
  const builds = ['build/Release', 'build/Debug', 'build-cmake/Release', 'build-cmake/Debug'].map((dir) =>
    path.join(packageRoot, dir, ADDON_NAME),
  );
  return [...builds, prebuildPath()];
}

let binding: NativeBinding | null | undefined;
let loadFailure: Error | undefined;

function nativeDisabled(): boolean {
  return process.platform === 'win32' || process.env[NO_NATIVE_ENV] === '1';
}

/** The addon, or `null` where this platform (or the environment) has none. */
export function loadNative(): NativeBinding | null {
  if (binding !== undefined) return binding;
  binding = null;
  if (nativeDisabled()) return binding;
  const tried: string[] = [];
  for (const candidate of addonCandidates()) {
    if (!fs.existsSync(candidate)) {
      tried.push(`${candidate} (not found)`);
      continue;
    }
    try {
      binding = require(candidate) as NativeBinding;
      return binding;
    } catch (error) {
      tried.push(`${candidate} (${(error as Error).message})`);
    }
  }
  loadFailure = new Error(
    `node-multiprocessing: the native addon could not be loaded (Node ${process.version}, ABI ${process.versions.modules}, ` +
      `${process.platform}-${process.arch}); build it with "npm rebuild node-multiprocessing" (a C++ compiler, make and Python), ` +
      `or "npm run build:native" in its own repository. Tried:\n  ${tried.join('\n  ')}`,
  );
  process.emitWarning(
    'node-multiprocessing runs without its native addon: Process uses the spawn start method; fork(), the fork and ' +
      `forkserver start methods, shared memory and locks throw ENOSYS. ${loadFailure.message}`,
    { code: 'MP_NO_ADDON' },
  );
  return binding;
}

/** An Error whose `code` is `ENOSYS`, for POSIX calls where there is no addon. */
export function unsupported(what: string): Error {
  const reason = nativeDisabled()
    ? process.platform === 'win32'
      ? 'not available on Windows'
      : `disabled by ${NO_NATIVE_ENV}=1`
    : (loadFailure?.message ?? 'the native addon could not be loaded');
  return Object.assign(new Error(`${what} is not supported here: ${reason}`), {
    code: 'ENOSYS',
    syscall: what,
  });
}

/** The addon, or an ENOSYS Error naming `what` could not run. */
export function requireNative(what: string): NativeBinding {
  const loaded = loadNative();
  if (loaded === null) throw unsupported(what);
  return loaded;
}
