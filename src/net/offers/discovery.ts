/**
 * Requestor side of offers: an offer book fed by the gossipsub topic and by direct queries to connected
 * peers. Every offer is verified (signature, schema, expiry) before it is kept; the newest per provider wins.
 */
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { z } from "zod";
import type { AirqubeError } from "../../qube/errors.js";
import { toAirqubeError } from "../../qube/errors.js";
import type { AirqubeNode } from "../node.js";
import { Wire } from "../wire.js";
import {
  MAX_OFFER_ANSWER_BYTES,
  MAX_OFFER_BYTES,
  MAX_OFFERS,
  MAX_OFFERS_PER_ANSWER,
  OFFER_PROTOCOL,
  OFFER_QUERY_TIMEOUT_MS,
  OFFER_TOPIC,
  PEER_EXCHANGE_DIAL_TIMEOUT_MS,
  PEER_EXCHANGE_RETRY_MS,
} from "./constants.js";

const offerAnswerSchema = z.strictObject({
  type: z.literal("offers"),
  offers: z.array(z.unknown()).max(MAX_OFFERS_PER_ANSWER),
});

import { type Offer, offerLive, type SignedOffer, verifyOffer } from "./offer.js";
import { offerTopicValidator } from "./validator.js";

export interface KnownOffer {
  offer: Offer;
  envelope: SignedOffer;
  receivedAt: Date;
}

/** An offer this book refused, by the provider it claims to be from (the claim is unproven when invalid). */
export interface DroppedOffer {
  provider: string;
  code: string;
  message: string;
  details?: string;
  lastSeen: string;
}

/** What a book refused: distinct providers (claimed), by reason code. */
export interface DroppedSummary {
  count: number;
  byCode: Record<string, number>;
  offers: DroppedOffer[];
}

/** Most refused offers remembered (one per claimed provider and reason). */
const MAX_DROPPED = 1_000;

/** The provider an unverified offer claims to be from, for diagnostics only. */
function claimedProvider(value: unknown): string {
  const payload = (value as { payload?: { provider?: unknown } } | null)?.payload;
  const provider = payload?.provider;
  return typeof provider === "string" && provider.length <= 128 ? provider : "unknown";
}

export interface OfferBookOptions {
  now?: () => Date;
  onRejected?: (error: AirqubeError) => void;
  /**
   * Peer exchange: dial up to this many of the providers that verified offers name (their signed addresses,
   * through the node's address policy), so that providers mesh with each other and not only through
   * bootnodes. Off (0) by default; provider agents turn it on.
   */
  peerExchange?: number;
}

/** Verified offers by provider peer id. */
export class OfferBook {
  private readonly offers = new Map<string, KnownOffer>();
  private readonly dropped = new Map<string, DroppedOffer>();
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });
  private listener: ((event: CustomEvent<{ topic: string; data: Uint8Array }>) => void) | undefined;
  /** Peer exchange: providers dialled (or being dialled) by this book, and when a dial was last tried. */
  private readonly exchanged = new Set<string>();
  private readonly lastTried = new Map<string, number>();
  private stopped = false;

  constructor(
    private readonly node: AirqubeNode,
    private readonly options: OfferBookOptions = {},
  ) {}

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  /** Subscribes to the offer topic. */
  start(): void {
    this.listener = (event) => {
      const message = event.detail;
      if (message.topic !== OFFER_TOPIC) return;
      if (message.data.byteLength > MAX_OFFER_BYTES) return;
      let value: unknown;
      try {
        value = JSON.parse(this.decoder.decode(message.data));
        this.add(value);
      } catch (error) {
        this.reject(value, error);
      }
    };
    this.node.services.pubsub.addEventListener("message", this.listener as never);
    // gossiped offers are validated before delivery and forwarding (validator.ts); this book records why
    this.node.services.pubsub.topicValidators.set(
      OFFER_TOPIC,
      offerTopicValidator(
        () => this.now(),
        (rejected) =>
          rejected.value !== undefined
            ? this.reject(rejected.value, rejected.error)
            : this.options.onRejected?.(toAirqubeError(rejected.error ?? rejected.rejection)),
      ),
    );
    this.node.services.pubsub.subscribe(OFFER_TOPIC);
  }

  stop(): void {
    this.stopped = true;
    if (this.listener) this.node.services.pubsub.removeEventListener("message", this.listener as never);
    this.node.services.pubsub.topicValidators.set(
      OFFER_TOPIC,
      offerTopicValidator(() => this.now()),
    );
  }

  private reject(value: unknown, error: unknown): void {
    const failure = toAirqubeError(error);
    const provider = claimedProvider(value);
    const key = `${provider} ${failure.code}`;
    if (this.dropped.has(key) || this.dropped.size < MAX_DROPPED) {
      this.dropped.set(key, {
        provider,
        code: failure.code,
        message: failure.message,
        ...(failure.details ? { details: failure.details } : {}),
        lastSeen: this.now().toISOString(),
      });
    }
    this.options.onRejected?.(failure);
  }

  /**
   * Offers refused so far (expired, issued in the future, badly signed, ...), one per claimed provider and
   * reason; a provider whose offer is later accepted leaves this list.
   */
  droppedOffers(): DroppedSummary {
    const offers = [...this.dropped.values()];
    const byCode: Record<string, number> = {};
    for (const o of offers) byCode[o.code] = (byCode[o.code] ?? 0) + 1;
    return { count: offers.length, byCode, offers };
  }

  /** Verifies and stores an offer (throws a PeerError when it is invalid). */
  add(value: unknown): Offer {
    const offer = verifyOffer(value, this.now());
    for (const key of this.dropped.keys()) if (key.startsWith(`${offer.provider} `)) this.dropped.delete(key);
    const known = this.offers.get(offer.provider);
    if (known && Date.parse(known.offer.issuedAt) > Date.parse(offer.issuedAt)) return known.offer;
    if (!known && this.offers.size >= MAX_OFFERS) return offer;
    this.offers.set(offer.provider, { offer, envelope: value as SignedOffer, receivedAt: this.now() });
    this.exchangeWith(offer);
    return offer;
  }

  /**
   * Peer exchange: dials the provider a verified offer names, when fewer than `peerExchange` providers are
   * connected through it, it is not connected already, and it was not tried in the last
   * PEER_EXCHANGE_RETRY_MS. The dial goes through the node's connection gater, so public mode never dials the
   * loopback or private addresses a hostile offer names. Failures are only remembered (behind NAT, gone).
   */
  private exchangeWith(offer: Offer): void {
    const limit = this.options.peerExchange ?? 0;
    if (limit <= 0 || this.stopped || offer.provider === this.node.peerId.toString()) return;
    // cheapest checks first: this runs for every verified offer
    const now = Date.now();
    const last = this.lastTried.get(offer.provider);
    if (last !== undefined && now - last < PEER_EXCHANGE_RETRY_MS) return;
    const peer = peerIdFromString(offer.provider);
    if (this.node.getConnections(peer).length > 0) return;
    if (this.exchanged.size >= limit) {
      // forget the exchanged peers that are gone, then look again
      const connected = new Set(this.node.getPeers().map((p) => p.toString()));
      for (const p of this.exchanged) if (!connected.has(p)) this.exchanged.delete(p);
      if (this.exchanged.size >= limit) return;
    }
    if (this.lastTried.size >= MAX_OFFERS) this.lastTried.clear();
    this.lastTried.set(offer.provider, now);
    this.exchanged.add(offer.provider);
    void (async () => {
      try {
        await this.node.peerStore.merge(peer, { multiaddrs: offer.addrs.map((a) => multiaddr(a)) });
        await this.node.dial(peer, { signal: AbortSignal.timeout(PEER_EXCHANGE_DIAL_TIMEOUT_MS) });
      } catch {
        this.exchanged.delete(offer.provider);
      }
    })();
  }

  /** Asks every connected peer for its offer directly (faster and more complete than waiting for gossip). */
  async queryConnected(options: { signal?: AbortSignal } = {}): Promise<void> {
    const peers = this.node.getPeers();
    await Promise.all(peers.map((peer) => this.query(peer.toString(), options).catch(() => undefined)));
  }

  /** Asks one peer for its offer and the offers it relays; each is verified on its own. */
  async query(peer: string, options: { signal?: AbortSignal } = {}): Promise<number> {
    const timeout = AbortSignal.timeout(OFFER_QUERY_TIMEOUT_MS);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const stream = await this.node.dialProtocol(peerIdFromString(peer), OFFER_PROTOCOL, { signal });
    const wire = new Wire(stream, { maxFrameBytes: MAX_OFFER_ANSWER_BYTES });
    try {
      const answer = await wire.receive(offerAnswerSchema, { signal });
      let added = 0;
      for (const value of answer.offers) {
        try {
          this.add(value);
          added++;
        } catch (error) {
          this.reject(value, error);
        }
      }
      await wire.close();
      return added;
    } catch (error) {
      wire.abort(error as Error);
      throw toAirqubeError(error);
    }
  }

  /** Signed offers still valid now (to relay). */
  envelopes(): SignedOffer[] {
    return this.list().map((known) => known.envelope);
  }

  /** Offers still valid now. */
  list(): KnownOffer[] {
    const now = this.now();
    return [...this.offers.values()].filter((known) => offerLive(known.offer, now));
  }

  /** Forgets a provider's offer and records why (it did not answer, it disconnected). */
  drop(provider: string, error: unknown): void {
    const known = this.offers.get(provider);
    this.offers.delete(provider);
    this.reject(known?.envelope ?? { payload: { provider } }, error);
  }

  /** Forgets a provider (e.g. after it failed). */
  forget(provider: string): void {
    this.offers.delete(provider);
  }
}
