/**
 * One process per data directory: a lock file (`airqube.lock`) holding the holder's pid, created atomically
 * (`O_EXCL`). A second requestor or provider on the same directory gets a typed error naming the holder; a
 * lock left by a process that is gone is recovered. The same process may take its own lock again (a
 * re-entrant count), so that one process can open a requestor twice on its directory in sequence.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { PlatformError, UserError } from "../qube/errors.js";

/** The lock file's name in a data directory. */
export const LOCK_FILE = "airqube.lock";

/** A held lock; `release()` removes the file once every holder in this process released it. */
export interface DirLock {
  readonly path: string;
  release(): void;
}

const held = new Map<string, number>();

/**
 * Takes the lock of `dataDir` for `role` (shown to a second process), or fails.
 *
 * @throws UserError `DATA_DIR_LOCKED` naming the pid of the live holder.
 * @throws PlatformError `STORE_UNAVAILABLE` when the directory cannot be written.
 * @example
 * const lock = lockDataDir(dataDir, "requestor");
 * try { ... } finally { lock.release(); }
 */
export function lockDataDir(dataDir: string, role: string): DirLock {
  const path = join(dataDir, LOCK_FILE);
  const count = held.get(path) ?? 0;
  if (count > 0) {
    held.set(path, count + 1);
    return releaser(path);
  }
  try {
    mkdirSync(dataDir, { recursive: true });
  } catch (error) {
    throw new PlatformError("STORE_UNAVAILABLE", "Cannot create the data directory", {
      details: dataDir,
      cause: error,
    });
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      try {
        writeSync(fd, `${JSON.stringify({ pid: process.pid, role, since: new Date().toISOString() })}\n`);
      } finally {
        closeSync(fd);
      }
      held.set(path, 1);
      return releaser(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new PlatformError("STORE_UNAVAILABLE", "Cannot lock the data directory", { details: path, cause: error });
      }
    }
    const holder = readHolder(path);
    if (holder && holder.pid !== process.pid && isAlive(holder.pid)) {
      throw new UserError("DATA_DIR_LOCKED", `The data directory is in use by process ${holder.pid}`, {
        details: `${dataDir} is held by ${holder.role ?? "another airqube process"} (pid ${holder.pid}); stop it or use another --data-dir`,
      });
    }
    // stale: its holder is gone (or the file is unreadable): take it over
    rmSync(path, { force: true });
  }
  throw new PlatformError("STORE_UNAVAILABLE", "Cannot lock the data directory", { details: path });
}

function releaser(path: string): DirLock {
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      const count = (held.get(path) ?? 1) - 1;
      if (count > 0) {
        held.set(path, count);
        return;
      }
      held.delete(path);
      const holder = readHolder(path);
      if (holder?.pid === process.pid) rmSync(path, { force: true });
    },
  };
}

function readHolder(path: string): { pid: number; role?: string } | undefined {
  try {
    const text = readFileSync(path, "utf8");
    if (text.length > 4096) return undefined;
    const value = JSON.parse(text) as { pid?: unknown; role?: unknown };
    if (typeof value.pid !== "number" || !Number.isInteger(value.pid) || value.pid <= 0) return undefined;
    return { pid: value.pid, ...(typeof value.role === "string" ? { role: value.role.slice(0, 64) } : {}) };
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
