/**
 * Length-prefixed frames on a byte stream read in chunks (the fork server's
 * requests): `[u32 length, little-endian][length bytes]`.
 * @internal
 */

/**
 * Splits a stream into frames as its chunks arrive, whatever their sizes. Each
 * byte is copied once: a frame's buffer is allocated as soon as its length is
 * known and filled chunk by chunk. (Appending each 64 KiB chunk to what was
 * buffered copied a 16 MB frame some 250 times: quadratic in its size.)
 */
export class FrameReader {
  private readonly header = Buffer.alloc(4);
  private headerFilled = 0;
  private frame: Buffer | null = null;
  private frameFilled = 0;

  /** Takes the next chunk of the stream; returns the frames it completed, in order. */
  push(chunk: Uint8Array): Buffer[] {
    const frames: Buffer[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.frame === null) {
        offset += this.fillHeader(chunk, offset);
        if (this.frame === null) break;
      } else {
        offset += this.fillFrame(chunk, offset);
      }
      if (this.frame !== null && this.frameFilled === this.frame.length) {
        frames.push(this.frame);
        this.frame = null;
      }
    }
    return frames;
  }

  /** Copies what it can of the length from `chunk` at `offset`; starts the frame once the length is whole. */
  private fillHeader(chunk: Uint8Array, offset: number): number {
    const taken = Math.min(4 - this.headerFilled, chunk.length - offset);
    this.header.set(chunk.subarray(offset, offset + taken), this.headerFilled);
    this.headerFilled += taken;
    if (this.headerFilled === 4) {
      this.headerFilled = 0;
      this.frame = Buffer.allocUnsafe(this.header.readUInt32LE(0));
      this.frameFilled = 0;
    }
    return taken;
  }

  /** Copies what it can of the current frame from `chunk` at `offset`. */
  private fillFrame(chunk: Uint8Array, offset: number): number {
    const frame = this.frame as Buffer;
    const taken = Math.min(frame.length - this.frameFilled, chunk.length - offset);
    frame.set(chunk.subarray(offset, offset + taken), this.frameFilled);
    this.frameFilled += taken;
    return taken;
  }
}
