/** The runtime's offer properties and its signed escape-suite summary (pure: no I/O). */
import { expect } from "chai";
import {
  MAX_OFFER_IMAGES,
  MAX_SUMMARY_PROPERTY_BYTES,
  OFFER_PROPERTY,
  parseRuntimeOffer,
  runtimeOfferProperties,
  type SignedProbeSummary,
  signProbeSummary,
  verifyRuntimeOffer,
} from "../../../src/golem/runtime/offer.js";
import { PROBES, type ProbeResult, reportHash, SUITE, summarize } from "../../../src/probes/index.js";
import { type AirqubeError, Identity, PeerError, type Tier, UserError } from "../../../src/qube/index.js";
import { AT, probeReport } from "./fixtures.js";

const provider = Identity.fromSeed(new Uint8Array(32).fill(7));
const stranger = Identity.fromSeed(new Uint8Array(32).fill(9));
const NOW = AT.getTime() + 3600_000;
const IMAGE = `sha256:${"ab".repeat(32)}`;

function properties(summary: SignedProbeSummary | SignedProbeSummary[], tiers: Tier[] = ["container"]) {
  return runtimeOfferProperties({ tiers, images: [IMAGE], summary, version: "0.1.0" });
}

/** Expects `fn` to throw an AirqubeError of `kind` with `code`. */
function throwsCode(fn: () => unknown, kind: typeof UserError | typeof PeerError, code: string): AirqubeError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(kind);
    expect((error as AirqubeError).code).to.equal(code);
    return error as AirqubeError;
  }
  expect.fail(`expected ${code}`);
}

describe("golem runtime offer", () => {
  const container = signProbeSummary(probeReport("container"), provider, AT);

  it("signs a report's summary: counts, report hash, suite version, time, key", () => {
    const report = probeReport("container", { 5: "skipped" });
    const summary = signProbeSummary(report, provider, AT);
    expect(summary).to.include({
      v: 1,
      tier: "container",
      pass: PROBES.length - 1,
      fail: 0,
      inconclusive: 0,
      skipped: 1,
      reportHash: `sha256:${reportHash(report)}`,
      suiteVersion: report.suiteVersion,
      at: AT.toISOString(),
      publicKey: Buffer.from(provider.publicKey).toString("hex"),
    });
    expect(summary.signature).to.match(/^[0-9a-f]{128}$/);
  });

  it("publishes the runtime's properties, and a requestor verifies them", () => {
    const props = properties(container);
    expect(props).to.include({
      "golem.runtime.name": "airqube",
      "golem.runtime.version": "0.1.0",
      "airqube.runtime.tiers": "container",
      "airqube.runtime.images": IMAGE,
    });
    for (const value of Object.values(props)) expect(value).to.be.a("string");
    const verdict = verifyRuntimeOffer(props, { now: NOW });
    expect(verdict.ok).to.equal(true);
    if (!verdict.ok) return;
    expect(verdict.summary).to.deep.equal(container);
    expect(verdict.offer).to.deep.include({ version: "0.1.0", tiers: ["container"], images: [IMAGE] });
  });

  it("carries one summary per tier, signed by one key; the weakest tier's is the verdict's summary", () => {
    const microvm = signProbeSummary(probeReport("microvm"), provider, AT);
    const verdict = verifyRuntimeOffer(properties([microvm, container], ["container", "microvm"]), { now: NOW });
    expect(verdict.ok && verdict.summary.tier).to.equal("container");
    expect(verdict.ok && verdict.offer.summaries.microvm).to.deep.equal(microvm);
    const otherKey = signProbeSummary(probeReport("microvm"), stranger, AT);
    throwsCode(() => properties([container, otherKey], ["container", "microvm"]), UserError, "RUNTIME_OFFER_INVALID");
    throwsCode(() => properties([container], ["container", "microvm"]), UserError, "RUNTIME_OFFER_INVALID");
    throwsCode(() => properties([microvm], ["container"]), UserError, "RUNTIME_OFFER_INVALID");
  });

  it("refuses a summary whose fields were changed after signing", () => {
    for (const change of [
      { fail: 0, pass: container.pass + 1 },
      { tier: "microvm" as const },
      { reportHash: `sha256:${"00".repeat(32)}` },
      { at: new Date(AT.getTime() + 1000).toISOString() },
      { suiteVersion: "1.0.1" },
    ]) {
      const props = properties(container);
      if (change.tier) props[OFFER_PROPERTY.tiers] = change.tier;
      const tampered = { ...container, ...change };
      props[OFFER_PROPERTY.summary] = JSON.stringify([tampered]);
      const verdict = verifyRuntimeOffer(props, { now: NOW });
      expect(verdict).to.deep.include({ ok: false, code: "PROBE_SUMMARY_SIGNATURE_INVALID" });
    }
  });

  it("refuses a summary signed by another key than the one it names", () => {
    const forged = signProbeSummary(probeReport("container"), stranger, AT);
    const props = properties(container);
    props[OFFER_PROPERTY.summary] = JSON.stringify([{ ...forged, publicKey: container.publicKey }]);
    expect(verifyRuntimeOffer(props, { now: NOW })).to.deep.include({
      ok: false,
      code: "PROBE_SUMMARY_SIGNATURE_INVALID",
    });
    const err = throwsCode(() => parseRuntimeOffer(props, { now: NOW }), PeerError, "PROBE_SUMMARY_SIGNATURE_INVALID");
    expect(err.message).to.include("container");
  });

  it("refuses a summary that shows a fail or an inconclusive probe, or no pass", () => {
    expect(() => signProbeSummary(probeReport("container", { 3: "fail" }), provider, AT)).not.to.throw();
    throwsCode(
      () => properties(signProbeSummary(probeReport("container", { 3: "fail" }), provider, AT)),
      UserError,
      "RUNTIME_OFFER_INVALID",
    );
    const outcomes: Record<number, ProbeResult["verdict"]>[] = [{ 3: "fail" }, { 4: "inconclusive" }];
    for (const verdicts of outcomes) {
      const failing = signProbeSummary(probeReport("container", verdicts), provider, AT);
      const props = properties(container);
      props[OFFER_PROPERTY.summary] = JSON.stringify([failing]);
      const verdict = verifyRuntimeOffer(props, { now: NOW });
      expect(verdict).to.deep.include({ ok: false, code: "PROBE_SUMMARY_NOT_CLEAN" });
      expect(!verdict.ok && verdict.reason).to.match(/container: \d+ pass, [01] fail, [01] inconclusive/);
    }
    const allSkipped = Object.fromEntries(PROBES.map((p) => [p.id, "skipped" as const]));
    const props = properties(container);
    props[OFFER_PROPERTY.summary] = JSON.stringify([
      signProbeSummary(probeReport("container", allSkipped), provider, AT),
    ]);
    expect(verifyRuntimeOffer(props, { now: NOW })).to.deep.include({ ok: false, code: "PROBE_SUMMARY_NOT_CLEAN" });
  });

  it("refuses a stale summary and one dated in the future beyond the clock skew", () => {
    const props = properties(container);
    const day = 24 * 3600_000;
    expect(verifyRuntimeOffer(props, { now: AT.getTime() + 29 * day }).ok).to.equal(true);
    expect(verifyRuntimeOffer(props, { now: AT.getTime() + 31 * day })).to.deep.include({
      ok: false,
      code: "PROBE_SUMMARY_STALE",
    });
    expect(verifyRuntimeOffer(props, { now: NOW, maxAgeMs: 1000 })).to.deep.include({
      ok: false,
      code: "PROBE_SUMMARY_STALE",
    });
    expect(verifyRuntimeOffer(props, { now: AT.getTime() - 60_000 }).ok).to.equal(true);
    expect(verifyRuntimeOffer(props, { now: AT.getTime() - 10 * 60_000 })).to.deep.include({
      ok: false,
      code: "PROBE_SUMMARY_FUTURE",
    });
  });

  it("refuses oversized properties before parsing them", () => {
    const props = properties(container);
    props[OFFER_PROPERTY.summary] = `[${" ".repeat(MAX_SUMMARY_PROPERTY_BYTES)}]`;
    expect(verifyRuntimeOffer(props, { now: NOW })).to.deep.include({
      ok: false,
      code: "RUNTIME_OFFER_PROPERTY_TOO_LARGE",
    });
    // multi-byte characters: the limit is in bytes
    props[OFFER_PROPERTY.summary] = "é".repeat(MAX_SUMMARY_PROPERTY_BYTES / 2 + 1);
    expect(verifyRuntimeOffer(props, { now: NOW })).to.deep.include({
      ok: false,
      code: "RUNTIME_OFFER_PROPERTY_TOO_LARGE",
    });
    const many = Array.from({ length: MAX_OFFER_IMAGES + 1 }, (_, i) => `sha256:${i.toString(16).padStart(64, "0")}`);
    throwsCode(
      () => runtimeOfferProperties({ tiers: ["container"], images: many, summary: container, version: "0.1.0" }),
      UserError,
      "RUNTIME_OFFER_INVALID",
    );
    const wide = properties(container);
    // 33 digests are over the byte bound already
    wide[OFFER_PROPERTY.images] = many.join(",");
    expect(verifyRuntimeOffer(wide, { now: NOW })).to.deep.include({
      ok: false,
      code: "RUNTIME_OFFER_PROPERTY_TOO_LARGE",
    });
    wide[OFFER_PROPERTY.images] = `${IMAGE},${"x".repeat(3000)}`;
    expect(verifyRuntimeOffer(wide, { now: NOW })).to.deep.include({
      ok: false,
      code: "RUNTIME_OFFER_PROPERTY_TOO_LARGE",
    });
  });

  it("refuses malformed offers with typed errors, and offers of other runtimes", () => {
    const good = properties(container);
    const cases: Array<[unknown, string]> = [
      [null, "RUNTIME_OFFER_INVALID"],
      [[good], "RUNTIME_OFFER_INVALID"],
      [{ ...good, "golem.runtime.name": "vm" }, "RUNTIME_OFFER_NOT_AIRQUBE"],
      [{ ...good, "airqube.probe.summary": undefined }, "RUNTIME_OFFER_PROPERTY_MISSING"],
      [{ ...good, "airqube.probe.summary": "{not json" }, "PROBE_SUMMARY_INVALID"],
      [{ ...good, "airqube.probe.summary": "[]" }, "PROBE_SUMMARY_INVALID"],
      [{ ...good, "airqube.probe.summary": JSON.stringify([{ ...container, extra: 1 }]) }, "PROBE_SUMMARY_INVALID"],
      [{ ...good, "airqube.probe.summary": JSON.stringify([container, container]) }, "PROBE_SUMMARY_INVALID"],
      [{ ...good, "airqube.runtime.tiers": "container,container" }, "RUNTIME_OFFER_INVALID"],
      [{ ...good, "airqube.runtime.tiers": "docker" }, "RUNTIME_OFFER_INVALID"],
      [{ ...good, "airqube.runtime.images": "sha256:xyz" }, "RUNTIME_OFFER_INVALID"],
      [{ ...good, "golem.runtime.version": 1 }, "RUNTIME_OFFER_INVALID"],
      [{ ...good, "golem.runtime.version": "1 0" }, "RUNTIME_OFFER_INVALID"],
    ];
    for (const [props, code] of cases) {
      expect(verifyRuntimeOffer(props, { now: NOW }), code).to.deep.include({ ok: false, code });
      throwsCode(() => parseRuntimeOffer(props, { now: NOW }), PeerError, code);
    }
  });

  it("refuses to sign a weakened run or a report whose summary lies", () => {
    const weakened = { ...probeReport("container"), suite: `${SUITE} (weakened: no-seccomp)` };
    throwsCode(() => signProbeSummary(weakened, provider, AT), UserError, "PROBE_REPORT_UNFIT");
    const lying = { ...probeReport("container", { 3: "fail" }), summary: summarize(probeReport("container").probes) };
    throwsCode(() => signProbeSummary(lying, provider, AT), UserError, "PROBE_REPORT_UNFIT");
  });
});
