/**
 * A small heap of shared memory, as CPython's `heap.py`: blocks carved out of
 * arenas, each arena one POSIX shared memory segment mapped `MAP_SHARED`, so
 * that a block is shared with every process forked after its allocation and
 * can be attached by name from any other process.
 *
 * ## How to use it
 *
 * ```ts
 * import { allocate, reduceBlock, rebuildBlock } from './heap';
 *
 * // 8 zero-filled bytes, 4-aligned, shared with children forked from now on:
 * const block = allocate(8, 4);
 * const state = new Int32Array(block.buffer, block.byteOffset, 2);
 * Atomics.compareExchange(state, 0, 0, 1); // works across processes
 * ```
 *
 * - **Views**: build any TypedArray over `block.buffer` from `block.byteOffset`
 *   (always 0 today: each block is an ArrayBuffer of its own over its part of
 *   the arena, so views never reach a neighbour block). `Atomics.*` (except
 *   `Atomics.wait`, which needs a SharedArrayBuffer: wait with a futex) are
 *   real atomic operations on it, across processes.
 * - **Lifetime**: the block's memory is returned to its arena when
 *   `block.buffer` is garbage (no block, no view over it reachable): reported
 *   by the addon when V8 frees the buffer, and taken before the next
 *   allocation, so a synchronous loop reuses what it drops without the event
 *   loop turning (a FinalizationRegistry, which needs the loop, covers a heap
 *   that allocates no more). A returned range is zeroed then, its whole pages
 *   given back to the system; new arenas are zero already and never touched.
 *   Keep a reference while another process may still use the block. Arenas live as
 *   long as the process that made them (large ones, > 4 MiB, until their block
 *   is freed); the creating process unlinks their names at exit and the
 *   resource tracker does it if that process was killed.
 * - **fork**: a child sees the same memory; it allocates from arenas of its own
 *   (the parent's free lists are not the child's to use).
 * - **spawn & co**: a `SharedBlock` inside a value given to `reduction.dumps`
 *   crosses as `{ name, offset, length }` and is rebuilt by attaching the arena
 *   by name (one mapping per arena and process). An object built on a block
 *   reduces itself with {@link reduceBlock} and rebuilds with
 *   {@link rebuildBlock}; {@link blockOf} finds the block of a buffer.
 * @internal
 */
import type * as Crypto from 'crypto';

import { forkGeneration } from './at_fork';
import { NativeShmFreeList, requireNative } from './native';
import { registerReducer } from './reduction';
import * as tracker from './resource_tracker';
import { validateInteger } from './validate';

/** A zero-filled piece of shared memory; see the module's documentation. */
export class SharedBlock {
  /** @internal Use {@link allocate} or {@link rebuildBlock}. */
  constructor(
    /** The block's memory: an ArrayBuffer over its part of a shared mapping. */
    readonly buffer: ArrayBuffer,
    /** Where the block starts in {@link buffer} (0). */
    readonly byteOffset: number,
    /** The block's size in bytes. */
    readonly byteLength: number,
  ) {
    Object.freeze(this);
  }
}

/** Where a block lives: plain state, the same in every process. */
export interface BlockState {
  /** The arena's shm name, with its leading slash. */
  readonly name: string;
  /** The block's offset in the arena. */
  readonly offset: number;
  /** The block's length in bytes. */
  readonly length: number;
}

/**
 * This process's pid from the kernel: `process.pid` may be a stale copy in a
 * forked child (jest's sandbox copies the process object, for one).
 */
function currentPid(): number {
  return requireNative('shared memory').getpid();
}

const PAGE_SIZE = 4096;
/** Arenas double in size up to this (CPython's `_DOUBLE_ARENA_SIZE_UNTIL`). */
const MAX_SHARED_ARENA_SIZE = 4 * 1024 * 1024;
const MIN_ALIGNMENT = 8;

function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

/**
 * Random hex digits for a name, as Python's `secrets.token_hex`. `crypto` is
 * loaded on first use, not with the package (see index.ts).
 */
function randomHex(bytes: number): string {
  return (require('crypto') as typeof Crypto).randomBytes(bytes).toString('hex');
}

/** A new segment: its name (with the leading slash) and a buffer over all of it. */
export interface Segment {
  readonly name: string;
  readonly buffer: ArrayBuffer;
}

function openNew(name: string | undefined, prefix: string, size: number): Segment {
  const native = requireNative('shared memory');
  if (name !== undefined) return { name, buffer: native.shmOpen(name, true, size) };
  for (;;) {
    const fresh = `${prefix}${randomHex(6)}`;
    try {
      return { name: fresh, buffer: native.shmOpen(fresh, true, size) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}

/**
 * Creates a segment of `size` bytes under `name` (EEXIST if taken) or, without
 * one, a fresh `prefix<random>` name (drawn again while taken), and registers
 * it with the resource tracker as `type` before returning it. Registration
 * comes after creation, so the tracker never removes a segment that someone
 * else made under the same name.
 */
export function createSegment(options: { name?: string; prefix: string; size: number; type: tracker.ResourceType }): Segment {
  const segment = openNew(options.name, options.prefix, options.size);
  try {
    tracker.register(segment.name, options.type);
  } catch (error) {
    // Untracked, it could outlive us: take it back before reporting.
    discardSegment(segment);
    throw error;
  }
  return segment;
}

/**
 * Takes back a segment just made by {@link createSegment} whose maker then
 * failed: unmapped, unlinked and, with `type`, forgotten by the tracker.
 * Nothing of it must outlive the error.
 */
export function discardSegment(segment: Segment, type?: tracker.ResourceType): void {
  const native = requireNative('shared memory');
  native.shmRelease(segment.buffer);
  native.shmUnlink(segment.name);
  if (type !== undefined) tracker.unregister(segment.name, type);
}

/** One segment of the heap and its free ranges `[start, end)`, sorted. */
class Arena {
  readonly free: Array<[number, number]>;

  constructor(
    readonly name: string,
    readonly buffer: ArrayBuffer,
    /** The process that created it: the only one to unlink it. */
    readonly creatorPid: number,
  ) {
    this.free = [[0, buffer.byteLength]];
  }

  get size(): number {
    return this.buffer.byteLength;
  }

  isEmpty(): boolean {
    return this.free.length === 1 && this.free[0][0] === 0 && this.free[0][1] === this.size;
  }

  /** Carves `size` bytes aligned to `alignment` out of a free range, or returns -1. */
  take(size: number, alignment: number): number {
    for (let i = 0; i < this.free.length; i++) {
      const [start, end] = this.free[i];
      const at = alignUp(start, alignment);
      if (at + size > end) continue;
      const rest: Array<[number, number]> = [];
      if (at > start) rest.push([start, at]);
      if (at + size < end) rest.push([at + size, end]);
      this.free.splice(i, 1, ...rest);
      return at;
    }
    return -1;
  }

  /** Gives `[start, start + size)` back, merged with its free neighbours. */
  give(start: number, size: number): void {
    let end = start + size;
    let i = this.free.findIndex(([s]) => s > start);
    if (i < 0) i = this.free.length;
    const before = this.free[i - 1];
    const after = this.free[i];
    if (after !== undefined && after[0] === end) {
      end = after[1];
      this.free.splice(i, 1);
    }
    if (before !== undefined && before[1] === start) before[1] = end;
    else this.free.splice(i, 0, [start, end]);
  }

  /** Unmaps (once no block is left) and removes the name, in its creator only. */
  destroy(): void {
    requireNative('shared memory').shmRelease(this.buffer);
    if (currentPid() !== this.creatorPid) return;
    try {
      requireNative('shared memory').shmUnlink(this.name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    tracker.unregister(this.name, 'heap');
  }
}

/** Where a live block of this process's heap is, to free it when collected. */
interface Placement {
  readonly arena: Arena;
  readonly offset: number;
  readonly length: number;
}

/** The arenas this process allocates from. */
class Heap {
  private readonly arenas: Arena[] = [];
  /** The fork generation that made this heap: in a forked child, the parent's heap is not ours. */
  private readonly generation = forkGeneration();
  private nextArenaSize = PAGE_SIZE;
  /** The blocks handed out and not yet freed, by id. */
  private readonly live = new Map<number, Placement>();
  private nextId = 1;
  /** Where the addon reports the ids of blocks whose buffers V8 freed; made with the first block. */
  private freedList: NativeShmFreeList | undefined;
  private readonly collected = new FinalizationRegistry<number>((id) => {
    this.freeId(id);
    this.reclaim();
  });

  /** Arenas by name, to rebuild a block of this process's own heap. */
  arena(name: string): Arena | undefined {
    return this.arenas.find((arena) => arena.name === name);
  }

  allocate(byteLength: number, alignment: number): SharedBlock {
    this.reclaim();
    const length = alignUp(Math.max(byteLength, 1), MIN_ALIGNMENT);
    let arena: Arena | undefined;
    let offset = -1;
    for (arena of this.arenas) {
      offset = arena.take(length, alignment);
      if (offset >= 0) break;
    }
    if (arena === undefined || offset < 0) {
      arena = this.newArena(length);
      offset = arena.take(length, alignment);
    }
    const id = this.nextId++;
    this.freedList ??= new (requireNative('shared memory').ShmFreeList)();
    const buffer = requireNative('shared memory').shmSlice(arena.buffer, offset, byteLength, this.freedList, id);
    const block = new SharedBlock(buffer, 0, byteLength);
    remember(block, { name: arena.name, offset, length: byteLength });
    this.live.set(id, { arena, offset, length });
    this.collected.register(buffer, id);
    return block;
  }

  /** Frees the blocks whose buffers V8 has freed since the last call. */
  private reclaim(): void {
    const ids = this.freedList?.take();
    if (ids !== undefined) for (const id of ids) this.freeId(id);
  }

  /** Frees block `id`, once (the addon and the FinalizationRegistry both report it). */
  private freeId(id: number): void {
    const placement = this.live.get(id);
    if (placement === undefined) return;
    this.live.delete(id);
    this.free(placement);
  }

  /** The blocks handed out and not freed, counting those V8 has freed so far as freed. */
  liveCount(): number {
    this.reclaim();
    return this.live.size;
  }

  /** True in a forked child for its parent's heap, which it leaves as it was. */
  get inherited(): boolean {
    return this.generation !== forkGeneration();
  }

  /** Unlinks the names of every arena this process created: at its exit. */
  unlinkAll(): void {
    for (const arena of this.arenas.splice(0)) {
      if (currentPid() === arena.creatorPid) arena.destroy();
    }
  }

  private newArena(length: number): Arena {
    const size = Math.max(this.nextArenaSize, alignUp(length, PAGE_SIZE));
    if (this.nextArenaSize < MAX_SHARED_ARENA_SIZE) this.nextArenaSize *= 2;
    const { name, buffer } = createSegment({ prefix: '/mp-heap-', size, type: 'heap' });
    const arena = new Arena(name, buffer, currentPid());
    this.arenas.push(arena);
    return arena;
  }

  private free({ arena, offset, length }: Placement): void {
    if (this.inherited || !this.arenas.includes(arena)) return;
    arena.give(offset, length);
    // Small arenas are kept for later blocks; a big one goes with its block.
    if (arena.isEmpty() && arena.size > MAX_SHARED_ARENA_SIZE) {
      this.arenas.splice(this.arenas.indexOf(arena), 1);
      arena.destroy();
      return;
    }
    // The next block here must find zeros; whole pages go back to the system meanwhile.
    requireNative('shared memory').shmZero(arena.buffer, offset, length);
  }
}

let heap = new Heap();

/**
 * This process's heap. A forked child does not own its parent's arenas: it
 * leaves them as they are and starts a heap of its own, found out lazily
 * rather than in an at-fork hook (see at_fork.ts).
 */
function currentHeap(): Heap {
  if (heap.inherited) heap = new Heap();
  return heap;
}

const blockStates = new WeakMap<SharedBlock, BlockState>();
const blocksByBuffer = new WeakMap<ArrayBuffer, SharedBlock>();

function remember(block: SharedBlock, state: BlockState): void {
  blockStates.set(block, Object.freeze(state));
  blocksByBuffer.set(block.buffer, block);
}

/**
 * A zero-filled block of `byteLength` bytes of shared memory, its start a
 * multiple of `alignment` (a power of two up to 4096; default 8). Shared with
 * every process forked after this call, and with any process the block is
 * sent to (see the module's documentation). Throws a TypeError/RangeError for
 * bad sizes and an Error with `code` (e.g. `ENOSPC`, `EMFILE`) when the system
 * refuses a new segment.
 */
export function allocate(byteLength: number, alignment = MIN_ALIGNMENT): SharedBlock {
  validateInteger(byteLength, 'byteLength', 0, Number.MAX_SAFE_INTEGER);
  validateInteger(alignment, 'alignment', 1, PAGE_SIZE);
  if ((alignment & (alignment - 1)) !== 0) throw new RangeError(`alignment must be a power of two, got ${alignment}`);
  return currentHeap().allocate(byteLength, Math.max(alignment, MIN_ALIGNMENT));
}

/**
 * How many blocks this process's heap has handed out and not yet freed (a
 * block is freed once V8 has collected its buffer): for leak checks, which
 * can wait for it to fall back after a collection instead of guessing how
 * many turns of the loop the collector's background work needs.
 */
export function liveBlocks(): number {
  return currentHeap().liveCount();
}

/** The block whose `buffer` this is (also for a view's `.buffer`), if any. */
export function blockOf(buffer: ArrayBufferLike): SharedBlock | undefined {
  return blocksByBuffer.get(buffer as ArrayBuffer);
}

/** Plain state that names `block` in every process, for a reducer. */
export function reduceBlock(block: SharedBlock): BlockState {
  const state = blockStates.get(block);
  if (state === undefined) throw new TypeError('not a block of the shared heap');
  return state;
}

/** Mappings of other processes' arenas in this one, by name. */
const attached = new Map<string, WeakRef<ArrayBuffer>>();

function attach(name: string): ArrayBuffer {
  const own = currentHeap().arena(name);
  if (own !== undefined) return own.buffer;
  const cached = attached.get(name)?.deref();
  if (cached !== undefined && cached.byteLength > 0) return cached;
  const buffer = requireNative('shared memory').shmOpen(name, false, 0);
  attached.set(name, new WeakRef(buffer));
  return buffer;
}

/**
 * The block `state` names, in this process: the arena is attached by name
 * (once per process; its creator must still be alive, or the arena still
 * reachable from a process that holds it, for the name to exist).
 */
export function rebuildBlock(state: BlockState): SharedBlock {
  const arena = attach(state.name);
  const buffer = requireNative('shared memory').shmSlice(arena, state.offset, state.length);
  const block = new SharedBlock(buffer, 0, state.length);
  remember(block, state);
  return block;
}

registerReducer(SharedBlock, { kind: 'SharedBlock', reduce: reduceBlock, rebuild: rebuildBlock });

// util.Finalize's pid check: 'exit' listeners are inherited by forked
// children, and only an arena's creator may unlink it.
process.on('exit', () => currentHeap().unlinkAll());
