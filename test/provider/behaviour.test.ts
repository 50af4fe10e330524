import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import { parseBehaviour, parseIntermittentLie, seededDraw } from "../../src/provider/behaviour.js";
import { behaviourSchema } from "../../src/provider/config.js";
import { tmp } from "../helpers/network.js";

const sequence = (name: string, n: number) => {
  const lies = parseIntermittentLie(name)!;
  return Array.from({ length: n }, (_, i) => (lies(i + 1) ? "L" : "h")).join("");
};

describe("provider: intermittent adversaries (lie:every=N, lie:p=P)", () => {
  it("lie:every=N lies on the N-th, 2N-th, ... qube only", () => {
    expect(sequence("lie:every=3", 9)).to.equal("hhLhhLhhL");
    expect(sequence("lie:every=1", 3)).to.equal("LLL");
  });

  it("lie:p=P is seeded: the same seed gives the same sequence, another seed another, at about rate P", () => {
    const a = sequence("lie:p=0.3,seed=7", 2000);
    expect(sequence("lie:p=0.3,seed=7", 2000)).to.equal(a);
    expect(sequence("lie:p=0.3,seed=8", 2000)).not.to.equal(a);
    expect(sequence("lie:p=0.3", 50)).to.equal(sequence("lie:p=0.3,seed=0", 50));
    const rate = [...a].filter((c) => c === "L").length / a.length;
    // binomial(2000, 0.3): sd ≈ 0.0102, so ±0.05 is about 5 sd
    expect(rate).to.be.within(0.25, 0.35);
    expect(sequence("lie:p=0", 100)).to.equal("h".repeat(100));
    expect(sequence("lie:p=1", 100)).to.equal("L".repeat(100));
    for (let n = 1; n < 100; n++) expect(seededDraw(3, n)).to.be.within(0, 1 - Number.EPSILON);
  });

  it("the config accepts the new forms and refuses malformed ones", () => {
    for (const ok of ["lie", "lie:every=2", "lie:every=1000", "lie:p=0.3", "lie:p=0.25,seed=42", "lie:p=1", "honest"])
      expect(behaviourSchema.safeParse(ok).success, ok).to.equal(true);
    for (const bad of [
      "lie:every=0",
      "lie:every=-1",
      "lie:p=1.5",
      "lie:p=.3",
      "lie:p=0.3,seed=x",
      "lie:sometimes",
      "lie:",
    ])
      expect(behaviourSchema.safeParse(bad).success, bad).to.equal(false);
    expect(parseIntermittentLie("lie")).to.equal(undefined);
  });

  it("changes the outputs only on the qubes it lies on, and commits to what is on disk then", async () => {
    const liar = parseBehaviour("lie:every=2");
    const honestFiles = [{ path: "output/result", size: 3, sha256: "a".repeat(64) }];
    for (const round of [1, 2, 3]) {
      const dir = join(tmp("aq-behaviour-"), "output");
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "result"), "42\n");
      await liar.tamper(dir, ["result"]);
      const listed = await liar.listOutputs(dir, honestFiles);
      const content = await readFile(join(dir, "result"), "utf8");
      if (round === 2) {
        expect(content).to.equal("42\n\nlie");
        expect(listed).to.have.length(1);
        expect(listed[0]!.path).to.equal("result");
        expect(listed[0]!.size).to.equal(content.length);
      } else {
        expect(content).to.equal("42\n");
        // honest rounds report what the sandbox reported, like an honest provider
        expect(listed).to.deep.equal([{ path: "result", size: 3, sha256: "a".repeat(64) }]);
      }
    }
  });
});
