import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProviderAgent } from "../../src/provider/agent.js";
import { loadProviderConfig, type ProviderConfig } from "../../src/provider/config.js";
import { escapeSuiteGate } from "../../src/provider/probe-gate.js";
import { Identity } from "../../src/qube/index.js";
import { type QubeRequest, sealQube } from "../../src/requestor/draft.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { Requestor } from "../../src/requestor/requestor.js";

/**
 * One probe cache for the whole test run: the real suite runs once (`scripts/test.sh` shares one directory
 * between its parallel workers through AIRQUBE_TEST_PROBE_CACHE).
 */
export const PROBE_CACHE =
  process.env.AIRQUBE_TEST_PROBE_CACHE ?? join(tmpdir(), `airqube-test-probe-cache-${process.pid}`);

/** Directories `tmp` made in this process, removed when it exits (AIRQUBE_KEEP_TEST_DIRS=1 keeps them). */
const madeDirs: string[] = [];
process.once("exit", () => {
  if (process.env.AIRQUBE_KEEP_TEST_DIRS === "1") return;
  for (const dir of madeDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 2 });
    } catch {
      // a directory a still-running child holds open: the system's temp cleaner gets it
    }
  }
});

/** A fresh directory under the system temp dir, removed when the test process exits. */
export const tmp = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
};

/** Starts n in-process provider agents (real libp2p on loopback, real Docker); the first is the bootstrap. */
export async function startAgents(
  n: number,
  overrides: (i: number) => Partial<ProviderConfig> = () => ({}),
): Promise<{ agents: ProviderAgent[]; bootstrap: string }> {
  const agents: ProviderAgent[] = [];
  let bootstrap = "";
  for (let i = 0; i < n; i++) {
    const config = loadProviderConfig(undefined, {
      dataDir: tmp("aq-provider-"),
      bootstrap: bootstrap ? [bootstrap] : [],
      probeCache: PROBE_CACHE,
      ...overrides(i),
    });
    const agent = new ProviderAgent(config, { probe: escapeSuiteGate({ cacheDir: PROBE_CACHE }) });
    const status = await agent.start();
    if (i === 0) bootstrap = status.addrs[0]!;
    agents.push(agent);
  }
  return { agents, bootstrap };
}

export async function connectRequestor(bootstrap: string) {
  const identity = Identity.fromSeed(randomBytes(32));
  const market = await Libp2pMarket.connect({ identity, bootstrap: [bootstrap] });
  const requestor = new Requestor({ market, dataDir: tmp("aq-requestor-") });
  return {
    identity,
    market,
    requestor,
    seal: (request: Partial<QubeRequest> & Pick<QubeRequest, "command">) =>
      sealQube(
        {
          image: "airqube/busybox:latest",
          outputs: ["result"],
          limits: { wallTimeMs: 20_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 },
          ...request,
        },
        identity,
      ),
    close: async () => {
      requestor.close();
      await market.close();
    },
  };
}
