/**
 * The signed envelope every signed Airqube message travels in:
 * `{ kind, payload, signer, signature }`, where `signature` (hex) is the signer's Ed25519 signature of
 * `utf8("airqube/<kind>/v1") || 0x00 || JCS(payload)` and `signer` is the signer's libp2p peer id.
 * On the wire an envelope is its own JCS bytes.
 */
import { z } from "zod";
import { fromHex, toHex } from "./bytes.js";
import { canonicalBytes, parseJsonBytes } from "./canonical.js";
import { SIGNATURE_KIND_RE } from "./domains.js";
import { type Source, sourceError } from "./fault.js";
import { ed25519PublicKeyFromPeerId, type Identity, verifySignature } from "./identity.js";
import { validate } from "./validate.js";

/** Default byte limit for an encoded envelope. */
export const MAX_ENVELOPE_BYTES = 1024 * 1024;

/** A signed message. `payload` is plain JSON data. */
export interface SignedEnvelope<T = unknown> {
  kind: string;
  payload: T;
  signer: string;
  signature: string;
}

/** The envelope's outer shape (the payload is checked by the caller's schema). */
export const envelopeSchema = z.strictObject({
  kind: z.string().regex(SIGNATURE_KIND_RE, "must be a lower-case signature kind"),
  payload: z.unknown().refine((v) => v !== undefined, "required"),
  signer: z.string().min(1).max(128),
  signature: z.string().regex(/^[0-9a-f]{128}$/, "must be 64 bytes of lower-case hex"),
});

/**
 * Signs `payload` (plain JSON data) as `kind`.
 *
 * @example
 * const env = signEnvelope("offer", offer, providerIdentity);
 */
export function signEnvelope<T>(kind: string, payload: T, identity: Identity): SignedEnvelope<T> {
  const signature = identity.sign(kind, canonicalBytes(payload));
  return { kind, payload, signer: identity.peerId, signature: toHex(signature) };
}

/** What a verifier expects of an envelope. */
export interface VerifyEnvelopeOptions<S extends z.ZodType> {
  /** The only kind accepted. */
  kind: string;
  /** The payload schema (strict), checked after the signature. */
  schema: S;
  /** Error code for a payload that fails the schema. Default "PAYLOAD_INVALID". */
  payloadCode?: string;
  /** What the payload is, for messages. Default the kind. */
  what?: string;
  /** If set, the only peer id accepted as signer. */
  signer?: string;
  /** Who supplied the envelope. Default "peer". */
  source?: Source;
}

/**
 * Checks an envelope (an untrusted JSON value): shape, kind, signer, signature over the payload's
 * canonical bytes, then the payload schema. Returns the typed envelope or throws:
 * `ENVELOPE_INVALID`, `KIND_MISMATCH`, `PEER_ID_INVALID`, `SIGNER_MISMATCH`, `SIGNATURE_INVALID`,
 * `PAYLOAD_INVALID` (or `payloadCode`).
 *
 * @example
 * const env = verifyEnvelope(json, { kind: "offer", schema: offerSchema });
 */
export function verifyEnvelope<S extends z.ZodType>(
  value: unknown,
  options: VerifyEnvelopeOptions<S>,
): SignedEnvelope<z.output<S>> {
  const source = options.source ?? "peer";
  const what = options.what ?? options.kind;
  const outer = validate(envelopeSchema, value, { code: "ENVELOPE_INVALID", what: "signed envelope", source });
  if (outer.kind !== options.kind) {
    throw sourceError(source, "KIND_MISMATCH", `Expected a signed ${options.kind}`, { details: `got ${outer.kind}` });
  }
  const publicKey = ed25519PublicKeyFromPeerId(outer.signer, source);
  if (options.signer !== undefined && outer.signer !== options.signer) {
    throw sourceError(source, "SIGNER_MISMATCH", `The ${what} is signed by someone else`, {
      details: `expected ${options.signer}, got ${outer.signer}`,
    });
  }
  const signedBytes = canonicalBytes(outer.payload, { source });
  if (!verifySignature(outer.kind, signedBytes, fromHex(outer.signature, 64), publicKey)) {
    throw sourceError(source, "SIGNATURE_INVALID", `The ${what} signature does not verify`, {
      details: `signer ${outer.signer}`,
    });
  }
  const payload = validate(options.schema, outer.payload, {
    code: options.payloadCode ?? "PAYLOAD_INVALID",
    what,
    source,
  });
  if (!Buffer.from(canonicalBytes(payload, { source })).equals(Buffer.from(signedBytes))) {
    throw sourceError(source, options.payloadCode ?? "PAYLOAD_INVALID", `The ${what} is not in normal form`, {
      details: "validation changed the signed payload",
    });
  }
  return { kind: outer.kind, payload, signer: outer.signer, signature: outer.signature };
}

/** The wire bytes of an envelope (its JCS encoding). */
export function encodeEnvelope(envelope: SignedEnvelope): Uint8Array {
  return canonicalBytes(envelope);
}

/** Options of `decodeEnvelope`: those of `verifyEnvelope` plus the byte limit. */
export interface DecodeEnvelopeOptions<S extends z.ZodType> extends VerifyEnvelopeOptions<S> {
  /** Largest accepted input, checked before parsing. Default `MAX_ENVELOPE_BYTES`. */
  maxBytes?: number;
}

/**
 * Parses and verifies envelope bytes (byte limit first, then JSON, then `verifyEnvelope`).
 *
 * @example
 * const env = decodeEnvelope(bytes, { kind: "commitment", schema: commitmentSchema, maxBytes: 4096 });
 */
export function decodeEnvelope<S extends z.ZodType>(
  bytes: Uint8Array,
  options: DecodeEnvelopeOptions<S>,
): SignedEnvelope<z.output<S>> {
  const value = parseJsonBytes(bytes, {
    maxBytes: options.maxBytes ?? MAX_ENVELOPE_BYTES,
    what: "signed envelope",
    source: options.source ?? "peer",
  });
  return verifyEnvelope(value, options);
}
