/**
 * Picks the error class by who is at fault: the same decoder serves a user's own files (UserError) and
 * bytes from a remote peer (PeerError).
 */
import { type AirqubeError, type AirqubeErrorOptions, PeerError, UserError } from "./errors.js";

/** Who supplied the data being checked. */
export type Source = "user" | "peer";

/** A UserError or PeerError with `code`, depending on `source`. */
export function sourceError(
  source: Source,
  code: string,
  shortMessage: string,
  options?: AirqubeErrorOptions,
): AirqubeError {
  return source === "user" ? new UserError(code, shortMessage, options) : new PeerError(code, shortMessage, options);
}
