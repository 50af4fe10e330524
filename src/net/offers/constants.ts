/** Offer announcement: a gossipsub topic, and a request/response protocol to ask one peer for its offer. */
export const OFFER_TOPIC = "airqube/offers/1";
export const OFFER_PROTOCOL = "/airqube/offer/1.0.0";
/** Largest signed offer accepted, in bytes. */
export const MAX_OFFER_BYTES = 16 * 1024;
/** Most offers one query answer carries (the provider's own, then others it has seen). */
export const MAX_OFFERS_PER_ANSWER = 64;
/** Largest query answer. */
export const MAX_OFFER_ANSWER_BYTES = MAX_OFFER_BYTES * MAX_OFFERS_PER_ANSWER;
/** How long one offer query may take. */
export const OFFER_QUERY_TIMEOUT_MS = 5_000;
/** How often a provider re-announces its offer (each interval jittered by ANNOUNCE_JITTER). */
export const ANNOUNCE_INTERVAL_MS = 2_000;
/** Announcements are spread by up to this fraction of the interval either way (no synchronised bursts). */
export const ANNOUNCE_JITTER = 0.2;
/** Most offer or time queries one peer may have open on a connection at once (js-libp2p doc/LIMITS.md). */
export const MAX_QUERY_STREAMS = 4;
/** How long an offer is valid after it is issued. */
export const OFFER_TTL_MS = 60_000;
/** Most offers a requestor keeps. */
export const MAX_OFFERS = 10_000;
/**
 * Clock difference tolerated between a provider and the peers that verify its offers: an offer issued up to
 * this much in the future, or expired less than this long ago, is still accepted. A provider whose clock is
 * further off has its offers rejected, and warns its operator (see clock.ts).
 */
export const MAX_CLOCK_SKEW_MS = 30_000;
/** Protocol a node asks a peer's clock with (every Airqube node answers). */
export const TIME_PROTOCOL = "/airqube/time/1.0.0";
/** How often a provider compares its clock with its peers'. */
export const CLOCK_CHECK_INTERVAL_MS = 60_000;
/** How many connected peers one clock check asks. */
export const CLOCK_CHECK_PEERS = 8;
/** A clock answer that took longer than this round trip is not used (its error would be too large). */
export const CLOCK_MAX_RTT_MS = 2_000;
/** How often a persisting skew is warned about again. */
export const CLOCK_WARN_REPEAT_MS = 10 * 60_000;
/**
 * Peer exchange: a provider dials up to this many other providers named by the verified offers it receives, so
 * that the providers form a gossip mesh of their own and offers keep flowing when every bootnode is gone.
 */
export const PEER_EXCHANGE_PEERS = 8;
/** A provider that could not be dialled for peer exchange is tried again after this long at the earliest. */
export const PEER_EXCHANGE_RETRY_MS = 30_000;
/** How long one peer-exchange dial may take. */
export const PEER_EXCHANGE_DIAL_TIMEOUT_MS = 5_000;
