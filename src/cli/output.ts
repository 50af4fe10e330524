/** Shared CLI output helpers: JSON printing and the one-line error report with exit code 125. */
import { AirqubeError, toAirqubeError } from "../qube/errors.js";

export const SANDBOX_ERROR_EXIT = 125;

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Prints an error as one line (or a JSON object with `--json`) and returns the exit code to use. */
export function reportError(error: unknown, json: boolean): number {
  const e = error instanceof AirqubeError ? error : toAirqubeError(error);
  if (json) process.stdout.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
  process.stderr.write(`airqube: ${e.message} [${e.code}]\n`);
  if (process.env.AIRQUBE_DEBUG && e.cause) process.stderr.write(`${String((e.cause as Error)?.stack ?? e.cause)}\n`);
  return SANDBOX_ERROR_EXIT;
}
