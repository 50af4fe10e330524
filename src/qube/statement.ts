/**
 * The result statement: what a provider says it ran and produced, signed by the provider
 * (signature kind "result-statement").
 */
import { z } from "zod";
import { decodeEnvelope, type SignedEnvelope, signEnvelope, verifyEnvelope } from "./envelope.js";
import { AirqubeError, UserError } from "./errors.js";
import { type Source, sourceError } from "./fault.js";
import type { Identity } from "./identity.js";
import {
  boundedInt,
  digestSchema,
  isoTimeSchema,
  peerIdSchema,
  qubeIdSchema,
  tierSatisfies,
  tierSchema,
} from "./schemas.js";
import type { QubeSpec } from "./spec.js";
import { validate } from "./validate.js";

/** Default byte limit of an encoded signed statement. */
export const MAX_STATEMENT_BYTES = 16 * 1024;

const MAX_COUNT = Number.MAX_SAFE_INTEGER;

/**
 * How the qube ended: its process exited, hit its time-out or memory limit, was killed, or its outputs broke
 * an output limit or rule ("outputs-refused": the sandbox refused them before sending any, the statement
 * names the refusal in `outputRefusal`, and no output is delivered).
 */
export const OUTCOMES = ["exited", "timeout", "oom", "killed", "outputs-refused"] as const;

/**
 * Why a sandbox refused a qube's outputs (the init's checks, both tiers): a deterministic property of the
 * qube, so providers agree on it and are paid for it like for any other outcome.
 */
export const OUTPUT_REFUSALS = [
  "OUTPUT_TOO_MANY_FILES",
  "OUTPUT_FILE_TOO_LARGE",
  "OUTPUT_TOO_LARGE",
  "OUTPUT_PATH_TOO_LONG",
  "OUTPUT_TOO_DEEP",
  "OUTPUT_UNREADABLE",
  "OUTPUT_UNSUPPORTED_TYPE",
  "OUTPUT_BAD_NAME",
] as const;

/** One of {@link OUTPUT_REFUSALS}. */
export type OutputRefusal = (typeof OUTPUT_REFUSALS)[number];

/** The refusal an error of a sandbox run is, when the qube's outputs broke an output limit or rule. */
export function outputRefusalOf(error: unknown): OutputRefusal | undefined {
  return error instanceof AirqubeError && (OUTPUT_REFUSALS as readonly string[]).includes(error.code)
    ? (error.code as OutputRefusal)
    : undefined;
}

/** The strict schema of a result statement v1. */
export const resultStatementSchema = z
  .strictObject({
    version: z.literal(1),
    qubeId: qubeIdSchema,
    provider: peerIdSchema,
    tier: tierSchema,
    /** The image digest the provider actually ran. */
    imageDigest: digestSchema,
    outcome: z.enum(OUTCOMES),
    /** The exit code when `outcome` is "exited", else null. */
    exitCode: boundedInt(0, 255).nullable(),
    /** Why the outputs were refused: set exactly when `outcome` is "outputs-refused". */
    outputRefusal: z.enum(OUTPUT_REFUSALS).optional(),
    /** SHA-256 of the canonical outputs manifest (see manifest.ts). */
    outputsRoot: digestSchema,
    usage: z.strictObject({
      cpuMs: boundedInt(0, MAX_COUNT),
      wallMs: boundedInt(0, MAX_COUNT),
      maxMemoryBytes: boundedInt(0, MAX_COUNT),
      outputBytes: boundedInt(0, MAX_COUNT),
      outputFiles: boundedInt(0, MAX_COUNT),
    }),
    /** Hash of the provider's escape-suite report for the tier it ran. */
    probeReportHash: digestSchema,
    startedAt: isoTimeSchema,
    finishedAt: isoTimeSchema,
  })
  .superRefine((s, ctx) => {
    if (Date.parse(s.finishedAt) < Date.parse(s.startedAt)) {
      ctx.addIssue({ code: "custom", path: ["finishedAt"], message: "must not be before startedAt" });
    }
    if ((s.outcome === "exited") !== (s.exitCode !== null)) {
      ctx.addIssue({ code: "custom", path: ["exitCode"], message: 'must be set exactly when outcome is "exited"' });
    }
    if ((s.outcome === "outputs-refused") !== (s.outputRefusal !== undefined)) {
      ctx.addIssue({
        code: "custom",
        path: ["outputRefusal"],
        message: 'must be set exactly when outcome is "outputs-refused"',
      });
    }
    if (s.outcome === "outputs-refused" && s.usage.outputFiles !== 0) {
      ctx.addIssue({ code: "custom", path: ["usage", "outputFiles"], message: "refused outputs deliver no file" });
    }
  });

/** A validated result statement. */
export type ResultStatement = z.infer<typeof resultStatementSchema>;

/**
 * Validates a statement and signs it as its provider. Throws `STATEMENT_INVALID` or `SIGNER_MISMATCH`.
 *
 * @example
 * const envelope = signResultStatement({ version: 1, qubeId, provider: me.peerId, ... }, me);
 */
export function signResultStatement(statement: ResultStatement, identity: Identity): SignedEnvelope<ResultStatement> {
  const checked = validate(resultStatementSchema, statement, {
    code: "STATEMENT_INVALID",
    what: "result statement",
    source: "user",
  });
  if (checked.provider !== identity.peerId) {
    throw new UserError("SIGNER_MISMATCH", "Only the statement's provider may sign it", {
      details: `provider ${checked.provider}, signer ${identity.peerId}`,
    });
  }
  return signEnvelope("result-statement", checked, identity);
}

/** Options of {@link verifyResultStatement} and {@link decodeResultStatement}. */
export interface VerifyStatementOptions {
  /** If given, the qube the statement must be about. */
  qubeId?: string;
  /** If given, the provider that must have signed it. */
  provider?: string;
  /** Largest encoded envelope (decode only). Default `MAX_STATEMENT_BYTES`. */
  maxBytes?: number;
  /** Who supplied the statement: decides PeerError vs UserError. Default "peer". */
  source?: Source;
}

/** Verifies a signed statement given as a JSON value. See `decodeResultStatement`. */
export function verifyResultStatement(value: unknown, options: VerifyStatementOptions = {}): ResultStatement {
  const envelope = verifyEnvelope(value, {
    kind: "result-statement",
    schema: resultStatementSchema,
    payloadCode: "STATEMENT_INVALID",
    what: "result statement",
    signer: options.provider,
    source: options.source,
  });
  return finish(envelope, options);
}

/**
 * Decodes and verifies signed statement bytes: byte limit, envelope, signature, schema, signer equals
 * `provider`, expected qube id and provider. Throws typed errors only.
 *
 * @example
 * const statement = decodeResultStatement(bytes, { qubeId, provider: peerId });
 */
export function decodeResultStatement(bytes: Uint8Array, options: VerifyStatementOptions = {}): ResultStatement {
  const envelope = decodeEnvelope(bytes, {
    kind: "result-statement",
    schema: resultStatementSchema,
    payloadCode: "STATEMENT_INVALID",
    what: "result statement",
    signer: options.provider,
    maxBytes: options.maxBytes ?? MAX_STATEMENT_BYTES,
    source: options.source,
  });
  return finish(envelope, options);
}

/**
 * Checks a verified statement against the spec it claims to answer: the image digest run is the spec's,
 * the tier satisfies the spec's. Throws PeerError `STATEMENT_MISMATCH`.
 */
export function checkStatementAgainstSpec(statement: ResultStatement, spec: QubeSpec, qubeId: string): void {
  const fail = (details: string) =>
    sourceError("peer", "STATEMENT_MISMATCH", "The result statement does not match the qube", { details });
  if (statement.qubeId !== qubeId) throw fail(`qube id ${statement.qubeId}, expected ${qubeId}`);
  if (statement.imageDigest !== spec.image.digest) {
    throw fail(`ran image ${statement.imageDigest}, spec requires ${spec.image.digest}`);
  }
  if (!tierSatisfies(spec.tier, statement.tier))
    throw fail(`ran in tier ${statement.tier}, spec requires ${spec.tier}`);
}

function finish(envelope: SignedEnvelope<ResultStatement>, options: VerifyStatementOptions): ResultStatement {
  const source = options.source ?? "peer";
  const statement = envelope.payload;
  if (envelope.signer !== statement.provider) {
    throw sourceError(source, "SIGNER_MISMATCH", "The result statement is not signed by its provider", {
      details: `provider ${statement.provider}, signer ${envelope.signer}`,
    });
  }
  if (options.qubeId !== undefined && statement.qubeId !== options.qubeId) {
    throw sourceError(source, "QUBE_ID_MISMATCH", "The result statement is about another qube", {
      details: `expected ${options.qubeId}, got ${statement.qubeId}`,
    });
  }
  return statement;
}
