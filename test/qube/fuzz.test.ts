/**
 * Fuzzes every decoder of the qube format with random and mutated inputs: each call must return a value
 * or throw an AirqubeError, never anything else, never hang. Runs per decoder: AIRQUBE_FUZZ_RUNS
 * (default 100 000), within a time budget per decoder of AIRQUBE_FUZZ_BUDGET_MS (default 2 500 ms, so the
 * default test run stays under ~30 s; 0 = no budget: `npm run fuzz:qube` runs all 100 000 per decoder).
 * Seed: AIRQUBE_FUZZ_SEED (default fixed, so failures reproduce).
 */
import { expect } from "chai";
import { canonicalBytes, parseJsonBytes } from "../../src/qube/canonical.js";
import {
  createCommitment,
  decodeCommitment,
  decodeReveal,
  signCommitment,
  signReveal,
} from "../../src/qube/commitment.js";
import { encodeEnvelope, signEnvelope } from "../../src/qube/envelope.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { ed25519PublicKeyFromPeerId, Identity } from "../../src/qube/identity.js";
import { buildOutputManifest, decodeOutputManifest, encodeOutputManifest } from "../../src/qube/manifest.js";
import { openBytes } from "../../src/qube/open.js";
import { decodeQubeSpec, encodeQubeSpec } from "../../src/qube/qube-id.js";
import { sealBytes } from "../../src/qube/seal.js";
import { decodeSealHeader } from "../../src/qube/seal-format.js";
import { decodeSignedQubeSpec, signQubeSpec } from "../../src/qube/signed-spec.js";
import { decodeResultStatement, signResultStatement } from "../../src/qube/statement.js";
import { provider, qubeId, requestor, seed, sha, spec } from "./fixtures.js";

const RUNS = Number(process.env.AIRQUBE_FUZZ_RUNS ?? 100_000);
const SEED = Number(process.env.AIRQUBE_FUZZ_SEED ?? 0x5eed);
const BUDGET_MS = Number(process.env.AIRQUBE_FUZZ_BUDGET_MS ?? 2500);
const HANG_MS = 1000;

/** mulberry32: small deterministic PRNG. */
function prng(seedValue: number) {
  let a = seedValue >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]! };
}
type Rng = ReturnType<typeof prng>;

const enc = new TextEncoder();
const dec = new TextDecoder();
const INTERESTING = [
  0, 0xff, 0x7f, 0x80, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x3a, 0x2c, 0x30, 0x39, 0x2d, 0x65, 0x2e, 0xc3, 0xed,
];
const WEIRD_VALUES: unknown[] = [
  null,
  true,
  -1,
  0,
  1.5,
  2 ** 53,
  -(2 ** 63),
  1e308,
  "",
  "x".repeat(5000),
  "\u0000",
  "../../etc",
  "sha256:",
  [],
  {},
  [[[[[[]]]]]],
  { __proto__: 1 },
  { toString: "x" },
  "\ud800",
  "12D3KooW",
  `aq1${"0".repeat(64)}`,
  "2026-13-45T99:99:99.000Z",
];

function randomBytes(r: Rng, max = 512): Uint8Array {
  const out = new Uint8Array(r.int(max));
  for (let i = 0; i < out.length; i++) out[i] = r.int(256);
  return out;
}

function randomJsonText(r: Rng, depth = 0): string {
  const k = r.int(depth > 4 ? 4 : 7);
  switch (k) {
    case 0:
      return r.pick(["null", "true", "false", "0", "-0", "1e999", "-1", "3.5", "9007199254740993"]);
    case 1:
      return JSON.stringify(r.pick(["", "a", "version", "sha256:00", "\u2028", "payload", "kind"]));
    case 2:
      return String(r.int(2 ** 31));
    case 3:
      return JSON.stringify(r.pick(WEIRD_VALUES));
    case 4:
      return `[${Array.from({ length: r.int(4) }, () => randomJsonText(r, depth + 1)).join(",")}]`;
    default: {
      const keys = [
        "version",
        "kind",
        "payload",
        "signer",
        "signature",
        "files",
        "path",
        "image",
        "limits",
        "qubeId",
        "x",
      ];
      return `{${Array.from({ length: r.int(5) }, () => `${JSON.stringify(r.pick(keys))}:${randomJsonText(r, depth + 1)}`).join(",")}}`;
    }
  }
}

/** Replaces one random leaf of a JSON value with a weird value (returns a new value). */
function mutateJson(r: Rng, value: unknown): unknown {
  if (value === null || typeof value !== "object" || r.int(6) === 0) return r.pick(WEIRD_VALUES);
  if (Array.isArray(value)) {
    if (value.length === 0 || r.int(8) === 0) return [...value, r.pick(WEIRD_VALUES)];
    const i = r.int(value.length);
    const copy = [...value];
    if (r.int(10) === 0) copy.splice(i, 1);
    else copy[i] = mutateJson(r, copy[i]);
    return copy;
  }
  const copy = { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  if (keys.length === 0 || r.int(10) === 0)
    copy[r.pick(["extra", "version", "kind", "__proto__"])] = r.pick(WEIRD_VALUES);
  else {
    const key = r.pick(keys);
    if (r.int(10) === 0) delete copy[key];
    else copy[key] = mutateJson(r, copy[key]);
  }
  return copy;
}

const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

function mutateBytes(r: Rng, input: Uint8Array, corpus: Uint8Array[]): Uint8Array {
  const b = Uint8Array.from(input);
  switch (r.int(7)) {
    case 0: {
      const flips = 1 + r.int(4);
      for (let i = 0; i < flips && b.length > 0; i++) b[r.int(b.length)]! ^= 1 << r.int(8);
      return b;
    }
    case 1:
      if (b.length > 0) b[r.int(b.length)] = r.pick(INTERESTING);
      return b;
    case 2:
      return b.subarray(0, r.int(b.length + 1));
    case 3: {
      const at = r.int(b.length + 1);
      return cat(b.subarray(0, at), randomBytes(r, 16), b.subarray(at));
    }
    case 4: {
      const at = r.int(b.length + 1);
      const n = r.int(32);
      return cat(b.subarray(0, at), b.subarray(Math.min(at + n, b.length)));
    }
    case 5: {
      const other = r.pick(corpus);
      const at = r.int(b.length + 1);
      return cat(b.subarray(0, at), other.subarray(r.int(other.length + 1)));
    }
    default: {
      const at = r.int(b.length + 1);
      const n = 1 + r.int(64);
      return cat(b.subarray(0, at), b.subarray(at, at + n), b.subarray(at));
    }
  }
}

interface Target {
  name: string;
  corpus: Uint8Array[];
  decode: (bytes: Uint8Array) => unknown;
  /** For signed messages: re-sign a mutated payload so mutations reach the payload schema. */
  resign?: (r: Rng, bytes: Uint8Array) => Uint8Array;
}

function resigner(identity: Identity) {
  return (r: Rng, bytes: Uint8Array): Uint8Array => {
    const env = JSON.parse(dec.decode(bytes));
    const payload = mutateJson(r, env.payload);
    try {
      return encodeEnvelope(signEnvelope(env.kind, payload, identity));
    } catch {
      return bytes; // the mutated payload is not even canonicalisable (e.g. a lone surrogate)
    }
  };
}

function fuzz(
  target: Target,
  runs: number,
  seedValue: number,
): { runs: number; ok: number; typed: number; slowestMs: number } {
  const r = prng(seedValue);
  let ok = 0;
  let typed = 0;
  let slowestMs = 0;
  const parsed = target.corpus.filter(isJson).map((c) => JSON.parse(dec.decode(c)));
  const deadline = BUDGET_MS > 0 ? performance.now() + BUDGET_MS : Number.POSITIVE_INFINITY;
  let i = 0;
  for (; i < runs && (i % 256 !== 0 || performance.now() < deadline); i++) {
    let input: Uint8Array;
    const mode = r.int(20);
    if (mode < 2) input = randomBytes(r);
    else if (mode < 4) input = enc.encode(randomJsonText(r));
    else if (mode < 5 && target.resign) input = target.resign(r, r.pick(target.corpus));
    else if (mode < 8 && parsed.length > 0) input = enc.encode(JSON.stringify(mutateJson(r, r.pick(parsed))));
    else input = mutateBytes(r, r.pick(target.corpus), target.corpus);
    const started = performance.now();
    try {
      target.decode(input);
      ok++;
    } catch (error) {
      if (!(error instanceof AirqubeError)) {
        throw new Error(
          `${target.name}: run ${i} (seed ${seedValue}) threw a non-Airqube error: ${String(error)}\ninput hex: ${Buffer.from(input).toString("hex").slice(0, 2000)}`,
        );
      }
      typed++;
    }
    slowestMs = Math.max(slowestMs, performance.now() - started);
  }
  return { runs: i, ok, typed, slowestMs };
}

const isJson = (b: Uint8Array) => {
  try {
    JSON.parse(dec.decode(b));
    return true;
  } catch {
    return false;
  }
};

describe("qube: fuzzing every decoder", function () {
  this.timeout(0);
  const statement = signResultStatement(
    {
      version: 1,
      qubeId,
      provider: provider.peerId,
      tier: "container",
      imageDigest: spec.image.digest,
      outcome: "exited",
      exitCode: 0,
      outputsRoot: `sha256:${sha("m")}`,
      usage: { cpuMs: 1, wallMs: 1, maxMemoryBytes: 1, outputBytes: 1, outputFiles: 1 },
      probeReportHash: `sha256:${sha("p")}`,
      startedAt: "2026-11-20T00:00:00.000Z",
      finishedAt: "2026-11-20T00:00:01.000Z",
    },
    provider,
  );
  const cr = createCommitment({ qubeId, outputsRoot: `sha256:${sha("m")}`, salt: seed(4), provider: provider.peerId });
  const manifest = buildOutputManifest([{ path: "count", size: 2, sha256: sha("3\n") }], spec);
  const sealed = [
    sealBytes(new Uint8Array(150).fill(3), {
      qubeId,
      recipientPublicKey: provider.sealing.publicKey,
      ephemeralSeed: seed(8),
      chunkSize: 64,
    }),
    sealBytes(new Uint8Array(0), {
      qubeId,
      recipientPublicKey: provider.sealing.publicKey,
      ephemeralSeed: seed(9),
      chunkSize: 64,
    }),
  ];
  const open = { qubeId, recipient: provider.sealing, maxBytes: 4096 };

  const targets: Target[] = [
    {
      name: "parseJsonBytes",
      corpus: [canonicalBytes(spec), canonicalBytes(manifest)],
      decode: (b) => parseJsonBytes(b, { maxBytes: 1 << 20 }),
    },
    { name: "decodeQubeSpec", corpus: [encodeQubeSpec(spec)], decode: (b) => decodeQubeSpec(b) },
    {
      name: "decodeSignedQubeSpec",
      corpus: [encodeEnvelope(signQubeSpec(spec, requestor))],
      decode: (b) => decodeSignedQubeSpec(b),
      resign: resigner(requestor),
    },
    {
      name: "decodeResultStatement",
      corpus: [encodeEnvelope(statement)],
      decode: (b) => decodeResultStatement(b),
      resign: resigner(provider),
    },
    {
      name: "decodeCommitment",
      corpus: [encodeEnvelope(signCommitment(cr.commitment, provider))],
      decode: (b) => decodeCommitment(b),
      resign: resigner(provider),
    },
    {
      name: "decodeReveal",
      corpus: [encodeEnvelope(signReveal(cr.reveal, provider))],
      decode: (b) => decodeReveal(b),
      resign: resigner(provider),
    },
    { name: "decodeOutputManifest", corpus: [encodeOutputManifest(manifest)], decode: (b) => decodeOutputManifest(b) },
    { name: "decodeSealHeader", corpus: sealed.map((s) => s.subarray(0, 41)), decode: (b) => decodeSealHeader(b) },
    { name: "openBytes (sealed chunks)", corpus: sealed, decode: (b) => openBytes(b, open) },
    {
      name: "ed25519PublicKeyFromPeerId",
      corpus: [enc.encode(provider.peerId)],
      decode: (b) => ed25519PublicKeyFromPeerId(dec.decode(b)),
    },
    {
      name: "Identity.fromLibp2pPrivateKey",
      corpus: [provider.toLibp2pPrivateKey()],
      decode: (b) => Identity.fromLibp2pPrivateKey(b),
    },
  ];

  targets.forEach((target, index) => {
    it(`${target.name}: up to ${RUNS} random and mutated inputs give a value or an AirqubeError`, function () {
      expect(target.corpus.every((c) => isJson(c) || !target.resign)).to.equal(true);
      const result = fuzz(target, RUNS, SEED + index);
      expect(result.ok + result.typed).to.equal(result.runs);
      expect(result.slowestMs).to.be.below(HANG_MS);
      if (BUDGET_MS === 0) expect(result.runs).to.equal(RUNS);
      // Shown in the test title so a run's coverage is visible in the report.
      this.test!.title +=
        ` [${result.runs} run: ${result.ok} ok, ${result.typed} typed errors, slowest ${result.slowestMs.toFixed(1)} ms]`;
    });
  });

  it("checks byte limits before parsing: a 64 MiB input is refused at once", () => {
    const huge = new Uint8Array(64 << 20).fill(0x5b); // "[[[[..."
    const decoders: Array<() => unknown> = [
      () => decodeQubeSpec(huge),
      () => decodeSignedQubeSpec(huge),
      () => decodeResultStatement(huge),
      () => decodeCommitment(huge),
      () => decodeReveal(huge),
      () => decodeOutputManifest(huge),
    ];
    for (const run of decoders) {
      const started = performance.now();
      let code: string | undefined;
      try {
        run();
      } catch (error) {
        code = (error as AirqubeError).code;
      }
      expect(code).to.equal("TOO_LARGE");
      // the code proves the size check came first (parsing "[[[[" would fail otherwise); the bound only
      // catches a decoder that parsed anyway, and is loose so that a loaded machine does not fail it
      expect(performance.now() - started).to.be.below(2000);
    }
    // The sealed-stream opener never buffers more than one chunk, whatever the input size.
    const started = performance.now();
    let code: string | undefined;
    try {
      openBytes(huge, open);
    } catch (error) {
      code = (error as AirqubeError).code;
    }
    expect(code).to.equal("SEAL_HEADER_INVALID");
    expect(performance.now() - started).to.be.below(2000);
  });

  it("deeply nested JSON inside the limit is refused with a typed error", () => {
    const deep = enc.encode(`${"[".repeat(500_000)}${"]".repeat(500_000)}`);
    let error: unknown;
    try {
      decodeQubeSpec(deep);
    } catch (e) {
      error = e;
    }
    expect(error).to.be.instanceOf(AirqubeError);
  });
});
