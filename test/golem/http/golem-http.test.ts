/**
 * The integration tier of the Golem backend: golem-js unmodified, configured with nothing but an API URL and
 * an app key, against the loopback yagna (test/golem/http-yagna/) whose providers run every exe-script in
 * Airqube's container sandbox.
 */
import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type { GolemMarket } from "../../../src/golem/golem-market.js";
import { AirqubeError } from "../../../src/qube/errors.js";
import { Requestor } from "../../../src/requestor/requestor.js";
import { node, testQube } from "../helpers.js";
import type { SimProvider } from "../http-yagna/provider.js";
import type { HttpYagna } from "../http-yagna/server.js";
import { httpMarket } from "./fixtures.js";

/** A provider that runs the qube, then rewrites its result before packing. */
const liar = (id: string): SimProvider => ({
  id,
  tamper: async (volumes, argv) => {
    if (argv[3] === "airqube-run") await writeFile(join(volumes.get("/output")!, "result.txt"), "forty-two\n");
  },
});

async function rejection(promise: Promise<unknown>): Promise<AirqubeError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(AirqubeError);
    return error as AirqubeError;
  }
  expect.fail("expected a rejection");
}

const LIMITS = { wallTimeMs: 10_000, outputBytes: 1024 * 1024, outputFiles: 10 };

describe("GolemMarket over HTTP (golem-js against a loopback yagna) @docker", function () {
  this.timeout(60_000);
  let yagna: HttpYagna | undefined;
  let market: GolemMarket | undefined;
  let stagingDir: string;

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
  });

  it("verifies k = 3 with the unchanged Requestor, pays each invoice and accepts debit notes", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([
      { id: node(1), debitNoteEveryMs: 500 },
      { id: node(2) },
      { id: node(3) },
    ]));
    const qube = await testQube({ limits: LIMITS });
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-http-req-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      const result = await requestor.run(qube, { outputDir: join(dataDir, "out") });
      expect(result.status, JSON.stringify(result.failures)).to.equal("verified");
      expect(new Set(result.agreeing)).to.deep.equal(new Set([node(1), node(2), node(3)]));
      expect((await readFile(join(dataDir, "out", "result.txt"), "utf8")).trim()).to.equal("3");
    } finally {
      requestor.close();
    }
    await market.close();
    const issued = yagna.ledger.invoicesIssued;
    expect(issued).to.have.length(3);
    expect(yagna.ledger.invoicesAccepted.map((i) => [i.id, i.amount]).sort()).to.deep.equal(
      issued.map((i) => [i.id, i.amount]).sort(),
    );
    expect(yagna.ledger.debitNotesIssued.length).to.be.greaterThan(0);
    expect(yagna.ledger.debitNotesAccepted.length).to.be.greaterThan(0);
  });

  it("outvotes a lying provider (its result rewritten in the VM)", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([
      { id: node(1) },
      { id: node(2) },
      liar(node(3)),
      { id: node(4) },
    ]));
    const qube = await testQube({ limits: LIMITS });
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-http-req-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      // the shuffle puts the liar among the first three
      const result = await requestor.run(qube, { outputDir: join(dataDir, "out"), random: () => 0 });
      expect(result.status, JSON.stringify(result.failures)).to.equal("verified");
      expect(result.dissenting).to.deep.equal([node(3)]);
      expect(result.agreeing).to.not.include(node(3));
    } finally {
      requestor.close();
    }
  });

  it("replaces a provider that terminates the agreement mid-run", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([
      { id: node(1) },
      { id: node(2), dieOnRun: 1 },
      { id: node(3) },
      { id: node(4) },
    ]));
    const qube = await testQube({ limits: LIMITS });
    const dataDir = await mkdtemp(join(tmpdir(), "airqube-golem-http-req-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      const result = await requestor.run(qube, { outputDir: join(dataDir, "out"), random: () => 0 });
      expect(result.status, JSON.stringify(result.failures)).to.equal("verified");
      expect(result.agreeing).to.not.include(node(2));
      expect(result.agreeing).to.have.length(3);
    } finally {
      requestor.close();
    }
    expect(
      yagna.ledger.runs.some((r) => r.provider === node(2)),
      "the dying provider was rented",
    ).to.equal(true);
    expect(yagna.ledger.agreementsTerminated.filter((t) => t.by === "Provider").map((t) => t.id)).to.have.length(1);
  });

  it("refuses a download whose SHA3-256 does not match what the provider announces", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1), wrongHash: true }]));
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["container"], price: 10n ** 18n },
      await testQube({ limits: LIMITS }),
    );
    const error = await rejection(dispatch.awaitCommitment());
    expect(error.code).to.equal("GOLEM_DOWNLOAD_CORRUPT");
    expect(error.fault).to.equal("peer");
  });

  it("refuses a download over the cap at the first chunk past it, without buffering the rest", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1), extraBytes: 4 * 1024 * 1024 }]));
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["container"], price: 10n ** 18n },
      await testQube({ limits: LIMITS }),
    );
    const error = await rejection(dispatch.awaitCommitment());
    expect(error.code).to.equal("GOLEM_DOWNLOAD_OVERSIZE");
    // 4 MiB + the tar would be 65 chunks; the provider's transfer stopped at the first refused one
    expect(yagna.gsb.chunksSent).to.be.at.most(2);
  });

  it("survives 408 and 500 answers while polling batch results", async () => {
    ({ yagna, market, stagingDir } = await httpMarket([{ id: node(1) }]));
    yagna.faults.push(
      { method: "GET", path: /\/exec\/batch-/, status: 408, times: 2 },
      { method: "GET", path: /\/exec\/batch-/, status: 500, times: 1 },
      { method: "GET", path: /\/invoiceEvents$/, status: 500, times: 2 },
    );
    const dispatch = await market.dispatch(
      { id: node(1), tiers: ["container"], price: 10n ** 18n },
      await testQube({ limits: LIMITS }),
    );
    expect(await dispatch.awaitCommitment()).to.match(/^sha256:[0-9a-f]{64}$/);
    const answer = await dispatch.reveal(join(await mkdtemp(join(tmpdir(), "airqube-golem-http-out-")), "out"));
    expect(answer.exitCode).to.equal(0);
    expect(yagna.ledger.faults.filter((f) => f.includes("/exec/"))).to.have.length(3);
  });
});
