/**
 * Host side of the init channel (src/sandbox/native/channel.h): parses the framed stream a sandbox sends out,
 * treating every byte as hostile. Frames are bounded before they are buffered, stdout and stderr are capped
 * (truncation is reported), and the outputs archive is streamed into the safe unpacker. `channelSink` feeds
 * the parser from a stream with backpressure all the way to the sandbox: no buffer between the sandbox and the
 * disk grows beyond a frame or a stream's high-water mark.
 */
import { PassThrough, Writable } from "node:stream";
import { PeerError, UserError } from "../qube/errors.js";
import type { OutputRefusal } from "../qube/statement.js";

export const FRAME_MAX = 65536;
export const HELLO = "airqube-init/1";
const MAX_WARNINGS = 64;
const MAX_WARNING_BYTES = 1024;
/** Bytes of archive the parser holds for a slow unpacker before it asks its source to pause. */
const ARCHIVE_HIGH_WATER = 256 * 1024;

/** Codes of the init's 'F' frame (channel.h, AQ_OUT_*): why the declared outputs were not sent. */
export const OUTPUT_FAILURES = {
  1: ["OUTPUT_TOO_MANY_FILES", "The qube's outputs hold more files or directories than the limit"],
  2: ["OUTPUT_FILE_TOO_LARGE", "An output file is larger than the per-file limit"],
  3: ["OUTPUT_TOO_LARGE", "The qube's outputs are larger than the total limit"],
  4: ["OUTPUT_PATH_TOO_LONG", "An output path is longer than 1024 bytes"],
  5: ["OUTPUT_TOO_DEEP", "An output is nested deeper than 32 levels"],
  6: ["OUTPUT_UNREADABLE", "An output could not be read"],
  7: ["OUTPUT_UNSUPPORTED_TYPE", "An output is not a regular file or directory (links, devices and FIFOs are refused)"],
  8: [
    "OUTPUT_BAD_NAME",
    "An output's name has a control character, a backslash or bytes that are not UTF-8 (it could not be kept as it is)",
  ],
} as const satisfies Record<number, readonly [OutputRefusal, string]>;
export type OutputFailureCode = (typeof OUTPUT_FAILURES)[keyof typeof OUTPUT_FAILURES][0];

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
  /** Why the init sent no outputs (an 'F' frame): the qube's outputs broke a limit or a rule. */
  outputFailure?: UserError;
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
  readonly archive = new PassThrough({ highWaterMark: ARCHIVE_HIGH_WATER });
  /** The header being read (fewer than 5 bytes), or the current frame's type and payload bytes still due. */
  private header: Buffer = Buffer.alloc(0);
  private type = "";
  private remaining: number | undefined;
  private parts: Buffer[] = [];
  private readonly stdout: CappedText;
  private readonly stderr: CappedText;
  private readonly warnings: string[] = [];
  private exit: ExitReport | undefined;
  private sawHello = false;
  private ended = false;
  private archiveBytes = 0;
  private failure: PeerError | undefined;
  private outputFailure: UserError | undefined;
  private sentArchive = false;

  constructor(private readonly caps: { logBytes: number; maxArchiveBytes: number }) {
    // Errors reach the archive's consumer (the unpacker) through its iterator; without one they are reported by
    // `error`, `end()` and `outputFailure`, never as an uncaught stream error.
    this.archive.on("error", () => undefined);
    this.stdout = new CappedText(caps.logBytes);
    this.stderr = new CappedText(caps.logBytes);
  }

  /** True while the archive consumer is behind: the caller should pause its source until `archive` drains. */
  get backpressured(): boolean {
    return this.archive.writableNeedDrain;
  }

  /** True once the 'Z' frame arrived: nothing more is expected. */
  get complete(): boolean {
    return this.ended;
  }

  /** True once the exit frame arrived: the qube's command has finished. */
  get exited(): boolean {
    return this.exit !== undefined;
  }

  /** The first protocol violation seen, if any; parsing stops at it. */
  get error(): PeerError | undefined {
    return this.failure;
  }

  push(chunk: Buffer): void {
    if (this.failure) return;
    try {
      // Zero-copy: archive payloads go on as slices of the incoming chunks, as they arrive; other frames (at most
      // FRAME_MAX bytes) are gathered first. Nothing is buffered beyond one frame.
      let data = chunk;
      while (data.length > 0) {
        if (this.remaining === undefined) {
          const needed = 5 - this.header.length;
          this.header =
            this.header.length === 0
              ? data.subarray(0, needed)
              : Buffer.concat([this.header, data.subarray(0, needed)]);
          data = data.subarray(needed);
          if (this.header.length < 5) break;
          this.type = String.fromCharCode(this.header[0]!);
          const length = this.header.readUInt32BE(1);
          this.header = Buffer.alloc(0);
          if (length > FRAME_MAX) throw channelError("Sandbox sent an oversized frame", `${length} bytes`);
          this.remaining = length;
          this.parts = [];
          if (this.type === "T") this.beginArchiveFrame(length);
        }
        const part = data.subarray(0, this.remaining);
        data = data.subarray(part.length);
        this.remaining -= part.length;
        if (this.type === "T") {
          if (part.length > 0 && !this.archive.destroyed) this.archive.write(part);
        } else if (part.length > 0) this.parts.push(part);
        if (this.remaining === 0) {
          this.remaining = undefined;
          if (this.type !== "T")
            this.frame(this.type, this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts));
          this.parts = [];
        }
      }
    } catch (error) {
      this.fail(error as PeerError);
    }
  }

  /** Checks an archive frame's header before its payload streams on to the unpacker. */
  private beginArchiveFrame(length: number): void {
    if (this.ended) throw channelError("Sandbox sent data after the end of stream");
    if (!this.sawHello) throw channelError("Sandbox did not start with the init hello");
    if (!this.exit) throw channelError("Sandbox sent outputs before its exit status");
    if (this.outputFailure) throw channelError("Sandbox sent outputs after an output failure");
    this.sentArchive = true;
    this.archiveBytes += length;
    if (this.archiveBytes > this.caps.maxArchiveBytes)
      throw channelError("Sandbox outputs exceed the output cap", `${this.caps.maxArchiveBytes} bytes`);
  }

  private fail(error: PeerError): void {
    this.failure = error;
    this.parts = [];
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
      case "F": {
        if (!this.exit) throw channelError("Sandbox sent an output failure before its exit status");
        if (this.outputFailure || this.sentArchive)
          throw channelError("Sandbox sent an output failure twice or after outputs");
        const known = OUTPUT_FAILURES[payload[0] as keyof typeof OUTPUT_FAILURES];
        if (!known || payload.length > 1 + 2 * MAX_WARNING_BYTES) throw channelError("Malformed output failure frame");
        const detail = payload
          .subarray(1)
          .toString("utf8")
          // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this removes
          .replace(/[\u0000-\u001f\u007f]/g, "?");
        this.outputFailure = new UserError(known[0], known[1], { details: detail });
        this.archive.destroy(this.outputFailure); // the unpacker stops; its staging is removed
        return;
      }
      case "T":
        throw channelError("Archive frames are streamed, never gathered"); // unreachable: see push
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
    if (!this.failure && (this.header.length > 0 || this.remaining !== undefined))
      this.fail(channelError("Sandbox stream ended inside a frame"));
    // An archive cut short must never be taken for a whole one: without the end frame the unpacker is failed,
    // so that it removes its staging and nothing of a partial archive lands in the output directory.
    if (!this.archive.destroyed) {
      if (this.ended) this.archive.end();
      else this.archive.destroy(channelError("Sandbox stream ended before its end frame"));
    }
    return {
      stdout: this.stdout.text(),
      stderr: this.stderr.text(),
      stdoutTruncated: this.stdout.truncated,
      stderrTruncated: this.stderr.truncated,
      ...(this.exit ? { exit: this.exit } : {}),
      warnings: [...this.warnings],
      complete: this.ended,
      ...(this.outputFailure ? { outputFailure: this.outputFailure } : {}),
    };
  }
}

/**
 * A writable that feeds `parser` and holds its writer back while the parser's archive consumer (the unpacker)
 * is behind, so that backpressure reaches the sandbox. It finishes as soon as the end frame arrives (`onEnd`);
 * `onExit` runs once when the exit report has arrived (the sandbox is still there, sending its outputs).
 *
 * @example
 * await pipeline(attachStream, new DockerDemux(), channelSink(parser, () => done()));
 */
export function channelSink(parser: ChannelParser, onEnd: () => void, onExit?: () => void): Writable {
  let signalled = false;
  let exitSignalled = false;
  return new Writable({
    highWaterMark: FRAME_MAX,
    write(chunk: Buffer, _encoding, callback) {
      parser.push(chunk);
      if (parser.exited && !exitSignalled) {
        exitSignalled = true;
        onExit?.();
      }
      if (parser.complete && !signalled) {
        signalled = true;
        onEnd();
      }
      if (!parser.backpressured || parser.archive.destroyed) return callback();
      const resume = () => {
        parser.archive.off("drain", resume);
        parser.archive.off("close", resume);
        callback();
      };
      parser.archive.on("drain", resume);
      parser.archive.on("close", resume);
    },
  });
}
