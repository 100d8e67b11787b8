/**
 * `SharedMemory` and `ShareableList`, as Python's
 * `multiprocessing.shared_memory`: named POSIX shared memory segments that any
 * process can attach by name, and a list of simple values stored in one.
 *
 * @example
 * ```ts
 * import { SharedMemory } from 'node-multiprocessing';
 * const shm = new SharedMemory({ create: true, size: 16 });
 * shm.buf.write('hello');
 * const other = new SharedMemory({ name: shm.name }); // e.g. in another process
 * other.buf.toString('utf8', 0, 5); // 'hello'
 * other.close();
 * shm.close();
 * shm.unlink();
 * ```
 * @packageDocumentation
 */
import { constants as BufferConstants } from 'buffer';

import { createSegment, discardSegment } from './heap';
import { requireNative } from './native';
import { registerReducer } from './reduction';
import * as tracker from './resource_tracker';
import { describe, validateInteger, validateOptions } from './validate';

/** Options of {@link SharedMemory}'s constructor. */
export interface SharedMemoryOptions {
  /**
   * The segment's name (a leading `/` is optional): required to attach; when
   * creating, a fresh random name (`mp-…`) is chosen if omitted.
   */
  name?: string;
  /** Create a new segment (default `false`: attach an existing one). */
  create?: boolean;
  /** The size in bytes of a new segment (> 0); ignored when attaching. */
  size?: number;
}

/** Longest name the kernel takes (NAME_MAX, without the leading slash). */
const MAX_NAME_LENGTH = 255;

/** `'/name'` for a user's name, which may or may not start with a slash. */
function segmentPath(name: unknown): string {
  if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${describe(name)}`);
  const bare = name.startsWith('/') ? name.slice(1) : name;
  if (bare === '' || /[/\0\n]/.test(bare)) {
    throw new TypeError(`name must be a non-empty string without '/', NUL or newline after an optional leading '/', got ${JSON.stringify(name)}`);
  }
  if (bare.length > MAX_NAME_LENGTH) throw new RangeError(`name must be at most ${MAX_NAME_LENGTH} characters, got ${bare.length}`);
  return `/${bare}`;
}

/** The largest segment a Buffer can view. */
const MAX_SIZE: number = BufferConstants.MAX_LENGTH;

/** A Buffer over all of `memory`; on failure (an attached segment too large to view) `undo` runs first. */
function viewOf(memory: ArrayBuffer, undo: () => void): Buffer {
  try {
    return Buffer.from(memory);
  } catch (error) {
    undo();
    throw error;
  }
}

function validateSharedMemoryOptions(options: SharedMemoryOptions): { path: string | null; create: boolean; size: number } {
  const { name, create = false, size = 0 } = validateOptions(options, ['name', 'create', 'size'] as const);
  if (typeof create !== 'boolean') throw new TypeError(`create must be a boolean, got ${describe(create)}`);
  const bytes = validateInteger(size, 'size', 0, Number.MAX_SAFE_INTEGER);
  if (create && bytes === 0) throw new RangeError("size must be a positive number of bytes when create is true, got 0");
  if (create && bytes > MAX_SIZE) {
    throw new RangeError(`size must be at most ${MAX_SIZE} bytes (buffer.constants.MAX_LENGTH, the largest Buffer this Node makes), got ${bytes}`);
  }
  if (name === undefined && !create) throw new TypeError('name is required unless create is true');
  return { path: name === undefined ? null : segmentPath(name), create, size: bytes };
}

/**
 * A POSIX shared memory segment (`shm_open` + `mmap`), created or attached by
 * name, as Python's `multiprocessing.shared_memory.SharedMemory`.
 *
 * Creating a segment registers it with the resource tracker, which unlinks it
 * (with a warning) if no process did by the time every process of this family
 * has ended, also after a SIGKILL. Attaching registers nothing: the creator
 * owns the name. Errors of the system calls keep their `code`: `EEXIST` when
 * creating a name that exists (Python's `FileExistsError`), `ENOENT` when
 * attaching one that does not (`FileNotFoundError`).
 */
export class SharedMemory {
  private readonly path: string;
  private buffer: Buffer | null;

  /**
   * @param options `{ name?, create = false, size = 0 }`: see
   * {@link SharedMemoryOptions}. Throws a TypeError/RangeError for bad options.
   */
  constructor(options: SharedMemoryOptions = {}) {
    const { path, create, size } = validateSharedMemoryOptions(options);
    if (create) {
      const segment = createSegment({ name: path ?? undefined, prefix: '/mp-', size, type: 'shared_memory' });
      this.path = segment.name;
      this.buffer = viewOf(segment.buffer, () => discardSegment(segment, 'shared_memory'));
    } else {
      this.path = path as string;
      const memory = requireNative('SharedMemory').shmOpen(this.path, false, 0);
      this.buffer = viewOf(memory, () => requireNative('SharedMemory').shmRelease(memory));
    }
  }

  /** The segment's name, without its leading slash (as Python's). */
  get name(): string {
    return this.path.slice(1);
  }

  /** The size of the mapping in bytes (for an attached segment, its actual size). */
  get size(): number {
    return this.buf.length;
  }

  /**
   * A Buffer over the segment itself (no copy): writes are seen by every
   * process that maps it, at once. Throws after {@link close}.
   */
  get buf(): Buffer {
    if (this.buffer === null) throw new Error(`SharedMemory '${this.name}' is closed`);
    return this.buffer;
  }

  /**
   * Unmaps the segment from this process. Buffers and views over `buf` are
   * detached (length 0) so they can never touch unmapped memory. The segment
   * itself stays until {@link unlink}. Closing twice is harmless.
   */
  close(): void {
    if (this.buffer === null) return;
    requireNative('SharedMemory').shmRelease(this.buffer.buffer as ArrayBuffer);
    this.buffer = null;
  }

  /**
   * Removes the segment's name, once, in one process (usually its creator):
   * processes that have it mapped keep using it, no new process can attach.
   * Throws with `code === 'ENOENT'` if the name is already gone.
   */
  unlink(): void {
    requireNative('SharedMemory').shmUnlink(this.path);
    tracker.unregister(this.path, 'shared_memory');
  }

  /** `SharedMemory('name', size=n)`, as Python's repr. */
  toString(): string {
    return `SharedMemory(${JSON.stringify(this.name)}, size=${this.buffer === null ? 'closed' : this.size})`;
  }
}

registerReducer(SharedMemory, {
  kind: 'SharedMemory',
  reduce: (shm: SharedMemory) => shm.name,
  rebuild: (name: string) => new SharedMemory({ name }),
});

// --- ShareableList -------------------------------------------------------------

/** What a {@link ShareableList} holds: a Python `int`/`float`, `bool`, `str`, `bytes` or `None`. */
export type ShareableItem = number | bigint | boolean | string | Buffer | null;

/**
 * How each item is stored, in Python's `ShareableList` layout (so that Python
 * processes can attach the same segment):
 *
 * ```
 * int64 count | int64 offsets[count + 1] | data | char formats[count][8] | int8 codes[count]
 * ```
 * `offsets` are the items' allocated positions in `data` (fixed at creation),
 * `formats` Python `struct` formats (`q`, `d`, `xxxxxxx?`, `xxxxxx?x`, `<n>s`)
 * and `codes` how to read an item back (0 as is, 1 str, 2 bytes, 3 None).
 */
const enum Code {
  AsIs = 0,
  Str = 1,
  Bytes = 2,
  None = 3,
}

const ALIGNMENT = 8;
const FORMAT_SIZE = 8;
const BOOL_FORMAT = 'xxxxxxx?';
const NONE_FORMAT = 'xxxxxx?x';
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** An item ready to be written: its format, read-back code and bytes for strings. */
interface Encoded {
  format: string;
  code: Code;
  bytes?: Buffer;
}

function encode(item: unknown, what: string): Encoded {
  // Integers JS can hold exactly are Python ints; others are floats.
  if (typeof item === 'number') return { format: Number.isSafeInteger(item) ? 'q' : 'd', code: Code.AsIs };
  if (typeof item === 'bigint') {
    if (item < INT64_MIN || item > INT64_MAX) throw new RangeError(`${what} must fit in 64 bits, got ${item}`);
    return { format: 'q', code: Code.AsIs };
  }
  if (typeof item === 'boolean') return { format: BOOL_FORMAT, code: Code.AsIs };
  if (item === null) return { format: NONE_FORMAT, code: Code.None };
  if (typeof item === 'string' || item instanceof Uint8Array) {
    const bytes = typeof item === 'string' ? Buffer.from(item, 'utf8') : Buffer.from(item);
    const code = typeof item === 'string' ? Code.Str : Code.Bytes;
    return { format: `${ALIGNMENT * (Math.floor(bytes.length / ALIGNMENT) + 1)}s`, code, bytes };
  }
  throw new TypeError(`${what} must be a number, bigint, boolean, string, Buffer or null, got ${describe(item)}`);
}

/** Bytes an item of `format` takes in the data area. */
function allocatedSize(format: string): number {
  return format.endsWith('s') ? Number(format.slice(0, -1)) : ALIGNMENT;
}

/** Offsets of the parts of a list's segment, from its item count and data size. */
class Layout {
  constructor(
    readonly count: number,
    readonly dataSize: number,
  ) {}

  get dataStart(): number {
    return (this.count + 2) * 8;
  }
  get formatsStart(): number {
    return this.dataStart + this.dataSize;
  }
  get codesStart(): number {
    return this.formatsStart + this.count * FORMAT_SIZE;
  }
  get totalSize(): number {
    return this.codesStart + this.count;
  }
}

function isIntegral(value: unknown): value is number | bigint {
  return typeof value === 'bigint' || Number.isInteger(value);
}

/** Python's `==` on items: Buffers by content, integers whatever their JS type. */
function sameItem(item: ShareableItem, value: unknown): boolean {
  if (item instanceof Uint8Array && value instanceof Uint8Array) return Buffer.compare(item, value) === 0;
  if (isIntegral(item) && isIntegral(value)) return BigInt(item) === BigInt(value);
  return item === value;
}

function isIndexKey(key: string | symbol): key is string {
  return typeof key === 'string' && /^-?\d+$/.test(key);
}

/** Options of {@link ShareableList}'s constructor. */
export interface ShareableListOptions {
  /** The segment's name: to attach an existing list, or to create one under this name. */
  name?: string;
}

/**
 * A fixed-length list of numbers, bigints, booleans, strings, Buffers and
 * `null`s stored in one {@link SharedMemory} segment, as Python's
 * `ShareableList` (same layout: Python processes can attach it by name).
 *
 * Items are read and written with `list[i]` (negative indices count from the
 * end) or {@link get}/{@link set}. The length never changes; a string or
 * Buffer item can be replaced by one of at most its slot's size (its first
 * length rounded up past a multiple of 8 bytes), numbers by any number.
 * Integers are stored as int64 and read back as numbers (bigints beyond 2^53),
 * other numbers as float64.
 *
 * @example
 * ```ts
 * const list = new ShareableList([1, 2.5, 'three', null, true]);
 * const same = new ShareableList(null, { name: list.shm.name }); // anywhere
 * same[2] = 'trois';
 * list[2]; // 'trois'
 * same.shm.close();
 * list.shm.close();
 * list.shm.unlink();
 * ```
 */
export class ShareableList implements Iterable<ShareableItem> {
  /** Items by index, negative indices from the end (via a Proxy). */
  [index: number]: ShareableItem;

  /** The segment holding the list. */
  readonly shm: SharedMemory;
  private readonly layout: Layout;
  private readonly offsets: number[];

  /**
   * @param sequence the items of a new list; `null`/omitted with a `name` to
   * attach an existing list.
   * @param options `{ name }`: see {@link ShareableListOptions}.
   */
  constructor(sequence?: Iterable<ShareableItem> | null, options: ShareableListOptions = {}) {
    const { name } = validateOptions(options, ['name'] as const) as ShareableListOptions;
    if (sequence === undefined || sequence === null) {
      if (name !== undefined) {
        this.shm = new SharedMemory({ name });
        [this.layout, this.offsets] = ShareableList.readLayout(this.shm.buf);
        return this.proxy();
      }
      sequence = [];
    }
    if (typeof (sequence as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new TypeError(`sequence must be iterable, got ${describe(sequence)}`);
    }
    const items = [...sequence];
    const encoded = items.map((item, i) => encode(item, `sequence[${i}]`));
    this.offsets = [0];
    for (const { format } of encoded) this.offsets.push(this.offsets[this.offsets.length - 1] + allocatedSize(format));
    this.layout = new Layout(items.length, this.offsets[items.length]);
    this.shm = new SharedMemory({ name, create: true, size: this.layout.totalSize });
    try {
      this.writeHeader();
      items.forEach((item, i) => this.store(i, item as ShareableItem, encoded[i]));
    } catch (error) {
      // A list that could not be written must not stay behind in /dev/shm.
      this.shm.close();
      this.shm.unlink();
      throw error;
    }
    return this.proxy();
  }

  private static readLayout(buf: Buffer): [Layout, number[]] {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const count = Number(view.getBigInt64(0, LITTLE_ENDIAN));
    if (!(count >= 0 && (count + 2) * 8 <= buf.length)) throw new Error('the segment does not hold a ShareableList');
    const offsets: number[] = [];
    for (let i = 0; i <= count; i++) offsets.push(Number(view.getBigInt64(8 * (i + 1), LITTLE_ENDIAN)));
    const layout = new Layout(count, offsets[count]);
    if (layout.totalSize > buf.length) throw new Error('the segment does not hold a ShareableList');
    return [layout, offsets];
  }

  private proxy(): this {
    return new Proxy(this, {
      get: (target, key, receiver) => (isIndexKey(key) ? target.get(Number(key)) : Reflect.get(target, key, receiver)),
      set: (target, key, value, receiver) => {
        if (!isIndexKey(key)) return Reflect.set(target, key, value, receiver);
        target.set(Number(key), value as ShareableItem);
        return true;
      },
      has: (target, key) => (isIndexKey(key) ? target.position(Number(key), false) >= 0 : Reflect.has(target, key)),
    });
  }

  private get view(): DataView {
    const buf = this.shm.buf;
    return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private writeHeader(): void {
    const view = this.view;
    view.setBigInt64(0, BigInt(this.layout.count), LITTLE_ENDIAN);
    this.offsets.forEach((offset, i) => view.setBigInt64(8 * (i + 1), BigInt(offset), LITTLE_ENDIAN));
  }

  /** The number of items. */
  get length(): number {
    return this.layout.count;
  }

  /** The Python `struct` format of all items, as Python's `ShareableList.format`. */
  get format(): string {
    return Array.from({ length: this.length }, (_, i) => this.formatOf(i)).join('');
  }

  /** `index` (negative from the end) as a position, or -1 / a RangeError when out of range. */
  private position(index: number, raise = true): number {
    const position = index < 0 ? index + this.length : index;
    if (Number.isInteger(position) && position >= 0 && position < this.length) return position;
    if (raise) throw new RangeError(`index ${index} out of range for a ShareableList of ${this.length} items`);
    return -1;
  }

  private formatOf(position: number): string {
    const start = this.layout.formatsStart + position * FORMAT_SIZE;
    return this.shm.buf.toString('latin1', start, start + FORMAT_SIZE).replace(/\0+$/, '');
  }

  /** The item at `index` (negative from the end); RangeError when out of range. */
  get(index: number): ShareableItem {
    const position = this.position(index);
    const buf = this.shm.buf;
    const format = this.formatOf(position);
    const offset = this.layout.dataStart + this.offsets[position];
    switch (buf[this.layout.codesStart + position] as Code) {
      case Code.None:
        return null;
      case Code.Str:
        return this.stringBytes(format, offset).toString('utf8');
      case Code.Bytes:
        return Buffer.from(this.stringBytes(format, offset));
      default:
        return this.readNumber(format, offset);
    }
  }

  /** A `<n>s` item without its trailing NULs, as Python's `rstrip(b'\x00')`. */
  private stringBytes(format: string, offset: number): Buffer {
    let end = offset + allocatedSize(format);
    while (end > offset && this.shm.buf[end - 1] === 0) end--;
    return this.shm.buf.subarray(offset, end);
  }

  private readNumber(format: string, offset: number): number | bigint | boolean {
    const view = this.view;
    if (format === 'd') return view.getFloat64(offset, LITTLE_ENDIAN);
    if (format === BOOL_FORMAT) return view.getUint8(offset + 7) !== 0;
    const value = view.getBigInt64(offset, LITTLE_ENDIAN);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  /**
   * Replaces the item at `index`. A string or Buffer longer than the slot
   * gets a RangeError (Python's "exceeds available storage"); a value of
   * another type a TypeError.
   */
  set(index: number, value: ShareableItem): void {
    const position = this.position(index);
    const encoded = encode(value, 'value');
    const allocated = this.offsets[position + 1] - this.offsets[position];
    if (encoded.bytes !== undefined) {
      if (encoded.bytes.length > allocated) {
        throw new RangeError(`a ${encoded.bytes.length}-byte item exceeds the ${allocated} bytes of slot ${position}`);
      }
      encoded.format = `${allocated}s`;
    }
    this.store(position, value, encoded);
  }

  private store(position: number, value: ShareableItem, { format, code, bytes }: Encoded): void {
    if (format.length > FORMAT_SIZE) throw new RangeError(`item ${position} is too large for a ShareableList slot`);
    const buf = this.shm.buf;
    const offset = this.layout.dataStart + this.offsets[position];
    const formatStart = this.layout.formatsStart + position * FORMAT_SIZE;
    buf.fill(0, formatStart, formatStart + FORMAT_SIZE).write(format, formatStart, 'latin1');
    buf[this.layout.codesStart + position] = code;
    buf.fill(0, offset, offset + allocatedSize(format));
    if (bytes !== undefined) bytes.copy(buf, offset);
    else if (format === 'q') this.view.setBigInt64(offset, BigInt(value as number | bigint), LITTLE_ENDIAN);
    else if (format === 'd') this.view.setFloat64(offset, value as number, LITTLE_ENDIAN);
    else if (format === BOOL_FORMAT) buf[offset + 7] = value ? 1 : 0;
  }

  /** How many items equal `value` (Buffers by content). */
  count(value: ShareableItem): number {
    let n = 0;
    for (const item of this) if (sameItem(item, value)) n++;
    return n;
  }

  /** The position of the first item equal to `value`; a RangeError if there is none (Python's ValueError). */
  index(value: ShareableItem): number {
    for (let i = 0; i < this.length; i++) if (sameItem(this.get(i), value)) return i;
    throw new RangeError(`${describe(value)} is not in this ShareableList`);
  }

  /** The items, in order. */
  *[Symbol.iterator](): Iterator<ShareableItem> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }

  /** `ShareableList([...], name='…')`, as Python's repr. */
  toString(): string {
    const items = [...this].map((item) => (typeof item === 'string' ? JSON.stringify(item) : String(item)));
    return `ShareableList([${items.join(', ')}], name=${JSON.stringify(this.shm.name)})`;
  }
}

registerReducer(ShareableList, {
  kind: 'ShareableList',
  reduce: (list: ShareableList) => list.shm.name,
  rebuild: (name: string) => new ShareableList(null, { name }),
});
