/**
 * Maps what golem-js throws to Airqube's error classes, by who is at fault, keeping the original as `cause`.
 */
import {
  GolemAbortError,
  GolemConfigError,
  GolemMarketError,
  GolemPaymentError,
  GolemPlatformError,
  GolemTimeoutError,
  GolemUserError,
  GolemWorkError,
} from "@golem-sdk/golem-js";
import { AirqubeError, InternalError, PeerError, PlatformError, TimeoutError, UserError } from "../qube/index.js";

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Wraps a golem-js (or any) error. `code` names the step that failed; `signal` tells an abort by the caller
 * from one golem-js raised itself.
 *
 * @example
 * try { await exe.run(...) } catch (e) { throw fromGolemError(e, "GOLEM_RUN_FAILED", "The provider could not run the qube", signal) }
 */
export function fromGolemError(error: unknown, code: string, shortMessage: string, signal?: AbortSignal): AirqubeError {
  if (error instanceof AirqubeError) return error;
  const details = messageOf(error);
  if (signal?.aborted) return new TimeoutError("ABORTED", "The Golem operation was aborted", { details, cause: error });
  if (error instanceof GolemTimeoutError || (error instanceof Error && error.name === "TimeoutError"))
    return new TimeoutError(`${code}_TIMEOUT`, `${shortMessage} in time`, { details, cause: error });
  if (error instanceof GolemAbortError)
    return new TimeoutError(`${code}_ABORTED`, shortMessage, { details, cause: error });
  if (error instanceof GolemConfigError || error instanceof GolemUserError)
    return new UserError(code, shortMessage, { details, cause: error });
  if (error instanceof GolemWorkError || error instanceof GolemMarketError)
    return new PeerError(code, shortMessage, { details, cause: error });
  if (error instanceof GolemPlatformError || error instanceof GolemPaymentError)
    return new PlatformError(code, shortMessage, { details, cause: error });
  if (error instanceof Error) return new PlatformError(code, shortMessage, { details, cause: error });
  return new InternalError(code, shortMessage, { details, cause: error });
}
