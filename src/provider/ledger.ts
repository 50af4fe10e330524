/**
 * The provider's job ledger in SQLite (`node:sqlite`, built into Node 24): every job's state, timings,
 * result and earnings owed. Writes are single statements (atomic); a restarted agent marks jobs that were in
 * flight as abandoned and knows what it did before.
 */
import type { DatabaseSync } from "node:sqlite";
import { openDatabase } from "../store/sqlite.js";

export type JobState = "accepted" | "running" | "committed" | "revealed" | "failed" | "abandoned";

export interface JobRow {
  jobId: string;
  qubeId: string;
  requestor: string;
  state: JobState;
  price: string;
  createdAt: string;
  updatedAt: string;
  outputsRoot: string | null;
  errorCode: string | null;
  errorReason: string | null;
}

export interface LedgerSummary {
  jobs: number;
  byState: Record<string, number>;
  /** Sum of the prices of revealed jobs, wei (a decimal string). */
  earnedWei: string;
}

const IN_FLIGHT: JobState[] = ["accepted", "running", "committed"];

export class JobLedger {
  private readonly db: DatabaseSync;

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
    `,
    );
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

  accepted(jobId: string, qubeId: string, requestor: string, price: string, now: Date): void {
    this.db
      .prepare(
        "INSERT INTO jobs (job_id, qube_id, requestor, state, price, created_at, updated_at) VALUES (?, ?, ?, 'accepted', ?, ?, ?)",
      )
      .run(jobId, qubeId, requestor, price, now.toISOString(), now.toISOString());
  }

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

  get(jobId: string): JobRow | undefined {
    const row = this.db.prepare("SELECT * FROM jobs WHERE job_id = ?").get(jobId) as
      | Record<string, string | null>
      | undefined;
    return row ? toJob(row) : undefined;
  }

  recent(limit = 20): JobRow[] {
    return (
      this.db.prepare("SELECT * FROM jobs ORDER BY created_at DESC, job_id LIMIT ?").all(limit) as Record<
        string,
        string | null
      >[]
    ).map(toJob);
  }

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
  };
}
