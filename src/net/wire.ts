/**
 * Framing for every Airqube protocol: length-prefixed frames (unsigned varint, as libp2p does) with a
 * maximum size checked before a byte is buffered, one tag byte (`J` JSON message, `B` raw bytes), JSON
 * parsed only after the size check and validated with zod. Every read and write takes a signal; a protocol
 * violation aborts the stream.
 */
import type { Stream } from "@libp2p/interface";
import { type LengthPrefixedStream, lpStream } from "@libp2p/utils";
import type { z } from "zod";
import { AirqubeError, PeerError, TimeoutError } from "../qube/errors.js";

const TAG_JSON = 0x4a;
const TAG_BYTES = 0x42;
const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

export type Frame = { kind: "json"; value: unknown } | { kind: "bytes"; data: Uint8Array };

export interface WireOptions {
  /** Largest frame accepted or sent, in bytes (tag included). */
  maxFrameBytes: number;
}

function wrap(error: unknown, signal?: AbortSignal): AirqubeError {
  if (error instanceof AirqubeError) return error;
  const name = (error as Error)?.name ?? "";
  if (signal?.aborted || name === "AbortError" || name === "TimeoutError") {
    return new TimeoutError("STREAM_TIMEOUT", "The peer did not answer in time", { cause: error });
  }
  if (
    name === "InvalidDataLengthError" ||
    name === "InvalidDataLengthLengthError" ||
    name === "InvalidMessageLengthError"
  ) {
    return new PeerError("FRAME_TOO_LARGE", "The peer sent a frame over the size limit", { cause: error });
  }
  if (name === "UnexpectedEOFError" || /EOF|closed|reset/i.test(String((error as Error)?.message))) {
    return new PeerError("STREAM_CLOSED", "The peer closed the stream early", {
      details: String((error as Error)?.message),
      cause: error,
    });
  }
  return new PeerError("STREAM_FAILED", "The stream failed", {
    details: String((error as Error)?.message ?? error),
    cause: error,
  });
}

/**
 * Flow control: received bytes not read yet above which the stream is paused (at least the largest frame plus
 * its length prefix, so a paused buffer always holds a whole frame and the next read never waits on a paused
 * stream). libp2p's byte stream buffers whatever arrives (yamux grants window on receipt, not on reading) and
 * aborts the stream past 4 MiB, so a sender faster than the reader (outputs of a few MiB while the requestor
 * writes them to disk) broke the stream ("Read buffer overflow"). Paused, yamux grants no more window: at most
 * the window granted before (2 x MAX_STREAM_WINDOW_BYTES, src/net/node.ts) arrives on top of this.
 */
const MIN_PAUSE_ABOVE_BYTES = 1024 * 1024;

const varintLength = (n: number) => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

/** A framed, validated view of one libp2p stream. */
export class Wire {
  private readonly lp: LengthPrefixedStream<Stream>;
  /** Bytes received and not read yet (see {@link MIN_PAUSE_ABOVE_BYTES}). */
  private unread = 0;
  private readonly pauseAbove: number;

  constructor(
    readonly stream: Stream,
    private readonly options: WireOptions,
  ) {
    this.lp = lpStream(stream, { maxDataLength: options.maxFrameBytes });
    this.pauseAbove = Math.max(MIN_PAUSE_ABOVE_BYTES, options.maxFrameBytes + 8);
    if (typeof stream.pause === "function")
      stream.addEventListener("message", (event) => {
        this.unread += event.data.byteLength;
        // not while resuming: resume() dispatches the paused buffer first and tells the muxer to resume after,
        // which would undo a pause made here (yamux would grant window again while paused: the buffer overflowed)
        if (!this.resuming && this.unread > this.pauseAbove && stream.readStatus === "readable") stream.pause();
      });
  }

  /** True while `resume()` runs (see the message listener). */
  private resuming = false;

  /** Resumes a paused stream once the frames it buffered have been read (before a read that may wait). */
  private resumeIfDrained(): void {
    if (this.unread <= this.pauseAbove && this.stream.readStatus === "paused") {
      this.resuming = true;
      try {
        this.stream.resume();
        // the buffer resume() dispatched may put us over the mark again: pause now that resume() is done
        if (this.unread > this.pauseAbove && (this.stream.readStatus as string) === "readable") this.stream.pause();
      } catch {
        // closing: the read below reports it
      } finally {
        this.resuming = false;
      }
    }
  }

  /** Sends one JSON message. */
  async send(message: object, options: { signal?: AbortSignal } = {}): Promise<void> {
    const body = encoder.encode(JSON.stringify(message));
    await this.writeFrame(TAG_JSON, body, options.signal);
  }

  /** Sends raw bytes (a chunk of a sealed stream). */
  async sendBytes(data: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.writeFrame(TAG_BYTES, data, options.signal);
  }

  private async writeFrame(tag: number, body: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (body.byteLength + 1 > this.options.maxFrameBytes) {
      throw new PeerError("FRAME_TOO_LARGE", "Refusing to send a frame over the size limit", {
        details: `${body.byteLength + 1} bytes`,
      });
    }
    const frame = new Uint8Array(body.byteLength + 1);
    frame[0] = tag;
    frame.set(body, 1);
    try {
      await this.lp.write(frame, signal ? { signal } : {});
    } catch (error) {
      throw wrap(error, signal);
    }
  }

  /** Reads the next frame of either kind. */
  async receiveFrame(options: { signal?: AbortSignal } = {}): Promise<Frame> {
    let bytes: Uint8Array;
    this.resumeIfDrained();
    try {
      bytes = (await this.lp.read(options.signal ? { signal: options.signal } : {})).subarray();
    } catch (error) {
      throw wrap(error, options.signal);
    }
    this.unread = Math.max(0, this.unread - bytes.byteLength - varintLength(bytes.byteLength));
    if (bytes.byteLength === 0) throw new PeerError("FRAME_INVALID", "The peer sent an empty frame");
    const tag = bytes[0];
    const body = bytes.subarray(1);
    if (tag === TAG_BYTES) return { kind: "bytes", data: body };
    if (tag !== TAG_JSON)
      throw new PeerError("FRAME_INVALID", "The peer sent a frame of unknown type", { details: String(tag) });
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(body));
    } catch (error) {
      throw new PeerError("FRAME_INVALID", "The peer sent a frame that is not JSON", { cause: error });
    }
    return { kind: "json", value };
  }

  /** Reads the next frame, which must be a JSON message valid under `schema`. */
  async receive<S extends z.ZodType>(schema: S, options: { signal?: AbortSignal } = {}): Promise<z.infer<S>> {
    const frame = await this.receiveFrame(options);
    if (frame.kind !== "json")
      throw new PeerError("FRAME_UNEXPECTED", "The peer sent bytes where a message was expected");
    return parseMessage(schema, frame.value);
  }

  /** Closes the write side politely. */
  async close(options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.stream.close(options.signal ? { signal: options.signal } : {}).catch(() => undefined);
  }

  /** Aborts the stream: used on any protocol violation, so the peer learns nothing more. */
  abort(error: Error): void {
    this.stream.abort(error);
  }
}

/** Validates a decoded message with a clear, typed error. */
export function parseMessage<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.join(".") || "message";
    throw new PeerError("MESSAGE_INVALID", "The peer sent an invalid message", {
      details: `${where}: ${issue?.message ?? "invalid"}`,
    });
  }
  return result.data;
}

/** Combines an optional caller signal with a deadline. */
export function withDeadline(ms: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}
