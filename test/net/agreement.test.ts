import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { type AgreementTerms, countersign, proposeAgreement, verifyAgreement } from "../../src/net/agreement.js";
import { type Offer, signOffer, verifyOffer } from "../../src/net/offers/offer.js";
import { Identity, signEnvelope, toHex } from "../../src/qube/index.js";

const requestor = Identity.fromSeed(randomBytes(32));
const provider = Identity.fromSeed(randomBytes(32));
const other = Identity.fromSeed(randomBytes(32));
const terms: AgreementTerms = {
  version: 1,
  qubeId: `aq1${"ab".repeat(32)}`,
  requestor: requestor.peerId,
  provider: provider.peerId,
  price: "1000",
  currency: "GLM",
  deadline: "2026-11-26T12:00:00.000Z",
  nonce: "00".repeat(16),
  requestorSealingKey: toHex(requestor.sealing.publicKey),
};

describe("net: agreements signed by both sides", () => {
  it("verifies a proposal countersigned by the named provider", () => {
    const agreement = countersign(proposeAgreement(terms, requestor), provider);
    expect(verifyAgreement(agreement).provider.payload).to.deep.equal(terms);
  });

  it("refuses to countersign a proposal naming another provider", () => {
    expect(() => countersign(proposeAgreement(terms, requestor), other))
      .to.throw()
      .with.property("code", "AGREEMENT_INVALID");
  });

  it("rejects halves that differ, a half signed by someone else, and a proposal not signed by its requestor", () => {
    const proposal = proposeAgreement(terms, requestor);
    const cheaper = signEnvelope("agreement", { ...terms, price: "1" }, provider);
    expect(() => verifyAgreement({ requestor: proposal, provider: cheaper }))
      .to.throw()
      .with.property("code", "AGREEMENT_INVALID");
    const byOther = signEnvelope("agreement", terms, other);
    expect(() => verifyAgreement({ requestor: proposal, provider: byOther }))
      .to.throw()
      .with.property("code", "SIGNER_MISMATCH");
    const forged = signEnvelope("agreement", terms, other);
    expect(() => verifyAgreement({ requestor: forged, provider: proposal }))
      .to.throw()
      .with.property("code", "AGREEMENT_INVALID");
  });

  it("rejects a signature of another kind replayed as an agreement", () => {
    const offerSigned = signEnvelope("offer", terms, requestor);
    expect(() =>
      verifyAgreement({
        requestor: { ...offerSigned, kind: "agreement" },
        provider: proposeAgreement(terms, provider),
      }),
    ).to.throw();
  });
});

describe("net: signed offers", () => {
  const now = new Date("2026-11-26T10:00:00Z");
  const offer: Offer = {
    version: 1,
    provider: provider.peerId,
    addrs: ["/ip4/127.0.0.1/tcp/4001"],
    sealingKey: toHex(provider.sealing.publicKey),
    payout: `0x${"11".repeat(20)}`,
    tiers: ["container"],
    resources: {
      milliCpus: 1000,
      memoryBytes: 1 << 30,
      pids: 256,
      scratchBytes: 1 << 30,
      maxWallTimeMs: 60_000,
      maxConcurrent: 2,
      available: 2,
    },
    price: { currency: "GLM", start: "1", perSecond: "1" },
    probes: { container: { reportHash: `sha256:${"cd".repeat(32)}`, pass: 35, fail: 0, inconclusive: 0, skipped: 2 } },
    issuedAt: "2026-11-26T09:59:00.000Z",
    expiresAt: "2026-11-26T10:01:00.000Z",
  };

  it("accepts a valid offer signed by its provider", () => {
    expect(verifyOffer(signOffer(offer, provider), now).provider).to.equal(provider.peerId);
  });

  it("rejects an expired offer, one signed by someone else, one without a probe result for a tier, a tampered one", () => {
    expect(() => verifyOffer(signOffer(offer, provider), new Date("2026-11-26T10:02:00Z")))
      .to.throw()
      .with.property("code", "OFFER_EXPIRED");
    expect(() => verifyOffer(signEnvelope("offer", offer, other), now))
      .to.throw()
      .with.property("code", "OFFER_INVALID");
    expect(() => verifyOffer(signOffer({ ...offer, tiers: ["container", "microvm"] }, provider), now))
      .to.throw()
      .with.property("code", "OFFER_INVALID");
    const signed = signOffer(offer, provider);
    expect(() => verifyOffer({ ...signed, payload: { ...signed.payload, price: { ...offer.price, start: "0" } } }, now))
      .to.throw()
      .with.property("code", "SIGNATURE_INVALID");
  });
});
