/**
 * The requestor's side of the dashboard, read from its data directory without disturbing a running requestor:
 * the journal (`journal.sqlite`: qubes, dispatches, evidence, escrow jobs) and the reputation of the providers
 * it used (`reputation.sqlite`). A qube still `dispatching` is shown as such: the dashboard never marks it
 * interrupted (only `airqube journal` does, and only when no process holds the directory).
 */
import { join } from "node:path";
import { MAX_EVIDENCE_RECORDS, MAX_PAGE_LIMIT, type Page, pageOf } from "./limits.js";
import { parseColumn, withReadOnly } from "./store.js";

/** One event of a qube's commit-reveal timeline, as far as the journal records it. */
export interface TimelineEvent {
  at: string;
  /** `started`, a provider's last recorded state (`dispatched`, `committed`, `failed`), or the end state. */
  event: string;
  provider?: string;
  detail?: string;
}

/** One qube as the dashboard lists it. */
export interface DashboardQube {
  qubeId: string;
  state: string;
  createdAt: string;
  updatedAt: string;
  /** From start to the last change, ms. */
  durationMs: number;
  outputsRoot: string | null;
  reason: string | null;
  providers: { provider: string; state: string; outputsRoot: string | null; error: string | null }[];
  /** Agreement groups: who agreed, who dissented, who was marked (with evidence kept), who failed. */
  groups: {
    agreeing: string[];
    dissenting: string[];
    marked: string[];
    failed: { provider: string; code: string; message: string }[];
  };
  timeline: TimelineEvent[];
  escrow: {
    jobId: string;
    state: string;
    priceWei: string;
    stakeWei: string;
    providers: number;
    budgetWei: string;
    lockTx: string | null;
    settleTx: string | null;
  }[];
  /** What the run cost: the price times the providers paid when settled, else the budget locked (an upper bound). */
  costWei: string | null;
  evidenceRecords: number;
}

/** What `/api/requestor` returns. */
export interface RequestorView {
  dataDir: string;
  summary: { qubes: number; byState: Record<string, number> };
  qubes: Page<DashboardQube>;
  reputation: {
    provider: string;
    consecutiveValid: number;
    wrong: number;
    markedUntil: string | null;
    marked: boolean;
  }[];
  escrow: { open: number; settled: number; reclaimed: number; abandoned: number };
}

/** What `/api/evidence/:qubeId` returns: what the journal kept to prove providers wrong, as recorded. */
export interface EvidenceBundle {
  qubeId: string;
  state: string;
  outputsRoot: string | null;
  agreeing: string[];
  dissenting: string[];
  /** Each record: the provider it is against and the signed statements or commitment that prove it. */
  records: { provider: string; recordedAt: string; evidence: unknown }[];
  truncated: boolean;
}

/**
 * Reads the requestor view of `dataDir`.
 *
 * @example
 * const view = readRequestorView("/root/.airqube/requestor", { limit: 50, offset: 0 }, new Date());
 */
export function readRequestorView(dataDir: string, page: { limit: number; offset: number }, now: Date): RequestorView {
  const empty = {
    summary: { qubes: 0, byState: {} },
    qubes: pageOf<DashboardQube>([], 0, page),
    escrow: { open: 0, settled: 0, reclaimed: 0, abandoned: 0 },
  };
  const journal = withReadOnly(join(dataDir, "journal.sqlite"), empty, (db) => {
    if (!db.has("qubes")) return empty;
    const counts = db.all<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM qubes GROUP BY state");
    const total = counts.reduce((n, row) => n + Number(row.n), 0);
    const rows = db.all<Record<string, string | null>>(
      "SELECT qube_id, state, created_at, updated_at, summary FROM qubes ORDER BY created_at DESC, qube_id LIMIT ? OFFSET ?",
      page.limit,
      page.offset,
    );
    const qubes = rows.map((row) => {
      const qubeId = String(row.qube_id);
      const dispatches = db.has("dispatches")
        ? db.all<Record<string, string | null>>(
            "SELECT provider, state, outputs_root, error, updated_at FROM dispatches WHERE qube_id = ? ORDER BY updated_at, provider LIMIT ?",
            qubeId,
            MAX_PAGE_LIMIT,
          )
        : [];
      const marked = db.has("evidence")
        ? db.all<{ provider: string; n: number }>(
            "SELECT provider, COUNT(*) AS n FROM evidence WHERE qube_id = ? GROUP BY provider ORDER BY provider LIMIT ?",
            qubeId,
            MAX_PAGE_LIMIT,
          )
        : [];
      const escrow = db.has("escrow_jobs")
        ? db.all<Record<string, string | null>>(
            "SELECT job_id, job, state, lock_tx, report FROM escrow_jobs WHERE qube_id = ? ORDER BY rowid LIMIT 16",
            qubeId,
          )
        : [];
      return toQube(row, dispatches, marked, escrow);
    });
    const escrowCounts = db.has("escrow_jobs")
      ? db.all<{ state: string; n: number }>("SELECT state, COUNT(*) AS n FROM escrow_jobs GROUP BY state")
      : [];
    const escrowTotals = { open: 0, settled: 0, reclaimed: 0, abandoned: 0 };
    for (const row of escrowCounts)
      if (row.state in escrowTotals) escrowTotals[row.state as keyof typeof escrowTotals] = Number(row.n);
    return {
      summary: { qubes: total, byState: Object.fromEntries(counts.map((row) => [row.state, Number(row.n)])) },
      qubes: pageOf(qubes, total, page),
      escrow: escrowTotals,
    };
  });
  const reputation = withReadOnly(join(dataDir, "reputation.sqlite"), [] as RequestorView["reputation"], (db) =>
    db.has("reputation")
      ? db
          .all<{ provider: string; consecutive_valid: number; wrong: number; marked_until: string | null }>(
            "SELECT provider, consecutive_valid, wrong, marked_until FROM reputation ORDER BY wrong DESC, provider LIMIT ?",
            MAX_PAGE_LIMIT,
          )
          .map((row) => ({
            provider: row.provider,
            consecutiveValid: Number(row.consecutive_valid),
            wrong: Number(row.wrong),
            markedUntil: row.marked_until,
            marked: row.marked_until !== null && Date.parse(row.marked_until) > now.getTime(),
          }))
      : [],
  );
  return { dataDir, ...journal, reputation };
}

/**
 * The evidence kept for one qube, or undefined when the journal does not know it.
 *
 * @example
 * const bundle = readEvidence("/root/.airqube/requestor", qubeId);
 */
export function readEvidence(dataDir: string, qubeId: string): EvidenceBundle | undefined {
  return withReadOnly(join(dataDir, "journal.sqlite"), undefined, (db) => {
    if (!db.has("qubes")) return undefined;
    const row = db.all<{ state: string; summary: string | null }>(
      "SELECT state, summary FROM qubes WHERE qube_id = ?",
      qubeId,
    )[0];
    if (!row) return undefined;
    const summary = (parseColumn(row.summary) ?? {}) as Record<string, unknown>;
    const records = db.has("evidence")
      ? db.all<{ provider: string; evidence: string; recorded_at: string }>(
          "SELECT provider, evidence, recorded_at FROM evidence WHERE qube_id = ? ORDER BY rowid LIMIT ?",
          qubeId,
          MAX_EVIDENCE_RECORDS + 1,
        )
      : [];
    return {
      qubeId,
      state: row.state,
      outputsRoot: typeof summary.outputsRoot === "string" ? summary.outputsRoot : null,
      agreeing: strings(summary.agreeing),
      dissenting: strings(summary.dissenting),
      records: records.slice(0, MAX_EVIDENCE_RECORDS).map((r) => ({
        provider: r.provider,
        recordedAt: r.recorded_at,
        evidence: parseColumn(r.evidence),
      })),
      truncated: records.length > MAX_EVIDENCE_RECORDS,
    };
  });
}

function toQube(
  row: Record<string, string | null>,
  dispatches: Record<string, string | null>[],
  marked: { provider: string; n: number }[],
  escrowRows: Record<string, string | null>[],
): DashboardQube {
  const summary = (parseColumn(row.summary) ?? {}) as Record<string, unknown>;
  const createdAt = String(row.created_at);
  const updatedAt = String(row.updated_at);
  const state = String(row.state);
  const agreeing = strings(summary.agreeing);
  // the run's own list of failures, or (a run that ended without one) the dispatches journalled as failed
  const failures = Array.isArray(summary.failures)
    ? (summary.failures as Record<string, unknown>[]).slice(0, MAX_PAGE_LIMIT).map((f) => ({
        provider: String(f.provider ?? ""),
        code: String(f.code ?? ""),
        message: String(f.message ?? "").slice(0, 500),
      }))
    : dispatches
        .filter((d) => d.state === "failed")
        .map((d) => {
          const [code, ...rest] = String(d.error ?? "").split(": ");
          return { provider: String(d.provider), code: code ?? "", message: rest.join(": ").slice(0, 500) };
        });
  const timeline: TimelineEvent[] = [{ at: createdAt, event: "started" }];
  for (const d of dispatches)
    timeline.push({
      at: String(d.updated_at),
      event: String(d.state),
      provider: String(d.provider),
      ...(d.error ? { detail: d.error.slice(0, 500) } : {}),
    });
  if (state !== "dispatching") timeline.push({ at: updatedAt, event: state });
  const escrow = escrowRows.map((e) => {
    const job = (parseColumn(e.job) ?? {}) as { price?: unknown; stake?: unknown; providers?: unknown };
    const report = (parseColumn(e.report) ?? {}) as { settleTx?: unknown };
    const providers = Array.isArray(job.providers) ? job.providers.length : 0;
    const price = wei(job.price);
    return {
      jobId: String(e.job_id),
      state: String(e.state),
      priceWei: price.toString(),
      stakeWei: wei(job.stake).toString(),
      providers,
      budgetWei: (price * BigInt(providers)).toString(),
      lockTx: e.lock_tx ?? null,
      settleTx: typeof report.settleTx === "string" ? report.settleTx : null,
    };
  });
  const cost = escrow.reduce(
    (sum, e) => sum + (e.state === "settled" ? BigInt(e.priceWei) * BigInt(agreeing.length) : BigInt(e.budgetWei)),
    0n,
  );
  return {
    qubeId: String(row.qube_id),
    state,
    createdAt,
    updatedAt,
    durationMs: Math.max(0, Date.parse(updatedAt) - Date.parse(createdAt)) || 0,
    outputsRoot: typeof summary.outputsRoot === "string" ? summary.outputsRoot : null,
    reason:
      typeof summary.reason === "string"
        ? summary.reason
        : typeof summary.message === "string"
          ? summary.message
          : null,
    providers: dispatches.map((d) => ({
      provider: String(d.provider),
      state: String(d.state),
      outputsRoot: d.outputs_root ?? null,
      error: d.error ? d.error.slice(0, 500) : null,
    })),
    groups: {
      agreeing,
      dissenting: strings(summary.dissenting),
      marked: marked.map((m) => m.provider),
      failed: failures,
    },
    timeline,
    escrow,
    costWei: escrow.length > 0 ? cost.toString() : null,
    evidenceRecords: marked.reduce((n, m) => n + Number(m.n), 0),
  };
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string").slice(0, MAX_PAGE_LIMIT) : [];
}

function wei(value: unknown): bigint {
  return typeof value === "string" && /^\d{1,78}$/.test(value) ? BigInt(value) : 0n;
}
