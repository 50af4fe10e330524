/**
 * The provider's side of escrow v2 (`contracts/AirqubeEscrowV2.sol`, design in `contracts/ESCROW-V2.md`):
 * a standing stake deposited once, an EIP-712 `Accept` signed for each batch it admits, and its commitments
 * signed instead of sent in a transaction. No transaction per qube while the requestor plays its part.
 *
 * - {@link ProviderPaymentsV2.ensureStake}: at start, tops the escrow balance up to the standing stake.
 * - {@link ProviderPaymentsV2.accept}: asked with a query naming a batch (not yet open), checks the batch (this
 *   escrow and chain, this qube alone, its seat, the stake within bounds and covered by its balance, time to
 *   run) and signs `Accept` (or, for a follow-up batch naming the qube's first batch as its `leader`, `FollowUp`:
 *   its votes then count with that batch's group); the seat is recorded first (`seats-v2.sqlite`).
 * - {@link ProviderPaymentsV2.check}: at the proposal, the batch must be the agreement's and open on chain.
 * - {@link ProviderPaymentsV2.commit}: signs `Commitments` to its one-qube column and records it with its
 *   opening before the commitment is sent.
 * - The keeper ({@link ProviderPaymentsV2.keep}) looks after every seat until its batch is closed: when the
 *   requestor went silent past the reveal deadline it proposes a settlement with its own signed commitments;
 *   in a dispute it adds its column when left out (commitment window), reveals its opening (reveal window) and
 *   finalizes after both (a batch of a group: the whole group with `finalizeGroup`, once every batch of it is
 *   under dispute or reclaimed); it reclaims a batch still open after the final deadline. An honest provider thus
 *   never loses its stake to a requestor that vanishes or drops it from a settlement.
 */
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import type { JsonRpcProvider } from "ethers";
import { ChainError } from "../chain/errors.js";
import { batchCommitmentOf, batchIdOf, type EscrowBatch } from "../chain/escrow-v2-batch.js";
import { type BatchOpening, type CompactSignature, EscrowV2Client } from "../chain/escrow-v2-client.js";
import { batchFromWire } from "../chain/escrow-v2-wire.js";
import { ZERO_BYTES32 } from "../chain/job.js";
import { qubeIdToBytes32 } from "../chain/qube-ids.js";
import { type CallOptions, ChainClock, createRpcProvider } from "../chain/rpc.js";
import type { AgreementTerms } from "../net/agreement.js";
import { type EscrowBatchWire, escrowBatchWireSchema } from "../net/exchange/messages.js";
import { toAirqubeError } from "../qube/errors.js";
import { openDatabase } from "../store/sqlite.js";
import type { Refusal } from "./admission.js";

/** Where a provider is paid through escrow v2. */
export interface ProviderChainV2Config {
  rpcUrl: string;
  /** The v2 escrow's address. */
  escrow: string;
  /** Largest stake locked for one qube, wei (decimal string). */
  maxStake: string;
  /** Escrow balance kept deposited as the standing stake, wei (decimal string). */
  stakeDeposit: string;
}

/** Least time a provider needs between admission and the commit deadline beyond the qube's wall time. */
const COMMIT_MARGIN_MS = 5_000;

type Verdict<T> = ({ ok: true } & T) | ({ ok: false } & Refusal);

/** What the v2 keeper did for one seat. */
export interface SeatV2Report {
  batchId: string;
  action:
    | "wait"
    | "proposed"
    | "added"
    | "revealed"
    | "finalized"
    | "reclaimed"
    | "was-settled"
    | "was-reclaimed"
    | "not-opened"
    | "error";
  tx?: string;
  notBefore?: number;
  error?: { code: string; message: string };
}

/**
 * Escrow v2 for one provider account.
 *
 * @example
 * const payments = await ProviderPaymentsV2.connect(chain, payoutKey, { dataDir });
 * await payments.ensureStake();
 */
export class ProviderPaymentsV2 {
  readonly escrowVersion = 2 as const;
  private timer: NodeJS.Timeout | undefined;
  private keeping: Promise<unknown> | undefined;
  private readonly clock = new ChainClock();

  private constructor(
    readonly client: EscrowV2Client,
    private readonly rpc: JsonRpcProvider,
    private readonly maxStake: bigint,
    private readonly stakeDeposit: bigint,
    readonly seats: SeatV2Store | undefined,
  ) {}

  /**
   * Connects the payout account to the v2 escrow; with `dataDir`, seats are kept in `seats-v2.sqlite` there.
   *
   * @throws ChainError `CHAIN_UNREACHABLE` or `CHAIN_INVALID_RESPONSE` (no escrow at that address).
   */
  static async connect(
    chain: ProviderChainV2Config,
    privateKey: string,
    options: CallOptions & { dataDir?: string } = {},
  ): Promise<ProviderPaymentsV2> {
    const client = await EscrowV2Client.connect({ rpcUrl: chain.rpcUrl, escrow: chain.escrow, privateKey }, options);
    const seats = options.dataDir ? new SeatV2Store(join(options.dataDir, "seats-v2.sqlite")) : undefined;
    const rpc = createRpcProvider(chain.rpcUrl, client.chainId);
    return new ProviderPaymentsV2(client, rpc, BigInt(chain.maxStake), BigInt(chain.stakeDeposit), seats);
  }

  /**
   * Tops the escrow balance up to the standing stake (one `depositWithPermit`, only when it is short).
   * Returns the deposit made (0 when none was needed).
   *
   * @throws ChainError when the deposit fails (e.g. not enough tokens).
   */
  async ensureStake(options: CallOptions = {}): Promise<bigint> {
    const balance = await this.client.balance(options);
    if (balance >= this.stakeDeposit) return 0n;
    const amount = this.stakeDeposit - balance;
    await this.client.deposit(amount, options);
    return amount;
  }

  /**
   * Decides whether to sign the `Accept` of a batch a requestor would open for this qube, and signs it. The
   * seat is recorded before the signature leaves, so the keeper reclaims its stake if the batch is opened and
   * then abandoned.
   */
  async accept(
    input: { batch: EscrowBatchWire; qubeId: string; price: bigint; wallTimeMs: number; now: Date },
    options: CallOptions = {},
  ): Promise<Verdict<{ signature: CompactSignature }>> {
    const parsed = this.parse(input.batch, input.qubeId);
    if (!parsed.ok) return parsed;
    const { batch, seat } = parsed;
    if (batch.price < input.price)
      return refuse("ESCROW_MISMATCH", `the batch pays ${batch.price} wei, the query says ${input.price} wei`);
    if (batch.stake > this.maxStake)
      return refuse(
        "STAKE_TOO_HIGH",
        `the batch asks a stake of ${batch.stake} wei, this provider bonds at most ${this.maxStake} wei`,
      );
    if (batch.commitDeadline * 1000 < input.now.getTime() + input.wallTimeMs + COMMIT_MARGIN_MS)
      return refuse("ESCROW_DEADLINE", "the batch's commit deadline leaves no time to run the qube and sign");
    try {
      if (batch.stake > 0n && (await this.client.balance(options)) < batch.stake)
        return refuse("STAKE_UNAVAILABLE", `this provider's escrow v2 balance does not cover ${batch.stake} wei`);
    } catch (error) {
      const code = error instanceof ChainError ? error.code : "CHAIN_INVALID_RESPONSE";
      return refuse("ESCROW_UNVERIFIABLE", `could not read the escrow v2 balance (${code})`);
    }
    this.seats?.add(batchIdOf(batch), input.batch, seat, new Date());
    const signature = input.batch.leader
      ? await this.client.signFollowUp(batch, input.batch.leader)
      : await this.client.signAccept(batch);
    return { ok: true, signature };
  }

  /**
   * Decides whether a proposal's batch may be admitted: the agreement's, this qube's alone, this provider's
   * seat, at least the agreed price, time to run, and open on chain (the budget and the stakes locked).
   */
  async check(
    input: { batch?: EscrowBatchWire; terms: AgreementTerms; qubeId: string; wallTimeMs: number; now: Date },
    options: CallOptions = {},
  ): Promise<Verdict<{ batch: EscrowBatch; seat: number }>> {
    if (!input.batch || !input.terms.escrowJob)
      return refuse(
        "ESCROW_REQUIRED",
        `this provider works paid only: open an escrow v2 batch on ${this.client.escrowAddress} (chain ${this.client.chainId}) and name it in the agreement`,
      );
    const parsed = this.parse(input.batch, input.qubeId);
    if (!parsed.ok) return parsed;
    const { batch, seat } = parsed;
    const batchId = batchIdOf(batch);
    if (batchId !== input.terms.escrowJob.toLowerCase())
      return refuse("ESCROW_MISMATCH", `the batch hashes to ${batchId}, the agreement names ${input.terms.escrowJob}`);
    if (batch.price < BigInt(input.terms.price))
      return refuse(
        "ESCROW_MISMATCH",
        `the batch pays ${batch.price} wei, the agreement says ${input.terms.price} wei`,
      );
    if (batch.commitDeadline * 1000 < input.now.getTime() + input.wallTimeMs + COMMIT_MARGIN_MS)
      return refuse("ESCROW_DEADLINE", "the batch's commit deadline leaves no time to run the qube and sign");
    try {
      const state = await this.client.batchState(batch, options);
      if (state.status !== "open")
        return refuse("ESCROW_NOT_OPEN", `escrow v2 batch ${batchId} is ${state.status} on chain`);
    } catch (error) {
      const code = error instanceof ChainError ? error.code : "CHAIN_INVALID_RESPONSE";
      return refuse("ESCROW_UNVERIFIABLE", `could not check the escrow v2 batch on chain (${code})`);
    }
    this.seats?.add(batchId, input.batch, seat, new Date());
    return { ok: true, batch, seat };
  }

  /**
   * Signs `Commitments` to this qube's outputs root with `salt` (both bytes32), recording the opening and the
   * signature first so the keeper can reveal and settle after a restart.
   */
  async commit(batch: EscrowBatch, own: BatchOpening): Promise<{ commitment: string; signature: CompactSignature }> {
    const batchId = batchIdOf(batch);
    const commitment = batchCommitmentOf(batchId, 0, own.outputsRoot, own.salt, this.client.address);
    const signature = await this.client.signCommitments(batch, [commitment]);
    this.seats?.committed(batchId, own, commitment, signature, new Date());
    return { commitment, signature };
  }

  /** One keeper pass over every open seat; never throws for one seat (its error is in its report). */
  async keep(options: CallOptions = {}): Promise<SeatV2Report[]> {
    if (!this.seats) return [];
    const reports: SeatV2Report[] = [];
    for (const seat of this.seats.open()) {
      try {
        reports.push(await this.keepSeat(seat, options));
      } catch (error) {
        const e = toAirqubeError(error);
        reports.push({ batchId: seat.batchId, action: "error", error: { code: e.code, message: e.message } });
      }
    }
    return reports;
  }

  /** Runs {@link keep} every `intervalMs` (default 5 s) until {@link close}; `onReport` sees every action. */
  startKeeper(intervalMs = 5_000, onReport?: (report: SeatV2Report) => void): void {
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

  private async keepSeat(seat: StoredSeatV2, options: CallOptions): Promise<SeatV2Report> {
    const { batchId } = seat;
    const { batch } = batchFromWire(seat.batch);
    const k = batch.providers.length;
    const window = batch.revealDeadline - batch.commitDeadline;
    const state = await this.client.batchState(batch, options);
    const now = await this.chainTime(options);
    const wait = (notBefore: number): SeatV2Report => ({ batchId, action: "wait", notBefore });
    const close = (state: string, report: SeatV2Report): SeatV2Report => {
      this.seats!.markClosed(batchId, state, new Date());
      return report;
    };
    if (state.status === "settled") return close("settled", { batchId, action: "was-settled" });
    if (state.status === "reclaimed") return close("reclaimed", { batchId, action: "was-reclaimed" });
    if (state.status === "none")
      return now > batch.commitDeadline
        ? close("not-opened", { batchId, action: "not-opened" })
        : wait(batch.commitDeadline + 1);
    const own = seat.own && seat.commitment && seat.signature ? seat : undefined;
    if (state.status === "open") {
      if (now > batch.finalDeadline) {
        const tx = await this.client.reclaim(batch, options);
        return close("reclaimed", { batchId, action: "reclaimed", tx: tx.hash });
      }
      // the requestor went silent past the reveal deadline: propose with our own signed column, while the
      // dispute's two windows still end before the final deadline
      if (own && now > batch.revealDeadline && now + 2 * window <= batch.finalDeadline) {
        const signatures = batch.providers.map(
          (_, s): CompactSignature => (s === seat.seat ? own.signature! : [ZERO_BYTES32, ZERO_BYTES32]),
        );
        const commitments = batch.providers.map((_, s) => (s === seat.seat ? own.commitment! : ZERO_BYTES32));
        const tx = await this.client.propose(batch, signatures, commitments, options);
        return { batchId, action: "proposed", tx: tx.hash };
      }
      return wait(own && now <= batch.revealDeadline ? batch.revealDeadline + 1 : batch.finalDeadline + 1);
    }
    // proposed: follow the dispute
    const dispute = await this.client.dispute(batch, options);
    if (!dispute) return wait(now + 1);
    const position = seat.seat; // one job: the position is the seat
    if (own && now <= dispute.commitBy) {
      if (dispute.commitments[position] === ZERO_BYTES32) {
        const tx = await this.client.addCommitments(
          batch,
          dispute.commitments,
          seat.seat,
          own.signature!,
          [own.commitment!],
          options,
        );
        return { batchId, action: "added", tx: tx.hash };
      }
      return wait(dispute.commitBy + 1);
    }
    if (now <= dispute.commitBy + window) {
      const ours = dispute.commitments[position]?.toLowerCase() === own?.commitment?.toLowerCase();
      if (own && ours && !dispute.revealed.has(position)) {
        const tx = await this.client.reveal(batch, dispute.commitments, new Map([[position, own.own!]]), options);
        return { batchId, action: "revealed", tx: tx.hash };
      }
      return wait(dispute.commitBy + window + 1);
    }
    const openings = Array.from({ length: k }, (_, pos) => dispute.revealed.get(pos));
    try {
      try {
        const tx = await this.client.finalize(batch, dispute.commitments, openings, options);
        return close("settled", { batchId, action: "finalized", tx: tx.hash });
      } catch (error) {
        if (!(error instanceof ChainError && error.errorName === "AirqubeEscrowV2GroupSettlement")) throw error;
        return await this.finalizeGroup(batch, now, options, (tx) =>
          close("settled", { batchId, action: "finalized", tx }),
        );
      }
    } catch (error) {
      if (error instanceof ChainError && error.errorName === "AirqubeEscrowV2TooEarly")
        return wait(Number(error.errorArgs[1] ?? 0) + 1);
      throw error;
    }
  }

  /**
   * Finalizes the group of a disputed batch (its leader and follow-ups, from the chain's events) with the
   * openings recorded on chain, once no batch of the group is open: one still open is reclaimed after its final
   * deadline, and waited for until then (its seats or the requestor may still propose it).
   */
  private async finalizeGroup(
    batch: EscrowBatch,
    now: number,
    options: CallOptions,
    finalized: (tx: string) => SeatV2Report,
  ): Promise<SeatV2Report> {
    const batchId = batchIdOf(batch);
    const group = await this.client.group(batch, options);
    const disputes = [];
    for (const member of group) {
      const state = await this.client.batchState(member, options);
      if (state.status === "open") {
        if (now <= member.finalDeadline) return { batchId, action: "wait", notBefore: member.finalDeadline + 1 };
        const tx = await this.client.reclaim(member, options);
        return { batchId, action: "wait", tx: tx.hash, notBefore: now + 1 };
      }
      const dispute = state.status === "proposed" ? await this.client.dispute(member, options) : undefined;
      const k = member.providers.length;
      disputes.push(
        dispute && {
          commitments: dispute.commitments,
          openings: Array.from({ length: member.jobs * k }, (_, pos) => dispute.revealed.get(pos)),
        },
      );
    }
    const tx = await this.client.finalizeGroup(group, disputes, options);
    return finalized(tx.hash);
  }

  /** The contract's clock, unix seconds (see {@link ChainClock}: the keeper must not miss a dispute's windows). */
  private chainTime(options: CallOptions): Promise<number> {
    return this.clock.now(this.rpc, options);
  }

  /** The batch a wire batch names, for this escrow, this qube alone and a seat of this provider. */
  private parse(wire: EscrowBatchWire, qubeId: string): Verdict<{ batch: EscrowBatch; seat: number }> {
    if (wire.chainId !== this.client.chainId || wire.escrow.toLowerCase() !== this.client.escrowAddress.toLowerCase())
      return refuse(
        "ESCROW_MISMATCH",
        `the batch is on escrow ${wire.escrow} (chain ${wire.chainId}); this provider is paid through escrow v2 ${this.client.escrowAddress} (chain ${this.client.chainId})`,
      );
    let batch: EscrowBatch;
    let qubeIds: string[];
    try {
      ({ batch, qubeIds } = batchFromWire(escrowBatchWireSchema.parse(wire)));
    } catch (error) {
      return refuse("ESCROW_INVALID", `the escrow v2 batch is malformed: ${toAirqubeError(error).message}`);
    }
    if (qubeIds.length !== 1 || qubeIds[0] !== qubeIdToBytes32(qubeId).toLowerCase())
      return refuse("ESCROW_MISMATCH", "the batch must hold this qube alone");
    const me = this.client.address.toLowerCase();
    const seat = batch.providers.findIndex((p) => p.toLowerCase() === me);
    if (seat < 0)
      return refuse(
        "ESCROW_MISMATCH",
        `this provider's payout address ${this.client.address} has no seat in the batch`,
      );
    return { ok: true, batch, seat };
  }

  /** Stops the keeper (waits for a pass under way) and releases the connection and the seat store. */
  async close(): Promise<void> {
    const timer = this.timer;
    this.timer = undefined;
    if (timer) clearTimeout(timer);
    await this.keeping;
    this.client.close();
    this.rpc.destroy();
    this.seats?.dispose();
  }
}

function refuse(code: string, reason: string): { ok: false } & Refusal {
  return { ok: false, code, reason };
}

interface StoredSeatV2 {
  batchId: string;
  batch: EscrowBatchWire;
  seat: number;
  own?: BatchOpening;
  commitment?: string;
  signature?: CompactSignature;
}

/** The provider's escrow v2 seats in SQLite: each batch it accepted, with its signed commitment once made. */
export class SeatV2Store {
  private readonly db: DatabaseSync;

  constructor(path: string) {
    this.db = openDatabase(
      path,
      `CREATE TABLE IF NOT EXISTS seats_v2 (
        batch_id TEXT PRIMARY KEY, batch TEXT NOT NULL, seat INTEGER NOT NULL, outputs_root TEXT, salt TEXT,
        commitment TEXT, signature TEXT, state TEXT NOT NULL, updated_at TEXT NOT NULL
      );`,
    );
  }

  /** Records a seat (idempotent). */
  add(batchId: string, batch: EscrowBatchWire, seat: number, now: Date): void {
    this.db
      .prepare(
        "INSERT INTO seats_v2 (batch_id, batch, seat, state, updated_at) VALUES (?, ?, ?, 'open', ?) ON CONFLICT(batch_id) DO NOTHING",
      )
      .run(batchId, JSON.stringify(batch), seat, now.toISOString());
  }

  /** Records the seat's opening and signed commitment. */
  committed(batchId: string, own: BatchOpening, commitment: string, signature: CompactSignature, now: Date): void {
    this.db
      .prepare(
        "UPDATE seats_v2 SET outputs_root = ?, salt = ?, commitment = ?, signature = ?, updated_at = ? WHERE batch_id = ?",
      )
      .run(own.outputsRoot, own.salt, commitment, JSON.stringify(signature), now.toISOString(), batchId);
  }

  /** Seats whose batch is not known to be closed. */
  open(): StoredSeatV2[] {
    const rows = this.db.prepare("SELECT * FROM seats_v2 WHERE state = 'open' ORDER BY rowid").all() as Record<
      string,
      string | number | null
    >[];
    return rows.map((r) => ({
      batchId: String(r.batch_id),
      batch: escrowBatchWireSchema.parse(JSON.parse(String(r.batch))),
      seat: Number(r.seat),
      ...(r.outputs_root && r.salt ? { own: { outputsRoot: String(r.outputs_root), salt: String(r.salt) } } : {}),
      ...(r.commitment ? { commitment: String(r.commitment) } : {}),
      ...(r.signature ? { signature: JSON.parse(String(r.signature)) as CompactSignature } : {}),
    }));
  }

  /** Every seat with its state. */
  all(): { batchId: string; state: string; updatedAt: string }[] {
    return (
      this.db.prepare("SELECT batch_id, state, updated_at FROM seats_v2 ORDER BY rowid").all() as Record<
        string,
        string
      >[]
    ).map((r) => ({ batchId: r.batch_id!, state: r.state!, updatedAt: r.updated_at! }));
  }

  /** Marks a seat's batch closed (`settled`, `reclaimed`, `not-opened`). */
  markClosed(batchId: string, state: string, now: Date): void {
    this.db
      .prepare("UPDATE seats_v2 SET state = ?, updated_at = ? WHERE batch_id = ?")
      .run(state, now.toISOString(), batchId);
  }

  /** Closes the database. */
  dispose(): void {
    this.db.close();
  }
}
