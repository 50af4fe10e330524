/**
 * The qube exchange protocol: propose → accept → inputs → commit → reveal-request → reveal + outputs. A stream
 * may instead open with an admission query (query → admissible | refuse), asked before any money is locked;
 * after the proposal the requestor may send `cancel` at any point and the provider stops the qube.
 */
export const EXCHANGE_PROTOCOL = "/airqube/exchange/1.0.0";
/** Largest frame: a signed spec (1 MiB) or one sealed chunk, whichever is larger. */
export const MAX_FRAME_BYTES = 1024 * 1024 + 4096;
/** How long each side waits for a single message of the negotiation. */
export const NEGOTIATION_TIMEOUT_MS = 15_000;
/** How long a single input or output frame may take. */
export const TRANSFER_FRAME_TIMEOUT_MS = 30_000;
/** Extra time a provider gets beyond the qube's wall time to commit. */
export const COMMIT_GRACE_MS = 30_000;
/** How long a provider waits, after committing, for the reveal request. */
export const REVEAL_WAIT_MS = 10 * 60_000;
/** Largest stdout/stderr excerpt returned with a reveal (unverified; the outputs are what is verified). */
export const MAX_LOG_EXCERPT = 64 * 1024;
/** Plaintext bytes per sealed chunk on the wire. */
export const SEAL_CHUNK_BYTES = 64 * 1024;
/** How long the requestor spends telling a provider that it cancels (the cancel frame and closing the stream). */
export const CANCEL_TIMEOUT_MS = 2_000;
