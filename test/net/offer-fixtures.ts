/**
 * Offer-network fixtures: real libp2p nodes on 127.0.0.1 that announce real signed offers (what a provider
 * agent does on the network, without Docker), and short-lived requestor nodes that come and go.
 */
import { randomBytes } from "node:crypto";
import { multiaddr } from "@multiformats/multiaddr";
import { type BootstrapPeer, startBootstrapPeer } from "../../src/net/bootstrap-peer.js";
import { type AirqubeNode, createNode } from "../../src/net/node.js";
import { announceOffers } from "../../src/net/offers/announce.js";
import type { ClockSkew } from "../../src/net/offers/clock.js";
import { OFFER_TTL_MS } from "../../src/net/offers/constants.js";
import { OfferBook } from "../../src/net/offers/discovery.js";
import { type Offer, type SignedOffer, signOffer } from "../../src/net/offers/offer.js";
import { Identity, toHex } from "../../src/qube/index.js";

export function offerOf(identity: Identity, now: Date, addrs = ["/ip4/127.0.0.1/tcp/1"]): Offer {
  return {
    version: 1,
    provider: identity.peerId,
    addrs,
    sealingKey: toHex(identity.sealing.publicKey),
    payout: `0x${"22".repeat(20)}`,
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
    probes: { container: { reportHash: `sha256:${"ab".repeat(32)}`, pass: 35, fail: 0, inconclusive: 0, skipped: 2 } },
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + OFFER_TTL_MS).toISOString(),
  };
}

export interface FakeProvider {
  identity: Identity;
  node: AirqubeNode;
  /** Offers of others this provider has seen (relayed to requestors that ask, like the agent's). */
  book: OfferBook;
  stop(): Promise<void>;
}

/** A provider on the network: announces a fresh signed offer every `intervalMs` with its own clock. */
export async function startFakeProvider(
  bootstrap: string,
  options: {
    intervalMs?: number;
    clock?: () => Date;
    onClockSkew?: (skew: ClockSkew) => void;
    /** Peer exchange as the agent does it (the most providers dialled from verified offers). */
    peerExchange?: number;
  } = {},
): Promise<FakeProvider> {
  const identity = Identity.fromSeed(randomBytes(32));
  const clock = options.clock ?? (() => new Date());
  const node = await createNode({ identity, bootstrap: [bootstrap], clock });
  const book = new OfferBook(node, {
    now: clock,
    ...(options.peerExchange ? { peerExchange: options.peerExchange } : {}),
  });
  book.start();
  const current = (): SignedOffer =>
    signOffer(
      offerOf(
        identity,
        clock(),
        node.getMultiaddrs().map((ma) => ma.toString().replace(/\/p2p\/[^/]+$/, "")),
      ),
      identity,
    );
  const stopAnnouncing = await announceOffers(node, current, {
    intervalMs: options.intervalMs ?? 200,
    known: () => book.envelopes(),
    now: clock,
    ...(options.onClockSkew ? { onClockSkew: options.onClockSkew, clockCheckMs: 300 } : {}),
  });
  await node.dial(multiaddr(bootstrap));
  return {
    identity,
    node,
    book,
    stop: async () => {
      await stopAnnouncing();
      book.stop();
      await node.stop();
    },
  };
}

export async function startBootstrap(): Promise<BootstrapPeer & { addr: string }> {
  const peer = await startBootstrapPeer({ identity: Identity.fromSeed(randomBytes(32)) });
  return { ...peer, addr: `${peer.addrs[0]}` };
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes; returns the last answer. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * One short-lived requestor, like `airqube offers` or `airqube run` with a fresh data directory: a new peer
 * id that dials the bootstrap, is seen by its gossipsub, asks every provider for offers, and leaves.
 */
export async function visitAsFreshRequestor(bootstrap: BootstrapPeer, providers: FakeProvider[]): Promise<number> {
  const node = await createNode({ identity: Identity.fromSeed(randomBytes(32)) });
  const book = new OfferBook(node);
  try {
    book.start();
    await node.dial(multiaddr(bootstrap.addrs[0]!));
    const id = node.peerId.toString();
    // gossipsub knows a peer only once identify has told it the protocols: wait for that, as a real one would
    await until(() => bootstrap.node.services.pubsub.getPeers().some((p) => p.toString() === id), 5_000);
    // like `airqube run`: the requestor dials providers directly (here to ask for offers)
    for (const provider of providers) await node.dial(provider.node.getMultiaddrs()[0]!).catch(() => undefined);
    await book.queryConnected();
    return book.list().length;
  } finally {
    book.stop();
    await node.stop();
  }
}
