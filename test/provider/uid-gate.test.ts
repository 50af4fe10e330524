/**
 * The provider's escape-suite gate is told about the agent's uid pool, so that row 37 judges distinct tenants
 * (a uid shared by consecutive qubes fails only when the suite knows a pool was configured).
 */
import { expect } from "chai";
import type { ProbeGate } from "../../src/provider/agent.js";
import { ProviderAgent } from "../../src/provider/agent.js";
import { loadProviderConfig } from "../../src/provider/config.js";
import { UidPool } from "../../src/sandbox/uid-pool.js";
import { tmp } from "../helpers/network.js";

describe("provider: the escape-suite gate knows the uid pool @docker", function () {
  this.timeout(60_000);

  for (const pooled of [true, false]) {
    it(pooled ? "with sandboxUids: the gate gets the agent's pool" : "without: the gate gets none", async () => {
      const seen: (UidPool | undefined)[] = [];
      const probe: ProbeGate = async (_tier, _sandbox, options) => {
        seen.push(options.uids);
        return { reportHash: `sha256:${"0".repeat(64)}`, pass: 1, fail: 0, inconclusive: 0, skipped: 0 };
      };
      const config = loadProviderConfig(undefined, {
        dataDir: tmp("aq-uid-gate-"),
        bootstrap: [],
        ...(pooled ? { sandboxUids: { first: 232_000, count: 4 } } : {}),
      });
      const agent = new ProviderAgent(config, { probe });
      try {
        await agent.start();
      } finally {
        await agent.stop();
      }
      expect(seen).to.have.length(1);
      if (pooled) {
        expect(seen[0]).to.be.instanceOf(UidPool);
        expect(seen[0]!.range).to.deep.equal({ first: 232_000, count: 4 });
      } else expect(seen[0]).to.equal(undefined);
    });
  }
});
