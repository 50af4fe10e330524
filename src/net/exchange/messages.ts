/** Messages of the exchange protocol, validated with zod on receipt (the envelopes inside are verified by the receiver). */
import { z } from "zod";
import { outputManifestSchema, relativePathSchema } from "../../qube/index.js";
import { MAX_LOG_EXCERPT } from "./constants.js";

const envelope = z.strictObject({ kind: z.string(), payload: z.unknown(), signer: z.string(), signature: z.string() });

export const proposeSchema = z.strictObject({
  type: z.literal("propose"),
  spec: envelope,
  proposal: envelope,
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
