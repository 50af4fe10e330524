/**
 * The provider's side of the dashboard, read from its data directory without disturbing a running agent: the
 * job ledger (`ledger.sqlite`), the seats it bonded stake for (`seats.sqlite`), its last status (`status.json`)
 * and the escape-suite reports of the probe cache.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { isAlive, type Page, pageOf } from "./limits.js";
import { parseColumn, type ReadOnlyDb, readJsonFile, withReadOnly } from "./store.js";

/** Ledger states grouped as the charts show them. */
const STATE_GROUP: Record<string, "running" | "finished" | "failed" | "abandoned"> = {
  accepted: "running",
  running: "running",
  committed: "running",
  revealed: "finished",
  failed: "failed",
  abandoned: "abandoned",
};

/** Most jobs the time series reads (the newest). */
export const MAX_TIMELINE_JOBS = 5000;
/** Most refusals the time series reads (the newest). */
export const MAX_TIMELINE_REFUSALS = 5000;
/** Refusals listed one by one (the newest). */
export const RECENT_REFUSALS = 50;
/** Buckets of the time series. */
export const TIMELINE_BUCKETS = 24;
/** Most escape-suite reports read from the probe cache. */
export const MAX_PROBE_REPORTS = 16;

/**
 * One bucket of the jobs-over-time series: jobs accepted in [start, start + bucketMs), by how they stand, and
 * qubes refused before admission in it.
 */
export interface JobBucket {
  start: string;
  running: number;
  finished: number;
  failed: number;
  abandoned: number;
  refused: number;
}

/** One qube refused before admission (the ledger's `refusals` table). */
export interface DashboardRefusal {
  at: string;
  requestor: string;
  qubeId: string;
  /** `query`: refused when asked, before the requestor locked money; `proposal`: refused when proposed. */
  stage: string;
  code: string;
  reason: string;
}

/** One job as the dashboard lists it. */
export interface DashboardJob {
  jobId: string;
  qubeId: string;
  requestor: string;
  state: string;
  priceWei: string;
  createdAt: string;
  updatedAt: string;
  outputsRoot: string | null;
  errorCode: string | null;
  errorReason: string | null;
  usage: { cpuMs: number; wallMs: number; maxMemoryBytes: number } | null;
}

/** The escape suite's matrix of one tier: every row with its verdict and evidence. */
export interface EscapeMatrix {
  tier: string;
  startedAt: string;
  suite: string;
  suiteVersion: string;
  host: unknown;
  summary: { pass: number; fail: number; inconclusive: number; skipped: number };
  rows: { id: number; title: string; category: string; severity: string; verdict: string; evidence: string }[];
}

/** What `/api/provider` returns. */
export interface ProviderView {
  dataDir: string;
  /** The agent's last written status (capacity in use, tiers, probes), with whether its process still lives. */
  status: (Record<string, unknown> & { alive: boolean }) | null;
  summary: { jobs: number; byState: Record<string, number>; earnedWei: string };
  jobs: Page<DashboardJob>;
  timeline: { bucketMs: number; buckets: JobBucket[] };
  /** Failed and abandoned jobs by error code, with the latest reason. */
  failures: { code: string; count: number; lastReason: string | null; lastAt: string }[];
  /**
   * Qubes refused before admission: how many the ledger keeps (the newest, bounded), per code with the latest
   * reason, and the newest one by one.
   */
  refusals: {
    total: number;
    byCode: { code: string; count: number; lastReason: string; lastAt: string }[];
    recent: DashboardRefusal[];
  };
  /** Stake bonded in escrow jobs not yet closed, and every seat. */
  stake: {
    atRiskWei: string;
    seats: { jobId: string; state: string; stakeWei: string; priceWei: string; updatedAt: string }[];
  };
  escapeSuite: EscapeMatrix[];
  /** What the data directory cannot tell (said rather than guessed). */
  notes: string[];
}

/**
 * Reads the provider view of `dataDir` (and of `probeCache`, the escape-suite report cache).
 *
 * @example
 * const view = readProviderView("/root/.airqube/provider", "/root/.airqube/probe-cache", { limit: 50, offset: 0 });
 */
export function readProviderView(
  dataDir: string,
  probeCache: string | undefined,
  page: { limit: number; offset: number },
): ProviderView {
  const ledgerPath = join(dataDir, "ledger.sqlite");
  const empty = {
    summary: { jobs: 0, byState: {}, earnedWei: "0" },
    jobs: pageOf<DashboardJob>([], 0, page),
    timeline: { bucketMs: 60_000, buckets: [] },
    failures: [],
    refusals: { total: 0, byCode: [], recent: [] },
  };
  const ledger = withReadOnly(ledgerPath, empty, (db) => {
    if (!db.has("jobs")) return empty;
    const counts = db.all<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state");
    const byState = Object.fromEntries(counts.map((row) => [row.state, Number(row.n)]));
    const total = counts.reduce((n, row) => n + Number(row.n), 0);
    const earned = db
      .all<{ price: string }>("SELECT price FROM jobs WHERE state = 'revealed'")
      .reduce((sum, row) => sum + safeBigInt(row.price), 0n);
    const rows = db
      .all<Record<string, string | number | null>>(
        "SELECT * FROM jobs ORDER BY created_at DESC, job_id LIMIT ? OFFSET ?",
        page.limit,
        page.offset,
      )
      .map(toJob);
    const recent = db.all<{ state: string; created_at: string }>(
      "SELECT state, created_at FROM jobs ORDER BY created_at DESC LIMIT ?",
      MAX_TIMELINE_JOBS,
    );
    const failures = db
      .all<{ code: string | null; n: number; reason: string | null; at: string }>(
        `SELECT COALESCE(error_code, state) AS code, COUNT(*) AS n, MAX(updated_at) AS at,
           (SELECT error_reason FROM jobs j2 WHERE COALESCE(j2.error_code, j2.state) = COALESCE(jobs.error_code, jobs.state)
             AND j2.state IN ('failed', 'abandoned') ORDER BY j2.updated_at DESC LIMIT 1) AS reason
         FROM jobs WHERE state IN ('failed', 'abandoned') GROUP BY COALESCE(error_code, state) ORDER BY n DESC LIMIT 50`,
      )
      .map((row) => ({ code: row.code ?? "unknown", count: Number(row.n), lastReason: row.reason, lastAt: row.at }));
    const refusals = readRefusals(db);
    return {
      summary: { jobs: total, byState, earnedWei: earned.toString() },
      jobs: pageOf(rows, total, page),
      timeline: timelineOf(recent, refusals.times),
      failures,
      refusals: refusals.view,
    };
  });
  const seats = withReadOnly(join(dataDir, "seats.sqlite"), [] as ProviderView["stake"]["seats"], (db) =>
    db.has("seats")
      ? db
          .all<{ job_id: string; job: string; state: string; updated_at: string }>(
            "SELECT job_id, job, state, updated_at FROM seats ORDER BY rowid DESC LIMIT 200",
          )
          .map((row) => {
            const job = (parseColumn(row.job) ?? {}) as { stake?: unknown; price?: unknown };
            return {
              jobId: row.job_id,
              state: row.state,
              stakeWei: typeof job.stake === "string" ? job.stake : "0",
              priceWei: typeof job.price === "string" ? job.price : "0",
              updatedAt: row.updated_at,
            };
          })
      : [],
  );
  const atRisk = seats.filter((s) => s.state === "open").reduce((sum, s) => sum + safeBigInt(s.stakeWei), 0n);
  const status = readJsonFile(join(dataDir, "status.json"));
  const statusObject =
    status && typeof status === "object" && !Array.isArray(status)
      ? { ...(status as Record<string, unknown>), alive: isAlive((status as { pid?: unknown }).pid) }
      : null;
  return {
    dataDir,
    status: statusObject,
    ...ledger,
    stake: { atRiskWei: atRisk.toString(), seats },
    escapeSuite: probeCache ? readEscapeSuite(probeCache) : [],
    notes: [
      "Refusals are the newest the ledger keeps (it keeps a bounded number); failed and abandoned jobs are listed with their reasons.",
      "Earned is the sum of the prices of revealed jobs; what the escrow credited and what was withdrawn are read from the chain (Earnings on chain).",
    ],
  };
}

/** The newest escape-suite report of each tier in the probe cache. */
export function readEscapeSuite(cacheDir: string): EscapeMatrix[] {
  let files: string[];
  try {
    files = readdirSync(cacheDir).filter((name) => /^probe-[0-9a-f]{8,64}\.json$/.test(name));
  } catch {
    return [];
  }
  const newest = new Map<string, EscapeMatrix>();
  for (const name of files.slice(0, MAX_PROBE_REPORTS * 4)) {
    const report = readJsonFile(join(cacheDir, name)) as Partial<EscapeMatrix> & { probes?: unknown };
    if (!report || typeof report.tier !== "string" || !Array.isArray(report.probes)) continue;
    const matrix: EscapeMatrix = {
      tier: report.tier,
      startedAt: String(report.startedAt ?? ""),
      suite: String(report.suite ?? ""),
      suiteVersion: String(report.suiteVersion ?? ""),
      host: report.host ?? null,
      summary: (report.summary as EscapeMatrix["summary"]) ?? { pass: 0, fail: 0, inconclusive: 0, skipped: 0 },
      rows: (report.probes as Record<string, unknown>[]).slice(0, 256).map((p) => ({
        id: Number(p.id),
        title: String(p.title ?? ""),
        category: String(p.category ?? ""),
        severity: String(p.severity ?? ""),
        verdict: String(p.verdict ?? ""),
        evidence: String(p.evidence ?? "").slice(0, 2000),
      })),
    };
    const known = newest.get(matrix.tier);
    if (!known || known.startedAt < matrix.startedAt) newest.set(matrix.tier, matrix);
  }
  return [...newest.values()].sort((a, b) => a.tier.localeCompare(b.tier)).slice(0, MAX_PROBE_REPORTS);
}

/** The refusals of a ledger opened read-only (an older ledger has no table: none). */
function readRefusals(db: ReadOnlyDb): { view: ProviderView["refusals"]; times: string[] } {
  if (!db.has("refusals")) return { view: { total: 0, byCode: [], recent: [] }, times: [] };
  const total = Number(db.all<{ n: number }>("SELECT COUNT(*) AS n FROM refusals")[0]?.n ?? 0);
  const byCode = db
    .all<{ code: string; n: number; at: string; reason: string }>(
      `SELECT code, COUNT(*) AS n, MAX(at) AS at,
         (SELECT reason FROM refusals r2 WHERE r2.code = refusals.code ORDER BY r2.id DESC LIMIT 1) AS reason
       FROM refusals GROUP BY code ORDER BY n DESC LIMIT 50`,
    )
    .map((row) => ({ code: row.code, count: Number(row.n), lastReason: row.reason, lastAt: row.at }));
  const recent = db
    .all<Record<string, string>>(
      "SELECT at, requestor, qube_id, stage, code, reason FROM refusals ORDER BY id DESC LIMIT ?",
      RECENT_REFUSALS,
    )
    .map((row) => ({
      at: String(row.at),
      requestor: String(row.requestor),
      qubeId: String(row.qube_id),
      stage: String(row.stage),
      code: String(row.code),
      reason: String(row.reason),
    }));
  const times = db
    .all<{ at: string }>("SELECT at FROM refusals ORDER BY id DESC LIMIT ?", MAX_TIMELINE_REFUSALS)
    .map((row) => row.at);
  return { view: { total, byCode, recent }, times };
}

/**
 * Buckets jobs by acceptance time and refusals by their time: at most {@link TIMELINE_BUCKETS}, each a whole
 * number of minutes.
 */
export function timelineOf(
  jobs: { state: string; created_at: string }[],
  refusals: string[] = [],
): ProviderView["timeline"] {
  const times = [...jobs.map((j) => Date.parse(j.created_at)), ...refusals.map((at) => Date.parse(at))].filter((t) =>
    Number.isFinite(t),
  );
  if (times.length === 0) return { bucketMs: 60_000, buckets: [] };
  const first = Math.min(...times);
  const last = Math.max(...times);
  const bucketMs = Math.max(60_000, Math.ceil((last - first + 1) / TIMELINE_BUCKETS / 60_000) * 60_000);
  const origin = Math.floor(first / bucketMs) * bucketMs;
  const count = Math.floor((last - origin) / bucketMs) + 1;
  const buckets: JobBucket[] = Array.from({ length: count }, (_, i) => ({
    start: new Date(origin + i * bucketMs).toISOString(),
    running: 0,
    finished: 0,
    failed: 0,
    abandoned: 0,
    refused: 0,
  }));
  for (const job of jobs) {
    const t = Date.parse(job.created_at);
    const group = STATE_GROUP[job.state];
    const bucket = buckets[Math.floor((t - origin) / bucketMs)];
    if (bucket && group) bucket[group]++;
  }
  for (const at of refusals) {
    const bucket = buckets[Math.floor((Date.parse(at) - origin) / bucketMs)];
    if (bucket) bucket.refused++;
  }
  return { bucketMs, buckets };
}

function toJob(row: Record<string, string | number | null>): DashboardJob {
  const text = (key: string) => (row[key] === null || row[key] === undefined ? null : String(row[key]));
  return {
    jobId: String(row.job_id),
    qubeId: String(row.qube_id),
    requestor: String(row.requestor),
    state: String(row.state),
    priceWei: String(row.price),
    createdAt: String(row.created_at),
    updatedAt: String(row.updated_at),
    outputsRoot: text("outputs_root"),
    errorCode: text("error_code"),
    errorReason: text("error_reason"),
    usage:
      row.cpu_ms === null || row.cpu_ms === undefined
        ? null
        : { cpuMs: Number(row.cpu_ms), wallMs: Number(row.wall_ms), maxMemoryBytes: Number(row.max_memory_bytes) },
  };
}

function safeBigInt(value: unknown): bigint {
  try {
    return typeof value === "string" && /^\d{1,78}$/.test(value) ? BigInt(value) : 0n;
  } catch {
    return 0n;
  }
}
