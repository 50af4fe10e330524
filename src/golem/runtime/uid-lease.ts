/**
 * Host uids for the runtime's sandboxes (the provider's UidPool, src/sandbox/uid-pool.ts), shared by runtime
 * processes: ya-provider starts one runtime per activity, so a configured range is cut into blocks of
 * {@link UID_BLOCK} uids and each instance leases one (`<home>/uid-leases/<n>.json`, created exclusively, with
 * the owner's pid and start time). A block whose owner is gone (SIGKILL included) is swept (its uids' processes
 * killed and files removed: `sweepUid`) before another instance takes it; a block that does not sweep clean
 * stays out of service.
 */
import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PlatformError } from "../../qube/errors.js";
import { UidPool, type UidRange } from "../../sandbox/uid-pool.js";
import { sweepUid, type UidSweepReport } from "../../sandbox/uid-sweep.js";
import { alive, processStartTime } from "./sweep.js";

/** Uids per leased block: as many as processes one activity may run at once. */
export const UID_BLOCK = 16;

/** A leased block: the pool the instance's sandboxes draw from, and how to give it back. */
export interface UidLease {
  pool: UidPool;
  block: number;
  /** Waits for the pool's sweeps, then frees the block (kept leased when a uid did not sweep clean). */
  release(): Promise<void>;
}

/** Sweeps one uid (its processes killed, its files removed): `sweepUid` by default. */
export type UidSweeper = (uid: number) => Promise<UidSweepReport>;

async function sweepBlock(range: UidRange, sweep: UidSweeper): Promise<boolean> {
  let clean = true;
  for (let uid = range.first; uid < range.first + range.count; uid++) {
    const report = await sweep(uid).catch(() => undefined);
    if (!report?.complete) clean = false;
  }
  return clean;
}

/**
 * Leases a free block of `range` for this process.
 *
 * @throws PlatformError `RUNTIME_NO_UIDS` when every block is leased by a live runtime or out of service;
 *   UserError `UID_RANGE_INVALID` for a range UidPool refuses.
 * @example
 * const lease = await leaseUidBlock(home, { first: 400_000, count: 256 }, instance.id);
 */
export async function leaseUidBlock(
  home: string,
  range: UidRange,
  instance: string,
  options: { sweep?: UidSweeper } = {},
): Promise<UidLease> {
  const sweep = options.sweep ?? ((uid: number) => sweepUid(uid));
  const dir = join(home, "uid-leases");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const blocks = Math.floor(range.count / UID_BLOCK);
  const record = JSON.stringify({ pid: process.pid, startTime: await processStartTime(process.pid), instance });
  for (let block = 0; block < blocks; block++) {
    const file = join(dir, `${range.first}-${block}.json`);
    const sub = { first: range.first + block * UID_BLOCK, count: UID_BLOCK };
    const pool = new UidPool(sub, { sweep }); // validates the range first
    let taken = await writeFile(file, record, { flag: "wx", mode: 0o600 }).then(
      () => true,
      () => false,
    );
    if (!taken) {
      const owner = await readFile(file, "utf8")
        .then((text) => JSON.parse(text) as { pid: number; startTime: string })
        .catch(() => undefined);
      if (owner && Number.isInteger(owner.pid) && (await alive(owner))) continue;
      // a gone owner's block: nothing of its tenants may be left before the next one gets these uids
      if (!(await sweepBlock(sub, sweep))) continue;
      await unlink(file).catch(() => undefined);
      taken = await writeFile(file, record, { flag: "wx", mode: 0o600 }).then(
        () => true,
        () => false,
      );
      if (!taken) continue;
    }
    return {
      pool,
      block,
      release: async () => {
        await pool.settled();
        if (pool.outOfService.length === 0) await unlink(file).catch(() => undefined);
      },
    };
  }
  throw new PlatformError("RUNTIME_NO_UIDS", "Every uid block of the runtime's range is in use", {
    details: `${blocks} blocks of ${UID_BLOCK} from uid ${range.first}`,
  });
}
