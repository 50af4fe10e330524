/** Shared fixtures of the Golem runtime tests: escape-suite reports without running the suite. */
import { PROBES, type ProbeReport, type ProbeResult, SUITE, summarize } from "../../../src/probes/index.js";
import type { Tier } from "../../../src/qube/index.js";

/** When the fixture reports ran. */
export const AT = new Date("2026-11-30T05:00:00.000Z");

/** A report of the whole catalog: every probe passes except the `verdicts` given by id. */
export function probeReport(tier: Tier, verdicts: Record<number, ProbeResult["verdict"]> = {}): ProbeReport {
  const probes = PROBES.map(
    (info): ProbeResult => ({
      ...info,
      cves: [...info.cves],
      verdict: verdicts[info.id] ?? "pass",
      evidence: "ok",
      durationMs: 3,
    }),
  );
  return {
    suite: SUITE,
    suiteVersion: `1.0.0+sha256:${"cd".repeat(32)}`,
    tier,
    host: { kernel: "6.1.0", runtime: "docker", runtimeVersion: "20.10" },
    startedAt: AT.toISOString(),
    probes,
    summary: summarize(probes),
  };
}
