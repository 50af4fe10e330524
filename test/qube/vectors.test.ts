import { readFileSync } from "node:fs";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { expect } from "chai";
import { fromHex, toHex } from "../../src/qube/bytes.js";
import { canonicalJson } from "../../src/qube/canonical.js";
import { commitmentHash } from "../../src/qube/commitment.js";
import { Identity, sealingKeyFromSeed, verifySignature } from "../../src/qube/identity.js";
import { buildOutputManifest, outputsRootOf } from "../../src/qube/manifest.js";
import { openBytes } from "../../src/qube/open.js";
import { encodeQubeSpec, qubeIdOf } from "../../src/qube/qube-id.js";
import { sealBytes } from "../../src/qube/seal.js";
import { parseQubeSpec } from "../../src/qube/spec.js";

// biome-ignore lint/suspicious/noExplicitAny: vector files are plain JSON
type Json = any;
const load = (name: string): Json => JSON.parse(readFileSync(new URL(`../vectors/${name}`, import.meta.url), "utf8"));
const utf8 = (s: string) => new TextEncoder().encode(s);

describe("qube: published test vectors", () => {
  it("canonical.json: RFC 8785 canonical text and hash", () => {
    for (const c of load("canonical.json").cases) {
      expect(canonicalJson(JSON.parse(c.input))).to.equal(c.canonical);
      expect(toHex(sha256(utf8(c.canonical)))).to.equal(c.sha256);
    }
  });

  it("spec.json: spec -> canonical bytes -> qube id", () => {
    for (const c of load("spec.json").cases) {
      const spec = parseQubeSpec(c.spec);
      expect(Buffer.from(encodeQubeSpec(spec)).toString("utf8")).to.equal(c.canonical);
      expect(qubeIdOf(spec)).to.equal(c.id);
      expect(`aq1${toHex(sha256(utf8(c.canonical)))}`).to.equal(c.id); // independent SHA-256
    }
  });

  it("identity.json: seed -> public key, peer id, key file, sealing key, signatures", () => {
    for (const v of load("identity.json").identities) {
      const id = Identity.fromSeed(fromHex(v.seed));
      expect(toHex(id.publicKey)).to.equal(v.publicKey);
      expect(id.peerId).to.equal(v.peerId);
      expect(toHex(id.toLibp2pPrivateKey())).to.equal(v.libp2pPrivateKey);
      expect(Identity.fromLibp2pPrivateKey(fromHex(v.libp2pPrivateKey)).peerId).to.equal(v.peerId);
      expect(toHex(id.sealing.publicKey)).to.equal(v.sealingPublicKey);
      // Independent: noble's Ed25519 and HKDF agree.
      expect(toHex(ed25519.getPublicKey(fromHex(v.seed)))).to.equal(v.publicKey);
      const sealingSeed = hkdf(sha256, fromHex(v.seed), new Uint8Array(0), utf8("airqube/sealing-key/v1"), 32);
      expect(toHex(x25519.getPublicKey(sealingSeed))).to.equal(v.sealingPublicKey);
      for (const s of v.signatures) {
        const canonical = utf8(s.canonical);
        expect(toHex(id.sign(s.kind, canonical))).to.equal(s.signature);
        expect(toHex(utf8(`airqube/${s.kind}/v1\u0000${s.canonical}`))).to.equal(s.signedMessage);
        expect(ed25519.verify(fromHex(s.signature), fromHex(s.signedMessage), fromHex(v.publicKey))).to.equal(true);
        expect(verifySignature(s.kind, canonical, fromHex(s.signature), v.peerId)).to.equal(true);
      }
    }
  });

  it("seal.json: sealed streams, checked by the implementation and by an independent one (noble)", () => {
    for (const c of load("seal.json").cases) {
      const params = {
        qubeId: c.qubeId,
        recipientPublicKey: fromHex(c.recipientPublicKey),
        ephemeralSeed: fromHex(c.ephemeralPrivateKey),
        chunkSize: c.chunkSize,
      };
      expect(toHex(sealBytes(fromHex(c.plaintext), params))).to.equal(c.sealed);
      const recipient = sealingKeyFromSeed(fromHex(c.recipientPrivateKey));
      expect(toHex(openBytes(fromHex(c.sealed), { qubeId: c.qubeId, recipient }))).to.equal(c.plaintext);
      expect(toHex(nobleOpen(c))).to.equal(c.plaintext);
    }
  });

  it("results.json: manifests, outputs roots and commitments", () => {
    const specs = load("spec.json").cases.map((c: { spec: unknown }) => parseQubeSpec(c.spec));
    load("results.json").cases.forEach((c: Json, i: number) => {
      const manifest = buildOutputManifest(c.files, specs[i]);
      expect(canonicalJson(manifest)).to.equal(c.manifestCanonical);
      expect(outputsRootOf(manifest)).to.equal(c.outputsRoot);
      expect(`sha256:${toHex(sha256(utf8(c.manifestCanonical)))}`).to.equal(c.outputsRoot);
      const salt = fromHex(c.commitment.salt);
      expect(
        commitmentHash({ qubeId: c.qubeId, outputsRoot: c.outputsRoot, salt, provider: c.commitment.provider }),
      ).to.equal(c.commitment.commitment);
    });
  });
});

/** The sealed-stream format re-implemented from its description with @noble primitives. */
function nobleOpen(c: Json): Uint8Array {
  const sealed = fromHex(c.sealed);
  const header = sealed.subarray(0, 41);
  expect(toHex(header.subarray(0, 5))).to.equal("6171736c01");
  const chunkSize = new DataView(header.buffer, header.byteOffset).getUint32(5);
  const eph = header.subarray(9, 41);
  const shared = x25519.getSharedSecret(fromHex(c.recipientPrivateKey), eph);
  const recipientPub = x25519.getPublicKey(fromHex(c.recipientPrivateKey));
  const info = new Uint8Array([...header, ...fromHex(c.qubeId.slice(3)), ...recipientPub]);
  const okm = hkdf(sha256, shared, utf8("airqube/seal/v1"), info, 39);
  const out: number[] = [];
  let offset = 41;
  for (let i = 0; ; i++) {
    const remaining = sealed.length - offset;
    const last = remaining <= chunkSize + 16;
    const len = last ? remaining : chunkSize + 16;
    const nonce = new Uint8Array(12);
    nonce.set(okm.subarray(32, 39));
    new DataView(nonce.buffer).setUint32(7, i);
    nonce[11] = last ? 1 : 0;
    out.push(...chacha20poly1305(okm.subarray(0, 32), nonce).decrypt(sealed.subarray(offset, offset + len)));
    offset += len;
    if (last) return Uint8Array.from(out);
  }
}
