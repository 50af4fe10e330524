/**
 * Gossipsub validation of the offer topic: every offer is checked before it is delivered or forwarded. An
 * oversized, unparsable, badly signed, expired or future-dated offer, or one published by a peer other than
 * the provider it names (a replayed or forged offer), is rejected: gossipsub drops it and counts an invalid
 * message delivery against the peer that sent it, whose score falls (P4 below).
 */
import { TopicValidatorResult } from "@libp2p/gossipsub";
import type { TopicScoreParams } from "@libp2p/gossipsub/score";
import { PeerError } from "../../qube/errors.js";
import { MAX_OFFER_BYTES } from "./constants.js";
import { verifyOffer } from "./offer.js";

/** Why the validator rejected a message (for tests and logs). */
export type OfferRejection = "OVERSIZED" | "UNPARSABLE" | "INVALID" | "NOT_PUBLISHER";

/** A rejected gossiped offer: the reason, the parsed value when there was one, and the verification error. */
export interface RejectedOffer {
  rejection: OfferRejection;
  value?: unknown;
  error?: unknown;
}

/** Checks one gossiped offer; returns `undefined` when it is acceptable. Pure apart from `now`. */
export function checkGossipedOffer(
  data: Uint8Array,
  publisher: string | undefined,
  now: Date,
): RejectedOffer | undefined {
  if (data.byteLength > MAX_OFFER_BYTES) return { rejection: "OVERSIZED" };
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (error) {
    return { rejection: "UNPARSABLE", error };
  }
  try {
    const offer = verifyOffer(value, now);
    // providers publish their own offers; anybody else's copy is a replay (relays answer queries instead)
    if (publisher !== offer.provider)
      return {
        rejection: "NOT_PUBLISHER",
        value,
        error: new PeerError("OFFER_NOT_PUBLISHER", "Offer gossiped by a peer other than its provider", {
          details: `published by ${publisher ?? "an unsigned message"}`,
        }),
      };
    return undefined;
  } catch (error) {
    return { rejection: "INVALID", value, error };
  }
}

/**
 * The offer topic's validator for `pubsub.topicValidators`; `onRejected` hears every rejected message (an
 * offer book records why it dropped offers).
 */
export function offerTopicValidator(clock: () => Date, onRejected?: (rejected: RejectedOffer) => void) {
  return (_peer: unknown, message: { data: Uint8Array; type?: string; from?: { toString(): string } }) => {
    const publisher = message.type === "signed" ? message.from?.toString() : undefined;
    const rejected = checkGossipedOffer(message.data, publisher, clock());
    if (!rejected) return TopicValidatorResult.Accept;
    onRejected?.(rejected);
    return TopicValidatorResult.Reject;
  };
}

/**
 * Score parameters of the offer topic: only invalid deliveries count (P4, squared, -20 each, decaying by 1 %
 * a second): two bad offers put a peer at -80, gossipsub's default graylist threshold, where everything it
 * sends is ignored. Delivery-rate penalties (P3) stay off: a quiet honest peer is not punished.
 */
export const OFFER_TOPIC_SCORE: TopicScoreParams = {
  topicWeight: 1,
  timeInMeshWeight: 0,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 3600,
  firstMessageDeliveriesWeight: 0,
  firstMessageDeliveriesDecay: 0.5,
  firstMessageDeliveriesCap: 2000,
  meshMessageDeliveriesWeight: 0,
  meshMessageDeliveriesDecay: 0.5,
  meshMessageDeliveriesCap: 100,
  meshMessageDeliveriesThreshold: 20,
  meshMessageDeliveriesWindow: 10,
  meshMessageDeliveriesActivation: 5000,
  meshFailurePenaltyWeight: 0,
  meshFailurePenaltyDecay: 0.5,
  invalidMessageDeliveriesWeight: -20,
  invalidMessageDeliveriesDecay: 0.99,
};
