/**
 * Host side of the init channel (src/sandbox/native/channel.h): parses the framed stream a sandbox sends out,
 * treating every byte as hostile. Frames are bounded before they are buffered, stdout and stderr are capped
 * (truncation is reported), and the outputs archive is streamed into the safe unpacker.
 */
import { PassThrough } from "node:stream";
import { PeerError } from "../qube/errors.js";

export const FRAME_MAX = 65536;
export const HELLO = "airqube-init/1";
const MAX_WARNINGS = 64;
const MAX_WARNING_BYTES = 1024;

/** How the command ended, as the init reported it. */
export type ExitReport =
  | { kind: "exited"; code: number }
  | { kind: "signaled"; signal: number }
  | { kind: "exec-failed"; errno: number };

export interface ChannelResult {
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  exit?: ExitReport;
  warnings: string[];
  /** True when the stream ended with a proper 'Z' frame. */
  complete: boolean;
}

class CappedText {
  private readonly parts: Buffer[] = [];
  private size = 0;
  truncated = false;
  constructor(private readonly cap: number) {}
  push(data: Buffer): void {
    const room = this.cap - this.size;
    if (data.length > room) this.truncated = true;
    if (room <= 0) return;
    const part = data.subarray(0, room);
    this.parts.push(part);
    this.size += part.length;
  }
  text(): string {
    return Buffer.concat(this.parts).toString("utf8");
  }
}

function channelError(message: string, details?: string): PeerError {
  return new PeerError("CHANNEL_INVALID", message, details === undefined ? {} : { details });
}

/**
 * Incremental parser of the init channel. Feed it bytes with `push`, then call `end`. The outputs archive
 * is written to `archive` (a stream the caller hands to `unpackTar`), bounded by `maxArchiveBytes`.
 */
export class ChannelParser {
  readonly archive = new PassThrough();
  private buffer: Buffer = Buffer.alloc(0);
  private readonly stdout: CappedText;
  private readonly stderr: CappedText;
  private readonly warnings: string[] = [];
  private exit: ExitReport | undefined;
  private sawHello = false;
  private ended = false;
  private archiveBytes = 0;
  private failure: PeerError | undefined;

  constructor(private readonly caps: { logBytes: number; maxArchiveBytes: number }) {
    this.stdout = new CappedText(caps.logBytes);
    this.stderr = new CappedText(caps.logBytes);
  }

  /** True while the archive consumer is behind: the caller should pause its source until `archive` drains. */
  get backpressured(): boolean {
    return this.archive.writableNeedDrain;
  }

  /** The first protocol violation seen, if any; parsing stops at it. */
  get error(): PeerError | undefined {
    return this.failure;
  }

  push(chunk: Buffer): void {
    if (this.failure) return;
    try {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      while (this.buffer.length >= 5) {
        const type = String.fromCharCode(this.buffer[0]!);
        const length = this.buffer.readUInt32BE(1);
        if (length > FRAME_MAX) throw channelError("Sandbox sent an oversized frame", `${length} bytes`);
        if (this.buffer.length < 5 + length) break;
        const payload = this.buffer.subarray(5, 5 + length);
        this.buffer = this.buffer.subarray(5 + length);
        this.frame(type, payload);
      }
      if (this.buffer.length > 5 + FRAME_MAX) throw channelError("Sandbox frame buffer overflow");
    } catch (error) {
      this.fail(error as PeerError);
    }
  }

  private fail(error: PeerError): void {
    this.failure = error;
    this.buffer = Buffer.alloc(0);
    this.archive.destroy(error);
  }

  private frame(type: string, payload: Buffer): void {
    if (this.ended) throw channelError("Sandbox sent data after the end of stream");
    if (!this.sawHello) {
      if (type !== "H" || payload.toString("latin1") !== HELLO)
        throw channelError("Sandbox did not start with the init hello");
      this.sawHello = true;
      return;
    }
    switch (type) {
      case "O":
        this.stdout.push(payload);
        return;
      case "E":
        this.stderr.push(payload);
        return;
      case "W":
        if (this.warnings.length < MAX_WARNINGS)
          this.warnings.push(payload.subarray(0, MAX_WARNING_BYTES).toString("utf8"));
        return;
      case "X": {
        if (this.exit) throw channelError("Sandbox reported its exit twice");
        if (payload.length !== 5) throw channelError("Malformed exit frame");
        const kind = payload[0];
        const value = payload.readInt32BE(1);
        if (kind === 0) this.exit = { kind: "exited", code: value };
        else if (kind === 1) this.exit = { kind: "signaled", signal: value };
        else if (kind === 2) this.exit = { kind: "exec-failed", errno: value };
        else throw channelError("Unknown exit kind", String(kind));
        return;
      }
      case "T":
        if (!this.exit) throw channelError("Sandbox sent outputs before its exit status");
        this.archiveBytes += payload.length;
        if (this.archiveBytes > this.caps.maxArchiveBytes)
          throw channelError("Sandbox outputs exceed the output cap", `${this.caps.maxArchiveBytes} bytes`);
        this.archive.write(Buffer.from(payload));
        return;
      case "Z":
        if (payload.length !== 0) throw channelError("Malformed end frame");
        this.ended = true;
        return;
      default:
        throw channelError("Unknown frame type", JSON.stringify(type));
    }
  }

  /** Marks the input as finished and returns what was parsed. */
  end(): ChannelResult {
    if (!this.failure && this.buffer.length > 0) this.fail(channelError("Sandbox stream ended inside a frame"));
    if (!this.archive.destroyed) this.archive.end();
    return {
      stdout: this.stdout.text(),
      stderr: this.stderr.text(),
      stdoutTruncated: this.stdout.truncated,
      stderrTruncated: this.stderr.truncated,
      ...(this.exit ? { exit: this.exit } : {}),
      warnings: [...this.warnings],
      complete: this.ended,
    };
  }
}
