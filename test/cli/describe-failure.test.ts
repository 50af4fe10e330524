import { expect } from "chai";
import { describeLog, MAX_LOG_LINES } from "../../src/cli/exit-status.js";
import { describeFailure } from "../../src/cli/run-command.js";
import { AdmissionRefusedError } from "../../src/net/exchange/errors.js";

describe("cli: one line per provider that refused or failed", () => {
  const provider = "12D3KooWDFmfdTcMeWACRhr5bpM4kQCw6KUQM5voRjcuhy8bnvn1";

  it("an admission refusal (paid runs ask first) reads as a refusal with the provider's own code", () => {
    const e = new AdmissionRefusedError("IMAGE_UNAVAILABLE", "image sha256:ab is not available on this provider");
    const line = describeFailure({
      provider,
      code: e.code,
      message: e.shortMessage,
      ...(e.details ? { details: e.details } : {}),
    });
    expect(line).to.equal(
      "  12D3…vnn1 refused: IMAGE_UNAVAILABLE: image sha256:ab is not available on this provider".replace(
        "vnn1",
        provider.slice(-4),
      ),
    );
  });

  it("a refused proposal and a failure keep their own forms", () => {
    expect(
      describeFailure({ provider, code: "PROPOSAL_REJECTED", message: "x", details: "AT_CAPACITY: full" }),
    ).to.contain("refused: AT_CAPACITY: full");
    expect(describeFailure({ provider, code: "PROVIDER_FAILED", message: "The provider failed" })).to.match(
      /failed: The provider failed \[PROVIDER_FAILED\]$/,
    );
  });

  it("a provider's code, message and details reach the terminal without escape sequences, bounded", () => {
    const hostile = "\u001b]0;owned\u0007\u001b[2J\u001b[1A\r\nFAKE: VERIFIED\u202e";
    for (const f of [
      { provider, code: "PROPOSAL_REJECTED", message: "x", details: hostile },
      { provider, code: `X${hostile}`, message: "refused by the provider", details: hostile.repeat(1000) },
      { provider, code: "PROVIDER_FAILED", message: hostile, details: hostile },
    ]) {
      const line = describeFailure(f);
      expect(line).to.not.match(/[\p{Cc}\u202e]/u);
      expect(line.length).to.be.below(700);
      expect(line).to.contain("FAKE: VERIFIED"); // the text itself is kept, only its controls go
    }
  });

  it("a provider's stdout tail is shown printable and bounded: the last lines, each cut, no escape sequence", () => {
    const lines = describeLog(
      "stdout (unverified)",
      `${"old\n".repeat(MAX_LOG_LINES + 5)}\u001b]0;owned\u0007\u001b[1A\u001b[2Kresult: ok\n${"x".repeat(5000)}\n`,
    );
    expect(lines[0]).to.equal("  stdout (unverified):");
    expect(lines[1]).to.equal("    … 7 earlier lines (--json has them)");
    expect(lines).to.have.length(2 + MAX_LOG_LINES);
    for (const line of lines) {
      expect(line).to.not.match(/\p{Cc}/u);
      expect(line.length).to.be.at.most(1004);
    }
    expect(lines.at(-2)).to.equal("    ?]0;owned??[1A?[2Kresult: ok");
  });
});
