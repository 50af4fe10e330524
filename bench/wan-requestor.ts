/**
 * The requestor side of `bench:wan`, run inside the requestor's network namespace: connects in public mode to
 * the bootnode, then times verified qubes (after one warm-up): k = 1 on a direct provider, k = 3 on three
 * direct providers, k = 1 on the provider behind NAT (through the relay). Prints one JSON line of medians.
 *
 * Usage: node --import tsx bench/wan-requestor.ts BOOTSTRAP '{"direct":[id,id,id],"nat":id}' RUNS
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Identity } from "../src/qube/index.js";
import { sealQube } from "../src/requestor/draft.js";
import { Libp2pMarket } from "../src/requestor/libp2p-market.js";
import { Requestor } from "../src/requestor/requestor.js";
import { median, round } from "./stats.js";

const [bootstrap = "", providersJson = "{}", runsText = "3"] = process.argv.slice(2);
const providers = JSON.parse(providersJson) as { direct: string[]; nat: string };
const runs = Number(runsText);
const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));
const identity = Identity.fromSeed(randomBytes(32));
const market = await Libp2pMarket.connect({ identity, bootstrap: [bootstrap], public: true, allowPrivate: true });
const requestor = new Requestor({ market, dataDir: tmp("aq-wan-req-") });

async function timed(k: number, allowed: string[]): Promise<number> {
  const qube = await sealQube(
    {
      image: "airqube/busybox:latest",
      command: ["sh", "-c", "echo ok > /output/result"],
      outputs: ["result"],
      limits: { wallTimeMs: 20_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 },
      redundancy: { mode: "fixed", k, quorum: Math.floor(k / 2) + 1 },
    },
    identity,
  );
  const t0 = performance.now();
  const result = await requestor.run(qube, { outputDir: tmp("aq-wan-out-"), filter: (c) => allowed.includes(c.id) });
  const ms = performance.now() - t0;
  if (result.status !== "verified") throw new Error(`not verified: ${result.reason}`);
  return ms;
}

try {
  await timed(1, providers.direct.slice(0, 1)); // warm-up: offers, connections
  await timed(1, [providers.nat]);
  const k1: number[] = [];
  const k3: number[] = [];
  const nat: number[] = [];
  for (let i = 0; i < runs; i++) {
    k1.push(await timed(1, providers.direct.slice(0, 1)));
    k3.push(await timed(3, providers.direct));
    nat.push(await timed(1, [providers.nat]));
  }
  process.stdout.write(
    `${JSON.stringify({ k1Ms: round(median(k1), 1), k3Ms: round(median(k3), 1), natK1Ms: round(median(nat), 1) })}\n`,
  );
} finally {
  requestor.close();
  await market.close();
}
