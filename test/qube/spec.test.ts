import { expect } from "chai";
import fc from "fast-check";
import { canonicalJson, parseJsonBytes } from "../../src/qube/canonical.js";
import { UserError } from "../../src/qube/errors.js";
import { decodeQubeSpec, encodeQubeSpec, qubeIdOf } from "../../src/qube/qube-id.js";
import { createQubeSpec, parseQubeSpec } from "../../src/qube/spec.js";
import { draft, NOW, requestor, spec, thrown } from "./fixtures.js";

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));

describe("qube: spec v1", () => {
  it("fills defaults and sorts path lists", () => {
    const s = createQubeSpec(draft({ outputs: ["b", "a"], inputs: [] }));
    expect(s.outputs).to.deep.equal(["a", "b"]);
    expect(s.normalise).to.deep.equal({
      include: ["a", "b"],
      stripTimestamps: true,
      stripOwners: true,
      stripModes: true,
      comparator: "bitwise",
    });
    expect(s.network).to.deep.equal({ mode: "none" });
    expect(s.tier).to.equal("container");
    expect(s.redundancy).to.deep.equal({ mode: "fixed", k: 3, quorum: 2 });
    expect(s.deterministic).to.equal(true);
    expect(s.expiresAt).to.equal("2026-12-01T00:00:00.000Z");
  });

  it("rejects unknown fields with their path", () => {
    const e = thrown(() => parseQubeSpec({ ...spec, extra: 1, image: { ...spec.image, tag: "x" } }));
    expect(e).to.be.instanceOf(UserError);
    expect(e.code).to.equal("SPEC_INVALID");
    expect(e.message).to.equal(
      'The qube spec is invalid: image: Unrecognized key: "tag"; (root): Unrecognized key: "extra"',
    );
  });

  it("rejects out-of-range and non-integer limits precisely", () => {
    const e = thrown(() =>
      parseQubeSpec({ ...spec, limits: { ...spec.limits, memoryBytes: 1024, pids: 10.5, wallTimeMs: 86_400_001 } }),
    );
    expect(e.message).to.equal(
      "The qube spec is invalid: limits.memoryBytes: Too small: expected number to be >=16777216; " +
        "limits.pids: Invalid input: expected int, received number; " +
        "limits.wallTimeMs: Too big: expected number to be <=86400000",
    );
  });

  it("rejects non-finite numbers", () => {
    const e = thrown(() => parseQubeSpec({ ...spec, limits: { ...spec.limits, pids: Number.NaN } }));
    expect(e.code).to.equal("SPEC_INVALID");
    expect(thrown(() => canonicalJson({ a: Number.POSITIVE_INFINITY })).code).to.equal("CANONICAL_INVALID");
  });

  it("rejects bad paths, unsorted lists, nested outputs and undeclared includes", () => {
    const cases: Array<[unknown, string]> = [
      [{ ...spec, outputs: ["../x"] }, 'outputs[0]: invalid path: segment ".." is not allowed'],
      [{ ...spec, outputs: ["/abs"] }, "outputs[0]: invalid path: is absolute"],
      [
        { ...spec, outputs: ["b", "a"], normalise: { ...spec.normalise, include: [] } },
        "outputs[1]: paths must be sorted by UTF-8 bytes",
      ],
      [
        { ...spec, outputs: ["a", "a b", "a/b"], normalise: { ...spec.normalise, include: [] } },
        'outputs[2]: lies below "a"',
      ],
      [
        { ...spec, normalise: { ...spec.normalise, include: ["other"] } },
        "normalise.include[0]: must be a declared output or lie below one",
      ],
      [{ ...spec, env: { "1X": "y" } }, "env.1X: Invalid key in record: must be an environment variable name"],
    ];
    for (const [value, details] of cases) {
      const e = thrown(() => parseQubeSpec(value));
      expect(e.code).to.equal("SPEC_INVALID");
      expect(e.message).to.contain(details);
    }
  });

  it("requires a majority quorum for fixed redundancy", () => {
    const e = thrown(() => parseQubeSpec({ ...spec, redundancy: { mode: "fixed", k: 4, quorum: 2 } }));
    expect(e.message).to.contain("redundancy.quorum: must be a majority of k");
    expect(parseQubeSpec({ ...spec, redundancy: { mode: "fixed", k: 1, quorum: 1 } }).redundancy).to.deep.equal({
      mode: "fixed",
      k: 1,
      quorum: 1,
    });
  });

  it("rejects a requestor that is not an Ed25519 peer id, and non-canonical times", () => {
    expect(thrown(() => parseQubeSpec({ ...spec, requestor: "QmNotAPeer" })).message).to.contain(
      "requestor: must be a canonical Ed25519 libp2p peer id",
    );
    expect(thrown(() => parseQubeSpec({ ...spec, expiresAt: "2026-12-01T00:00:00Z" })).message).to.contain("expiresAt");
  });

  it("checks expiry against a passed-in now", () => {
    expect(thrown(() => parseQubeSpec(spec, { now: new Date("2026-12-01T00:00:00.000Z") })).code).to.equal(
      "SPEC_EXPIRED",
    );
    expect(thrown(() => parseQubeSpec(spec, { now: new Date("2026-10-01T00:00:00.000Z") })).message).to.contain(
      "at most 30 days",
    );
    expect(parseQubeSpec(spec, { now: NOW })).to.deep.equal(spec);
  });

  it("decodes bytes with any whitespace and key order to the same id", () => {
    const pretty = enc(JSON.stringify(spec, null, 2));
    const shuffled = enc(JSON.stringify(Object.fromEntries(Object.entries(spec).reverse())));
    const a = decodeQubeSpec(pretty);
    const b = decodeQubeSpec(shuffled);
    expect(a.id).to.equal(qubeIdOf(spec)).and.to.equal(b.id);
    expect(a.id).to.match(/^aq1[0-9a-f]{64}$/);
  });

  it("decoders check the byte limit before parsing and report peer faults", () => {
    const e = thrown(() => decodeQubeSpec(enc(spec), { maxBytes: 10 }));
    expect(e.code).to.equal("TOO_LARGE");
    expect(e.fault).to.equal("peer");
    expect(thrown(() => decodeQubeSpec(enc("{"))).code).to.equal("JSON_INVALID");
    expect(thrown(() => parseJsonBytes(enc('{"a":1} '), { maxBytes: 100, requireCanonical: true })).code).to.equal(
      "NOT_CANONICAL",
    );
  });

  it("rejects a spec that validation would silently change (__proto__ in env)", () => {
    const bytes = enc(canonicalJson(spec).replace('"env":{}', '"env":{"__proto__":"x"}'));
    expect(thrown(() => decodeQubeSpec(bytes)).code).to.equal("SPEC_INVALID");
  });

  it("property: encode/decode round trips and the id is stable", () => {
    const pathArb = fc
      .stringMatching(/^[a-z]{1,8}(\/[a-z0-9._-]{1,8}){0,2}$/)
      .filter((p) => !p.split("/").includes(".."));
    fc.assert(
      fc.property(
        fc.uniqueArray(pathArb, { minLength: 1, maxLength: 5 }),
        fc.array(
          fc.string({ maxLength: 20 }).filter((s) => !s.includes("\u0000")),
          { minLength: 1, maxLength: 5 },
        ),
        fc.dictionary(
          fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,10}$/),
          fc.string({ maxLength: 10 }).filter((s) => !s.includes("\u0000")),
          {
            maxKeys: 5,
          },
        ),
        fc.integer({ min: 16 * 2 ** 20, max: 64 * 2 ** 30 }),
        fc.constantFrom("container", "microvm"),
        (outputs, command, env, memoryBytes, tier) => {
          const flat = outputs.filter((p, _, all) => !all.some((o) => o !== p && p.startsWith(`${o}/`)));
          let s: ReturnType<typeof createQubeSpec>;
          try {
            s = createQubeSpec(draft({ outputs: flat, command, env, limits: { memoryBytes }, tier }));
          } catch (error) {
            expect((error as UserError).code).to.equal("SPEC_INVALID"); // e.g. a fast-check string that is not NFC
            return;
          }
          const { spec: back, id } = decodeQubeSpec(encodeQubeSpec(s));
          expect(back).to.deep.equal(s);
          expect(id).to.equal(qubeIdOf(s));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("every spec field changes the id", () => {
    const base = qubeIdOf(spec);
    const variants = [
      { ...spec, command: [...spec.command, "x"] },
      { ...spec, limits: { ...spec.limits, pids: 65 } },
      { ...spec, deterministic: false },
      { ...spec, tier: "microvm" as const },
      { ...spec, requestor: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN" },
    ];
    for (const v of variants) expect(qubeIdOf(parseQubeSpec(v))).to.not.equal(base);
    expect(requestor.peerId).to.equal(spec.requestor);
  });
});
