/**
 * Demultiplexes a Docker attach stream (no TTY): 8-byte headers `[stream, 0, 0, 0, size u32 BE]` before each
 * payload. Unlike docker-modem's `demuxStream`, it is a Transform, so it honours backpressure: when the consumer
 * of stdout is slow, reading from the engine's socket stops, the engine stops reading from the container, and
 * the sandbox's writes block. Nothing in between grows without bound.
 */
import { Transform, type TransformCallback } from "node:stream";
import { PeerError } from "../qube/errors.js";

const HEADER = 8;
const STDOUT = 1;
const STDERR = 2;

/** Passes on the container's stdout; counts and drops stderr (the init writes nothing there). */
export class DockerDemux extends Transform {
  private pending: Buffer = Buffer.alloc(0);
  /** Bytes of the current frame still to come, and whether they are stdout. */
  private left = 0;
  private toStdout = false;
  /** Bytes seen on stderr and dropped. */
  stderrBytes = 0;
  /** Milliseconds on `performance.now()` when the last byte arrived (for stall detection). */
  lastByteAt = performance.now();

  constructor() {
    super({ highWaterMark: 64 * 1024 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.lastByteAt = performance.now();
    let data = chunk;
    while (data.length > 0) {
      if (this.left > 0) {
        const part = data.subarray(0, Math.min(this.left, data.length));
        this.left -= part.length;
        data = data.subarray(part.length);
        if (this.toStdout) this.push(part);
        else this.stderrBytes += part.length;
        continue;
      }
      // reading a header; keep at most 7 bytes of an unfinished one
      const needed = HEADER - this.pending.length;
      this.pending = Buffer.concat([this.pending, data.subarray(0, needed)]);
      data = data.subarray(needed);
      if (this.pending.length < HEADER) break;
      const kind = this.pending[0];
      if ((kind !== STDOUT && kind !== STDERR) || this.pending[1] || this.pending[2] || this.pending[3]) {
        callback(new PeerError("CHANNEL_INVALID", "Malformed Docker attach stream", { details: `stream ${kind}` }));
        return;
      }
      this.toStdout = kind === STDOUT;
      this.left = this.pending.readUInt32BE(4);
      this.pending = Buffer.alloc(0);
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    // A stream cut inside a header or payload is reported by the channel parser (no end frame).
    callback();
  }
}
