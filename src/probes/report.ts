/**
 * The escape suite's report: its JSON shape, summary, hash, exit status and JUnit XML.
 *
 * The report is deterministic in shape: every key is always present, probes are ordered by id, and the
 * hash covers a canonical JSON (RFC 8785) of the report minus its timing fields, `startedAt` and each
 * probe's `durationMs`. Evidence is kept in the hash: it is what a verifier reads.
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import { InternalError } from "../qube/errors.js";
import type { Tier } from "../sandbox/api.js";
import type { ProbeCategory, ProbeSeverity } from "./catalog.js";
import type { Verdict } from "./protocol.js";

/** One probe's line in the report. */
export interface ProbeResult {
  id: number;
  title: string;
  category: ProbeCategory;
  severity: ProbeSeverity;
  cves: string[];
  defence: string;
  verdict: Verdict;
  evidence: string;
  durationMs: number;
}

/** How many probes of a report gave each verdict. */
export interface ProbeSummary {
  pass: number;
  fail: number;
  inconclusive: number;
  skipped: number;
}

/** The report of one suite run. */
export interface ProbeReport {
  /** `airqube-escape-suite`, or `airqube-escape-suite (weakened: ...)` for a deliberately weakened run. */
  suite: string;
  /** The suite's version and the digest of the probe image it ran, e.g. `1.0.0+sha256:...`. */
  suiteVersion: string;
  tier: Tier;
  host: { kernel: string; runtime: string; runtimeVersion: string };
  startedAt: string;
  probes: ProbeResult[];
  summary: ProbeSummary;
}

/** The report fields that vary with timing only and are left out of the hash. */
export const TIMING_FIELDS = ["startedAt", "probes[].durationMs"] as const;

/** Counts verdicts. */
export function summarize(probes: readonly ProbeResult[]): ProbeSummary {
  const summary: ProbeSummary = { pass: 0, fail: 0, inconclusive: 0, skipped: 0 };
  for (const probe of probes) summary[probe.verdict]++;
  return summary;
}

/**
 * The report's hash: lower-case hex SHA-256 of the canonical JSON of the report without its timing fields.
 *
 * @example
 * const hash = reportHash(report); // published in a provider's offers
 */
export function reportHash(report: ProbeReport): string {
  const { startedAt: _startedAt, probes, ...rest } = report;
  const stable = { ...rest, probes: probes.map(({ durationMs: _durationMs, ...probe }) => probe) };
  const canonical = canonicalize(stable);
  if (canonical === undefined) throw new InternalError("REPORT_NOT_SERIALIZABLE", "The report cannot be hashed");
  return createHash("sha256").update(canonical).digest("hex");
}

/** 0 when nothing failed and nothing was inconclusive; 1 when anything failed; 2 when something was inconclusive. */
export function exitStatus(report: ProbeReport): 0 | 1 | 2 {
  if (report.summary.fail > 0) return 1;
  if (report.summary.inconclusive > 0) return 2;
  return 0;
}

function xml(text: string): string {
  return (
    text
      // biome-ignore lint/suspicious/noControlCharactersInRegex: XML 1.0 forbids these characters
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, " ")
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&apos;")
  );
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);

/**
 * Renders the report as JUnit XML: one test case per probe; `fail` is a failure, `inconclusive` an error,
 * `skipped` a skipped case with its reason.
 *
 * @example
 * await writeFile("probes.xml", toJUnit(report));
 */
export function toJUnit(report: ProbeReport): string {
  const { summary } = report;
  const total = report.probes.reduce((sum, probe) => sum + probe.durationMs, 0);
  const name = `${report.suite}.${report.tier}`;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${xml(report.suite)}" tests="${report.probes.length}" failures="${summary.fail}" errors="${summary.inconclusive}" skipped="${summary.skipped}" time="${seconds(total)}">`,
    `  <testsuite name="${xml(name)}" tests="${report.probes.length}" failures="${summary.fail}" errors="${summary.inconclusive}" skipped="${summary.skipped}" time="${seconds(total)}" timestamp="${xml(report.startedAt)}">`,
    "    <properties>",
    `      <property name="suiteVersion" value="${xml(report.suiteVersion)}"/>`,
    `      <property name="kernel" value="${xml(report.host.kernel)}"/>`,
    `      <property name="runtime" value="${xml(`${report.host.runtime} ${report.host.runtimeVersion}`)}"/>`,
    `      <property name="reportHash" value="${reportHash(report)}"/>`,
    "    </properties>",
  ];
  for (const probe of report.probes) {
    const caseName = `${String(probe.id).padStart(2, "0")} ${probe.title}`;
    lines.push(
      `    <testcase classname="airqube.probes.${probe.category}" name="${xml(caseName)}" time="${seconds(probe.durationMs)}">`,
    );
    const message = xml(`${probe.verdict}: ${probe.defence}`);
    if (probe.verdict === "fail")
      lines.push(`      <failure type="fail" message="${message}">${xml(probe.evidence)}</failure>`);
    else if (probe.verdict === "inconclusive")
      lines.push(`      <error type="inconclusive" message="${message}">${xml(probe.evidence)}</error>`);
    else if (probe.verdict === "skipped") lines.push(`      <skipped message="${xml(probe.evidence)}"/>`);
    lines.push(`      <system-out>${xml(probe.evidence)}</system-out>`, "    </testcase>");
  }
  lines.push("  </testsuite>", "</testsuites>", "");
  return lines.join("\n");
}
