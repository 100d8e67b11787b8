/**
 * A pool worker's stdout and stderr, line-intact. The workers write to the
 * parent's own descriptors (inherited), often one pipe for all of them. Node
 * writes a stream's backlog in one `writev()` of many lines, which a full pipe
 * takes only in part: the rest follows later, after another worker's line, and
 * both lines arrive broken. A worker writes instead every complete line at
 * once, synchronously, in writes that end at a line's end and hold at most
 * `PIPE_BUF` bytes: the kernel writes each of them whole or not at all (a
 * full pipe makes the task wait, as Python's worker does). Text not ended by a
 * newline waits for its line's end, the end of the task or the worker's exit.
 * A single line longer than `PIPE_BUF` cannot be kept whole.
 * @internal
 */
import { writeAllSync } from '../util';

/** The most bytes a pipe writes whole (POSIX's `PIPE_BUF`: 4096 on Linux, 512 on macOS and the BSDs). */
const PIPE_BUF = process.platform === 'linux' ? 4096 : 512;
const NEWLINE = 0x0a;

/** Writes whole lines to a descriptor, keeping the unfinished one. */
class LineWriter {
  #unfinished: Buffer[] = [];

  constructor(readonly fd: number) {}

  write(bytes: Buffer): void {
    const end = bytes.lastIndexOf(NEWLINE) + 1;
    if (end === 0) {
      this.#unfinished.push(Buffer.from(bytes)); // a copy: the caller may reuse its buffer
      return;
    }
    const lines = this.#unfinished.length > 0 ? Buffer.concat([...this.#unfinished, bytes.subarray(0, end)]) : bytes.subarray(0, end);
    this.#unfinished = end < bytes.length ? [Buffer.from(bytes.subarray(end))] : [];
    writeLines(this.fd, lines);
  }

  /** Writes the unfinished line as it is. */
  flush(): void {
    if (this.#unfinished.length === 0) return;
    const rest = Buffer.concat(this.#unfinished);
    this.#unfinished = [];
    writeLines(this.fd, rest);
  }
}

/** Writes `data` in pieces of at most PIPE_BUF bytes that end at a line's end (a longer line: alone, in one piece). */
function writeLines(fd: number, data: Buffer): void {
  for (let start = 0; start < data.length; ) {
    let end = Math.min(data.length, start + PIPE_BUF);
    if (end < data.length) {
      const lastNewline = data.lastIndexOf(NEWLINE, end - 1);
      if (lastNewline >= start) end = lastNewline + 1;
      else {
        const next = data.indexOf(NEWLINE, end);
        end = next < 0 ? data.length : next + 1;
      }
    }
    writeAllSync(fd, data.subarray(start, end));
    start = end;
  }
}

type WriteCallback = (error?: Error | null) => void;

const writers: LineWriter[] = [];

/**
 * In a worker: `process.stdout` and `process.stderr` write whole lines
 * synchronously from now on (see the module's doc). Errors (EPIPE) go to the
 * write's callback, or are thrown (console.log() ignores them, as Node's).
 * A stream Node has not made yet is patched when it is first asked for:
 * making one costs a fresh worker milliseconds it may never need.
 */
export function writeWholeLines(): void {
  if (writers.length > 0) return;
  for (const [name, fd] of [
    ['stdout', 1],
    ['stderr', 2],
  ] as const) {
    const writer = new LineWriter(fd);
    writers.push(writer);
    const descriptor = Object.getOwnPropertyDescriptor(process, name);
    const get = descriptor?.get;
    if (get === undefined || descriptor?.configurable !== true) {
      writeLinesTo(process[name], writer);
      continue;
    }
    let stream: NodeJS.WriteStream | null = null;
    Object.defineProperty(process, name, {
      configurable: true,
      enumerable: descriptor.enumerable,
      get(): NodeJS.WriteStream {
        if (stream === null) {
          stream = get.call(process) as NodeJS.WriteStream;
          writeLinesTo(stream, writer);
        }
        return stream;
      },
    });
  }
  // process.exit() in a task: the unfinished lines are written before the worker leaves.
  process.prependListener('exit', flushLines);
}

/** Makes `stream.write` write through `writer`. */
function writeLinesTo(stream: NodeJS.WriteStream, writer: LineWriter): void {
  stream.write = function write(chunk: string | Uint8Array, encodingOrCallback?: BufferEncoding | WriteCallback, callback?: WriteCallback): boolean {
    const encoding = typeof encodingOrCallback === 'string' ? encodingOrCallback : undefined;
    const done = typeof encodingOrCallback === 'function' ? encodingOrCallback : callback;
    try {
      writer.write(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    } catch (error) {
      if (done === undefined) throw error;
      process.nextTick(done, error as Error);
      return false;
    }
    if (done !== undefined) process.nextTick(done, null);
    return true;
  } as typeof stream.write;
}

/** Writes the unfinished lines of stdout and stderr (at the end of a task, as the worker leaves). */
export function flushLines(): void {
  for (const writer of writers) {
    try {
      writer.flush();
    } catch {
      // The output's reader is gone (EPIPE): nothing to keep it for.
    }
  }
}

/** What a forked worker calls here, for the parent to compile before it forks (see prepareForkedWorkers()). */
export function outputFunctions(): Array<(...args: never[]) => unknown> {
  return [writeWholeLines, writeLinesTo, flushLines, writeLines, LineWriter, LineWriter.prototype.write, LineWriter.prototype.flush] as Array<(...args: never[]) => unknown>;
}
