/**
 * Sealing throughput: 256 MiB sealed + SHA-256-hashed through the streaming API (`sealStream`, default
 * chunk size) against node:crypto's raw ChaCha20-Poly1305 + SHA-256 over the same pieces, in one process,
 * alternating the two for a few rounds. Each method's figure is its median round; `ratio` is
 * sealMBps / baselineMBps. Wall-clock MB/s are reported (MB = 10^6 bytes), plus CPU-time figures, which are
 * steadier on a shared machine. Also times a seal -> open (with SHA-256 check) pipeline.
 * `--json` prints only the JSON line.
 *
 * Usage: npm run bench:seal -- [--json] [--mib 256] [--rounds 7] [--piece-kib 64] [--chunk-kib 256]
 */
import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { Identity } from "../src/qube/identity.js";
import { openStream } from "../src/qube/open.js";
import { sealStream } from "../src/qube/seal.js";
import { DEFAULT_CHUNK_SIZE } from "../src/qube/seal-format.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const jsonOnly = args.includes("--json");
const totalBytes = flag("mib", 256) * 1024 * 1024;
const rounds = flag("rounds", 7);
const pieceBytes = flag("piece-kib", 64) * 1024; // what a file read stream yields by default
const chunkSize = flag("chunk-kib", DEFAULT_CHUNK_SIZE / 1024) * 1024;

// 16 MiB of random data, yielded repeatedly as pieces.
const pool = randomBytes(16 * 1024 * 1024);
function* pieces(): Generator<Uint8Array> {
  for (let offset = 0; offset < totalBytes; offset += pieceBytes) {
    const start = offset % pool.length;
    yield pool.subarray(start, start + Math.min(pieceBytes, totalBytes - offset));
  }
}

const recipient = Identity.fromSeed(randomBytes(32));
const qubeId = `aq1${createHash("sha256").update("bench").digest("hex")}`;
const sealParams = () => ({
  qubeId,
  recipientPublicKey: recipient.sealing.publicKey,
  ephemeralSeed: randomBytes(32),
  chunkSize,
});

interface Timing {
  wallMs: number;
  cpuMs: number;
}
async function timed(run: () => Promise<void>): Promise<Timing> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await run();
  const used = process.cpuUsage(cpu);
  return { wallMs: performance.now() - started, cpuMs: (used.user + used.system) / 1000 };
}

async function baseline(): Promise<void> {
  const cipher = createCipheriv("chacha20-poly1305", randomBytes(32), randomBytes(12), { authTagLength: 16 });
  const hash = createHash("sha256");
  let out = 0;
  for (const piece of pieces()) {
    hash.update(piece);
    out += cipher.update(piece).byteLength;
  }
  cipher.final();
  out += cipher.getAuthTag().byteLength;
  hash.digest();
  if (out < totalBytes) throw new Error("baseline lost bytes");
}

async function seal(): Promise<void> {
  const hash = createHash("sha256");
  async function* hashed() {
    for (const piece of pieces()) {
      hash.update(piece);
      yield piece;
    }
  }
  let out = 0;
  for await (const bytes of sealStream(hashed(), sealParams())) out += bytes.byteLength;
  hash.digest();
  if (out < totalBytes) throw new Error("seal lost bytes");
}

async function sealThenOpen(): Promise<void> {
  const hash = createHash("sha256");
  for (const piece of pieces()) hash.update(piece);
  const expectedSha256 = hash.digest("hex");
  let out = 0;
  const opened = openStream(sealStream(pieces(), sealParams()), {
    qubeId,
    recipient: recipient.sealing,
    expectedSize: totalBytes,
    expectedSha256,
  });
  for await (const plain of opened) out += plain.byteLength;
  if (out !== totalBytes) throw new Error("open lost bytes");
}

const base: Timing[] = [];
const sealed: Timing[] = [];
for (let round = 0; round < rounds; round++) {
  // Alternate the order so neither side always runs first.
  if (round % 2 === 0) {
    base.push(await timed(baseline));
    sealed.push(await timed(seal));
  } else {
    sealed.push(await timed(seal));
    base.push(await timed(baseline));
  }
}
const pipeline = await timed(sealThenOpen);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mbps = (ms: number) => Math.round((totalBytes / 1e6 / (ms / 1000)) * 10) / 10;
const sealMBps = mbps(median(sealed.map((t) => t.wallMs)));
const baselineMBps = mbps(median(base.map((t) => t.wallMs)));
const sealCpuMBps = mbps(median(sealed.map((t) => t.cpuMs)));
const baselineCpuMBps = mbps(median(base.map((t) => t.cpuMs)));
const result = {
  bytes: totalBytes,
  sealMBps,
  baselineMBps,
  ratio: Math.round((sealMBps / baselineMBps) * 1000) / 1000,
  peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
  cpuRatio: Math.round((sealCpuMBps / baselineCpuMBps) * 1000) / 1000,
  sealCpuMBps,
  baselineCpuMBps,
  sealThenOpenMBps: mbps(pipeline.wallMs),
  chunkSize,
  pieceBytes,
  rounds,
  sealRoundsMBps: sealed.map((t) => mbps(t.wallMs)),
  baselineRoundsMBps: base.map((t) => mbps(t.wallMs)),
};
if (!jsonOnly) {
  console.log(
    `sealed+hashed ${totalBytes / 2 ** 20} MiB at ${sealMBps} MB/s vs raw chacha20-poly1305+sha256 ${baselineMBps} MB/s ` +
      `(ratio ${result.ratio}, CPU-time ratio ${result.cpuRatio}; goal >= 0.8); seal->open pipeline ` +
      `${result.sealThenOpenMBps} MB/s; peak RSS ${result.peakRssMB} MB`,
  );
}
console.log(JSON.stringify(result));
