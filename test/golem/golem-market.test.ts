/**
 * GolemMarket driven through golem-js with in-memory market, activity and payment APIs (fake-yagna.ts):
 * the redundancy engine over k = 3 Golem providers, rejections, a crash mid-run, bad downloads, time-outs,
 * abort, and no rental, activity or allocation left behind in any case.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type { GolemMarket } from "../../src/golem/golem-market.js";
import type { AirqubeError } from "../../src/qube/errors.js";
import type { SealedQube } from "../../src/requestor/api.js";
import { Requestor } from "../../src/requestor/requestor.js";
import { type FakeGolem, type FakeProviderSpec, honestExecute, lyingExecute } from "./fake-yagna.js";
import { fakeMarket, node, rejection, testQube } from "./helpers.js";

function expectedResult(qube: SealedQube): string {
  const hash = createHash("sha256").update(JSON.stringify(qube.spec.spec.command));
  hash.update("data.csv").update("a,b\n1,2\n3,4\n");
  return `${hash.digest("hex")}\n`;
}

describe("GolemMarket (golem-js over an in-memory yagna)", function () {
  this.timeout(30_000);
  let fake: FakeGolem;
  let market: GolemMarket;
  let stagingDir: string;

  async function start(providers: FakeProviderSpec[], config?: Parameters<typeof fakeMarket>[1]) {
    ({ fake, market, stagingDir } = await fakeMarket(providers, config));
  }

  afterEach(async () => {
    await market?.close();
    expect(fake.leaks(), "rentals, activities or allocations left open").to.deep.equal([]);
    expect(await readdir(stagingDir), "staged files left behind").to.deep.equal([]);
  });

  it("runs a qube with the unchanged Requestor on k = 3 distinct Golem providers and verifies it", async () => {
    await start([{ id: node(1) }, { id: node(2) }, { id: node(3) }]);
    const qube = await testQube();
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-req-"));
    const outputDir = join(dataDir, "out");
    const requestor = new Requestor({ market, dataDir });
    const events: string[] = [];
    try {
      const result = await requestor.run(qube, { outputDir, onProgress: (e) => events.push(e.type) });
      expect(result.status).to.equal("verified");
      expect(result.verified).to.equal(true);
      expect(result.agreeing).to.have.length(3);
      expect(new Set(result.agreeing)).to.deep.equal(new Set([node(1), node(2), node(3)]));
      expect(result.answers.every((a) => a.statement === undefined && a.exitCode === 0)).to.equal(true);
      expect(result.answers[0]!.stdout).to.match(/^ran sh -c/);
      expect(await readFile(join(outputDir, "result.txt"), "utf8")).to.equal(expectedResult(qube));
      expect(result.outputs.map((o) => o.path)).to.deep.equal(["result.txt"]);
      for (const t of ["agreementSigned", "qubeSent", "qubeStarted", "qubeCommitted", "resultReceived", "decided"])
        expect(events).to.include(t);
    } finally {
      requestor.close();
    }
    expect(fake.ledger.agreementsApproved).to.have.length(3);
    expect(fake.ledger.invoicesAccepted).to.have.length(3);
    expect(fake.ledger.allocationsCreated).to.have.length(3);
  });

  it("outvotes a provider that returns different outputs (with the engine's tie-breaker)", async () => {
    await start([{ id: node(1) }, { id: node(2) }, { id: node(3), execute: lyingExecute }, { id: node(4) }]);
    const qube = await testQube();
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-req-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      // the shuffle puts the liar among the first three
      const result = await requestor.run(qube, { outputDir: join(dataDir, "out"), random: () => 0 });
      expect(result.status).to.equal("verified");
      expect(result.dissenting).to.deep.equal([node(3)]);
    } finally {
      requestor.close();
    }
  });

  it("finds providers by scanning, within the price caps, cheapest first", async () => {
    await start([
      { id: node(1), price: [0.00002, 0.00001, 0.002] },
      { id: node(2) },
      { id: node(3), price: [0.01, 0.01, 5] },
      { id: node(4), memGib: 0.1 },
    ]);
    const qube = await testQube();
    const found = await market.findProviders(qube.spec, { wanted: 3 });
    expect(found.map((c) => c.id)).to.deep.equal([node(2), node(1)]);
    expect(found[0]!.payout).to.equal(node(2));
    expect(found[0]!.price > 0n).to.equal(true);
  });

  it("fails fast when the provider rejects the agreement, and the Requestor replaces it", async () => {
    await start([{ id: node(1), rejectAgreement: "busy" }, { id: node(2) }, { id: node(3) }, { id: node(4) }]);
    const qube = await testQube();
    const started = Date.now();
    const error = await rejection(market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, qube));
    expect(error.code).to.equal("PROPOSAL_REJECTED");
    expect(error.fault).to.equal("peer");
    expect(error.details).to.include("busy");
    expect(Date.now() - started).to.be.lessThan(4000);

    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-req-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      const result = await requestor.run(qube, { outputDir: join(dataDir, "out"), random: () => 0.999 });
      expect(result.status).to.equal("verified");
      expect(result.agreeing).to.not.include(node(1));
    } finally {
      requestor.close();
    }
  });

  it("fails fast when the provider rejects the counter-proposal", async () => {
    await start([{ id: node(1), rejectCounter: "price too low" }]);
    const error = await rejection(market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, await testQube()));
    expect(error.code).to.equal("PROPOSAL_REJECTED");
    expect(error.details).to.include("price too low");
  });

  it("reports an activity that fails mid-run as the provider's fault", async () => {
    await start([{ id: node(1), crashOnRun: true }]);
    const dispatch = await market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, await testQube());
    const error = await rejection(dispatch.awaitCommitment());
    expect(error.code).to.equal("GOLEM_RUN_FAILED");
    expect(error.fault).to.equal("peer");
    expect(error.details).to.include("VM crashed");
  });

  it("rejects a truncated download", async () => {
    await start([{ id: node(1), truncateDownload: 0.5 }]);
    const dispatch = await market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, await testQube());
    const error = await rejection(dispatch.awaitCommitment());
    expect(error.code).to.equal("GOLEM_DOWNLOAD_TRUNCATED");
    expect(error.fault).to.equal("peer");
  });

  it("rejects a download altered in transit", async () => {
    await start([{ id: node(1), corruptDownload: true }]);
    const dispatch = await market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, await testQube());
    expect((await rejection(dispatch.awaitCommitment())).code).to.equal("GOLEM_DOWNLOAD_CORRUPT");
  });

  it("commits an answer whose declared output is missing (an empty, different result)", async () => {
    await start([{ id: node(1), execute: (ctx) => ({ ...honestExecute(ctx), outputs: {} }) }]);
    const qube = await testQube({ outputs: ["result.txt"] });
    const dispatch = await market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, qube);
    // an empty result is a valid (if different) answer: it commits
    expect(await dispatch.awaitCommitment()).to.match(/^sha256:[0-9a-f]{64}$/);
    const answer = await dispatch.reveal(join(stagingDir, "..", `reveal-${Date.now()}`));
    expect(answer.files).to.deep.equal([]);
  });

  it("times out a qube that runs past its wall time", async () => {
    await start([{ id: node(1), hangOnRun: true }]);
    const dispatch = await market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, await testQube());
    const started = Date.now();
    const error = await rejection(dispatch.awaitCommitment());
    expect(error.code).to.equal("GOLEM_RUN_TIMEOUT");
    expect(error.fault).to.equal("timeout");
    expect(Date.now() - started).to.be.within(1000, 6000);
  });

  it("times out a negotiation with a provider that never answers", async () => {
    const { testConfig } = await import("./helpers.js");
    await start([{ id: node(1), silent: true }], testConfig({ timeouts: { scanMs: 300, negotiationMs: 800 } }));
    const error = await rejection(market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, await testQube()));
    expect(error.code).to.equal("GOLEM_NEGOTIATION_TIMEOUT");
    expect(error.fault).to.equal("timeout");
  });

  it("aborts a running qube on the caller's signal and releases the rental", async () => {
    await start([{ id: node(1), hangOnRun: true }]);
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["microvm"], price: 1n },
      await testQube({ limits: { wallTimeMs: 60_000 } }),
    );
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("user pressed ^C")), 300);
    const started = Date.now();
    const error = await rejection(dispatch.awaitCommitment({ signal: controller.signal }));
    expect(error.code).to.equal("ABORTED");
    expect(Date.now() - started).to.be.lessThan(5000);
    expect(fake.ledger.agreementsTerminated).to.have.length(1);
  });

  it("aborts a whole Requestor run and leaves nothing rented", async () => {
    await start([{ id: node(1), hangOnRun: true }, { id: node(2), hangOnRun: true }, { id: node(3) }]);
    const qube = await testQube({ limits: { wallTimeMs: 60_000 } });
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-req-"));
    const requestor = new Requestor({ market, dataDir });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 2500);
    try {
      const outcome = await requestor.run(qube, { outputDir: join(dataDir, "out"), signal: controller.signal }).then(
        () => "resolved",
        (error: unknown) => error,
      );
      expect(outcome).to.not.equal("resolved");
    } finally {
      requestor.close();
    }
    await market.close();
  });

  it("releases an in-flight rental when the market closes", async () => {
    await start([{ id: node(1), hangOnRun: true }]);
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["microvm"], price: 1n },
      await testQube({ limits: { wallTimeMs: 60_000 } }),
    );
    const pending = dispatch.awaitCommitment().catch((e) => e);
    await new Promise((r) => setTimeout(r, 300));
    await market.close();
    expect(((await pending) as AirqubeError).code).to.equal("ABORTED");
  });

  it("refuses a qube whose Docker image has no Golem image, before renting anything", async () => {
    await start([{ id: node(1) }]);
    const qube = await testQube({ imageDigest: `sha256:${"99".repeat(32)}` });
    const error = await rejection(market.dispatch({ id: node(1), tiers: ["microvm"], price: 1n }, qube));
    expect(error.code).to.equal("GOLEM_IMAGE_UNMAPPED");
    expect(error.fault).to.equal("user");
    expect(fake.ledger.demands).to.equal(0);
  });
});
