/**
 * Generates the published test vectors in this folder. Run once (`npx tsx test/vectors/generate.ts`) and
 * commit the JSON; `test/qube/vectors.test.ts` checks the implementation against the committed files, so
 * a change in any encoding shows up as a failing test rather than as silently regenerated vectors.
 */

import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { toHex } from "../../src/qube/bytes.js";
import { canonicalJson } from "../../src/qube/canonical.js";
import { commitmentHash } from "../../src/qube/commitment.js";
import { signingMessage } from "../../src/qube/domains.js";
import { Identity, sealingKeyFromSeed } from "../../src/qube/identity.js";
import { buildOutputManifest, outputsRootOf } from "../../src/qube/manifest.js";
import { encodeQubeSpec, qubeIdOf } from "../../src/qube/qube-id.js";
import { sealBytes } from "../../src/qube/seal.js";
import { createQubeSpec } from "../../src/qube/spec.js";

const here = dirname(fileURLToPath(import.meta.url));
const write = (name: string, value: unknown) => writeFileSync(join(here, name), `${JSON.stringify(value, null, 2)}\n`);
const seed = (byte: number) => new Uint8Array(32).fill(byte);
const counting = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 255);
const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

// 1. Canonical JSON (RFC 8785) cases.
const canonicalInputs = [
  '{ "b": 2, "a": 1 }',
  '{"numbers":[1E21, 1e-7, 0.000001, -0, 100, 1.5, 333333333.33333329, 9007199254740991]}',
  '{"\\u20ac":"euro","\\r":"cr","1":"one","\\ud83d\\ude00":"emoji","\\u00e9":"e-acute","a":"\\u000f\\"\\\\/"}',
  '[true, false, null, {"x":{}}, []]',
];
write("canonical.json", {
  description: "RFC 8785 JCS: parse `input` as JSON, canonicalise; `canonical` is the UTF-8 text, `sha256` its hash.",
  cases: canonicalInputs.map((input) => {
    const canonical = canonicalJson(JSON.parse(input));
    return { input, canonical, sha256: sha(canonical) };
  }),
});

// 2. Identities and domain-separated signatures.
const identities = [1, 2, 42].map((b) => {
  const id = Identity.fromSeed(seed(b));
  const messages = [
    { kind: "qube-spec", canonical: '{"a":1}' },
    { kind: "commitment", canonical: '{"a":1}' },
    { kind: "result-statement", canonical: "{}" },
  ];
  return {
    seed: toHex(seed(b)),
    publicKey: toHex(id.publicKey),
    peerId: id.peerId,
    libp2pPrivateKey: toHex(id.toLibp2pPrivateKey()),
    sealingPublicKey: toHex(id.sealing.publicKey),
    signatures: messages.map(({ kind, canonical }) => {
      const bytes = Buffer.from(canonical, "utf8");
      return {
        kind,
        canonical,
        signedMessage: toHex(signingMessage(kind, bytes)),
        signature: toHex(id.sign(kind, bytes)),
      };
    }),
  };
});
write("identity.json", {
  description:
    "Ed25519 seed -> public key, libp2p peer id, libp2p protobuf private key, X25519 sealing public key " +
    "(HKDF-SHA256(seed, salt empty, info 'airqube/sealing-key/v1')), and signatures over " +
    "utf8('airqube/<kind>/v1') || 0x00 || canonical.",
  identities,
});

// 3. Specs -> canonical bytes -> qube id.
const requestor = Identity.fromSeed(seed(1));
const specs = [
  createQubeSpec({
    image: { ref: "airqube/busybox:1", digest: `sha256:${sha("image")}` },
    command: ["sh", "-c", "wc -l < /in/data.csv > /out/count"],
    inputs: [{ path: "data.csv", size: 12, sha256: sha("a,b\n1,2\n3,4\n") }],
    outputs: ["count"],
    expiresAt: "2026-12-01T00:00:00.000Z",
    requestor: requestor.peerId,
  }),
  createQubeSpec({
    image: { ref: "airqube/tool:2", digest: `sha256:${sha("image2")}`, archiveDigest: `sha256:${sha("archive2")}` },
    command: ["/bin/tool", "--seed", "7", "--in", "/in", "--out", "/out"],
    env: { LANG: "C.UTF-8", TZ: "UTC", SOURCE_DATE_EPOCH: "0" },
    inputs: [
      { path: "z/last.bin", size: 0, sha256: sha("") },
      { path: "données/é.txt", size: 5, sha256: sha("hello") },
    ],
    outputs: ["logs", "result"],
    limits: { memoryBytes: 1024 * 1024 * 1024, wallTimeMs: 3_600_000, milliCpus: 2000 },
    tier: "microvm",
    normalise: { include: ["result"], stripModes: false, comparator: "bitwise" },
    redundancy: { mode: "adaptive", quorum: 2, maxReplicas: 5, trustAfter: 10, spotCheckPermille: 100 },
    deterministic: true,
    expiresAt: "2026-12-31T23:59:59.999Z",
    requestor: requestor.peerId,
  }),
];
write("spec.json", {
  description: "Qube spec v1 -> RFC 8785 canonical text -> qube id = 'aq1' + hex(SHA-256(canonical UTF-8 bytes)).",
  cases: specs.map((spec) => ({
    spec,
    canonical: Buffer.from(encodeQubeSpec(spec)).toString("utf8"),
    id: qubeIdOf(spec),
  })),
});

// 4. Sealed streams with fixed keys.
const qubeId = qubeIdOf(specs[0]!);
const recipientSeed = seed(7);
const recipient = sealingKeyFromSeed(recipientSeed);
const sealCases = [
  { plaintext: new Uint8Array(0), chunkSize: 64 },
  { plaintext: counting(10), chunkSize: 64 },
  { plaintext: counting(128), chunkSize: 64 },
  { plaintext: counting(150), chunkSize: 64 },
  { plaintext: counting(1000), chunkSize: 256 },
];
write("seal.json", {
  description:
    "Sealed streams (format in src/qube/seal-format.ts): X25519 recipient private key `recipientPrivateKey`, " +
    "ephemeral private key `ephemeralPrivateKey`, HKDF-SHA256, ChaCha20-Poly1305 STREAM. `sealed` is the whole stream.",
  cases: sealCases.map(({ plaintext, chunkSize }, i) => {
    const ephemeralSeed = seed(100 + i);
    return {
      qubeId,
      recipientPrivateKey: toHex(recipientSeed),
      recipientPublicKey: toHex(recipient.publicKey),
      ephemeralPrivateKey: toHex(ephemeralSeed),
      ephemeralPublicKey: toHex(sealingKeyFromSeed(ephemeralSeed).publicKey),
      chunkSize,
      plaintext: toHex(plaintext),
      sealed: toHex(
        sealBytes(plaintext, { qubeId, recipientPublicKey: recipient.publicKey, ephemeralSeed, chunkSize }),
      ),
    };
  }),
});

// 5. Output manifests and commitments.
const provider = Identity.fromSeed(seed(2));
const collected = [
  { path: "result/b.txt", size: 3, sha256: sha("bbb"), mode: 0o644, mtimeMs: 1_700_000_000_000, uid: 1000, gid: 1000 },
  { path: "result/a.txt", size: 2, sha256: sha("aa"), mode: 0o600, mtimeMs: 1_700_000_000_001, uid: 1000, gid: 1000 },
  { path: "logs/run.log", size: 9, sha256: sha("log lines"), mode: 0o644, mtimeMs: 1_700_000_000_002, uid: 0, gid: 0 },
];
const manifests = [specs[0]!, specs[1]!].map((spec, i) => {
  const files =
    i === 0
      ? [{ path: "count", size: 2, sha256: sha("3\n"), mode: 0o644, mtimeMs: 1, uid: 65534, gid: 65534 }]
      : collected;
  const manifest = buildOutputManifest(files, spec);
  const outputsRoot = outputsRootOf(manifest);
  const salt = seed(200 + i);
  return {
    qubeId: qubeIdOf(spec),
    normalise: spec.normalise,
    files,
    manifestCanonical: canonicalJson(manifest),
    outputsRoot,
    commitment: {
      provider: provider.peerId,
      salt: toHex(salt),
      commitment: commitmentHash({ qubeId: qubeIdOf(spec), outputsRoot, salt, provider: provider.peerId }),
    },
  };
});
write("results.json", {
  description:
    "Collected output files + the spec's `normalise` rules -> canonical manifest -> outputs root " +
    "'sha256:' + hex(SHA-256(manifest)); commitment = 'sha256:' + hex(SHA-256(utf8('airqube/commitment/v1') || 0x00 " +
    "|| qube id digest || outputs root digest || salt || provider Ed25519 public key)).",
  cases: manifests,
});
console.log("vectors written to", here);
