/**
 * The channel of a Queue and a SimpleQueue with the addon: a ring of bytes in
 * shared memory that every process of the queue maps (native/queue_ring.cc
 * says how producers and consumers share it and what a kill at any instant
 * leaves), and a "bell" pipe on which consumers that found nothing sleep.
 *
 * A small item costs no system call while consumers keep finding items: a
 * producer copies it into the ring under a lock held for nanoseconds, a
 * consumer copies it out and moves the head on. The bell is written only when
 * some consumer sleeps.
 * @internal
 */
import { forkGeneration } from '../at_fork';
import { _rebuildDescriptor, _reduceDescriptor, DescriptorState } from '../connection';
import type { NativeFdWatch, NativeQueueRing } from '../native';
import { requireNative } from '../native';
import { JSON_TAG } from '../reduction';
import { closedError } from './options';

/** Bytes of items the ring holds (then a `put()` waits for a consumer). */
export const RING_CAPACITY = 1024 * 1024;
/** What `take()` answers when the item at the head is being taken by another consumer (or written): look again soon. */
const BUSY = 1;
/** How long a consumer that found the ring busy sleeps before it looks again (the thread it waits for may have died). */
const CHECK_MS = 50;

/** An item as taken: its bytes, or the text of an item in JSON (see `loads`). */
export type Frame = Buffer | string;

/** What crosses to another process: the descriptors of the ring's memory and of the bell's two ends. */
export interface RingState {
  memory: DescriptorState;
  reader: DescriptorState;
  writer: DescriptorState;
}

function native(): ReturnType<typeof requireNative> {
  return requireNative('Queue');
}

/** Milliseconds left until `deadline` (null: no limit), never negative. */
export function left(deadline: number | null): number | null {
  return deadline === null ? null : Math.max(0, deadline - Date.now());
}

/** `promise`, or a resolution once `ms` have passed (null: never). */
function racingTimeout(promise: Promise<void>, ms: number | null): Promise<void> {
  if (ms === null) return promise;
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer));
}

/** A queue's ring in this process. */
export class QueueRing {
  private ring: NativeQueueRing | null;
  private watch: NativeFdWatch | null = null;
  private waiting: Array<() => void> = [];
  private generation = forkGeneration();
  /** Called with the count of items that will never be delivered (see native/queue_ring.cc, "Deaths"). */
  onLost: (count: number) => void = () => {};

  constructor(
    /** The shared memory: the ring's header, then its data. */
    readonly words: Int32Array,
    private readonly memoryFd: number,
    private readonly bellRead: number,
    private readonly bellWrite: number,
  ) {
    this.ring = new (native().QueueRing)(words, memoryFd, bellRead, bellWrite, JSON_TAG);
    this.ring.onLost = (count) => this.onLost(count);
  }

  static create(): QueueRing {
    const binding = native();
    const [memoryFd, memory] = binding.queueRingMemory(binding.queueRingHeaderBytes + RING_CAPACITY);
    const [bellRead, bellWrite] = binding.streamPipe();
    return new QueueRing(new Int32Array(memory), memoryFd, bellRead, bellWrite);
  }

  get closed(): boolean {
    return this.ring === null;
  }

  /** Puts one item (bytes, or JSON text: see `dumpsText`): it is in the ring when this returns (blocks while the ring is full). */
  write(bytes: Uint8Array | string): void {
    this.open().put(bytes);
  }

  /** The next item if one is there now; no waiting (but a large item being written is waited for). */
  takeNow(): Frame | null {
    const got = this.open().take();
    return typeof got === 'number' ? null : got;
  }

  /** The next item, blocking the thread until `deadline` (null: no limit); `undefined`: time is up. */
  takeSync(deadline: number | null): Frame | undefined {
    const ms = left(deadline);
    const got = this.open().takeSync(ms ?? -1);
    return got === null ? undefined : got;
  }

  /** {@link takeSync}, waiting on the event loop. */
  async take(deadline: number | null): Promise<Frame | undefined> {
    for (;;) {
      const ring = this.open();
      let got = ring.take();
      if (typeof got !== 'number') return got;
      // One turn of the event loop before sleeping: a producer busy on another
      // CPU has often put the next item by then, and neither side makes a
      // system call for it (no bell to ring, no watch to start and stop).
      await new Promise((resolve) => setImmediate(resolve));
      got = this.open().take();
      if (typeof got !== 'number') return got;
      got = ring.prepareWait(); // asleep from here: a producer will ring the bell
      if (typeof got !== 'number') return got;
      try {
        const ms = left(deadline);
        if (ms === 0) return undefined;
        await racingTimeout(this.whenRung(), got === BUSY ? Math.min(ms ?? CHECK_MS, CHECK_MS) : ms);
      } finally {
        ring.endWait();
      }
    }
  }

  /** Whether no item is there now. */
  empty(): boolean {
    return this.open().empty();
  }

  /** Resolves once the bell is rung (or the queue closed here). */
  private whenRung(): Promise<void> {
    const ring = this.open();
    if (this.generation !== forkGeneration()) {
      // A forked child: the parent's watch and waiters are the parent's.
      this.generation = forkGeneration();
      this.watch = null;
      this.waiting = [];
    }
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (this.watch === null) this.watch = new (native().FdWatch)(ring.bellFd, 1, () => this.wake());
      this.watch.start();
    });
  }

  close(): void {
    if (this.ring === null) return;
    this.watch?.close();
    this.watch = null;
    this.ring.close();
    this.ring = null;
    this.wake();
  }

  reduce(): RingState {
    this.open();
    return {
      memory: _reduceDescriptor(this.memoryFd),
      reader: _reduceDescriptor(this.bellRead),
      writer: _reduceDescriptor(this.bellWrite),
    };
  }

  static rebuild(state: RingState): QueueRing {
    const memoryFd = _rebuildDescriptor(state.memory);
    const words = new Int32Array(native().queueRingMap(memoryFd));
    return new QueueRing(words, memoryFd, _rebuildDescriptor(state.reader), _rebuildDescriptor(state.writer));
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    this.watch?.stop();
    for (const resolve of waiting) resolve();
  }

  /** The native ring; throws once closed here. */
  private open(): NativeQueueRing {
    if (this.ring === null) throw closedError();
    return this.ring;
  }
}
