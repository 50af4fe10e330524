import { expect } from "chai";
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
});
