/**
 * DCUtR (direct connection upgrade through relay) that follows the node's address policy.
 *
 * libp2p's DCUtR only ever dials addresses outside every reserved range (`isPublicAndDialable`: 10/8,
 * 192.168/16, 198.18/15, the documentation ranges, ...). A public-mode node that may dial private addresses
 * (`--allow-private-addrs`: a LAN, or the network-namespace tests, whose hosts all have private addresses)
 * then kept every relayed connection relayed although a direct one was possible: the peer behind NAT could
 * dial the other side back directly (DCUtR's "reverse connection", the unilateral upgrade) and never did.
 * With that permission, the reverse connection takes the other side's addresses that the policy dials
 * (mayDial); the hole punch (both sides dialling the addresses they exchange) keeps libp2p's filter, since a
 * private address sent by a peer behind NAT names its own LAN. Without the permission nothing changes.
 */
import { type DCUtRServiceComponents, dcutr } from "@libp2p/dcutr";
import type { Connection, Libp2p, PeerId } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import { type AddressPolicy, mayDial } from "./addresses.js";

/** How long one upgrade attempt may take (libp2p's default, go-libp2p's too). */
export const DCUTR_TIMEOUT_MS = 5_000;

/** The method of libp2p's DefaultDCUtRService that makes the reverse connection (replaced below). */
interface DcutrReverse {
  attemptUnilateralConnectionUpgrade(relayed: Connection): Promise<boolean>;
}

const isCircuit = (ma: Multiaddr) => ma.toString().includes("/p2p-circuit");

/**
 * The DCUtR service for a node with `policy`: libp2p's, whose reverse connection dials what the policy permits
 * when it permits private or loopback addresses.
 *
 * @example
 * services: { dcutr: policyDcutr({ public: true, allowPrivate: true }) }
 */
export function policyDcutr(policy: AddressPolicy): (components: DCUtRServiceComponents) => unknown {
  const factory = dcutr({ timeout: DCUTR_TIMEOUT_MS });
  return (components) => {
    const service = factory(components) as DcutrReverse;
    if (!policy.public || !(policy.allowPrivate || policy.allowLoopback)) return service;
    const log = components.logger.forComponent("airqube:dcutr");
    const dialable = (ma: Multiaddr) =>
      !isCircuit(ma) &&
      components.transportManager.dialTransportForMultiaddr(ma) != null &&
      mayDial(ma.toString(), policy);
    // the reverse connection: the inbound side of a relayed connection (the peer behind NAT) dials the other
    // side's listen addresses directly, then closes the relayed connection
    service.attemptUnilateralConnectionUpgrade = async (relayed) => {
      const remote = relayed.remotePeer;
      const info = await components.peerStore.get(remote);
      const direct = info.addresses
        .map(({ multiaddr: ma }) => (ma.toString().includes("/p2p/") ? ma : ma.encapsulate(`/p2p/${remote}`)))
        .filter(dialable);
      if (direct.length === 0) return false;
      const signal = AbortSignal.timeout(DCUTR_TIMEOUT_MS);
      try {
        const connection = await components.connectionManager.openConnection(direct, { signal, force: true });
        if (isCircuit(connection.remoteAddr) || connection.limits != null) return false;
        log("reverse connection to %p via %a: closing the relayed connection", remote, connection.remoteAddr);
        await relayed.close({ signal });
        return true;
      } catch (error) {
        log.error("reverse connection to %p on %a failed - %e", remote, direct, error);
        return false;
      }
    };
    return service;
  };
}

/**
 * When every connection to `peer` is relayed, waits (at most `timeoutMs`) for a direct one: DCUtR closes the
 * relayed connection once it has upgraded, which would cut a stream opened on it meanwhile. Returns whether a
 * direct connection is open (false: keep using the relay).
 *
 * @example
 * await awaitDirectConnection(node, peerId, DCUTR_TIMEOUT_MS);
 */
export async function awaitDirectConnection(node: Libp2p, peer: PeerId, timeoutMs: number): Promise<boolean> {
  const direct = () => node.getConnections(peer).some((c) => c.limits == null && !isCircuit(c.remoteAddr));
  if (direct()) return true;
  if (node.getConnections(peer).length === 0) return false;
  return new Promise<boolean>((resolve) => {
    const done = (value: boolean) => {
      clearTimeout(timer);
      node.removeEventListener("connection:open", check);
      node.removeEventListener("peer:disconnect", check);
      resolve(value);
    };
    const check = () => {
      if (direct()) done(true);
      else if (node.getConnections(peer).length === 0) done(false);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    node.addEventListener("connection:open", check);
    node.addEventListener("peer:disconnect", check);
  });
}
