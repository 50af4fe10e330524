/** Errors of the exchange protocol that callers act on (a refusal before anything is locked, a cancel). */
import { PeerError, TimeoutError } from "../../qube/index.js";

/**
 * A provider answered an admission query with a refusal. The error's `code` is the provider's own reason code
 * (`IMAGE_UNAVAILABLE`, `LIMITS_EXCEEDED`, `ESCROW_REQUIRED`, `PRICE_TOO_LOW`, `AT_CAPACITY` ...), checked
 * to be an upper-case identifier; `reason` is its explanation (untrusted text, bounded).
 */
/** The message of every admission refusal (its code is the provider's reason code). */
export const ADMISSION_REFUSED = "The provider would not admit the qube";

export class AdmissionRefusedError extends PeerError {
  readonly refusal: { code: string; reason: string };
  constructor(code: string, reason: string) {
    super(code, ADMISSION_REFUSED, { details: reason });
    this.refusal = { code, reason };
  }
}

/** The requestor cancelled the qube (Ctrl-C, or it no longer needs this provider's answer). */
export class QubeCancelledError extends TimeoutError {
  constructor(reason: string) {
    super("QUBE_CANCELLED", "The requestor cancelled the qube", { details: reason });
  }
}
