import { expect } from "chai";
import fc from "fast-check";
import { AirqubeError, PeerError } from "../../src/qube/errors.js";
import { openBytes, openStream, StreamOpener } from "../../src/qube/open.js";
import { sealBytes, sealStream } from "../../src/qube/seal.js";
import { decodeSealHeader, SEAL_HEADER_BYTES, SEAL_TAG_BYTES } from "../../src/qube/seal-format.js";
import { otherProvider, provider, qubeId, seed, sha, thrown } from "./fixtures.js";

const CHUNK = 64;
const params = (ephemeral = 9, chunkSize = CHUNK) => ({
  qubeId,
  recipientPublicKey: provider.sealing.publicKey,
  ephemeralSeed: seed(ephemeral),
  chunkSize,
});
const opener = { qubeId, recipient: provider.sealing };
const bytesArb = fc.uint8Array({ minLength: 0, maxLength: 600 });

/** Splits a sealed stream into header and chunk byte ranges. */
function split(sealed: Uint8Array, chunkSize = CHUNK): { header: Uint8Array; chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = [];
  for (let o = SEAL_HEADER_BYTES; o < sealed.length; o += chunkSize + SEAL_TAG_BYTES) {
    chunks.push(sealed.subarray(o, Math.min(o + chunkSize + SEAL_TAG_BYTES, sealed.length)));
  }
  return { header: sealed.subarray(0, SEAL_HEADER_BYTES), chunks };
}
const join = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const codeOf = (fn: () => unknown) => {
  const e = thrown(fn);
  expect(e).to.be.instanceOf(PeerError);
  return e.code;
};
async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return join(parts);
}

describe("qube: sealing (X25519 + HKDF + ChaCha20-Poly1305 STREAM)", () => {
  it("property: whole-buffer round trip, any chunk size", () => {
    fc.assert(
      fc.property(bytesArb, fc.integer({ min: 64, max: 300 }), (plain, chunkSize) => {
        const sealed = sealBytes(plain, params(9, chunkSize));
        const chunks = Math.max(1, Math.ceil(plain.length / chunkSize));
        expect(sealed.length).to.equal(SEAL_HEADER_BYTES + plain.length + chunks * SEAL_TAG_BYTES);
        expect(openBytes(sealed, opener)).to.deep.equal(plain);
      }),
      { numRuns: 300 },
    );
  });

  it("property: streaming with arbitrary piece boundaries equals whole-buffer", async () => {
    await fc.assert(
      fc.asyncProperty(
        bytesArb,
        fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 10 }),
        async (plain, cuts) => {
          const pieces = (data: Uint8Array) => {
            const out: Uint8Array[] = [];
            for (let o = 0, i = 0; o < data.length; i++) {
              const n = cuts[i % cuts.length]!;
              out.push(data.slice(o, o + n));
              o += n;
            }
            return out;
          };
          const sealed = await collect(sealStream(pieces(plain), params()));
          expect(sealed).to.deep.equal(sealBytes(plain, params()));
          expect(
            await collect(
              openStream(pieces(sealed), { ...opener, expectedSize: plain.length, expectedSha256: sha(plain) }),
            ),
          ).to.deep.equal(plain);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("property: any single-bit flip anywhere in a sealed stream is detected", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), fc.nat(), (plain, at) => {
        const sealed = sealBytes(plain, params());
        const bit = at % (sealed.length * 8);
        const bad = Uint8Array.from(sealed);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        const e = thrown(() => openBytes(bad, opener));
        expect(e).to.be.instanceOf(AirqubeError);
        expect(e.code).to.match(/^SEAL_(AUTH_FAILED|HEADER_INVALID)$|^KEY_INVALID$/);
      }),
      { numRuns: 1000 },
    );
  });

  it("property: dropping final chunks (truncation) is detected", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: CHUNK + 1, maxLength: 600 }), fc.nat(), (plain, n) => {
        const { header, chunks } = split(sealBytes(plain, params()));
        const keep = 1 + (n % (chunks.length - 1));
        expect(codeOf(() => openBytes(join([header, ...chunks.slice(0, keep)]), opener))).to.equal("SEAL_TRUNCATED");
      }),
      { numRuns: 300 },
    );
    const sealed = sealBytes(new Uint8Array(10), params());
    expect(codeOf(() => openBytes(sealed.subarray(0, 20), opener))).to.equal("SEAL_TRUNCATED");
    expect(codeOf(() => openBytes(sealed.subarray(0, SEAL_HEADER_BYTES + 3), opener))).to.equal("SEAL_TRUNCATED");
  });

  it("property: reordering, duplicating or dropping middle chunks is detected", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2 * CHUNK + 1, maxLength: 800 }), fc.nat(), fc.nat(), (plain, a, b) => {
        const { header, chunks } = split(sealBytes(plain, params()));
        const i = a % chunks.length;
        const j = b % chunks.length;
        if (i !== j && chunks[i]!.length === chunks[j]!.length) {
          const swapped = [...chunks];
          [swapped[i], swapped[j]] = [swapped[j]!, swapped[i]!];
          expect(codeOf(() => openBytes(join([header, ...swapped]), opener))).to.match(
            /^SEAL_(AUTH_FAILED|TRAILING_DATA)$/,
          );
        }
        const dup = [...chunks.slice(0, i + 1), chunks[i]!, ...chunks.slice(i + 1)];
        expect(codeOf(() => openBytes(join([header, ...dup]), opener))).to.match(/^SEAL_(AUTH_FAILED|TRAILING_DATA)$/);
        if (chunks.length > 2 && i < chunks.length - 1) {
          const dropped = chunks.filter((_, k) => k !== i);
          expect(codeOf(() => openBytes(join([header, ...dropped]), opener))).to.equal("SEAL_AUTH_FAILED");
        }
      }),
      { numRuns: 300 },
    );
  });

  it("data appended after the final chunk is detected", () => {
    const sealed = sealBytes(new Uint8Array(CHUNK), params());
    const extra = sealBytes(new Uint8Array(CHUNK), params(10));
    expect(codeOf(() => openBytes(join([sealed, split(extra).chunks[0]!]), opener))).to.equal("SEAL_TRAILING_DATA");
  });

  it("property: replay under another qube id or to another recipient fails on the first chunk", () => {
    fc.assert(
      fc.property(bytesArb, fc.uint8Array({ minLength: 32, maxLength: 32 }), (plain, digest) => {
        const sealed = sealBytes(plain, params());
        const otherId = `aq1${Buffer.from(digest).toString("hex")}`;
        if (otherId !== qubeId) {
          const e = thrown(() => openBytes(sealed, { ...opener, qubeId: otherId }));
          expect(e.code).to.equal("SEAL_AUTH_FAILED");
          expect(e.message).to.contain("chunk 0");
        }
        expect(codeOf(() => openBytes(sealed, { qubeId, recipient: otherProvider.sealing }))).to.equal(
          "SEAL_AUTH_FAILED",
        );
      }),
      { numRuns: 200 },
    );
  });

  it("checks expected size and digest, and the plaintext limit", () => {
    const plain = new Uint8Array(200).fill(7);
    const sealed = sealBytes(plain, params());
    expect(codeOf(() => openBytes(sealed, { ...opener, expectedSize: 199 }))).to.equal("SEAL_SIZE_MISMATCH");
    expect(codeOf(() => openBytes(sealed, { ...opener, expectedSize: 201 }))).to.equal("SEAL_SIZE_MISMATCH");
    expect(codeOf(() => openBytes(sealed, { ...opener, expectedSha256: sha("x") }))).to.equal("SEAL_DIGEST_MISMATCH");
    expect(codeOf(() => openBytes(sealed, { ...opener, maxBytes: 100 }))).to.equal("SEAL_TOO_LARGE");
  });

  it("the header: magic, version, chunk size bounds", () => {
    const sealed = sealBytes(new Uint8Array(3), params());
    const h = decodeSealHeader(sealed);
    expect(h.chunkSize).to.equal(CHUNK);
    const bigChunk = sealBytes(new Uint8Array(3), params(9, 4 * 1024 * 1024));
    expect(codeOf(() => openBytes(bigChunk, opener))).to.equal("SEAL_HEADER_INVALID");
    expect(openBytes(bigChunk, { ...opener, maxChunkSize: 4 * 1024 * 1024 })).to.deep.equal(new Uint8Array(3));
    const badMagic = Uint8Array.from(sealed);
    badMagic[0] = 0;
    expect(thrown(() => decodeSealHeader(badMagic)).message).to.equal("Not Airqube sealed data (bad magic)");
  });

  it("streams 32 MiB holding one chunk at a time (every piece it emits is at most one chunk)", async () => {
    const piece = new Uint8Array(1 << 20).fill(1);
    async function* source() {
      for (let i = 0; i < 32; i++) yield piece;
    }
    const o = new StreamOpener({ ...opener, expectedSize: 32 << 20 });
    let total = 0;
    let maxSealed = 0;
    let maxPlain = 0;
    for await (const sealedPiece of sealStream(source(), { ...params(), chunkSize: 64 * 1024 })) {
      maxSealed = Math.max(maxSealed, sealedPiece.length);
      for (const plain of o.update(sealedPiece)) {
        total += plain.length;
        maxPlain = Math.max(maxPlain, plain.length);
      }
    }
    for (const plain of o.final()) total += plain.length;
    expect(total).to.equal(32 << 20);
    expect(maxSealed).to.equal(64 * 1024);
    expect(maxPlain).to.equal(64 * 1024);
  });

  it("honours an abort signal", async () => {
    const ac = new AbortController();
    ac.abort();
    const e = await collect(sealStream([new Uint8Array(1)], params(), { signal: ac.signal })).catch((err) => err);
    expect(e.code).to.equal("ABORTED");
    const e2 = await collect(openStream([sealBytes(new Uint8Array(1), params())], opener, { signal: ac.signal })).catch(
      (err) => err,
    );
    expect(e2.code).to.equal("ABORTED");
  });
});
