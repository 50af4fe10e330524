import { streamPair } from "@libp2p/utils";
import { expect } from "chai";
import { z } from "zod";
import { Wire } from "../../src/net/wire.js";

describe("net: Wire framing", () => {
  const schema = z.strictObject({ type: z.literal("hello"), n: z.int() });

  it("round-trips JSON messages and byte frames", async () => {
    const [a, b] = await streamPair();
    const left = new Wire(a, { maxFrameBytes: 1024 });
    const right = new Wire(b, { maxFrameBytes: 1024 });
    await left.send({ type: "hello", n: 7 });
    await left.sendBytes(new Uint8Array([1, 2, 3]));
    expect(await right.receive(schema)).to.deep.equal({ type: "hello", n: 7 });
    const frame = await right.receiveFrame();
    expect(frame.kind).to.equal("bytes");
    expect(frame.kind === "bytes" && [...frame.data]).to.deep.equal([1, 2, 3]);
  });

  it("rejects a frame over the size limit before parsing it", async () => {
    const [a, b] = await streamPair();
    const sender = new Wire(a, { maxFrameBytes: 1_000_000 });
    const receiver = new Wire(b, { maxFrameBytes: 100 });
    void sender.send({ type: "hello", n: 1, pad: "x".repeat(500) }).catch(() => undefined);
    const error = await receiver.receive(schema).catch((e) => e);
    expect(error.code).to.equal("FRAME_TOO_LARGE");
  });

  it("refuses to send an oversized frame", async () => {
    const [a] = await streamPair();
    const error = await new Wire(a, { maxFrameBytes: 10 }).send({ type: "hello", n: 123456 }).catch((e) => e);
    expect(error.code).to.equal("FRAME_TOO_LARGE");
  });

  it("rejects malformed JSON, unknown tags and invalid messages with typed errors", async () => {
    const [a, b] = await streamPair();
    const sender = new Wire(a, { maxFrameBytes: 1024 });
    const receiver = new Wire(b, { maxFrameBytes: 1024 });
    const raw = (sender as unknown as { lp: { write(b: Uint8Array): Promise<void> } }).lp;
    await raw.write(new Uint8Array([0x4a, 0x7b, 0x7b])); // 'J' + "{{"
    expect((await receiver.receive(schema).catch((e) => e)).code).to.equal("FRAME_INVALID");
    await raw.write(new Uint8Array([0x58, 1])); // unknown tag
    expect((await receiver.receive(schema).catch((e) => e)).code).to.equal("FRAME_INVALID");
    await sender.send({ type: "hello", n: "seven" });
    const invalid = await receiver.receive(schema).catch((e) => e);
    expect(invalid.code).to.equal("MESSAGE_INVALID");
    expect(invalid.details).to.match(/^n:/);
    await sender.sendBytes(new Uint8Array([1]));
    expect((await receiver.receive(schema).catch((e) => e)).code).to.equal("FRAME_UNEXPECTED");
  });

  it("times out a read with a deadline", async () => {
    const [, b] = await streamPair();
    const error = await new Wire(b, { maxFrameBytes: 1024 })
      .receive(schema, { signal: AbortSignal.timeout(50) })
      .catch((e) => e);
    expect(error.code).to.equal("STREAM_TIMEOUT");
  });
});
