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

export type AirqubeNode = Libp2p<{ pubsub: GossipSub; identify: unknown; ping: unknown }>;

export interface NodeOptions {
  identity: Identity;
  /** Multiaddrs to listen on; default one random TCP port on 127.0.0.1. */
  listen?: string[];
  /** Multiaddrs (with /p2p/ peer id) of bootstrap peers. */
  bootstrap?: string[];
  /** Permit non-loopback listen addresses (production deployments only). */
  allowPublic?: boolean;
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
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, floodPublish: true }),
    },
  });
  return node as unknown as AirqubeNode;
}
