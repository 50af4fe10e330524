/**
 * Discovery stops when enough offers the run can use arrived, not when enough offers arrived: a run that names
 * its provider (`airqube probe --provider`) or caps the price must not give up on the first offer it refuses.
 * Real libp2p nodes on 127.0.0.1; offers are placed in the requestor's book as gossip would place them.
 */
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { type AirqubeNode, createNode } from "../../src/net/node.js";
import { signOffer } from "../../src/net/offers/offer.js";
import { Identity, type VerifiedQubeSpec } from "../../src/qube/index.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { offerOf } from "./offer-fixtures.js";

const SPEC = { spec: { tier: "container", limits: { wallTimeMs: 1_000 } } } as unknown as VerifiedQubeSpec;
const fresh = () => Identity.fromSeed(randomBytes(32));
const addrsOf = (node: AirqubeNode) => node.getMultiaddrs().map((ma) => ma.toString().replace(/\/p2p\/.*/, ""));

describe("net: discovery waits for offers the run accepts", function () {
  this.timeout(30_000);
  const nodes: AirqubeNode[] = [];
  let market: Libp2pMarket | undefined;
  afterEach(async () => {
    await market?.close();
    await Promise.all(nodes.splice(0).map((n) => n.stop()));
  });

  it("an offer the run refuses does not end discovery; the accepted one arriving later is found", async () => {
    market = await Libp2pMarket.connect({ identity: fresh(), bootstrap: [], discoveryMs: 8_000 });
    const other = fresh();
    const wanted = fresh();
    for (const id of [other, wanted]) nodes.push(await createNode({ identity: id }));
    market.offers.add(signOffer(offerOf(other, new Date(), addrsOf(nodes[0]!)), other));
    const late = setTimeout(
      () => market!.offers.add(signOffer(offerOf(wanted, new Date(), addrsOf(nodes[1]!)), wanted)),
      1_000,
    );
    try {
      const t0 = performance.now();
      const found = await market.findProviders(SPEC, { wanted: 1, accept: (c) => c.id === wanted.peerId });
      const ms = performance.now() - t0;
      expect(found.map((c) => c.id).sort()).to.deep.equal([other.peerId, wanted.peerId].sort());
      // it stopped because the accepted offer came, long before the discovery time was up
      expect(ms).to.be.greaterThan(900).and.lessThan(6_000);
    } finally {
      clearTimeout(late);
    }
  });

  it("without a rule, the first offers are enough (the hint counts every candidate)", async () => {
    market = await Libp2pMarket.connect({ identity: fresh(), bootstrap: [], discoveryMs: 8_000 });
    const one = fresh();
    nodes.push(await createNode({ identity: one }));
    market.offers.add(signOffer(offerOf(one, new Date(), addrsOf(nodes[0]!)), one));
    const t0 = performance.now();
    const found = await market.findProviders(SPEC, { wanted: 1 });
    expect(found.map((c) => c.id)).to.deep.equal([one.peerId]);
    expect(performance.now() - t0).to.be.lessThan(3_000);
  });
});
