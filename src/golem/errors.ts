/**
 * Maps what golem-js throws to Airqube's error classes, by who is at fault, keeping the original as `cause`
 * and golem-js's class and module code (`MarketErrorCode`, `WorkErrorCode`, ...) at the head of `details`.
 *
 * | golem-js                                                          | Airqube                                   |
 * | ----------------------------------------------------------------- | ----------------------------------------- |
 * | GolemTimeoutError (and any `TimeoutError`)                        | TimeoutError `<code>_TIMEOUT`             |
 * | GolemAbortError                                                   | TimeoutError `<code>_ABORTED`             |
 * | GolemConfigError, GolemUserError                                  | UserError `<code>`                        |
 * | GolemWorkError, GolemMarketError (the provider's side)            | PeerError `<code>`                        |
 * | GolemPaymentError, GolemNetworkError, GolemPlatformError,         | PlatformError `<code>`                    |
 * | GolemInternalError, GolemReputationError and any other GolemError |                                           |
 * | any other Error                                                   | PlatformError `<code>`                    |
 * | anything else thrown                                              | InternalError `<code>`                    |
 *
 * An abort by the caller's `signal` is TimeoutError `ABORTED` whatever golem-js threw.
 */
import {
  GolemAbortError,
  GolemConfigError,
  GolemError,
  GolemInternalError,
  GolemMarketError,
  GolemModuleError,
  GolemNetworkError,
  GolemPaymentError,
  GolemPlatformError,
  GolemTimeoutError,
  GolemUserError,
  GolemWorkError,
} from "@golem-sdk/golem-js";
import { AirqubeError, InternalError, PeerError, PlatformError, TimeoutError, UserError } from "../qube/index.js";

/** Who is at fault for each golem-js error class, most specific first (the mapper takes the first match). */
export const GOLEM_ERROR_FAULTS: ReadonlyArray<
  readonly [abstract new (...args: never[]) => Error, "timeout" | "aborted" | "user" | "peer" | "platform"]
> = [
  [GolemTimeoutError, "timeout"],
  [GolemAbortError, "aborted"],
  [GolemConfigError, "user"],
  [GolemUserError, "user"],
  [GolemWorkError, "peer"],
  [GolemMarketError, "peer"],
  [GolemPaymentError, "platform"],
  [GolemNetworkError, "platform"],
  [GolemPlatformError, "platform"],
  [GolemInternalError, "platform"],
  // GolemReputationError (not exported by golem-js) and any future module error
  [GolemModuleError as unknown as abstract new (...args: never[]) => Error, "platform"],
  [GolemError, "platform"],
];

function detailsOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const golem = GOLEM_ERROR_FAULTS.find(([cls]) => error instanceof cls);
  if (!golem) return error.message;
  const code = (error as { code?: unknown }).code;
  const previous = (error as { previous?: unknown }).previous;
  const head = `${error.constructor.name}${typeof code === "string" ? ` ${code}` : ""}`;
  const tail = previous instanceof Error && !error.message.includes(previous.message) ? ` (${previous.message})` : "";
  return `${head}: ${error.message}${tail}`.slice(0, 2000);
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
  const details = detailsOf(error);
  if (signal?.aborted) return new TimeoutError("ABORTED", "The Golem operation was aborted", { details, cause: error });
  if (error instanceof Error && !(error instanceof GolemError) && error.name === "TimeoutError")
    return new TimeoutError(`${code}_TIMEOUT`, `${shortMessage} in time`, { details, cause: error });
  const fault = error instanceof Error ? GOLEM_ERROR_FAULTS.find(([cls]) => error instanceof cls)?.[1] : undefined;
  switch (fault) {
    case "timeout":
      return new TimeoutError(`${code}_TIMEOUT`, `${shortMessage} in time`, { details, cause: error });
    case "aborted":
      return new TimeoutError(`${code}_ABORTED`, shortMessage, { details, cause: error });
    case "user":
      return new UserError(code, shortMessage, { details, cause: error });
    case "peer":
      return new PeerError(code, shortMessage, { details, cause: error });
    case "platform":
      return new PlatformError(code, shortMessage, { details, cause: error });
  }
  if (error instanceof Error) return new PlatformError(code, shortMessage, { details, cause: error });
  return new InternalError(code, shortMessage, { details, cause: error });
}
