/**
 * Escrow v2 batches between the wire (`EscrowBatchWire`, decimal strings, the qubes' ids), the contract's
 * {@link EscrowBatch}, and the v1-shaped {@link EscrowJob} the requestor journals a batch of one qube as (same
 * fields; `qubesRoot` and `jobs` follow from the qube id).
 */
import { Signature, verifyTypedData } from "ethers";
import type { EscrowBatchWire } from "../net/exchange/messages.js";
import { UserError } from "../qube/errors.js";
import {
  ACCEPT_TYPES,
  COMMITMENTS_TYPES,
  columnHashOf,
  type EscrowBatch,
  escrowV2Domain,
  FOLLOW_UP_TYPES,
  parseEscrowBatch,
  qubesRootOf,
} from "./escrow-v2-batch.js";
import type { EscrowJob } from "./job.js";

/**
 * The batch a wire batch names, with its qubes' ids.
 *
 * @throws UserError `ESCROW_BATCH_INVALID` for a batch out of the contract's ranges.
 */
export function batchFromWire(wire: EscrowBatchWire): { batch: EscrowBatch; qubeIds: string[] } {
  const qubeIds = wire.qubeIds.map((id) => id.toLowerCase());
  if (new Set(qubeIds).size !== qubeIds.length)
    throw new UserError("ESCROW_BATCH_INVALID", "The escrow batch names a qube twice");
  const batch = parseEscrowBatch({
    requestor: wire.requestor,
    nonce: BigInt(wire.nonce),
    qubesRoot: qubesRootOf(qubeIds),
    jobs: qubeIds.length,
    providers: wire.providers,
    price: BigInt(wire.price),
    stake: BigInt(wire.stake),
    quorum: wire.quorum,
    commitDeadline: wire.commitDeadline,
    revealDeadline: wire.revealDeadline,
    finalDeadline: wire.finalDeadline,
  });
  return { batch, qubeIds };
}

/** The batch of one qube a v1-shaped job stands for (its `nonce` must fit 40 bits). */
export function batchOfJob(job: EscrowJob): EscrowBatch {
  return parseEscrowBatch({
    requestor: job.requestor,
    nonce: job.nonce,
    qubesRoot: qubesRootOf([job.qubeId]),
    jobs: 1,
    providers: job.providers,
    price: job.price,
    stake: job.stake,
    quorum: job.quorum,
    commitDeadline: job.commitDeadline,
    revealDeadline: job.revealDeadline,
    finalDeadline: job.finalDeadline,
  });
}

/**
 * The wire form of the batch of one qube that `job` stands for, on escrow `escrow` of chain `chainId`; with
 * `leader` (the id of the qube's first batch), a follow-up in its group.
 */
export function wireOfJob(job: EscrowJob, chainId: number, escrow: string, leader?: string): EscrowBatchWire {
  return {
    requestor: job.requestor,
    qubeIds: [job.qubeId],
    nonce: job.nonce.toString(),
    providers: [...job.providers],
    price: job.price.toString(),
    stake: job.stake.toString(),
    quorum: job.quorum,
    commitDeadline: job.commitDeadline,
    revealDeadline: job.revealDeadline,
    finalDeadline: job.finalDeadline,
    chainId,
    escrow,
    ...(leader ? { leader } : {}),
  };
}

/** Who signed a compact signature of a statement, or undefined when it is not a valid signature. */
function recover(
  chainId: number,
  escrow: string,
  types: Record<string, { name: string; type: string }[]>,
  value: Record<string, unknown>,
  signature: readonly [string, string],
): string | undefined {
  try {
    return verifyTypedData(
      escrowV2Domain(chainId, escrow),
      types,
      value,
      Signature.from(`${signature[0]}${signature[1].slice(2)}`),
    ).toLowerCase();
  } catch {
    return undefined;
  }
}

/** Whether `signature` is `signer`'s `Accept` of batch `batchId` on this escrow and chain. */
export function isAcceptOf(
  signer: string,
  at: { chainId: number; escrow: string; batchId: string },
  signature: readonly [string, string],
): boolean {
  return recover(at.chainId, at.escrow, ACCEPT_TYPES, { batchId: at.batchId }, signature) === signer.toLowerCase();
}

/** Whether `signature` is `signer`'s `FollowUp` of batch `batchId` in the group of `leaderId`. */
export function isFollowUpOf(
  signer: string,
  at: { chainId: number; escrow: string; batchId: string; leaderId: string },
  signature: readonly [string, string],
): boolean {
  const value = { batchId: at.batchId, leaderId: at.leaderId };
  return recover(at.chainId, at.escrow, FOLLOW_UP_TYPES, value, signature) === signer.toLowerCase();
}

/** Whether `signature` is `signer`'s `Commitments` to `column` in batch `batchId` on this escrow and chain. */
export function isCommitmentsOf(
  signer: string,
  at: { chainId: number; escrow: string; batchId: string },
  column: readonly string[],
  signature: readonly [string, string],
): boolean {
  const value = { batchId: at.batchId, commitments: columnHashOf(column) };
  return recover(at.chainId, at.escrow, COMMITMENTS_TYPES, value, signature) === signer.toLowerCase();
}

/**
 * What a settlement with every seat's opening pays in a batch of one job (the contract's `_payout`): account →
 * credit (each seat, then the requestor's refund), and the slashed seats with their stakes.
 */
export function payoutOfOneJob(
  batch: EscrowBatch,
  roots: readonly string[],
): { credits: { account: string; amount: bigint }[]; slashed: { account: string; amount: bigint }[] } {
  const k = batch.providers.length;
  let winner: string | undefined;
  let count = 0;
  for (let s = 0; s < k && winner === undefined; s++) {
    const c = roots.filter((r) => r === roots[s]).length;
    if (2 * c >= batch.quorum + k) {
      winner = roots[s];
      count = c;
    }
  }
  const credits: { account: string; amount: bigint }[] = [];
  const slashed: { account: string; amount: bigint }[] = [];
  if (winner === undefined) {
    for (const p of batch.providers) credits.push({ account: p, amount: batch.stake });
    credits.push({ account: batch.requestor, amount: batch.price * BigInt(k) });
    return { credits, slashed };
  }
  for (let s = 0; s < k; s++)
    if (roots[s] !== winner) slashed.push({ account: batch.providers[s]!, amount: batch.stake });
  const pool = batch.stake * BigInt(slashed.length);
  const share = pool / BigInt(count);
  for (let s = 0; s < k; s++)
    credits.push({
      account: batch.providers[s]!,
      amount: roots[s] === winner ? batch.price + batch.stake + share : 0n,
    });
  credits.push({
    account: batch.requestor,
    amount: batch.price * BigInt(k - count) + (pool - share * BigInt(count)),
  });
  return { credits: credits.filter((c) => c.amount > 0n), slashed };
}

/**
 * What a group settlement with every seat's opening pays for a qube (one job per batch; the contract's
 * `_payoutGroup`): the votes of every batch counted together with the leader's quorum. `roots[b][seat]` is batch
 * `b`'s roots. Per batch, account → credit (its seats; the requestor's refund and the dust on the leader's), and
 * the slashed seats with their stakes.
 */
export function payoutOfGroup(
  batches: readonly EscrowBatch[],
  roots: readonly (readonly string[])[],
): { credits: { account: string; amount: bigint }[]; slashed: { account: string; amount: bigint }[] }[] {
  const seats = roots.reduce((n, r) => n + r.length, 0);
  const all = roots.flat();
  let winner: string | undefined;
  let count = 0;
  for (const root of all) {
    const c = all.filter((r) => r === root).length;
    if (2 * c >= batches[0]!.quorum + seats) {
      winner = root;
      count = c;
      break;
    }
  }
  let pool = 0n;
  if (winner !== undefined)
    batches.forEach((b, i) => {
      for (const r of roots[i]!) if (r !== winner) pool += b.stake;
    });
  const share = count > 0 ? pool / BigInt(count) : 0n;
  const out = batches.map((b, i) => {
    const credits: { account: string; amount: bigint }[] = [];
    const slashed: { account: string; amount: bigint }[] = [];
    let refund = 0n;
    b.providers.forEach((p, s) => {
      const root = roots[i]![s]!;
      if (winner === undefined) {
        credits.push({ account: p, amount: b.stake });
        refund += b.price;
      } else if (root === winner) {
        credits.push({ account: p, amount: b.price + b.stake + share });
      } else {
        slashed.push({ account: p, amount: b.stake });
        refund += b.price;
      }
    });
    credits.push({ account: b.requestor, amount: refund });
    return { credits, slashed };
  });
  // with a winner, the dust of the shares goes to the requestor (on the leader's report); without one nobody
  // who opened is slashed
  if (winner !== undefined)
    out[0]!.credits.push({ account: batches[0]!.requestor, amount: pool - share * BigInt(count) });
  return out.map((o) => ({ credits: o.credits.filter((c) => c.amount > 0n), slashed: o.slashed }));
}
