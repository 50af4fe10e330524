/**
 * The requestor side of Airqube's Golem runtime (`airqube run --backend golem --golem-runtime airqube`): the
 * demand asks for runtime `airqube`, offers whose signed escape-suite summary does not verify or is not clean
 * are refused before any agreement (and the log says why), the verified summary is the candidate's probe
 * evidence, and one summary key counts as one operator. Over golem-js with the in-memory yagna (fake-yagna.ts).
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { expect } from "chai";
import { pino } from "pino";
import { loadGolemConfig } from "../../../src/golem/config.js";
import { GolemMarket } from "../../../src/golem/golem-market.js";
import { offerVerdict, orderFor } from "../../../src/golem/order.js";
import { golemRuntimeEvidence } from "../../../src/golem/probe.js";
import {
  OFFER_PROPERTY,
  runtimeOfferProperties,
  type SignedProbeSummary,
  signProbeSummary,
} from "../../../src/golem/runtime/offer.js";
import type { ProbeResult } from "../../../src/probes/index.js";
import { createQubeSpec, Identity, type QubeSpec, type Tier } from "../../../src/qube/index.js";
import type { SealedQube } from "../../../src/requestor/api.js";
import { sealQube } from "../../../src/requestor/draft.js";
import { Requestor } from "../../../src/requestor/requestor.js";
import { FakeGolem, PLATFORM } from "../fake-yagna.js";
import { GVMI_HASH, IMAGE_DIGEST, node, rejection, requestor, testConfig } from "../helpers.js";
import { probeReport } from "./fixtures.js";

const keys = [1, 2, 3].map((n) => Identity.fromSeed(new Uint8Array(32).fill(40 + n)));
const hex = (identity: Identity) => Buffer.from(identity.publicKey).toString("hex");

interface RuntimeOfferOptions {
  tiers?: Tier[];
  images?: string[];
  at?: Date;
  /** Replaces the summary of the first tier with one of this outcome (signed by the same key). */
  verdicts?: Record<number, ProbeResult["verdict"]>;
  /** Changes a field of the first summary after signing. */
  tamper?: Partial<SignedProbeSummary>;
}

/** The offer properties a `ya-runtime-airqube` signed by `identity` publishes. */
function runtimeProperties(identity: Identity, options: RuntimeOfferOptions = {}): Record<string, unknown> {
  const tiers = options.tiers ?? ["container"];
  const at = options.at ?? new Date();
  const summaries = tiers.map((tier) => signProbeSummary(probeReport(tier), identity, at));
  const properties: Record<string, unknown> = runtimeOfferProperties({
    tiers,
    images: options.images ?? [IMAGE_DIGEST],
    summary: summaries,
    version: "0.1.0",
  });
  if (options.verdicts || options.tamper) {
    const first = options.verdicts
      ? signProbeSummary(probeReport(tiers[0]!, options.verdicts), identity, at)
      : summaries[0]!;
    summaries[0] = { ...first, ...options.tamper };
    properties[OFFER_PROPERTY.summary] = JSON.stringify(summaries);
  }
  return properties;
}

const airqubeConfig = (overrides: Record<string, unknown> = {}) =>
  testConfig({ runtime: { name: "airqube" }, ...overrides });

function spec(tier: Tier = "container"): QubeSpec {
  return createQubeSpec({
    image: { ref: "airqube/busybox:1", digest: IMAGE_DIGEST },
    command: ["true"],
    outputs: ["out"],
    tier,
    limits: { memoryBytes: 256 * 1024 * 1024 },
    expiresAt: "2030-01-01T00:00:00.000Z",
    requestor: requestor.peerId,
  });
}

function scanned(id: string, properties: Record<string, unknown>) {
  return {
    offerId: `offer-${id}`,
    providerId: id,
    properties: {
      "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
      "golem.com.pricing.model.linear.coeffs": [0.00001, 0.00001, 0.001],
      "golem.inf.mem.gib": 8,
      "golem.inf.storage.gib": 40,
      "golem.inf.cpu.threads": 4,
      [`golem.com.payment.platform.${PLATFORM}.address`]: id,
      ...properties,
    },
  };
}

describe("golem runtime: the requestor side (--golem-runtime airqube)", function () {
  this.timeout(30_000);

  it("--golem-runtime sets the runtime over the config file's (whose version pins its own runtime only)", () => {
    const env = { YAGNA_APPKEY: "k" };
    expect(
      loadGolemConfig(env, { runtime: { name: "vm", version: "0.4.2" } }, { runtime: "airqube" }).runtime,
    ).to.deep.equal({
      name: "airqube",
    });
    expect(
      loadGolemConfig(
        env,
        { runtime: { name: "airqube", version: "0.1.0", maxSummaryAgeMs: 3_600_000 } },
        { runtime: "airqube" },
      ).runtime,
    ).to.deep.equal({ name: "airqube", version: "0.1.0", maxSummaryAgeMs: 3_600_000 });
    expect(loadGolemConfig(env, {}).runtime).to.deep.equal({ name: "vm" });
    expect(() => loadGolemConfig(env, { runtime: { name: "airqube", maxSummaryAgeMs: 5 } })).to.throw(
      /maxSummaryAgeMs/,
    );
  });

  it("a verified, clean summary makes a candidate: its probe evidence, its tiers, one operator per summary key", () => {
    const verdict = offerVerdict(scanned(node(1), runtimeProperties(keys[0]!)), spec(), airqubeConfig(), Date.now());
    expect(verdict).to.have.property("candidate");
    if (!("candidate" in verdict)) return;
    const summary = JSON.parse(runtimeProperties(keys[0]!)[OFFER_PROPERTY.summary] as string)[0];
    expect(verdict.candidate).to.deep.include({
      id: node(1),
      tiers: ["container"],
      operator: `probe-key:${hex(keys[0]!)}`,
    });
    expect(verdict.candidate.probe).to.deep.equal({
      reportHash: summary.reportHash,
      pass: summary.pass,
      fail: 0,
      inconclusive: 0,
    });
    // a micro-VM qube takes the micro-VM tier's evidence
    const both = runtimeProperties(keys[0]!, { tiers: ["container", "microvm"], verdicts: { 9: "skipped" } });
    const microvm = offerVerdict(scanned(node(1), both), spec("microvm"), airqubeConfig(), Date.now());
    expect("candidate" in microvm && microvm.candidate.probe?.pass).to.equal(probeReport("microvm").summary.pass);
    const container = offerVerdict(scanned(node(1), both), spec("container"), airqubeConfig(), Date.now());
    expect("candidate" in container && container.candidate.probe?.pass).to.equal(
      probeReport("container").summary.pass - 1,
    );
  });

  it("refuses, with the reason, offers whose summary fails, does not verify, is stale, or that do not fit the qube", () => {
    const refused = (properties: Record<string, unknown>, qube = spec(), config = airqubeConfig()) => {
      const verdict = offerVerdict(scanned(node(2), properties), qube, config, Date.now());
      expect(verdict).not.to.have.property("candidate");
      return verdict as { reason: string; probe?: true };
    };
    expect(refused(runtimeProperties(keys[0]!, { verdicts: { 3: "fail" } }))).to.deep.include({ probe: true });
    expect(refused(runtimeProperties(keys[0]!, { verdicts: { 3: "fail" } })).reason).to.match(
      /^PROBE_SUMMARY_NOT_CLEAN: .*1 fail/,
    );
    expect(refused(runtimeProperties(keys[0]!, { verdicts: { 4: "inconclusive" } })).reason).to.match(/1 inconclusive/);
    expect(refused(runtimeProperties(keys[0]!, { tamper: { pass: 999 } })).reason).to.match(
      /^PROBE_SUMMARY_SIGNATURE_INVALID/,
    );
    expect(refused(runtimeProperties(keys[0]!, { tamper: { publicKey: hex(keys[1]!) } })).reason).to.match(
      /SIGNATURE_INVALID/,
    );
    const old = runtimeProperties(keys[0]!, { at: new Date(Date.now() - 2 * 3_600_000) });
    expect(offerVerdict(scanned(node(2), old), spec(), airqubeConfig(), Date.now())).to.have.property("candidate");
    const strict = airqubeConfig({ runtime: { name: "airqube", maxSummaryAgeMs: 3_600_000 } });
    expect(refused(old, spec(), strict).reason).to.match(/^PROBE_SUMMARY_STALE/);
    expect(refused(runtimeProperties(keys[0]!, { images: [`sha256:${"cd".repeat(32)}`] })).reason).to.include(
      "does not accept the image",
    );
    expect(refused(runtimeProperties(keys[0]!), spec("microvm")).reason).to.include(
      "no offered tier satisfies microvm",
    );
    const { [OFFER_PROPERTY.summary]: _, ...unsummarised } = runtimeProperties(keys[0]!);
    expect(refused(unsummarised).reason).to.match(/^RUNTIME_OFFER_PROPERTY_MISSING/);
    // Golem's VM runtime is another runtime; and the VM backend ignores airqube offers
    expect(refused({ "golem.runtime.name": "vm" })).to.deep.equal({ reason: "another runtime" });
    expect(refused(runtimeProperties(keys[0]!), spec(), testConfig())).to.deep.equal({ reason: "another runtime" });
  });

  it("the demand asks for the airqube runtime, and the agreement's proposal must carry the scanned key's clean summary", () => {
    const order = orderFor(spec(), airqubeConfig(), node(1), `probe-key:${hex(keys[0]!)}`);
    expect(order.demand.workload).to.deep.include({ runtime: { name: "airqube" }, imageHash: GVMI_HASH });
    const filter = order.market.offerProposalFilter!;
    const proposal = (id: string, properties: Record<string, unknown>) =>
      ({ provider: { id }, properties }) as unknown as Parameters<typeof filter>[0];
    expect(filter(proposal(node(1), runtimeProperties(keys[0]!)))).to.equal(true);
    expect(filter(proposal(node(2), runtimeProperties(keys[0]!)))).to.equal(false);
    expect(filter(proposal(node(1), runtimeProperties(keys[1]!)))).to.equal(false);
    expect(filter(proposal(node(1), runtimeProperties(keys[0]!, { verdicts: { 1: "fail" } })))).to.equal(false);
    // without a pinned provider the summary is still checked
    const open = orderFor(spec(), airqubeConfig()).market.offerProposalFilter!;
    expect(open(proposal(node(5), runtimeProperties(keys[2]!)))).to.equal(true);
    expect(open(proposal(node(5), runtimeProperties(keys[2]!, { tamper: { fail: 1 } })))).to.equal(false);
    expect(orderFor(spec(), testConfig()).market.offerProposalFilter).to.equal(undefined);
  });

  describe("over golem-js and the in-memory yagna", () => {
    let fake: FakeGolem;
    let market: GolemMarket | undefined;
    let dir: string;
    let logs: Array<{ level: number; provider?: string; reason?: string; msg: string }>;

    async function start(providers: Array<{ id: string; properties: Record<string, unknown> }>) {
      fake = new FakeGolem(providers);
      dir = await mkdtemp(join(tmpdir(), "airqube-golem-runtime-req-"));
      logs = [];
      const sink = new Writable({
        write(chunk, _encoding, done) {
          logs.push(JSON.parse(String(chunk)));
          done();
        },
      });
      market = await GolemMarket.connect(airqubeConfig(), {
        override: fake.override(),
        stagingDir: dir,
        logger: pino({ level: "warn" }, sink),
      });
    }

    /** A qube with one input file, staged in the test's own directory (removed after each test). */
    async function qube(k: number, quorum: number): Promise<SealedQube> {
      const inputDir = join(dir, `in-${k}`);
      await mkdir(inputDir, { recursive: true });
      await writeFile(join(inputDir, "data.csv"), "a,b\n1,2\n");
      return sealQube(
        {
          image: "airqube/busybox:1",
          imageDigest: IMAGE_DIGEST,
          command: ["sh", "-c", "wc -l < /input/data.csv > /output/result.txt"],
          inputDir,
          outputs: ["result.txt"],
          limits: { wallTimeMs: 1000, outputBytes: 1024 * 1024, outputFiles: 10 },
          redundancy: { mode: "fixed", k, quorum },
        },
        requestor,
      );
    }

    afterEach(async () => {
      await market?.close();
      market = undefined;
      expect(fake.leaks(), "rentals, activities or allocations left open").to.deep.equal([]);
      await rm(dir, { recursive: true, force: true });
    });

    it("refuses failing and forged summaries before any agreement, and logs why", async () => {
      await start([
        { id: node(1), properties: runtimeProperties(keys[0]!) },
        { id: node(2), properties: runtimeProperties(keys[1]!, { verdicts: { 12: "fail" } }) },
        { id: node(3), properties: runtimeProperties(keys[2]!, { tamper: { inconclusive: 0, pass: 1 } }) },
        { id: node(4), properties: { "golem.runtime.name": "vm" } },
      ]);
      const sealed = await qube(3, 2);
      const candidates = await market!.findProviders(sealed.spec, { wanted: 3 });
      expect(candidates.map((c) => c.id)).to.deep.equal([node(1)]);
      expect(candidates[0]!.probe).to.include({ fail: 0, inconclusive: 0 });
      expect(candidates[0]!.operator).to.equal(`probe-key:${hex(keys[0]!)}`);
      const warned = logs.filter((l) => l.level === 40 && l.msg === "Golem offer refused before any agreement");
      expect(warned.map((l) => l.provider).sort()).to.deep.equal([node(2), node(3)]);
      expect(warned.find((l) => l.provider === node(2))!.reason).to.match(/^PROBE_SUMMARY_NOT_CLEAN: .*1 fail/);
      expect(warned.find((l) => l.provider === node(3))!.reason).to.match(/^PROBE_SUMMARY_SIGNATURE_INVALID/);
      expect(fake.ledger.agreementsApproved).to.deep.equal([]);
      // k = 2 with one acceptable provider: not enough, and still no agreement with a refused one
      const requestorDir = join(dir, "requestor");
      const req = new Requestor({ market: market!, dataDir: requestorDir });
      try {
        const error = await rejection(req.run(await qube(2, 2), { outputDir: join(dir, "out") }));
        expect(error.code).to.match(/PROVIDER/);
      } finally {
        req.close();
      }
      expect(fake.ledger.agreementsApproved).not.to.include.members([node(2), node(3)]);
    });

    it("reads one provider's evidence from its offer, verified, without a probe qube", async () => {
      await start([
        { id: node(1), properties: runtimeProperties(keys[0]!) },
        { id: node(2), properties: runtimeProperties(keys[1]!, { verdicts: { 7: "inconclusive" } }) },
        { id: node(3), properties: { "golem.runtime.name": "vm" } },
      ]);
      const evidence = (provider: string) =>
        golemRuntimeEvidence({ config: testConfig(), provider, market: { override: fake.override() } });
      const good = await evidence(node(1).toUpperCase().replace("0X", "0x"));
      expect(good.provider).to.equal(node(1));
      expect(good.verdict.ok && good.verdict.summary.publicKey).to.equal(hex(keys[0]!));
      expect((await evidence(node(2))).verdict).to.deep.include({ ok: false, code: "PROBE_SUMMARY_NOT_CLEAN" });
      for (const absent of [node(3), node(9)])
        expect(await rejection(evidence(absent))).to.include({ code: "GOLEM_PROVIDER_NOT_FOUND", fault: "peer" });
      expect(fake.ledger.runs).to.deep.equal([]);
      expect(fake.ledger.agreementsApproved).to.deep.equal([]);
    });

    it("runs a qube verified by k = 2 on providers with distinct summary keys; a copied summary is the same operator", async () => {
      // node 3 shows node 1's summary (same key): the two count as one operator
      const shared = runtimeProperties(keys[0]!);
      await start([
        { id: node(1), properties: shared },
        { id: node(2), properties: runtimeProperties(keys[1]!) },
        { id: node(3), properties: shared },
      ]);
      const sealed = await qube(3, 2);
      const req = new Requestor({ market: market!, dataDir: join(dir, "requestor") });
      try {
        const result = await req.run(sealed, { outputDir: join(dir, "out"), allowFewer: true });
        expect(result.status).to.equal("verified");
        expect(result.agreeing).to.have.length(2);
        expect(result.agreeing).to.include(node(2));
        expect(result.agreeing.filter((p) => p === node(1) || p === node(3))).to.have.length(1);
      } finally {
        req.close();
      }
      expect(fake.ledger.agreementsApproved).to.have.length(2);
      expect(await readdir(join(dir, "out"))).to.include("result.txt");
    });
  });
});
