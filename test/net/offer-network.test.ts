import { randomBytes } from "node:crypto";
import { multiaddr } from "@multiformats/multiaddr";
import { expect } from "chai";
import { createNode, isLoopbackIp, LoopbackExemptSet } from "../../src/net/node.js";
import { OFFER_TOPIC, PEER_EXCHANGE_PEERS } from "../../src/net/offers/constants.js";
import { OfferBook } from "../../src/net/offers/discovery.js";
import { Identity } from "../../src/qube/index.js";
import {
  type FakeProvider,
  startBootstrap,
  startFakeProvider,
  until,
  visitAsFreshRequestor,
} from "./offer-fixtures.js";

/**
 * The devnet's "offer network dies after about 15 minutes". The failure point is not a time but a number of
 * peer ids that have come and gone from 127.0.0.1 (gossipsub keeps each departed peer's IP for an hour and
 * penalises every peer on an IP with more than 10): a devnet in use reaches it in about 15 minutes, this
 * test in a few seconds by running the requestors back to back with the real gossipsub parameters.
 */
describe("net: the offer network outlives requestors coming and going", function () {
  this.timeout(150_000); // 24 requestors one after another: about 20 s idle, over 60 s beside the heavy tests
  let bootstrap: Awaited<ReturnType<typeof startBootstrap>>;
  let providers: FakeProvider[] = [];

  before(async () => {
    bootstrap = await startBootstrap();
    for (let i = 0; i < 3; i++) providers.push(await startFakeProvider(bootstrap.addr));
  });
  after(async () => {
    for (const p of providers) await p.stop();
    providers = [];
    await bootstrap?.stop();
  });

  const bootstrapOffers = async () => {
    const node = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
    const book = new OfferBook(node);
    try {
      await node.dial(multiaddr(bootstrap.addr));
      await book.queryConnected();
      return book.list().length;
    } finally {
      await node.stop();
    }
  };

  it("after 24 short-lived requestors, the bootstrap still meshes the providers, relays their gossip and serves their offers", async () => {
    // the router's own view (public methods of the implementation, not of the GossipSub interface)
    const pubsub = bootstrap.node.services.pubsub as unknown as {
      getMeshPeers(topic: string): string[];
      getScore(peer: string): number;
    };
    expect(await until(() => pubsub.getMeshPeers(OFFER_TOPIC).length === 3, 10_000), "initial mesh").to.equal(true);
    // 24 requestors: with the old parameters the providers' scores on the bootstrap turned negative after the
    // 8th (mesh pruned: no relaying) and fell below the graylist threshold after the 12th (messages dropped)
    for (let i = 0; i < 24; i++) {
      const seen = await visitAsFreshRequestor(bootstrap, providers);
      expect(seen, `requestor ${i + 1}`).to.equal(3);
    }
    const churnEnded = Date.now();
    // a fresh node connected only to the bootstrap receives every provider's offer by gossip (no query)
    const node = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
    const gossiped = new OfferBook(node);
    try {
      gossiped.start();
      await node.dial(multiaddr(bootstrap.addr));
      const all = await until(() => gossiped.list().length === 3, 10_000);
      expect(all, `gossip through the bootstrap: ${gossiped.list().length} of 3 offers`).to.equal(true);
    } finally {
      gossiped.stop();
      await node.stop();
    }
    // the departed requestors are still remembered (that is gossipsub's defence, kept), yet nobody is penalised
    for (const p of providers) {
      expect(pubsub.getScore(p.identity.peerId), `score of ${p.identity.peerId}`).to.be.at.least(0);
    }
    // a heartbeat (1 s) later the mesh still holds every provider
    await new Promise((r) => setTimeout(r, 1_200));
    expect(pubsub.getMeshPeers(OFFER_TOPIC)).to.have.length(3);

    // the bootstrap itself still accepts the providers' new offers (its book is fresh, not a leftover)
    expect(
      await until(async () => (await bootstrapOffers()) === 3, 5_000),
      "bootstrap answers with the offers",
    ).to.equal(true);
    const fresh = await until(
      () =>
        providers.every((p) => {
          const known = bootstrap.book.list().find((k) => k.offer.provider === p.identity.peerId);
          return known !== undefined && Date.parse(known.offer.issuedAt) > churnEnded;
        }),
      5_000,
    );
    expect(fresh, "the bootstrap received offers issued after the churn").to.equal(true);
  });
});

describe("net: loopback peers are exempt from gossipsub's IP-colocation penalty, others are not", () => {
  it("recognises loopback addresses only", () => {
    for (const ip of ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"]) expect(isLoopbackIp(ip), ip).to.equal(true);
    for (const ip of ["10.0.0.1", "192.168.1.1", "1.2.3.4", "::2", "fe80::1", "128.0.0.1", "127.0.0.1.example", ""])
      expect(isLoopbackIp(ip), ip).to.equal(false);
    const set = new LoopbackExemptSet(["203.0.113.7"]);
    expect(set.has("127.0.0.1")).to.equal(true);
    expect(set.has("203.0.113.7")).to.equal(true);
    expect(set.has("203.0.113.8")).to.equal(false);
  });
});

/**
 * Discovery beyond bootstrap (peer exchange): providers dial the providers that verified offers name, so they
 * mesh with each other and offers keep flowing when the only bootnode is gone for good.
 */
describe("net: peer exchange keeps the providers' offer network alive without any bootnode", function () {
  this.timeout(60_000);
  const run = async (peerExchange: number) => {
    const bootstrap = await startBootstrap();
    const providers: FakeProvider[] = [];
    try {
      for (let i = 0; i < 3; i++) providers.push(await startFakeProvider(bootstrap.addr, { peerExchange }));
      const meshed = await until(() => providers.every((p) => p.book.list().length === 2), 10_000);
      expect(meshed, "every provider has the other two offers").to.equal(true);
      // let the peer-exchange dials (if any) and a gossipsub heartbeat happen, then lose the bootnode for good
      await new Promise((r) => setTimeout(r, 1_500));
      await bootstrap.stop();
      const gone = Date.now();
      // fresh offers (issued after the bootnode left) still reach every provider from every other provider
      const fresh = () =>
        providers.every((p) =>
          providers
            .filter((q) => q !== p)
            .every((q) => {
              const known = p.book.list().find((k) => k.offer.provider === q.identity.peerId);
              return known !== undefined && Date.parse(known.offer.issuedAt) > gone + 200;
            }),
        );
      const alive = await until(fresh, 5_000);
      // and a requestor that knows any one provider learns the whole market from it
      const node = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
      const book = new OfferBook(node);
      try {
        await node.dial(providers[0]!.node.getMultiaddrs()[0]!);
        await book.query(providers[0]!.identity.peerId);
        return { alive, learned: book.list().length };
      } finally {
        await node.stop();
      }
    } finally {
      for (const p of providers) await p.stop();
      await bootstrap.stop().catch(() => undefined);
    }
  };

  it("with peer exchange, fresh offers flow between providers after the bootnode is gone", async () => {
    const { alive, learned } = await run(PEER_EXCHANGE_PEERS);
    expect(alive, "fresh offers from every other provider").to.equal(true);
    expect(learned, "offers learned from one provider").to.equal(3);
  });

  it("without it (the control), the providers are cut off from each other's fresh offers", async () => {
    const { alive } = await run(0);
    expect(alive).to.equal(false);
  });
});
