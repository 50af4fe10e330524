/**
 * The network as this machine has seen it, from local files only (the dashboard never joins the network):
 * the providers the requestor dispatched to (journal) with their reputation, this machine's own provider offer
 * and the offers of other providers its agent has seen (its `status.json`, refreshed every 15 s while it runs),
 * and the running devnet's profile.
 */
import { join } from "node:path";
import { devnetProfilePath } from "../devnet/profile.js";
import { isAlive, MAX_PAGE_LIMIT } from "./limits.js";
import { readJsonFile, withReadOnly } from "./store.js";

/** One offer of another provider, as the agent's offer book held it. */
export interface OfferSeen {
  provider: string;
  tiers: string[];
  price: { currency: string; start: string; perSecond: string };
  maxWallTimeMs: number;
  available: number;
  maxConcurrent: number;
  issuedAt: string;
}

/** Most offers read from `status.json` (the agent writes at most 200). */
const MAX_OFFERS_SEEN = 200;

const text = (value: unknown, max = 256): string | undefined =>
  typeof value === "string" && value.length <= max ? value : undefined;
const wei = (value: unknown): string | undefined =>
  typeof value === "string" && /^\d{1,78}$/.test(value) ? value : undefined;
const count = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : undefined;

/** The offers in a `status.json`, each checked field by field (a malformed entry is left out). */
function offersOf(status: Record<string, unknown> | undefined): OfferSeen[] {
  const list = Array.isArray(status?.offersSeen) ? (status.offersSeen as unknown[]).slice(0, MAX_OFFERS_SEEN) : [];
  const offers: OfferSeen[] = [];
  for (const entry of list) {
    const o = (entry ?? {}) as Record<string, unknown>;
    const price = (o.price ?? {}) as Record<string, unknown>;
    const tiers = Array.isArray(o.tiers) ? o.tiers.map((t) => text(t, 32)).filter((t) => t !== undefined) : [];
    const provider = text(o.provider, 128);
    const currency = text(price.currency, 10);
    const start = wei(price.start);
    const perSecond = wei(price.perSecond);
    const issuedAt = text(o.issuedAt, 40);
    const maxWallTimeMs = count(o.maxWallTimeMs);
    const available = count(o.available);
    const maxConcurrent = count(o.maxConcurrent);
    if (
      provider === undefined ||
      currency === undefined ||
      start === undefined ||
      perSecond === undefined ||
      issuedAt === undefined ||
      maxWallTimeMs === undefined ||
      available === undefined ||
      maxConcurrent === undefined
    )
      continue;
    offers.push({
      provider,
      tiers,
      price: { currency, start, perSecond },
      maxWallTimeMs,
      available,
      maxConcurrent,
      issuedAt,
    });
  }
  return offers;
}

/** What `/api/network` returns. */
export interface NetworkView {
  /** Providers this requestor dispatched qubes to, most used first. */
  providers: {
    peerId: string;
    qubes: number;
    lastSeen: string;
    wrong: number;
    consecutiveValid: number;
    marked: boolean;
  }[];
  /** This machine's provider, as its agent last described itself: tiers offered, addresses, capacity. */
  ownOffer: {
    peerId: string;
    tiers: unknown;
    addrs: unknown;
    running: unknown;
    maxConcurrent: unknown;
    /** This provider's own price (wei per start and per second), when its agent wrote it. */
    price: unknown;
    alive: boolean;
  } | null;
  /**
   * Offers of other providers as this machine's agent last saw them (verified by it; newest first; at most
   * 200), with when it saw them. Empty without a provider agent in the data directory.
   */
  offersSeen: OfferSeen[];
  /** When the agent last wrote what it saw (ISO 8601), or null. */
  offersSeenAt: string | null;
  /** The running devnet (bootstrap address, chain), when one runs. */
  devnet: { bootstrap: string; chainId: number | null; rpcUrl: string | null; escrow: string | null } | null;
  notes: string[];
}

/**
 * Reads the network view.
 *
 * @example
 * const view = readNetworkView({ requestorDir, providerDir, home: airqubeHome() }, new Date());
 */
export function readNetworkView(
  dirs: { requestorDir: string; providerDir: string; home: string },
  now: Date,
): NetworkView {
  const used = withReadOnly(
    join(dirs.requestorDir, "journal.sqlite"),
    [] as { provider: string; n: number; last: string }[],
    (db) =>
      db.has("dispatches")
        ? db.all<{ provider: string; n: number; last: string }>(
            "SELECT provider, COUNT(*) AS n, MAX(updated_at) AS last FROM dispatches GROUP BY provider ORDER BY n DESC, provider LIMIT ?",
            MAX_PAGE_LIMIT,
          )
        : [],
  );
  const reputation = new Map(
    withReadOnly(
      join(dirs.requestorDir, "reputation.sqlite"),
      [] as { provider: string; consecutive_valid: number; wrong: number; marked_until: string | null }[],
      (db) =>
        db.has("reputation")
          ? db.all<{ provider: string; consecutive_valid: number; wrong: number; marked_until: string | null }>(
              "SELECT provider, consecutive_valid, wrong, marked_until FROM reputation LIMIT 10000",
            )
          : [],
    ).map((row) => [row.provider, row]),
  );
  const status = readJsonFile(join(dirs.providerDir, "status.json")) as Record<string, unknown> | undefined;
  const profile = readJsonFile(devnetProfilePath(dirs.home)) as Record<string, unknown> | undefined;
  const chain = (profile?.chain ?? null) as Record<string, unknown> | null;
  return {
    providers: used.map((row) => {
      const r = reputation.get(row.provider);
      return {
        peerId: row.provider,
        qubes: Number(row.n),
        lastSeen: row.last,
        wrong: Number(r?.wrong ?? 0),
        consecutiveValid: Number(r?.consecutive_valid ?? 0),
        marked: Boolean(r?.marked_until && Date.parse(r.marked_until) > now.getTime()),
      };
    }),
    ownOffer:
      status && typeof status === "object" && typeof status.peerId === "string"
        ? {
            peerId: status.peerId,
            tiers: status.tiers ?? [],
            addrs: status.addrs ?? [],
            running: status.running ?? 0,
            maxConcurrent: status.maxConcurrent ?? 0,
            price: status.price ?? null,
            alive: isAlive(status.pid),
          }
        : null,
    offersSeen: offersOf(status),
    offersSeenAt: Array.isArray(status?.offersSeen) ? (text(status?.updatedAt, 40) ?? null) : null,
    devnet:
      profile && typeof profile.bootstrap === "string" && isAlive(profile.pid)
        ? {
            bootstrap: profile.bootstrap,
            chainId: typeof chain?.chainId === "number" ? chain.chainId : null,
            rpcUrl: typeof chain?.rpcUrl === "string" ? chain.rpcUrl : null,
            escrow: typeof chain?.escrow === "string" ? chain.escrow : null,
          }
        : null,
    notes: [
      "The dashboard reads local files only and never joins the network: offers seen are those this machine's provider agent verified (refreshed every 15 s while it runs); `airqube offers` asks the network live.",
    ],
  };
}
