/**
 * What a sandbox's host uid may have left behind, removed before the uid serves another tenant: processes
 * still running as it (a daemon an escaped qube started) and files it owns in the host's world-writable
 * directories (`/tmp`, `/var/tmp`, `/dev/shm`). Without this sweep a qube that escaped once could plant
 * something for the next qube that runs as the same uid.
 */
import { lstat, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";

/** The host's directories any uid can write to. */
export const WORLD_WRITABLE_ROOTS = ["/tmp", "/var/tmp", "/dev/shm"];

/** Bounds of one sweep: entries looked at, depth below a root. */
export const SWEEP_MAX_ENTRIES = 100_000;
export const SWEEP_MAX_DEPTH = 32;

/** What a sweep did. `complete` is false when a bound cut it short or something could not be removed. */
export interface UidSweepReport {
  uid: number;
  killed: number;
  removed: number;
  complete: boolean;
}

/**
 * Kills every process whose real, effective or saved uid is `uid`, then removes every file and directory it owns
 * under `roots` (not following symbolic links, not crossing into other file systems).
 *
 * @example
 * const report = await sweepUid(200_001);
 * if (!report.complete) keepOutOfService(200_001);
 */
export async function sweepUid(
  uid: number,
  options: { roots?: string[]; procDir?: string; maxEntries?: number } = {},
): Promise<UidSweepReport> {
  const report: UidSweepReport = { uid, killed: 0, removed: 0, complete: true };
  const killed = await killProcessesOf(uid, options.procDir ?? "/proc");
  report.killed = killed.count;
  if (!killed.complete) report.complete = false;
  const budget = { left: options.maxEntries ?? SWEEP_MAX_ENTRIES };
  for (const root of options.roots ?? WORLD_WRITABLE_ROOTS) {
    let rootInfo: Awaited<ReturnType<typeof lstat>>;
    try {
      rootInfo = await lstat(root);
    } catch {
      continue; // no such directory on this host
    }
    if (!rootInfo.isDirectory()) continue;
    if (!(await removeOwned(root, uid, Number(rootInfo.dev), 0, budget, report))) report.complete = false;
  }
  return report;
}

/** Sends SIGKILL to each process of `uid` (twice over /proc, for one that forked meanwhile). */
async function killProcessesOf(uid: number, procDir: string): Promise<{ count: number; complete: boolean }> {
  let count = 0;
  for (let pass = 0; pass < 2; pass++) {
    let found = 0;
    let names: string[];
    try {
      names = await readdir(procDir);
    } catch {
      return { count, complete: false };
    }
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      let status: string;
      try {
        status = await readFile(join(procDir, name, "status"), "utf8");
      } catch {
        continue; // gone meanwhile
      }
      const uids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
      if (!uids?.slice(1, 4).some((u) => Number(u) === uid)) continue;
      found++;
      try {
        process.kill(Number(name), "SIGKILL");
        count++;
      } catch {
        // already gone
      }
    }
    if (found === 0) return { count, complete: true };
  }
  return { count, complete: false };
}

/** Removes what `uid` owns below `dir`; false when a bound was hit or a removal failed. */
async function removeOwned(
  dir: string,
  uid: number,
  dev: number,
  depth: number,
  budget: { left: number },
  report: UidSweepReport,
): Promise<boolean> {
  if (depth > SWEEP_MAX_DEPTH) return false;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return true; // not readable by us, or gone: nothing of ours to do there
  }
  let ok = true;
  for (const name of names) {
    if (--budget.left < 0) return false;
    const path = join(dir, name);
    let info: Awaited<ReturnType<typeof lstat>>;
    try {
      info = await lstat(path);
    } catch {
      continue;
    }
    if (Number(info.dev) !== dev) continue; // another file system mounted here
    if (Number(info.uid) === uid) {
      try {
        await rm(path, { recursive: true, force: true });
        report.removed++;
      } catch {
        ok = false;
      }
    } else if (info.isDirectory() && !(await removeOwned(path, uid, dev, depth + 1, budget, report))) ok = false;
  }
  return ok;
}
