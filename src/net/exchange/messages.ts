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

export const proposeSchema = z.strictObject({
  type: z.literal("propose"),
  spec: envelope,
  proposal: envelope,
  /** Present when the budget is locked in an escrow (the agreement's `escrowJob` is its id). */
  escrow: escrowJobWireSchema.optional(),
});

export const acceptSchema = z.strictObject({ type: z.literal("accept"), agreement: envelope });
export const rejectSchema = z.strictObject({
  type: z.literal("reject"),
  code: z.string().max(64),
  reason: z.string().max(1024),
});
export const answerSchema = z.discriminatedUnion("type", [acceptSchema, rejectSchema]);

export const inputEndSchema = z.strictObject({ type: z.literal("input-end"), path: relativePathSchema });

export const startedSchema = z.strictObject({ type: z.literal("started") });
export const commitSchema = z.strictObject({ type: z.literal("commit"), commitment: envelope });
export const failedSchema = z.strictObject({
  type: z.literal("failed"),
  code: z.string().max(64),
  reason: z.string().max(1024),
});
export const providerProgressSchema = z.discriminatedUnion("type", [startedSchema, commitSchema, failedSchema]);

export const revealRequestSchema = z.strictObject({ type: z.literal("reveal-request") });
export const revealSchema = z.strictObject({
  type: z.literal("reveal"),
  reveal: envelope,
  statement: envelope,
  manifest: outputManifestSchema,
  stdout: z.string().max(MAX_LOG_EXCERPT),
  stderr: z.string().max(MAX_LOG_EXCERPT),
});
export const doneSchema = z.strictObject({ type: z.literal("done") });

export type ProposeMessage = z.infer<typeof proposeSchema>;
export type RevealMessage = z.infer<typeof revealSchema>;
