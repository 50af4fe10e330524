import { expect } from "chai";
import { decide } from "../../src/requestor/quorum.js";

const v = (provider: string, root: string | undefined) => ({ provider, root });
const policy = { quorum: 2, maxReplicas: 6 };

describe("requestor: quorum rule", () => {
  it("verifies when a quorum agrees and nobody dissents", () => {
    expect(decide([v("a", "r"), v("b", "r"), v("c", "r")], policy, 3)).to.deep.equal({
      status: "verified",
      root: "r",
      agreeing: ["a", "b", "c"],
      dissenting: [],
    });
  });

  it("asks for tie-breakers on dissent, then accepts a qualified majority", () => {
    const first = decide([v("a", "r"), v("b", "r"), v("c", "x")], policy, 3);
    expect(first).to.deep.equal({ status: "need-more", replicas: 1, reason: "dissent" });
    const later = decide([v("a", "r"), v("b", "r"), v("c", "x"), v("d", "r")], policy, 4);
    expect(later).to.deep.equal({ status: "verified", root: "r", agreeing: ["a", "b", "d"], dissenting: ["c"] });
    // two dissenters need two extra agreeing votes
    expect(decide([v("a", "r"), v("b", "r"), v("c", "x"), v("d", "y")], policy, 4)).to.deep.equal({
      status: "need-more",
      replicas: 2,
      reason: "dissent",
    });
  });

  it("counts a missing reveal against consensus", () => {
    expect(decide([v("a", "r"), v("b", undefined)], policy, 2).status).to.equal("need-more");
  });

  it("reports no consensus at the replica bound, with every group", () => {
    const result = decide([v("a", "r"), v("b", "x"), v("c", "y")], { quorum: 2, maxReplicas: 3 }, 3);
    expect(result.status).to.equal("no-consensus");
    expect(result.status === "no-consensus" && result.groups).to.deep.equal({ r: ["a"], x: ["b"], y: ["c"] });
  });

  it("never verifies a tie", () => {
    const tie = decide([v("a", "r"), v("b", "r"), v("c", "x"), v("d", "x")], { quorum: 2, maxReplicas: 4 }, 4);
    expect(tie.status).to.equal("no-consensus");
  });
});
