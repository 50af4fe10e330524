/**
 * Host uids for sandboxes: each concurrent sandbox runs as a uid of its own from a configured range, so an escape
 * from one qube lands as a uid that owns no other tenant's processes or files (as Firecracker's jailer gives
 * each VM its own uid). A uid is handed out again only after `release`, which the sandbox calls once nothing of
 * the qube is left (its container removed); released uids go to the back of the queue, so reuse is as late as
 * the range allows.
 */
import { PlatformError, UserError } from "../qube/errors.js";
import type { UidSweepReport } from "./uid-sweep.js";

/** A range of host uids: `first` to `first + count - 1` (the same numbers serve as gids). */
export interface UidRange {
  first: number;
  count: number;
}

/** Lowest uid a range may start at: below it live the system's own users. */
export const MIN_SANDBOX_UID = 1000;

/**
 * Hands out uids of a range, one per live sandbox.
 *
 * @example
 * const pool = new UidPool({ first: 200_000, count: 64 });
 * const uid = pool.acquire(); // 200000
 * // ... the sandbox runs as uid:uid and is destroyed ...
 * pool.release(uid);
 */
export class UidPool {
  private readonly free: number[];
  private readonly held = new Set<number>();
  /** Released uids whose sweep runs: not handed out until it ends. */
  private readonly sweeping = new Map<number, Promise<void>>();
  /** Uids whose sweep did not complete: never handed out again by this pool. */
  private readonly out = new Set<number>();
  private readonly sweep: ((uid: number) => Promise<UidSweepReport>) | undefined;
  private readonly onSwept: ((report: UidSweepReport) => void) | undefined;

  /**
   * `sweep`: run on each released uid before it is handed out again (e.g. {@link sweepUid}: its processes
   * killed, its files in world-writable directories removed); a uid whose sweep is incomplete or fails stays
   * out of service. `onSwept` sees each report (for the log).
   */
  constructor(
    readonly range: UidRange,
    options: {
      sweep?: (uid: number) => Promise<UidSweepReport>;
      onSwept?: (report: UidSweepReport) => void;
    } = {},
  ) {
    this.sweep = options.sweep;
    this.onSwept = options.onSwept;
    const { first, count } = range;
    if (!Number.isInteger(first) || !Number.isInteger(count) || count < 1 || count > 65_536)
      throw new UserError("UID_RANGE_INVALID", "A uid range needs an integer first uid and 1 to 65536 uids", {
        details: JSON.stringify(range),
      });
    if (first < MIN_SANDBOX_UID || first + count - 1 > 2 ** 31 - 2 || (first <= 65534 && 65534 < first + count))
      throw new UserError(
        "UID_RANGE_INVALID",
        `A uid range must lie between ${MIN_SANDBOX_UID} and 2^31-2, without 65534`,
        {
          details: JSON.stringify(range),
        },
      );
    this.free = Array.from({ length: count }, (_, i) => first + i);
  }

  /** A uid no live sandbox holds; `UID_EXHAUSTED` when every uid of the range is held. */
  acquire(): number {
    const uid = this.free.shift();
    if (uid === undefined)
      throw new PlatformError("UID_EXHAUSTED", "Every uid of the sandbox range is in use", {
        details: `${this.range.count} uids from ${this.range.first} (${this.held.size} in use, ${this.sweeping.size} being swept, ${this.out.size} out of service): make the range at least as large as the concurrency`,
      });
    this.held.add(uid);
    return uid;
  }

  /** Returns a uid once nothing of its sandbox is left. Releasing a uid not held is ignored. */
  release(uid: number): void {
    if (!this.held.delete(uid)) return;
    if (!this.sweep) {
      this.free.push(uid);
      return;
    }
    const swept = this.sweep(uid).then(
      (report) => {
        this.onSwept?.(report);
        if (report.complete) this.free.push(uid);
        else this.out.add(uid);
      },
      () => {
        this.out.add(uid);
      },
    );
    this.sweeping.set(
      uid,
      swept.finally(() => this.sweeping.delete(uid)),
    );
  }

  /** Resolves once every sweep started so far has ended. */
  async settled(): Promise<void> {
    await Promise.all(this.sweeping.values());
  }

  /** Uids taken out of service because their sweep did not complete. */
  get outOfService(): number[] {
    return [...this.out];
  }

  /** Uids held right now. */
  get inUse(): number {
    return this.held.size;
  }
}
