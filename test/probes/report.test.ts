import { readFileSync } from "node:fs";
import { expect } from "chai";
import { PROBES } from "../../src/probes/catalog.js";
import { parseProbeOutput } from "../../src/probes/protocol.js";
import { exitStatus, type ProbeReport, reportHash, summarize, toJUnit } from "../../src/probes/report.js";

function report(verdicts: Partial<Record<number, ProbeReport["probes"][number]["verdict"]>> = {}): ProbeReport {
  const probes = PROBES.map((p) => ({
    ...p,
    verdict: verdicts[p.id] ?? ("pass" as const),
    evidence: `evidence ${p.id}`,
    durationMs: p.id,
  }));
  return {
    suite: "airqube-escape-suite",
    suiteVersion: "1.0.0+sha256:00",
    tier: "container",
    host: { kernel: "6.1.0", runtime: "docker", runtimeVersion: "20.10.24" },
    startedAt: "2026-11-26T00:00:00.000Z",
    probes,
    summary: summarize(probes),
  };
}

describe("probe catalog", () => {
  it("has rows 1-43 of PROBES.md in order, each with a defence", () => {
    expect(PROBES.map((p) => p.id)).to.deep.equal(Array.from({ length: 43 }, (_, i) => i + 1));
    for (const p of PROBES) expect(p.defence.length, `row ${p.id}`).to.be.greaterThan(3);
    expect(PROBES[7]!.cves).to.include("CVE-2022-0492");
    expect(PROBES[24]!.cves).to.include("CVE-2024-21626");
    expect(PROBES[25]!.cves).to.include("CVE-2019-5736");
  });

  it("probe.c prints every row the catalog has, and never the cloud-metadata address literally", () => {
    const source = readFileSync(new URL("../../src/probes/native/probe.c", import.meta.url), "utf8");
    for (let id = 1; id <= 43; id++)
      if (id !== 21 && id !== 36 && id !== 37 && id !== 42) expect(source).to.include(`probe_${id}(ev_t *ev)`);
    expect(source).to.include("phase_plant");
    expect(source).to.include("phase_check");
    expect(source).not.to.include(["169", "254", "169", "254"].join("."));
  });
});

describe("probe output parser (hostile input)", () => {
  it("accepts valid lines and strips control characters from evidence", () => {
    const out = parseProbeOutput('{"id":1,"verdict":"pass","evidence":"EROFS\\u001b[31m","ms":3}\n');
    expect(out.lines.get(1)).to.deep.equal({ id: 1, verdict: "pass", evidence: "EROFS [31m", ms: 3 });
    expect(out.rejected).to.equal(0);
  });

  it("rejects malformed, oversized, unknown-key, out-of-range and other-phase lines", () => {
    const lines = [
      "not json",
      '{"id":0,"verdict":"pass","evidence":""}',
      '{"id":42,"verdict":"pass","evidence":""}', // row 42 is the harness's own
      '{"id":44,"verdict":"pass","evidence":""}',
      '{"id":2,"verdict":"ok","evidence":""}',
      '{"id":3,"verdict":"pass","evidence":"","extra":1}',
      `{"id":4,"verdict":"pass","evidence":"${"x".repeat(5000)}"}`,
      '{"id":5,"phase":"check","verdict":"pass","evidence":""}',
      '{"id":6,"verdict":"pass","evidence":"ok"}',
    ];
    const out = parseProbeOutput(lines.join("\n"));
    expect([...out.lines.keys()]).to.deep.equal([6]);
    expect(out.rejected).to.equal(8);
  });

  it("flags duplicate verdicts and bounds the line count", () => {
    const dup = parseProbeOutput('{"id":1,"verdict":"pass","evidence":""}\n{"id":1,"verdict":"fail","evidence":""}\n');
    expect(dup.duplicates.has(1)).to.equal(true);
    const flood = parseProbeOutput('{"id":1,"verdict":"pass","evidence":""}\n'.repeat(10_000));
    expect(flood.truncated).to.equal(true);
  });

  it("reads the main phase's one facts line into bounded key/value pairs, never as a verdict", () => {
    const facts = '{"facts":"capbnd=2000;uid=65534;groups=65534,6;bad key=1;x=<script>;uid=0"}';
    const out = parseProbeOutput(`${facts}\n{"id":1,"verdict":"pass","evidence":""}\n${facts}\n`);
    expect([...out.facts!]).to.deep.equal([
      ["capbnd", "2000"],
      ["uid", "65534"],
      ["groups", "65534,6"],
    ]);
    expect([...out.lines.keys()]).to.deep.equal([1]);
    expect(out.rejected).to.equal(1); // the second facts line
    expect(parseProbeOutput(facts, "plant").facts).to.equal(undefined);
  });

  it("reads only lines of the phase asked for", () => {
    const out = parseProbeOutput('{"id":37,"phase":"plant","verdict":"pass","evidence":"planted"}\n', "plant");
    expect(out.lines.get(37)?.evidence).to.equal("planted");
  });
});

describe("probe report", () => {
  it("exits 0 on all pass, 1 on any fail, 2 on inconclusive without fail", () => {
    expect(exitStatus(report())).to.equal(0);
    expect(exitStatus(report({ 3: "skipped" }))).to.equal(0);
    expect(exitStatus(report({ 3: "inconclusive" }))).to.equal(2);
    expect(exitStatus(report({ 3: "inconclusive", 4: "fail" }))).to.equal(1);
  });

  it("hashes without timing fields, and changes with any verdict or evidence", () => {
    const a = report();
    const b = {
      ...report(),
      startedAt: "2030-01-01T00:00:00.000Z",
      probes: a.probes.map((p) => ({ ...p, durationMs: 999 })),
    };
    expect(reportHash(a)).to.match(/^[0-9a-f]{64}$/);
    expect(reportHash(b)).to.equal(reportHash(a));
    expect(reportHash(report({ 5: "fail" }))).not.to.equal(reportHash(a));
    const c = { ...a, probes: a.probes.map((p) => (p.id === 2 ? { ...p, evidence: "other" } : p)) };
    expect(reportHash(c)).not.to.equal(reportHash(a));
  });

  it("renders JUnit XML with failures, errors and skips, escaping evidence", () => {
    const r = report({ 1: "fail", 2: "inconclusive", 36: "skipped" });
    r.probes[0]!.evidence = 'opened <"/proc/sysrq-trigger"> & closed\u0001';
    const xml = toJUnit(r);
    expect(xml).to.include('tests="43" failures="1" errors="1" skipped="1"');
    expect(xml).to.include('<failure type="fail"');
    expect(xml).to.include("opened &lt;&quot;/proc/sysrq-trigger&quot;&gt; &amp; closed ");
    expect(xml).to.include('<error type="inconclusive"');
    expect(xml).to.include("<skipped message=");
    expect(xml).not.to.include("\u0001");
  });
});
