/**
 * A bootstrap peer: the rendezvous of a network. It runs no qubes; it relays gossip and answers offer queries
 * with the (signed, self-authenticating) offers it has seen, so a newcomer learns the market from one dial.
 */
import type { Identity } from "../qube/index.js";
import { type AirqubeNode, createNode } from "./node.js";
import { MAX_OFFER_ANSWER_BYTES, MAX_OFFERS_PER_ANSWER, OFFER_PROTOCOL } from "./offers/constants.js";
import { OfferBook } from "./offers/discovery.js";
import { Wire } from "./wire.js";

export interface BootstrapPeer {
  node: AirqubeNode;
  /** The offers it has seen and serves. */
  book: OfferBook;
  addrs: string[];
  stop(): Promise<void>;
}

export async function startBootstrapPeer(options: { identity: Identity; listen?: string[] }): Promise<BootstrapPeer> {
  const node = await createNode({ identity: options.identity, ...(options.listen ? { listen: options.listen } : {}) });
  const book = new OfferBook(node);
  book.start();
  await node.handle(OFFER_PROTOCOL, async (stream) => {
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
  });
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
