/** The pure mapping from a qube spec to a golem-js order, and from scanned offers to candidates. */
import { expect } from "chai";
import { candidateFromOffer, glmToWei, orderFor, rentHoursFor, workloadResources } from "../../src/golem/order.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { createQubeSpec } from "../../src/qube/spec.js";
import { GVMI_HASH, IMAGE_DIGEST, node, requestor, testConfig } from "./helpers.js";

const GiB = 1024 ** 3;
const spec = createQubeSpec({
  image: { ref: "airqube/busybox:1", digest: IMAGE_DIGEST },
  command: ["true"],
  inputs: [{ path: "a", size: GiB, sha256: "0".repeat(64) }],
  outputs: ["out"],
  limits: {
    milliCpus: 2500,
    memoryBytes: 3 * GiB,
    scratchBytes: 2 * GiB,
    outputBytes: GiB / 2,
    wallTimeMs: 20 * 60_000,
  },
  expiresAt: "2030-01-01T00:00:00.000Z",
  requestor: requestor.peerId,
});

function offer(properties: Record<string, unknown> = {}) {
  return {
    offerId: "o1",
    providerId: node(9),
    properties: {
      "golem.com.usage.vector": ["golem.usage.cpu_sec", "golem.usage.duration_sec"],
      "golem.com.pricing.model.linear.coeffs": [0.0001, 0.00005, 0.01],
      "golem.inf.mem.gib": 8,
      "golem.inf.storage.gib": 20,
      "golem.inf.cpu.threads": 4,
      "golem.runtime.name": "vm",
      "golem.com.payment.platform.erc20-holesky-tglm.address": node(10).toUpperCase().replace("0X", "0x"),
      ...properties,
    },
  };
}

describe("golem order mapping", () => {
  it("asks for memory, disk and threads from the spec's limits", () => {
    expect(workloadResources(spec)).to.deep.equal({ minMemGib: 3, minStorageGib: 4, minCpuThreads: 3 });
  });

  it("rents for the wall time plus overhead, in quarter hours", () => {
    expect(rentHoursFor(spec)).to.equal(0.75);
    expect(rentHoursFor({ limits: { ...spec.limits, wallTimeMs: 1000 } })).to.equal(0.5);
    expect((rentHoursFor(spec) * 3600) % 1).to.equal(0);
  });

  it("maps the Docker digest to the configured GVMI hash and pins the provider", () => {
    const order = orderFor(spec, testConfig(), node(9));
    expect(order.demand.workload).to.deep.include({
      imageHash: GVMI_HASH,
      imageUrl: "http://127.0.0.1:1/airqube-test.gvmi",
      runtime: { name: "vm" },
      minMemGib: 3,
    });
    expect(order.market.pricing).to.deep.equal({
      model: "linear",
      maxStartPrice: 0.5,
      maxCpuPerHourPrice: 1,
      maxEnvPerHourPrice: 0.5,
    });
    const filter = order.market.offerProposalFilter!;
    expect(filter({ provider: { id: node(9) } } as never)).to.equal(true);
    expect(filter({ provider: { id: node(8) } } as never)).to.equal(false);
  });

  it("says what to do when the image has no Golem mapping or no URL", () => {
    const unmapped = { ...spec, image: { ...spec.image, digest: `sha256:${"1".repeat(64)}` } };
    expect(() => orderFor(unmapped, testConfig())).to.throw(AirqubeError, /gvmkit-build/);
    const noUrl = testConfig({ images: { [IMAGE_DIGEST]: { hash: GVMI_HASH } } });
    expect(() => orderFor(spec, noUrl)).to.throw(AirqubeError, /allowRemote/);
  });

  it("turns a valid offer into a priced candidate and drops the rest", () => {
    const config = testConfig();
    const candidate = candidateFromOffer(offer(), spec, config)!;
    expect(candidate.id).to.equal(node(9));
    expect(candidate.payout).to.equal(node(10));
    // 0.01 + (1200 + 900) s * (0.00005 + 0.0001 * 4)
    const expected = glmToWei(0.01 + 2100 * 0.00045);
    const diff = candidate.price > expected ? candidate.price - expected : expected - candidate.price;
    expect(diff < 10n ** 6n, `${candidate.price} vs ${expected}`).to.equal(true);
    expect(candidateFromOffer(offer({ "golem.inf.mem.gib": 2 }), spec, config)).to.equal(undefined);
    expect(candidateFromOffer(offer({ "golem.inf.cpu.threads": 2 }), spec, config)).to.equal(undefined);
    expect(candidateFromOffer(offer({ "golem.runtime.name": "wasmtime" }), spec, config)).to.equal(undefined);
    expect(candidateFromOffer(offer({ "golem.com.pricing.model.linear.coeffs": [0.1, 0, 0] }), spec, config)).to.equal(
      undefined,
    );
    expect(candidateFromOffer({ ...offer(), providerId: "not-a-node" }, spec, config)).to.equal(undefined);
    const cheapCap = testConfig({ maxGlmPerQube: 0.1 });
    expect(candidateFromOffer(offer(), spec, cheapCap)).to.equal(undefined);
  });

  it("converts GLM to wei, rounding through 18 decimals", () => {
    expect(glmToWei(1)).to.equal(10n ** 18n);
    expect(glmToWei(0.5)).to.equal(5n * 10n ** 17n);
    expect(glmToWei(0)).to.equal(0n);
  });
});
