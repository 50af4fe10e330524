/**
 * Paying on agreement: the requestor's payments port and its escrow adapter. The requestor locks the budget
 * of a round (`price * k`) in the escrow before it sends the qube to that round's providers, names the job in
 * the agreement, and settles it with the providers' openings (outputs root and salt of their verified
 * reveals) once the result is decided. Amounts are wei, reported as decimal strings (JSON-safe).
 *
 * Trade-off (one job per round): the providers of a round are known once its candidates are chosen, so a
 * round locks one job for all of them and its quorum is settled on chain. A replacement (a provider that
 * failed before committing is replaced) and a tie-breaker round open their own job. The contract judges
 * each job by its own quorum: a solo replacement or tie-breaker job pays its provider when it reveals, even
 * if the requestor's overall decision went against it (its wrong result is still rejected, kept as evidence
 * and marked in reputation). Reserving spare seats in the first job would avoid that but lock more budget
 * up front and leave unused seats to refund; the contract cannot see across jobs.
 */
import { randomBytes } from "node:crypto";
import { Interface, type JsonRpcProvider } from "ethers";
import { airqubeEscrowAbi } from "../chain/abi/airqube-escrow.js";
import { ChainError } from "../chain/errors.js";
import { EscrowClient, type EscrowClientConfig, type OwnOpening } from "../chain/escrow-client.js";
import { budgetOf, type EscrowJob, jobIdOf, parseEscrowJob } from "../chain/job.js";
import { jobToJson } from "../chain/job-json.js";
import { qubeIdToBytes32 } from "../chain/qube-ids.js";
import { type CallOptions, createRpcProvider, runChainCall } from "../chain/rpc.js";
import type { EscrowJobWire } from "../net/exchange/messages.js";
import { TimeoutError } from "../qube/errors.js";
import type { EscrowSeat } from "./api.js";

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
  /** `pending`: not yet allowed to settle (see `notBefore`) or the settlement failed (see `error`). */
  status: "pending" | "settled" | "reclaimed";
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
}

/** The port the `Requestor` pays through (an escrow on any EVM chain; a fake in unit tests). */
export interface PaymentsPort {
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
  lock(request: LockRequest, options?: CallOptions): Promise<{ seat: EscrowSeat; txHash: string }>;
  /**
   * Settles a job with the openings the requestor knows (payout address → opening), or reclaims it when
   * nobody committed or the final deadline passed; waits up to `maxWaitMs` for the contract to allow it,
   * otherwise reports it `pending`.
   */
  close(
    job: EscrowJob,
    openings: ReadonlyMap<string, OwnOpening>,
    options?: CallOptions & { maxWaitMs?: number },
  ): Promise<PaymentReport>;
  dispose(): void;
}

export interface EscrowPaymentsConfig extends EscrowClientConfig {
  /** Stake each provider bonds, from the price (default: equal to the price). */
  stakeOf?: (price: bigint) => bigint;
  /** Seconds after the commit deadline for reveals (default 120). */
  revealWindowS?: number;
  /** Seconds after the reveal deadline to settle before the job can only be reclaimed (default 3600). */
  settleWindowS?: number;
  /** Seconds added to the commit deadline for negotiation and input transfer (default 30). */
  marginS?: number;
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

  async lock(request: LockRequest, options: CallOptions = {}): Promise<{ seat: EscrowSeat; txHash: string }> {
    const now = await this.chainTime(options, "open the job");
    const commitDeadline =
      now + Math.ceil((request.wallTimeMs + request.commitGraceMs) / 1000) + (this.config.marginS ?? 30);
    const revealDeadline = commitDeadline + (this.config.revealWindowS ?? 120);
    const job = parseEscrowJob({
      requestor: this.account,
      qubeId: qubeIdToBytes32(request.qubeId),
      nonce: randomBytes(8).readBigUInt64BE(),
      providers: request.payouts,
      price: request.price,
      stake: this.config.stakeOf ? this.config.stakeOf(request.price) : request.price,
      quorum: request.quorum,
      commitDeadline,
      revealDeadline,
      finalDeadline: revealDeadline + (this.config.settleWindowS ?? 3600),
    });
    const { jobId, hash } = await this.client.openJob(job, options);
    return { seat: { jobId, job, chainId: this.chainId, escrow: this.escrow }, txHash: hash };
  }

  async close(
    job: EscrowJob,
    openings: ReadonlyMap<string, OwnOpening>,
    options: CallOptions & { maxWaitMs?: number } = {},
  ): Promise<PaymentReport> {
    const jobId = jobIdOf(job);
    const known = new Map([...openings].map(([k, v]) => [k.toLowerCase(), v]));
    const maxWaitMs = options.maxWaitMs ?? 0;
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const state = await this.client.jobState(jobId, options);
      if (state.status === "settled" || state.status === "reclaimed" || state.status === "none") {
        return { ...baseReport(job), status: state.status === "none" ? "pending" : state.status };
      }
      const now = await this.chainTime(options);
      const k = job.providers.length;
      const nobody = state.committed.length === 0;
      const allKnown = state.committed.every((i) => known.has(job.providers[i]!.toLowerCase()));
      let notBefore = 0;
      if (now > job.finalDeadline) notBefore = 0;
      else if (nobody) notBefore = job.commitDeadline + 1;
      else {
        if (state.committed.length < k) notBefore = job.commitDeadline + 1;
        if (!allKnown) notBefore = Math.max(notBefore, job.revealDeadline + 1);
      }
      if (notBefore > now) {
        const waitMs = (notBefore - now + 1) * 1000;
        if (Date.now() - started + waitMs > maxWaitMs || attempt >= 4) {
          return { ...baseReport(job), status: "pending", notBefore };
        }
        await sleep(waitMs, options.signal);
        continue;
      }
      const reclaim = nobody || now > job.finalDeadline;
      try {
        const tx = reclaim ? await this.client.reclaim(job, options) : await this.client.settle(job, known, options);
        return { ...(await this.receiptReport(job, tx.hash, options)), status: reclaim ? "reclaimed" : "settled" };
      } catch (error) {
        // block time runs a little ahead of or behind ours: wait for the time the contract names
        if (error instanceof ChainError && error.errorName === "AirqubeEscrowTooEarly" && attempt < 4) {
          const until = Number(error.errorArgs[1] ?? 0) + 1;
          const waitMs = Math.max(1000, (until - (await this.chainTime(options)) + 1) * 1000);
          if (Date.now() - started + waitMs > maxWaitMs)
            return { ...baseReport(job), status: "pending", notBefore: until };
          await sleep(waitMs, options.signal);
          continue;
        }
        throw error;
      }
    }
  }

  /** The latest block's timestamp (the contract's clock), unix seconds. */
  private async chainTime(options: CallOptions, label = "read the latest block"): Promise<number> {
    const block = await runChainCall(label, () => this.provider.getBlock("latest"), options);
    return Math.max(block?.timestamp ?? 0, Math.floor(Date.now() / 1000));
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
      if (parsed?.name === "Credited")
        credits.push({ account: String(parsed.args[1]), amount: String(parsed.args[2]) });
      if (parsed?.name === "Slashed") slashed.push({ account: String(parsed.args[1]), amount: String(parsed.args[2]) });
    }
    return { ...baseReport(job), status: "settled", settleTx: hash, credits, slashed };
  }

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
