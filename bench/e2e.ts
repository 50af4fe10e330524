/**
 * `npm run bench:e2e -- --json [--runs N]`: a trivial qube on a devnet of 5 provider processes with redundancy 1
 * and 3, against the same qube through ContainerSandbox locally, interleaved in one run. Prints
 * { localMedianMs, k1MedianMs, k3MedianMs, k1Ratio, k3Ratio, breakdownK3 } where the breakdown splits a k = 3
 * run into market (offers), transfer (agreement and sealed inputs), sandbox (until all commitments are in)
 * and verification (reveal, outputs check, quorum).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Devnet } from "../src/devnet/devnet.js";
import { Identity } from "../src/qube/index.js";
import { sealQube } from "../src/requestor/draft.js";
import { Libp2pMarket } from "../src/requestor/libp2p-market.js";
import { Requestor, type RunEvent } from "../src/requestor/requestor.js";
import { ContainerSandbox } from "../src/sandbox/container-sandbox.js";
import { argValue, median, round, wantsJson } from "./stats.js";

const runs = argValue("--runs", 10);
const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));
const devnet = await Devnet.start({ providers: 5, probeCache: join(tmpdir(), "airqube-bench-probe-cache") });
const identity = Identity.fromSeed(randomBytes(32));
const market = await Libp2pMarket.connect({ identity, bootstrap: [devnet.bootstrap] });
const requestor = new Requestor({ market, dataDir: tmp("aq-bench-req-") });
const sandbox = new ContainerSandbox();
const command = ["sh", "-c", "echo ok > /output/result"];
const limits = { wallTimeMs: 20_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 };

const phases: { market: number[]; transfer: number[]; sandbox: number[]; verification: number[] } = {
  market: [],
  transfer: [],
  sandbox: [],
  verification: [],
};
async function remote(k: number): Promise<number> {
  const qube = await sealQube(
    {
      image: "airqube/busybox:latest",
      command,
      outputs: ["result"],
      limits,
      redundancy: { mode: "fixed", k, quorum: Math.floor(k / 2) + 1 },
    },
    identity,
  );
  const marks: Partial<Record<RunEvent["type"], number>> = {};
  const t0 = performance.now();
  const result = await requestor.run(qube, {
    outputDir: tmp("aq-bench-out-"),
    onProgress: (e) => (marks[e.type] = performance.now()),
  });
  const total = performance.now() - t0;
  if (result.status !== "verified") throw new Error(`bench qube not verified: ${result.reason}`);
  if (k === 3) {
    phases.market.push(marks.offersFound! - t0);
    phases.transfer.push(marks.qubeSent! - marks.offersFound!);
    phases.sandbox.push(marks.revealRequested! - marks.qubeSent!);
    phases.verification.push(marks.decided! - marks.revealRequested!);
  }
  return total;
}
async function local(): Promise<number> {
  const t0 = performance.now();
  await sandbox.run({
    image: "airqube/busybox:latest",
    command,
    outputs: ["/output/result"],
    outputDir: tmp("aq-bench-local-"),
    limits: { wallTimeMs: 20_000 },
  });
  return performance.now() - t0;
}

const localMs: number[] = [];
const k1: number[] = [];
const k3: number[] = [];
try {
  await remote(1); // warm-up: offers, connections
  await local();
  for (let i = 0; i < runs; i++) {
    localMs.push(await local());
    k1.push(await remote(1));
    k3.push(await remote(3));
    if (!wantsJson) process.stderr.write(`\r${i + 1}/${runs}`);
  }
} finally {
  requestor.close();
  await market.close();
  await devnet.stop();
}
const result = {
  runs,
  providers: 5,
  localMedianMs: round(median(localMs)),
  k1MedianMs: round(median(k1)),
  k3MedianMs: round(median(k3)),
  k1Ratio: round(median(k1) / median(localMs), 3),
  k3Ratio: round(median(k3) / median(localMs), 3),
  breakdownK3MedianMs: {
    market: round(median(phases.market)),
    transfer: round(median(phases.transfer)),
    sandbox: round(median(phases.sandbox)),
    verification: round(median(phases.verification)),
  },
};
if (!wantsJson) process.stderr.write("\n");
console.log(JSON.stringify(result));
process.exit(0);
