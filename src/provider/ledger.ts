/**
 * The provider's job ledger in SQLite (`node:sqlite`, built into Node 24): every job's state, timings,
 * result and earnings owed. Writes are single statements (atomic); a restarted agent marks jobs that were in
 * flight as abandoned and knows what it did before.
 */
import type { DatabaseSync } from "node:sqlite";
import { openDatabase } from "../store/sqlite.js";

/** Where a job stands: in flight (`accepted`, `running`, `committed`) or ended. `abandoned`: the agent stopped mid-job. */
export type JobState = "accepted" | "running" | "committed" | "revealed" | "failed" | "abandoned";

/** One job of the ledger. */
export interface JobRow {
  jobId: string;
  qubeId: string;
  /** The requestor's peer id. */
  requestor: string;
  state: JobState;
  /** Agreed price, wei (a decimal string). */
  price: string;
  /** ISO 8601 time the job was accepted. */
  createdAt: string;
  /** ISO 8601 time of the last change. */
  updatedAt: string;
  /** The outputs root committed, once known. */
  outputsRoot: string | null;
  /** Why the job failed: an error code and reason, if any. */
  errorCode: string | null;
  errorReason: string | null;
  /** What the job's sandbox used, metered from the host (null until the job ran). */
  usage: JobUsage | null;
}

/** Metered usage of one job, as its signed result statement states it. */
export interface JobUsage {
  cpuMs: number;
  wallMs: number;
  maxMemoryBytes: number;
}

/** Where a qube was refused: when the requestor asked (`query`, before it locks money) or proposed it (`proposal`). */
export type RefusalStage = "query" | "proposal";

/** One qube refused before admission. */
export interface RefusalRow {
  /** ISO 8601 time of the refusal. */
  at: string;
  /** The requestor's peer id. */
  requestor: string;
  qubeId: string;
  stage: RefusalStage;
  /** The refusal's stable code (`AT_CAPACITY`, `PRICE_TOO_LOW`, ...) and its reason. */
  code: string;
  reason: string;
}

/**
 * Most refusals kept: the newest. A peer that floods the provider with proposals it must refuse replaces old
 * rows, it never grows the file past this (about 3 MB).
 */
export const MAX_REFUSAL_ROWS = 10_000;
/** Longest reason, peer id and qube id stored, characters (longer ones are cut). */
const MAX_REFUSAL_TEXT = 512;

/** Columns added after the first release: created in a ledger that lacks them. */
const USAGE_COLUMNS = ["cpu_ms", "wall_ms", "max_memory_bytes"] as const;

/** Totals of the ledger, as {@link JobLedger.summary} returns them. */
export interface LedgerSummary {
  /** Jobs in all. */
  jobs: number;
  /** Jobs per state. */
  byState: Record<string, number>;
  /** Sum of the prices of revealed jobs, wei (a decimal string). */
  earnedWei: string;
}

const IN_FLIGHT: JobState[] = ["accepted", "running", "committed"];

/**
 * The provider's job ledger, one SQLite file. Synchronous; close it when done.
 *
 * @example
 * const ledger = new JobLedger(join(dataDir, "ledger.sqlite"));
 * console.log(ledger.summary(), ledger.recent(5));
 * ledger.close();
 */
export class JobLedger {
  private readonly db: DatabaseSync;

  /** Opens (creating if needed) the ledger at `path`; throws PlatformError `STORE_UNAVAILABLE`. */
  constructor(path: string) {
    this.db = openDatabase(
      path,
      `
      CREATE TABLE IF NOT EXISTS jobs (
        job_id TEXT PRIMARY KEY,
        qube_id TEXT NOT NULL,
        requestor TEXT NOT NULL,
        state TEXT NOT NULL,
        price TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        outputs_root TEXT,
        error_code TEXT,
        error_reason TEXT
      );
      CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
      CREATE TABLE IF NOT EXISTS refusals (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        requestor TEXT NOT NULL,
        qube_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        code TEXT NOT NULL,
        reason TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS refusals_at ON refusals(at);
    `,
    );
    const columns = new Set(
      (this.db.prepare("PRAGMA table_info(jobs)").all() as { name: string }[]).map((column) => column.name),
    );
    for (const column of USAGE_COLUMNS)
      if (!columns.has(column)) this.db.exec(`ALTER TABLE jobs ADD COLUMN ${column} INTEGER`);
  }

  /** Records what the job's sandbox used (CPU time, wall time, peak memory). */
  metered(jobId: string, usage: JobUsage, now: Date): void {
    this.db
      .prepare("UPDATE jobs SET cpu_ms = ?, wall_ms = ?, max_memory_bytes = ?, updated_at = ? WHERE job_id = ?")
      .run(usage.cpuMs, usage.wallMs, usage.maxMemoryBytes, now.toISOString(), jobId);
  }

  /** Marks every job that was in flight when the agent stopped as abandoned; returns their ids. */
  recover(now: Date): string[] {
    const placeholders = IN_FLIGHT.map(() => "?").join(",");
    const rows = this.db.prepare(`SELECT job_id FROM jobs WHERE state IN (${placeholders})`).all(...IN_FLIGHT) as {
      job_id: string;
    }[];
    this.db
      .prepare(
        `UPDATE jobs SET state = 'abandoned', error_reason = 'agent stopped while the job ran', updated_at = ? WHERE state IN (${placeholders})`,
      )
      .run(now.toISOString(), ...IN_FLIGHT);
    return rows.map((row) => row.job_id);
  }

  /** Records a newly admitted job (state `accepted`); price in wei. */
  accepted(jobId: string, qubeId: string, requestor: string, price: string, now: Date): void {
    this.db
      .prepare(
        "INSERT INTO jobs (job_id, qube_id, requestor, state, price, created_at, updated_at) VALUES (?, ?, ?, 'accepted', ?, ?, ?)",
      )
      .run(jobId, qubeId, requestor, price, now.toISOString(), now.toISOString());
  }

  /** Moves a job to `state`, recording the outputs root or error when given (earlier values are kept otherwise). */
  transition(
    jobId: string,
    state: JobState,
    now: Date,
    extra: { outputsRoot?: string; errorCode?: string; errorReason?: string } = {},
  ): void {
    this.db
      .prepare(
        "UPDATE jobs SET state = ?, updated_at = ?, outputs_root = COALESCE(?, outputs_root), error_code = COALESCE(?, error_code), error_reason = COALESCE(?, error_reason) WHERE job_id = ?",
      )
      .run(
        state,
        now.toISOString(),
        extra.outputsRoot ?? null,
        extra.errorCode ?? null,
        extra.errorReason ?? null,
        jobId,
      );
  }

  /**
   * Records a qube refused before admission, and drops the oldest rows beyond `maxRows` (default
   * {@link MAX_REFUSAL_ROWS}) in the same transaction: the table stays bounded whatever a peer sends.
   */
  refused(refusal: Omit<RefusalRow, "at">, now: Date, maxRows = MAX_REFUSAL_ROWS): void {
    const cut = (text: string) => text.slice(0, MAX_REFUSAL_TEXT);
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const { lastInsertRowid } = this.db
        .prepare("INSERT INTO refusals (at, requestor, qube_id, stage, code, reason) VALUES (?, ?, ?, ?, ?, ?)")
        .run(
          now.toISOString(),
          cut(refusal.requestor),
          cut(refusal.qubeId),
          refusal.stage,
          cut(refusal.code),
          cut(refusal.reason),
        );
      this.db.prepare("DELETE FROM refusals WHERE id <= ?").run(Number(lastInsertRowid) - maxRows);
      this.db.exec("COMMIT");
    } catch (error) {
      this.db.exec("ROLLBACK");
      throw error;
    }
  }

  /** The newest refusals, newest first (at most `limit`). */
  refusals(limit = 20): RefusalRow[] {
    return (
      this.db
        .prepare("SELECT at, requestor, qube_id, stage, code, reason FROM refusals ORDER BY id DESC LIMIT ?")
        .all(limit) as Record<string, string>[]
    ).map((row) => ({
      at: row.at!,
      requestor: row.requestor!,
      qubeId: row.qube_id!,
      stage: row.stage as RefusalStage,
      code: row.code!,
      reason: row.reason!,
    }));
  }

  /** Refusals kept, per code. */
  refusalCounts(): Record<string, number> {
    const rows = this.db.prepare("SELECT code, COUNT(*) AS n FROM refusals GROUP BY code").all() as {
      code: string;
      n: number;
    }[];
    return Object.fromEntries(rows.map((row) => [row.code, Number(row.n)]));
  }

  /** One job, or undefined when unknown. */
  get(jobId: string): JobRow | undefined {
    const row = this.db.prepare("SELECT * FROM jobs WHERE job_id = ?").get(jobId) as
      | Record<string, string | null>
      | undefined;
    return row ? toJob(row) : undefined;
  }

  /** The most recently accepted jobs, newest first (at most `limit`). */
  recent(limit = 20): JobRow[] {
    return (
      this.db.prepare("SELECT * FROM jobs ORDER BY created_at DESC, job_id LIMIT ?").all(limit) as Record<
        string,
        string | null
      >[]
    ).map(toJob);
  }

  /** Job counts per state and what revealed jobs earned. */
  summary(): LedgerSummary {
    const rows = this.db.prepare("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").all() as {
      state: string;
      n: number;
    }[];
    const byState = Object.fromEntries(rows.map((row) => [row.state, Number(row.n)]));
    const prices = this.db.prepare("SELECT price FROM jobs WHERE state = 'revealed'").all() as { price: string }[];
    const earned = prices.reduce((sum, row) => sum + BigInt(row.price), 0n);
    return { jobs: rows.reduce((n, row) => n + Number(row.n), 0), byState, earnedWei: earned.toString() };
  }

  /** Closes the database. */
  close(): void {
    this.db.close();
  }
}

function toJob(row: Record<string, string | null>): JobRow {
  return {
    jobId: row.job_id!,
    qubeId: row.qube_id!,
    requestor: row.requestor!,
    state: row.state as JobState,
    price: row.price!,
    createdAt: row.created_at!,
    updatedAt: row.updated_at!,
    outputsRoot: row.outputs_root ?? null,
    errorCode: row.error_code ?? null,
    errorReason: row.error_reason ?? null,
    usage:
      row.cpu_ms === null || row.cpu_ms === undefined
        ? null
        : { cpuMs: Number(row.cpu_ms), wallMs: Number(row.wall_ms), maxMemoryBytes: Number(row.max_memory_bytes) },
  };
}
