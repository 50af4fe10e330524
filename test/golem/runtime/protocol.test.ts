/**
 * The ya-runtime-api codec: round trips of every message, the wire bytes pinned against yagna's
 * runtime.proto field numbers (written by hand here, independent of the codec), frames split and coalesced
 * at every byte, and every bad input refused with a typed error (too-large prefix refused before its payload
 * is buffered, malformed protobuf, unknown commands, ids beyond the safe integers, truncated prefixes).
 */
import { expect } from "chai";
import protobuf from "protobufjs";
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  FrameDecoder,
  lengthPrefixed,
  MAX_REQUEST_FRAME_BYTES,
  MAX_RESPONSE_FRAME_BYTES,
  RuntimeProtocolError,
  type RuntimeRequest,
  type RuntimeResponse,
  varint,
} from "../../../src/golem/runtime/protocol.js";
import { InternalError, PeerError } from "../../../src/qube/errors.js";

const bytes = (...b: number[]) => Uint8Array.from(b);
const ascii = (s: string) => [...new TextEncoder().encode(s)];
const concat = (parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

const REQUESTS: RuntimeRequest[] = [
  { id: 2, hello: { version: "0.1.0" } },
  { id: 3, run: { bin: "/bin/sh", args: ["sh", "-c", "echo hi"], workDir: "" } },
  {
    id: 4,
    run: { bin: "/bin/echo", args: [], workDir: "/input", stdout: { atEnd: 4096 }, stderr: {} },
  },
  { id: 5, kill: { pid: 1, signal: 9 } },
  { id: 6, kill: { pid: Number.MAX_SAFE_INTEGER, signal: -1 } },
  { id: 7, shutdown: {} },
  {
    id: 8,
    network: {
      networks: [{ addr: "10.0.0.0", gateway: "10.0.0.1", mask: "255.255.255.0", ifAddr: "10.0.0.2" }],
      hosts: { "10.0.0.3": "peer" },
      interface: "INET",
    },
  },
  { id: Number.MAX_SAFE_INTEGER, hello: { version: "" } },
];

const RESPONSES: RuntimeResponse[] = [
  { id: 2, event: false, hello: { version: "0.1.0" } },
  { id: 3, event: false, run: { pid: 1 } },
  { id: 4, event: false, kill: {} },
  { id: 5, event: false, shutdown: {} },
  { id: 6, event: false, error: { code: "BAD_REQUEST", message: "path outside volumes", context: { bin: "/x" } } },
  { id: 7, event: false, error: { code: "NOT_FOUND", message: "no such pid", context: {} } },
  { id: 8, event: false, network: { unixStream: "/tmp/vpn.sock" } },
  {
    event: true,
    id: 0,
    processStatus: { pid: 1, running: true, returnCode: 0, stdout: bytes(104, 105), stderr: bytes() },
  },
  {
    event: true,
    id: 0,
    processStatus: { pid: 2, running: false, returnCode: -9, stdout: bytes(), stderr: bytes(0, 255, 10) },
  },
  { event: true, id: 0, runtimeStatus: { counter: { name: "golem.usage.cpu_sec", value: 1.25 } } },
  { event: true, id: 0, runtimeStatus: { state: { name: "vpn", value: bytes(123, 125) } } },
];

function expectProtocolError(fn: () => unknown, code: "RUNTIME_FRAME_TOO_LARGE" | "RUNTIME_FRAME_MALFORMED") {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(RuntimeProtocolError);
    expect(error).to.be.instanceOf(PeerError);
    expect((error as RuntimeProtocolError).code).to.equal(code);
    return error as RuntimeProtocolError;
  }
  expect.fail(`expected ${code}`);
}

/** A Request or Response payload built with protobufjs's low-level writer, independent of the codec. */
function raw(write: (w: protobuf.Writer) => void): Uint8Array {
  const w = protobuf.Writer.create();
  write(w);
  return w.finish();
}

describe("golem runtime protocol (ya-runtime-api codec)", () => {
  it("round-trips every request and every response through one frame", () => {
    for (const request of REQUESTS) {
      const decoded = new FrameDecoder<RuntimeRequest>("request").push(encodeRequest(request));
      expect(decoded).to.deep.equal([request]);
    }
    for (const response of RESPONSES) {
      const decoded = new FrameDecoder<RuntimeResponse>("response").push(encodeResponse(response));
      expect(decoded).to.deep.equal([response]);
    }
  });

  it("writes every response frame with at least 4 bytes (exe-unit decodes nothing shorter until more comes)", () => {
    for (const response of RESPONSES) expect(encodeResponse(response).length).to.be.at.least(4);
    // the smallest reply: event and id are written even when false and 0
    expect([...encodeResponse({ id: 0, event: false, shutdown: {} })]).to.deep.equal([6, 0x08, 0, 0x10, 0, 0x62, 0]);
  });

  it("writes the field numbers of yagna's runtime.proto (bytes pinned by hand)", () => {
    // Request { id = 1; hello = 2 { version = 1 } }
    expect([...encodeRequest({ id: 2, hello: { version: "0.1.0" } })]).to.deep.equal([
      11,
      0x08,
      2,
      0x12,
      7,
      0x0a,
      5,
      ...ascii("0.1.0"),
    ]);
    // Request.run = 10 { bin = 1; args = 2; work_dir = 3; stdout = 4 (Output { at_end = 2 }) }
    const run = decodeRequest(
      bytes(
        0x08,
        3,
        0x52,
        14,
        0x0a,
        2,
        ...ascii("/x"),
        0x12,
        1,
        ...ascii("x"),
        0x1a,
        1,
        ...ascii("/"),
        0x22,
        2,
        0x10,
        7,
      ),
    );
    expect(run).to.deep.equal({ id: 3, run: { bin: "/x", args: ["x"], workDir: "/", stdout: { atEnd: 7 } } });
    // Request.kill = 11 { pid = 1; signal = 2 }, Request.shutdown = 12
    expect(decodeRequest(bytes(0x08, 4, 0x5a, 4, 0x08, 5, 0x10, 15))).to.deep.equal({
      id: 4,
      kill: { pid: 5, signal: 15 },
    });
    expect(decodeRequest(bytes(0x08, 5, 0x62, 0))).to.deep.equal({ id: 5, shutdown: {} });
    // Response { event = 1; id = 2; run = 10 { pid = 1 } }
    expect(decodeResponse(bytes(0x10, 3, 0x52, 2, 0x08, 9))).to.deep.equal({ id: 3, event: false, run: { pid: 9 } });
    // Response.status = 20 { pid = 1; running = 2; return_code = 3; stdout = 4; stderr = 5 }
    expect(decodeResponse(bytes(0x08, 1, 0xa2, 0x01, 10, 0x08, 9, 0x18, 3, 0x22, 2, 104, 105, 0x2a, 0))).to.deep.equal({
      event: true,
      id: 0,
      processStatus: { pid: 9, running: false, returnCode: 3, stdout: bytes(104, 105), stderr: bytes() },
    });
    // Response.rt_status = 21 { counter = 2 { name = 1; value = 2 (double) } }
    const counter = raw((w) =>
      w
        .uint32(0x08)
        .bool(true)
        .uint32((21 << 3) | 2)
        .fork()
        .uint32(0x12)
        .fork()
        .uint32(0x0a)
        .string("golem.usage.duration_sec")
        .uint32(0x11)
        .double(2.5)
        .ldelim()
        .ldelim(),
    );
    expect(decodeResponse(counter)).to.deep.equal({
      event: true,
      id: 0,
      runtimeStatus: { counter: { name: "golem.usage.duration_sec", value: 2.5 } },
    });
    // Response.error = 3 { code = 1 (BAD_REQUEST = 2); message = 2 }
    expect(decodeResponse(bytes(0x10, 6, 0x1a, 5, 0x08, 2, 0x12, 1, ...ascii("!")))).to.deep.equal({
      id: 6,
      event: false,
      error: { code: "BAD_REQUEST", message: "!", context: {} },
    });
  });

  it("decodes frames split at every byte and coalesced into one chunk", () => {
    const frames = REQUESTS.map(encodeRequest);
    const stream = concat(frames);
    // One byte at a time.
    const decoder = new FrameDecoder<RuntimeRequest>("request");
    const byByte: RuntimeRequest[] = [];
    for (const b of stream) byByte.push(...decoder.push(bytes(b)));
    expect(byByte).to.deep.equal(REQUESTS);
    expect(decoder.pendingBytes).to.equal(0);
    decoder.end();
    // All in one chunk.
    expect(new FrameDecoder<RuntimeRequest>("request").push(stream)).to.deep.equal(REQUESTS);
    // Every two-way split of the stream.
    for (let cut = 0; cut <= stream.length; cut++) {
      const d = new FrameDecoder<RuntimeRequest>("request");
      const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(got, `cut at ${cut}`).to.deep.equal(REQUESTS);
    }
    // Responses, byte by byte.
    const responses = concat(RESPONSES.map(encodeResponse));
    const rd = new FrameDecoder<RuntimeResponse>("response");
    const got: RuntimeResponse[] = [];
    for (const b of responses) got.push(...rd.push(bytes(b)));
    expect(got).to.deep.equal(RESPONSES);
  });

  it("does not alias the caller's chunk buffers across pushes", () => {
    const frame = encodeResponse(RESPONSES[7] as RuntimeResponse);
    const chunk = Uint8Array.from(frame.subarray(0, 6));
    const d = new FrameDecoder<RuntimeResponse>("response");
    expect(d.push(chunk)).to.deep.equal([]);
    chunk.fill(0); // a reader that reuses its buffer
    expect(d.push(frame.subarray(6))).to.deep.equal([RESPONSES[7]]);
  });

  it("refuses an oversized length prefix before buffering its payload", () => {
    const d = new FrameDecoder<RuntimeRequest>("request");
    const prefix = varint(MAX_REQUEST_FRAME_BYTES + 1);
    const error = expectProtocolError(() => d.push(prefix), "RUNTIME_FRAME_TOO_LARGE");
    expect(error.details).to.match(/limit is 1048576/);
    expect(d.pendingBytes).to.equal(0);
    // The decoder stays failed.
    expectProtocolError(() => d.push(encodeRequest({ id: 1, shutdown: {} })), "RUNTIME_FRAME_TOO_LARGE");
    // A huge 10-byte prefix is refused on its first bytes (nothing after them is read).
    const huge = new FrameDecoder<RuntimeResponse>("response");
    expectProtocolError(() => huge.push(bytes(0xff, 0xff, 0xff, 0xff)), "RUNTIME_FRAME_TOO_LARGE");
    // The exact limit is accepted (prefix only: the payload is not there yet).
    const atLimit = new FrameDecoder<RuntimeResponse>("response");
    expect(atLimit.push(varint(MAX_RESPONSE_FRAME_BYTES))).to.deep.equal([]);
    // A custom bound.
    const small = new FrameDecoder<RuntimeRequest>("request", { maxFrameBytes: 8 });
    expectProtocolError(() => small.push(encodeRequest(REQUESTS[1] as RuntimeRequest)), "RUNTIME_FRAME_TOO_LARGE");
  });

  it("refuses to encode a frame beyond the bound (an internal error: bound the output first)", () => {
    const big = new Uint8Array(MAX_RESPONSE_FRAME_BYTES);
    expect(() =>
      encodeResponse({
        event: true,
        processStatus: { pid: 1, running: false, returnCode: 0, stdout: big, stderr: big },
      }),
    )
      .to.throw(InternalError)
      .with.property("code", "RUNTIME_FRAME_TOO_LARGE");
    expect(() => encodeRequest({ id: 1, run: { bin: "x".repeat(MAX_REQUEST_FRAME_BYTES), args: [], workDir: "" } }))
      .to.throw(InternalError)
      .with.property("code", "RUNTIME_FRAME_TOO_LARGE");
  });

  it("refuses malformed protobuf payloads", () => {
    // Hello (field 2) claims 5 bytes, has 1.
    expectProtocolError(
      () => new FrameDecoder<RuntimeRequest>("request").push(lengthPrefixed(bytes(0x12, 5, 0x61))),
      "RUNTIME_FRAME_MALFORMED",
    );
    // Wire type 7 does not exist.
    expectProtocolError(
      () => new FrameDecoder<RuntimeRequest>("request").push(lengthPrefixed(bytes(0x0f))),
      "RUNTIME_FRAME_MALFORMED",
    );
    // A response that is garbage.
    expectProtocolError(
      () => new FrameDecoder<RuntimeResponse>("response").push(lengthPrefixed(bytes(0xff, 0xff, 0xff, 0xff))),
      "RUNTIME_FRAME_MALFORMED",
    );
    // An empty payload has no command.
    expectProtocolError(() => new FrameDecoder<RuntimeRequest>("request").push(bytes(0)), "RUNTIME_FRAME_MALFORMED");
    // A frame error names the kind and keeps the cause.
    const error = expectProtocolError(() => decodeRequest(bytes(0x12, 5, 0x61)), "RUNTIME_FRAME_MALFORMED");
    expect(error.details).to.match(/request is not valid protobuf/);
    expect(error.cause).to.be.instanceOf(Error);
  });

  it("refuses an unknown oneof command, event kind or enum value", () => {
    // Request field 13 (no such command): skipped by protobuf, so no command.
    expectProtocolError(() => decodeRequest(bytes(0x08, 1, 0x6a, 0)), "RUNTIME_FRAME_MALFORMED");
    // Response field 22 (no such event).
    expectProtocolError(() => decodeResponse(bytes(0x08, 1, 0xb2, 0x01, 0)), "RUNTIME_FRAME_MALFORMED");
    // An event that carries a reply command.
    expectProtocolError(() => decodeResponse(bytes(0x08, 1, 0x22, 0)), "RUNTIME_FRAME_MALFORMED");
    // A reply that carries an event.
    expect(() => decodeResponse(bytes(0x10, 1, 0xa2, 0x01, 0))).to.throw(RuntimeProtocolError, /no known command/);
    // A runtime status without kind.
    expectProtocolError(() => decodeResponse(bytes(0x08, 1, 0xaa, 0x01, 0)), "RUNTIME_FRAME_MALFORMED");
    // Error code 7 is not in the enum.
    expectProtocolError(() => decodeResponse(bytes(0x10, 1, 0x1a, 2, 0x08, 7)), "RUNTIME_FRAME_MALFORMED");
  });

  it("refuses ids and pids beyond the safe integers, in both directions", () => {
    const unsafe = "9007199254740993"; // 2^53 + 1
    const request = raw((w) => w.uint32(0x08).uint64(unsafe).uint32(0x62).uint32(0));
    expect(() => decodeRequest(request)).to.throw(RuntimeProtocolError, /id 9007199254740993/);
    const kill = raw((w) =>
      w.uint32(0x08).uint64(1).uint32(0x5a).fork().uint32(0x08).uint64("18446744073709551615").ldelim(),
    );
    expect(() => decodeRequest(kill)).to.throw(RuntimeProtocolError, /pid 18446744073709551615/);
    const runReply = raw((w) => w.uint32(0x10).uint64(2).uint32(0x52).fork().uint32(0x08).uint64(unsafe).ldelim());
    expectProtocolError(() => decodeResponse(runReply), "RUNTIME_FRAME_MALFORMED");
    // The largest safe id decodes.
    const max = raw((w) => w.uint32(0x08).uint64(String(Number.MAX_SAFE_INTEGER)).uint32(0x62).uint32(0));
    expect(decodeRequest(max)).to.deep.equal({ id: Number.MAX_SAFE_INTEGER, shutdown: {} });
    // Encoding refuses them as our own bug.
    for (const id of [2 ** 53, -1, 1.5, Number.NaN]) {
      expect(() => encodeRequest({ id, shutdown: {} }))
        .to.throw(InternalError)
        .with.property("code", "RUNTIME_MESSAGE_INVALID");
    }
    expect(() => encodeResponse({ id: 1, run: { pid: 2 ** 60 } })).to.throw(InternalError);
  });

  it("reports a truncated prefix or payload at the end of the stream", () => {
    const prefix = new FrameDecoder<RuntimeRequest>("request");
    expect(prefix.push(bytes(0x80))).to.deep.equal([]);
    expect(prefix.pendingBytes).to.equal(1);
    expect(() => prefix.end()).to.throw(RuntimeProtocolError, /stream ended inside a request frame/);
    const payload = new FrameDecoder<RuntimeResponse>("response");
    const frame = encodeResponse(RESPONSES[0] as RuntimeResponse);
    expect(payload.push(frame.subarray(0, frame.length - 1))).to.deep.equal([]);
    expectProtocolError(() => payload.end(), "RUNTIME_FRAME_MALFORMED");
    // A prefix longer than 10 bytes is malformed even when its value is small.
    const long = new FrameDecoder<RuntimeRequest>("request");
    expectProtocolError(() => long.push(new Uint8Array(10).fill(0x80)), "RUNTIME_FRAME_MALFORMED");
  });
});
