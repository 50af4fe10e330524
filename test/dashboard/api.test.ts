import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { expect } from "chai";
import { pino } from "pino";
import { MAX_PAGE_LIMIT } from "../../src/dashboard/limits.js";
import {
  CHART_LIBRARY,
  CONTENT_SECURITY_POLICY,
  chartLibraryDir,
  type Dashboard,
  startDashboard,
} from "../../src/dashboard/server.js";
import { packageRoot } from "../../src/package-root.js";
import { JobLedger } from "../../src/provider/ledger.js";
import { UserError } from "../../src/qube/errors.js";
import { RequestorJournal } from "../../src/requestor/journal.js";
import {
  FAILED_QUBE,
  type Fixture,
  GLM,
  HONEST_A,
  HONEST_B,
  HOSTILE_TEXT,
  LIAR,
  RUNNING_QUBE,
  VERIFIED_QUBE,
  writeFixture,
} from "./fixture.js";

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: the tests read JSON bodies field by field
  json: () => any;
}

/** One raw HTTP request (node:http, so that Host, Origin and Cookie are exactly what the test says). */
function call(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: "127.0.0.1", port, path, method: options.method ?? "GET", headers: options.headers ?? {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("dashboard: JSON API", function () {
  this.timeout(30_000);
  let root: string;
  let fixture: Fixture;
  let dashboard: Dashboard;
  let logs = "";
  const auth = () => ({ Authorization: `Bearer ${dashboard.token}` });
  const get = (path: string, headers: Record<string, string> = {}) =>
    call(dashboard.port, path, { headers: { ...auth(), ...headers } });

  before(async () => {
    root = mkdtempSync(join(tmpdir(), "airqube-dashboard-"));
    fixture = writeFixture(root);
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logs += chunk.toString();
        done();
      },
    });
    dashboard = await startDashboard({ ...fixture, port: 0, logger: pino({ level: "trace" }, sink) });
  });

  after(async () => {
    await dashboard?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("serves the page without the token, with a strict CSP and no data in it", async () => {
    const page = await call(dashboard.port, "/");
    expect(page.status).to.equal(200);
    expect(page.headers["content-type"]).to.match(/^text\/html/);
    expect(page.headers["content-security-policy"]).to.equal(CONTENT_SECURITY_POLICY);
    expect(CONTENT_SECURITY_POLICY).to.include("default-src 'none'").and.include("connect-src 'self'");
    expect(page.text).to.include('<script type="module" src="/app.js">').and.not.include(VERIFIED_QUBE);
    for (const asset of ["/app.js", "/charts.js", "/style.css"]) {
      const reply = await call(dashboard.port, asset);
      expect(reply.status, asset).to.equal(200);
      // every script, style and font comes from this server
      expect(reply.text, asset).to.not.match(/https?:\/\//);
    }
    // the charting library: uPlot's browser build and style sheet, byte for byte those of the installed package
    expect(page.text).to.include('<script defer src="/uPlot.iife.min.js">').and.include('href="/uPlot.min.css"');
    const library = chartLibraryDir();
    expect(library).to.be.a("string");
    const installed = JSON.parse(readFileSync(join(library!, "package.json"), "utf8")) as { version: string };
    const manifest = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    // a run-time dependency, so that an installed airqube has it
    expect(manifest.dependencies.uplot).to.match(/^\^?1\.6\./);
    expect(installed.version).to.match(/^1\.6\./);
    for (const [asset, { file, type }] of Object.entries(CHART_LIBRARY)) {
      const reply = await call(dashboard.port, asset);
      expect(reply.status, asset).to.equal(200);
      expect(reply.headers["content-type"], asset).to.equal(type);
      expect(reply.headers["content-security-policy"], asset).to.equal(CONTENT_SECURITY_POLICY);
      expect(reply.text, asset).to.equal(readFileSync(join(library!, file), "utf8"));
      // no address in it but the one of the project in its licence comment; it loads nothing by itself
      expect(reply.text.match(/https?:\/\/[^\s"'*)]+/g) ?? [], asset).to.deep.equal(
        asset.endsWith(".js") ? ["https://github.com/leeoniya/uPlot"] : [],
      );
      expect(reply.text, asset).to.not.match(/\bfetch\(|XMLHttpRequest|WebSocket|importScripts|@import|url\(/);
    }
    // served like the page's own files: no data in them, so without the token (a <script src> cannot send it),
    // but only to this loopback listener, never to another site, read-only
    const uplot = "/uPlot.iife.min.js";
    expect((await call(dashboard.port, uplot, { headers: { Host: "evil.example" } })).status).to.equal(421);
    expect((await call(dashboard.port, uplot, { headers: { "Sec-Fetch-Site": "cross-site" } })).status).to.equal(403);
    expect((await call(dashboard.port, uplot, { method: "POST" })).status).to.equal(405);
    expect(page.text).to.not.include("http");
    expect((await call(dashboard.port, "/../../etc/passwd")).status).to.equal(404);
  });

  it("/api lists the endpoints", async () => {
    const reply = await get("/api");
    expect(reply.status).to.equal(200);
    expect(reply.json().endpoints.map((e: { path: string }) => e.path)).to.include.members([
      "/api/provider?limit=&offset=",
      "/api/requestor?limit=&offset=",
      "/api/network",
      "/api/earnings",
      "/api/evidence/:qubeId",
    ]);
  });

  it("/api/earnings: a provider without chain settings is an unpaid provider (the chain is not asked)", async () => {
    const reply = await get("/api/earnings");
    expect(reply.status).to.equal(200);
    expect(reply.json()).to.deep.equal({
      paid: false,
      note: "unpaid provider: no chain configured in this data directory",
    });
  });

  it("/api/provider: jobs by state and refusals over time, earnings, failures and refusals with reasons, stake at risk, escape suite, capacity", async () => {
    const view = (await get("/api/provider")).json();
    expect(view.summary).to.deep.equal({
      jobs: 6,
      byState: { revealed: 2, failed: 1, abandoned: 1, running: 1, committed: 1 },
      earnedWei: (3n * GLM).toString(),
    });
    expect(view.jobs.items.map((j: { jobId: string }) => j.jobId)).to.deep.equal([
      "job-6",
      "job-5",
      "job-4",
      "job-3",
      "job-2",
      "job-1",
    ]);
    expect(view.jobs.items[5].usage).to.deep.equal({ cpuMs: 420, wallMs: 900, maxMemoryBytes: 8 * 1048576 });
    const sums = { running: 0, finished: 0, failed: 0, abandoned: 0, refused: 0 };
    for (const bucket of view.timeline.buckets)
      for (const key of Object.keys(sums) as (keyof typeof sums)[]) sums[key] += bucket[key];
    expect(sums).to.deep.equal({ running: 2, finished: 2, failed: 1, abandoned: 1, refused: 3 });
    expect(view.refusals.total).to.equal(3);
    expect(view.refusals.byCode).to.deep.equal([
      { code: "AT_CAPACITY", count: 2, lastReason: "all 4 slots are busy", lastAt: "2026-11-29T12:04:00.000Z" },
      { code: "PRICE_TOO_LOW", count: 1, lastReason: HOSTILE_TEXT, lastAt: "2026-11-29T12:05:00.000Z" },
    ]);
    expect(view.refusals.recent.map((r: { stage: string; code: string }) => `${r.stage} ${r.code}`)).to.deep.equal([
      "query PRICE_TOO_LOW",
      "proposal AT_CAPACITY",
      "query AT_CAPACITY",
    ]);
    expect(view.refusals.recent[0]).to.include({ requestor: "12D3KooWRequestor", qubeId: "aq1refused7" });
    expect(view.timeline.buckets.length).to.be.within(2, 25);
    expect(view.failures).to.deep.include({
      code: "SANDBOX_OOM",
      count: 1,
      lastReason: HOSTILE_TEXT,
      lastAt: "2026-11-29T11:01:00.000Z",
    });
    expect(view.failures.map((f: { code: string }) => f.code)).to.include("abandoned");
    expect(view.stake.atRiskWei).to.equal((GLM / 2n).toString());
    expect(view.stake.seats.map((s: { state: string }) => s.state).sort()).to.deep.equal(["open", "settled"]);
    expect(view.status).to.include({ running: 2, maxConcurrent: 4, alive: true });
    expect(view.escapeSuite).to.have.length(1);
    expect(view.escapeSuite[0].tier).to.equal("container");
    expect(view.escapeSuite[0].rows.map((r: { verdict: string }) => r.verdict)).to.deep.equal([
      "pass",
      "fail",
      "inconclusive",
    ]);
    expect(view.escapeSuite[0].rows[0].evidence).to.equal("open(/proc/sysrq-trigger, O_WRONLY)=ENOENT");
  });

  it("/api/requestor: each qube with providers, agreement groups, timeline, cost; reputation; escrow", async () => {
    const view = (await get("/api/requestor")).json();
    expect(view.summary).to.deep.equal({ qubes: 3, byState: { verified: 1, failed: 1, dispatching: 1 } });
    expect(view.qubes.items.map((q: { qubeId: string }) => q.qubeId)).to.deep.equal([
      RUNNING_QUBE,
      FAILED_QUBE,
      VERIFIED_QUBE,
    ]);
    const verified = view.qubes.items[2];
    expect(verified.groups).to.deep.equal({
      agreeing: [HONEST_A, HONEST_B],
      dissenting: [LIAR],
      marked: [LIAR],
      failed: [],
    });
    expect(verified.providers).to.have.length(3);
    expect(verified.durationMs).to.equal(120_000);
    expect(verified.timeline[0]).to.deep.equal({ at: "2026-11-29T10:00:00.000Z", event: "started" });
    expect(verified.timeline.filter((t: { event: string }) => t.event === "committed")).to.have.length(3);
    expect(verified.timeline.at(-1)).to.deep.equal({ at: "2026-11-29T10:02:00.000Z", event: "verified" });
    // settled: the price times the two providers of the quorum
    expect(verified.costWei).to.equal((2n * GLM).toString());
    expect(verified.escrow[0]).to.include({
      state: "settled",
      settleTx: "0xsettletx",
      lockTx: "0xlocktx",
      budgetWei: (3n * GLM).toString(),
    });
    expect(verified.evidenceRecords).to.equal(1);
    const failed = view.qubes.items[1];
    expect(failed.reason).to.equal("No provider accepted the qube");
    expect(failed.groups.failed).to.deep.equal([
      { provider: HONEST_A, code: "PROVIDER_REFUSED", message: HOSTILE_TEXT },
    ]);
    // a qube still dispatching stays so: the dashboard recovers nothing
    expect(view.qubes.items[0].state).to.equal("dispatching");
    expect(view.escrow).to.deep.equal({ open: 0, settled: 1, reclaimed: 0, abandoned: 0 });
    const liar = view.reputation.find((r: { provider: string }) => r.provider === LIAR);
    expect(liar).to.include({ wrong: 1, consecutiveValid: 0, marked: true });
    expect(view.reputation.find((r: { provider: string }) => r.provider === HONEST_B)).to.include({
      consecutiveValid: 2,
      marked: false,
    });
  });

  it("/api/network: the providers used, this machine's offer; says it does not join the network", async () => {
    const view = (await get("/api/network")).json();
    expect(view.providers.map((p: { peerId: string }) => p.peerId).sort()).to.deep.equal(
      [HONEST_A, HONEST_B, LIAR].sort(),
    );
    expect(view.providers.find((p: { peerId: string }) => p.peerId === LIAR)).to.include({
      marked: true,
      wrong: 1,
      qubes: 1,
    });
    expect(view.ownOffer).to.deep.include({ peerId: "12D3KooWThisProvider", tiers: ["container"], alive: true });
    expect(view.ownOffer.price).to.deep.include({ start: "1000000000000000" });
    // offers of other providers as the agent saw them; malformed entries left out
    expect(view.offersSeen).to.deep.equal([
      {
        provider: "12D3KooWOtherProvider",
        tiers: ["container", "microvm"],
        price: { currency: "GLM", start: "2000000000000000", perSecond: "100000000000000" },
        maxWallTimeMs: 600_000,
        available: 1,
        maxConcurrent: 2,
        issuedAt: view.offersSeen[0].issuedAt,
      },
    ]);
    expect(view.offersSeenAt).to.be.a("string");
    expect(view.devnet).to.equal(null);
    expect(view.notes.join(" ")).to.include("never joins the network");
  });

  it("/api/evidence/:qubeId downloads the signed statements as a JSON attachment", async () => {
    const reply = await get(`/api/evidence/${VERIFIED_QUBE}`);
    expect(reply.status).to.equal(200);
    expect(reply.headers["content-disposition"]).to.equal(`attachment; filename="evidence-${VERIFIED_QUBE}.json"`);
    const bundle = reply.json();
    expect(bundle).to.include({ qubeId: VERIFIED_QUBE, state: "verified", outputsRoot: "sha256:aa", truncated: false });
    expect(bundle.records).to.have.length(1);
    expect(bundle.records[0].provider).to.equal(LIAR);
    expect(bundle.records[0].evidence.dissent).to.deep.equal({
      payload: { qubeId: VERIFIED_QUBE, outputsRoot: "sha256:ff" },
      signature: "sig-c",
    });
    expect(bundle.records[0].evidence.accepted.signature).to.equal("sig-a");
    expect((await get("/api/evidence/aq1unknown")).status).to.equal(404);
    for (const bad of ["%3Cscript%3E", "%E0%A4%A", "..%2F..%2Fetc", "x".repeat(129)]) {
      const malformed = await get(`/api/evidence/${bad}`);
      expect(malformed.status, bad).to.equal(400);
      expect(malformed.json().error.code).to.equal("DASHBOARD_BAD_QUERY");
    }
  });

  describe("the token", () => {
    const endpoints = [
      "/api",
      "/api/provider",
      "/api/requestor",
      "/api/network",
      "/api/earnings",
      `/api/evidence/${VERIFIED_QUBE}`,
    ];

    it("no token: 401 on every endpoint, and no data", async () => {
      for (const path of endpoints) {
        const reply = await call(dashboard.port, path);
        expect(reply.status, path).to.equal(401);
        expect(reply.json().error.code).to.equal("DASHBOARD_TOKEN_REQUIRED");
        expect(reply.text).to.not.include(VERIFIED_QUBE.slice(3)).and.not.include("job-1");
      }
    });

    it("a wrong token: 401 (same length, other length, other scheme)", async () => {
      const wrongSameLength = `${dashboard.token.slice(0, -1)}${dashboard.token.endsWith("A") ? "B" : "A"}`;
      for (const header of [
        `Bearer ${wrongSameLength}`,
        `Bearer ${dashboard.token}x`,
        "Bearer ",
        `Basic ${dashboard.token}`,
        dashboard.token,
      ])
        expect(
          (await call(dashboard.port, "/api/provider", { headers: { Authorization: header } })).status,
          header,
        ).to.equal(401);
    });

    it("the token in a query string or a cookie is never accepted; from another origin it is refused outright", async () => {
      const token = encodeURIComponent(dashboard.token);
      expect((await call(dashboard.port, `/api/provider?token=${token}`)).status).to.equal(401);
      expect((await call(dashboard.port, `/api/provider#token=${token}`)).status).to.equal(401);
      expect(
        (await call(dashboard.port, "/api/provider", { headers: { Cookie: `token=${dashboard.token}` } })).status,
      ).to.equal(401);
      const crossSite = await call(dashboard.port, `/api/provider?token=${token}`, {
        headers: { Origin: "http://evil.example", "Sec-Fetch-Site": "cross-site" },
      });
      expect(crossSite.status).to.equal(403);
      expect(crossSite.json().error.code).to.equal("DASHBOARD_CROSS_ORIGIN");
      // even with the right header, another origin gets nothing
      expect((await get("/api/provider", { Origin: "http://evil.example" })).status).to.equal(403);
      expect((await get("/api/provider", { Origin: "null" })).status).to.equal(403);
      expect((await get("/api/provider", { "Sec-Fetch-Site": "same-site" })).status).to.equal(403);
      expect(
        (await get("/api/provider", { Origin: `http://127.0.0.1:${dashboard.port}`, "Sec-Fetch-Site": "same-origin" }))
          .status,
      ).to.equal(200);
    });

    it("a Host other than this loopback listener (DNS rebinding) gets 421", async () => {
      const reply = await get("/api/provider", { Host: `evil.example:${dashboard.port}` });
      expect(reply.status).to.equal(421);
      expect((await call(dashboard.port, "/", { headers: { Host: "evil.example" } })).status).to.equal(421);
    });

    it("is 32 random bytes, differs per start, and is never logged", async () => {
      expect(Buffer.from(dashboard.token, "base64url")).to.have.length(32);
      expect(dashboard.url).to.equal(`http://127.0.0.1:${dashboard.port}/#token=${dashboard.token}`);
      const other = await startDashboard({ ...fixture, port: 0 });
      try {
        expect(other.token).to.not.equal(dashboard.token);
        // one server's token does not open the other
        expect((await call(other.port, "/api", { headers: auth() })).status).to.equal(401);
      } finally {
        await other.close();
      }
      expect(logs).to.include("dashboard request");
      expect(logs).to.not.include(dashboard.token);
    });
  });

  it("accepts no write method (405, Allow: GET, HEAD), sends no CORS header, changes no file", async () => {
    const ledger = join(fixture.providerDir, "ledger.sqlite");
    const before = statSync(ledger).mtimeMs;
    for (const method of ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]) {
      for (const path of ["/api/provider", "/", `/api/evidence/${VERIFIED_QUBE}`]) {
        const reply = await call(dashboard.port, path, {
          method,
          headers: { ...auth(), Origin: `http://127.0.0.1:${dashboard.port}`, "Access-Control-Request-Method": "GET" },
        });
        expect(reply.status, `${method} ${path}`).to.equal(405);
        expect(reply.headers.allow).to.equal("GET, HEAD");
        expect(Object.keys(reply.headers).filter((h) => h.startsWith("access-control-"))).to.deep.equal([]);
      }
    }
    const head = await call(dashboard.port, "/api/provider", { method: "HEAD", headers: auth() });
    expect(head.status).to.equal(200);
    expect(head.text).to.equal("");
    const reply = await get("/api/provider");
    expect(Object.keys(reply.headers).filter((h) => h.startsWith("access-control-"))).to.deep.equal([]);
    expect(reply.headers).to.include({
      "x-content-type-options": "nosniff",
      "cache-control": "no-store",
      "referrer-policy": "no-referrer",
    });
    expect(statSync(ledger).mtimeMs).to.equal(before);
  });

  it("reads the directories of a running process without taking or breaking its lock, and creates no directory", async () => {
    const lock = join(fixture.requestorDir, "airqube.lock");
    const holder = JSON.stringify({ pid: process.pid, role: "requestor", since: new Date().toISOString() });
    writeFileSync(lock, holder);
    // the requestor is still writing while we read
    const journal = new RequestorJournal(join(fixture.requestorDir, "journal.sqlite"));
    try {
      journal.dispatch(RUNNING_QUBE, HONEST_A, "dispatched", new Date());
      const view = (await get("/api/requestor")).json();
      expect(view.qubes.items[0].providers).to.have.length(2);
      expect(view.qubes.items[0].state).to.equal("dispatching");
      expect(readFileSync(lock, "utf8")).to.equal(holder);
    } finally {
      journal.close();
      rmSync(lock, { force: true });
    }
    const nowhere = join(root, "nowhere");
    const empty = await startDashboard({
      requestorDir: join(nowhere, "r"),
      providerDir: join(nowhere, "p"),
      home: nowhere,
      port: 0,
    });
    try {
      const provider = (
        await call(empty.port, "/api/provider", { headers: { Authorization: `Bearer ${empty.token}` } })
      ).json();
      expect(provider.summary.jobs).to.equal(0);
      expect(provider.status).to.equal(null);
      const requestor = (
        await call(empty.port, "/api/requestor", { headers: { Authorization: `Bearer ${empty.token}` } })
      ).json();
      expect(requestor.qubes.items).to.deep.equal([]);
      expect(existsSync(nowhere)).to.equal(false);
    } finally {
      await empty.close();
    }
  });

  it("a port in use is a typed error naming what to do", async () => {
    const error = await startDashboard({ ...fixture, port: dashboard.port }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(UserError);
    expect((error as UserError).code).to.equal("DASHBOARD_PORT_IN_USE");
    expect((error as UserError).message).to.include("--port");
  });

  describe("bounded responses", () => {
    let big: Dashboard;
    let bigRoot: string;
    before(async () => {
      bigRoot = mkdtempSync(join(tmpdir(), "airqube-dashboard-big-"));
      const ledger = new JobLedger(join(bigRoot, "p", "ledger.sqlite"));
      const journal = new RequestorJournal(join(bigRoot, "r", "journal.sqlite"));
      const t0 = Date.parse("2026-11-01T00:00:00Z");
      for (let i = 0; i < 260; i++) {
        const at = new Date(t0 + i * 3600_000);
        ledger.accepted(`job-${String(i).padStart(3, "0")}`, `aq1q${i}`, "12D3KooWRequestor", "1", at);
        ledger.refused(
          { requestor: "12D3KooWSpammer", qubeId: `aq1r${i}`, stage: "query", code: "AT_CAPACITY", reason: "busy" },
          at,
        );
        journal.started(`aq1q${i}`, {}, at);
        journal.evidence("aq1q0", LIAR, { n: i, big: "x".repeat(100) }, at);
      }
      ledger.close();
      journal.close();
      big = await startDashboard({
        requestorDir: join(bigRoot, "r"),
        providerDir: join(bigRoot, "p"),
        home: bigRoot,
        port: 0,
      });
    });
    after(async () => {
      await big?.close();
      rmSync(bigRoot, { recursive: true, force: true });
    });
    const bigGet = (path: string) => call(big.port, path, { headers: { Authorization: `Bearer ${big.token}` } });

    it("pages lists: 50 by default, at most 200, with the total and an offset", async () => {
      const first = (await bigGet("/api/provider")).json();
      expect(first.jobs).to.include({ total: 260, limit: 50, offset: 0 });
      expect(first.jobs.items).to.have.length(50);
      expect(first.jobs.items[0].jobId).to.equal("job-259");
      expect(first.refusals.total).to.equal(260);
      expect(first.refusals.recent).to.have.length(50);
      expect(first.refusals.recent[0].qubeId).to.equal("aq1r259");
      const most = (await bigGet(`/api/requestor?limit=${MAX_PAGE_LIMIT}&offset=100`)).json();
      expect(most.qubes.items).to.have.length(160);
      expect(most.qubes.items[0].qubeId).to.equal("aq1q159");
      // the time series has at most 25 buckets whatever the span
      expect(first.timeline.buckets.length).to.be.at.most(25);
      expect(first.timeline.buckets.reduce((n: number, b: { running: number }) => n + b.running, 0)).to.equal(260);
    });

    it("refuses a page larger than the bound or a malformed one (400)", async () => {
      for (const query of [
        `limit=${MAX_PAGE_LIMIT + 1}`,
        "limit=0",
        "limit=-1",
        "limit=abc",
        "offset=1e9",
        "limit=10&offset=x",
      ]) {
        const reply = await bigGet(`/api/provider?${query}`);
        expect(reply.status, query).to.equal(400);
        expect(reply.json().error.code).to.equal("DASHBOARD_BAD_QUERY");
      }
      expect((await bigGet(`/api/${"x".repeat(3000)}`)).status).to.equal(414);
    });

    it("caps the evidence of one qube at 256 records and says it was truncated", async () => {
      const bundle = (await bigGet("/api/evidence/aq1q0")).json();
      expect(bundle.records).to.have.length(256);
      expect(bundle.truncated).to.equal(true);
    });
  });

  it("airqube dashboard --json prints { url } once (token in the fragment) and logs no token", async function () {
    this.timeout(30_000);
    const child = spawn(
      process.execPath,
      [
        "bin/airqube.js",
        "dashboard",
        "--json",
        "--data-dir",
        fixture.requestorDir,
        "--provider-dir",
        fixture.providerDir,
        "--probe-cache",
        fixture.probeCache,
      ],
      {
        env: { ...process.env, AIRQUBE_HOME: fixture.home, AIRQUBE_LOG_LEVEL: "debug" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (c: Buffer) => {
          stdout += c.toString();
          if (stdout.includes("\n")) resolve(stdout.split("\n")[0]!);
        });
        child.once("exit", (code) => reject(new Error(`exited ${code}: ${stderr}`)));
      });
      const { url } = JSON.parse(line) as { url: string };
      const parsed = new URL(url);
      expect(parsed.hostname).to.equal("127.0.0.1");
      const token = new URLSearchParams(parsed.hash.slice(1)).get("token")!;
      expect(Buffer.from(token, "base64url")).to.have.length(32);
      const reply = await call(Number(parsed.port), "/api/requestor", {
        headers: { Authorization: `Bearer ${token}` },
      });
      expect(reply.json().summary.qubes).to.equal(3);
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      expect(await exited).to.equal(0);
      expect(stdout.trim().split("\n")).to.have.length(1);
      expect(stderr).to.include("dashboard listening").and.not.include(token);
    } finally {
      child.kill("SIGKILL");
    }
  });
});
