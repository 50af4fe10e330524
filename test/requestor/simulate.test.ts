import { expect } from "chai";
import { majorityVotingError, simulate } from "../../src/requestor/simulate.js";

describe("requestor: verification simulator", () => {
  it("matches Sarmenta's analytic error of m-first majority voting within statistical bounds", () => {
    for (const m of [2, 3]) {
      const qubes = 40_000;
      // a large pool approximates the formula's sampling with replacement
      const result = simulate({
        providers: 10_000,
        saboteurs: 0.2,
        qubes,
        policy: `fixed:${m}`,
        collude: true,
        seed: m,
      });
      const expected = majorityVotingError(m, 0.2);
      const sigma = Math.sqrt((expected * (1 - expected)) / qubes);
      expect(Math.abs(result.errorRate - expected), `m=${m}: ${result.errorRate} vs ${expected}`).to.be.below(
        4 * sigma,
      );
    }
  });

  it("reproduces the published figures of the formula", () => {
    expect(majorityVotingError(2, 0.2)).to.be.closeTo(0.104, 1e-9);
    expect(majorityVotingError(3, 0.2)).to.be.closeTo(0.05792, 1e-9);
  });

  it("adaptive replication at f = 0.2 keeps the error at or below 1e-3 at a cost at or below 1.2x", () => {
    for (const collude of [false, true]) {
      const result = simulate({
        providers: 100,
        saboteurs: 0.2,
        qubes: 30_000,
        policy: "adaptive",
        collude,
        excludeQubes: 2_000,
        seed: 7,
      });
      expect(result.errorRate, JSON.stringify(result)).to.be.at.most(1e-3);
      expect(result.costFactor, JSON.stringify(result)).to.be.at.most(1.2);
    }
  });

  it("counts wrong results when saboteurs are a colluding majority (the simulator can fail)", () => {
    const result = simulate({
      providers: 100,
      saboteurs: 0.6,
      qubes: 5_000,
      policy: "fixed:2",
      collude: true,
      seed: 3,
    });
    expect(result.errorRate).to.be.above(0.5);
  });
});
