/**
 * The dashboard in a real browser: Debian's chromium, headless, driven by puppeteer-core, against a dashboard
 * serving data directories written by the real ledger, seat store, journal and reputation classes (a qube on
 * three providers, the liar outvoted and marked). The views render the expected rows, the charts (uPlot, served
 * by the dashboard itself) hold and draw the data and show it on hover, hostile text stays text, the evidence
 * downloads, the page asks nothing of any other host and breaks no CSP rule, and a screenshot of each view is
 * saved in test-artifacts/ for people to look at.
 */

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type { Browser, Page } from "puppeteer-core";
import { type Dashboard, startDashboard } from "../../src/dashboard/server.js";
import { ARTIFACTS, hoverBar, launchChromium, readChart, watchCsp } from "./chromium.js";
import {
  FAILED_QUBE,
  type Fixture,
  HONEST_A,
  HOSTILE_TEXT,
  LIAR,
  RUNNING_QUBE,
  VERIFIED_QUBE,
  writeFixture,
} from "./fixture.js";

describe("dashboard: in a real browser (chromium, puppeteer-core)", function () {
  this.timeout(60_000);
  let root: string;
  let fixture: Fixture;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];
  const problems: string[] = [];
  let violations: () => Promise<string[]>;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "airqube-dashboard-browser-"));
    fixture = writeFixture(root);
    dashboard = await startDashboard({ ...fixture, port: 0 });
    browser = await launchChromium();
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    violations = await watchCsp(page);
    page.on("request", (request) => requests.push(request.url()));
    page.on("console", (message) => {
      if (message.type() === "error" || message.type() === "warn") problems.push(message.text());
    });
    page.on("pageerror", (error) => problems.push(String(error)));
  });

  after(async () => {
    await browser?.close();
    await dashboard?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  async function loaded(view: string): Promise<void> {
    await page.waitForSelector(`#${view}[data-loaded="true"]`, { timeout: 10_000 });
  }

  it("provider view: job counts, the jobs-over-time chart, failures as text, the escape-suite matrix with evidence on hover", async () => {
    await page.goto(dashboard.url, { waitUntil: "domcontentloaded" });
    await loaded("provider");
    // the token left the address bar at once
    expect(page.url()).to.equal(`http://127.0.0.1:${dashboard.port}/#provider`);
    const card = (id: string) => page.$eval(`#provider [data-card="${id}"] .value`, (e) => e.textContent);
    expect(await card("jobs")).to.equal("6");
    expect(await card("running")).to.equal("2");
    expect(await card("earned")).to.equal("3 GLM");
    expect(await card("stake")).to.equal("0.5 GLM");
    expect(await card("capacity")).to.equal("2 / 4");
    // the chart: its table of numbers, the uPlot instance's data (stacked), the pixels it drew
    const chart = await readChart(page, "#provider-chart");
    expect(chart.points).to.be.above(1).and.equal(chart.labels.length);
    const sum = (values: (number | null)[] = []) => values.reduce<number>((a, b) => a + (b ?? 0), 0);
    const keys = ["running", "finished", "failed", "abandoned", "refused"];
    // six jobs (two running or committed, two revealed, one failed, one abandoned) and three refusals
    expect(keys.map((key) => sum(chart.table[key]))).to.deep.equal([2, 2, 1, 1, 3]);
    expect(chart.table.failed!.filter((v) => v !== 0)).to.deep.equal([1]);
    // drawn top of the stack first; every bucket's bar as high as its jobs and refusals together
    expect(chart.series.slice(1)).to.deep.equal([...keys].reverse());
    expect(chart.plotted).to.have.length(6);
    expect(chart.plotted[0]).to.have.length(chart.points);
    const totals = chart.labels.map((_, i) => sum(keys.map((key) => chart.table[key]![i]!)));
    const tops = chart.labels.map((_, i) => Math.max(0, ...chart.plotted.slice(1).map((series) => series[i] ?? 0)));
    expect(tops).to.deep.equal(totals);
    expect(sum(totals)).to.equal(9);
    expect(chart.canvas.width).to.be.above(300);
    // the bars fill the plot: as far from its left edge as from its right
    expect(chart.margins[0]).to.be.above(5).and.closeTo(chart.margins[1], 2);
    expect(chart.canvas.height).to.be.above(100);
    for (const key of keys) expect(chart.painted[key], `${key} pixels`).to.be.above(20);
    // hovering the failed job's bar: its time and its counts in the legend (not the stacked height)
    const failedAt = chart.table.failed!.indexOf(1);
    const legend = await hoverBar(page, "#provider-chart", failedAt);
    expect(Object.values(legend)[0]).to.equal(chart.labels[failedAt]);
    expect(legend.failed).to.equal("1");
    expect(Number(legend.refused)).to.equal(chart.table.refused![failedAt]);
    expect(await card("refused")).to.equal("3");
    expect(await page.$eval('#provider tr[data-refusal="AT_CAPACITY"]', (r) => r.textContent)).to.include(
      "all 4 slots are busy",
    );
    // no chain settings in the data directory: said, not guessed
    expect(await page.$eval('#provider [data-earnings="unpaid"]', (p) => p.textContent)).to.include("unpaid provider");
    // the hostile reason is shown as text, never run
    const reasons = await page.$$eval("#provider td", (cells) => cells.map((c) => c.textContent));
    expect(reasons).to.include(HOSTILE_TEXT);
    expect(await page.$$eval("img", (imgs) => imgs.length)).to.equal(0);
    expect(await page.title()).to.equal("Airqube dashboard");
    const matrix = await page.$$eval('[data-tier="container"] tr[data-probe]', (rows) => rows.length);
    expect(matrix).to.equal(3);
    const evidence = '[data-tier="container"] tr[data-probe="1"] td.verdict-pass';
    await page.hover(evidence);
    expect(await page.$eval(evidence, (e) => e.getAttribute("title"))).to.equal(
      "open(/proc/sysrq-trigger, O_WRONLY)=ENOENT",
    );
    expect(await page.$$eval('[data-tier="container"] td.verdict-fail', (e) => e.length)).to.equal(1);
    expect(await page.$$eval("#provider tr[data-job]", (rows) => rows.length)).to.equal(6);
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-provider.png"), fullPage: true });
  });

  it("requestor view: each qube with its agreement groups, timeline and cost; reputation; the evidence downloads", async () => {
    await page.click('.tab[data-view="requestor"]');
    await loaded("requestor");
    expect(await page.$$eval("#requestor details.qube", (d) => d.length)).to.equal(3);
    // one point per qube (newest right); the qube still dispatching has no time yet, so no bar
    const chart = await readChart(page, "#requestor-chart");
    expect(chart.points).to.equal(3);
    expect(chart.labels.map((label) => label.slice(0, 14))).to.deep.equal(
      [VERIFIED_QUBE, FAILED_QUBE, RUNNING_QUBE].map((id) => id.slice(0, 14)),
    );
    const bars = chart.plotted.slice(1).flatMap((series) => series.filter((v) => v !== null));
    expect(bars).to.have.length(2);
    expect(chart.table.finished!.filter((v) => v !== null)).to.have.length(1);
    expect(chart.painted.verified, "verified pixels").to.be.above(20);
    expect(chart.painted["failed or no consensus"], "failed pixels").to.be.above(20);
    expect(chart.painted.dispatching).to.equal(0);
    expect(chart.margins[0]).to.be.above(5).and.closeTo(chart.margins[1], 2);
    const qube = `#requestor details[data-qube="${VERIFIED_QUBE}"]`;
    await page.click(`${qube} summary`);
    const pills = (kind: string) => page.$$eval(`${qube} .pill-${kind}`, (p) => p.map((e) => e.getAttribute("title")));
    expect(await pills("agreeing"))
      .to.have.length(2)
      .and.include(HONEST_A);
    expect(await pills("dissenting")).to.deep.equal([LIAR]);
    expect(await pills("marked")).to.deep.equal([LIAR]);
    const timeline = await page.$$eval(`${qube} .timeline li`, (li) => li.map((e) => e.textContent ?? ""));
    // started, each provider's last journalled step (all three committed), the decision
    expect(timeline).to.have.length(5);
    expect(timeline.filter((t) => t.includes("committed"))).to.have.length(3);
    expect(await page.$eval(`${qube} summary`, (s) => s.textContent)).to.include("2 GLM");
    expect(await page.$eval(`#requestor tr[data-provider="${LIAR}"]`, (r) => r.textContent)).to.include("1");

    const downloads = join(root, "downloads");
    mkdirSync(downloads);
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
    const bundle = JSON.parse(readFileSync(join(downloads, `evidence-${VERIFIED_QUBE}.json`), "utf8"));
    expect(bundle.records[0].provider).to.equal(LIAR);
    expect(bundle.records[0].evidence.dissent.signature).to.equal("sig-c");
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-requestor.png"), fullPage: true });
  });

  it("network view: the providers used with their reputation, this machine's offer, the offers it saw", async () => {
    await page.click('.tab[data-view="network"]');
    await loaded("network");
    expect(await page.$$eval("#network tr[data-peer]", (rows) => rows.length)).to.equal(3);
    expect(await page.$eval(`#network tr[data-peer="${LIAR}"]`, (r) => r.textContent)).to.include("yes");
    expect(await page.$eval("#network", (s) => s.textContent)).to.include("12D3KooWThisProvider");
    // the offers this machine's provider saw, with their prices in GLM; nothing of the malformed entries
    const offer = await page.$eval('#network tr[data-offer="12D3KooWOtherProvider"]', (r) => r.textContent);
    expect(offer).to.include("container, microvm").and.to.include("0.002 GLM + 0.0001 GLM/s");
    expect(await page.$$eval("#network tr[data-offer]", (rows) => rows.length)).to.equal(1);
    expect(await page.$("#network img")).to.equal(null);
    await page.screenshot({ path: join(ARTIFACTS, "dashboard-network.png"), fullPage: true });
  });

  it("asked nothing of any other host, broke no CSP rule, and shows no data without the token", async () => {
    const origin = `http://127.0.0.1:${dashboard.port}/`;
    expect(requests.filter((url) => !url.startsWith(origin) && !url.startsWith("blob:"))).to.deep.equal([]);
    // the charting library came from this server
    expect(requests).to.include.members([`${origin}uPlot.iife.min.js`, `${origin}uPlot.min.css`]);
    // the token was in the fragment of the first navigation only (a fragment is never sent) and in no request
    expect(requests[0]).to.equal(dashboard.url);
    expect(requests.slice(1).some((url) => url.includes(dashboard.token))).to.equal(false);
    expect(problems).to.deep.equal([]);
    expect(await violations()).to.deep.equal([]);
    const context = await browser.createBrowserContext();
    try {
      const stranger = await context.newPage();
      await stranger.goto(origin, { waitUntil: "domcontentloaded" });
      await stranger.waitForSelector("#message:not([hidden])");
      expect(await stranger.$eval("#message", (m) => m.textContent)).to.include("No access token");
      expect(await stranger.$eval("#provider", (s) => s.children.length)).to.equal(0);
    } finally {
      await context.close();
    }
    // the watch sees a violation when there is one: an inline style attribute, which the CSP refuses
    await page.evaluate(() => {
      (
        globalThis as unknown as { document: { body: { setAttribute(name: string, value: string): void } } }
      ).document.body.setAttribute("style", "color: red");
    });
    await page.waitForFunction(() => ((globalThis as { cspViolations?: string[] }).cspViolations ?? []).length > 0);
    const seen = await violations();
    expect(seen).to.have.length(1);
    expect(seen[0]).to.match(/^style-src-attr blocked inline/);
  });
});
