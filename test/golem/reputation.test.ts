/**
 * The opt-in reputation pre-filter: config and flag, golem-js's ReputationSystem fed from a score server on
 * 127.0.0.1, verdicts, a service that is down, hangs or answers garbage (typed errors), and GolemMarket over
 * the in-memory yagna never renting a provider below the minimum (and renting it with the filter off).
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_REPUTATION_URL as GOLEM_JS_REPUTATION_URL } from "@golem-sdk/golem-js/experimental";
import { expect } from "chai";
import { DEFAULT_REPUTATION_URL, type GolemReputationConfig, loadGolemConfig } from "../../src/golem/config.js";
import type { GolemMarket } from "../../src/golem/golem-market.js";
import { ReputationFilter } from "../../src/golem/reputation.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { Requestor } from "../../src/requestor/requestor.js";
import type { FakeGolem } from "./fake-yagna.js";
import { fakeMarket, node, rejection, testConfig, testQube } from "./helpers.js";
import { GOOD, POOR, reputationData, ScoreServer } from "./reputation-server.js";

describe("Golem reputation pre-filter", function () {
  this.timeout(30_000);
  let scores: ScoreServer;
  const settings = (over: Partial<GolemReputationConfig> = {}): GolemReputationConfig => ({
    url: scores.url,
    minSuccessRate: 0.8,
    acceptUnlisted: false,
    timeoutMs: 2000,
    ...over,
  });

  beforeEach(async () => {
    scores = await ScoreServer.start();
  });
  afterEach(async () => {
    await scores.close();
  });

  describe("config", () => {
    it("is off by default, on with a minimum in golem.reputation or --golem-min-success-rate", () => {
      const env = { YAGNA_APPKEY: "k" };
      expect(loadGolemConfig(env, {}).reputation).to.equal(undefined);
      expect(loadGolemConfig(env, { reputation: { acceptUnlisted: true } }).reputation).to.equal(undefined);
      expect(loadGolemConfig(env, { reputation: { minUptime: 0.5 } }).reputation).to.deep.equal({
        url: DEFAULT_REPUTATION_URL,
        acceptUnlisted: false,
        timeoutMs: 10_000,
        minUptime: 0.5,
      });
      const flagged = loadGolemConfig(
        env,
        { reputation: { url: "http://127.0.0.1:9/s", minSuccessRate: 0.1 } },
        { minSuccessRate: 0.9 },
      );
      expect(flagged.reputation).to.include({ url: "http://127.0.0.1:9/s", minSuccessRate: 0.9 });
      expect(loadGolemConfig(env, undefined, { minSuccessRate: 0.7 }).reputation?.minSuccessRate).to.equal(0.7);
      expect(DEFAULT_REPUTATION_URL).to.equal(GOLEM_JS_REPUTATION_URL);
    });

    it("refuses a score outside 0..1, a non-number flag and a plain-http remote URL", () => {
      const env = { YAGNA_APPKEY: "k" };
      for (const bad of [
        () => loadGolemConfig(env, { reputation: { minSuccessRate: 1.5 } }),
        () => loadGolemConfig(env, {}, { minSuccessRate: Number("abc") }),
        () => loadGolemConfig(env, { reputation: { minSuccessRate: 0.5, url: "http://scores.example.com/x" } }),
        () => loadGolemConfig(env, { reputation: { minSuccessRate: 0.5, surprise: 1 } }),
      ]) {
        expect(bad).to.throw(AirqubeError).with.property("code", "GOLEM_CONFIG_INVALID");
      }
    });
  });

  describe("ReputationFilter", () => {
    it("rejects low scores, unlisted providers and rejected providers or operators; asks for the payment network", async () => {
      scores.answer = {
        kind: "data",
        body: reputationData(
          { [node(1)]: GOOD, [node(2).toUpperCase().replace("0X", "0x")]: POOR, [node(3)]: GOOD },
          {
            rejectedProviders: [{ provider: { id: node(3) }, reason: "cheats" }],
            rejectedOperators: [{ operator: { walletAddress: `0x${"ee".repeat(20)}` }, reason: "sybil" }],
          },
        ),
      };
      const filter = await ReputationFilter.load(settings(), "holesky");
      expect(scores.queries.map((q) => q.searchParams.get("network"))).to.deep.equal(["holesky"]);
      expect(filter.verdict({ id: node(1) })).to.deep.equal({ ok: true });
      expect(filter.verdict({ id: node(2) })).to.deep.equal({ ok: false, reason: "successRate 0.2 < 0.8" });
      expect(filter.verdict({ id: node(3) }).ok).to.equal(false);
      expect(filter.verdict({ id: node(1), walletAddress: `0x${"EE".repeat(20)}` })).to.deep.equal({
        ok: false,
        reason: "operator rejected by the reputation service: sybil",
      });
      expect(filter.verdict({ id: node(9) })).to.deep.equal({
        ok: false,
        reason: "not scored by the reputation service",
      });
      const lenient = await ReputationFilter.load(settings({ acceptUnlisted: true, minSuccessRate: 0.1 }), "polygon");
      expect(lenient.verdict({ id: node(9) }).ok).to.equal(true);
      expect(lenient.verdict({ id: node(2) }).ok).to.equal(true);
      expect(lenient.system.getProviderScores(node(2))?.successRate).to.equal(0.2);
      const strictUptime = await ReputationFilter.load(settings({ minSuccessRate: 0, minUptime: 0.99 }), "holesky");
      expect(strictUptime.verdict({ id: node(2) })).to.deep.equal({ ok: false, reason: "uptime 0.95 < 0.99" });
    });

    it("a service that is down, fails, hangs or answers garbage gives a typed error", async () => {
      const cases: Array<[ScoreServer["answer"], string, string]> = [
        [{ kind: "status", status: 503 }, "GOLEM_REPUTATION_UNAVAILABLE", "PlatformError"],
        [{ kind: "raw", body: "<html>oops" }, "GOLEM_REPUTATION_INVALID", "PlatformError"],
        [{ kind: "raw", body: "{}" }, "GOLEM_REPUTATION_INVALID", "PlatformError"],
        [{ kind: "raw", body: "null" }, "GOLEM_REPUTATION_INVALID", "PlatformError"],
        [
          { kind: "data", body: reputationData({ [node(1)]: { ...GOOD, successRate: 7 } }) },
          "GOLEM_REPUTATION_INVALID",
          "PlatformError",
        ],
        [
          { kind: "data", body: { testedProviders: [{ provider: {}, scores: "x" }] } },
          "GOLEM_REPUTATION_INVALID",
          "PlatformError",
        ],
        [{ kind: "hang" }, "GOLEM_REPUTATION_UNAVAILABLE_TIMEOUT", "TimeoutError"],
      ];
      for (const [answer, code, cls] of cases) {
        scores.answer = answer;
        // a short time-out only where the service hangs: an answer under load may take longer than 300 ms
        const timeoutMs = answer.kind === "hang" ? 300 : 15_000;
        const error = await rejection(ReputationFilter.load(settings({ timeoutMs }), "holesky"));
        expect(error.code, JSON.stringify(answer)).to.equal(code);
        expect(error.constructor.name).to.equal(cls);
      }
      const closed = settings();
      await scores.close();
      const down = await rejection(ReputationFilter.load(closed, "holesky"));
      expect(down.code).to.equal("GOLEM_REPUTATION_UNAVAILABLE");
      expect(down.details).to.include("ECONNREFUSED");
      scores = await ScoreServer.start();
    });
  });

  describe("GolemMarket (in-memory yagna)", () => {
    let fake: FakeGolem;
    let market: GolemMarket | undefined;

    afterEach(async () => {
      await market?.close();
      market = undefined;
      expect(fake.leaks(), "rentals, activities or allocations left open").to.deep.equal([]);
    });

    // node(4) is the cheapest: without the filter redundancy picks it first
    const providers = () => [
      { id: node(1), price: [0.0001, 0.0001, 0.02] as [number, number, number] },
      { id: node(2), price: [0.0001, 0.0001, 0.02] as [number, number, number] },
      { id: node(3), price: [0.0001, 0.0001, 0.02] as [number, number, number] },
      { id: node(4), price: [0.00001, 0.00001, 0.001] as [number, number, number] },
    ];

    it("never rents a provider below the minimum; with the filter off it is rented first", async () => {
      scores.answer = {
        kind: "data",
        body: reputationData({ [node(1)]: GOOD, [node(2)]: GOOD, [node(3)]: GOOD, [node(4)]: POOR }),
      };
      const qube = await testQube();
      // off: the poor provider is a candidate, the cheapest, and the Requestor can rent it
      ({ fake, market } = await fakeMarket(providers()));
      const all = await market.findProviders(qube.spec, { wanted: 3 });
      expect(all[0]?.id).to.equal(node(4));
      const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-rep-"));
      // (the Requestor shuffles its candidates: preferred, node 4 is surely among the three it rents)
      const off = await new Requestor({ market, dataDir }).run(qube, {
        outputDir: join(dataDir, "out-off"),
        prefer: [node(4)],
      });
      expect(off.status).to.equal("verified");
      expect(off.agreeing).to.include(node(4));
      await market.close();
      expect(fake.leaks()).to.deep.equal([]);
      // on: never a candidate, refused at dispatch, and the run verifies on the others
      ({ fake, market } = await fakeMarket(
        providers(),
        testConfig({ reputation: { url: scores.url, minSuccessRate: 0.8 } }),
      ));
      const found = await market.findProviders(qube.spec, { wanted: 3 });
      expect(found.map((c) => c.id).sort()).to.deep.equal([node(1), node(2), node(3)]);
      const refused = await rejection(market.dispatch({ id: node(4), tiers: ["container"], price: 1n }, qube));
      expect(refused.code).to.equal("GOLEM_PROVIDER_REPUTATION");
      expect(refused.details).to.include("successRate 0.2 < 0.8");
      expect(fake.ledger.agreementsApproved).to.deep.equal([]);
      const requestor = new Requestor({ market, dataDir });
      const on = await requestor.run(qube, { outputDir: join(dataDir, "out-on") });
      requestor.close();
      expect(on.status).to.equal("verified");
      expect(new Set(on.agreeing)).to.deep.equal(new Set([node(1), node(2), node(3)]));
      expect(scores.queries, "scores fetched once and cached").to.have.length(1);
    });

    it("a score service that is down fails the scan with a typed error, rents nothing, and is asked again next time", async () => {
      scores.answer = { kind: "status", status: 500 };
      ({ fake, market } = await fakeMarket(
        providers(),
        testConfig({ reputation: { url: scores.url, minSuccessRate: 0.5 } }),
      ));
      const qube = await testQube();
      const error = await rejection(market.findProviders(qube.spec, { wanted: 3 }));
      expect(error.code).to.equal("GOLEM_REPUTATION_UNAVAILABLE");
      const requestor = new Requestor({ market, dataDir: await mkdtemp(join(tmpdir(), "airqube-golem-rep-")) });
      const failed = await requestor.run(qube, { outputDir: join(tmpdir(), "airqube-golem-rep-never") }).then(
        (r) => r,
        (e: unknown) => e,
      );
      requestor.close();
      expect(JSON.stringify(failed)).to.include("GOLEM_REPUTATION_UNAVAILABLE");
      expect(fake.ledger.agreementsApproved).to.deep.equal([]);
      scores.answer = { kind: "data", body: reputationData({ [node(1)]: GOOD, [node(4)]: POOR }) };
      expect((await market.findProviders(qube.spec, { wanted: 1 })).map((c) => c.id)).to.deep.equal([node(1)]);
    });
  });
});
