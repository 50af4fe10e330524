/** Who is at fault for an error: the caller, a remote peer, the platform, a deadline, or Airqube itself. */
export type Fault = "user" | "peer" | "platform" | "timeout" | "internal";

/** Optional parts of an {@link AirqubeError}. */
export interface AirqubeErrorOptions {
  /** More detail, appended to `message` after a colon. */
  details?: string;
  /** The error this one wraps. */
  cause?: unknown;
}

/**
 * The one error base of Airqube. Every error carries a stable string `code`, a one-line `shortMessage`
 * that a user can act on, optional `details`, and the `cause` it wraps. Subclasses say who is at fault
 * ({@link UserError}, {@link PeerError}, {@link PlatformError}, {@link TimeoutError}, {@link InternalError}).
 *
 * @example
 * throw new UserError("SPEC_INVALID", "The qube spec is invalid", { details: "limits.memoryBytes: too big" });
 *
 * @example
 * try {
 *   await aq.run(description);
 * } catch (error) {
 *   if (error instanceof AirqubeError && error.fault === "user") console.error(error.shortMessage);
 *   else throw error;
 * }
 */
export class AirqubeError extends Error {
  /** Stable machine-readable code, e.g. `"SPEC_INVALID"`. */
  readonly code: string;
  /** One line saying what went wrong, without the details. */
  readonly shortMessage: string;
  /** More detail, if any. */
  readonly details: string | undefined;
  /** Who is at fault (set by the subclass). */
  readonly fault: Fault;

  constructor(fault: Fault, code: string, shortMessage: string, options: AirqubeErrorOptions = {}) {
    super(options.details ? `${shortMessage}: ${options.details}` : shortMessage, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.shortMessage = shortMessage;
    this.details = options.details;
    this.fault = fault;
  }

  /** A plain object for `--json` output and logs (never includes key material). */
  toJSON(): { code: string; fault: Fault; message: string; details?: string } {
    return {
      code: this.code,
      fault: this.fault,
      message: this.shortMessage,
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

/** The caller asked for something invalid (bad spec, bad flag, bad config). */
export class UserError extends AirqubeError {
  constructor(code: string, shortMessage: string, options?: AirqubeErrorOptions) {
    super("user", code, shortMessage, options);
  }
}

/** A remote party (provider, requestor, peer) or a sandboxed qube sent something invalid or hostile. */
export class PeerError extends AirqubeError {
  constructor(code: string, shortMessage: string, options?: AirqubeErrorOptions) {
    super("peer", code, shortMessage, options);
  }
}

/** The platform under us failed (Docker, QEMU, the chain, the file system). */
export class PlatformError extends AirqubeError {
  constructor(code: string, shortMessage: string, options?: AirqubeErrorOptions) {
    super("platform", code, shortMessage, options);
  }
}

/** A deadline passed or the operation was aborted. */
export class TimeoutError extends AirqubeError {
  constructor(code: string, shortMessage: string, options?: AirqubeErrorOptions) {
    super("timeout", code, shortMessage, options);
  }
}

/** A bug in Airqube itself. */
export class InternalError extends AirqubeError {
  constructor(code: string, shortMessage: string, options?: AirqubeErrorOptions) {
    super("internal", code, shortMessage, options);
  }
}

/** Wraps anything caught into an AirqubeError, keeping the original as `cause`. */
export function toAirqubeError(error: unknown, fallbackCode = "INTERNAL"): AirqubeError {
  if (error instanceof AirqubeError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new InternalError(fallbackCode, "Unexpected error", { details: message, cause: error });
}
