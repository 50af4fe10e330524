/**
 * The integration tier of the Golem backend: golem-js unmodified, configured with nothing but an API URL and
 * an app key, against the loopback yagna (test/golem/http-yagna/) whose providers run every exe-script in
 * Airqube's container sandbox.
 */
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type { GolemMarket } from "../../../src/golem/golem-market.js";
import { node, testQube } from "../helpers.js";
import type { HttpYagna } from "../http-yagna/server.js";
import { httpMarket } from "./fixtures.js";

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
});
