/**
 * The network as this machine has seen it, from local files only (the dashboard never joins the network):
 * the providers the requestor dispatched to (journal) with their reputation, this machine's own provider offer
 * (its last `status.json`), and the running devnet's profile. Live offers of other providers need a network
 * connection: `airqube offers` gathers them.
 */
import { join } from "node:path";
import { devnetProfilePath } from "../devnet/profile.js";
import { isAlive, MAX_PAGE_LIMIT } from "./limits.js";
import { readJsonFile, withReadOnly } from "./store.js";

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
    alive: boolean;
  } | null;
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
            alive: isAlive(status.pid),
          }
        : null,
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
      "Offers of other providers are gathered live by `airqube offers`; the dashboard reads local files only and never joins the network.",
    ],
  };
}
