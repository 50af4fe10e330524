/**
 * The requestor's journal in SQLite: every qube it dispatched, to whom, and how it ended, so that a requestor
 * that crashed knows what it was doing: on restart, qubes still open are reported as interrupted.
 */
import type { DatabaseSync } from "node:sqlite";
import { openDatabase } from "../store/sqlite.js";

/** How a journalled qube stands: still `dispatching`, or how it ended (`interrupted`: the requestor stopped mid-run). */
export type QubeState = "dispatching" | "verified" | "no-consensus" | "failed" | "interrupted";

/** A journalled qube, as {@link RequestorJournal.get} and {@link RequestorJournal.list} return it. */
export interface JournalQube {
  qubeId: string;
  state: QubeState;
  /** ISO 8601 time of the first `started`. */
  createdAt: string;
  /** ISO 8601 time of the last change. */
  updatedAt: string;
  /** The run's summary as recorded by `finished` (JSON), or null while it runs. */
  summary: unknown;
  /** Each provider the qube was sent to: its last state, the outputs root it revealed, its error. */
  dispatches: { provider: string; state: string; outputsRoot: string | null; error: string | null }[];
}

/**
 * The requestor's journal, one SQLite file: the qubes it dispatched, to whom, how each ended, the evidence
 * against wrong providers, and its escrow jobs. Synchronous; close it when done.
 *
 * @example
 * const journal = new RequestorJournal(join(dataDir, "requestor.sqlite"));
 * for (const id of journal.recover(new Date())) console.log(`interrupted: ${id}`);
 * console.log(journal.list(10));
 * journal.close();
 */
export class RequestorJournal {
  private readonly db: DatabaseSync;

  /** Opens (creating if needed) the journal at `path`; throws PlatformError `STORE_UNAVAILABLE`. */
  constructor(path: string) {
    this.db = openDatabase(
      path,
      `
      CREATE TABLE IF NOT EXISTS qubes (
        qube_id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, summary TEXT
      );
      CREATE TABLE IF NOT EXISTS evidence (
        qube_id TEXT NOT NULL, provider TEXT NOT NULL, evidence TEXT NOT NULL, recorded_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS dispatches (
        qube_id TEXT NOT NULL, provider TEXT NOT NULL, state TEXT NOT NULL,
        outputs_root TEXT, error TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (qube_id, provider)
      );
      CREATE TABLE IF NOT EXISTS escrow_jobs (
        job_id TEXT PRIMARY KEY, qube_id TEXT NOT NULL, job TEXT NOT NULL, state TEXT NOT NULL,
        openings TEXT NOT NULL DEFAULT '{}', lock_tx TEXT, report TEXT, updated_at TEXT NOT NULL
      );
    `,
    );
  }

  /** Marks qubes left open by a previous run as interrupted and returns their ids. */
  recover(now: Date): string[] {
    const rows = this.db.prepare("SELECT qube_id FROM qubes WHERE state = 'dispatching'").all() as {
      qube_id: string;
    }[];
    this.db
      .prepare("UPDATE qubes SET state = 'interrupted', updated_at = ? WHERE state = 'dispatching'")
      .run(now.toISOString());
    return rows.map((r) => r.qube_id);
  }

  /** Records that a qube (its signed spec) is being dispatched; a qube run again is reset to `dispatching`. */
  started(qubeId: string, spec: unknown, now: Date): void {
    this.db
      .prepare(
        "INSERT INTO qubes (qube_id, spec, state, created_at, updated_at) VALUES (?, ?, 'dispatching', ?, ?) ON CONFLICT(qube_id) DO UPDATE SET state = 'dispatching', updated_at = excluded.updated_at",
      )
      .run(qubeId, JSON.stringify(spec), now.toISOString(), now.toISOString());
  }

  /**
   * Records the state of a qube on one provider (e.g. `dispatched`, `committed`, `failed`), with the outputs
   * root or error when known (a later record without them keeps the earlier ones).
   */
  dispatch(
    qubeId: string,
    provider: string,
    state: string,
    now: Date,
    extra: { outputsRoot?: string; error?: string } = {},
  ): void {
    this.db
      .prepare(
        `INSERT INTO dispatches (qube_id, provider, state, outputs_root, error, updated_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(qube_id, provider) DO UPDATE SET state = excluded.state, outputs_root = COALESCE(excluded.outputs_root, outputs_root),
         error = COALESCE(excluded.error, error), updated_at = excluded.updated_at`,
      )
      .run(qubeId, provider, state, extra.outputsRoot ?? null, extra.error ?? null, now.toISOString());
  }

  /** Records how a qube ended, with a JSON summary of the run. */
  finished(qubeId: string, state: QubeState, summary: unknown, now: Date): void {
    this.db
      .prepare("UPDATE qubes SET state = ?, summary = ?, updated_at = ? WHERE qube_id = ?")
      .run(state, JSON.stringify(summary), now.toISOString(), qubeId);
  }

  /** Keeps what proves a provider wrong (signed statements, commitments), for disputes and the escrow. */
  evidence(qubeId: string, provider: string, evidence: unknown, now: Date): void {
    this.db
      .prepare("INSERT INTO evidence (qube_id, provider, evidence, recorded_at) VALUES (?, ?, ?, ?)")
      .run(qubeId, provider, JSON.stringify(evidence), now.toISOString());
  }

  /** The evidence kept for a qube, in the order it was recorded. */
  evidenceFor(qubeId: string): { provider: string; evidence: unknown }[] {
    return (
      this.db.prepare("SELECT provider, evidence FROM evidence WHERE qube_id = ? ORDER BY rowid").all(qubeId) as {
        provider: string;
        evidence: string;
      }[]
    ).map((r) => ({
      provider: r.provider,
      evidence: JSON.parse(r.evidence),
    }));
  }

  /** One journalled qube, or undefined when unknown. */
  get(qubeId: string): JournalQube | undefined {
    const row = this.db.prepare("SELECT * FROM qubes WHERE qube_id = ?").get(qubeId) as
      | Record<string, string>
      | undefined;
    return row ? this.toQube(row) : undefined;
  }

  /** The most recently started qubes, newest first (at most `limit`). */
  list(limit = 50): JournalQube[] {
    return (
      this.db.prepare("SELECT * FROM qubes ORDER BY created_at DESC LIMIT ?").all(limit) as Record<string, string>[]
    ).map((row) => this.toQube(row));
  }

  private toQube(row: Record<string, string>): JournalQube {
    const dispatches = this.db
      .prepare("SELECT provider, state, outputs_root, error FROM dispatches WHERE qube_id = ? ORDER BY provider")
      .all(row.qube_id!) as Record<string, string | null>[];
    return {
      qubeId: row.qube_id!,
      state: row.state as QubeState,
      createdAt: row.created_at!,
      updatedAt: row.updated_at!,
      summary: row.summary ? JSON.parse(row.summary) : null,
      dispatches: dispatches.map((d) => ({
        provider: d.provider!,
        state: d.state!,
        outputsRoot: d.outputs_root ?? null,
        error: d.error ?? null,
      })),
    };
  }

  /**
   * Records an escrow job before its lock transaction is sent (`lockTx` null; see {@link escrowLockTx}), so
   * that a lock mined after a time-out on our side is still found and reconciled against the chain.
   */
  escrowOpened(qubeId: string, jobId: string, job: unknown, lockTx: string | null, now: Date): void {
    this.db
      .prepare(
        "INSERT INTO escrow_jobs (job_id, qube_id, job, state, lock_tx, updated_at) VALUES (?, ?, ?, 'open', ?, ?)",
      )
      .run(jobId, qubeId, JSON.stringify(job), lockTx, now.toISOString());
  }

  /** Records the lock transaction of a journalled escrow job. */
  escrowLockTx(jobId: string, lockTx: string, now: Date): void {
    this.db
      .prepare("UPDATE escrow_jobs SET lock_tx = ?, updated_at = ? WHERE job_id = ?")
      .run(lockTx, now.toISOString(), jobId);
  }

  /** Adds openings (payout address → outputs root and salt) of a job, as soon as the reveals are verified. */
  escrowOpenings(jobId: string, openings: Record<string, { outputsRoot: string; salt: string }>, now: Date): void {
    const row = this.db.prepare("SELECT openings FROM escrow_jobs WHERE job_id = ?").get(jobId) as
      | { openings: string }
      | undefined;
    if (!row) return;
    const merged = { ...(JSON.parse(row.openings) as Record<string, unknown>), ...openings };
    this.db
      .prepare("UPDATE escrow_jobs SET openings = ?, updated_at = ? WHERE job_id = ?")
      .run(JSON.stringify(merged), now.toISOString(), jobId);
  }

  /**
   * Records how a job ended (`settled`, `reclaimed`, or `abandoned`: its lock was never mined and no longer can
   * be) or that it is still `open` (with the last report).
   */
  escrowClosed(jobId: string, state: "open" | "settled" | "reclaimed" | "abandoned", report: unknown, now: Date): void {
    this.db
      .prepare("UPDATE escrow_jobs SET state = ?, report = ?, updated_at = ? WHERE job_id = ?")
      .run(state, JSON.stringify(report), now.toISOString(), jobId);
  }

  /** Escrow jobs, all or only those still open (not yet settled or reclaimed). */
  escrowJobs(filter: { qubeId?: string; openOnly?: boolean } = {}): JournalEscrowJob[] {
    const rows = this.db
      .prepare(
        `SELECT * FROM escrow_jobs WHERE (? IS NULL OR qube_id = ?) AND (? = 0 OR state = 'open') ORDER BY rowid`,
      )
      .all(filter.qubeId ?? null, filter.qubeId ?? null, filter.openOnly ? 1 : 0) as Record<string, string | null>[];
    return rows.map((r) => ({
      jobId: r.job_id!,
      qubeId: r.qube_id!,
      job: JSON.parse(r.job!),
      state: r.state as JournalEscrowJob["state"],
      openings: JSON.parse(r.openings ?? "{}"),
      lockTx: r.lock_tx ?? null,
      report: r.report ? JSON.parse(r.report) : null,
    }));
  }

  /** Closes the database. */
  close(): void {
    this.db.close();
  }
}

/** An escrow job as journalled: its parameters (JSON-safe), the openings known, how it ended. */
export interface JournalEscrowJob {
  jobId: string;
  qubeId: string;
  job: unknown;
  state: "open" | "settled" | "reclaimed" | "abandoned";
  openings: Record<string, { outputsRoot: string; salt: string }>;
  lockTx: string | null;
  report: unknown;
}
