/**
 * The libp2p node every Airqube peer runs: TCP, Noise, Yamux, identify, ping and gossipsub, with discovery
 * only through explicit bootstrap addresses (no mDNS, no multicast). Listen addresses must be loopback in
 * the devnet; `assertLoopback` refuses anything else unless the caller opts in.
 */
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { bootstrap } from "@libp2p/bootstrap";
import { privateKeyFromProtobuf } from "@libp2p/crypto/keys";
import { type GossipSub, gossipsub } from "@libp2p/gossipsub";
import { identify } from "@libp2p/identify";
import type { Libp2p } from "@libp2p/interface";
import { ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import { type Identity, UserError } from "../qube/index.js";
import { handleTimeQueries } from "./offers/clock.js";

/**
 * Gossipsub's IP-colocation penalty (P6) exempts loopback peers.
 *
 * Why: P6 counts every peer id ever seen from one IP, including disconnected peers whose score is kept for
 * `retainScore` (1 hour) when it is not positive (and an idle requestor's score is exactly 0). Above 10 peer
 * ids on one IP every peer on it gets -5 x surplus². On a devnet everything is 127.0.0.1, and each requestor
 * (`airqube run`, `airqube offers` with a fresh data directory, a test's requestor) is a new peer id that
 * comes and goes. After 8 departed requestors the providers' scores on the bootstrap went negative and the
 * bootstrap pruned them all from its mesh (a fresh node connected to it got no gossip); after 12 they fell
 * below the graylist threshold (-80) and the bootstrap dropped every message from them, so its offer book
 * expired and `airqube offers` printed `[]` while every provider was alive and connected: the "offer network
 * dies after about 15 minutes" of a devnet in use (test/net/offer-network.test.ts). Peers on loopback run on
 * this very machine, where colocation says nothing about Sybils; remote peers keep the penalty.
 */
export class LoopbackExemptSet extends Set<string> {
  override has(ip: string): boolean {
    return isLoopbackIp(ip) || super.has(ip);
  }
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopbackIp(ip: string): boolean {
  return /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/i.test(ip) || ip === "::1";
}

export type AirqubeNode = Libp2p<{ pubsub: GossipSub; identify: unknown; ping: unknown }>;

export interface NodeOptions {
  identity: Identity;
  /** Multiaddrs to listen on; default one random TCP port on 127.0.0.1. */
  listen?: string[];
  /** Multiaddrs (with /p2p/ peer id) of bootstrap peers. */
  bootstrap?: string[];
  /** Permit non-loopback listen addresses (production deployments only). */
  allowPublic?: boolean;
  /** The clock this node tells peers that ask its time (default the system clock; tests skew it). */
  clock?: () => Date;
}

const LOOPBACK = /^\/(ip4\/127\.\d+\.\d+\.\d+|ip6\/::1)\//;

/** Refuses any address that is not on loopback. */
export function assertLoopback(addresses: string[], what: string): void {
  for (const address of addresses) {
    if (!LOOPBACK.test(address)) {
      throw new UserError("ADDRESS_NOT_LOOPBACK", `${what} must be on loopback (127.0.0.0/8 or ::1)`, {
        details: `${address}; pass --allow-public only on a real deployment`,
      });
    }
  }
}

/** Parses a multiaddr given by a user, with a clear error. */
export function parseMultiaddr(text: string): string {
  try {
    return multiaddr(text).toString();
  } catch (error) {
    throw new UserError("ADDRESS_INVALID", "Not a multiaddr", { details: text, cause: error });
  }
}

/**
 * Creates and starts a node whose peer id is the identity's signing key.
 *
 * @example
 * const node = await createNode({ identity, bootstrap: ["/ip4/127.0.0.1/tcp/4001/p2p/12D3..."] });
 */
export async function createNode(options: NodeOptions): Promise<AirqubeNode> {
  const listen = (options.listen ?? ["/ip4/127.0.0.1/tcp/0"]).map(parseMultiaddr);
  const bootstrapList = (options.bootstrap ?? []).map(parseMultiaddr);
  if (!options.allowPublic) {
    assertLoopback(listen, "Listen addresses");
    assertLoopback(bootstrapList, "Bootstrap addresses");
  }
  const node = await createLibp2p({
    privateKey: privateKeyFromProtobuf(options.identity.toLibp2pPrivateKey()),
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: bootstrapList.length > 0 ? [bootstrap({ list: bootstrapList, timeout: 100 })] : [],
    connectionManager: {
      maxConnections: 200,
      // every devnet peer dials from 127.0.0.1: the default of 5 inbound connections per second per host would
      // turn away the 6th peer that starts at once (and the bootstrap list is dialled only at start)
      inboundConnectionThreshold: 200,
      maxIncomingPendingConnections: 64,
    },
    connectionGater: {
      // never dial anything but loopback unless allowed (defence in depth against hostile offers)
      denyDialMultiaddr: (ma) => !options.allowPublic && !LOOPBACK.test(ma.toString()),
    },
    services: {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        floodPublish: true,
        // see LoopbackExemptSet: without it a devnet's offer network dies once a dozen requestors have come and gone
        scoreParams: { IPColocationFactorWhitelist: new LoopbackExemptSet() },
      }),
    },
  });
  // every node tells its time, so that a provider can find out that its clock is off (offers/clock.ts)
  await handleTimeQueries(node, options.clock ?? (() => new Date()));
  return node as unknown as AirqubeNode;
}
