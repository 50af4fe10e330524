import { expect } from "chai";
import { describeResult } from "../../src/cli/run-command.js";
import type { RunReport } from "../../src/requestor/requestor.js";

const report = (agreeing: string[]): RunReport => ({
  qubeId: `sha256:${"ab".repeat(32)}`,
  status: "verified",
  verified: true,
  outputsRoot: `sha256:${"cd".repeat(32)}`,
  agreeing,
  dissenting: [],
  answers: [],
  failures: [{ provider: "12D3KooWgone", code: "PROVIDER_UNREACHABLE", message: "Could not reach the provider" }],
  outputs: [],
  outcome: { kind: "exited", exitCode: 0, missingOutputs: [], stderrTail: "" },
});

describe("cli: a run with fewer answers than the redundancy asked for says so", () => {
  it("k = 3 with two answers: verified by 2/2, and only 2 of the 3 providers asked for answered", () => {
    const [head] = describeResult(report(["12D3KooWa", "12D3KooWb"]), { output: "out", redundancy: 3 });
    expect(head).to.match(/^VERIFIED by 2\/2 providers \(only 2 of the 3 providers asked for answered\): /);
  });

  it("k answers: no note", () => {
    const [head] = describeResult(report(["12D3KooWa", "12D3KooWb", "12D3KooWc"]), { output: "out", redundancy: 3 });
    expect(head).to.match(/^VERIFIED by 3\/3 providers: /);
  });
});
