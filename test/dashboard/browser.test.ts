/**
 * The dashboard in a real browser: Debian's chromium, headless, driven by puppeteer-core, against a dashboard
 * serving data directories written by the real ledger, seat store, journal and reputation classes (a qube on
 * three providers, the liar outvoted and marked). The views render the expected rows, the charts have data,
 * hostile text stays text, the evidence downloads, the page asks nothing of any other host, and a screenshot
 * of each view is saved in test-artifacts/ for people to look at.
 */

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type { Browser, Page } from "puppeteer-core";
import { type Dashboard, startDashboard } from "../../src/dashboard/server.js";
import { ARTIFACTS, launchChromium } from "./chromium.js";
import { type Fixture, HONEST_A, HOSTILE_TEXT, LIAR, VERIFIED_QUBE, writeFixture } from "./fixture.js";

describe("dashboard: in a real browser (chromium, puppeteer-core)", function () {
  this.timeout(60_000);
  let root: string;
  let fixture: Fixture;
  let dashboard: Dashboard;
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];
  const problems: string[] = [];

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "airqube-dashboard-browser-"));
    fixture = writeFixture(root);
    dashboard = await startDashboard({ ...fixture, port: 0 });
    browser = await launchChromium();
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
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
    const bars = await page.$$eval("#provider-chart rect.bar", (rects) =>
      rects.map((r) => Number(r.getAttribute("data-value"))),
    );
    // six jobs and three refusals
    expect(bars.reduce((a, b) => a + b, 0)).to.equal(9);
    expect(await page.$$eval("#provider-chart rect.bar-failed", (r) => r.length)).to.equal(1);
    const refused = await page.$$eval("#provider-chart rect.bar-refused", (rects) =>
      rects.map((r) => Number(r.getAttribute("data-value"))),
    );
    expect(refused.reduce((a, b) => a + b, 0)).to.equal(3);
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
    // one point per qube; the qube still dispatching has no time yet, so no bar
    expect(await page.$eval("#requestor-chart svg", (svg) => svg.getAttribute("data-points"))).to.equal("3");
    expect(await page.$$eval("#requestor-chart rect.bar", (r) => r.length)).to.equal(2);
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
    // the token was in the fragment of the first navigation only (a fragment is never sent) and in no request
    expect(requests[0]).to.equal(dashboard.url);
    expect(requests.slice(1).some((url) => url.includes(dashboard.token))).to.equal(false);
    expect(problems).to.deep.equal([]);
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
  });
});
