import { expect } from "chai";
import { checkAdmission } from "../../src/provider/admission.js";
import { DEFAULT_MAX_INPUT_BYTES, defaultResources, type ProviderResources } from "../../src/provider/config.js";
import { MAX_INPUT_FILE_BYTES, MAX_INPUT_TOTAL_BYTES } from "../../src/qube/index.js";
import { createQubeSpec } from "../../src/qube/spec.js";
import { draft, sha, thrown } from "../qube/fixtures.js";

const MiB = 1024 * 1024;
const inputs = (...sizes: number[]) => sizes.map((size, i) => ({ path: `in-${i}`, size, sha256: sha(`x${i}`) }));
const admit = (sizes: number[], resources: Partial<ProviderResources> = {}) =>
  checkAdmission({
    spec: createQubeSpec(draft({ inputs: inputs(...sizes) })),
    price: 10n ** 18n,
    tiers: ["container"],
    resources: { ...defaultResources(), ...resources },
    pricing: { start: 0n, perSecond: 0n },
    running: 0,
    maxConcurrent: 1,
    draining: false,
  });

describe("provider admission: bounded inputs", () => {
  it("admits inputs up to the provider's declared total and refuses one byte more", () => {
    expect(admit([40 * MiB, 24 * MiB], { maxInputBytes: 64 * MiB })).to.equal(undefined);
    expect(admit([40 * MiB, 24 * MiB + 1], { maxInputBytes: 64 * MiB })).to.deep.equal({
      code: "INPUTS_TOO_LARGE",
      reason: `inputs of ${64 * MiB + 1} bytes are over this provider's ${64 * MiB}`,
    });
  });

  it("applies 1 GiB when the provider's config names no maximum, and offers it", () => {
    expect(defaultResources().maxInputBytes).to.equal(DEFAULT_MAX_INPUT_BYTES);
    const { maxInputBytes: _, ...withoutMax } = defaultResources();
    expect(admit([DEFAULT_MAX_INPUT_BYTES], withoutMax)).to.equal(undefined);
    expect(admit([DEFAULT_MAX_INPUT_BYTES, 1], withoutMax)?.code).to.equal("INPUTS_TOO_LARGE");
  });

  it("bounds the spec itself: 16 GiB per file, 64 GiB in all (it allowed 64 TiB per file)", () => {
    expect(MAX_INPUT_FILE_BYTES).to.equal(16 * 1024 ** 3);
    expect(() => createQubeSpec(draft({ inputs: inputs(MAX_INPUT_FILE_BYTES) }))).not.to.throw();
    const file = thrown(() => createQubeSpec(draft({ inputs: inputs(MAX_INPUT_FILE_BYTES + 1) })));
    expect(file.message).to.include("inputs[0].size");
    const total = thrown(() => createQubeSpec(draft({ inputs: inputs(...Array(5).fill(MAX_INPUT_FILE_BYTES)) })));
    expect(total.message).to.include(`at most ${MAX_INPUT_TOTAL_BYTES} bytes in all`);
  });
});
