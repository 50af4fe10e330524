/**
 * The probe program's output, parsed as hostile input: one JSON object per line, each line and the line
 * count bounded before parsing, each object validated with zod, control characters removed from evidence.
 */
import { z } from "zod";
import { HARNESS_ROWS, PROBE_COUNT } from "./catalog.js";

/** Limits on what the probe may print. */
export const OUTPUT_LIMITS = {
  /** Bytes of stdout considered at all (the sandbox's own cap is set to the same). */
  maxBytes: 256 * 1024,
  /** Longest line accepted. */
  maxLineBytes: 4096,
  /** Most lines accepted. */
  maxLines: 256,
  /** Longest evidence kept. */
  maxEvidence: 2000,
} as const;

/** Every verdict a probe can give. */
export const VERDICTS = ["pass", "fail", "inconclusive", "skipped"] as const;
/** A probe's verdict: `pass` (the defence held), `fail` (it did not), `inconclusive` or `skipped`. */
export type Verdict = (typeof VERDICTS)[number];

/**
 * The phases of one suite run (main: rows 1-36 and 38-41; deadline: row 35; plant and check: row 37; on the
 * gvisor tier also cpu: row 35 measured from the host, and memory: rows 32-33, whose OOM kill ends the sandbox).
 */
export type ProbePhase = "main" | "deadline" | "plant" | "check" | "cpu" | "memory";

/** Validates one verdict line of the probe program. */
export const probeLineSchema = z
  .object({
    id: z
      .number()
      .int()
      .min(1)
      .max(PROBE_COUNT)
      .refine((id) => !HARNESS_ROWS.includes(id), "a row the harness judges"),
    phase: z.enum(["deadline", "plant", "check", "cpu", "memory"]).optional(),
    verdict: z.enum(VERDICTS),
    evidence: z.string().max(OUTPUT_LIMITS.maxEvidence),
    ms: z.number().int().min(0).max(3_600_000).optional(),
  })
  .strict();

/**
 * One verdict line the probe program printed, validated: the probe's row `id`, its `phase` (absent in the
 * main phase), the `verdict`, the `evidence` (bounded) and the time it took in `ms`.
 */
export type ProbeLine = z.infer<typeof probeLineSchema>;

/**
 * The main phase's one facts line: raw observations (`key=value;...`, no verdict) from which the harness checks
 * that a weakening really changed the sandbox. Keys and values are short and plain.
 */
export const probeFactsSchema = z.object({ facts: z.string().max(OUTPUT_LIMITS.maxEvidence) }).strict();

/** Parses a facts string into a map: keys `[a-z_]{1,24}`, values `[A-Za-z0-9_,.-]{0,64}`; other pairs dropped. */
export function parseFacts(text: string): Map<string, string> {
  const facts = new Map<string, string>();
  for (const pair of text.split(";").slice(0, 64)) {
    const match = /^([a-z_]{1,24})=([A-Za-z0-9_,.-]{0,64})$/.exec(pair);
    if (match && !facts.has(match[1]!)) facts.set(match[1]!, match[2]!);
  }
  return facts;
}

/** What one run printed, after validation. */
export interface ParsedOutput {
  /** Valid lines by id (the first one; duplicates are listed in `duplicates`). */
  lines: Map<number, ProbeLine>;
  /** Ids that appeared more than once: a well-behaved probe never does this. */
  duplicates: Set<number>;
  /** Lines dropped: too long, not JSON, or not matching the schema. */
  rejected: number;
  /** Whether output was cut at a limit. */
  truncated: boolean;
  /** The main phase's facts line (the first one), when the probe printed one. */
  facts?: Map<string, string>;
}

/** Removes control characters so evidence is safe to print and to embed in XML. */
export function cleanEvidence(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\ufffe\uffff]/g, " ").slice(0, OUTPUT_LIMITS.maxEvidence);
}

/**
 * Parses the probe program's stdout.
 *
 * @example
 * const { lines } = parseProbeOutput('{"id":1,"verdict":"pass","evidence":"EROFS"}\n');
 */
export function parseProbeOutput(stdout: string, phase: ProbePhase = "main"): ParsedOutput {
  const result: ParsedOutput = { lines: new Map(), duplicates: new Set(), rejected: 0, truncated: false };
  let text = stdout;
  if (Buffer.byteLength(text) > OUTPUT_LIMITS.maxBytes) {
    text = Buffer.from(text).subarray(0, OUTPUT_LIMITS.maxBytes).toString("utf8");
    result.truncated = true;
  }
  const rawLines = text.split("\n");
  if (rawLines.length > OUTPUT_LIMITS.maxLines + 1) result.truncated = true;
  for (const raw of rawLines.slice(0, OUTPUT_LIMITS.maxLines)) {
    const line = raw.trim();
    if (line === "") continue;
    if (Buffer.byteLength(line) > OUTPUT_LIMITS.maxLineBytes) {
      result.rejected++;
      continue;
    }
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      result.rejected++;
      continue;
    }
    const facts = phase === "main" ? probeFactsSchema.safeParse(json) : undefined;
    if (facts?.success) {
      if (result.facts) result.rejected++;
      else result.facts = parseFacts(facts.data.facts);
      continue;
    }
    const parsed = probeLineSchema.safeParse(json);
    if (!parsed.success || (parsed.data.phase ?? "main") !== phase) {
      result.rejected++;
      continue;
    }
    const value = { ...parsed.data, evidence: cleanEvidence(parsed.data.evidence) };
    if (result.lines.has(value.id)) result.duplicates.add(value.id);
    else result.lines.set(value.id, value);
  }
  return result;
}
