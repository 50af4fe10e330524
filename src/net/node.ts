/**
 * The libp2p node every Airqube peer runs: TCP (and circuit relay v2 in public mode), Noise, Yamux, identify,
 * ping and gossipsub, with discovery only through explicit bootstrap addresses (no mDNS, no multicast).
 *
 * Two modes. The devnet (default): every listen, bootstrap and dial address is loopback. Public mode
 * (`public: true`, `--public`): real hosts; the address policy of addresses.ts decides what is dialled and
 * announced, libp2p's per-host inbound connection rate stays on, WebSockets, AutoNAT and DCUtR run, and a
 * node may run a circuit relay server (a bootnode).
 */
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { autoNAT } from "@libp2p/autonat";
import { bootstrap } from "@libp2p/bootstrap";
import { circuitRelayServer, circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import { privateKeyFromProtobuf } from "@libp2p/crypto/keys";
import { type GossipSub, gossipsub } from "@libp2p/gossipsub";
import { createPeerScoreParams } from "@libp2p/gossipsub/score";
import { identify } from "@libp2p/identify";
import { KEEP_ALIVE, type Libp2p } from "@libp2p/interface";
import { type Ping, ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { webSockets } from "@libp2p/websockets";
import { createLibp2p } from "libp2p";
import { type Identity, UserError } from "../qube/index.js";
import {
  type AddressPolicy,
  assertLoopback,
  mayAnnounce,
  mayDial,
  parseMultiaddr,
  preflightListen,
} from "./addresses.js";
import { policyDcutr } from "./dcutr.js";
import { AIRQUBE_RELAY_LIMITS, BOOTSTRAP_REDIAL_MS } from "./limits.js";
import { handleTimeQueries } from "./offers/clock.js";
import { OFFER_TOPIC } from "./offers/constants.js";
import { OFFER_TOPIC_SCORE, offerTopicValidator } from "./offers/validator.js";

/** Largest yamux receive window of a stream (yamux's default grows to 16 MiB; see src/net/wire.ts). */
export const MAX_STREAM_WINDOW_BYTES = 512 * 1024;

export { assertLoopback, parseMultiaddr } from "./addresses.js";

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

/** A running Airqube libp2p node (gossipsub, identify and ping services). */
export type AirqubeNode = Libp2p<{ pubsub: GossipSub; identify: unknown; ping: Ping }>;

/** How {@link createNode} builds a node: identity, addresses, public mode and its permissions. */
export interface NodeOptions {
  identity: Identity;
  /** Multiaddrs to listen on; default one random TCP port on 127.0.0.1. `/p2p-circuit` reserves a relay slot. */
  listen?: string[];
  /** Multiaddrs (with /p2p/ peer id) of bootstrap peers; the node keeps re-dialling them when they go away. */
  bootstrap?: string[];
  /**
   * Public mode: permit non-loopback listen, announce and dial addresses (a real deployment). The node then
   * never dials loopback, private, link-local or unspecified addresses (unless `allowPrivate` or
   * `allowLoopback`), never announces loopback, and keeps libp2p's per-host inbound connection rate limit.
   */
  public?: boolean;
  /** @deprecated same as `public`. */
  allowPublic?: boolean;
  /** Public mode: also dial private-range and link-local addresses (a LAN; tests in network namespaces). */
  allowPrivate?: boolean;
  /** Public mode: also dial and announce loopback (tests on one machine only). */
  allowLoopback?: boolean;
  /** Addresses announced instead of the listen addresses (a public IP or DNS name in front of a NAT). */
  announce?: string[];
  /** Addresses announced in addition to the listen addresses. */
  appendAnnounce?: string[];
  /** Addresses never announced. */
  noAnnounce?: string[];
  /** Run a circuit relay v2 server (a bootnode): peers behind NAT reserve a slot and are reached through it. */
  relayServer?: boolean;
  /** Peer ids this node never dials nor accepts (a deny list). */
  denyPeers?: string[];
  /** When given, the only peer ids this node dials or accepts (an allow list; bootstrap peers must be in it). */
  allowPeers?: string[];
  /** The clock this node tells peers that ask its time and checks offers with (default the system clock). */
  clock?: () => Date;
}

/** The address policy a node's options select. */
export function addressPolicyOf(
  options: Pick<NodeOptions, "public" | "allowPublic" | "allowPrivate" | "allowLoopback">,
): AddressPolicy {
  return {
    public: options.public === true || options.allowPublic === true,
    ...(options.allowPrivate ? { allowPrivate: true } : {}),
    ...(options.allowLoopback ? { allowLoopback: true } : {}),
  };
}

/**
 * Checks a node's addresses before anything slow runs: multiaddr syntax, loopback only outside public mode,
 * bootstrap addresses that the policy dials, and listen addresses this host can bind. Throws a UserError
 * naming the address (`ADDRESS_INVALID`, `ADDRESS_NOT_LOOPBACK`, `ADDRESS_NOT_DIALLABLE`,
 * `ADDRESS_UNAVAILABLE`, `ADDRESS_IN_USE`).
 *
 * @example
 * await checkNodeAddresses({ public: true, listen: ["/ip4/0.0.0.0/tcp/4001"] });
 */
export async function checkNodeAddresses(options: Omit<NodeOptions, "identity">): Promise<void> {
  const policy = addressPolicyOf(options);
  const listen = (options.listen ?? []).map(parseMultiaddr);
  const bootstrapList = (options.bootstrap ?? []).map(parseMultiaddr);
  const announced = [...(options.announce ?? []), ...(options.appendAnnounce ?? [])].map(parseMultiaddr);
  (options.noAnnounce ?? []).map(parseMultiaddr);
  if (!policy.public) {
    assertLoopback(
      listen.filter((a) => !a.startsWith("/p2p-circuit")),
      "Listen addresses",
    );
    assertLoopback(bootstrapList, "Bootstrap addresses");
    assertLoopback(announced, "Announce addresses");
  }
  for (const address of bootstrapList) {
    if (!/\/p2p\/[^/]+$/.test(address))
      throw new UserError("ADDRESS_INVALID", "A bootstrap address must end in /p2p/PEER_ID", { details: address });
    if (!mayDial(address, policy))
      throw new UserError("ADDRESS_NOT_DIALLABLE", "Public mode does not dial this bootstrap address", {
        details: `${address}: public mode never dials loopback, and dials private-range addresses only with --allow-private-addrs (a LAN)`,
      });
  }
  await preflightListen(listen);
}

/** A listen failure of libp2p as a user error (the address is the user's), anything else unchanged. */
function toListenError(error: unknown, listen: string[]): unknown {
  const code = (error as { code?: string; cause?: { code?: string } }).code;
  const name = (error as Error).name;
  if (code === "EADDRNOTAVAIL" || code === "EADDRINUSE" || name === "NoValidAddressesError")
    return new UserError("ADDRESS_UNUSABLE", "Cannot listen on the given addresses", {
      details: `${listen.join(", ")}: ${(error as Error).message}`,
      cause: error,
    });
  return error;
}

/**
 * Creates and starts a node whose peer id is the identity's signing key.
 *
 * @example
 * const node = await createNode({ identity, bootstrap: ["/ip4/127.0.0.1/tcp/4001/p2p/12D3..."] });
 */
export async function createNode(options: NodeOptions): Promise<AirqubeNode> {
  const policy = addressPolicyOf(options);
  const listen = (options.listen ?? ["/ip4/127.0.0.1/tcp/0"]).map(parseMultiaddr);
  const bootstrapList = (options.bootstrap ?? []).map(parseMultiaddr);
  await checkNodeAddresses({ ...options, listen });
  const clock = options.clock ?? (() => new Date());
  const relayed = policy.public || listen.some((a) => a.includes("/p2p-circuit"));
  const denied = new Set(options.denyPeers ?? []);
  const allowed = options.allowPeers ? new Set(options.allowPeers) : undefined;
  const refused = (peer: string) => denied.has(peer) || (allowed !== undefined && !allowed.has(peer));
  let node: Libp2p;
  try {
    node = await createLibp2p({
      privateKey: privateKeyFromProtobuf(options.identity.toLibp2pPrivateKey()),
      addresses: {
        listen,
        ...(options.announce?.length ? { announce: options.announce.map(parseMultiaddr) } : {}),
        ...(options.appendAnnounce?.length ? { appendAnnounce: options.appendAnnounce.map(parseMultiaddr) } : {}),
        ...(options.noAnnounce?.length ? { noAnnounce: options.noAnnounce.map(parseMultiaddr) } : {}),
        // a wildcard listener in public mode never announces its loopback address
        announceFilter: (addrs) => addrs.filter((ma) => mayAnnounce(ma.toString(), policy)),
      },
      // TCP always; WebSockets in public mode (or when a listen address asks for it) for hosts whose firewalls
      // pass only web traffic; circuit relay for peers behind NAT
      transports: [
        tcp(),
        ...(policy.public || listen.some((a) => /\/wss?(\/|$)/.test(a)) ? [webSockets()] : []),
        ...(relayed ? [circuitRelayTransport()] : []),
      ],
      connectionEncrypters: [noise()],
      // a stream's receive window stays small: with src/net/wire.ts pausing a stream whose reader lags, the
      // sender stops after this much instead of overflowing the reader's 4 MiB buffer
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES } })],
      peerDiscovery:
        bootstrapList.length > 0
          ? [
              bootstrap({
                list: bootstrapList,
                timeout: 100,
                // a keep-alive tag without expiry: libp2p re-dials a bootstrap peer whenever it goes away, so a
                // restarted bootnode is found again without restarting anyone
                tagName: `${KEEP_ALIVE}-airqube-bootstrap`,
                tagValue: 100,
              }),
            ]
          : [],
      connectionManager: {
        maxConnections: 200,
        // every devnet peer dials from 127.0.0.1: the default of 5 inbound connections per second per host would
        // turn away the 6th peer that starts at once. Public mode keeps libp2p's defaults (doc/LIMITS.md).
        ...(policy.public ? {} : { inboundConnectionThreshold: 200, maxIncomingPendingConnections: 64 }),
        // keep-alive peers (bootstrap peers) are re-dialled at a steady pace for as long as they are away
        reconnectRetries: Number.POSITIVE_INFINITY,
        reconnectRetryInterval: BOOTSTRAP_REDIAL_MS,
        reconnectBackoffFactor: 1,
      },
      connectionGater: {
        // never dial what the address policy forbids (defence in depth against hostile offers)
        denyDialMultiaddr: (ma) => !mayDial(ma.toString(), policy),
        // allow and deny lists of peer ids, both ways
        denyDialPeer: (peer) => refused(peer.toString()),
        denyInboundEncryptedConnection: (peer) => refused(peer.toString()),
      },
      services: {
        identify: identify(),
        ping: ping(),
        pubsub: gossipsub({
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          floodPublish: true,
          scoreParams: createPeerScoreParams({
            // see LoopbackExemptSet: without it a devnet's offer network dies once a dozen requestors came and went
            IPColocationFactorWhitelist: new LoopbackExemptSet(),
            // a peer that forwards bad offers loses score (P4), and below the graylist threshold is ignored
            topics: { [OFFER_TOPIC]: OFFER_TOPIC_SCORE },
          }),
        }),
        ...(policy.public ? { autoNAT: autoNAT(), dcutr: policyDcutr(policy) } : {}),
        ...(options.relayServer ? { relay: circuitRelayServer(AIRQUBE_RELAY_LIMITS) } : {}),
      },
    });
  } catch (error) {
    throw toListenError(error, listen);
  }
  const typed = node as unknown as AirqubeNode;
  // offers are checked before they are delivered or forwarded: a bad one is dropped and its sender scored down
  typed.services.pubsub.topicValidators.set(OFFER_TOPIC, offerTopicValidator(clock));
  // every node tells its time, so that a provider can find out that its clock is off (offers/clock.ts)
  await handleTimeQueries(typed, clock);
  return typed;
}

/**
 * Waits until a node listening on `/p2p-circuit` holds a relay reservation (it then announces a relayed
 * address), or `timeoutMs` passes. Returns the relayed addresses (empty when none came in time).
 *
 * @example
 * const relayed = await awaitRelayAddress(node, 10_000);
 */
export async function awaitRelayAddress(node: AirqubeNode, timeoutMs: number): Promise<string[]> {
  const relayed = () =>
    node
      .getMultiaddrs()
      .map((ma) => ma.toString())
      .filter((a) => a.includes("/p2p-circuit"));
  if (relayed().length > 0) return relayed();
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      node.removeEventListener("self:peer:update", check);
      resolve();
    };
    const check = () => {
      if (relayed().length > 0) done();
    };
    const timer = setTimeout(done, timeoutMs);
    node.addEventListener("self:peer:update", check);
  });
  return relayed();
}
