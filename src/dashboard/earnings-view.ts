/**
 * The provider's money on chain, for the dashboard: what the escrow credited to its payout account (the
 * `Credited` events `airqube provider earnings` reads, through the same {@link EscrowClient.credits}), what it
 * withdrew (`Withdrawn` events), and what it can still withdraw. Events are read in pages
 * (src/chain/log-pages.ts), every call under a deadline. Nothing is signed or sent: the client is connected with
 * a throwaway key and asked about the payout address (from `status.json`, else derived from `payout.key`,
 * which is read, never created). A data directory without `chain.json` is an unpaid provider.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Wallet } from "ethers";
import { EscrowClient } from "../chain/escrow-client.js";
import { readChainFile } from "../provider/payments.js";
import { toAirqubeError } from "../qube/errors.js";
import { readJsonFile } from "./store.js";

/** Deadline of each chain call of one read, milliseconds. */
export const EARNINGS_TIMEOUT_MS = 10_000;
/** Credits and withdrawals listed one by one (the newest); the totals count them all. */
export const MAX_LISTED_EVENTS = 200;

/** What `/api/earnings` returns. */
export type EarningsView =
  | { paid: false; note: string }
  | {
      paid: true;
      rpcUrl: string;
      escrow: string;
      payout: string | null;
      chainId?: number;
      /** Sum of every credit (prices paid plus stakes returned), wei. */
      totalCreditedWei?: string;
      /** Sum of every withdrawal, wei. */
      totalWithdrawnWei?: string;
      /** Credited and not withdrawn yet (the escrow's balance of the payout account), wei. */
      withdrawableWei?: string;
      credits?: { jobId: string; amountWei: string; block: number; tx: string }[];
      withdrawals?: { amountWei: string; block: number; tx: string }[];
      creditCount?: number;
      withdrawalCount?: number;
      /** Why the chain could not be read (unreachable, timed out, no payout address). */
      error?: { code: string; message: string };
      readAt: string;
    };

/**
 * Reads the earnings of the provider data directory `dataDir` from its chain.
 *
 * @example
 * const earnings = await readEarnings("/root/.airqube/provider", new Date());
 * if (earnings.paid && !earnings.error) console.log(earnings.totalCreditedWei, earnings.totalWithdrawnWei);
 */
export async function readEarnings(
  dataDir: string,
  now: Date,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<EarningsView> {
  let chain: { rpcUrl: string; escrow: string } | undefined;
  try {
    chain = readChainFile(dataDir);
  } catch (error) {
    const e = toAirqubeError(error);
    return { paid: false, note: `unpaid provider? chain.json cannot be read (${e.code})` };
  }
  if (!chain) return { paid: false, note: "unpaid provider: no chain configured in this data directory" };
  const base = { paid: true as const, rpcUrl: chain.rpcUrl, escrow: chain.escrow, readAt: now.toISOString() };
  const payout = payoutAddress(dataDir);
  if (!payout)
    return {
      ...base,
      payout: null,
      error: { code: "PROVIDER_UNKNOWN", message: "No payout address: the agent has not run here with a chain" },
    };
  const call = {
    timeoutMs: options.timeoutMs ?? EARNINGS_TIMEOUT_MS,
    ...(options.signal ? { signal: options.signal } : {}),
  };
  let client: EscrowClient | undefined;
  try {
    // a throwaway key: this client only reads, and only about `payout`
    client = await EscrowClient.connect(
      { rpcUrl: chain.rpcUrl, escrow: chain.escrow, privateKey: Wallet.createRandom().privateKey },
      call,
    );
    const [credits, withdrawals, withdrawable] = await Promise.all([
      client.credits(payout, call),
      client.withdrawals(payout, call),
      client.balanceOf(payout, call),
    ]);
    const sum = (list: { amount: bigint }[]) => list.reduce((total, x) => total + x.amount, 0n).toString();
    return {
      ...base,
      payout,
      chainId: client.chainId,
      totalCreditedWei: sum(credits),
      totalWithdrawnWei: sum(withdrawals),
      withdrawableWei: withdrawable.toString(),
      creditCount: credits.length,
      withdrawalCount: withdrawals.length,
      credits: credits
        .slice(-MAX_LISTED_EVENTS)
        .reverse()
        .map((c) => ({ jobId: c.jobId, amountWei: c.amount.toString(), block: c.blockNumber, tx: c.txHash })),
      withdrawals: withdrawals
        .slice(-MAX_LISTED_EVENTS)
        .reverse()
        .map((w) => ({ amountWei: w.amount.toString(), block: w.blockNumber, tx: w.txHash })),
    };
  } catch (error) {
    const e = toAirqubeError(error);
    return { ...base, payout, error: { code: e.code, message: e.message } };
  } finally {
    client?.close();
  }
}

/** The payout address of a provider data directory: from its status, else from its payout key (read only). */
function payoutAddress(dataDir: string): string | undefined {
  const status = readJsonFile(join(dataDir, "status.json")) as { payout?: unknown } | undefined;
  if (typeof status?.payout === "string" && /^0x[0-9a-fA-F]{40}$/.test(status.payout)) return status.payout;
  const keyPath = join(dataDir, "payout.key");
  if (!existsSync(keyPath)) return undefined;
  try {
    return new Wallet(readFileSync(keyPath, "utf8").trim()).address;
  } catch {
    return undefined;
  }
}

/**
 * Keeps the last earnings read for `ttlMs` and shares one read in flight, so that a page polling every few
 * seconds (or many tabs) asks the chain at most once per `ttlMs`.
 */
export function cachedEarnings(
  read: () => Promise<EarningsView>,
  ttlMs: number,
  clock: () => number = Date.now,
): () => Promise<EarningsView> {
  let last: { at: number; value: Promise<EarningsView> } | undefined;
  return () => {
    if (!last || clock() - last.at >= ttlMs) {
      const value = read();
      last = { at: clock(), value };
      // a failed read is not kept
      value.catch(() => {
        last = undefined;
      });
    }
    return last.value;
  };
}
