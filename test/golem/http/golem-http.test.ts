/**
 * The integration tier of the Golem backend: golem-js unmodified, configured with nothing but an API URL and
 * an app key, against the loopback yagna (test/golem/http-yagna/) whose providers run every exe-script in
 * Airqube's container sandbox.
 */
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type { GolemDispatch } from "../../../src/golem/golem-dispatch.js";
import type { GolemMarket } from "../../../src/golem/golem-market.js";
import { GolemMarket as Market } from "../../../src/golem/golem-market.js";
import type { AirqubeError } from "../../../src/qube/errors.js";
import { Requestor } from "../../../src/requestor/requestor.js";
import { node, rejection, testQube } from "../helpers.js";
import type { SimProvider } from "../http-yagna/provider.js";
import type { HttpYagna } from "../http-yagna/server.js";
import { GOOD, POOR, reputationData, ScoreServer } from "../reputation-server.js";
import { httpConfig, httpMarket } from "./fixtures.js";

/** A provider that runs the qube, then rewrites its result before packing. */
const liar = (id: string): SimProvider => ({
  id,
  tamper: async (volumes, argv) => {
    if (argv[3] === "airqube-run") await writeFile(join(volumes.get("/output")!, "result.txt"), "forty-two\n");
  },
});

const LIMITS = { wallTimeMs: 10_000, outputBytes: 1024 * 1024, outputFiles: 10 };

describe("GolemMarket over HTTP (golem-js against a loopback yagna) @docker", function () {
  this.timeout(60_000);
  let yagna: HttpYagna | undefined;
  let market: GolemMarket | undefined;
  let stagingDir: string;

  /** One qube run by the unchanged Requestor over these simulated providers; its report, verified, and dataDir. */
  async function verifiedRun(providers: SimProvider[], random?: () => number) {
    ({ yagna, market, stagingDir } = await httpMarket(providers));
    const qube = await testQube({ limits: LIMITS });
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-http-req-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      const result = await requestor.run(qube, { outputDir: join(dataDir, "out"), ...(random ? { random } : {}) });
      expect(result.status, JSON.stringify(result.failures)).to.equal("verified");
      return { result, dataDir };
    } finally {
      requestor.close();
    }
  }

  /** One qube dispatched to a single simulated provider that misbehaves so; the error its commitment fails with. */
  async function downloadFailure(misbehaviour: Omit<SimProvider, "id">): Promise<AirqubeError> {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1), ...misbehaviour }]));
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["container"], price: 10n ** 18n },
      await testQube({ limits: LIMITS }),
    );
    return rejection(dispatch.awaitCommitment());
  }

  afterEach(async () => {
    await market?.close();
    const leaks = yagna?.leaks() ?? [];
    await yagna?.close();
    market = undefined;
    yagna = undefined;
    expect(leaks, "agreements, activities, allocations or services left open").to.deep.equal([]);
    expect(await readdir(stagingDir), "staged files left behind").to.deep.equal([]);
  });

  it("runs one qube on one provider end to end (k = 1): agreement, deploy, upload, run, download", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1) }]));
    const qube = await testQube({ limits: { wallTimeMs: 10_000, outputBytes: 1024 * 1024, outputFiles: 10 } });
    const found = await market.findProviders(qube.spec, { wanted: 1 });
    expect(found.map((c) => c.id)).to.deep.equal([node(1)]);
    const dispatch = await market.dispatch(found[0]!, qube);
    const commitment = await dispatch.awaitCommitment();
    expect(commitment).to.match(/^sha256:[0-9a-f]{64}$/);
    const outputDir = join(await mkdtemp(join(tmpdir(), "airqube-golem-http-out-")), "out");
    const answer = await dispatch.reveal(outputDir);
    expect(answer.exitCode).to.equal(0);
    expect((await readFile(join(outputDir, "result.txt"), "utf8")).trim()).to.equal("3");
    expect(yagna.ledger.agreementsApproved).to.have.length(1);
    expect(yagna.ledger.runs.map((r) => r.argv[3])).to.deep.equal(["airqube-run", "airqube-pack"]);
    // the allocation is released only after the invoice it pays was accepted, in the order yagna saw
    const [agreement] = yagna.ledger.agreementsApproved;
    const [allocation] = yagna.ledger.allocationsCreated;
    expect(yagna.ledger.payments).to.deep.equal([
      `invoice-issued:${agreement}`,
      `invoice-accepted:${agreement}`,
      `allocation-released:${allocation}`,
    ]);
    expect((dispatch as GolemDispatch).settlement).to.equal("accepted");
  });

  it("verifies k = 3 with the unchanged Requestor, pays each invoice and accepts debit notes", async () => {
    const { result, dataDir } = await verifiedRun([
      { id: node(1), debitNoteEveryMs: 500 },
      { id: node(2) },
      { id: node(3) },
    ]);
    expect(new Set(result.agreeing)).to.deep.equal(new Set([node(1), node(2), node(3)]));
    expect((await readFile(join(dataDir, "out", "result.txt"), "utf8")).trim()).to.equal("3");
    await market!.close();
    const issued = yagna!.ledger.invoicesIssued;
    expect(issued).to.have.length(3);
    expect(yagna!.ledger.invoicesAccepted.map((i) => [i.id, i.amount]).sort()).to.deep.equal(
      issued.map((i) => [i.id, i.amount]).sort(),
    );
    expect(yagna!.ledger.debitNotesIssued.length).to.be.greaterThan(0);
    expect(yagna!.ledger.debitNotesAccepted.length).to.be.greaterThan(0);
  });

  it("outvotes a lying provider (its result rewritten in the VM)", async () => {
    // the shuffle puts the liar among the first three
    const { result } = await verifiedRun([{ id: node(1) }, { id: node(2) }, liar(node(3)), { id: node(4) }], () => 0);
    expect(result.dissenting).to.deep.equal([node(3)]);
    expect(result.agreeing).to.not.include(node(3));
  });

  it("replaces a provider that terminates the agreement mid-run", async () => {
    const { result } = await verifiedRun(
      [{ id: node(1) }, { id: node(2), dieOnRun: 1 }, { id: node(3) }, { id: node(4) }],
      () => 0,
    );
    expect(result.agreeing).to.not.include(node(2));
    expect(result.agreeing).to.have.length(3);
    expect(
      yagna!.ledger.runs.some((r) => r.provider === node(2)),
      "the dying provider was rented",
    ).to.equal(true);
    expect(yagna!.ledger.agreementsTerminated.filter((t) => t.by === "Provider").map((t) => t.id)).to.have.length(1);
  });

  it("refuses a download whose SHA3-256 does not match what the provider announces", async () => {
    const error = await downloadFailure({ wrongHash: true });
    expect(error.code).to.equal("GOLEM_DOWNLOAD_CORRUPT");
    expect(error.fault).to.equal("peer");
  });

  it("refuses a download whose chunks come at the wrong offsets, without crashing", async () => {
    const error = await downloadFailure({ misplaceChunks: true });
    expect(error.code).to.equal("GOLEM_DOWNLOAD_INVALID");
    expect(error.details).to.include("expected 0");
  });

  it("refuses a download over the cap at the first chunk past it, without buffering the rest", async () => {
    const error = await downloadFailure({ extraBytes: 4 * 1024 * 1024 });
    expect(error.code).to.equal("GOLEM_DOWNLOAD_OVERSIZE");
    // 4 MiB + the tar would be 65 chunks; the provider's transfer stopped at the first refused one
    expect(yagna!.gsb.chunksSent).to.be.at.most(2);
  });

  it("survives 408 and 500 answers and slow events while polling", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1) }]));
    yagna.faults.push(
      { method: "GET", path: /\/exec\/batch-/, status: 408, times: 2 },
      { method: "GET", path: /\/exec\/batch-/, status: 500, times: 1 },
      { method: "GET", path: /\/invoiceEvents$/, status: 500, times: 2 },
      // slow answers: the first proposal events and the agreement's approval come late
      { method: "GET", path: /\/demands\/[^/]+\/events$/, delayMs: 1500, times: 1 },
      { method: "POST", path: /\/agreements\/[^/]+\/wait$/, delayMs: 1500, times: 1 },
      // golem-js's finalization stops at a refused activity destruction: Airqube ends the rental itself
      { method: "DELETE", path: /\/activity-api\/v1\/activity\/[^/]+$/, status: 500, times: 1 },
    );
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["container"], price: 10n ** 18n },
      await testQube({ limits: LIMITS }),
    );
    expect(await dispatch.awaitCommitment()).to.match(/^sha256:[0-9a-f]{64}$/);
    const answer = await dispatch.reveal(join(await mkdtemp(join(tmpdir(), "airqube-golem-http-out-")), "out"));
    expect(answer.exitCode).to.equal(0);
    expect(yagna.ledger.faults.filter((f) => f.includes("/exec/"))).to.have.length(3);
    expect(
      yagna.faults.every((f) => f.times === 0),
      "every fault rule was hit",
    ).to.equal(true);
    // ended anyway, paid, and the allocation released after the invoice was accepted
    const [agreement] = yagna.ledger.agreementsApproved;
    expect(yagna.ledger.agreementsTerminated).to.deep.equal([{ id: agreement, by: "Requestor" }]);
    expect(yagna.ledger.payments).to.deep.equal([
      `invoice-issued:${agreement}`,
      `invoice-accepted:${agreement}`,
      `allocation-released:${yagna.ledger.allocationsCreated[0]}`,
    ]);
  });

  it("refuses an upload outside the image's volumes, as the real exe-unit does", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1) }], {
      layout: { input: "/etc", output: "/output" },
    }));
    const error = await rejection(
      market.dispatch({ id: node(1), tiers: ["container"], price: 10n ** 17n }, await testQube({ limits: LIMITS })),
    );
    expect(error.code).to.equal("GOLEM_UPLOAD_FAILED");
    expect(error.details).to.include("not inside a volume");
    expect(yagna.ledger.runs).to.deep.equal([]);
  });

  it("pays only what was agreed: an overbilled invoice and debit notes are refused, the allocation released", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1), overbill: 100_000, debitNoteEveryMs: 300 }]));
    const y = yagna;
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["container"], price: 10n ** 17n },
      await testQube({ limits: LIMITS }),
    );
    expect(await dispatch.awaitCommitment()).to.match(/^sha256:[0-9a-f]{64}$/);
    await dispatch.reveal(join(await mkdtemp(join(tmpdir(), "airqube-golem-http-out-")), "out"));
    await until(() => y.ledger.invoicesRejected.length > 0, 5000);
    expect(y.ledger.invoicesIssued).to.have.length(1);
    expect(Number(y.ledger.invoicesIssued[0]!.amount)).to.be.greaterThan(0.1);
    expect(y.ledger.invoicesRejected.map((r) => r.id)).to.deep.equal([y.ledger.invoicesIssued[0]!.id]);
    expect(y.ledger.invoicesAccepted).to.deep.equal([]);
    expect(y.ledger.debitNotesIssued.length).to.be.greaterThan(0);
    expect(y.ledger.debitNotesAccepted).to.deep.equal([]);
    expect(y.ledger.allocationsReleased).to.deep.equal(y.ledger.allocationsCreated);
    const [agreement] = y.ledger.agreementsApproved;
    expect(y.ledger.payments).to.deep.equal([
      `invoice-issued:${agreement}`,
      `invoice-rejected:${agreement}`,
      `allocation-released:${y.ledger.allocationsCreated[0]}`,
    ]);
    expect((dispatch as GolemDispatch).settlement).to.equal("rejected");
  });

  it("fails fast on a provider that rejects the agreement or the counter-proposal, renting nothing", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([
      { id: node(1), rejectAgreement: "busy" },
      { id: node(2), rejectCounter: "price too low" },
    ]));
    const qube = await testQube({ limits: LIMITS });
    const started = Date.now();
    const agreement = await rejection(market.dispatch({ id: node(1), tiers: ["container"], price: 10n ** 17n }, qube));
    expect(agreement.code).to.equal("PROPOSAL_REJECTED");
    expect(agreement.details).to.include("busy");
    const counter = await rejection(market.dispatch({ id: node(2), tiers: ["container"], price: 10n ** 17n }, qube));
    expect(counter.code).to.equal("PROPOSAL_REJECTED");
    expect(counter.details).to.include("price too low");
    expect(Date.now() - started).to.be.lessThan(8000);
    expect(yagna.ledger.agreementsRejected).to.have.length(1);
    expect(yagna.ledger.activitiesCreated).to.deep.equal([]);
    expect(yagna.ledger.allocationsReleased).to.deep.equal(yagna.ledger.allocationsCreated);
  });

  it("releases the rental and the allocation when the invoice comes too late", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1), invoiceDelayMs: 30_000 }], {
      timeouts: {
        scanMs: 1000,
        negotiationMs: 10_000,
        deployMs: 20_000,
        transferMs: 20_000,
        finalizeMs: 1500,
        runGraceMs: 20_000,
      },
    }));
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["container"], price: 10n ** 17n },
      await testQube({ limits: LIMITS }),
    );
    expect(await dispatch.awaitCommitment()).to.match(/^sha256:[0-9a-f]{64}$/);
    await dispatch.reveal(join(await mkdtemp(join(tmpdir(), "airqube-golem-http-out-")), "out"));
    expect(yagna.ledger.invoicesIssued).to.deep.equal([]);
    expect(yagna.ledger.agreementsTerminated.map((t) => t.by)).to.deep.equal(["Requestor"]);
    expect(yagna.ledger.allocationsReleased).to.deep.equal(yagna.ledger.allocationsCreated);
    // released at the finalize deadline, with no invoice
    expect(yagna.ledger.payments).to.deep.equal([`allocation-released:${yagna.ledger.allocationsCreated[0]}`]);
    expect((dispatch as GolemDispatch).settlement).to.equal("deadline");
  });

  it("a 500 storm on activity creation is a typed error, the rental and allocation released", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1) }]));
    yagna.faults.push({ method: "POST", path: /\/activity$/, status: 500, times: 20 });
    const error = await rejection(
      market.dispatch({ id: node(1), tiers: ["container"], price: 10n ** 17n }, await testQube({ limits: LIMITS })),
    );
    expect(error.code).to.equal("GOLEM_DEPLOY_FAILED");
    expect(error.fault).to.equal("peer");
    expect(error.details).to.match(/^GolemWorkError ActivityCreationFailed: /);
    expect(yagna.ledger.faults.some((f) => f.startsWith("POST /activity-api/v1/activity 500"))).to.equal(true);
    expect(yagna.ledger.activitiesCreated).to.deep.equal([]);
    expect(yagna.ledger.agreementsTerminated.map((t) => t.by)).to.deep.equal(["Requestor"]);
    expect(yagna.ledger.allocationsReleased).to.deep.equal(yagna.ledger.allocationsCreated);
  });

  it("reputation pre-filter: a provider below the minimum is never rented; with the filter off it is", async () => {
    const scores = await ScoreServer.start();
    let plain: GolemMarket | undefined;
    try {
      scores.answer = { kind: "data", body: reputationData({ [node(1)]: GOOD, [node(2)]: POOR }) };
      ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1) }, { id: node(2) }], {
        reputation: { url: scores.url, minSuccessRate: 0.8 },
      }));
      const qube = await testQube({ limits: LIMITS });
      expect((await market.findProviders(qube.spec, { wanted: 2 })).map((c) => c.id)).to.deep.equal([node(1)]);
      const refused = await rejection(market.dispatch({ id: node(2), tiers: ["container"], price: 10n ** 17n }, qube));
      expect(refused.code).to.equal("GOLEM_PROVIDER_REPUTATION");
      expect(yagna.ledger.agreementsApproved).to.deep.equal([]);
      expect(yagna.ledger.allocationsCreated).to.deep.equal([]);
      expect(scores.queries.map((q) => q.searchParams.get("network"))).to.deep.equal(["holesky"]);
      // filter off (same yagna): the same provider is found and rented
      plain = await Market.connect(httpConfig(yagna), { stagingDir });
      const all = (await plain.findProviders(qube.spec, { wanted: 2 })).map((c) => c.id);
      expect(all.sort()).to.deep.equal([node(1), node(2)]);
      const rented = await plain.dispatch({ id: node(2), tiers: ["container"], price: 10n ** 17n }, qube);
      expect(yagna.ledger.agreementsApproved).to.have.length(1);
      await (rented as GolemDispatch).release();
      await (rented as GolemDispatch).dispose();
      await plain.close();
      // the CLI's path: --golem-min-success-rate over the config file's golem.reputation
      const { connectGolem } = await import("../../../src/cli/run-command.js");
      const saved = { url: process.env.YAGNA_API_URL, key: process.env.YAGNA_APPKEY };
      process.env.YAGNA_API_URL = yagna.url;
      process.env.YAGNA_APPKEY = yagna.appKey;
      try {
        plain = (await connectGolem(
          { golem: { reputation: { url: scores.url, minSuccessRate: 0.1 }, timeouts: { scanMs: 1000 } } },
          AbortSignal.timeout(10_000),
          { minSuccessRate: 0.8 },
        )) as GolemMarket;
      } finally {
        for (const [name, value] of [
          ["YAGNA_API_URL", saved.url],
          ["YAGNA_APPKEY", saved.key],
        ] as const)
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
      }
      expect(plain.config.reputation?.minSuccessRate).to.equal(0.8);
      expect((await plain.findProviders(qube.spec, { wanted: 2 })).map((c) => c.id)).to.deep.equal([node(1)]);
    } finally {
      await plain?.close();
      await scores.close();
    }
  });
});

/** Waits (at most `ms`) until `condition()` holds. */
async function until(condition: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}
