/**
 * Provider side of offers: publishes the current signed offer on the gossipsub topic at an interval, answers
 * direct queries on the offer protocol, and checks its clock against its peers' (offers from a clock that is
 * off are rejected by everyone, see clock.ts).
 */

import type { AirqubeNode } from "../node.js";
import { Wire } from "../wire.js";
import { type ClockSkew, watchClock } from "./clock.js";
import {
  ANNOUNCE_INTERVAL_MS,
  ANNOUNCE_JITTER,
  MAX_OFFER_ANSWER_BYTES,
  MAX_OFFERS_PER_ANSWER,
  MAX_QUERY_STREAMS,
  OFFER_PROTOCOL,
  OFFER_TOPIC,
} from "./constants.js";
import type { SignedOffer } from "./offer.js";

export interface AnnounceOptions {
  intervalMs?: number;
  known?: () => SignedOffer[];
  /** The clock offers are issued with (default the system clock). */
  now?: () => Date;
  /** Called when this clock is further from the peers' than peers tolerate: every offer is being rejected. */
  onClockSkew?: (skew: ClockSkew) => void;
  /** Called when the clock is back within the tolerance after a skew was reported. */
  onClockRecovered?: (skew: ClockSkew) => void;
  /** Interval of clock checks (default CLOCK_CHECK_INTERVAL_MS; the first comes after a fifth of it). */
  clockCheckMs?: number;
}

/**
 * Starts announcing. `current()` is called for each announcement so that availability stays fresh. A query
 * is answered with this provider's offer followed by offers of others it has seen (`known()`): signed offers
 * are self-authenticating, so relaying them lets a requestor that knows one peer learn the market at once.
 * Returns a function that stops it.
 */
export async function announceOffers(
  node: AirqubeNode,
  current: () => SignedOffer,
  options: AnnounceOptions = {},
): Promise<() => Promise<void>> {
  const encoder = new TextEncoder();
  await node.handle(
    OFFER_PROTOCOL,
    async (stream) => {
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
    },
    { maxInboundStreams: MAX_QUERY_STREAMS, maxOutboundStreams: MAX_QUERY_STREAMS },
  );
  node.services.pubsub.subscribe(OFFER_TOPIC);
  const publish = () => {
    node.services.pubsub.publish(OFFER_TOPIC, encoder.encode(JSON.stringify(current()))).catch(() => undefined);
  };
  publish();
  // a jittered interval: providers that started together do not announce in step
  const interval = options.intervalMs ?? ANNOUNCE_INTERVAL_MS;
  let timer: NodeJS.Timeout;
  const schedule = () => {
    timer = setTimeout(
      () => {
        publish();
        schedule();
      },
      interval * (1 - ANNOUNCE_JITTER + 2 * ANNOUNCE_JITTER * Math.random()),
    );
    timer.unref();
  };
  schedule();
  const stopWatching = options.onClockSkew
    ? watchClock(node, {
        now: options.now ?? (() => new Date()),
        onSkew: options.onClockSkew,
        ...(options.onClockRecovered ? { onRecovered: options.onClockRecovered } : {}),
        ...(options.clockCheckMs
          ? { intervalMs: options.clockCheckMs, firstCheckMs: Math.ceil(options.clockCheckMs / 5) }
          : {}),
      })
    : undefined;
  return async () => {
    clearTimeout(timer);
    stopWatching?.();
    await node.unhandle(OFFER_PROTOCOL).catch(() => undefined);
  };
}
