import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { type AirqubeNode, createNode } from "../../src/net/node.js";
import { Wire } from "../../src/net/wire.js";
import { Identity } from "../../src/qube/index.js";

/**
 * A sender faster than its reader (a provider streaming page bitmaps while the requestor writes them to disk)
 * must be slowed down, not cut off: libp2p's byte stream used to buffer everything yamux delivered and abort
 * the stream past 4 MiB ("Read buffer overflow"), which broke `convert-pdf` of a 60-page document at 100 dpi.
 */
describe("net: a slow reader holds back a fast sender (real libp2p over loopback)", function () {
  this.timeout(60_000);
  const PROTOCOL = "/airqube/test-backpressure/1.0.0";
  const FRAME = 1024 * 1024;
  const FRAMES = 12;
  let sender: AirqubeNode;
  let receiver: AirqubeNode;

  before(async () => {
    receiver = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
    sender = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
  });
  after(async () => {
    await sender?.stop();
    await receiver?.stop();
  });

  it(`holds the sender back while nobody reads, then delivers all ${FRAMES} frames of 1 MiB`, async () => {
    let written = 0;
    let writingDone = false;
    const received = new Promise<number>((resolve, reject) => {
      void receiver.handle(PROTOCOL, async (stream) => {
        const wire = new Wire(stream, { maxFrameBytes: FRAME + 16 });
        let bytes = 0;
        try {
          // read nothing until the sender is done or 2 s have passed: a reader busy writing to a slow disk
          for (let i = 0; i < 40 && !writingDone; i++) await new Promise((r) => setTimeout(r, 50));
          const heldBack = written;
          for (let i = 0; i < FRAMES; i++) {
            const frame = await wire.receiveFrame({ signal: AbortSignal.timeout(20_000) });
            if (frame.kind === "bytes") bytes += frame.data.byteLength;
          }
          // the sender could not run ahead by more than the reader's buffer and window (a few MiB)
          expect(heldBack).to.be.below(FRAMES);
          resolve(bytes);
        } catch (error) {
          reject(error);
        }
      });
    });
    received.catch(() => undefined);
    const stream = await sender.dialProtocol(receiver.getMultiaddrs()[0]!, PROTOCOL);
    const wire = new Wire(stream, { maxFrameBytes: FRAME + 16 });
    const chunk = randomBytes(FRAME - 1);
    const sending = (async () => {
      for (let i = 0; i < FRAMES; i++) {
        await wire.sendBytes(chunk);
        written++;
      }
      writingDone = true;
    })();
    sending.catch(() => undefined);
    expect(await received).to.equal(FRAMES * (FRAME - 1));
    await sending;
    await wire.close();
  });
});
