/** Messages of the exchange protocol, validated with zod on receipt (the envelopes inside are verified by the receiver). */
import { z } from "zod";
import { outputManifestSchema, relativePathSchema } from "../../qube/index.js";
import { MAX_LOG_EXCERPT } from "./constants.js";

const envelope = z.strictObject({ kind: z.string(), payload: z.unknown(), signer: z.string(), signature: z.string() });

const uintString = z.string().regex(/^(0|[1-9][0-9]{0,28})$/, "must be a whole number");
const evmAddress = z.string().regex(/^0x[0-9a-fA-F]{40}$/);

/**
 * The escrow job of a paid qube as it travels in the proposal (integers as decimal strings). The agreement
 * names its id (`escrowJob`); the provider recomputes the id from these fields and checks the chain.
 */
export const escrowJobWireSchema = z.strictObject({
  requestor: evmAddress,
  qubeId: z.string().regex(/^0x[0-9a-fA-F]{64}$/),
  nonce: uintString,
  providers: z.array(evmAddress).min(1).max(12),
  price: uintString,
  stake: uintString,
  quorum: z.int().min(1).max(12),
  commitDeadline: z.int().nonnegative(),
  revealDeadline: z.int().nonnegative(),
  finalDeadline: z.int().nonnegative(),
  /** The chain and contract the job lives on, so a provider on another chain refuses instead of waiting. */
  chainId: z.int().positive(),
  escrow: evmAddress,
});
export type EscrowJobWire = z.infer<typeof escrowJobWireSchema>;

const bytes32Hex = z.string().regex(/^0x[0-9a-fA-F]{64}$/);

/**
 * An escrow v2 batch (`contracts/AirqubeEscrowV2.sol`) as it travels (integers as decimal strings): its qubes'
 * ids (the contract hashes them into `qubesRoot`; `jobs` is their count) and the batch's other parameters.
 * Asked with a query, a provider answers with its signed `Accept`; named by a proposal (the agreement's
 * `escrowJob` is the batch id), it must be open on chain.
 */
export const escrowBatchWireSchema = z.strictObject({
  requestor: evmAddress,
  qubeIds: z.array(bytes32Hex).min(1).max(256),
  nonce: z.string().regex(/^(0|[1-9][0-9]{0,12})$/, "must be a whole number below 2^40"),
  providers: z.array(evmAddress).min(1).max(12),
  price: uintString,
  stake: uintString,
  quorum: z.int().min(1).max(12),
  commitDeadline: z.int().nonnegative(),
  revealDeadline: z.int().nonnegative(),
  finalDeadline: z.int().nonnegative(),
  chainId: z.int().positive(),
  escrow: evmAddress,
  /**
   * A follow-up batch (a tie-breaker or replacement round): the id of the qube's first batch, whose group it
   * joins; the provider then signs `FollowUp(batchId, leader)` instead of `Accept(batchId)`.
   */
  leader: bytes32Hex.optional(),
});
export type EscrowBatchWire = z.infer<typeof escrowBatchWireSchema>;

/** A compact (EIP-2098) signature `[r, vs]` of an escrow v2 statement. */
export const compactSignatureSchema = z.tuple([bytes32Hex, bytes32Hex]);

/** A provider's escrow v2 commitments to one qube: the commitment and its signed `Commitments` statement. */
export const escrowCommitmentsSchema = z.strictObject({ commitment: bytes32Hex, signature: compactSignatureSchema });
export type EscrowCommitmentsWire = z.infer<typeof escrowCommitmentsSchema>;

/** A refusal code: a provider's stable reason (`IMAGE_UNAVAILABLE`, `LIMITS_EXCEEDED`, `ESCROW_REQUIRED` ...). */
export const refusalCodeSchema = z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, "must be an upper-case code");

/**
 * Asked before any money is locked: would the provider admit this qube at this price, paid through this
 * escrow (or unpaid)? The provider checks everything it can without a job (signature, tier, limits, wall time,
 * image, price, escrow requirement, capacity now) and answers `admissible` or `refuse`; nothing is reserved.
 */
export const querySchema = z.strictObject({
  type: z.literal("query"),
  spec: envelope,
  /** What each provider would be paid, wei. */
  price: uintString,
  /** The escrow the budget would be locked in; absent for an unpaid qube. */
  payment: z.strictObject({ chainId: z.int().positive(), escrow: evmAddress }).optional(),
  /** Escrow v2: the batch the requestor would open; an admitting provider signs its `Accept`. */
  escrowBatch: escrowBatchWireSchema.optional(),
});
/**
 * `image: "send"`: the provider lacks the qube's image and would take it shipped (spec `image.archiveDigest`).
 * `escrowAccept`: its signed `Accept` of the query's escrow v2 batch.
 */
export const admissibleSchema = z.strictObject({
  type: z.literal("admissible"),
  image: z.literal("send").optional(),
  escrowAccept: compactSignatureSchema.optional(),
});
export const refuseSchema = z.strictObject({
  type: z.literal("refuse"),
  code: refusalCodeSchema,
  reason: z.string().max(1024),
});

/**
 * The requestor gives up on the qube (Ctrl-C, a decision reached without this provider): the provider stops
 * the qube, destroys its sandbox and frees the seat. Valid at any point after the proposal.
 */
export const cancelSchema = z.strictObject({ type: z.literal("cancel"), reason: z.string().max(256) });

export const proposeSchema = z.strictObject({
  type: z.literal("propose"),
  spec: envelope,
  proposal: envelope,
  /** Present when the budget is locked in an escrow (the agreement's `escrowJob` is its id). */
  escrow: escrowJobWireSchema.optional(),
  /** Escrow v2: the open batch the budget is locked in (the agreement's `escrowJob` is its id). */
  escrowBatch: escrowBatchWireSchema.optional(),
});

/** `image: "send"`: the requestor sends the sealed image archive, then `image-end`, before the inputs. */
export const acceptSchema = z.strictObject({
  type: z.literal("accept"),
  agreement: envelope,
  image: z.literal("send").optional(),
});
export const imageEndSchema = z.strictObject({ type: z.literal("image-end") });
export const rejectSchema = z.strictObject({
  type: z.literal("reject"),
  code: z.string().max(64),
  reason: z.string().max(1024),
});
export const failedSchema = z.strictObject({
  type: z.literal("failed"),
  code: z.string().max(64),
  reason: z.string().max(1024),
});
/** The answer to a proposal (`failed`: the provider could not handle it, e.g. it timed out reading it). */
export const answerSchema = z.discriminatedUnion("type", [acceptSchema, rejectSchema, failedSchema]);

export const inputEndSchema = z.strictObject({ type: z.literal("input-end"), path: relativePathSchema });

export const startedSchema = z.strictObject({ type: z.literal("started") });
/** `escrowCommitments`: escrow v2, the provider's signed commitments to the batch (one qube). */
export const commitSchema = z.strictObject({
  type: z.literal("commit"),
  commitment: envelope,
  escrowCommitments: escrowCommitmentsSchema.optional(),
});
export const providerProgressSchema = z.discriminatedUnion("type", [startedSchema, commitSchema, failedSchema]);
/** The answer to an admission query (`failed`: the provider could not check, e.g. the query was malformed). */
export const queryAnswerSchema = z.discriminatedUnion("type", [admissibleSchema, refuseSchema, failedSchema]);

export const revealRequestSchema = z.strictObject({ type: z.literal("reveal-request") });
/** What a provider may receive while the qube runs and after it committed. */
export const requestorControlSchema = z.discriminatedUnion("type", [revealRequestSchema, cancelSchema]);
export const revealSchema = z.strictObject({
  type: z.literal("reveal"),
  reveal: envelope,
  statement: envelope,
  manifest: outputManifestSchema,
  stdout: z.string().max(MAX_LOG_EXCERPT),
  stderr: z.string().max(MAX_LOG_EXCERPT),
});
export const doneSchema = z.strictObject({ type: z.literal("done") });

/** The first message of a stream: a proposal or an admission query. */
export const openingSchema = z.discriminatedUnion("type", [proposeSchema, querySchema]);

export type ProposeMessage = z.infer<typeof proposeSchema>;
export type QueryMessage = z.infer<typeof querySchema>;
export type RevealMessage = z.infer<typeof revealSchema>;
