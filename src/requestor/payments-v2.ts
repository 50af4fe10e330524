/**
 * Paying on agreement through escrow v2 (`contracts/AirqubeEscrowV2.sol`, design in `contracts/ESCROW-V2.md`):
 * the requestor's {@link PaymentsPort} over an {@link EscrowV2Client}. A round's qube is a batch of one job;
 * the requestor pays from its standing deposit, and the providers' stakes are locked from theirs.
 *
 * - `lock`: builds the batch, asks every seat for its signed `Accept` (the `accept` callback of the lock
 *   request: a query over the exchange protocol), checks each signature, then opens the batch (one
 *   transaction; no token moves).
 * - `close`: with every seat's signed `Commitments` and a matching opening, `release`s the batch when every
 *   seat opened the same root (each seat gets price and stake back, no signature on chain), otherwise
 *   `settle`s it with the signatures and openings (a dissenter is slashed on chain). With a seat's signature
 *   or opening missing it starts the dispute (`propose`, after the commit deadline) with the signed commitments
 *   it has, then `finalize`s after both windows; a batch nobody committed to is reclaimed after its final
 *   deadline.
 *
 * The journal keeps each batch as the v1-shaped job it stands for (same fields; `jobId` is the batch id), and
 * each seat's opening with its signed commitment (`commitment`, `signature`).
 */
import { randomBytes } from "node:crypto";
import type { JsonRpcProvider } from "ethers";
import { ChainError } from "../chain/errors.js";
import type { OwnOpening } from "../chain/escrow-client.js";
import { batchCommitmentOf, batchIdOf, type EscrowBatch } from "../chain/escrow-v2-batch.js";
import {
  type BatchOpening,
  type CompactSignature,
  EscrowV2Client,
  type EscrowV2ClientConfig,
} from "../chain/escrow-v2-client.js";
import { batchOfJob, isAcceptOf, isCommitmentsOf, payoutOfOneJob, wireOfJob } from "../chain/escrow-v2-wire.js";
import { type EscrowJob, parseEscrowJob, ZERO_BYTES32 } from "../chain/job.js";
import { qubeIdToBytes32 } from "../chain/qube-ids.js";
import { type CallOptions, ChainClock, createRpcProvider } from "../chain/rpc.js";
import { PeerError, TimeoutError, UserError } from "../qube/errors.js";
import type { EscrowSeat } from "./api.js";
import { baseReport, type LockRequest, type PaymentReport, type PaymentsPort } from "./payments.js";

/** A seat's opening as the requestor journals it for escrow v2: with its signed commitment. */
export interface V2Opening extends OwnOpening {
  commitment?: string;
  signature?: CompactSignature;
}

/** Configuration of {@link EscrowV2Payments}: the chain connection and the batches' time windows. */
export interface EscrowV2PaymentsConfig extends EscrowV2ClientConfig {
  /** Stake each provider bonds, from the price (default: equal to the price). */
  stakeOf?: (price: bigint) => bigint;
  /** Seconds after the commit deadline for reveals; also each dispute window (default 120). */
  revealWindowS?: number;
  /** Seconds after the reveal deadline before the batch can only be reclaimed (default 3600, at least 2 windows). */
  settleWindowS?: number;
  /** Seconds added to the commit deadline for negotiation and input transfer (default 30). */
  marginS?: number;
  /** How long the open transaction may take (default 60 s). */
  lockTimeoutMs?: number;
}

/**
 * Payments through AirqubeEscrowV2.
 *
 * @example
 * const payments = await EscrowV2Payments.connect({ rpcUrl, privateKey, escrow: escrowV2 });
 * await payments.escrowClient.deposit(100n * 10n ** 18n); // once
 * const requestor = new Requestor({ market, dataDir, payments });
 */
export class EscrowV2Payments implements PaymentsPort {
  readonly escrowVersion = 2 as const;
  readonly chainId: number;
  readonly escrow: string;
  readonly account: string;
  private readonly clock = new ChainClock();
  private lastNonce = 0n;

  private constructor(
    private readonly client: EscrowV2Client,
    private readonly provider: JsonRpcProvider,
    private readonly config: EscrowV2PaymentsConfig,
  ) {
    this.chainId = client.chainId;
    this.escrow = client.escrowAddress;
    this.account = client.address;
  }

  /**
   * Connects to the v2 escrow (checks that the chain answers and the contract exists).
   *
   * @throws ChainError `CHAIN_UNREACHABLE` or `CHAIN_INVALID_RESPONSE`; UserError `CONFIG_INVALID`.
   */
  static async connect(config: EscrowV2PaymentsConfig, options: CallOptions = {}): Promise<EscrowV2Payments> {
    const window = config.revealWindowS ?? 120;
    if ((config.settleWindowS ?? 3600) < 2 * window)
      throw new UserError("CONFIG_INVALID", "settleWindowS must be at least two reveal windows (escrow v2)");
    const client = await EscrowV2Client.connect(config, options);
    return new EscrowV2Payments(client, createRpcProvider(config.rpcUrl, client.chainId), config);
  }

  /** The v2 escrow client of the paying account (deposits, balance, withdrawals). */
  get escrowClient(): EscrowV2Client {
    return this.client;
  }

  async lock(
    request: LockRequest,
    options: CallOptions & { onPrepared?: (seat: EscrowSeat) => void } = {},
  ): Promise<{ seat: EscrowSeat; txHash: string }> {
    if (!request.accept)
      throw new UserError("ESCROW_ACCEPT_MISSING", "Escrow v2 needs the providers' Accept: no way to ask for it");
    const now = await this.chainTime(options, "open the batch");
    const commitDeadline =
      now + Math.ceil((request.wallTimeMs + request.commitGraceMs) / 1000) + (this.config.marginS ?? 30);
    const window = this.config.revealWindowS ?? 120;
    const revealDeadline = commitDeadline + window;
    const job = parseEscrowJob({
      requestor: this.account,
      qubeId: qubeIdToBytes32(request.qubeId),
      nonce: this.nextNonce(now),
      providers: request.payouts,
      price: request.price,
      stake: this.config.stakeOf ? this.config.stakeOf(request.price) : request.price,
      quorum: request.quorum,
      commitDeadline,
      revealDeadline,
      finalDeadline: revealDeadline + Math.max(this.config.settleWindowS ?? 3600, 2 * window),
    });
    const batch = batchOfJob(job);
    const batchId = batchIdOf(batch);
    const seat: EscrowSeat = { jobId: batchId, job, chainId: this.chainId, escrow: this.escrow, version: 2 };
    const accepts = await request.accept(wireOfJob(job, this.chainId, this.escrow));
    const at = { chainId: this.chainId, escrow: this.escrow, batchId };
    job.providers.forEach((p, i) => {
      const signature = accepts[i];
      if (!signature || !isAcceptOf(p, at, signature))
        throw new PeerError("ESCROW_ACCEPT_INVALID", "A provider's Accept of the batch is not its signature", {
          details: `seat ${i} (${p}) of batch ${batchId}`,
        });
    });
    // journalled before the transaction is sent: an open mined after our timeout is still found
    options.onPrepared?.(seat);
    const send = {
      ...options,
      ...(options.timeoutMs === undefined && this.config.lockTimeoutMs ? { timeoutMs: this.config.lockTimeoutMs } : {}),
    };
    const { hash } = await this.client.open(batch, accepts, send);
    return { seat, txHash: hash };
  }

  async close(
    jobs: EscrowJob[],
    openings: ReadonlyMap<string, OwnOpening>,
    options: CallOptions & { maxWaitMs?: number } = {},
  ): Promise<PaymentReport[]> {
    const known = new Map([...openings].map(([k, v]) => [k.toLowerCase(), v as V2Opening]));
    const reports: PaymentReport[] = [];
    for (const job of jobs) reports.push(await this.closeOne(job, known, options));
    return reports;
  }

  async ensureReachable(options: CallOptions = {}): Promise<void> {
    await this.chainTime({ timeoutMs: 10_000, ...options });
  }

  owns(jobId: string, job: EscrowJob): boolean {
    try {
      return batchIdOf(batchOfJob(job)).toLowerCase() === jobId.toLowerCase();
    } catch {
      return false; // a v1 job's nonce does not fit a batch's 40 bits
    }
  }

  /** Closes one batch as far as the contract allows within `maxWaitMs`. */
  private async closeOne(
    job: EscrowJob,
    known: Map<string, V2Opening>,
    options: CallOptions & { maxWaitMs?: number },
  ): Promise<PaymentReport> {
    const batch = batchOfJob(job);
    const batchId = batchIdOf(batch);
    const base = { ...baseReport(job), jobId: batchId };
    const started = Date.now();
    const window = batch.revealDeadline - batch.commitDeadline;
    for (let attempt = 0; ; attempt++) {
      const now = await this.chainTime(options);
      const state = await this.client.batchState(batch, options);
      const pending = async (notBefore: number): Promise<PaymentReport | undefined> =>
        (await this.waitUntil(notBefore, now, started, options.maxWaitMs ?? 0, attempt, options))
          ? undefined
          : { ...base, status: "pending", notBefore };
      if (state.status === "settled" || state.status === "reclaimed") return { ...base, status: state.status };
      if (state.status === "none") {
        // never mined: once the commit deadline passed it never can be (open requires an earlier block)
        if (now > batch.commitDeadline) return { ...base, status: "abandoned" };
        const wait = await pending(batch.commitDeadline + 1);
        if (wait) return wait;
        continue;
      }
      if (now > batch.finalDeadline) {
        if (state.status === "open") {
          const tx = await this.client.reclaim(batch, options);
          return { ...base, status: "reclaimed", settleTx: tx.hash };
        }
      }
      if (state.status === "proposed") {
        const revealBy = state.proposedAt + 2 * window;
        if (now <= revealBy) {
          const wait = await pending(revealBy + 1);
          if (wait) return wait;
          continue;
        }
        return this.finalize(batch, batchId, base, known, options);
      }
      // open: the fast paths need every seat's signed commitment and a matching opening
      const seats = batch.providers.map((p) => this.checkedSeat(batchId, p, known.get(p.toLowerCase())));
      if (seats.every((s) => s.opening && s.signature)) {
        const roots = seats.map((s) => s.opening!.outputsRoot.toLowerCase());
        if (roots.every((r) => r === roots[0])) {
          const tx = await this.client.release(batch, options);
          const each = batch.price + batch.stake;
          return {
            ...base,
            status: "settled",
            settleTx: tx.hash,
            credits: batch.providers.map((p) => ({ account: p, amount: each.toString() })),
            slashed: [],
          };
        }
        const tx = await this.client.settle(
          batch,
          seats.map((s) => s.signature!),
          [seats.map((s) => s.opening!)],
          options,
        );
        const payout = payoutOfOneJob(batch, roots);
        return {
          ...base,
          status: "settled",
          settleTx: tx.hash,
          credits: payout.credits.map((c) => ({ account: c.account, amount: c.amount.toString() })),
          slashed: payout.slashed.map((c) => ({ account: c.account, amount: c.amount.toString() })),
        };
      }
      // a seat's signature or opening is missing: the dispute, once the commit deadline passed
      if (now <= batch.commitDeadline) {
        const wait = await pending(batch.commitDeadline + 1);
        if (wait) return wait;
        continue;
      }
      if (now + 2 * window > batch.finalDeadline) {
        const wait = await pending(batch.finalDeadline + 1);
        if (wait) return wait;
        continue;
      }
      const signed = seats.map((s) => (s.signature && s.commitment ? s : undefined));
      try {
        await this.client.propose(
          batch,
          signed.map((s) => s?.signature ?? [ZERO_BYTES32, ZERO_BYTES32]),
          signed.map((s) => s?.commitment ?? ZERO_BYTES32),
          options,
        );
      } catch (error) {
        // a seat proposed first: follow its dispute
        if (!(error instanceof ChainError && error.errorName === "AirqubeEscrowV2WrongStatus") || attempt >= 4)
          throw error;
      }
    }
  }

  /** A seat's journalled opening and signed commitment, each kept only when it checks. */
  private checkedSeat(
    batchId: string,
    provider: string,
    known: V2Opening | undefined,
  ): { opening?: BatchOpening; signature?: CompactSignature; commitment?: string } {
    if (!known?.commitment || !known.signature) return {};
    const at = { chainId: this.chainId, escrow: this.escrow, batchId };
    if (!isCommitmentsOf(provider, at, [known.commitment], known.signature)) return {};
    const signed = { signature: known.signature, commitment: known.commitment };
    const opened = batchCommitmentOf(batchId, 0, known.outputsRoot, known.salt, provider);
    if (known.outputsRoot === ZERO_BYTES32 || opened.toLowerCase() !== known.commitment.toLowerCase()) return signed;
    return { ...signed, opening: { outputsRoot: known.outputsRoot, salt: known.salt } };
  }

  /** Finalizes a disputed batch with the openings on chain and the ones known that match the proposal. */
  private async finalize(
    batch: EscrowBatch,
    batchId: string,
    base: Omit<PaymentReport, "status">,
    known: Map<string, V2Opening>,
    options: CallOptions,
  ): Promise<PaymentReport> {
    const dispute = await this.client.dispute(batch, options);
    if (!dispute) throw new ChainError("CHAIN_INVALID_RESPONSE", "A proposed batch has no Proposed event");
    const openings = dispute.commitments.map((commitment, seat): BatchOpening | undefined => {
      const onChain = dispute.revealed.get(seat);
      if (onChain) return onChain;
      const own = known.get(batch.providers[seat]!.toLowerCase());
      if (!own || commitment === ZERO_BYTES32) return undefined;
      const opened = batchCommitmentOf(batchId, 0, own.outputsRoot, own.salt, batch.providers[seat]!);
      return opened.toLowerCase() === commitment.toLowerCase()
        ? { outputsRoot: own.outputsRoot, salt: own.salt }
        : undefined;
    });
    try {
      const tx = await this.client.finalize(batch, dispute.commitments, openings, options);
      return { ...base, status: "settled", settleTx: tx.hash };
    } catch (error) {
      if (!(error instanceof ChainError && error.errorName === "AirqubeEscrowV2WrongStatus")) throw error;
      const { status } = await this.client.batchState(batch, options);
      if (status !== "settled" && status !== "reclaimed") throw error;
      return { ...base, status };
    }
  }

  /** A fresh batch nonce: above every earlier one of this account (ring slot `nonce % 256` takes only higher). */
  private nextNonce(nowS: number): bigint {
    const candidate = BigInt(nowS) * 256n + BigInt(randomBytes(1)[0]!);
    this.lastNonce = candidate > this.lastNonce ? candidate : this.lastNonce + 1n;
    return this.lastNonce;
  }

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

  /** The contract's clock, unix seconds (see {@link ChainClock}). */
  private chainTime(options: CallOptions, label?: string): Promise<number> {
    return this.clock.now(this.provider, options, label);
  }

  /** Closes the escrow client and the RPC provider. */
  dispose(): void {
    this.client.close();
    this.provider.destroy();
  }
}

/** Whether a payments port pays through escrow v2 (its lock needs the providers' `Accept`). */
export function isEscrowV2(payments: PaymentsPort | undefined): boolean {
  return (payments as { escrowVersion?: number } | undefined)?.escrowVersion === 2;
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
