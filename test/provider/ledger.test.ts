import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { expect } from "chai";
import { JobLedger } from "../../src/provider/ledger.js";
import { RequestorJournal } from "../../src/requestor/journal.js";

describe("provider: job ledger (SQLite)", () => {
  it("records jobs, survives a restart and marks in-flight jobs abandoned", () => {
    const path = join(mkdtempSync(join(tmpdir(), "aq-ledger-")), "ledger.sqlite");
    const now = new Date("2026-11-26T10:00:00Z");
    const ledger = new JobLedger(path);
    ledger.accepted("j1", "aq1x", "peerA", "1000", now);
    ledger.transition("j1", "revealed", now);
    ledger.accepted("j2", "aq1y", "peerB", "2000", now);
    ledger.transition("j2", "running", now);
    ledger.close(); // a crash: j2 was running

    const again = new JobLedger(path);
    expect(again.recover(now)).to.deep.equal(["j2"]);
    expect(again.get("j2")?.state).to.equal("abandoned");
    expect(again.get("j1")?.state).to.equal("revealed");
    expect(again.summary()).to.deep.equal({ jobs: 2, byState: { abandoned: 1, revealed: 1 }, earnedWei: "1000" });
    again.close();
  });
});

describe("provider: job ledger, metered usage", () => {
  it("keeps each job's CPU time, wall time and peak memory, and adds the columns to an older ledger", () => {
    const path = join(mkdtempSync(join(tmpdir(), "aq-ledger-")), "ledger.sqlite");
    const now = new Date("2026-11-26T10:00:00Z");
    const old = new DatabaseSync(path); // a ledger of the first release: no usage columns
    old.exec(
      "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, qube_id TEXT NOT NULL, requestor TEXT NOT NULL, state TEXT NOT NULL, price TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, outputs_root TEXT, error_code TEXT, error_reason TEXT)",
    );
    old.close();
    const ledger = new JobLedger(path);
    ledger.accepted("j1", "aq1x", "peerA", "1000", now);
    expect(ledger.get("j1")?.usage).to.equal(null);
    ledger.metered("j1", { cpuMs: 812, wallMs: 1500, maxMemoryBytes: 41_943_040 }, now);
    ledger.close();
    const again = new JobLedger(path);
    expect(again.get("j1")?.usage).to.deep.equal({ cpuMs: 812, wallMs: 1500, maxMemoryBytes: 41_943_040 });
    again.close();
  });
});

describe("provider: job ledger, refusals before admission", () => {
  it("keeps each refusal (time, peer, qube, stage, code, reason), the newest N only, across a restart", () => {
    const path = join(mkdtempSync(join(tmpdir(), "aq-ledger-")), "ledger.sqlite");
    const t0 = Date.parse("2026-11-29T10:00:00.000Z");
    let ledger = new JobLedger(path);
    for (let i = 0; i < 25; i++)
      ledger.refused(
        {
          requestor: `12D3KooWPeer${i % 2}`,
          qubeId: `aq1q${i}`,
          stage: i % 2 ? "proposal" : "query",
          code: i < 20 ? "AT_CAPACITY" : "PRICE_TOO_LOW",
          reason: `reason ${i} ${"x".repeat(i === 24 ? 5000 : 0)}`,
        },
        new Date(t0 + i * 1000),
        10,
      );
    ledger.close();
    ledger = new JobLedger(path);
    const rows = ledger.refusals(100);
    // a peer flooding the provider never grows the table past the bound: the oldest went
    expect(rows).to.have.length(10);
    expect(rows.map((r) => r.qubeId)).to.deep.equal([24, 23, 22, 21, 20, 19, 18, 17, 16, 15].map((i) => `aq1q${i}`));
    expect(rows[1]).to.deep.equal({
      at: new Date(t0 + 23_000).toISOString(),
      requestor: "12D3KooWPeer1",
      qubeId: "aq1q23",
      stage: "proposal",
      code: "PRICE_TOO_LOW",
      reason: "reason 23 ",
    });
    expect(rows[0]!.reason.length).to.equal(512);
    expect(ledger.refusalCounts()).to.deep.equal({ AT_CAPACITY: 5, PRICE_TOO_LOW: 5 });
    // refusals are not jobs
    expect(ledger.summary().jobs).to.equal(0);
    ledger.close();
  });
});

describe("requestor: journal (SQLite)", () => {
  it("reports qubes interrupted by a crash after a restart", () => {
    const path = join(mkdtempSync(join(tmpdir(), "aq-journal-")), "journal.sqlite");
    const now = new Date();
    const journal = new RequestorJournal(path);
    journal.started("aq1a", { spec: 1 }, now);
    journal.dispatch("aq1a", "p1", "committed", now);
    journal.started("aq1b", { spec: 2 }, now);
    journal.finished("aq1b", "verified", { ok: true }, now);
    journal.close(); // crash while aq1a was dispatching

    const again = new RequestorJournal(path);
    expect(again.recover(now)).to.deep.equal(["aq1a"]);
    expect(again.get("aq1a")).to.deep.include({ state: "interrupted" });
    expect(again.get("aq1a")?.dispatches).to.deep.equal([
      { provider: "p1", state: "committed", outputsRoot: null, error: null },
    ]);
    expect(again.get("aq1b")).to.deep.include({ state: "verified", summary: { ok: true } });
    again.close();
  });
});

describe("store: a file that is not a database", () => {
  it("gives a typed error instead of a crash", async () => {
    const path = join(mkdtempSync(join(tmpdir(), "aq-store-")), "ledger.sqlite");
    (await import("node:fs")).writeFileSync(
      path,
      "this is not a database, but it is long enough to look like a header".repeat(20),
    );
    let error: unknown;
    try {
      new JobLedger(path);
    } catch (e) {
      error = e;
    }
    expect((error as { code?: string }).code).to.equal("STORE_UNAVAILABLE");
  });
});
