/**
 * The ya-runtime-api codec: the messages exe-unit and a service-mode ExeUnit runtime exchange over the
 * runtime's stdin and stdout.
 *
 * Wire format (yagna `exe-unit/runtime-api`): each frame is a protobuf message prefixed with its length as a
 * varint (prost's `encode_length_delimited`). exe-unit writes `Request`s to the runtime's stdin; the runtime
 * writes `Response`s to its stdout, either replies (`event: false`, `id` = the request's id) or events
 * (`event: true`: process status with output and return code, runtime status counters). The schema below is
 * declared with the field numbers of yagna's `runtime.proto` (package `ya_runtime_api`).
 *
 * Everything decoded here comes from the other side of a pipe: frame sizes are bounded and checked on the
 * length prefix, before any payload is buffered; ids and pids must be safe integers; a frame without a known
 * command is refused. Every failure is a {@link RuntimeProtocolError}.
 *
 * @example
 * const decoder = new FrameDecoder("request");
 * child.stdin.write(encodeResponse({ id: 2, hello: { version: "0.1.0" } }));
 * process.stdin.on("data", (chunk) => {
 *   for (const request of decoder.push(chunk)) handle(request);
 * });
 */
import protobuf from "protobufjs";
import { type AirqubeErrorOptions, InternalError, PeerError } from "../../qube/errors.js";

/** Largest request payload (exe-unit to runtime) a runtime accepts, in bytes (the prefix excluded). */
export const MAX_REQUEST_FRAME_BYTES = 1 << 20;
/** Largest response payload (runtime to exe-unit) accepted, in bytes (the prefix excluded). */
export const MAX_RESPONSE_FRAME_BYTES = 4 << 20;
/** The protocol version exe-unit sends in its Hello. */
export const RUNTIME_API_VERSION = "0.1.0";

/** Codes of {@link RuntimeProtocolError}. */
export type RuntimeProtocolErrorCode = "RUNTIME_FRAME_TOO_LARGE" | "RUNTIME_FRAME_MALFORMED";

/** The peer on the other end of the runtime pipe sent a frame that is too large or not a valid message. */
export class RuntimeProtocolError extends PeerError {
  declare readonly code: RuntimeProtocolErrorCode;
  constructor(code: RuntimeProtocolErrorCode, shortMessage: string, options?: AirqubeErrorOptions) {
    super(code, shortMessage, options);
  }
}

/** What becomes of a process's stdout or stderr: `{}` discards it, `{ atEnd: n }` keeps its last n bytes. */
export interface OutputSpec {
  atEnd?: number;
}

/** One network of a CreateNetwork request (VPN). */
export interface NetworkSpec {
  addr: string;
  gateway: string;
  mask: string;
  ifAddr: string;
}

/** A request from exe-unit to the runtime. */
export type RuntimeRequest = { id: number } & (
  | { hello: { version: string } }
  | { run: { bin: string; args: string[]; workDir: string; stdout?: OutputSpec; stderr?: OutputSpec } }
  | { kill: { pid: number; signal: number } }
  | { shutdown: Record<string, never> }
  | {
      network: { networks: NetworkSpec[]; hosts: Record<string, string>; interface: "VPN" | "INET" };
    }
);

/** The error codes of a runtime's error reply. */
export type RuntimeErrorCode = "INTERNAL" | "NOT_FOUND" | "BAD_REQUEST";

/** The endpoint kinds a runtime may answer a CreateNetwork request with. */
export type NetworkEndpointKind = "unixStream" | "unixDatagram" | "udpDatagram" | "tcpListener" | "tcpStream";

/** A reply of the runtime to the request with the same `id`. */
export type RuntimeReply = { id: number; event?: false } & (
  | { hello: { version: string } }
  | { run: { pid: number } }
  | { kill: Record<string, never> }
  | { shutdown: Record<string, never> }
  | { error: { code: RuntimeErrorCode; message: string; context?: Record<string, string> } }
  | { network: Partial<Record<NetworkEndpointKind, string>> }
);

/** Status of a process started by RunProcess: output since the last status, and the return code once done. */
export interface ProcessStatus {
  pid: number;
  running: boolean;
  returnCode: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

/** A runtime status event: a usage counter (e.g. `golem.usage.cpu_sec`) or a named state (JSON bytes). */
export type RuntimeStatus =
  | { counter: { name: string; value: number } }
  | { state: { name: string; value: Uint8Array } };

/** An event the runtime sends on its own (`id` is not a correlation id; 0 when absent). */
export type RuntimeEvent = { event: true; id?: number } & (
  | { processStatus: ProcessStatus }
  | { runtimeStatus: RuntimeStatus }
);

/** Anything the runtime writes to its stdout. */
export type RuntimeResponse = RuntimeReply | RuntimeEvent;

// The schema of yagna's exe-unit/runtime-api/src/runtime.proto, field numbers as there.
const SCHEMA = {
  nested: {
    ya_runtime_api: {
      nested: {
        Request: {
          oneofs: { command: { oneof: ["hello", "run", "kill", "shutdown", "network"] } },
          fields: {
            id: { type: "uint64", id: 1 },
            hello: { type: "Hello", id: 2 },
            run: { type: "RunProcess", id: 10 },
            kill: { type: "KillProcess", id: 11 },
            shutdown: { type: "Shutdown", id: 12 },
            network: { type: "CreateNetwork", id: 30 },
          },
          nested: {
            Hello: { fields: { version: { type: "string", id: 1 } } },
            RunProcess: {
              fields: {
                bin: { type: "string", id: 1 },
                args: { rule: "repeated", type: "string", id: 2 },
                workDir: { type: "string", id: 3 },
                stdout: { type: "Output", id: 4 },
                stderr: { type: "Output", id: 5 },
              },
            },
            KillProcess: { fields: { pid: { type: "uint64", id: 1 }, signal: { type: "int32", id: 2 } } },
            CreateNetwork: {
              fields: {
                networks: { rule: "repeated", type: "Network", id: 1 },
                hosts: { keyType: "string", type: "string", id: 2 },
                interface: { type: "NetworkInterface", id: 3 },
              },
            },
            Shutdown: { fields: {} },
          },
        },
        Response: {
          oneofs: {
            command: { oneof: ["error", "hello", "run", "kill", "shutdown", "status", "rtStatus", "network"] },
          },
          fields: {
            event: { type: "bool", id: 1 },
            id: { type: "uint64", id: 2 },
            error: { type: "Error", id: 3 },
            hello: { type: "Hello", id: 4 },
            run: { type: "RunProcess", id: 10 },
            kill: { type: "KillProcess", id: 11 },
            shutdown: { type: "Shutdown", id: 12 },
            status: { type: "ProcessStatus", id: 20 },
            rtStatus: { type: "RuntimeStatus", id: 21 },
            network: { type: "CreateNetwork", id: 30 },
          },
          nested: {
            Hello: { fields: { version: { type: "string", id: 1 } } },
            ErrorCode: { values: { INTERNAL: 0, NOT_FOUND: 1, BAD_REQUEST: 2 } },
            Error: {
              fields: {
                code: { type: "ErrorCode", id: 1 },
                message: { type: "string", id: 2 },
                context: { keyType: "string", type: "string", id: 3 },
              },
            },
            RunProcess: { fields: { pid: { type: "uint64", id: 1 } } },
            KillProcess: { fields: {} },
            ProcessStatus: {
              fields: {
                pid: { type: "uint64", id: 1 },
                running: { type: "bool", id: 2 },
                returnCode: { type: "int32", id: 3 },
                stdout: { type: "bytes", id: 4 },
                stderr: { type: "bytes", id: 5 },
              },
            },
            RuntimeStatus: {
              oneofs: { kind: { oneof: ["state", "counter"] } },
              fields: { state: { type: "State", id: 1 }, counter: { type: "Counter", id: 2 } },
              nested: {
                State: { fields: { name: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
                Counter: { fields: { name: { type: "string", id: 1 }, value: { type: "double", id: 2 } } },
              },
            },
            CreateNetwork: {
              oneofs: {
                endpoint: { oneof: ["unixStream", "unixDatagram", "udpDatagram", "tcpListener", "tcpStream"] },
              },
              fields: {
                unixStream: { type: "string", id: 1 },
                unixDatagram: { type: "string", id: 2 },
                udpDatagram: { type: "string", id: 3 },
                tcpListener: { type: "string", id: 4 },
                tcpStream: { type: "string", id: 5 },
              },
            },
            Shutdown: { fields: {} },
          },
        },
        Network: {
          fields: {
            addr: { type: "string", id: 1 },
            gateway: { type: "string", id: 2 },
            mask: { type: "string", id: 3 },
            ifAddr: { type: "string", id: 4 },
          },
        },
        NetworkInterface: { values: { VPN: 0, INET: 1 } },
        Output: { oneofs: { type: { oneof: ["atEnd"] } }, fields: { atEnd: { type: "uint32", id: 2 } } },
      },
    },
  },
};
const root = protobuf.Root.fromJSON(SCHEMA as protobuf.INamespace);
const RequestType = root.lookupType("ya_runtime_api.Request");
const ResponseType = root.lookupType("ya_runtime_api.Response");
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, oneofs: true, defaults: false };
const ENDPOINT_KINDS: readonly NetworkEndpointKind[] = [
  "unixStream",
  "unixDatagram",
  "udpDatagram",
  "tcpListener",
  "tcpStream",
];
const ERROR_CODES: readonly RuntimeErrorCode[] = ["INTERNAL", "NOT_FOUND", "BAD_REQUEST"];

/**
 * Encodes a request as one frame (varint length prefix and protobuf payload).
 *
 * @throws InternalError `RUNTIME_MESSAGE_INVALID` when an id or pid is not a non-negative safe integer,
 *   `RUNTIME_FRAME_TOO_LARGE` when the payload exceeds {@link MAX_REQUEST_FRAME_BYTES}.
 * @example
 * stdin.write(encodeRequest({ id: 3, run: { bin: "/bin/sh", args: ["sh", "-c", "echo hi"], workDir: "" } }));
 */
export function encodeRequest(request: RuntimeRequest): Uint8Array {
  const message: Record<string, unknown> = { id: u64("id", request.id) };
  if ("hello" in request) message.hello = { version: request.hello.version };
  else if ("run" in request) {
    const { bin, args, workDir, stdout, stderr } = request.run;
    message.run = { bin, args, workDir, stdout: outputSpec(stdout), stderr: outputSpec(stderr) };
  } else if ("kill" in request) {
    message.kill = { pid: u64("pid", request.kill.pid), signal: i32("signal", request.kill.signal) };
  } else if ("shutdown" in request) message.shutdown = {};
  else if ("network" in request) message.network = { ...request.network };
  else throw invalid("the request has no command");
  return frame(RequestType, message, MAX_REQUEST_FRAME_BYTES);
}

/**
 * Encodes a reply or an event as one frame (varint length prefix and protobuf payload).
 *
 * @throws InternalError `RUNTIME_MESSAGE_INVALID` for an unsafe id or pid, `RUNTIME_FRAME_TOO_LARGE` when
 *   the payload exceeds {@link MAX_RESPONSE_FRAME_BYTES} (bound process output before sending it).
 * @example
 * stdout.write(encodeResponse({ id: request.id, run: { pid: 1 } }));
 * stdout.write(encodeResponse({ event: true, processStatus: { pid: 1, running: false, returnCode: 0,
 *   stdout: out, stderr: new Uint8Array() } }));
 */
export function encodeResponse(response: RuntimeResponse): Uint8Array {
  const message: Record<string, unknown> = { event: response.event === true, id: u64("id", response.id ?? 0) };
  if ("processStatus" in response) {
    const s = response.processStatus;
    message.status = {
      pid: u64("pid", s.pid),
      running: s.running,
      returnCode: i32("returnCode", s.returnCode),
      stdout: s.stdout,
      stderr: s.stderr,
    };
  } else if ("runtimeStatus" in response) {
    const s = response.runtimeStatus;
    if ("counter" in s) message.rtStatus = { counter: { name: s.counter.name, value: s.counter.value } };
    else message.rtStatus = { state: { name: s.state.name, value: s.state.value } };
  } else if ("hello" in response) message.hello = { version: response.hello.version };
  else if ("run" in response) message.run = { pid: u64("pid", response.run.pid) };
  else if ("kill" in response) message.kill = {};
  else if ("shutdown" in response) message.shutdown = {};
  else if ("error" in response) {
    const { code, message: text, context } = response.error;
    message.error = { code, message: text, context: context ?? {} };
  } else if ("network" in response) message.network = { ...response.network };
  else throw invalid("the response has no command");
  return frame(ResponseType, message, MAX_RESPONSE_FRAME_BYTES);
}

/**
 * Prefixes a payload with its varint length: one frame, whatever the payload holds. Tests use it to send
 * malformed payloads; {@link encodeRequest} and {@link encodeResponse} use it for valid ones.
 *
 * @example
 * stdin.write(lengthPrefixed(new Uint8Array([0xff, 0xff])));
 */
export function lengthPrefixed(payload: Uint8Array): Uint8Array {
  const prefix = varint(payload.length);
  const out = new Uint8Array(prefix.length + payload.length);
  out.set(prefix, 0);
  out.set(payload, prefix.length);
  return out;
}

/** The varint encoding of a non-negative safe integer (at most 8 bytes for 2^53). */
export function varint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(`varint of ${value}`);
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Uint8Array.from(bytes);
}

/** Options of a {@link FrameDecoder}. */
export interface FrameDecoderOptions {
  /** Largest payload accepted, in bytes; default by kind ({@link MAX_REQUEST_FRAME_BYTES} or responses'). */
  maxFrameBytes?: number;
}

/**
 * Incremental decoder of a stream of frames: push chunks as they arrive, get the complete messages. A frame
 * may be split over any number of chunks and a chunk may hold several frames. The length prefix is checked
 * against the bound as soon as its bytes arrive (a payload that is too large is never buffered). After an
 * error the decoder stays failed: every later push throws the same error.
 *
 * @example
 * const decoder = new FrameDecoder("response");
 * child.stdout.on("data", (chunk: Buffer) => {
 *   for (const response of decoder.push(chunk)) onResponse(response);
 * });
 * child.stdout.on("end", () => decoder.end());
 */
export class FrameDecoder<T extends RuntimeRequest | RuntimeResponse = RuntimeRequest | RuntimeResponse> {
  readonly #kind: "request" | "response";
  readonly #max: number;
  #failed: RuntimeProtocolError | undefined;
  // The length prefix in progress.
  #prefixValue = 0;
  #prefixBytes = 0;
  // The payload in progress, once its length is known.
  #need: number | undefined;
  #parts: Uint8Array[] = [];
  #buffered = 0;

  constructor(kind: T extends RuntimeRequest ? "request" : "response", options: FrameDecoderOptions = {}) {
    this.#kind = kind;
    const fallback = kind === "request" ? MAX_REQUEST_FRAME_BYTES : MAX_RESPONSE_FRAME_BYTES;
    this.#max = options.maxFrameBytes ?? fallback;
    if (!Number.isSafeInteger(this.#max) || this.#max < 0) throw invalid(`maxFrameBytes ${this.#max}`);
  }

  /** Bytes held of a frame not yet complete (prefix and payload). */
  get pendingBytes(): number {
    return this.#prefixBytes + this.#buffered;
  }

  /**
   * Feeds a chunk; returns the messages completed by it, in order.
   *
   * @throws RuntimeProtocolError `RUNTIME_FRAME_TOO_LARGE` or `RUNTIME_FRAME_MALFORMED`.
   */
  push(chunk: Uint8Array): T[] {
    if (this.#failed) throw this.#failed;
    try {
      return this.#push(chunk);
    } catch (error) {
      this.#failed =
        error instanceof RuntimeProtocolError
          ? error
          : malformed(`the ${this.#kind} frame could not be decoded`, error);
      this.#reset();
      throw this.#failed;
    }
  }

  /**
   * Declares the end of the stream.
   *
   * @throws RuntimeProtocolError `RUNTIME_FRAME_MALFORMED` when a frame is incomplete (truncated prefix or
   *   payload).
   */
  end(): void {
    if (this.#failed) throw this.#failed;
    if (this.pendingBytes > 0) {
      this.#failed = malformed(`the stream ended inside a ${this.#kind} frame (${this.pendingBytes} bytes held)`);
      this.#reset();
      throw this.#failed;
    }
  }

  #push(chunk: Uint8Array): T[] {
    const out: T[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#need === undefined) {
        const byte = chunk[offset++] as number;
        this.#prefixValue += (byte & 0x7f) * 2 ** (7 * this.#prefixBytes);
        this.#prefixBytes++;
        if (this.#prefixValue > this.#max) {
          throw new RuntimeProtocolError("RUNTIME_FRAME_TOO_LARGE", `The ${this.#kind} frame is too large`, {
            details: `its length prefix says at least ${this.#prefixValue} bytes, the limit is ${this.#max}`,
          });
        }
        if (byte & 0x80) {
          if (this.#prefixBytes >= 10) throw malformed("the length prefix is longer than 10 bytes");
          continue;
        }
        this.#need = this.#prefixValue;
        this.#prefixValue = 0;
        this.#prefixBytes = 0;
        if (this.#need === 0) out.push(this.#complete(new Uint8Array(0)));
        continue;
      }
      const want = this.#need - this.#buffered;
      const available = chunk.length - offset;
      if (this.#buffered === 0 && available >= want) {
        // The whole payload is in this chunk: decode it in place.
        out.push(this.#complete(chunk.subarray(offset, offset + want)));
        offset += want;
        continue;
      }
      const take = Math.min(want, available);
      this.#parts.push(chunk.slice(offset, offset + take));
      this.#buffered += take;
      offset += take;
      if (this.#buffered === this.#need) {
        const payload = new Uint8Array(this.#need);
        let at = 0;
        for (const part of this.#parts) {
          payload.set(part, at);
          at += part.length;
        }
        out.push(this.#complete(payload));
      }
    }
    return out;
  }

  #reset(): void {
    this.#prefixValue = 0;
    this.#prefixBytes = 0;
    this.#need = undefined;
    this.#parts = [];
    this.#buffered = 0;
  }

  #complete(payload: Uint8Array): T {
    this.#reset();
    return (this.#kind === "request" ? decodeRequest(payload) : decodeResponse(payload)) as T;
  }
}

/**
 * Decodes one request payload (without its length prefix).
 *
 * @throws RuntimeProtocolError `RUNTIME_FRAME_MALFORMED`.
 */
export function decodeRequest(payload: Uint8Array): RuntimeRequest {
  const m = toObject(RequestType, payload, "request");
  const id = safe("id", m.id);
  switch (m.command) {
    case "hello":
      return { id, hello: { version: str(m.hello?.version) } };
    case "run": {
      const r = m.run ?? {};
      const run: Extract<RuntimeRequest, { run: unknown }>["run"] = {
        bin: str(r.bin),
        args: Array.isArray(r.args) ? r.args.map((a: unknown) => str(a)) : [],
        workDir: str(r.workDir),
      };
      if (r.stdout) run.stdout = r.stdout.atEnd === undefined ? {} : { atEnd: r.stdout.atEnd };
      if (r.stderr) run.stderr = r.stderr.atEnd === undefined ? {} : { atEnd: r.stderr.atEnd };
      return { id, run };
    }
    case "kill":
      return { id, kill: { pid: safe("pid", m.kill?.pid), signal: m.kill?.signal ?? 0 } };
    case "shutdown":
      return { id, shutdown: {} };
    case "network": {
      const n = m.network ?? {};
      const iface = n.interface ?? "VPN";
      if (iface !== "VPN" && iface !== "INET") throw malformed(`unknown network interface ${String(iface)}`);
      const networks: NetworkSpec[] = (n.networks ?? []).map((x: Record<string, unknown>) => ({
        addr: str(x.addr),
        gateway: str(x.gateway),
        mask: str(x.mask),
        ifAddr: str(x.ifAddr),
      }));
      return { id, network: { networks, hosts: { ...(n.hosts ?? {}) }, interface: iface } };
    }
    default:
      throw malformed("the request has no known command");
  }
}

/**
 * Decodes one response payload (without its length prefix).
 *
 * @throws RuntimeProtocolError `RUNTIME_FRAME_MALFORMED`.
 */
export function decodeResponse(payload: Uint8Array): RuntimeResponse {
  const m = toObject(ResponseType, payload, "response");
  const id = safe("id", m.id);
  if (m.event === true) {
    if (m.command === "status") {
      const s = m.status ?? {};
      return {
        event: true,
        id,
        processStatus: {
          pid: safe("pid", s.pid),
          running: s.running === true,
          returnCode: s.returnCode ?? 0,
          stdout: bytes(s.stdout),
          stderr: bytes(s.stderr),
        },
      };
    }
    if (m.command === "rtStatus") {
      const s = m.rtStatus ?? {};
      if (s.kind === "counter") {
        return {
          event: true,
          id,
          runtimeStatus: { counter: { name: str(s.counter.name), value: s.counter.value ?? 0 } },
        };
      }
      if (s.kind === "state") {
        return { event: true, id, runtimeStatus: { state: { name: str(s.state.name), value: bytes(s.state.value) } } };
      }
      throw malformed("the runtime status event has no known kind");
    }
    throw malformed(`the event has no known kind (${String(m.command ?? "none")})`);
  }
  switch (m.command) {
    case "hello":
      return { id, event: false, hello: { version: str(m.hello?.version) } };
    case "run":
      return { id, event: false, run: { pid: safe("pid", m.run?.pid) } };
    case "kill":
      return { id, event: false, kill: {} };
    case "shutdown":
      return { id, event: false, shutdown: {} };
    case "error": {
      const e = m.error ?? {};
      const code = e.code ?? "INTERNAL";
      if (!ERROR_CODES.includes(code)) throw malformed(`unknown error code ${String(code)}`);
      return { id, event: false, error: { code, message: str(e.message), context: { ...(e.context ?? {}) } } };
    }
    case "network": {
      const n = m.network ?? {};
      const network: Partial<Record<NetworkEndpointKind, string>> = {};
      for (const kind of ENDPOINT_KINDS) if (typeof n[kind] === "string") network[kind] = n[kind];
      return { id, event: false, network };
    }
    default:
      throw malformed(`the reply has no known command (${String(m.command ?? "none")})`);
  }
}

// biome-ignore lint/suspicious/noExplicitAny: protobufjs's toObject output is untyped; checked field by field.
type Loose = Record<string, any>;

function toObject(type: protobuf.Type, payload: Uint8Array, kind: string): Loose {
  let message: protobuf.Message;
  try {
    message = type.decode(payload);
  } catch (error) {
    throw malformed(`the ${kind} is not valid protobuf`, error);
  }
  return type.toObject(message, TO_OBJECT) as Loose;
}

function frame(type: protobuf.Type, message: Record<string, unknown>, max: number): Uint8Array {
  const payload = type.encode(type.fromObject(message)).finish();
  if (payload.length > max) {
    throw new InternalError("RUNTIME_FRAME_TOO_LARGE", "The runtime message is too large to send", {
      details: `${payload.length} bytes, the limit is ${max}`,
    });
  }
  return lengthPrefixed(payload);
}

function outputSpec(spec: OutputSpec | undefined): Loose | undefined {
  if (spec === undefined) return undefined;
  if (spec.atEnd === undefined) return {};
  if (!Number.isInteger(spec.atEnd) || spec.atEnd < 0 || spec.atEnd > 0xffffffff) {
    throw invalid(`output atEnd ${spec.atEnd}`);
  }
  return { atEnd: spec.atEnd };
}

function u64(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(`${name} ${value} is not a non-negative safe integer`);
  return value;
}

function i32(name: string, value: number): number {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31)
    throw invalid(`${name} ${value} is not an int32`);
  return value;
}

/** A decoded uint64 (a decimal string from toObject, or absent for 0) as a safe integer. */
function safe(name: string, value: unknown): number {
  if (value === undefined || value === null) return 0;
  const n = typeof value === "string" ? Number(value) : typeof value === "number" ? value : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw malformed(`${name} ${String(value)} is beyond the safe integers`);
  return n;
}

function str(value: unknown): string {
  return typeof value === "string" ? value : "";
}

function bytes(value: unknown): Uint8Array {
  return value instanceof Uint8Array ? new Uint8Array(value) : new Uint8Array(0);
}

function malformed(details: string, cause?: unknown): RuntimeProtocolError {
  const more = cause instanceof Error ? `: ${cause.message}` : "";
  return new RuntimeProtocolError("RUNTIME_FRAME_MALFORMED", "A runtime API frame is malformed", {
    details: details + more,
    cause,
  });
}

function invalid(details: string): InternalError {
  return new InternalError("RUNTIME_MESSAGE_INVALID", "A runtime API message to send is invalid", { details });
}
