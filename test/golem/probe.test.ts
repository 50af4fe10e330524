/** The escape suite's main phase as a qube on one (fake) Golem provider, through GolemSandbox. */
import { expect } from "chai";
import { runGolemProbe } from "../../src/golem/probe.js";
import { FakeGolem } from "./fake-yagna.js";
import { IMAGE_DIGEST, node, testConfig } from "./helpers.js";

describe("golem probe (suite as a qube)", function () {
  this.timeout(30_000);

  it("runs the main phase on the chosen provider and reports its verdicts", async () => {
    const fake = new FakeGolem([
      { id: node(1) },
      {
        id: node(2),
        execute: (ctx) => ({
          exitCode: 0,
          stdout: [
            JSON.stringify({ id: 1, verdict: "pass", evidence: "EROFS" }),
            JSON.stringify({ id: 2, verdict: "fail", evidence: `phase ${ctx.command.join(" ")}` }),
            "garbage",
          ].join("\n"),
          outputs: {},
        }),
      },
    ]);
    const report = await runGolemProbe({
      config: testConfig(),
      provider: node(2),
      imageDigest: IMAGE_DIGEST,
      market: { override: fake.override() },
    });
    expect(report.provider).to.equal(node(2));
    expect(report.suite).to.include("Golem");
    expect(report.probes[0]).to.include({ id: 1, verdict: "pass", evidence: "EROFS" });
    expect(report.probes[1]).to.include({ id: 2, verdict: "fail" });
    expect(report.probes[1]!.evidence).to.include("/airqube/probe --phase main");
    expect(report.probes[2]!.verdict).to.equal("inconclusive");
    expect(report.probes.find((p) => p.id === 37)!.verdict).to.equal("skipped");
    expect(report.summary.pass).to.equal(1);
    expect(fake.ledger.runs).to.deep.equal([node(2)]);
    expect(fake.leaks()).to.deep.equal([]);
  });
});
