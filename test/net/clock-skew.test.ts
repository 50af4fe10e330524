import { randomBytes } from "node:crypto";
import { multiaddr } from "@multiformats/multiaddr";
import { expect } from "chai";
import { createNode } from "../../src/net/node.js";
import { askPeerClock, type ClockSkew, describeSkew, median } from "../../src/net/offers/clock.js";
import { MAX_CLOCK_SKEW_MS } from "../../src/net/offers/constants.js";
import { OfferBook } from "../../src/net/offers/discovery.js";
import { signOffer, verifyOffer } from "../../src/net/offers/offer.js";
import { Identity } from "../../src/qube/index.js";
import { type FakeProvider, offerOf, startBootstrap, startFakeProvider, until } from "./offer-fixtures.js";

const skewed = (ms: number) => () => new Date(Date.now() + ms);

describe("net: offers tolerate a small clock skew, and reject a larger one by name", () => {
  const provider = Identity.fromSeed(Buffer.alloc(32, 7));
  const now = new Date("2026-11-26T10:00:00.000Z");
  const at = (offsetMs: number) => signOffer(offerOf(provider, new Date(now.getTime() + offsetMs)), provider);

  it(`accepts offers issued up to ${MAX_CLOCK_SKEW_MS / 1000} s in the future, refuses later ones with OFFER_FROM_FUTURE`, () => {
    expect(verifyOffer(at(MAX_CLOCK_SKEW_MS), now).provider).to.equal(provider.peerId);
    expect(() => verifyOffer(at(MAX_CLOCK_SKEW_MS + 1), now))
      .to.throw(/clock is ahead/)
      .with.property("code", "OFFER_FROM_FUTURE");
    expect(() => verifyOffer(at(120_000), now))
      .to.throw()
      .with.property("details")
      .that.matches(/issued 120 s ahead/);
  });

  it(`keeps an offer ${MAX_CLOCK_SKEW_MS / 1000} s past its expiry (a clock behind), not longer`, () => {
    // an offer lives OFFER_TTL_MS (60 s): issued 89.999 s ago it expired 29.999 s ago, within the tolerance
    expect(verifyOffer(at(-89_999), now).provider).to.equal(provider.peerId);
    expect(() => verifyOffer(at(-90_000), now))
      .to.throw()
      .with.property("code", "OFFER_EXPIRED");
  });

  it("takes the median of the peers' answers, so one liar cannot set the skew", () => {
    expect(median([5, -400_000, 7])).to.equal(5);
    expect(median([1, 3])).to.equal(2);
    const ahead: ClockSkew = { skewMs: 121_400, peers: 3 };
    expect(describeSkew(ahead)).to.match(
      /121 s ahead of its peers' \(median of 3\).*every offer of this provider is rejected/,
    );
    expect(describeSkew({ skewMs: -95_000, peers: 1 })).to.match(/95 s behind/);
  });
});

describe("net: a provider whose clock is off learns it, and requestors say what they dropped", function () {
  this.timeout(60_000);
  let bootstrap: Awaited<ReturnType<typeof startBootstrap>>;
  const providers: FakeProvider[] = [];
  const warnings = new Map<string, ClockSkew[]>();

  const start = async (name: string, skewMs: number) => {
    const list: ClockSkew[] = [];
    warnings.set(name, list);
    const p = await startFakeProvider(bootstrap.addr, {
      clock: skewed(skewMs),
      onClockSkew: (skew) => list.push(skew),
    });
    providers.push(p);
    return p;
  };

  before(async () => {
    bootstrap = await startBootstrap();
  });
  after(async () => {
    for (const p of providers) await p.stop();
    await bootstrap?.stop();
  });

  it("answers time queries with the node's clock", async () => {
    const ahead = await createNode({ identity: Identity.fromSeed(randomBytes(32)), clock: skewed(600_000) });
    const asker = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
    try {
      await asker.dial(ahead.getMultiaddrs()[0]!);
      const sample = await askPeerClock(asker, ahead.peerId.toString(), () => new Date());
      // we are 600 s behind that peer, give or take the round trip
      expect(sample.skewMs).to.be.within(-601_000, -599_000);
      expect(sample.rttMs).to.be.lessThan(2_000);
    } finally {
      await asker.stop();
      await ahead.stop();
    }
  });

  it("a provider 2 min ahead has its offers dropped, is warned; one 20 s ahead is accepted and not warned", async () => {
    const fast = await start("fast", 120_000);
    const close = await start("close", 20_000);
    const honest = await start("honest", 0);
    // the provider learns it from its peers' clocks (checks every 300 ms here, every 60 s by default)
    expect(await until(() => warnings.get("fast")!.length > 0, 10_000), "fast provider warned").to.equal(true);
    const warning = warnings.get("fast")![0]!;
    expect(warning.skewMs).to.be.within(119_000, 121_000);
    expect(warning.peers).to.be.at.least(1);
    expect(describeSkew(warning)).to.match(/120 s ahead/);

    // a requestor connected to the bootstrap and (directly) to the fast provider: it keeps the two good offers
    // and says why it dropped the third (the bootstrap rejects that one at gossip validation and never
    // forwards it, so only the fast provider's own answer brings it)
    const node = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
    const book = new OfferBook(node);
    try {
      book.start();
      await node.dial(multiaddr(bootstrap.addr));
      await node.dial(fast.node.getMultiaddrs()[0]!);
      const settled = await until(async () => {
        await book.queryConnected();
        return book.list().length === 2 && book.droppedOffers().count === 1;
      }, 10_000);
      const dropped = book.droppedOffers();
      expect(settled, JSON.stringify({ known: book.list().length, dropped })).to.equal(true);
      expect(book.list().map((k) => k.offer.provider)).to.have.members([close.identity.peerId, honest.identity.peerId]);
      expect(dropped.byCode).to.deep.equal({ OFFER_FROM_FUTURE: 1 });
      expect(dropped.offers[0]!.provider).to.equal(fast.identity.peerId);
      expect(dropped.offers[0]!.details).to.match(/issued 1[12]\d s ahead/);
    } finally {
      book.stop();
      await node.stop();
    }
    // the bootstrap dropped it too: nobody serves that offer
    expect(bootstrap.book.list().map((k) => k.offer.provider)).not.to.include(fast.identity.peerId);
    expect(warnings.get("close")).to.deep.equal([]);
    expect(warnings.get("honest")).to.deep.equal([]);
  });

  it("a provider 2 min behind is warned too (its offers arrive expired) and dropped as OFFER_EXPIRED", async () => {
    const slow = await start("slow", -120_000);
    expect(await until(() => warnings.get("slow")!.length > 0, 10_000), "slow provider warned").to.equal(true);
    expect(warnings.get("slow")![0]!.skewMs).to.be.within(-121_000, -119_000);
    expect(describeSkew(warnings.get("slow")![0]!)).to.match(/120 s behind/);
    const dropped = await until(
      () => bootstrap.book.droppedOffers().offers.some((o) => o.provider === slow.identity.peerId),
      10_000,
    );
    expect(dropped, JSON.stringify(bootstrap.book.droppedOffers())).to.equal(true);
    expect(bootstrap.book.droppedOffers().offers.find((o) => o.provider === slow.identity.peerId)!.code).to.equal(
      "OFFER_EXPIRED",
    );
  });
});
