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
 * Groups (issue 22, as v1's `openFollowUp` / `settleGroup`): a replacement or tie-breaker round of a qube is
 * opened as a follow-up batch in the group of the qube's first batch (`openFollowUp`; the seats sign `FollowUp`
 * instead of `Accept`), and the qube's batches are closed together: `settleGroup` with every seat's signature
 * and opening of every batch, otherwise each batch is proposed and the group finalized (`finalizeGroup`) after
 * the windows. The contract counts the votes of the whole group, so the honest pair of a k = 3 round with one
 * dissenter is paid once a tie-breaker agrees with it, and the dissenter is slashed.
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
  type BatchDispute,
  type BatchOpening,
  type CompactSignature,
  type EscrowBatchState,
  EscrowV2Client,
  type EscrowV2ClientConfig,
  type GroupMemberDispute,
} from "../chain/escrow-v2-client.js";
import {
  batchOfJob,
  isAcceptOf,
  isCommitmentsOf,
  isFollowUpOf,
  payoutOfGroup,
  payoutOfOneJob,
  wireOfJob,
} from "../chain/escrow-v2-wire.js";
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

/** What closing a group reports of one of its batches (the rest of the report is the job's). */
type GroupReport = Pick<PaymentReport, "jobId" | "status" | "credits" | "slashed"> & Partial<PaymentReport>;

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
    let finalDeadline = revealDeadline + Math.max(this.config.settleWindowS ?? 3600, 2 * window);
    // a replacement or tie-breaker round joins the group of the qube's first batch; the contract lets a follow-up
    // end at most one leader span after the leader: when that leaves no room for a dispute's two windows, the
    // round is paid as a batch of its own (its votes then do not count with the group's)
    let leader = request.leader ? batchOfJob(request.leader) : undefined;
    if (leader) {
      const latest = 2 * leader.finalDeadline - leader.commitDeadline;
      if (latest >= revealDeadline + 2 * window) finalDeadline = Math.min(finalDeadline, latest);
      else leader = undefined;
    }
    const leaderId = leader ? batchIdOf(leader) : undefined;
    const job = parseEscrowJob({
      requestor: this.account,
      qubeId: qubeIdToBytes32(request.qubeId),
      nonce: this.nextNonce(now, leader?.nonce),
      providers: request.payouts,
      price: request.price,
      stake: this.config.stakeOf ? this.config.stakeOf(request.price) : request.price,
      quorum: request.quorum,
      commitDeadline,
      revealDeadline,
      finalDeadline,
    });
    const batch = batchOfJob(job);
    const batchId = batchIdOf(batch);
    const seat: EscrowSeat = { jobId: batchId, job, chainId: this.chainId, escrow: this.escrow, version: 2 };
    const accepts = await request.accept(wireOfJob(job, this.chainId, this.escrow, leaderId));
    const at = { chainId: this.chainId, escrow: this.escrow, batchId };
    job.providers.forEach((p, i) => {
      const signature = accepts[i];
      const valid =
        signature !== undefined &&
        (leaderId ? isFollowUpOf(p, { ...at, leaderId }, signature) : isAcceptOf(p, at, signature));
      if (!valid)
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
    const { hash } = leader
      ? await this.client.openFollowUp(batch, accepts, leader, send)
      : await this.client.open(batch, accepts, send);
    return { seat, txHash: hash };
  }

  async close(
    jobs: EscrowJob[],
    openings: ReadonlyMap<string, OwnOpening>,
    options: CallOptions & { maxWaitMs?: number } = {},
  ): Promise<PaymentReport[]> {
    const known = new Map([...openings].map(([k, v]) => [k.toLowerCase(), v as V2Opening]));
    // the qube's group as the chain has it (the first batch and the follow-ups that were opened)
    const group = jobs.length > 1 ? await this.client.group(batchOfJob(jobs[0]!), options) : [];
    const inGroup = new Set(group.length > 1 ? group.map((b) => batchIdOf(b)) : []);
    const grouped = inGroup.size > 0 ? await this.closeGroup(group, known, options) : new Map();
    const reports: PaymentReport[] = [];
    for (const job of jobs) {
      const id = batchIdOf(batchOfJob(job));
      const report = grouped.get(id);
      // a journalled round outside the group (its open never mined) is closed alone
      reports.push(report ? { ...baseReport(job), ...report } : await this.closeOne(job, known, options));
    }
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

  /**
   * Closes a group (leader first, then its follow-ups in opening order) as far as the contract allows within
   * `maxWaitMs`: `settleGroup` when every seat of every batch signed and opened, otherwise each batch proposed
   * with the signed commitments known and the group finalized after the windows; a batch still open after its
   * final deadline is reclaimed. Reports by batch id.
   */
  private async closeGroup(
    group: EscrowBatch[],
    known: Map<string, V2Opening>,
    options: CallOptions & { maxWaitMs?: number },
  ): Promise<Map<string, GroupReport>> {
    const ids = group.map((b) => batchIdOf(b));
    const started = Date.now();
    const reportAll = (status: PaymentReport["status"], extra: (i: number) => Partial<PaymentReport> = () => ({})) =>
      new Map(
        ids.map((id, i): [string, GroupReport] => [id, { jobId: id, status, credits: [], slashed: [], ...extra(i) }]),
      );
    for (let attempt = 0; ; attempt++) {
      const now = await this.chainTime(options);
      const states: EscrowBatchState[] = [];
      for (const b of group) states.push(await this.client.batchState(b, options));
      const closed = (s: EscrowBatchState) => s.status === "settled" || s.status === "reclaimed";
      if (states.every(closed))
        return reportAll("settled", (i) => ({ status: states[i]!.status as "settled" | "reclaimed" }));
      let acted = false;
      let notBefore = Number.MAX_SAFE_INTEGER;
      // a batch still open after its final deadline can only be reclaimed (it then counts nothing)
      for (const [i, b] of group.entries()) {
        if (states[i]!.status === "open" && now > b.finalDeadline) {
          await this.client.reclaim(b, options);
          acted = true;
        }
      }
      if (acted) continue;
      const seats = group.map((b, i) =>
        b.providers.map((p) => this.checkedSeat(ids[i]!, p, known.get(p.toLowerCase()))),
      );
      const complete = seats.map((row) => row.every((s) => s.opening && s.signature));
      if (states.every((s) => s.status === "open") && complete.every(Boolean)) {
        const tx = await this.client.settleGroup(
          group,
          seats.map((row) => row.map((s) => s.signature!)),
          seats.map((row) => [row.map((s) => s.opening!)]),
          options,
        );
        const payouts = payoutOfGroup(
          group,
          seats.map((row) => row.map((s) => s.opening!.outputsRoot.toLowerCase())),
        );
        return reportAll("settled", (i) => ({
          settleTx: tx.hash,
          credits: payouts[i]!.credits.map((c) => ({ account: c.account, amount: c.amount.toString() })),
          slashed: payouts[i]!.slashed.map((c) => ({ account: c.account, amount: c.amount.toString() })),
        }));
      }
      // the dispute: every open batch proposed with the signed commitments known
      for (const [i, b] of group.entries()) {
        if (states[i]!.status !== "open") continue;
        const window = b.revealDeadline - b.commitDeadline;
        if (!complete[i] && now <= b.commitDeadline) {
          notBefore = Math.min(notBefore, b.commitDeadline + 1);
          continue;
        }
        if (now + 2 * window > b.finalDeadline) {
          notBefore = Math.min(notBefore, b.finalDeadline + 1);
          continue;
        }
        const signed = seats[i]!.map((s) => (s.signature && s.commitment ? s : undefined));
        try {
          await this.client.propose(
            b,
            signed.map((s) => s?.signature ?? [ZERO_BYTES32, ZERO_BYTES32]),
            signed.map((s) => s?.commitment ?? ZERO_BYTES32),
            options,
          );
          acted = true;
        } catch (error) {
          // a seat proposed first: follow its dispute
          if (!(error instanceof ChainError && error.errorName === "AirqubeEscrowV2WrongStatus") || attempt >= 4)
            throw error;
          acted = true;
        }
      }
      if (acted) continue;
      if (notBefore === Number.MAX_SAFE_INTEGER) {
        // nothing open: once every dispute's reveal window is over, finalize the group
        notBefore = Math.max(
          0,
          ...group.map((b, i) =>
            states[i]!.status === "proposed"
              ? states[i]!.proposedAt + 2 * (b.revealDeadline - b.commitDeadline) + 1
              : 0,
          ),
        );
        if (now >= notBefore) {
          const disputes: (GroupMemberDispute | undefined)[] = [];
          for (const [i, b] of group.entries()) {
            if (states[i]!.status !== "proposed") {
              disputes.push(undefined);
              continue;
            }
            const dispute = await this.client.dispute(b, options);
            if (!dispute) throw new ChainError("CHAIN_INVALID_RESPONSE", "A proposed batch has no Proposed event");
            disputes.push({
              commitments: dispute.commitments,
              openings: this.disputeOpenings(b, ids[i]!, dispute, known),
            });
          }
          const tx = await this.client.finalizeGroup(group, disputes, options);
          return reportAll("settled", (i) =>
            states[i]!.status === "proposed" ? { settleTx: tx.hash } : { status: states[i]!.status as "reclaimed" },
          );
        }
      }
      if (!(await this.waitUntil(notBefore, now, started, options.maxWaitMs ?? 0, attempt, options)))
        return reportAll("pending", () => ({ notBefore }));
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
    const openings = this.disputeOpenings(batch, batchId, dispute, known);
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

  /** The openings to finalize a disputed batch with: those recorded on chain, and the known ones that match. */
  private disputeOpenings(
    batch: EscrowBatch,
    batchId: string,
    dispute: BatchDispute,
    known: Map<string, V2Opening>,
  ): (BatchOpening | undefined)[] {
    return dispute.commitments.map((commitment, seat): BatchOpening | undefined => {
      const onChain = dispute.revealed.get(seat);
      if (onChain) return onChain;
      const own = known.get(batch.providers[seat]!.toLowerCase());
      if (!own || commitment === ZERO_BYTES32) return undefined;
      const opened = batchCommitmentOf(batchId, 0, own.outputsRoot, own.salt, batch.providers[seat]!);
      return opened.toLowerCase() === commitment.toLowerCase()
        ? { outputsRoot: own.outputsRoot, salt: own.salt }
        : undefined;
    });
  }

  /**
   * A fresh batch nonce: above every earlier one of this account (ring slot `nonce % 256` takes only higher),
   * and for a follow-up outside the ring slot of its leader (which is open, so its slot is busy).
   */
  private nextNonce(nowS: number, avoid?: bigint): bigint {
    let candidate = BigInt(nowS) * 256n + BigInt(randomBytes(1)[0]!);
    if (candidate <= this.lastNonce) candidate = this.lastNonce + 1n;
    if (avoid !== undefined && candidate % 256n === avoid % 256n) candidate += 1n;
    this.lastNonce = candidate;
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
