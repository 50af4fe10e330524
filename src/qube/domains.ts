/**
 * Domain separation for signatures. Every Airqube signature is over
 * `utf8("airqube/<kind>/v1") || 0x00 || canonical bytes`, so a signature made for one kind of message
 * can never be accepted as another kind.
 *
 * Kinds are lower-case words with dashes. The kinds below are the ones the protocol defines today; later
 * modules may use further kinds of the same shape without registering them here (the prefix alone
 * separates them), but should add them to this list when they become part of the protocol.
 */
import { concatBytes, utf8 } from "./bytes.js";
import { UserError } from "./errors.js";

/** The signature kinds defined by the protocol. */
export const SIGNATURE_KINDS = [
  "qube-spec",
  "offer",
  "agreement",
  "result-statement",
  "commitment",
  "reveal",
  "probe-report",
  "probe-summary",
] as const;

/** One of the protocol's signature kinds. */
export type KnownSignatureKind = (typeof SIGNATURE_KINDS)[number];

/** The shape every kind must have: it cannot contain "/" or 0x00, so prefixes never collide. */
export const SIGNATURE_KIND_RE = /^[a-z][a-z0-9-]{0,62}$/;

/** The domain string of a kind, e.g. "airqube/offer/v1". */
export function signatureDomain(kind: string): string {
  if (!SIGNATURE_KIND_RE.test(kind)) {
    throw new UserError("KIND_INVALID", "Invalid signature kind", { details: JSON.stringify(kind) });
  }
  return `airqube/${kind}/v1`;
}

/**
 * The exact bytes an Airqube signature covers.
 *
 * @example
 * signingMessage("offer", canonicalBytes(offer)); // utf8("airqube/offer/v1") || 0x00 || canonical
 */
export function signingMessage(kind: string, canonical: Uint8Array): Uint8Array {
  return concatBytes(utf8(signatureDomain(kind)), new Uint8Array([0]), canonical);
}
