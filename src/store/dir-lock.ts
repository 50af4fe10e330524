/**
 * One process per data directory: a lock file (`airqube.lock`) holding the holder's pid, created atomically
 * with its content (a hard link to a file written first). A second requestor or provider on the same directory gets a typed error naming the holder; a
 * lock left by a process that is gone is recovered. The same process may take its own lock again (a
 * re-entrant count), so that one process can open a requestor twice on its directory in sequence, and a CLI
 * command can take the lock before it connects to anything and keep it while its Requestor or agent (which
 * take it again) runs.
 */
import { randomBytes } from "node:crypto";
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
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
  // one key per directory however it is spelt: a relative and an absolute path to the same directory are
  // the same lock (else this process would take its own lock for a stale one and replace it)
  const path = join(resolve(dataDir), LOCK_FILE);
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
  const content = `${JSON.stringify({ pid: process.pid, role, since: new Date().toISOString() })}\n`;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (create(path, content)) {
      held.set(path, 1);
      return releaser(path);
    }
    const seen = readRaw(path);
    if (seen === undefined) continue; // released in the meantime: try again
    const holder = parseHolder(seen);
    if (holder && holder.pid !== process.pid && isAlive(holder.pid)) {
      throw new UserError("DATA_DIR_LOCKED", `The data directory is in use by process ${holder.pid}`, {
        details: `${dataDir} is held by ${holder.role ?? "another airqube process"} (pid ${holder.pid}); stop it or use another --data-dir`,
      });
    }
    // stale: its holder is gone (or the file is unreadable): take it over, one process at a time
    removeStale(path, seen);
  }
  throw new PlatformError("STORE_UNAVAILABLE", "Cannot lock the data directory", { details: path });
}

/**
 * Creates the lock file with its whole content at once: written to a file of our own, then hard-linked to the
 * lock's name (fails if it exists). A lock file is never seen empty or half written, which another process
 * would take for a stale lock and remove while its holder runs.
 */
function create(path: string, content: string): boolean {
  const own = `${path}.${process.pid}.${randomBytes(4).toString("hex")}`;
  try {
    writeFileSync(own, content, { mode: 0o600, flag: "wx" });
    linkSync(own, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new PlatformError("STORE_UNAVAILABLE", "Cannot lock the data directory", { details: path, cause: error });
  } finally {
    rmSync(own, { force: true });
  }
}

/**
 * Removes a stale lock file if it still holds `seen`. Processes that found the same stale lock take turns (a
 * directory created atomically is the turn), so none removes the lock another has just taken. A turn left by
 * a process that died holding it expires after 10 s.
 */
function removeStale(path: string, seen: string): void {
  const turn = `${path}.takeover`;
  try {
    mkdirSync(turn);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
      throw new PlatformError("STORE_UNAVAILABLE", "Cannot lock the data directory", { details: path, cause: error });
    }
    try {
      if (Date.now() - statSync(turn).mtimeMs > 10_000) rmSync(turn, { recursive: true, force: true });
    } catch {
      // removed by its owner meanwhile
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // let the other process finish its turn
    return;
  }
  try {
    if (readRaw(path) === seen) rmSync(path, { force: true });
  } finally {
    rmSync(turn, { recursive: true, force: true });
  }
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

function readRaw(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").slice(0, 4096);
  } catch {
    return undefined;
  }
}

function parseHolder(text: string | undefined): { pid: number; role?: string } | undefined {
  try {
    if (text === undefined || text.length >= 4096) return undefined;
    const value = JSON.parse(text) as { pid?: unknown; role?: unknown };
    if (typeof value.pid !== "number" || !Number.isInteger(value.pid) || value.pid <= 0) return undefined;
    return { pid: value.pid, ...(typeof value.role === "string" ? { role: value.role.slice(0, 64) } : {}) };
  } catch {
    return undefined;
  }
}

function readHolder(path: string): { pid: number; role?: string } | undefined {
  return parseHolder(readRaw(path));
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
