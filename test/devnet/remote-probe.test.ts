import { expect } from "chai";
import { Devnet } from "../../src/devnet/devnet.js";
import { PROBES } from "../../src/probes/catalog.js";
import { verifyResultStatement } from "../../src/qube/index.js";
import { runRemoteProbeSuite } from "../../src/requestor/remote-probe.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

describe("probes: the escape suite as qubes on a remote provider @docker", function () {
  this.timeout(300_000);

  it("runs the suite on a devnet provider and returns a report covered by its signed statements", async () => {
    const devnet = await Devnet.start({ providers: 1, probeCache: PROBE_CACHE });
    try {
      const provider = devnet.providers[0]!;
      const report = await runRemoteProbeSuite({
        provider: provider.peerId,
        bootstrap: [devnet.bootstrap],
        dataDir: tmp("aq-rprobe-"),
        tier: "container",
      });
      expect(report.provider).to.equal(provider.peerId);
      expect(report.probes).to.have.length(PROBES.length);
      // the remote sandbox is the provider's hardened container: nothing may fail
      expect(report.summary.fail, JSON.stringify(report.probes.filter((p) => p.verdict === "fail"))).to.equal(0);
      expect(report.summary.pass).to.be.at.least(30);
      expect(report.statements.length).to.be.at.least(3);
      for (const statement of report.statements)
        expect(verifyResultStatement(statement, { provider: provider.peerId }).provider).to.equal(provider.peerId);
    } finally {
      await devnet.stop(3000);
    }
  });
});
