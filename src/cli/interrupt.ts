/**
 * Ctrl-C during a command that dispatches qubes: the first SIGINT aborts the command's signal (the requestor
 * then tells every provider to stop the qube and journals it as interrupted); the command prints one line and
 * exits 130, as a shell does for a process ended by SIGINT. A second Ctrl-C ends the process at once.
 */
import { TimeoutError } from "../qube/errors.js";

/** The exit status of a command interrupted by Ctrl-C (128 + SIGINT). */
export const INTERRUPTED_EXIT = 130;

/** The one line printed on Ctrl-C. */
export const INTERRUPTED_LINE = "airqube: interrupted (Ctrl-C); providers were told to stop the qube";

/** The reason the command's signal is aborted with. */
export function interruptedError(): TimeoutError {
  return new TimeoutError("INTERRUPTED", "Interrupted (Ctrl-C)", {
    details: "providers were told to stop the qube",
  });
}

/**
 * A SIGINT listener that aborts `controller` with {@link interruptedError} (install it with `process.once`,
 * so that a second Ctrl-C gets Node's default behaviour and ends the process).
 *
 * @example
 * const onSignal = interruptHandler(controller);
 * process.once("SIGINT", onSignal);
 */
export function interruptHandler(controller: AbortController): () => void {
  return () => controller.abort(interruptedError());
}

/**
 * Reports an interrupted command: the line on stderr (and, with `--json`, an `interrupted` error object on
 * stdout), returning {@link INTERRUPTED_EXIT}.
 */
export function reportInterrupted(json: boolean): number {
  if (json) process.stdout.write(`${JSON.stringify({ error: interruptedError().toJSON() })}\n`);
  process.stderr.write(`${INTERRUPTED_LINE}\n`);
  return INTERRUPTED_EXIT;
}
