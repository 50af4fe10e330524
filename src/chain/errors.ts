/**
 * Errors of the chain bindings: one class, `ChainError`, whose `code` says what happened and whose fault says
 * who is to blame. A reverted transaction carries the decoded custom error (`errorName`, `errorArgs`).
 */
import { AirqubeError, type AirqubeErrorOptions, type Fault } from "../qube/errors.js";

/** The codes a `ChainError` can carry. */
export type ChainErrorCode =
  | "CHAIN_UNREACHABLE"
  | "CHAIN_REVERTED"
  | "CHAIN_TIMEOUT"
  | "CHAIN_INVALID_RESPONSE"
  | "CHAIN_START_FAILED";

const FAULTS: Record<ChainErrorCode, Fault> = {
  CHAIN_UNREACHABLE: "platform",
  CHAIN_REVERTED: "user",
  CHAIN_TIMEOUT: "timeout",
  CHAIN_INVALID_RESPONSE: "peer",
  CHAIN_START_FAILED: "platform",
};

export interface ChainErrorOptions extends AirqubeErrorOptions {
  /** The decoded custom error of a revert, e.g. `AirqubeEscrowTooEarly`. */
  errorName?: string;
  /** Its arguments, in declaration order (bigints for integers, hex strings for bytes and addresses). */
  errorArgs?: readonly unknown[];
}

/**
 * A chain operation failed.
 *
 * @example
 * try { await client.settle(job, openings); }
 * catch (e) { if (e instanceof ChainError && e.errorName === "AirqubeEscrowTooEarly") retryLater(e.errorArgs[1]); }
 */
export class ChainError extends AirqubeError {
  override readonly code: ChainErrorCode;
  readonly errorName: string | undefined;
  readonly errorArgs: readonly unknown[];

  constructor(code: ChainErrorCode, shortMessage: string, options: ChainErrorOptions = {}) {
    super(FAULTS[code], code, shortMessage, options);
    this.code = code;
    this.errorName = options.errorName;
    this.errorArgs = options.errorArgs ?? [];
  }
}
