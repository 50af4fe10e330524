/**
 * The dashboard in a real browser over the data directories of a REAL paid devnet (issue 21's test): four
 * provider processes (three honest, one that lies) on a local chain; a requestor in this process runs two
 * qubes at k = 3 (the first with the liar, outvoted by a tie-breaker, slashed and marked; the second on the
 * honest ones) and a third that every provider refuses when asked (too long); an honest provider withdraws
 * what it was credited. Then the dashboard serves the requestor's and that provider's data directories and
 * headless chromium checks the views: the rows, the refusal, the liar marked as dissenting, the charts' data,
 * the earnings read from the chain, the evidence download, no CSP violation. Screenshots go to test-artifacts/ (devnet-*.png).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import type { Browser, Page } from "puppeteer-core";
import { EscrowClient } from "../../src/chain/escrow-client.js";
import { type Dashboard, startDashboard } from "../../src/dashboard/server.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { Identity } from "../../src/qube/index.js";
import { sealQube } from "../../src/requestor/draft.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { EscrowPayments } from "../../src/requestor/payments.js";
import { Requestor } from "../../src/requestor/requestor.js";
import { seededRandom } from "../../src/requestor/simulate.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";
import { ARTIFACTS, hoverBar, launchChromium, readChart, watchCsp } from "./chromium.js";

const limits = { wallTimeMs: 10_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 };

describe("dashboard: in a real browser over a paid devnet's data directories @docker", function () {
  this.timeout(300_000);
  let devnet: Devnet;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const requestorDir = tmp("aq-dash-req-");
  const qubeIds: string[] = [];
  let liar: string;
  let honest: string[];
  let withdrawTx: string;
  let requestorPeer: string;
  let refusedQube: string;
  const problems: string[] = [];
  let violations: () => Promise<string[]>;

  before(async () => {
    const started = Date.now();
    devnet = await Devnet.start({
      providers: ["honest", "honest", "honest", "lie"].map((behaviour) => ({ behaviour })),
      probeCache: PROBE_CACHE,
      chain: true,
    });
    const chain = devnet.chain!;
    liar = devnet.providers.find((p) => p.behaviour === "lie")!.peerId;
    honest = devnet.providers.filter((p) => p.behaviour === "honest").map((p) => p.peerId);
    const identity = Identity.fromSeed(randomBytes(32));
    requestorPeer = identity.peerId;
    const market = await Libp2pMarket.connect({ identity, bootstrap: [devnet.bootstrap] });
    const payments = await EscrowPayments.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.requestor.privateKey,
      escrow: chain.escrow,
    });
    const requestor = new Requestor({ market, dataDir: requestorDir, payments });
    try {
      // every provider's offer known first, so that the rounds below are never short of providers
      for (let i = 0; i < 100 && market.offers.list().length < devnet.providers.length; i++) {
        await market.offers.queryConnected();
        await new Promise((r) => setTimeout(r, 100));
      }
      const seal = (text: string) =>
        sealQube(
          {
            image: "airqube/busybox:latest",
            command: ["sh", "-c", `echo ${text} > /output/result`],
            outputs: ["result"],
            limits,
            redundancy: { mode: "fixed", k: 3, quorum: 2 },
          },
          identity,
        );
      const first = await requestor.run(await seal("dashboard-1"), {
        outputDir: tmp("aq-dash-out-"),
        prefer: [liar],
        random: seededRandom(3),
      });
      const label = JSON.stringify({ f: first.failures, r: first.reason, d: first.dissenting });
      expect(first.status, label).to.equal("verified");
      expect(first.dissenting, label).to.deep.equal([liar]);
      const allowed = new Set(honest);
      const second = await requestor.run(await seal("dashboard-2"), {
        outputDir: tmp("aq-dash-out-"),
        filter: (c) => allowed.has(c.id),
      });
      expect(second.status, JSON.stringify(second.failures)).to.equal("verified");
      qubeIds.push(first.qubeId, second.qubeId);
      // a qube longer than any provider allows: every provider refuses it when asked, before money is locked
      const tooLong = await sealQube(
        {
          image: "airqube/busybox:latest",
          command: ["true"],
          outputs: ["result"],
          limits: { ...limits, wallTimeMs: 7_200_000 },
          redundancy: { mode: "fixed", k: 3, quorum: 2 },
        },
        identity,
      );
      refusedQube = tooLong.spec.id;
      const refused = await requestor.run(tooLong, { outputDir: tmp("aq-dash-out-") }).then(
        (result) => result.status,
        (error: { code?: string }) => error.code,
      );
      expect(refused).to.not.equal("verified");
    } finally {
      requestor.close();
      payments.dispose();
      await market.close();
    }
    // the first honest provider withdraws what the escrow credited it so far
    const shown = devnet.providers.find((p) => p.peerId === honest[0])!;
    const payout = await EscrowClient.connect({
      rpcUrl: chain.rpcUrl,
      escrow: chain.escrow,
      privateKey: readFileSync(join(shown.dataDir, "payout.key"), "utf8").trim(),
    });
    try {
      withdrawTx = (await payout.withdraw()).hash;
    } finally {
      payout.close();
    }
    dashboard = await startDashboard({
      requestorDir,
      providerDir: shown.dataDir,
      probeCache: PROBE_CACHE,
      home: tmp("aq-dash-home-"),
      port: 0,
      earningsTtlMs: 0,
    });
    browser = await launchChromium();
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    violations = await watchCsp(page);
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warn") problems.push(message.text());
    });
    page.on("pageerror", (error) => problems.push(String(error)));
    console.log(
      `      devnet up, three qubes run (one refused), withdrawn: ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  });

  after(async () => {
    await browser?.close();
    await dashboard?.close();
    await devnet?.stop(3000);
  });

  async function loaded(view: string, selector: string): Promise<void> {
    await page.waitForSelector(`#${view}[data-loaded="true"] ${selector}`, { timeout: 15_000 });
  }

  it("provider view: the two jobs revealed, the chart, the escape suite, credits and the withdrawal from the chain", async () => {
    await page.goto(dashboard.url, { waitUntil: "domcontentloaded" });
    await loaded("provider", '[data-earnings="paid"]');
    const card = (id: string) => page.$eval(`#provider [data-card="${id}"] .value`, (e) => e.textContent);
    expect(await card("jobs")).to.equal("2");
    // the refused qube: in the refusals by reason and one by one (asked, by this requestor), and in the chart
    expect(Number(await card("refused"))).to.be.at.least(1);
    expect(await page.$eval('#provider tr[data-refusal="LIMITS_EXCEEDED"]', (r) => r.textContent)).to.include(
      "wallTimeMs 7200000 is over",
    );
    const latest = await page.$$eval("#provider details.refusals tbody tr", (rows) =>
      rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent)),
    );
    expect(latest[0]!.slice(1, 2).concat(latest[0]!.slice(4, 5))).to.deep.equal(["query", "LIMITS_EXCEEDED"]);
    expect(latest[0]![2]).to.equal(`${requestorPeer.slice(0, 12)}…`);
    // the jobs-over-time chart (uPlot): its numbers, the stacked data it plotted, the pixels it drew
    const chart = await readChart(page, "#provider-chart");
    const sum = (values: (number | null)[] = []) => values.reduce<number>((a, b) => a + (b ?? 0), 0);
    expect(sum(chart.table.refused)).to.equal(Number(await card("refused")));
    expect(await card("finished")).to.equal("2");
    const states = await page.$$eval("#provider tr[data-job]", (rows) =>
      rows.map((r) => r.querySelector("td:nth-child(5)")?.textContent),
    );
    expect(states).to.deep.equal(["revealed", "revealed"]);
    expect(sum(chart.table.finished)).to.equal(2);
    const keys = ["running", "finished", "failed", "abandoned", "refused"];
    const totals = chart.labels.map((_, i) => sum(keys.map((key) => chart.table[key]![i]!)));
    expect(sum(totals)).to.equal(2 + Number(await card("refused")));
    expect(chart.plotted[0]).to.have.length(chart.points);
    const tops = chart.labels.map((_, i) => Math.max(0, ...chart.plotted.slice(1).map((series) => series[i] ?? 0)));
    expect(tops).to.deep.equal(totals);
    expect(chart.canvas.width).to.be.above(300);
    // the bars fill the plot: as far from its left edge as from its right
    expect(chart.margins[0]).to.be.above(5).and.closeTo(chart.margins[1], 2);
    expect(chart.painted.finished, "finished pixels").to.be.above(20);
    expect(chart.painted.refused, "refused pixels").to.be.above(20);
    // the legend under the cursor: the bucket of the refusal, its count
    const refusedAt = chart.table.refused!.findIndex((v) => (v ?? 0) > 0);
    const legend = await hoverBar(page, "#provider-chart", refusedAt);
    expect(Object.values(legend)[0]).to.equal(chart.labels[refusedAt]);
    expect(legend.refused).to.equal(String(chart.table.refused![refusedAt]));
    // the escape suite that admitted the container tier, row by row
    expect(await page.$$eval('[data-tier="container"] tr[data-probe]', (rows) => rows.length)).to.be.above(5);
    // on chain: a credit per job (the first with a share of the liar's stake), one withdrawal of them all
    expect(await page.$$eval("#provider tr[data-credit]", (rows) => rows.length)).to.equal(2);
    expect(
      await page.$$eval("#provider tr[data-withdrawal]", (rows) => rows.map((r) => r.getAttribute("data-withdrawal"))),
    ).to.deep.equal([withdrawTx]);
    expect(await card("withdrawable")).to.equal("0 GLM");
    expect(await card("credited")).to.equal(await card("withdrawn"));
    expect(await card("credited"))
      .to.match(/^\d+(\.\d+)? GLM$/)
      .and.not.equal("0 GLM");
    const credits = await readChart(page, "#credits-chart");
    expect(credits.points).to.equal(2);
    expect(credits.plotted[1]!.filter((v) => v !== null)).to.have.length(2);
    expect(credits.table.credited!.every((v) => v !== null && v > 0)).to.equal(true);
    expect(credits.painted.credited, "credit pixels").to.be.above(20);
    expect(credits.margins[0]).to.be.above(5).and.closeTo(credits.margins[1], 2);
    await page.screenshot({ path: join(ARTIFACTS, "devnet-provider.png"), fullPage: true });
  });

  it("requestor view: two qubes verified, the refused one failed, the liar dissenting and marked, the chart, the evidence downloads", async () => {
    await page.click('.tab[data-view="requestor"]');
    await loaded("requestor", "details.qube");
    expect(
      await page.$$eval("#requestor details.qube", (d) => d.map((e) => e.getAttribute("data-qube")).sort()),
    ).to.deep.equal([...qubeIds, refusedQube].sort());
    // a point per qube; a bar for each verified one (the refused one may end too fast for a bar of 0.1 s)
    const chart = await readChart(page, "#requestor-chart");
    expect(chart.points).to.equal(3);
    expect(chart.table.finished!.filter((v) => v !== null && v > 0)).to.have.length(2);
    const verified = chart.series.indexOf("verified");
    expect(chart.plotted[verified]!.filter((v) => v !== null)).to.have.length(2);
    expect(chart.painted.verified, "verified pixels").to.be.above(20);
    expect(await page.$eval(`#requestor details[data-qube="${refusedQube}"] summary`, (s) => s.textContent)).to.include(
      "failed",
    );
    const qube = `#requestor details[data-qube="${qubeIds[0]}"]`;
    await page.click(`${qube} summary`);
    const pills = (kind: string) => page.$$eval(`${qube} .pill-${kind}`, (p) => p.map((e) => e.getAttribute("title")));
    const agreeing = await pills("agreeing");
    expect(agreeing.length).to.be.at.least(2);
    expect(honest).to.include.members(agreeing);
    expect(await pills("dissenting")).to.deep.equal([liar]);
    expect(await pills("marked")).to.deep.equal([liar]);
    expect(await page.$eval(`#requestor tr[data-provider="${liar}"]`, (r) => r.textContent)).to.include("1");

    const downloads = tmp("aq-dash-dl-");
    mkdirSync(downloads, { recursive: true });
    const session = await page.createCDPSession();
    await session.send("Browser.setDownloadBehavior", {
      behavior: "allow",
      downloadPath: downloads,
      eventsEnabled: true,
    });
    const done = new Promise<void>((resolve) =>
      session.on("Browser.downloadProgress", (event) => {
        if (event.state === "completed") resolve();
      }),
    );
    await page.click(`${qube} button.download`);
    await done;
    const bundle = JSON.parse(readFileSync(join(downloads, `evidence-${qubeIds[0]}.json`), "utf8"));
    expect(bundle.records.map((r: { provider: string }) => r.provider)).to.deep.equal([liar]);
    await page.screenshot({ path: join(ARTIFACTS, "devnet-requestor.png"), fullPage: true });
    expect(problems).to.deep.equal([]);
    expect(await violations()).to.deep.equal([]);
  });

  it("network view: the offers this provider's agent saw of the other providers, with their prices", async () => {
    await page.click('.tab[data-view="network"]');
    await loaded("network", "h2");
    const others = devnet.providers.filter((p) => p.peerId !== honest[0]).map((p) => p.peerId);
    const seen = await page.$$eval("#network tr[data-offer]", (rows) => rows.map((r) => r.getAttribute("data-offer")));
    expect(seen.sort()).to.deep.equal(others.sort());
    expect(await page.$eval(`#network tr[data-offer="${others[0]}"]`, (r) => r.textContent)).to.include("GLM/s");
    await page.screenshot({ path: join(ARTIFACTS, "devnet-network.png"), fullPage: true });
    expect(problems).to.deep.equal([]);
    expect(await violations()).to.deep.equal([]);
  });
});
