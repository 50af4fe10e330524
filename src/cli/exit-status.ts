/**
 * The exit status of `airqube run` and `airqube sandbox run`, as `docker run` gives it: the qube's own exit
 * code, a distinct status when the qube timed out, was killed or left a declared output unwritten, and 125 when
 * Airqube itself failed (no provider, no consensus, the chain, the sandbox).
 *
 * | status | meaning |
 * |---|---|
 * | 0-255 | the qube's exit code (126 not executable, 127 command not found, 128+n killed by signal n) |
 * | 123 | the qube's outputs were not delivered: it exited 0 but a declared `--out` output was never written, or the sandbox refused its outputs for breaking an output limit or rule (the line names it, e.g. `OUTPUT_TOO_MANY_FILES`) |
 * | 124 | the qube was killed at its `--timeout` (like timeout(1)) |
 * | 125 | Airqube failed: no provider, not enough providers, no consensus, chain, sandbox, bad input |
 * | 137 | the qube was killed at its memory limit (OOM) or by a signal Airqube could not name |
 */
import type { OutputRefusal } from "../qube/index.js";
import { printable } from "../qube/printable.js";
import type { QubeOutcome } from "../requestor/outcome.js";
import { OUTPUT_FAILURES } from "../sandbox/channel.js";

/** A refusal code with what it means, e.g. `OUTPUT_TOO_MANY_FILES (more files or directories than the limit)`. */
export function outputRefusalText(code: OutputRefusal | undefined): string {
  const known = Object.values(OUTPUT_FAILURES).find(([name]) => name === code);
  if (!known) return code ?? "reason not given";
  return `${known[0]} (${known[1]
    .replace(/^The qube's outputs /, "")
    .replace(/^An? /, "an ")
    .toLowerCase()})`;
}

export const OUTPUT_MISSING_EXIT = 123;
export const TIMEOUT_EXIT = 124;
export const AIRQUBE_ERROR_EXIT = 125;
export const KILLED_EXIT = 137;

const SIGNALS: Record<number, string> = { 1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 15: "SIGTERM" };

/** The exit status for a qube outcome (see the table above). */
export function exitStatusOf(outcome: Pick<QubeOutcome, "kind" | "exitCode" | "missingOutputs">): number {
  switch (outcome.kind) {
    case "outputs-refused":
      return OUTPUT_MISSING_EXIT;
    case "timeout":
      return TIMEOUT_EXIT;
    case "oom":
    case "killed":
      return KILLED_EXIT;
    case "unknown":
      return AIRQUBE_ERROR_EXIT;
    case "exited": {
      const code = outcome.exitCode ?? AIRQUBE_ERROR_EXIT;
      return code === 0 && outcome.missingOutputs.length > 0 ? OUTPUT_MISSING_EXIT : code;
    }
  }
}

/**
 * One phrase saying how the qube ended, e.g. `the qube exited with status 3`.
 *
 * @example
 * describeEnd({ kind: "timeout", exitCode: null }, { timeoutMs: 2000 }); // "the qube was killed at its 2 s time-out"
 */
export function describeEnd(
  outcome: Pick<QubeOutcome, "kind" | "exitCode" | "outputRefusal">,
  limits: { timeoutMs?: number } = {},
): string {
  switch (outcome.kind) {
    case "outputs-refused":
      return `the qube's outputs were refused, none delivered: ${outputRefusalText(outcome.outputRefusal)}`;
    case "timeout":
      return `the qube was killed at its ${limits.timeoutMs !== undefined ? `${limits.timeoutMs / 1000} s ` : ""}time-out`;
    case "oom":
      return "the qube was killed at its memory limit (out of memory)";
    case "killed":
      return "the qube was killed";
    case "unknown":
      return "the provider could not tell how the qube ended";
    case "exited": {
      const code = outcome.exitCode!;
      const hint =
        code === 127
          ? " (command not found)"
          : code === 126
            ? " (command not executable)"
            : code > 128
              ? ` (killed by signal ${code - 128}${SIGNALS[code - 128] ? ` ${SIGNALS[code - 128]}` : ""})`
              : "";
      return `the qube exited with status ${code}${hint}`;
    }
  }
}

/** Lines naming the declared outputs the qube never wrote (none when all were written). */
export function describeMissing(missing: readonly string[]): string[] {
  if (missing.length === 0) return [];
  return [
    `  declared output${missing.length === 1 ? "" : "s"} never written: ${missing.join(", ")} (OUTPUT_MISSING: expected under /output)`,
  ];
}

/** Most lines of a log tail shown in the human form (`--json` carries it whole). */
export const MAX_LOG_LINES = 200;

/**
 * A log tail as indented lines under a heading, or nothing when the log is empty. The text is a provider's or a
 * qube's: each line is made printable (no escape sequence reaches the terminal) and bounded, and at most
 * MAX_LOG_LINES lines (the last ones) are shown.
 */
export function describeLog(heading: string, text: string): string[] {
  const body = text.trimEnd();
  if (!body) return [];
  const lines = body.split("\n");
  const shown = lines.slice(-MAX_LOG_LINES).map((line) => `    ${printable(line, 1000)}`);
  const cut =
    lines.length > MAX_LOG_LINES ? [`    … ${lines.length - MAX_LOG_LINES} earlier lines (--json has them)`] : [];
  return [`  ${heading}:`, ...cut, ...shown];
}
