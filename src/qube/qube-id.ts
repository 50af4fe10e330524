/**
 * The qube id: `"aq1" + hex(SHA-256(JCS(spec)))`. "aq" names Airqube, "1" the id scheme (SHA-256 over
 * the RFC 8785 bytes of a v1 spec); a later scheme takes a new digit, so ids never collide across schemes.
 */
import { createHash } from "node:crypto";
import { fromHex } from "./bytes.js";
import { canonicalBytes, parseJsonBytes } from "./canonical.js";
import { type Source, sourceError } from "./fault.js";
import {
  checkExpiry,
  checkSpecSize,
  MAX_SPEC_BYTES,
  type ParseSpecOptions,
  type QubeSpec,
  qubeSpecSchema,
} from "./spec.js";
import { validate } from "./validate.js";

/** The id prefix of scheme 1. */
export const QUBE_ID_PREFIX = "aq1";

/** The canonical bytes of a spec (what the id hashes and the requestor signs). */
export function encodeQubeSpec(spec: QubeSpec): Uint8Array {
  return canonicalBytes(spec);
}

/**
 * The qube id of a validated spec.
 *
 * @example
 * qubeIdOf(spec); // "aq1" + 64 hex
 */
export function qubeIdOf(spec: QubeSpec): string {
  return qubeIdOfBytes(encodeQubeSpec(spec));
}

/** The qube id of a spec's canonical bytes. */
export function qubeIdOfBytes(canonical: Uint8Array): string {
  return QUBE_ID_PREFIX + createHash("sha256").update(canonical).digest("hex");
}

/** The 32 digest bytes inside a qube id; throws `QUBE_ID_INVALID`. */
export function qubeIdBytes(qubeId: string, source: Source = "user"): Uint8Array {
  if (typeof qubeId !== "string" || !/^aq1[0-9a-f]{64}$/.test(qubeId)) {
    throw sourceError(source, "QUBE_ID_INVALID", 'A qube id is "aq1" and 64 lower-case hex');
  }
  return fromHex(qubeId.slice(QUBE_ID_PREFIX.length), 32);
}

/** Options of {@link decodeQubeSpec}: those of parsing a spec, plus a byte limit. */
export interface DecodeSpecOptions extends ParseSpecOptions {
  /** Largest accepted input, checked before parsing. Default `MAX_SPEC_BYTES`. */
  maxBytes?: number;
}

/**
 * Parses spec bytes (JSON, canonical or not) into a validated spec and its id. The id is always computed
 * over the canonical re-encoding, so whitespace or key order in the input never changes it.
 * Throws `TOO_LARGE`, `JSON_INVALID`, `SPEC_INVALID`, `SPEC_EXPIRED` (PeerError unless `source: "user"`).
 *
 * @example
 * const { spec, id } = decodeQubeSpec(bytes, { now: new Date() });
 */
export function decodeQubeSpec(bytes: Uint8Array, options: DecodeSpecOptions = {}): { spec: QubeSpec; id: string } {
  const source = options.source ?? "peer";
  const value = parseJsonBytes(bytes, { maxBytes: options.maxBytes ?? MAX_SPEC_BYTES, what: "qube spec", source });
  const canonical = canonicalBytes(value, { source });
  checkSpecSize(canonical, source);
  const spec = validate(qubeSpecSchema, value, { code: "SPEC_INVALID", what: "qube spec", source });
  if (!Buffer.from(canonicalBytes(spec, { source })).equals(Buffer.from(canonical))) {
    throw sourceError(source, "SPEC_INVALID", "The qube spec is invalid", { details: "validation changed the spec" });
  }
  if (options.now !== undefined) checkExpiry(spec, options.now, source);
  return { spec, id: qubeIdOfBytes(canonical) };
}
