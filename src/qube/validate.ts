/**
 * Runs a zod schema at a trust boundary and turns its issues into one typed error whose details name
 * every failing field by path (e.g. `limits.memoryBytes: Too big: expected number to be <=68719476736`).
 */
import type { z } from "zod";
import { type Source, sourceError } from "./fault.js";

/** At most this many issues are listed in an error's details. */
const MAX_LISTED_ISSUES = 8;

/** Options of {@link validate}. */
export interface ValidateOptions {
  /** Error code on failure, e.g. "SPEC_INVALID". */
  code: string;
  /** What is validated, for the message, e.g. "qube spec". */
  what: string;
  /** Who supplied the value. Default "peer". */
  source?: Source;
}

/**
 * `schema.parse(value)`, but failures become a UserError/PeerError with a path-bearing message.
 *
 * @example
 * validate(qubeSpecSchema, json, { code: "SPEC_INVALID", what: "qube spec", source: "user" });
 */
export function validate<S extends z.ZodType>(schema: S, value: unknown, options: ValidateOptions): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw sourceError(options.source ?? "peer", options.code, `The ${options.what} is invalid`, {
    details: formatIssues(result.error.issues),
    cause: result.error,
  });
}

/** "path: message; path: message" for the first few issues. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  const listed = issues.slice(0, MAX_LISTED_ISSUES).map((issue) => {
    const path = issue.path.length === 0 ? "(root)" : issue.path.map(formatSegment).join("").replace(/^\./, "");
    const nested = issue.code === "invalid_key" || issue.code === "invalid_element" ? issue.issues[0] : undefined;
    return nested ? `${path}: ${issue.message}: ${nested.message}` : `${path}: ${issue.message}`;
  });
  if (issues.length > MAX_LISTED_ISSUES) listed.push(`and ${issues.length - MAX_LISTED_ISSUES} more`);
  return listed.join("; ");
}

function formatSegment(segment: PropertyKey): string {
  return typeof segment === "number" ? `[${segment}]` : `.${String(segment)}`;
}
