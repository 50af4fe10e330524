/**
 * The provider's side of paying on agreement: before admitting a paid qube it checks that the proposal's
 * escrow job is the one the agreement names, that this provider holds a seat in it, and that the job is open
 * on chain (its budget locked: `openJob` pulls the budget in the same transaction); at commit time it bonds
 * its stake and commits on chain with the salt of its off-chain commitment, after recording the job and its
 * opening in the data directory (`seats.sqlite`), so that it can reveal and settle even after a restart.
 *
 * The keeper ({@link ProviderPayments.keep}, run by the agent and by `airqube provider settle`) looks after
 * every seat until its job is closed: it reveals on chain when the requestor asked on chain or went silent
 * (the job still open half a reveal window after the commit deadline), settles the job (or its qube's group)
 * once the contract allows it, and reclaims it after the final deadline. An honest provider thus never loses
 * its stake to a requestor that vanishes, and is paid when its answer is in the quorum.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { z } from "zod";
import { ChainError } from "../chain/errors.js";
import { EscrowClient, type OwnOpening } from "../chain/escrow-client.js";
import { type EscrowJob, jobIdOf } from "../chain/job.js";
import { type EscrowJobJson, jobFromJson, jobToJson } from "../chain/job-json.js";
import { qubeIdToBytes32 } from "../chain/qube-ids.js";
import type { CallOptions } from "../chain/rpc.js";
import type { AgreementTerms } from "../net/agreement.js";
import type { EscrowJobWire } from "../net/exchange/messages.js";
import { toAirqubeError, UserError } from "../qube/errors.js";
import { openDatabase } from "../store/sqlite.js";
import type { Refusal } from "./admission.js";

/** Where a provider is paid: the chain's RPC endpoint and the escrow contract. */
export interface ProviderChainConfig {
  rpcUrl: string;
  escrow: string;
  /** Largest stake this provider bonds for one qube, wei (decimal string). */
  maxStake: string;
}

/** Least time a provider needs between admission and the commit deadline beyond the qube's wall time. */
const COMMIT_MARGIN_MS = 5_000;

const chainFileSchema = z.strictObject({
  rpcUrl: z.string().min(1).max(2048),
  escrow: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
});

/** The chain file of an agent paid through escrow v1 (`chain.json`) and through escrow v2 (`chain-v2.json`). */
export const CHAIN_FILES = { 1: "chain.json", 2: "chain-v2.json" } as const;

/**
 * Writes `chain.json` (or, for escrow v2, `chain-v2.json`): the RPC URL and the escrow, no key, in a data
 * directory, for `airqube provider earnings` and `provider settle`.
 */
export function writeChainFile(dataDir: string, chain: { rpcUrl: string; escrow: string }, version: 1 | 2 = 1): void {
  const text = `${JSON.stringify({ rpcUrl: chain.rpcUrl, escrow: chain.escrow })}\n`;
  writeFileSync(join(dataDir, CHAIN_FILES[version]), text, { mode: 0o600 });
}

/** Reads `chain.json` (or `chain-v2.json`) from a data directory, if a paid agent ran there. */
export function readChainFile(dataDir: string, version: 1 | 2 = 1): { rpcUrl: string; escrow: string } | undefined {
  const path = join(dataDir, CHAIN_FILES[version]);
  if (!existsSync(path)) return undefined;
  try {
    return chainFileSchema.parse(JSON.parse(readFileSync(path, "utf8")));
  } catch (error) {
    throw new UserError("CONFIG_INVALID", "The chain file of the data directory is invalid", {
      details: path,
      cause: error,
    });
  }
}

/**
 * Checks escrow jobs at admission and commits on chain, for one provider account.
 *
 * @example
 * const payments = await ProviderPayments.connect(config.chain, wallet.privateKey);
 * const verdict = await payments.check({ escrow, terms, qubeId, wallTimeMs, now });
 */
export class ProviderPayments {
  private timer: NodeJS.Timeout | undefined;
  private keeping: Promise<unknown> | undefined;

  private constructor(
    readonly client: EscrowClient,
    private readonly maxStake: bigint,
    readonly seats: SeatStore | undefined,
  ) {}

  /**
   * Connects the payout account to the escrow. With `dataDir`, seats are kept in `seats.sqlite` there (the
   * agent and `airqube provider settle` pass it).
   *
   * @throws ChainError `CHAIN_UNREACHABLE` or `CHAIN_INVALID_RESPONSE` (no escrow at that address).
   */
  static async connect(
    chain: ProviderChainConfig,
    privateKey: string,
    options: CallOptions & { dataDir?: string } = {},
  ): Promise<ProviderPayments> {
    const client = await EscrowClient.connect({ rpcUrl: chain.rpcUrl, escrow: chain.escrow, privateKey }, options);
    const seats = options.dataDir ? new SeatStore(join(options.dataDir, "seats.sqlite")) : undefined;
    return new ProviderPayments(client, BigInt(chain.maxStake), seats);
  }

  /**
   * Decides whether a paid proposal may be admitted: the job must be the agreement's, name this qube and this
   * provider, pay at least the agreed price, leave time to commit, ask a stake within bounds, and be open on
   * chain. Returns the job, or a refusal with a stable code and a reason the requestor can act on.
   */
  async check(
    input: { escrow?: EscrowJobWire; terms: AgreementTerms; qubeId: string; wallTimeMs: number; now: Date },
    options: CallOptions = {},
  ): Promise<{ ok: true; job: EscrowJob } | ({ ok: false } & Refusal)> {
    const refuse = (code: string, reason: string) => ({ ok: false as const, code, reason });
    const { escrow, terms } = input;
    const me = this.client.address.toLowerCase();
    if (!escrow || !terms.escrowJob) {
      return refuse(
        "ESCROW_REQUIRED",
        `this provider works paid only: lock the budget in escrow ${this.client.escrowAddress} on chain ${this.client.chainId} and name the job in the agreement`,
      );
    }
    if (
      escrow.chainId !== this.client.chainId ||
      escrow.escrow.toLowerCase() !== this.client.escrowAddress.toLowerCase()
    )
      return refuse(
        "ESCROW_MISMATCH",
        `the job is on escrow ${escrow.escrow} (chain ${escrow.chainId}); this provider is paid through ${this.client.escrowAddress} (chain ${this.client.chainId})`,
      );
    let job: EscrowJob;
    try {
      job = jobFromJson(escrow);
    } catch (error) {
      return refuse("ESCROW_INVALID", `the escrow job is malformed: ${(error as Error).message}`);
    }
    const jobId = jobIdOf(job);
    if (jobId !== terms.escrowJob.toLowerCase())
      return refuse("ESCROW_MISMATCH", `the escrow job hashes to ${jobId}, the agreement names ${terms.escrowJob}`);
    if (job.qubeId !== qubeIdToBytes32(input.qubeId))
      return refuse("ESCROW_MISMATCH", "the escrow job is for another qube");
    const seat = job.providers.findIndex((p) => p.toLowerCase() === me);
    if (seat < 0)
      return refuse("ESCROW_MISMATCH", `this provider's payout address ${this.client.address} has no seat in the job`);
    if (job.price < BigInt(terms.price))
      return refuse("ESCROW_MISMATCH", `the job pays ${job.price} wei, the agreement says ${terms.price} wei`);
    if (job.stake > this.maxStake)
      return refuse(
        "STAKE_TOO_HIGH",
        `the job asks a stake of ${job.stake} wei, this provider bonds at most ${this.maxStake} wei`,
      );
    if (job.commitDeadline * 1000 < input.now.getTime() + input.wallTimeMs + COMMIT_MARGIN_MS)
      return refuse("ESCROW_DEADLINE", "the job's commit deadline leaves no time to run the qube and commit");
    try {
      const state = await this.client.jobState(jobId, options);
      if (state.status !== "open")
        return refuse(
          "ESCROW_NOT_OPEN",
          `escrow job ${jobId} is ${state.status === "none" ? "not opened" : state.status} on chain: its budget is not locked`,
        );
      if (state.committed.includes(seat))
        return refuse("ESCROW_NOT_OPEN", `seat ${seat} of job ${jobId} has already committed`);
      if (job.stake > 0n && (await this.client.tokenBalanceOf(this.client.address, options)) < job.stake)
        return refuse("STAKE_UNAVAILABLE", `this provider cannot bond the stake of ${job.stake} wei`);
    } catch (error) {
      const code = error instanceof ChainError ? error.code : "CHAIN_INVALID_RESPONSE";
      return refuse("ESCROW_UNVERIFIABLE", `could not check the escrow job on chain (${code})`);
    }
    return { ok: true, job };
  }

  /**
   * Bonds the stake and commits `own` (outputs root and salt as bytes32) on chain; the seat and its opening
   * are recorded first, so that a crash after the transaction still lets the keeper reveal and settle.
   */
  async commit(
    job: EscrowJob,
    own: OwnOpening,
    options: CallOptions = {},
  ): Promise<{ hash: string; commitment: string }> {
    this.seats?.add(job, own, new Date());
    const { hash, commitment } = await this.client.commit(job, own, options);
    return { hash, commitment };
  }

  /**
   * One pass of the keeper over every open seat: reveal, settle or reclaim what the contract allows now.
   * Never throws for one job: its error is in its report.
   *
   * @example
   * const reports = await payments.keep({ now: Date.now() });
   */
  async keep(options: CallOptions & { force?: boolean } = {}): Promise<SeatReport[]> {
    if (!this.seats) return [];
    const reports: SeatReport[] = [];
    for (const seat of this.seats.open()) {
      try {
        reports.push(await this.keepSeat(seat, options));
      } catch (error) {
        const e = toAirqubeError(error);
        reports.push({ jobId: seat.jobId, action: "error", error: { code: e.code, message: e.message } });
      }
    }
    return reports;
  }

  /**
   * Runs {@link keep} every `intervalMs` (default 5 s) until {@link close}; `onReport` sees every action taken.
   */
  startKeeper(intervalMs = 5_000, onReport?: (report: SeatReport) => void): void {
    if (this.timer || !this.seats) return;
    const tick = () => {
      this.keeping = this.keep({ timeoutMs: Math.max(10_000, intervalMs * 4) })
        .then((reports) => {
          for (const r of reports) if (r.action !== "wait") onReport?.(r);
        })
        .catch(() => undefined)
        .finally(() => {
          if (this.timer) this.timer = setTimeout(tick, intervalMs);
        });
    };
    this.timer = setTimeout(tick, Math.min(intervalMs, 1_000));
  }

  private async keepSeat(seat: StoredSeat, options: CallOptions & { force?: boolean }): Promise<SeatReport> {
    const { job, jobId, own } = seat;
    const me = this.client.address.toLowerCase();
    const index = job.providers.findIndex((p) => p.toLowerCase() === me);
    const state = await this.client.jobState(jobId, options);
    const now = Math.max(await this.client.chainTime(options), Math.floor(Date.now() / 1000));
    const wait = (notBefore: number): SeatReport => ({ jobId, action: "wait", notBefore });
    if (state.status === "settled" || state.status === "reclaimed") {
      this.seats!.markClosed(jobId, state.status, new Date());
      return { jobId, action: state.status === "settled" ? "was-settled" : "was-reclaimed" };
    }
    if (state.status === "none" || !state.committed.includes(index)) {
      // our commitment never made it: nothing of ours is bonded once the commit deadline passed
      if (now > job.commitDeadline) {
        this.seats!.markClosed(jobId, "not-committed", new Date());
        return { jobId, action: "not-committed" };
      }
      return wait(job.commitDeadline + 1);
    }
    if (now > job.finalDeadline) {
      const tx = await this.client.reclaim(job, options);
      this.seats!.markClosed(jobId, "reclaimed", new Date());
      return { jobId, action: "reclaimed", tx: tx.hash };
    }
    const k = job.providers.length;
    const phaseOver = state.committed.length === k || now > job.commitDeadline;
    if (!phaseOver) return wait(job.commitDeadline + 1);
    const group = await this.client.jobGroup(jobId, options);
    const window = job.revealDeadline - job.commitDeadline;
    const silentAfter = job.commitDeadline + Math.floor(window / 2);
    if (!state.revealed.includes(index) && (group.revealRequestedAt > 0 || now > silentAfter || options.force)) {
      const tx = await this.client.reveal(job, new Map([[this.client.address, own]]), options);
      return { jobId, action: "revealed", tx: tx.hash };
    }
    if (!options.force && now <= silentAfter) return wait(silentAfter + 1);
    // the requestor is late: settle the job (or its qube's group) with what is on chain, once allowed
    const jobs = group.followUp || group.followUps > 0 ? await this.client.groupOf(job, options) : [job];
    try {
      const tx =
        jobs.length === 1
          ? await this.client.settle(job, new Map([[this.client.address, own]]), options)
          : await this.client.settleGroup(jobs, new Map([[this.client.address, own]]), options);
      this.seats!.markClosed(jobId, "settled", new Date());
      return { jobId, action: "settled", tx: tx.hash };
    } catch (error) {
      if (error instanceof ChainError && error.errorName === "AirqubeEscrowTooEarly") {
        return wait(Number(error.errorArgs[1] ?? 0) + 1);
      }
      throw error;
    }
  }

  /** Stops the keeper (waits for a pass under way) and releases the connection and the seat store. */
  async close(): Promise<void> {
    const timer = this.timer;
    this.timer = undefined;
    if (timer) clearTimeout(timer);
    await this.keeping;
    this.client.close();
    this.seats?.dispose();
  }
}

/** What the keeper did for one seat. */
export interface SeatReport {
  jobId: string;
  action: "wait" | "revealed" | "settled" | "reclaimed" | "was-settled" | "was-reclaimed" | "not-committed" | "error";
  tx?: string;
  /** Unix seconds from which the next step is allowed, when waiting. */
  notBefore?: number;
  error?: { code: string; message: string };
}

interface StoredSeat {
  jobId: string;
  job: EscrowJob;
  own: OwnOpening;
}

/** The provider's seats in SQLite: each escrow job it commits to, with its opening, until the job is closed. */
export class SeatStore {
  private readonly db: DatabaseSync;

  constructor(path: string) {
    this.db = openDatabase(
      path,
      `CREATE TABLE IF NOT EXISTS seats (
        job_id TEXT PRIMARY KEY, job TEXT NOT NULL, outputs_root TEXT NOT NULL, salt TEXT NOT NULL,
        state TEXT NOT NULL, updated_at TEXT NOT NULL
      );`,
    );
  }

  /** Records a seat before its commit transaction is sent (idempotent). */
  add(job: EscrowJob, own: OwnOpening, now: Date): void {
    this.db
      .prepare(
        "INSERT INTO seats (job_id, job, outputs_root, salt, state, updated_at) VALUES (?, ?, ?, ?, 'open', ?) ON CONFLICT(job_id) DO NOTHING",
      )
      .run(jobIdOf(job), JSON.stringify(jobToJson(job)), own.outputsRoot, own.salt, now.toISOString());
  }

  /** Seats whose job is not known to be closed. */
  open(): StoredSeat[] {
    const rows = this.db.prepare("SELECT * FROM seats WHERE state = 'open' ORDER BY rowid").all() as Record<
      string,
      string
    >[];
    return rows.map((r) => ({
      jobId: r.job_id!,
      job: jobFromJson(JSON.parse(r.job!) as EscrowJobJson),
      own: { outputsRoot: r.outputs_root!, salt: r.salt! },
    }));
  }

  /** Every seat with its state. */
  all(): { jobId: string; state: string; updatedAt: string }[] {
    return (
      this.db.prepare("SELECT job_id, state, updated_at FROM seats ORDER BY rowid").all() as Record<string, string>[]
    ).map((r) => ({ jobId: r.job_id!, state: r.state!, updatedAt: r.updated_at! }));
  }

  /** Marks a seat's job closed (`settled`, `reclaimed`, `not-committed`). */
  markClosed(jobId: string, state: string, now: Date): void {
    this.db.prepare("UPDATE seats SET state = ?, updated_at = ? WHERE job_id = ?").run(state, now.toISOString(), jobId);
  }

  /** Closes the database. */
  dispose(): void {
    this.db.close();
  }
}

/**
 * `airqube provider settle`: one keeper pass over the seats of a provider data directory, using its payout key
 * and the chain it last ran with (or the given one). With `force`, reveals on chain and tries to settle without
 * waiting for the requestor's grace.
 *
 * @throws UserError `CONFIG_INVALID` when no chain is known for the directory.
 */
export async function settleSeats(
  dataDir: string,
  options: CallOptions & { rpcUrl?: string; escrow?: string; force?: boolean; privateKey: string },
): Promise<SeatReport[]> {
  const saved = readChainFile(dataDir);
  const rpcUrl = options.rpcUrl ?? saved?.rpcUrl;
  const escrow = options.escrow ?? saved?.escrow;
  if (!rpcUrl || !escrow) {
    throw new UserError("CONFIG_INVALID", "No chain is known for this data directory", {
      details: "pass --rpc-url and --escrow (a paid agent writes them to chain.json)",
    });
  }
  const payments = await ProviderPayments.connect({ rpcUrl, escrow, maxStake: "0" }, options.privateKey, {
    ...options,
    dataDir,
  });
  try {
    return await payments.keep(options);
  } finally {
    await payments.close();
  }
}
