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
import { MAX_CLOCK_SKEW_MS } from "./constants.js";

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
    /** Largest total of a qube's inputs the provider accepts (absent in offers of providers before it was added). */
    maxInputBytes: boundedInt(0, 2 ** 40).optional(),
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
  /**
   * Whether the provider takes shipped images (`image.archiveDigest`), pulls by digest from registries on its
   * allowlist (`pulls`: their hosts), and up to what archive size.
   */
  images: z
    .strictObject({
      shipped: z.boolean(),
      pulls: z.array(z.string().max(256)).max(16).optional(),
      maxArchiveBytes: boundedInt(0, 2 ** 40),
    })
    .optional(),
  issuedAt: isoTimeSchema,
  expiresAt: isoTimeSchema,
});

export type Offer = z.infer<typeof offerSchema>;
export type SignedOffer = SignedEnvelope<Offer>;

/** Signs an offer as its provider. */
export function signOffer(offer: Offer, identity: Identity): SignedOffer {
  return signEnvelope("offer", offerSchema.parse(offer), identity);
}

/** Whether an offer is still usable at `now`, allowing MAX_CLOCK_SKEW_MS of clock difference with its provider. */
export function offerLive(offer: Pick<Offer, "expiresAt">, now: Date): boolean {
  return Date.parse(offer.expiresAt) + MAX_CLOCK_SKEW_MS > now.getTime();
}

/**
 * Verifies a signed offer from the network: signature, schema, signer = provider, not issued in the future
 * and not expired at `now`, both with MAX_CLOCK_SKEW_MS of tolerance for the provider's clock. Throws a
 * PeerError otherwise: OFFER_FROM_FUTURE and OFFER_EXPIRED name how far off the provider's clock looks.
 */
export function verifyOffer(value: unknown, now: Date): Offer {
  const envelope = verifyEnvelope(value, { kind: "offer", schema: offerSchema, what: "offer" });
  const offer = envelope.payload;
  if (envelope.signer !== offer.provider)
    throw new PeerError("OFFER_INVALID", "Offer signed by someone other than its provider");
  const ahead = Date.parse(offer.issuedAt) - now.getTime();
  if (ahead > MAX_CLOCK_SKEW_MS)
    throw new PeerError("OFFER_FROM_FUTURE", "Offer is issued in the future: the provider's clock is ahead", {
      details: `issued ${Math.round(ahead / 1000)} s ahead of this clock (tolerance ${MAX_CLOCK_SKEW_MS / 1000} s)`,
    });
  if (!offerLive(offer, now))
    throw new PeerError("OFFER_EXPIRED", "Offer has expired", {
      details: `expired at ${offer.expiresAt}, ${Math.round((now.getTime() - Date.parse(offer.expiresAt)) / 1000)} s before this clock`,
    });
  if (Date.parse(offer.expiresAt) <= Date.parse(offer.issuedAt))
    throw new PeerError("OFFER_INVALID", "Offer expires before it is issued");
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
