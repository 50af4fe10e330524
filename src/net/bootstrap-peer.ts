/**
 * A bootstrap peer: the rendezvous of a network. It runs no qubes; it relays gossip and answers offer queries
 * with the (signed, self-authenticating) offers it has seen, so a newcomer learns the market from one dial.
 * In public mode it is also a circuit relay for providers behind NAT.
 */
import { type AirqubeNode, createNode, type NodeOptions } from "./node.js";
import {
  MAX_OFFER_ANSWER_BYTES,
  MAX_OFFERS_PER_ANSWER,
  MAX_QUERY_STREAMS,
  OFFER_PROTOCOL,
} from "./offers/constants.js";
import { OfferBook } from "./offers/discovery.js";
import { Wire } from "./wire.js";

/** A running bootstrap peer: its node, the offers it serves, its addresses, and how to stop it. */
export interface BootstrapPeer {
  node: AirqubeNode;
  /** The offers it has seen and serves. */
  book: OfferBook;
  addrs: string[];
  /** Stops the node (and its relay server); the offers it served are forgotten. */
  stop(): Promise<void>;
}

/** How to start a bootstrap peer: the node's options (identity, listen, announce, public mode) and the relay. */
export interface BootstrapPeerOptions extends Omit<NodeOptions, "relayServer"> {
  /** Run a circuit relay v2 server (default: in public mode). */
  relay?: boolean;
}

/**
 * Starts a bootstrap peer (the node behind `airqube bootnode`). In public mode it runs a circuit relay v2
 * server with Airqube's limits (net/limits.ts), so providers behind NAT reserve a slot on it; it bootstraps
 * to the other bootnodes given, so gossip spans all of them and losing one changes nothing.
 *
 * @example
 * const peer = await startBootstrapPeer({ identity: loadOrCreateKeyFile(file), listen: ["/ip4/0.0.0.0/tcp/4001"], public: true });
 */
export async function startBootstrapPeer(options: BootstrapPeerOptions): Promise<BootstrapPeer> {
  const { relay, ...nodeOptions } = options;
  const relayServer = relay ?? Boolean(options.public || options.allowPublic);
  const node = await createNode({ ...nodeOptions, ...(relayServer ? { relayServer: true } : {}) });
  const book = new OfferBook(node);
  book.start();
  // a provider that went away takes its offer with it (it gossips it again every few seconds while alive)
  node.addEventListener("peer:disconnect", (event) => book.forget(event.detail.toString()));
  await node.handle(
    OFFER_PROTOCOL,
    async (stream) => {
      const wire = new Wire(stream, { maxFrameBytes: MAX_OFFER_ANSWER_BYTES });
      try {
        await wire.send(
          { type: "offers", offers: book.envelopes().slice(0, MAX_OFFERS_PER_ANSWER) },
          { signal: AbortSignal.timeout(5_000) },
        );
        await wire.close();
      } catch (error) {
        wire.abort(error as Error);
      }
    },
    { maxInboundStreams: MAX_QUERY_STREAMS },
  );
  return {
    node,
    book,
    addrs: node.getMultiaddrs().map((ma) => ma.toString()),
    stop: async () => {
      book.stop();
      await node.stop();
    },
  };
}
