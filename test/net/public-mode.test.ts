/**
 * Public mode on one machine (loopback only): the address policy, address errors before anything slow, the
 * announce filter, hostile offers that name loopback, liveness before money, gossip validation of offers with
 * scoring, and a bootnode restarted with the same key healing the network. The same behaviours across real
 * hosts (network namespaces) are in public-network.test.ts.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { multiaddr } from "@multiformats/multiaddr";
import { expect } from "chai";
import { addressScope, mayAnnounce, mayDial } from "../../src/net/addresses.js";
import { startBootstrapPeer } from "../../src/net/bootstrap-peer.js";
import { loadOrCreateKeyFile } from "../../src/net/keys.js";
import { type AirqubeNode, awaitRelayAddress, checkNodeAddresses, createNode } from "../../src/net/node.js";
import { MAX_OFFER_BYTES, OFFER_TOPIC } from "../../src/net/offers/constants.js";
import { OfferBook } from "../../src/net/offers/discovery.js";
import { signOffer } from "../../src/net/offers/offer.js";
import { checkGossipedOffer } from "../../src/net/offers/validator.js";
import { Identity, type VerifiedQubeSpec } from "../../src/qube/index.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { offerOf, until } from "./offer-fixtures.js";

const fresh = () => Identity.fromSeed(randomBytes(32));
/** What findProviders reads of a spec: the tier and the wall-time limit. */
const SPEC = { spec: { tier: "container", limits: { wallTimeMs: 1_000 } } } as unknown as VerifiedQubeSpec;

async function rejected(promise: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code?: string; message: string };
  }
  throw new Error("expected a rejection");
}

/** A node's gossipsub score of a peer (the class has it, the service interface does not). */
const scoreOf = (node: AirqubeNode, peer: string) =>
  (node.services.pubsub as unknown as { getScore(peer: string): number }).getScore(peer);

/** A TCP server on 127.0.0.1 that counts the connections it gets (a requestor's "own port"). */
async function countingServer(): Promise<{ server: Server; port: number; count: () => number }> {
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port, count: () => connections };
}

describe("net: public mode", function () {
  this.timeout(60_000);

  it("classifies addresses and dials only what the policy allows", () => {
    expect(addressScope("/ip4/127.0.0.1/tcp/1")).to.equal("loopback");
    expect(addressScope("/ip6/::1/tcp/1")).to.equal("loopback");
    expect(addressScope("/ip4/10.1.2.3/tcp/1")).to.equal("private");
    expect(addressScope("/ip4/172.20.0.1/tcp/1")).to.equal("private");
    expect(addressScope("/ip4/192.168.1.1/tcp/1")).to.equal("private");
    expect(addressScope("/ip4/100.64.0.1/tcp/1")).to.equal("private");
    expect(addressScope("/ip6/fd00::1/tcp/1")).to.equal("private");
    expect(addressScope("/ip4/169.254.1.1/tcp/1")).to.equal("link-local");
    expect(addressScope("/ip6/fe80::1/tcp/1")).to.equal("link-local");
    expect(addressScope("/ip4/0.0.0.0/tcp/1")).to.equal("unspecified");
    expect(addressScope("/ip6/::/tcp/1")).to.equal("unspecified");
    expect(addressScope("/ip4/224.0.0.1/tcp/1")).to.equal("unspecified");
    expect(addressScope("/ip4/8.8.8.8/tcp/1")).to.equal("public");
    expect(addressScope("/dns4/boot.example.org/tcp/4001")).to.equal("dns");
    expect(addressScope("/dns4/localhost/tcp/4001")).to.equal("loopback");
    expect(
      addressScope("/ip4/8.8.8.8/tcp/1/p2p/12D3KooWE87fYpjjsHDYYkH9WNWhVgCa7i642ZCUnFfrnYuxo6Xo/p2p-circuit"),
    ).to.equal("public");

    const devnet = { public: false };
    const pub = { public: true };
    const lan = { public: true, allowPrivate: true };
    expect(mayDial("/ip4/127.0.0.1/tcp/1", devnet)).to.equal(true);
    expect(mayDial("/ip4/8.8.8.8/tcp/1", devnet)).to.equal(false);
    for (const hostile of ["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1", "/ip4/10.0.0.1/tcp/1", "/ip4/169.254.0.1/tcp/1"])
      expect(mayDial(hostile, pub), hostile).to.equal(false);
    for (const never of ["/ip4/0.0.0.0/tcp/1", "/ip6/::/tcp/1", "/ip4/255.255.255.255/tcp/1"])
      expect(mayDial(never, lan), never).to.equal(false);
    expect(mayDial("/ip4/127.0.0.1/tcp/1", lan)).to.equal(false);
    expect(mayDial("/ip4/10.0.0.1/tcp/1", lan)).to.equal(true);
    expect(mayDial("/ip4/8.8.8.8/tcp/1", pub)).to.equal(true);
    expect(mayDial("/dns4/boot.example.org/tcp/1", pub)).to.equal(true);
    expect(mayDial("not a multiaddr", lan)).to.equal(false);
    expect(mayAnnounce("/ip4/127.0.0.1/tcp/1", pub)).to.equal(false);
    expect(mayAnnounce("/ip4/127.0.0.1/tcp/1", devnet)).to.equal(true);
    expect(mayAnnounce("/ip4/10.0.0.1/tcp/1", pub)).to.equal(true);
  });

  it("reports address errors as user errors before anything runs (EADDRNOTAVAIL included)", async () => {
    // 192.0.2.1 (TEST-NET-1) is on no interface here: binding it fails at once, nothing is sent
    const unavailable = await rejected(checkNodeAddresses({ public: true, listen: ["/ip4/192.0.2.1/tcp/4001"] }));
    expect(unavailable.code).to.equal("ADDRESS_UNAVAILABLE");
    expect((unavailable as { shortMessage?: string }).shortMessage).to.equal("This host has no such listen address");
    const notLoopback = await rejected(checkNodeAddresses({ listen: ["/ip4/192.0.2.1/tcp/4001"] }));
    expect(notLoopback.code).to.equal("ADDRESS_NOT_LOOPBACK");
    const hostileBootstrap = await rejected(
      checkNodeAddresses({
        public: true,
        bootstrap: ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWE87fYpjjsHDYYkH9WNWhVgCa7i642ZCUnFfrnYuxo6Xo"],
      }),
    );
    expect(hostileBootstrap.code).to.equal("ADDRESS_NOT_DIALLABLE");
    const noPeer = await rejected(checkNodeAddresses({ bootstrap: ["/ip4/127.0.0.1/tcp/4001"] }));
    expect(noPeer.code).to.equal("ADDRESS_INVALID");
    const busy = await countingServer();
    try {
      const inUse = await rejected(checkNodeAddresses({ listen: [`/ip4/127.0.0.1/tcp/${busy.port}`] }));
      expect(inUse.code).to.equal("ADDRESS_IN_USE");
    } finally {
      busy.server.close();
    }
  });

  it("never announces loopback in public mode; announce replaces the listen addresses", async () => {
    const plain = await createNode({ identity: fresh(), public: true, listen: ["/ip4/127.0.0.1/tcp/0"] });
    const announced = await createNode({
      identity: fresh(),
      public: true,
      listen: ["/ip4/127.0.0.1/tcp/0"],
      announce: ["/dns4/provider.example.org/tcp/4001"],
    });
    try {
      expect(plain.getMultiaddrs().map(String)).to.deep.equal([]);
      expect(announced.getMultiaddrs().map((ma) => ma.toString().replace(/\/p2p\/.*/, ""))).to.deep.equal([
        "/dns4/provider.example.org/tcp/4001",
      ]);
    } finally {
      await plain.stop();
      await announced.stop();
    }
  });

  it("a hostile offer naming the requestor's loopback is never dialled in public mode (and is in the devnet)", async () => {
    const target = await countingServer();
    const hostile = fresh();
    const offer = signOffer(offerOf(hostile, new Date(), [`/ip4/127.0.0.1/tcp/${target.port}`]), hostile);
    const pub = await Libp2pMarket.connect({
      identity: fresh(),
      bootstrap: [],
      public: true,
      allowPrivate: true,
      discoveryMs: 500,
    });
    const devnet = await Libp2pMarket.connect({ identity: fresh(), bootstrap: [], discoveryMs: 500 });
    try {
      pub.offers.add(offer);
      expect(await pub.findProviders(SPEC, { wanted: 1 })).to.deep.equal([]);
      expect(target.count()).to.equal(0);
      const dropped = pub.offers.droppedOffers();
      // skipped without a dial, and says why
      expect(dropped.byCode).to.deep.equal({ OFFER_NOT_DIALLABLE: 1 });
      expect(dropped.offers[0]?.message).to.match(/never dials loopback/);
      expect(pub.offers.list()).to.deep.equal([]);
      // the control: a devnet requestor does dial it (the server answers with a reset, not libp2p)
      devnet.offers.add(offer);
      expect(await devnet.findProviders(SPEC, { wanted: 1 })).to.deep.equal([]);
      expect(target.count()).to.be.at.least(1);
    } finally {
      target.server.close();
      await pub.close();
      await devnet.close();
    }
  });

  it("liveness before money: a provider that vanished after announcing is dropped, a live one is kept", async () => {
    const requestor = await Libp2pMarket.connect({ identity: fresh(), bootstrap: [], discoveryMs: 1_000 });
    const liveId = fresh();
    const goneId = fresh();
    const live = await createNode({ identity: liveId });
    const gone = await createNode({ identity: goneId });
    const goneAddrs = gone.getMultiaddrs().map((ma) => ma.toString().replace(/\/p2p\/.*/, ""));
    await gone.stop();
    try {
      const liveAddrs = live.getMultiaddrs().map((ma) => ma.toString().replace(/\/p2p\/.*/, ""));
      requestor.offers.add(signOffer(offerOf(liveId, new Date(), liveAddrs), liveId));
      requestor.offers.add(signOffer(offerOf(goneId, new Date(), goneAddrs), goneId));
      const t0 = performance.now();
      const found = await requestor.findProviders(SPEC, { wanted: 2 });
      expect(found.map((c) => c.id)).to.deep.equal([liveId.peerId]);
      expect(performance.now() - t0).to.be.lessThan(3_000);
      expect(requestor.offers.droppedOffers().offers.map((o) => [o.provider, o.code])).to.deep.equal([
        [goneId.peerId, "PROVIDER_UNREACHABLE"],
      ]);
    } finally {
      await live.stop();
      await requestor.close();
    }
  });

  it("drops oversized, expired, forged and replayed offers at gossip validation and scores the sender down", async () => {
    const now = new Date();
    const attacker = fresh();
    const victim = fresh();
    // pure checks first
    expect(checkGossipedOffer(new Uint8Array(MAX_OFFER_BYTES + 1), attacker.peerId, now)?.rejection).to.equal(
      "OVERSIZED",
    );
    const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const expired = signOffer(offerOf(attacker, new Date(now.getTime() - 10 * 60_000)), attacker);
    const forged = { ...signOffer(offerOf(victim, now), attacker) };
    const replayed = signOffer(offerOf(victim, now), victim);
    const good = signOffer(offerOf(attacker, now), attacker);
    expect(checkGossipedOffer(encode(expired), attacker.peerId, now)?.rejection).to.equal("INVALID");
    expect(checkGossipedOffer(encode(forged), attacker.peerId, now)?.rejection).to.equal("INVALID");
    expect(checkGossipedOffer(encode(replayed), attacker.peerId, now)?.rejection).to.equal("NOT_PUBLISHER");
    expect(checkGossipedOffer(encode(good), attacker.peerId, now)).to.equal(undefined);

    // on the wire: attacker -> relay -> listener; the relay validates, drops and scores the attacker down
    const relay = await createNode({ identity: fresh() });
    const attackerNode = await createNode({ identity: attacker });
    const listener = await createNode({ identity: fresh() });
    const relayBook = new OfferBook(relay);
    const listenerBook = new OfferBook(listener);
    try {
      relayBook.start();
      listenerBook.start();
      attackerNode.services.pubsub.subscribe(OFFER_TOPIC);
      await attackerNode.dial(relay.getMultiaddrs()[0]!);
      await listener.dial(relay.getMultiaddrs()[0]!);
      const meshed = await until(
        () =>
          attackerNode.services.pubsub.getSubscribers(OFFER_TOPIC).length > 0 &&
          listener.services.pubsub.getSubscribers(OFFER_TOPIC).length > 0,
        10_000,
      );
      expect(meshed).to.equal(true);
      for (const bad of [
        new Uint8Array(MAX_OFFER_BYTES + 1).fill(32),
        encode(expired),
        encode(forged),
        encode(replayed),
      ])
        await attackerNode.services.pubsub.publish(OFFER_TOPIC, bad);
      const scored = await until(() => scoreOf(relay, attacker.peerId) < 0, 10_000);
      expect(scored, `score ${scoreOf(relay, attacker.peerId)}`).to.equal(true);
      // with these four the attacker is below the graylist threshold: even a good offer is ignored now
      expect(scoreOf(relay, attacker.peerId)).to.be.lessThan(-80);
      expect(relayBook.droppedOffers().count).to.be.at.least(2);
      await attackerNode.services.pubsub.publish(OFFER_TOPIC, encode(good));
      await new Promise((r) => setTimeout(r, 500));
      expect(relayBook.list()).to.deep.equal([]);
      // nothing was forwarded to the listener
      expect(listenerBook.list()).to.deep.equal([]);
      expect(listenerBook.droppedOffers().count).to.equal(0);
    } finally {
      relayBook.stop();
      listenerBook.stop();
      await attackerNode.stop();
      await listener.stop();
      await relay.stop();
    }
  });

  it("IPv6 and WebSockets: public nodes reach each other over /ip6/::1/tcp and /ip4/127.0.0.1/tcp/../ws", async () => {
    const options = { public: true, allowLoopback: true } as const;
    const server = await createNode({
      identity: fresh(),
      ...options,
      listen: ["/ip6/::1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"],
    });
    const viaV6 = await createNode({ identity: fresh(), ...options, listen: [] });
    const viaWs = await createNode({ identity: fresh(), ...options, listen: [] });
    try {
      const addrs = server.getMultiaddrs();
      const v6 = addrs.find((ma) => ma.toString().startsWith("/ip6/::1/tcp/"));
      const ws = addrs.find((ma) => ma.toString().includes("/ws/"));
      expect(v6, addrs.join(" ")).not.to.equal(undefined);
      expect(ws, addrs.join(" ")).not.to.equal(undefined);
      expect(await viaV6.services.ping.ping(v6!)).to.be.a("number");
      expect(await viaWs.services.ping.ping(ws!)).to.be.a("number");
      expect(viaWs.getConnections()[0]!.remoteAddr.toString()).to.include("/ws");
    } finally {
      for (const node of [server, viaV6, viaWs]) await node.stop();
    }
  });

  it("deny and allow lists refuse peers both ways", async () => {
    const banned = await createNode({ identity: fresh() });
    const stranger = await createNode({ identity: fresh() });
    const friend = await createNode({ identity: fresh() });
    const guarded = await createNode({ identity: fresh(), denyPeers: [banned.peerId.toString()] });
    const closed = await createNode({ identity: fresh(), allowPeers: [friend.peerId.toString()] });
    try {
      expect((await rejected(guarded.dial(banned.getMultiaddrs()[0]!))).message).to.match(/denied|gater/i);
      // inbound: the guarded side drops the connection once it learns who is calling
      await banned.dial(guarded.getMultiaddrs()[0]!).catch(() => undefined);
      await guarded.dial(stranger.getMultiaddrs()[0]!);
      await rejected(closed.dial(stranger.getMultiaddrs()[0]!));
      await stranger.dial(closed.getMultiaddrs()[0]!).catch(() => undefined);
      await closed.dial(friend.getMultiaddrs()[0]!);
      await new Promise((r) => setTimeout(r, 300));
      expect(guarded.getPeers().map(String)).to.deep.equal([stranger.peerId.toString()]);
      expect(closed.getPeers().map(String)).to.deep.equal([friend.peerId.toString()]);
    } finally {
      for (const node of [banned, stranger, friend, guarded, closed]) await node.stop();
    }
  });

  it("a bootnode restarted with the same key file is re-dialled and heals the network within 30 s", async () => {
    const keyFile = join(mkdtempSync(join(tmpdir(), "aq-bootnode-")), "keys", "bootnode.key");
    const identity = loadOrCreateKeyFile(keyFile);
    expect(statSync(keyFile).mode & 0o777).to.equal(0o600);
    expect(loadOrCreateKeyFile(keyFile).peerId).to.equal(identity.peerId);
    let boot = await startBootstrapPeer({ identity: loadOrCreateKeyFile(keyFile) });
    const address = boot.addrs[0]!;
    const port = /\/tcp\/(\d+)/.exec(address)![1];
    const peer = await createNode({ identity: fresh(), bootstrap: [address] });
    try {
      expect(await until(() => peer.getPeers().some((p) => p.toString() === identity.peerId), 10_000)).to.equal(true);
      await boot.stop();
      expect(await until(() => peer.getPeers().length === 0, 5_000)).to.equal(true);
      boot = await startBootstrapPeer({
        identity: loadOrCreateKeyFile(keyFile),
        listen: [`/ip4/127.0.0.1/tcp/${port}`],
      });
      const t0 = performance.now();
      const healed = await until(() => peer.getPeers().some((p) => p.toString() === identity.peerId), 30_000);
      expect(healed).to.equal(true);
      expect(performance.now() - t0).to.be.lessThan(30_000);
    } finally {
      await peer.stop();
      await boot.stop();
    }
  });

  it("DCUtR's reverse connection follows the address policy: a peer reachable only through a relay dials a requestor with an address back directly", async () => {
    const options = { public: true, allowLoopback: true } as const;
    const relay = await createNode({
      identity: fresh(),
      ...options,
      listen: ["/ip4/127.0.0.1/tcp/0"],
      relayServer: true,
    });
    const relayAddr = relay.getMultiaddrs()[0]!.toString();
    // "behind NAT": no listener of its own, only a relay reservation
    const natted = await createNode({
      identity: fresh(),
      ...options,
      listen: ["/p2p-circuit"],
      bootstrap: [relayAddr],
    });
    const requestor = await createNode({ identity: fresh(), ...options, listen: ["/ip4/127.0.0.1/tcp/0"] });
    try {
      expect(await awaitRelayAddress(natted, 10_000)).to.have.length.at.least(1);
      const relayed = await requestor.dial(multiaddr(`${relayAddr}/p2p-circuit/p2p/${natted.peerId}`));
      expect(relayed.limits, "the first connection is the relay's, limited").not.to.equal(undefined);
      const direct = () =>
        requestor
          .getConnections(natted.peerId)
          .find((c) => c.limits == null && !c.remoteAddr.toString().includes("/p2p-circuit"));
      // libp2p's DCUtR alone never dials 127.0.0.1 (nor any private range): the connection would stay relayed
      expect(await until(() => direct() !== undefined, 10_000), "a direct connection").to.equal(true);
      expect(direct()!.direction, "the peer behind the relay dialled").to.equal("inbound");
      expect(
        await until(() => requestor.getConnections(natted.peerId).length === 1, 10_000),
        "relayed one closed",
      ).to.equal(true);
      expect(await requestor.services.ping.ping(natted.peerId)).to.be.a("number");
    } finally {
      for (const node of [requestor, natted, relay]) await node.stop();
    }
  });
});
