/**
 * The requestor's journal in SQLite: every qube it dispatched, to whom, and how it ended, so that a requestor
 * that crashed knows what it was doing: on restart, qubes still open are reported as interrupted.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";

export type QubeState = "dispatching" | "verified" | "no-consensus" | "failed" | "interrupted";

export interface JournalQube {
  qubeId: string;
  state: QubeState;
  createdAt: string;
  updatedAt: string;
  summary: unknown;
  dispatches: { provider: string; state: string; outputsRoot: string | null; error: string | null }[];
}

export class RequestorJournal {
  private readonly db: DatabaseSync;

  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path);
    this.db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA busy_timeout = 5000;
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
    `);
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

  started(qubeId: string, spec: unknown, now: Date): void {
    this.db
      .prepare(
        "INSERT INTO qubes (qube_id, spec, state, created_at, updated_at) VALUES (?, ?, 'dispatching', ?, ?) ON CONFLICT(qube_id) DO UPDATE SET state = 'dispatching', updated_at = excluded.updated_at",
      )
      .run(qubeId, JSON.stringify(spec), now.toISOString(), now.toISOString());
  }

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

  get(qubeId: string): JournalQube | undefined {
    const row = this.db.prepare("SELECT * FROM qubes WHERE qube_id = ?").get(qubeId) as
      | Record<string, string>
      | undefined;
    return row ? this.toQube(row) : undefined;
  }

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

  close(): void {
    this.db.close();
  }
}
