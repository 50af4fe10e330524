/**
 * Small zod schemas shared by the qube messages: digests, ids, times, peer ids, paths.
 */
import { z } from "zod";
import { isEd25519PeerId } from "./identity.js";
import { relativePathProblem } from "./paths.js";

/** 64 lower-case hex characters (a raw SHA-256). */
export const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lower-case hex characters");

/** A typed digest "sha256:<64 hex>" (image digests, outputs roots, report hashes). */
export const digestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be "sha256:" and 64 lower-case hex');

/** A qube id: "aq1" + 64 lower-case hex (SHA-256 of the spec's canonical bytes). */
export const qubeIdSchema = z.string().regex(/^aq1[0-9a-f]{64}$/, 'must be "aq1" and 64 lower-case hex');

/** A canonical Ed25519 libp2p peer id ("12D3KooW..."). */
export const peerIdSchema = z.string().max(128).refine(isEd25519PeerId, "must be a canonical Ed25519 libp2p peer id");

/** An instant as `Date.prototype.toISOString()` writes it (UTC, milliseconds): one string per instant. */
export const isoTimeSchema = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, "must be an ISO time like 2026-01-31T12:00:00.000Z")
  .refine((s) => {
    const t = Date.parse(s);
    return Number.isFinite(t) && new Date(t).toISOString() === s;
  }, "must be a real UTC instant in toISOString() form");

/** A relative path inside the qube's input or output directory (see paths.ts for the rules). */
export const relativePathSchema = z.string().superRefine((value, ctx) => {
  const problem = relativePathProblem(value);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: `invalid path: ${problem}` });
});

/** A non-negative safe integer with an upper bound. */
export function boundedInt(min: number, max: number) {
  return z.int().min(min).max(max);
}

/** Sandbox tiers, weakest first (gvisor: a container under gVisor's own kernel, runsc). */
export const TIERS = ["container", "gvisor", "microvm"] as const;
/** Validates a tier name: one of {@link TIERS}. */
export const tierSchema = z.enum(TIERS);
/** A sandbox tier: `"container"` (hardened Docker container), `"gvisor"` (the same under runsc) or `"microvm"` (QEMU micro-VM). */
export type Tier = z.infer<typeof tierSchema>;

/** True when running in `offered` satisfies a qube that requires `required` (a stronger tier satisfies a weaker). */
export function tierSatisfies(required: Tier, offered: Tier): boolean {
  return TIERS.indexOf(offered) >= TIERS.indexOf(required);
}

/** An amount in wei: a non-negative integer as a decimal string (fits 256 bits). */
export const weiSchema = z.string().regex(/^(0|[1-9][0-9]{0,77})$/, "must be a non-negative integer in wei");
