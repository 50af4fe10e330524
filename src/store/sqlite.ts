/**
 * Local state in SQLite (`node:sqlite`, built into Node 24): one way to open a database file, shared by the
 * provider's job ledger and the requestor's journal and reputation. WAL journalling keeps every single-statement
 * write atomic across a crash; a file that is not a database gives a typed error instead of a crash.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { PlatformError } from "../qube/errors.js";

/**
 * Opens (creating if needed) the database at `path` and applies `schema` (idempotent DDL).
 *
 * @example
 * const db = openDatabase(join(dataDir, "ledger.sqlite"), "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY)");
 */
export function openDatabase(path: string, schema: string): DatabaseSync {
  try {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    const db = new DatabaseSync(path);
    db.exec("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;");
    db.exec(schema);
    return db;
  } catch (error) {
    throw new PlatformError("STORE_UNAVAILABLE", "Cannot open the local database", {
      details: `${path}: ${(error as Error).message}`,
      cause: error,
    });
  }
}
