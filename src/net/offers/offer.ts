/**
 * Provider offers: what a provider sells, signed by its peer id (= its signing key), with an expiry. An
 * offer names the provider's listen addresses, the X25519 key inputs are sealed to, tiers, resources, prices,
 * the payout address, and, per tier, the hash and summary of the escape-suite report it ran at start.
 */
import { z } from "zod";
import {
  boundedInt,
  digestSchema,
  type Identity,
  isoTimeSchema,
  PeerError,
  peerIdSchema,
  type SignedEnvelope,
  sha256HexSchema,
  signEnvelope,
  tierSchema,
  verifyEnvelope,
  weiSchema,
} from "../../qube/index.js";

export const probeSummarySchema = z.strictObject({
  reportHash: digestSchema,
  pass: boundedInt(0, 1000),
  fail: boundedInt(0, 1000),
  inconclusive: boundedInt(0, 1000),
  skipped: boundedInt(0, 1000),
});

export const offerSchema = z.strictObject({
  version: z.literal(1),
  provider: peerIdSchema,
  /** Where to dial the provider (multiaddrs without /p2p). */
  addrs: z.array(z.string().min(1).max(256)).min(1).max(8),
  /** X25519 public key (hex) that inputs are sealed to. */
  sealingKey: sha256HexSchema,
  /** EVM address providers are paid to. */
  payout: z.string().regex(/^0x[0-9a-fA-F]{40}$/, "must be an EVM address"),
  /** Optional operator key (groups machines of one operator for the distinct-operator rule). */
  operator: z.string().min(1).max(128).optional(),
  tiers: z.array(tierSchema).min(1).max(4),
  resources: z.strictObject({
    milliCpus: boundedInt(100, 256_000),
    memoryBytes: boundedInt(16 * 1024 * 1024, 2 ** 40),
    pids: boundedInt(8, 65_536),
    scratchBytes: boundedInt(1024 * 1024, 2 ** 44),
    maxWallTimeMs: boundedInt(1000, 7 * 24 * 3600 * 1000),
    maxConcurrent: boundedInt(1, 1024),
    /** Free slots when the offer was made. */
    available: boundedInt(0, 1024),
  }),
  price: z.strictObject({
    currency: z.string().regex(/^[A-Z]{2,10}$/),
    /** Fixed price per qube, wei. */
    start: weiSchema,
    /** Price per second of wall time, wei. */
    perSecond: weiSchema,
  }),
  /** Escape-suite result per offered tier. */
  probes: z.partialRecord(tierSchema, probeSummarySchema),
  issuedAt: isoTimeSchema,
  expiresAt: isoTimeSchema,
});

export type Offer = z.infer<typeof offerSchema>;
export type SignedOffer = SignedEnvelope<Offer>;

/** Signs an offer as its provider. */
export function signOffer(offer: Offer, identity: Identity): SignedOffer {
  return signEnvelope("offer", offerSchema.parse(offer), identity);
}

/**
 * Verifies a signed offer from the network: signature, schema, signer = provider, and not expired at `now`.
 * Throws a PeerError otherwise.
 */
export function verifyOffer(value: unknown, now: Date): Offer {
  const envelope = verifyEnvelope(value, { kind: "offer", schema: offerSchema, what: "offer" });
  const offer = envelope.payload;
  if (envelope.signer !== offer.provider)
    throw new PeerError("OFFER_INVALID", "Offer signed by someone other than its provider");
  if (Date.parse(offer.expiresAt) <= now.getTime())
    throw new PeerError("OFFER_EXPIRED", "Offer has expired", { details: offer.expiresAt });
  if (Date.parse(offer.issuedAt) > now.getTime() + 60_000)
    throw new PeerError("OFFER_INVALID", "Offer is issued in the future");
  for (const tier of offer.tiers) {
    if (!offer.probes[tier])
      throw new PeerError("OFFER_INVALID", "Offer has no escape-suite result for a tier it offers", { details: tier });
  }
  return offer;
}

/** Price of a qube under a price list: start + perSecond × ceil(wall-time limit in seconds), wei. */
export function qubePrice(pricing: { start: bigint; perSecond: bigint }, wallTimeMs: number): bigint {
  return pricing.start + pricing.perSecond * BigInt(Math.ceil(wallTimeMs / 1000));
}
