/**
 * The outcome of a qube as its providers report it: how the process ended (exit code, time-out, OOM, killed),
 * which declared outputs it never wrote, and the tail of its logs. Providers vote on the outputs root *and*
 * on how the process ended, so that "verified" means that a quorum agrees on the whole outcome.
 */
import { isPathUnder, type OUTCOMES, type OutputRefusal } from "../qube/index.js";
import type { ProviderAnswer } from "./api.js";

/** How the qube's process ended; "unknown" when the backend could not tell (Golem without an exit status). */
export type OutcomeKind = (typeof OUTCOMES)[number] | "unknown";

/** What happened to a qube, as the agreeing providers report it. */
export interface QubeOutcome {
  kind: OutcomeKind;
  /** The exit code when `kind` is "exited", else null. */
  exitCode: number | null;
  /** Why the sandbox refused the qube's outputs, when `kind` is "outputs-refused". */
  outputRefusal?: OutputRefusal;
  /** Declared outputs (spec paths under /output) under which the qube wrote no file, sorted. */
  missingOutputs: string[];
  /** The last lines of the provider's stderr (not covered by the outputs root: unverified). */
  stderrTail: string;
}

/** Largest stderr tail kept in a result, in characters. */
export const STDERR_TAIL_CHARS = 2000;

/** How one answer says the process ended: from its signed statement, else from its exit code. */
export function endOf(answer: Pick<ProviderAnswer, "statement" | "exitCode">): {
  kind: OutcomeKind;
  exitCode: number | null;
  outputRefusal?: OutputRefusal;
} {
  const statement = answer.statement?.payload;
  if (statement)
    return {
      kind: statement.outcome,
      exitCode: statement.exitCode,
      ...(statement.outputRefusal ? { outputRefusal: statement.outputRefusal } : {}),
    };
  if (answer.exitCode === null || answer.exitCode < 0) return { kind: "unknown", exitCode: null };
  return { kind: "exited", exitCode: answer.exitCode };
}

/**
 * What providers vote on: the outputs root and how the process ended. Two honest providers of a deterministic
 * qube give the same key; a provider claiming another exit status dissents.
 *
 * @example
 * voteKey({ outputsRoot: "sha256:ab…", exitCode: 3, statement: undefined }); // "sha256:ab…#exited:3"
 * // refused outputs vote on the refusal: "sha256:…#outputs-refused:OUTPUT_TOO_MANY_FILES"
 */
export function voteKey(answer: Pick<ProviderAnswer, "outputsRoot" | "statement" | "exitCode">): string {
  const end = endOf(answer);
  return `${answer.outputsRoot}#${end.kind}:${end.exitCode ?? end.outputRefusal ?? "-"}`;
}

/** Declared outputs under which none of `files` lies. */
export function missingOutputs(declared: readonly string[], files: readonly { path: string }[]): string[] {
  return declared.filter((output) => !files.some((f) => isPathUnder(f.path, output))).sort();
}

/** The last `max` characters of a log, starting at a line boundary when one is near. */
export function logTail(text: string, max = STDERR_TAIL_CHARS): string {
  const trimmed = text.trimEnd();
  if (trimmed.length <= max) return trimmed;
  const cut = trimmed.slice(-max);
  const newline = cut.indexOf("\n");
  return newline >= 0 && newline < max / 2 ? cut.slice(newline + 1) : cut;
}

/**
 * The outcome of an answer for a qube declaring `declared` outputs.
 *
 * @example
 * const outcome = outcomeOf(winner, spec.spec.outputs); // { kind: "exited", exitCode: 3, missingOutputs: [], … }
 */
export function outcomeOf(
  answer: Pick<ProviderAnswer, "statement" | "exitCode" | "files" | "stderr">,
  declared: readonly string[],
): QubeOutcome {
  const end = endOf(answer);
  return {
    ...end,
    // refused outputs are not missing: the qube wrote them, the sandbox refused to send them
    missingOutputs: end.kind === "outputs-refused" ? [] : missingOutputs(declared, answer.files),
    stderrTail: logTail(answer.stderr),
  };
}
