/**
 * Provider reputation in the BOINC manner, persisted in SQLite: each provider's count of consecutive valid
 * results, and a mark with an expiry for providers caught with a wrong result (a dissent from the verified
 * root, or a commitment without a valid reveal). Marked providers are excluded until the mark expires; one
 * wrong result resets the count to zero.
 */
import type { DatabaseSync } from "node:sqlite";
import { openDatabase } from "../store/sqlite.js";

/** What is known of one provider's track record. */
export interface Reputation {
  /** Valid results in a row since its last wrong one. */
  consecutiveValid: number;
  /** ISO time until which the provider is excluded, if marked. */
  markedUntil?: string;
  /** Wrong results in all. */
  wrong: number;
}

/** The port (a Map-backed one serves the simulator and unit tests). */
export interface ReputationStore {
  /** The provider's reputation (zero counts when unknown). */
  get(provider: string): Reputation;
  /** Counts one more valid result in a row. */
  recordValid(provider: string): void;
  /** Counts a wrong result: resets the valid count and excludes the provider for `excludeMs` from `now`. */
  recordWrong(provider: string, now: Date, excludeMs: number): void;
  /** True while the provider's mark has not expired. */
  isExcluded(provider: string, now: Date): boolean;
}

/**
 * In-memory store.
 *
 * @example
 * const reputation = new MemoryReputation();
 * reputation.recordWrong("12D3…", new Date(), 24 * 3600_000);
 * reputation.isExcluded("12D3…", new Date()); // true
 */
export class MemoryReputation implements ReputationStore {
  private readonly map = new Map<string, Reputation>();
  get(provider: string): Reputation {
    return this.map.get(provider) ?? { consecutiveValid: 0, wrong: 0 };
  }
  recordValid(provider: string): void {
    const r = this.get(provider);
    this.map.set(provider, { ...r, consecutiveValid: r.consecutiveValid + 1 });
  }
  recordWrong(provider: string, now: Date, excludeMs: number): void {
    const r = this.get(provider);
    this.map.set(provider, {
      consecutiveValid: 0,
      wrong: r.wrong + 1,
      markedUntil: new Date(now.getTime() + excludeMs).toISOString(),
    });
  }
  isExcluded(provider: string, now: Date): boolean {
    const until = this.get(provider).markedUntil;
    return until !== undefined && Date.parse(until) > now.getTime();
  }
}

/**
 * SQLite store (in the requestor's data directory). Synchronous; close it when done.
 *
 * @example
 * const reputation = new SqliteReputation(join(dataDir, "reputation.sqlite"));
 * console.log(reputation.all());
 * reputation.close();
 */
export class SqliteReputation implements ReputationStore {
  private readonly db: DatabaseSync;
  /** Opens (creating if needed) the store at `path`; throws PlatformError `STORE_UNAVAILABLE`. */
  constructor(path: string) {
    this.db = openDatabase(
      path,
      `
      CREATE TABLE IF NOT EXISTS reputation (
        provider TEXT PRIMARY KEY, consecutive_valid INTEGER NOT NULL, wrong INTEGER NOT NULL, marked_until TEXT
      );
    `,
    );
  }
  get(provider: string): Reputation {
    const row = this.db
      .prepare("SELECT consecutive_valid, wrong, marked_until FROM reputation WHERE provider = ?")
      .get(provider) as { consecutive_valid: number; wrong: number; marked_until: string | null } | undefined;
    if (!row) return { consecutiveValid: 0, wrong: 0 };
    return {
      consecutiveValid: Number(row.consecutive_valid),
      wrong: Number(row.wrong),
      ...(row.marked_until ? { markedUntil: row.marked_until } : {}),
    };
  }
  recordValid(provider: string): void {
    this.db
      .prepare(
        "INSERT INTO reputation (provider, consecutive_valid, wrong) VALUES (?, 1, 0) ON CONFLICT(provider) DO UPDATE SET consecutive_valid = consecutive_valid + 1",
      )
      .run(provider);
  }
  recordWrong(provider: string, now: Date, excludeMs: number): void {
    const until = new Date(now.getTime() + excludeMs).toISOString();
    this.db
      .prepare(
        "INSERT INTO reputation (provider, consecutive_valid, wrong, marked_until) VALUES (?, 0, 1, ?) ON CONFLICT(provider) DO UPDATE SET consecutive_valid = 0, wrong = wrong + 1, marked_until = excluded.marked_until",
      )
      .run(provider, until);
  }
  isExcluded(provider: string, now: Date): boolean {
    const until = this.get(provider).markedUntil;
    return until !== undefined && Date.parse(until) > now.getTime();
  }
  /** Every known provider's reputation, sorted by provider id. */
  all(): ({ provider: string } & Reputation)[] {
    return (this.db.prepare("SELECT provider FROM reputation ORDER BY provider").all() as { provider: string }[]).map(
      (r) => ({ provider: r.provider, ...this.get(r.provider) }),
    );
  }
  /** Closes the database. */
  close(): void {
    this.db.close();
  }
}
