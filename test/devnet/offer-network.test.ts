import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { Devnet } from "../../src/devnet/devnet.js";
import { Identity } from "../../src/qube/index.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { PROBE_CACHE } from "../helpers/network.js";

const until = async (check: () => boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs;
  while (!check() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return check();
};

/**
 * The devnet's offer network used to die after about 15 minutes of use: every requestor that came and went
 * (`airqube run`, `airqube offers` with a fresh data directory) left a peer id on 127.0.0.1 that gossipsub
 * remembers for an hour, and beyond 10 per IP it penalised every peer on it, providers included (see
 * LoopbackExemptSet in src/net/node.ts). 16 requestors back to back cross that point in seconds.
 */
describe("devnet: the offer network outlives requestors coming and going @docker", function () {
  this.timeout(240_000);

  it("after 16 short-lived requestors a fresh one still receives every offer by gossip through the bootstrap", async () => {
    const devnet = await Devnet.start({ providers: 3, probeCache: PROBE_CACHE });
    try {
      for (let i = 0; i < 16; i++) {
        // like `airqube offers` with a new data directory: connect, ask, leave
        const market = await Libp2pMarket.connect({
          identity: Identity.fromSeed(randomBytes(32)),
          bootstrap: [devnet.bootstrap],
        });
        try {
          // (the first one may come before every provider's first offer reached the bootstrap)
          for (let tries = 0; tries < 50 && market.offers.list().length < 3; tries++) {
            await market.offers.queryConnected();
            await new Promise((r) => setTimeout(r, 200));
          }
          expect(market.offers.list(), `requestor ${i + 1}`).to.have.length(3);
          // stay until the bootstrap's gossipsub has counted this peer (identify), as a real requestor would
          await new Promise((r) => setTimeout(r, 400));
        } finally {
          await market.close();
        }
      }
      // a fresh requestor that only listens: offers reach it by gossip relayed by the bootstrap
      const listener = await Libp2pMarket.connect({
        identity: Identity.fromSeed(randomBytes(32)),
        bootstrap: [devnet.bootstrap],
      });
      try {
        const gossiped = await until(() => listener.offers.list().length === 3, 15_000);
        expect(gossiped, `${listener.offers.list().length} of 3 offers by gossip`).to.equal(true);
        const issuedAfter = Date.now() - 1_000;
        // and the offers keep coming: the bootstrap still accepts the providers' messages
        const fresh = await until(
          () => listener.offers.list().every((k) => Date.parse(k.offer.issuedAt) > issuedAfter),
          10_000,
        );
        expect(fresh, "offers issued after the churn").to.equal(true);
      } finally {
        await listener.close();
      }
    } finally {
      await devnet.stop(3000);
    }
  });
});
