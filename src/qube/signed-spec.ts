/**
 * A qube spec signed by its requestor (signature kind "qube-spec"). The signer must be the spec's
 * `requestor`, so a spec cannot be re-signed by someone else and passed off as theirs.
 */
import type { z } from "zod";
import { decodeEnvelope, type SignedEnvelope, signEnvelope, verifyEnvelope } from "./envelope.js";
import { UserError } from "./errors.js";
import { type Source, sourceError } from "./fault.js";
import type { Identity } from "./identity.js";
import { qubeIdOf } from "./qube-id.js";
import { checkExpiry, MAX_SPEC_BYTES, type QubeSpec, qubeSpecSchema } from "./spec.js";

/** A verified signed spec with its id. */
export interface VerifiedQubeSpec {
  spec: QubeSpec;
  id: string;
  envelope: SignedEnvelope<QubeSpec>;
}

/**
 * Signs a spec as its requestor. Throws `SIGNER_MISMATCH` if `identity` is not `spec.requestor`.
 *
 * @example
 * const envelope = signQubeSpec(spec, me);
 */
export function signQubeSpec(spec: QubeSpec, identity: Identity): SignedEnvelope<QubeSpec> {
  if (identity.peerId !== spec.requestor) {
    throw new UserError("SIGNER_MISMATCH", "Only the spec's requestor may sign it", {
      details: `requestor ${spec.requestor}, signer ${identity.peerId}`,
    });
  }
  return signEnvelope("qube-spec", spec, identity);
}

/** Options of {@link verifySignedQubeSpec} and {@link decodeSignedQubeSpec}. */
export interface VerifySignedSpecOptions {
  /** If given, expired specs are rejected. */
  now?: Date;
  /** If given, the id the caller expects (e.g. from an agreement). */
  id?: string;
  /** Largest encoded envelope, checked before parsing (decode only). Default spec limit + 1 KiB. */
  maxBytes?: number;
  /** Who supplied the envelope: decides PeerError vs UserError. Default "peer". */
  source?: Source;
}

/** Verifies a signed spec given as a JSON value. See `decodeSignedQubeSpec`. */
export function verifySignedQubeSpec(value: unknown, options: VerifySignedSpecOptions = {}): VerifiedQubeSpec {
  const envelope = verifyEnvelope(value, {
    kind: "qube-spec",
    schema: qubeSpecSchema,
    payloadCode: "SPEC_INVALID",
    what: "qube spec",
    source: options.source,
  });
  return finish(envelope, options);
}

/**
 * Decodes and verifies signed spec bytes: byte limit, envelope, signature, spec schema, signer equals
 * requestor, expiry (with `now`), expected id. Throws typed errors only.
 *
 * @example
 * const { spec, id } = decodeSignedQubeSpec(bytes, { now: new Date(), id: agreedId });
 */
export function decodeSignedQubeSpec(bytes: Uint8Array, options: VerifySignedSpecOptions = {}): VerifiedQubeSpec {
  const envelope = decodeEnvelope(bytes, {
    kind: "qube-spec",
    schema: qubeSpecSchema as z.ZodType<QubeSpec>,
    payloadCode: "SPEC_INVALID",
    what: "qube spec",
    maxBytes: options.maxBytes ?? MAX_SPEC_BYTES + 1024,
    source: options.source,
  });
  return finish(envelope, options);
}

function finish(envelope: SignedEnvelope<QubeSpec>, options: VerifySignedSpecOptions): VerifiedQubeSpec {
  const source = options.source ?? "peer";
  const spec = envelope.payload;
  if (envelope.signer !== spec.requestor) {
    throw sourceError(source, "SIGNER_MISMATCH", "The qube spec is not signed by its requestor", {
      details: `requestor ${spec.requestor}, signer ${envelope.signer}`,
    });
  }
  if (options.now !== undefined) checkExpiry(spec, options.now, source);
  const id = qubeIdOf(spec);
  if (options.id !== undefined && options.id !== id) {
    throw sourceError(source, "QUBE_ID_MISMATCH", "The qube spec does not have the expected id", {
      details: `expected ${options.id}, got ${id}`,
    });
  }
  return { spec, id, envelope };
}
