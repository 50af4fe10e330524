/**
 * Provider side of offers: publishes the current signed offer on the gossipsub topic at an interval and
 * answers direct queries on the offer protocol.
 */

import type { AirqubeNode } from "../node.js";
import { Wire } from "../wire.js";
import {
  ANNOUNCE_INTERVAL_MS,
  MAX_OFFER_ANSWER_BYTES,
  MAX_OFFERS_PER_ANSWER,
  OFFER_PROTOCOL,
  OFFER_TOPIC,
} from "./constants.js";
import type { SignedOffer } from "./offer.js";

/**
 * Starts announcing. `current()` is called for each announcement so that availability stays fresh. A query
 * is answered with this provider's offer followed by offers of others it has seen (`known()`): signed offers
 * are self-authenticating, so relaying them lets a requestor that knows one peer learn the market at once.
 * Returns a function that stops it.
 */
export async function announceOffers(
  node: AirqubeNode,
  current: () => SignedOffer,
  options: { intervalMs?: number; known?: () => SignedOffer[] } = {},
): Promise<() => Promise<void>> {
  const encoder = new TextEncoder();
  await node.handle(OFFER_PROTOCOL, async (stream) => {
    const wire = new Wire(stream, { maxFrameBytes: MAX_OFFER_ANSWER_BYTES });
    try {
      const own = current();
      const others = (options.known?.() ?? [])
        .filter((o) => o.signer !== own.signer)
        .slice(0, MAX_OFFERS_PER_ANSWER - 1);
      await wire.send({ type: "offers", offers: [own, ...others] }, { signal: AbortSignal.timeout(5_000) });
      await wire.close();
    } catch (error) {
      wire.abort(error as Error);
    }
  });
  node.services.pubsub.subscribe(OFFER_TOPIC);
  const publish = () => {
    node.services.pubsub.publish(OFFER_TOPIC, encoder.encode(JSON.stringify(current()))).catch(() => undefined);
  };
  publish();
  const timer = setInterval(publish, options.intervalMs ?? ANNOUNCE_INTERVAL_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await node.unhandle(OFFER_PROTOCOL).catch(() => undefined);
  };
}
