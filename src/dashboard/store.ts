/**
 * Read-only access to another process's SQLite files, for the dashboard. Each request opens the file with
 * `readOnly: true` and closes it at once: no schema is created, no WAL recovery is written, no lock of the data
 * directory is taken (`airqube.lock` is never touched), so that a running provider or requestor is never
 * disturbed and nothing it owns is "recovered" by a viewer. A file that does not exist yet reads as empty.
 * (SQLite itself may create the empty `-wal`/`-shm` companions of a WAL database that any reader needs.)
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { PlatformError } from "../qube/errors.js";

/** Largest JSON side file (status.json, probe reports, profile) read, bytes. */
export const MAX_SIDE_FILE_BYTES = 4 * 1024 * 1024;

/** A read-only handle on one SQLite file. */
export interface ReadOnlyDb {
  /** Rows of `sql` (empty when a table it reads does not exist yet). */
  all<T>(sql: string, ...params: (string | number | null)[]): T[];
  /** True when the table exists. */
  has(table: string): boolean;
}

/**
 * Runs `read` on the database at `path` opened read-only, or returns `fallback` when the file does not exist.
 *
 * @throws PlatformError `STORE_UNAVAILABLE` when the file exists but cannot be read as a database.
 * @example
 * const n = withReadOnly(join(dir, "ledger.sqlite"), 0, (db) => db.all<{ n: number }>("SELECT COUNT(*) AS n FROM jobs")[0]?.n ?? 0);
 */
export function withReadOnly<T>(path: string, fallback: T, read: (db: ReadOnlyDb) => T): T {
  if (!existsSync(path)) return fallback;
  try {
    return readWith(path, read);
  } catch (error) {
    // a directory this process cannot write (another user's data directory): SQLite cannot create the shared
    // memory file of a WAL database. Without a WAL file no write is pending, so the file can be read as it is.
    if (existsSync(`${path}-wal`)) throw wrap(path, error);
    try {
      return readWith(`${pathToFileURL(path).href}?immutable=1`, read);
    } catch (again) {
      throw wrap(path, again);
    }
  }
}

function readWith<T>(location: string, read: (db: ReadOnlyDb) => T): T {
  const db = new DatabaseSync(location, { readOnly: true });
  try {
    db.exec("PRAGMA busy_timeout = 2000; PRAGMA query_only = 1;");
    const tables = new Set(
      (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map(
        (row) => row.name,
      ),
    );
    return read({
      has: (table) => tables.has(table),
      all: <R>(sql: string, ...params: (string | number | null)[]) => db.prepare(sql).all(...params) as R[],
    });
  } finally {
    db.close();
  }
}

function wrap(path: string, error: unknown): PlatformError {
  return new PlatformError("STORE_UNAVAILABLE", "Cannot read the local database", {
    details: `${path}: ${(error as Error).message}`,
    cause: error,
  });
}

/** Parses a small JSON file, or undefined when it is missing, too large or not JSON. */
export function readJsonFile(path: string): unknown {
  try {
    if (!existsSync(path) || statSync(path).size > MAX_SIDE_FILE_BYTES) return undefined;
    return JSON.parse(readFileSync(path, "utf8")) as unknown;
  } catch {
    return undefined;
  }
}

/** JSON text of a column, parsed; null when absent or unparsable. */
export function parseColumn(text: string | null | undefined): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
