import { expect } from "chai";
import { describeEnd, exitStatusOf } from "../../src/cli/exit-status.js";
import { describePayment } from "../../src/cli/payment-report.js";
import { AnswerCounter, describeFailure, OutputsArriving, plainProgressLine } from "../../src/cli/progress.js";
import { earnedLine } from "../../src/cli/provider-command.js";
import { formatBytes } from "../../src/cli/units.js";
import { AdmissionRefusedError } from "../../src/net/exchange/errors.js";
import { voteKey } from "../../src/requestor/outcome.js";
import type { PaymentReport } from "../../src/requestor/payments.js";

const provider = "12D3KooWDFmfdTcMeWACRhr5bpM4kQCw6KUQM5voRjcuhy8bnvn1";

describe("cli: each provider's reason is printed once, in one form", () => {
  it("plain progress prints an admission refusal as its summary line (refused, not failed), and counts no answer", () => {
    const e = new AdmissionRefusedError("IMAGE_UNAVAILABLE", "image sha256:ab is not available on this provider");
    const event = {
      type: "providerFailed" as const,
      provider,
      code: e.code,
      message: e.shortMessage,
      ...(e.details ? { details: e.details } : {}),
    };
    const counter = new AnswerCounter(3);
    const line = plainProgressLine(event, counter);
    expect(line).to.equal(describeFailure(event));
    expect(line).to.equal("  12D3…nvn1 refused: IMAGE_UNAVAILABLE: image sha256:ab is not available on this provider");
    expect(counter.toString()).to.equal("0/3");
    expect(
      plainProgressLine({ type: "resultReceived", provider, outputsRoot: `sha256:${"a".repeat(64)}` }, counter),
    ).to.match(/^airqube: \[1\/3 answered\] /);
  });
});

describe("cli: the bytes of outputs arriving", () => {
  it("are a progress line in a person's units, not an answer", () => {
    const counter = new AnswerCounter(3);
    const line = plainProgressLine(
      { type: "outputsReceiving", provider: "12D3KooWxyzabcdefgh", bytes: 3_221_225 },
      counter,
    );
    expect(line).to.equal("airqube: receiving the outputs of …abcdefgh: 3.1 MiB so far");
    expect(counter.answered).to.equal(0);
    expect([0, 1023, 1024, 5 * 1024 ** 3].map(formatBytes)).to.deep.equal(["0 B", "1023 B", "1.0 KiB", "5.0 GiB"]);
    // the live status sums the providers still sending, and forgets one once its answer is in
    const arriving = new OutputsArriving();
    expect(arriving.observe({ type: "outputsReceiving", provider: "a", bytes: 1024 ** 2 })).to.equal(
      "receiving the outputs: 1.0 MiB so far from 1 provider",
    );
    expect(arriving.observe({ type: "outputsReceiving", provider: "b", bytes: 2 * 1024 ** 2 })).to.equal(
      "receiving the outputs: 3.0 MiB so far from 2 providers",
    );
    expect(arriving.observe({ type: "resultReceived", provider: "a", outputsRoot: "sha256:00" })).to.equal(undefined);
    expect(arriving.observe({ type: "outputsReceiving", provider: "b", bytes: 3 * 1024 ** 2 })).to.equal(
      "receiving the outputs: 3.0 MiB so far from 1 provider",
    );
  });
});

describe("cli: an escrow job's head line says what happened to the money", () => {
  const base: PaymentReport = {
    jobId: `0x${"1".repeat(64)}`,
    qubeId: "aq1x",
    providers: ["0xabc"],
    budget: "21000000000000000",
    price: "7000000000000000",
    stake: "7000000000000000",
    lockTx: `0x${"2".repeat(64)}`,
    status: "settled",
    settleTx: `0x${"3".repeat(64)}`,
    credits: [{ account: "0xAbC", amount: "14000000000000000" }],
    slashed: [],
  };
  const names = new Map([["0xabc", "12D3…abc"]]);

  it("settled: PAID on agreement, with the credits", () => {
    const lines = describePayment(base, names);
    expect(lines[0]).to.equal(`PAID on agreement: escrow job ${base.jobId}`);
    expect(lines).to.include("    12D3…abc credited 0.014 GLM");
  });

  it("settled with every credit back to the requestor (no provider answered): REFUNDED, not PAID", () => {
    const lines = describePayment({ ...base, credits: [{ account: "0xdef", amount: base.budget }] }, names);
    expect(lines[0]).to.equal(`REFUNDED: escrow job ${base.jobId} settled with no provider paid`);
  });

  it("an interrupted qube's job still open is STILL LOCKED (never PAID), with a readable time", () => {
    const { settleTx: _, ...rest } = base;
    const lines = describePayment({ ...rest, status: "pending", credits: [], notBefore: 1_795_992_290 }, names);
    expect(lines[0]).to.equal(`STILL LOCKED: escrow job ${base.jobId}`);
    expect(lines.join("\n")).not.to.contain("PAID");
    expect(lines[2]).to.contain("allowed from 2026-11-29T22:44:50.000Z");
  });

  it("reclaimed: REFUNDED; abandoned: NOT LOCKED, and no claim that a budget was locked", () => {
    expect(describePayment({ ...base, status: "reclaimed" }, names)[0]).to.equal(
      `REFUNDED: escrow job ${base.jobId} reclaimed (no agreement paid for)`,
    );
    const abandoned = describePayment({ ...base, status: "abandoned", credits: [] }, names);
    expect(abandoned[0]).to.equal(`NOT LOCKED: escrow job ${base.jobId}`);
    expect(abandoned.join("\n")).not.to.contain("budget");
  });
});

describe("cli: the provider's one earnings figure is named for what it is", () => {
  it("says the credits hold stakes returned, not only prices earned", () => {
    expect(earnedLine(72_400_000_000_000_000n, 6)).to.equal(
      "credited by the escrow: 0.0724 GLM over 6 credits (prices paid plus stakes returned)",
    );
    expect(earnedLine(0n, 1)).not.to.match(/^earned/);
  });
});

describe("cli: VERIFIED means the providers agree on the outcome, not only on the outputs", () => {
  it("the vote is the outputs root and how the process ended: another exit status or a time-out dissents", () => {
    const root = `sha256:${"a".repeat(64)}`;
    const exited3 = voteKey({ outputsRoot: root, exitCode: 3, statement: undefined });
    expect(exited3).to.equal(`${root}#exited:3`);
    expect(voteKey({ outputsRoot: root, exitCode: 0, statement: undefined })).not.to.equal(exited3);
    expect(voteKey({ outputsRoot: root, exitCode: -1, statement: undefined })).to.equal(`${root}#unknown:-`);
  });

  it("refused outputs vote on the refusal: two different refusals dissent", () => {
    const root = `sha256:${"a".repeat(64)}`;
    const refused = (outputRefusal: "OUTPUT_TOO_MANY_FILES" | "OUTPUT_TOO_LARGE") =>
      voteKey({
        outputsRoot: root,
        exitCode: -1,
        statement: { payload: { outcome: "outputs-refused", exitCode: null, outputRefusal } } as never,
      });
    expect(refused("OUTPUT_TOO_MANY_FILES")).to.equal(`${root}#outputs-refused:OUTPUT_TOO_MANY_FILES`);
    expect(refused("OUTPUT_TOO_LARGE")).not.to.equal(refused("OUTPUT_TOO_MANY_FILES"));
  });
});

describe("cli: exit statuses like docker run's", () => {
  it("the qube's own code; 124 time-out, 137 OOM or killed, 123 a declared output missing after exit 0, 125 unknown", () => {
    const none: string[] = [];
    expect(exitStatusOf({ kind: "exited", exitCode: 3, missingOutputs: ["result"] })).to.equal(3);
    expect(exitStatusOf({ kind: "exited", exitCode: 0, missingOutputs: ["result"] })).to.equal(123);
    expect(exitStatusOf({ kind: "exited", exitCode: 0, missingOutputs: none })).to.equal(0);
    expect(exitStatusOf({ kind: "timeout", exitCode: null, missingOutputs: ["result"] })).to.equal(124);
    expect(exitStatusOf({ kind: "oom", exitCode: null, missingOutputs: none })).to.equal(137);
    expect(exitStatusOf({ kind: "killed", exitCode: null, missingOutputs: none })).to.equal(137);
    expect(exitStatusOf({ kind: "unknown", exitCode: null, missingOutputs: none })).to.equal(125);
    expect(exitStatusOf({ kind: "outputs-refused", exitCode: null, missingOutputs: none })).to.equal(123);
    expect(describeEnd({ kind: "outputs-refused", exitCode: null, outputRefusal: "OUTPUT_FILE_TOO_LARGE" })).to.equal(
      "the qube's outputs were refused, none delivered: OUTPUT_FILE_TOO_LARGE (an output file is larger than the per-file limit)",
    );
    expect(describeEnd({ kind: "oom", exitCode: null })).to.equal(
      "the qube was killed at its memory limit (out of memory)",
    );
    expect(describeEnd({ kind: "exited", exitCode: 143 })).to.equal(
      "the qube exited with status 143 (killed by signal 15 SIGTERM)",
    );
  });
});
