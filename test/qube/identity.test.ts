import { generateKeyPair, privateKeyToProtobuf } from "@libp2p/crypto/keys";
import { peerIdFromString } from "@libp2p/peer-id";
import { expect } from "chai";
import fc from "fast-check";
import { z } from "zod";
import { canonicalBytes } from "../../src/qube/canonical.js";
import { SIGNATURE_KINDS, signingMessage } from "../../src/qube/domains.js";
import { decodeEnvelope, encodeEnvelope, signEnvelope } from "../../src/qube/envelope.js";
import {
  ed25519PublicKeyFromPeerId,
  Identity,
  peerIdFromEd25519PublicKey,
  sealingKeyFromSeed,
  verifySignature,
} from "../../src/qube/identity.js";
import { decodeSignedQubeSpec, signQubeSpec } from "../../src/qube/signed-spec.js";
import { provider, requestor, seed, spec, thrown } from "./fixtures.js";

describe("qube: identities and signatures", () => {
  it("a peer id is the signing key: peer id <-> raw public key", () => {
    expect(peerIdFromEd25519PublicKey(requestor.publicKey)).to.equal(requestor.peerId);
    expect(ed25519PublicKeyFromPeerId(requestor.peerId)).to.deep.equal(requestor.publicKey);
    expect(peerIdFromString(requestor.peerId).type).to.equal("Ed25519");
  });

  it("loads a libp2p private key file and writes one back", async () => {
    const key = await generateKeyPair("Ed25519");
    const id = Identity.fromLibp2pPrivateKey(privateKeyToProtobuf(key));
    expect(id.peerId).to.equal(peerIdFromString(id.peerId).toString());
    expect(id.publicKey).to.deep.equal(new Uint8Array(key.publicKey.raw));
    expect(Identity.fromLibp2pPrivateKey(id.toLibp2pPrivateKey()).peerId).to.equal(id.peerId);
  });

  it("refuses non-Ed25519 keys and garbage key files", async () => {
    const secp = await generateKeyPair("secp256k1");
    expect(thrown(() => Identity.fromLibp2pPrivateKey(privateKeyToProtobuf(secp))).message).to.equal(
      "Airqube identities must be Ed25519 keys: got secp256k1",
    );
    expect(thrown(() => Identity.fromLibp2pPrivateKey(new Uint8Array([1, 2, 3]))).code).to.equal("KEY_INVALID");
    expect(thrown(() => ed25519PublicKeyFromPeerId("not a peer id")).code).to.equal("PEER_ID_INVALID");
  });

  it("never serialises its secret", () => {
    expect(JSON.stringify(requestor)).to.equal(JSON.stringify({ peerId: requestor.peerId }));
  });

  it("domain separation: a signature of one kind never verifies as another", () => {
    const bytes = canonicalBytes({ a: 1 });
    for (const kind of SIGNATURE_KINDS) {
      const sig = requestor.sign(kind, bytes);
      for (const other of SIGNATURE_KINDS) {
        expect(verifySignature(other, bytes, sig, requestor.peerId)).to.equal(kind === other);
      }
    }
    expect(Buffer.from(signingMessage("offer", bytes)).toString()).to.equal('airqube/offer/v1\u0000{"a":1}');
    expect(thrown(() => signingMessage("Bad/Kind", bytes)).code).to.equal("KIND_INVALID");
  });

  it("signed envelopes: replaying a spec signature as another kind fails", () => {
    const env = signQubeSpec(spec, requestor);
    const bytes = encodeEnvelope({ ...env, kind: "commitment" });
    expect(thrown(() => decodeEnvelope(bytes, { kind: "commitment", schema: z.unknown() })).code).to.equal(
      "SIGNATURE_INVALID",
    );
    expect(thrown(() => decodeSignedQubeSpec(bytes)).code).to.equal("KIND_MISMATCH");
    expect(decodeSignedQubeSpec(encodeEnvelope(env)).spec).to.deep.equal(spec);
  });

  it("a spec signed by someone other than its requestor is refused", () => {
    expect(thrown(() => signQubeSpec(spec, provider)).code).to.equal("SIGNER_MISMATCH");
    const forged = signEnvelope("qube-spec", spec, provider);
    expect(thrown(() => decodeSignedQubeSpec(encodeEnvelope(forged))).code).to.equal("SIGNER_MISMATCH");
  });

  it("property: any single-bit flip in a signature is detected", () => {
    const env = signQubeSpec(spec, requestor);
    const sig = Buffer.from(env.signature, "hex");
    fc.assert(
      fc.property(fc.integer({ min: 0, max: sig.length * 8 - 1 }), (bit) => {
        const flipped = Buffer.from(sig);
        flipped[bit >> 3]! ^= 1 << (bit & 7);
        const e = thrown(() => decodeSignedQubeSpec(encodeEnvelope({ ...env, signature: flipped.toString("hex") })));
        expect(e.code).to.equal("SIGNATURE_INVALID");
      }),
      { numRuns: 512 },
    );
  });

  it("sealing keys derive from the same seed and agree both ways", () => {
    const eph = sealingKeyFromSeed(seed(9));
    expect(eph.agree(provider.sealing.publicKey)).to.deep.equal(provider.sealing.agree(eph.publicKey));
    expect(thrown(() => eph.agree(new Uint8Array(32))).code).to.equal("KEY_INVALID"); // low-order point
  });
});
