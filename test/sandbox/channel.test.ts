import { readdir } from "node:fs/promises";
import { PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { expect } from "chai";
import tar from "tar-stream";
import { ChannelParser, channelSink, HELLO } from "../../src/sandbox/channel.js";
import { DockerDemux } from "../../src/sandbox/docker-demux.js";
import { unpackTar } from "../../src/sandbox/unpack.js";
import { tmp } from "../helpers/network.js";

function frame(type: string, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === "string" ? Buffer.from(payload) : payload;
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}
const exited = (code: number) => {
  const p = Buffer.alloc(5);
  p[0] = 0;
  p.writeInt32BE(code, 1);
  return frame("X", p);
};
/** Docker's attach multiplexing: [stream, 0, 0, 0, size u32 BE] + payload. */
function docker(stream: 1 | 2, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

async function tarOf(files: { name: string; body: Buffer }[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const { name, body } of files) pack.entry({ name }, body);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const caps = { logBytes: 1024, maxArchiveBytes: 64 * 1024 * 1024 };
const limits = { maxFileBytes: 16 * 1024 * 1024, maxTotalBytes: 32 * 1024 * 1024, maxFiles: 10 };

describe("sandbox: init channel (host side)", () => {
  it("an 'F' frame becomes the named typed error and no archive is unpacked", async () => {
    const parser = new ChannelParser(caps);
    const dest = tmp("aq-chan-");
    const unpacking = unpackTar(parser.archive, dest, limits);
    const failure = Buffer.concat([Buffer.from([1]), Buffer.from("too many output files: /output/f999")]);
    parser.push(Buffer.concat([frame("H", HELLO), exited(0), frame("F", failure), frame("Z")]));
    const result = parser.end();
    expect(result.complete).to.equal(true);
    expect(result.outputFailure?.code).to.equal("OUTPUT_TOO_MANY_FILES");
    expect(result.outputFailure?.details).to.contain("/output/f999");
    const error = await unpacking.then(
      () => undefined,
      (e: unknown) => e as { code: string },
    );
    expect(error?.code).to.equal("OUTPUT_TOO_MANY_FILES");
    expect(await readdir(dest)).to.deep.equal([]);
  });

  it("rejects an unknown failure code and archive bytes after a failure", () => {
    const bad = new ChannelParser(caps);
    bad.push(Buffer.concat([frame("H", HELLO), exited(0), frame("F", Buffer.from([99]))]));
    expect(bad.error?.code).to.equal("CHANNEL_INVALID");
    const after = new ChannelParser(caps);
    after.push(Buffer.concat([frame("H", HELLO), exited(0), frame("F", Buffer.from([3])), frame("T", "x")]));
    expect(after.error?.message).to.contain("after an output failure");
  });

  it("a stream cut between whole files leaves nothing in the output directory", async () => {
    // Before the fix, an archive cut at an entry boundary looked whole to the unpacker: 191 of 600 files landed.
    const archive = await tarOf(
      Array.from({ length: 6 }, (_, i) => ({ name: `output/f${i}`, body: Buffer.alloc(100_000, i) })),
    );
    const parser = new ChannelParser(caps);
    const dest = tmp("aq-chan-");
    const unpacking = unpackTar(parser.archive, dest, limits);
    parser.push(Buffer.concat([frame("H", HELLO), exited(0)]));
    // only the first three entries, no end frame
    const cut = 3 * (512 + 100_352);
    for (let at = 0; at < cut; at += 65536) parser.push(frame("T", archive.subarray(at, Math.min(cut, at + 65536))));
    const result = parser.end();
    expect(result.complete).to.equal(false);
    await unpacking.then(
      () => expect.fail("a cut archive must not unpack"),
      () => undefined,
    );
    expect(await readdir(dest)).to.deep.equal([]);
  });

  it("DockerDemux keeps stdout, drops stderr and refuses a malformed header", async () => {
    const out: Buffer[] = [];
    const demux = new DockerDemux();
    const input = Buffer.concat([
      docker(1, Buffer.from("hello ")),
      docker(2, Buffer.from("noise")),
      docker(1, Buffer.from("world")),
    ]);
    // byte by byte: headers and payloads split anywhere
    await pipeline(
      Readable.from(
        (function* () {
          for (const byte of input) yield Buffer.from([byte]);
        })(),
      ),
      demux,
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) out.push(chunk);
      },
    );
    expect(Buffer.concat(out).toString()).to.equal("hello world");
    expect(demux.stderrBytes).to.equal(5);
    const broken = new DockerDemux();
    const failed = pipeline(Readable.from([Buffer.from([7, 0, 0, 0, 0, 0, 0, 1, 65])]), broken, new PassThrough());
    await failed.then(
      () => expect.fail("malformed header accepted"),
      (e: { code: string }) => expect(e.code).to.equal("CHANNEL_INVALID"),
    );
  });

  it("backpressure from a slow unpacker reaches the source: buffered bytes stay bounded", async () => {
    // 48 MiB of archive through demux and sink while the consumer is slow: the source must be held back, so the
    // bytes in flight (produced minus consumed) stay near the streams' high-water marks, not the whole archive.
    const total = 48 * 1024 * 1024;
    const parser = new ChannelParser(caps);
    let produced = 0;
    let consumed = 0;
    let maxInFlight = 0;
    const chunk = Buffer.alloc(65536, 7);
    const source = Readable.from(
      (function* () {
        yield docker(1, Buffer.concat([frame("H", HELLO), exited(0)]));
        for (let sent = 0; sent < total; sent += chunk.length) {
          produced += chunk.length;
          yield docker(1, frame("T", chunk));
        }
        yield docker(1, frame("Z"));
      })(),
      { objectMode: false, highWaterMark: 65536 },
    );
    const consuming = (async () => {
      for await (const part of parser.archive) {
        consumed += (part as Buffer).length;
        maxInFlight = Math.max(maxInFlight, produced - consumed);
        await new Promise((r) => setImmediate(r));
      }
    })();
    let ended = false;
    await pipeline(
      source,
      new DockerDemux(),
      channelSink(parser, () => {
        ended = true;
      }),
    );
    parser.end();
    await consuming;
    expect(ended).to.equal(true);
    expect(consumed).to.equal(total);
    expect(maxInFlight).to.be.below(8 * 1024 * 1024);
  });
});
