/**
 * Paying on agreement: the requestor's payments port and its escrow adapter. The requestor locks the budget
 * of a round (`price * k`) in the escrow before it sends the qube to that round's providers, names the job in
 * the agreement, and settles it with the providers' openings (outputs root and salt of their verified
 * reveals) once the result is decided. Amounts are wei, reported as decimal strings (JSON-safe).
 *
 * Groups (issue 22, "payment follows the qube's decision"): the first round locks one job (the leader); a
 * replacement or a tie-breaker round opens a follow-up job in the leader's group (`openFollowUp`), and the
 * qube's jobs are settled together (`settleGroup`): the contract counts the votes of all of them, so a
 * first-round provider whose answer is in the decided quorum is paid although its own job lost seats, and a
 * tie-breaker whose answer went against the quorum is slashed as a dissenter instead of being paid by a
 * one-seat quorum of its own.
 *
 * Every job is journalled with its deterministic id before its lock transaction is sent (`onPrepared`), so a
 * lock that times out on our side and is mined later is still found and reconciled. When openings are missing
 * after the run, the requestor asks for reveals on chain (`requestReveal`): only then, after a full reveal
 * window, can a provider that never revealed be slashed.
 */
import { randomBytes } from "node:crypto";
import { Interface, type JsonRpcProvider } from "ethers";
import { airqubeEscrowAbi } from "../chain/abi/airqube-escrow.js";
import { ChainError } from "../chain/errors.js";
import { EscrowClient, type EscrowClientConfig, followUpNonce, type OwnOpening } from "../chain/escrow-client.js";
import type { CompactSignature } from "../chain/escrow-v2-client.js";
import { budgetOf, type EscrowJob, jobIdOf, parseEscrowJob } from "../chain/job.js";
import { type EscrowJobJson, jobFromJson, jobToJson } from "../chain/job-json.js";
import { qubeIdToBytes32 } from "../chain/qube-ids.js";
import { type CallOptions, ChainClock, createRpcProvider, runChainCall } from "../chain/rpc.js";
import type { EscrowBatchWire, EscrowJobWire } from "../net/exchange/messages.js";
import { TimeoutError, toAirqubeError } from "../qube/errors.js";
import type { EscrowSeat } from "./api.js";
import type { JournalEscrowJob, RequestorJournal } from "./journal.js";

/** What became of one escrow job. */
export interface PaymentReport {
  jobId: string;
  qubeId: string;
  /** The job's providers (payout addresses), in seat order. */
  providers: string[];
  /** Locked budget, wei. */
  budget: string;
  /** Paid to each provider of the quorum, wei. */
  price: string;
  /** Bonded by each provider, wei. */
  stake: string;
  lockTx?: string;
  /**
   * `pending`: not yet allowed to settle (see `notBefore`) or the settlement failed (see `error`);
   * `abandoned`: its lock transaction was never mined and no longer can be (nothing was locked).
   */
  status: "pending" | "settled" | "reclaimed" | "abandoned";
  settleTx?: string;
  /** Credits of the settlement or reclaim (account → wei): earnings, stakes back, the requestor's refund. */
  credits: { account: string; amount: string }[];
  /** Stakes taken from dissenters and non-revealers. */
  slashed: { account: string; amount: string }[];
  /** Unix seconds from which the job can be closed, when pending. */
  notBefore?: number;
  error?: { code: string; message: string };
}

/** A job to lock for one round. */
export interface LockRequest {
  qubeId: string;
  /** Payout addresses of the round's providers (distinct). */
  payouts: string[];
  /** Paid to each provider of the quorum, wei. */
  price: bigint;
  quorum: number;
  /** The qube's wall time; the commit deadline leaves this plus `commitGraceMs`. */
  wallTimeMs: number;
  commitGraceMs: number;
  /** For a replacement or tie-breaker round: the qube's first job, whose group the new job joins. */
  leader?: EscrowJob;
  /**
   * Escrow v2: asks every seat to sign its `Accept` of the batch (in seat order); the batch is opened with
   * them. Not used by v1.
   */
  accept?: (batch: EscrowBatchWire) => Promise<CompactSignature[]>;
}

/** The port the `Requestor` pays through (an escrow on any EVM chain; a fake in unit tests). */
export interface PaymentsPort {
  /** 2 for escrow v2 (`EscrowV2Payments`: its lock needs the seats' `Accept`); v1 otherwise. */
  readonly escrowVersion?: 1 | 2;
  readonly chainId: number;
  /** The escrow contract's address. */
  readonly escrow: string;
  /** The requestor's paying account. */
  readonly account: string;
  /**
   * Opens a job and locks its budget; resolves once the transaction is mined.
   *
   * @throws ChainError when the chain is down or the transaction fails (nothing may then be dispatched).
   */
  lock(
    request: LockRequest,
    options?: CallOptions & { onPrepared?: (seat: EscrowSeat) => void },
  ): Promise<{ seat: EscrowSeat; txHash: string }>;
  /**
   * Settles the jobs of one qube (its leader and follow-ups, as journalled) with the openings the requestor
   * knows (payout address → opening), as one group; reclaims a job when nobody committed or the final deadline
   * passed; asks for reveals on chain when openings are missing. Waits up to `maxWaitMs` for the contract to
   * allow it, otherwise reports the jobs `pending`. One report per job given, in order.
   */
  close(
    jobs: EscrowJob[],
    openings: ReadonlyMap<string, OwnOpening>,
    options?: CallOptions & { maxWaitMs?: number },
  ): Promise<PaymentReport[]>;
  /**
   * Checks that the chain answers (a run that could not dispatch anything reports a chain that went down
   * instead of "no provider").
   *
   * @throws ChainError `CHAIN_UNREACHABLE` or `CHAIN_TIMEOUT`.
   */
  ensureReachable?(options?: CallOptions): Promise<void>;
  /**
   * Whether a journalled job is this port's (its id is the one this escrow gives it): a journal may hold jobs
   * of escrow v1 and v2, each closed only through its own port. Absent: every job is.
   */
  owns?(jobId: string, job: EscrowJob): boolean;
  /** Releases the chain connection. */
  dispose(): void;
}

/** Configuration of {@link EscrowPayments}: the chain connection and the escrow's time windows. */
export interface EscrowPaymentsConfig extends EscrowClientConfig {
  /** Stake each provider bonds, from the price (default: equal to the price). */
  stakeOf?: (price: bigint) => bigint;
  /** Seconds after the commit deadline for reveals (default 120). */
  revealWindowS?: number;
  /** Seconds after the reveal deadline to settle before the job can only be reclaimed (default 3600). */
  settleWindowS?: number;
  /** Seconds added to the commit deadline for negotiation and input transfer (default 30). */
  marginS?: number;
  /**
   * How long a lock may take to be mined before the round gives up on it (default 60 s, the chain calls'
   * deadline). A lock that is mined later stays journalled and is reclaimed by recovery.
   */
  lockTimeoutMs?: number;
}

const escrowEvents = new Interface(airqubeEscrowAbi);

/**
 * Payments through the AirqubeEscrow contract.
 *
 * @example
 * const payments = await EscrowPayments.connect({ rpcUrl, privateKey, escrow });
 * const requestor = new Requestor({ market, dataDir, payments });
 */
export class EscrowPayments implements PaymentsPort {
  readonly chainId: number;
  readonly escrow: string;
  readonly account: string;
  private readonly clock = new ChainClock();

  private constructor(
    private readonly client: EscrowClient,
    private readonly provider: JsonRpcProvider,
    private readonly config: EscrowPaymentsConfig,
  ) {
    this.chainId = client.chainId;
    this.escrow = client.escrowAddress;
    this.account = client.address;
  }

  /**
   * Connects to the escrow (checks that the chain answers and the contract exists).
   *
   * @throws ChainError `CHAIN_UNREACHABLE` or `CHAIN_INVALID_RESPONSE`.
   */
  static async connect(config: EscrowPaymentsConfig, options: CallOptions = {}): Promise<EscrowPayments> {
    const client = await EscrowClient.connect(config, options);
    return new EscrowPayments(client, createRpcProvider(config.rpcUrl, client.chainId), config);
  }

  /** The escrow client of the paying account (balances, withdrawals). */
  get escrowClient(): EscrowClient {
    return this.client;
  }

  async lock(
    request: LockRequest,
    options: CallOptions & { onPrepared?: (seat: EscrowSeat) => void } = {},
  ): Promise<{ seat: EscrowSeat; txHash: string }> {
    const now = await this.chainTime(options, "open the job");
    const commitDeadline =
      now + Math.ceil((request.wallTimeMs + request.commitGraceMs) / 1000) + (this.config.marginS ?? 30);
    const revealDeadline = commitDeadline + (this.config.revealWindowS ?? 120);
    const job = parseEscrowJob({
      requestor: this.account,
      qubeId: qubeIdToBytes32(request.qubeId),
      nonce: request.leader ? followUpNonce(jobIdOf(request.leader)) : randomBytes(8).readBigUInt64BE(),
      providers: request.payouts,
      price: request.price,
      stake: this.config.stakeOf ? this.config.stakeOf(request.price) : request.price,
      quorum: request.quorum,
      commitDeadline,
      revealDeadline,
      finalDeadline: Math.max(revealDeadline + (this.config.settleWindowS ?? 3600), request.leader?.finalDeadline ?? 0),
    });
    const seat = { jobId: jobIdOf(job), job, chainId: this.chainId, escrow: this.escrow };
    // journalled before the transaction is sent: a lock mined after our timeout is still found
    options.onPrepared?.(seat);
    const send = {
      ...options,
      ...(options.timeoutMs === undefined && this.config.lockTimeoutMs ? { timeoutMs: this.config.lockTimeoutMs } : {}),
    };
    const { hash } = request.leader
      ? await this.client.openFollowUp(job, request.leader, send)
      : await this.client.openJob(job, send);
    return { seat, txHash: hash };
  }

  async close(
    jobs: EscrowJob[],
    openings: ReadonlyMap<string, OwnOpening>,
    options: CallOptions & { maxWaitMs?: number } = {},
  ): Promise<PaymentReport[]> {
    const known = new Map([...openings].map(([k, v]) => [k.toLowerCase(), v]));
    const reports = new Map<string, PaymentReport>();
    const live: EscrowJob[] = [];
    const now = await this.chainTime(options);
    for (const job of jobs) {
      const state = await this.client.jobState(jobIdOf(job), options);
      if (state.status === "settled" || state.status === "reclaimed") {
        reports.set(jobIdOf(job), { ...baseReport(job), status: state.status });
      } else if (state.status === "none") {
        // never mined: once the commit deadline passed it never can be (openJob requires an earlier block)
        reports.set(
          jobIdOf(job),
          now > job.commitDeadline
            ? { ...baseReport(job), status: "abandoned" }
            : { ...baseReport(job), status: "pending", notBefore: job.commitDeadline + 1 },
        );
      } else live.push(job);
    }
    // the chain's groups: every open job's leader, with all its follow-ups
    const done = new Set<string>();
    for (const job of live) {
      if (done.has(jobIdOf(job))) continue;
      const group = await this.client.groupOf(job, options);
      for (const j of group) done.add(jobIdOf(j));
      for (const report of await this.closeGroup(group, known, options)) {
        if (jobs.some((j) => jobIdOf(j) === report.jobId)) reports.set(report.jobId, report);
      }
    }
    return jobs.map((job) => reports.get(jobIdOf(job)) ?? { ...baseReport(job), status: "pending" });
  }

  async ensureReachable(options: CallOptions = {}): Promise<void> {
    await this.chainTime({ timeoutMs: 10_000, ...options });
  }

  owns(jobId: string, job: EscrowJob): boolean {
    return isV1Job(jobId, job);
  }

  /** Settles one group (or a job alone) once the contract allows it; reclaims what is past its deadlines. */
  private async closeGroup(
    group: EscrowJob[],
    known: Map<string, OwnOpening>,
    options: CallOptions & { maxWaitMs?: number },
  ): Promise<PaymentReport[]> {
    const maxWaitMs = options.maxWaitMs ?? 0;
    const started = Date.now();
    const pending = (notBefore?: number) =>
      group.map((job) => ({ ...baseReport(job), status: "pending" as const, ...(notBefore ? { notBefore } : {}) }));
    for (let attempt = 0; ; attempt++) {
      const now = await this.chainTime(options);
      const states = await Promise.all(group.map((job) => this.client.jobState(jobIdOf(job), options)));
      if (states.some((s) => s.status !== "open")) {
        // part of the group is closed already (reclaimed after its deadline): the rest can only be reclaimed
        return this.reclaimDue(group, states, now, options);
      }
      if (group.some((job) => now > job.finalDeadline)) return this.reclaimDue(group, states, now, options);
      if (group.length === 1 && states[0]!.committed.length === 0) {
        const job = group[0]!;
        if (now <= job.commitDeadline) {
          if (!(await this.waitUntil(job.commitDeadline + 1, now, started, maxWaitMs, attempt, options)))
            return pending(job.commitDeadline + 1);
          continue;
        }
        const tx = await this.client.reclaim(job, options);
        return [{ ...(await this.receiptReport(job, tx.hash, options)), status: "reclaimed" }];
      }
      let notBefore = 0;
      for (let i = 0; i < group.length; i++) {
        const job = group[i]!;
        const state = states[i]!;
        if (state.committed.length < job.providers.length) notBefore = Math.max(notBefore, job.commitDeadline + 1);
        const missing = state.committed.some(
          (seat) => !state.revealed.includes(seat) && !known.has(job.providers[seat]!.toLowerCase()),
        );
        if (!missing) continue;
        const phaseOver = state.committed.length === job.providers.length || now > job.commitDeadline;
        const window = job.revealDeadline - job.commitDeadline;
        let { revealRequestedAt } = await this.client.jobGroup(jobIdOf(job), options);
        if (revealRequestedAt === 0 && phaseOver && now + window + 1 <= job.finalDeadline) {
          // ask on chain: only now does a provider that keeps silent risk its stake, after a full window
          const tx = await this.client.requestReveal(job, options);
          revealRequestedAt = (await this.blockTime(tx.blockNumber, options)) ?? now;
        }
        notBefore = Math.max(
          notBefore,
          revealRequestedAt > 0 ? revealRequestedAt + window + 1 : job.revealDeadline + 1,
        );
      }
      if (notBefore > now) {
        if (!(await this.waitUntil(notBefore, now, started, maxWaitMs, attempt, options))) return pending(notBefore);
        continue;
      }
      try {
        const tx =
          group.length === 1
            ? await this.client.settle(group[0]!, known, options)
            : await this.client.settleGroup(group, known, options);
        return Promise.all(
          group.map(async (job) => ({
            ...(await this.receiptReport(job, tx.hash, options)),
            status: "settled" as const,
          })),
        );
      } catch (error) {
        // a provider's keeper (or another settlement) closed the job first: read what became of it
        if (error instanceof ChainError && error.errorName === "AirqubeEscrowJobNotOpen" && attempt < 4) continue;
        // block time runs a little ahead of or behind ours: wait for the time the contract names
        if (error instanceof ChainError && error.errorName === "AirqubeEscrowTooEarly" && attempt < 4) {
          const until = Number(error.errorArgs[1] ?? 0) + 1;
          if (!(await this.waitUntil(until, await this.chainTime(options), started, maxWaitMs, attempt, options)))
            return pending(until);
          continue;
        }
        throw error;
      }
    }
  }

  /** Reclaims the group's open jobs whose final deadline passed; the others stay pending until theirs. */
  private async reclaimDue(
    group: EscrowJob[],
    states: { status: string }[],
    now: number,
    options: CallOptions,
  ): Promise<PaymentReport[]> {
    const out: PaymentReport[] = [];
    for (let i = 0; i < group.length; i++) {
      const job = group[i]!;
      const status = states[i]!.status;
      if (status === "settled" || status === "reclaimed") out.push({ ...baseReport(job), status });
      else if (now > job.finalDeadline) {
        try {
          const tx = await this.client.reclaim(job, options);
          out.push({ ...(await this.receiptReport(job, tx.hash, options)), status: "reclaimed" });
        } catch (error) {
          // closed by someone else (a provider's keeper) in the meantime: report what it became
          if (!(error instanceof ChainError && error.errorName === "AirqubeEscrowJobNotOpen")) throw error;
          const { status: closed } = await this.client.jobState(jobIdOf(job), options);
          if (closed !== "settled" && closed !== "reclaimed") throw error;
          out.push({ ...baseReport(job), status: closed });
        }
      } else out.push({ ...baseReport(job), status: "pending", notBefore: job.finalDeadline + 1 });
    }
    return out;
  }

  /** Sleeps until chain time `until` if that fits in `maxWaitMs`; false when it does not. */
  private async waitUntil(
    until: number,
    now: number,
    started: number,
    maxWaitMs: number,
    attempt: number,
    options: CallOptions,
  ): Promise<boolean> {
    const waitMs = Math.max(1000, (until - now + 1) * 1000);
    if (Date.now() - started + waitMs > maxWaitMs || attempt >= 8) return false;
    await sleep(waitMs, options.signal);
    return true;
  }

  private async blockTime(blockNumber: number, options: CallOptions): Promise<number | undefined> {
    const block = await runChainCall("read a block", () => this.provider.getBlock(blockNumber), options);
    return block?.timestamp;
  }

  /** The contract's clock, unix seconds (see {@link ChainClock}). */
  private chainTime(options: CallOptions, label?: string): Promise<number> {
    return this.clock.now(this.provider, options, label);
  }

  /** Credits and slashes of a settlement or reclaim, read from its receipt's events. */
  private async receiptReport(job: EscrowJob, hash: string, options: CallOptions): Promise<PaymentReport> {
    const receipt = await runChainCall(
      "read the settlement receipt",
      () => this.provider.getTransactionReceipt(hash),
      options,
    );
    const credits: PaymentReport["credits"] = [];
    const slashed: PaymentReport["slashed"] = [];
    for (const log of receipt?.logs ?? []) {
      if (log.address.toLowerCase() !== this.escrow.toLowerCase()) continue;
      const parsed = escrowEvents.parseLog({ topics: [...log.topics], data: log.data });
      if (String(parsed?.args[0]).toLowerCase() !== jobIdOf(job).toLowerCase()) continue;
      if (parsed?.name === "Credited")
        credits.push({ account: String(parsed.args[1]), amount: String(parsed.args[2]) });
      if (parsed?.name === "Slashed") slashed.push({ account: String(parsed.args[1]), amount: String(parsed.args[2]) });
    }
    return { ...baseReport(job), status: "settled", settleTx: hash, credits, slashed };
  }

  /** Closes the escrow client and the RPC provider. */
  dispose(): void {
    this.client.close();
    this.provider.destroy();
  }
}

/** A report of a job with nothing settled yet (the fields every report has). */
export function baseReport(job: EscrowJob): Omit<PaymentReport, "status"> {
  return {
    jobId: jobIdOf(job),
    qubeId: job.qubeId,
    providers: [...job.providers],
    budget: budgetOf(job).toString(),
    price: job.price.toString(),
    stake: job.stake.toString(),
    credits: [],
    slashed: [],
  };
}

/** The escrow seat as it travels in the proposal (integers as decimal strings). */
export function toWireJob(seat: EscrowSeat): EscrowJobWire {
  return { ...jobToJson(seat.job), chainId: seat.chainId, escrow: seat.escrow };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new TimeoutError("ABORTED", "Aborted while waiting to settle", { cause: signal.reason }));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new TimeoutError("ABORTED", "Aborted while waiting to settle", { cause: signal?.reason }));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Whether a journalled escrow job is escrow v1's: a v1 job's id is the hash of its parameters, where escrow v2
 * journals its batch under the batch's id. Needs no chain (`journal --settle` sorts its jobs with it).
 */
export function isV1Job(jobId: string, job: EscrowJob): boolean {
  return jobIdOf(job).toLowerCase() === jobId.toLowerCase();
}

/**
 * Closes journalled escrow jobs, one qube at a time (its jobs as one group), and journals each outcome:
 * `settled`, `reclaimed`, `abandoned` (the lock was never mined and no longer can be) or still `open`.
 * Reconciles against the chain, so a job journalled before its lock was sent is handled whatever became of it.
 */
export async function closeJournalled(
  payments: PaymentsPort,
  journal: RequestorJournal,
  entries: JournalEscrowJob[],
  options: { maxWaitMs: number; signal?: AbortSignal; now: () => Date; emit?: (report: PaymentReport) => void },
): Promise<PaymentReport[]> {
  const byQube = new Map<string, JournalEscrowJob[]>();
  // a job of the other escrow version stays as it is: only its own port can close it
  const mine = entries.filter((entry) => payments.owns?.(entry.jobId, jobFromJson(entry.job as EscrowJobJson)) ?? true);
  for (const entry of mine) byQube.set(entry.qubeId, [...(byQube.get(entry.qubeId) ?? []), entry]);
  const groups = await Promise.all(
    [...byQube.values()].map(async (group) => {
      const jobs = group.map((entry) => jobFromJson(entry.job as EscrowJobJson));
      const openings = new Map<string, OwnOpening>();
      for (const entry of group) for (const [k, v] of Object.entries(entry.openings)) openings.set(k, v);
      let reports: PaymentReport[];
      try {
        reports = await payments.close(jobs, openings, {
          maxWaitMs: options.maxWaitMs,
          ...(options.signal ? { signal: options.signal } : {}),
        });
      } catch (error) {
        const e = toAirqubeError(error);
        reports = jobs.map((job) => ({
          ...baseReport(job),
          status: "pending",
          error: { code: e.code, message: e.message },
        }));
      }
      return reports.map((report, i) => {
        const entry = group[i]!;
        if (entry.lockTx) report.lockTx = entry.lockTx;
        journal.escrowClosed(entry.jobId, report.status === "pending" ? "open" : report.status, report, options.now());
        options.emit?.(report);
        return report;
      });
    }),
  );
  return groups.flat();
}

/** Whether an error says the chain cannot be reached (down, or not answering in time). */
export function isChainDown(error: unknown): error is ChainError {
  return error instanceof ChainError && (error.code === "CHAIN_UNREACHABLE" || error.code === "CHAIN_TIMEOUT");
}
