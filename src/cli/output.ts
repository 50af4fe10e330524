/** Shared CLI output helpers: JSON printing and the one-line error report with exit code 125. */
import { AirqubeError, toAirqubeError } from "../qube/errors.js";
import { printable } from "../qube/printable.js";
import { AIRQUBE_ERROR_EXIT } from "./exit-status.js";

/** Exit status when Airqube itself (not the qube) failed; see `exit-status.ts`. */
export const SANDBOX_ERROR_EXIT = AIRQUBE_ERROR_EXIT;

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** The chain of causes under an error, outermost first (bounded, cycles cut). */
export function causesOf(error: unknown, max = 8): unknown[] {
  const out: unknown[] = [];
  let cause = (error as { cause?: unknown } | undefined)?.cause;
  while (cause !== undefined && cause !== null && out.length < max && !out.includes(cause)) {
    out.push(cause);
    cause = (cause as { cause?: unknown }).cause;
  }
  return out;
}

/**
 * Prints an error as one line (or a JSON object with `--json`) and returns the exit code to use. With
 * `AIRQUBE_DEBUG=1` every cause follows, with its stack.
 */
export function reportError(error: unknown, json: boolean): number {
  const e = error instanceof AirqubeError ? error : toAirqubeError(error);
  if (json) process.stdout.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
  // an error's details can quote a peer, a provider or a file: printed without their control characters
  process.stderr.write(`airqube: ${printable(e.message, 2000)} [${printable(e.code, 64)}]\n`);
  if (process.env.AIRQUBE_DEBUG) {
    for (const cause of causesOf(e)) {
      const code = cause instanceof AirqubeError ? ` [${cause.code}]` : "";
      const text = cause instanceof Error ? (cause.stack ?? cause.message) : String(cause);
      process.stderr.write(`  caused by${code}: ${text}\n`);
    }
  }
  return SANDBOX_ERROR_EXIT;
}
