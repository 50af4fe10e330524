/**
 * Running chain calls with a deadline and turning whatever ethers throws into a {@link ChainError}.
 */
import { Interface, JsonRpcProvider, Network } from "ethers";
import { z } from "zod";
import { airqubeEscrowAbi } from "./abi/airqube-escrow.js";
import { airqubeEscrowV2Abi } from "./abi/airqube-escrow-v2.js";
import { testGLMAbi } from "./abi/test-glm.js";
import { ChainError } from "./errors.js";

/** Options of every chain call. */
export interface CallOptions {
  signal?: AbortSignal;
  /** Deadline of the call, in milliseconds (default {@link DEFAULT_CHAIN_TIMEOUT_MS}). */
  timeoutMs?: number;
}

/** Default deadline of one chain call (a transaction is sent and mined within it). */
export const DEFAULT_CHAIN_TIMEOUT_MS = 60_000;

/** Interfaces whose custom errors a revert is decoded against: the escrows first, then the token. */
const ERROR_INTERFACES = [
  new Interface(airqubeEscrowAbi),
  new Interface(airqubeEscrowV2Abi),
  new Interface(testGLMAbi),
];

/**
 * Runs `fn` under a deadline and the caller's signal; maps failures to {@link ChainError}.
 *
 * @example
 * const n = await runChainCall("read the block number", () => provider.getBlockNumber(), { signal });
 */
export async function runChainCall<T>(label: string, fn: () => Promise<T>, options: CallOptions = {}): Promise<T> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_CHAIN_TIMEOUT_MS);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  if (signal.aborted) throw abortError(label, signal);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError(label, signal));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([fn(), aborted]);
  } catch (error) {
    throw toChainError(label, error);
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}

function abortError(label: string, signal: AbortSignal): ChainError {
  return new ChainError("CHAIN_TIMEOUT", `Timed out or aborted: ${label}`, { cause: signal.reason });
}

/**
 * Maps an error thrown by ethers (or by a JSON-RPC endpoint) to a {@link ChainError}: reverts carry the
 * decoded custom error, connection failures say the chain is unreachable.
 */
export function toChainError(label: string, error: unknown): ChainError {
  if (error instanceof ChainError) return error;
  const e = error as { code?: unknown; shortMessage?: unknown; message?: unknown; data?: unknown };
  const data = revertData(error);
  if (data !== undefined || e?.code === "CALL_EXCEPTION") {
    const decoded = data === undefined ? undefined : decodeRevert(data);
    const name = decoded?.name;
    return new ChainError("CHAIN_REVERTED", `Transaction reverted: ${label}`, {
      details: name ? `${name}(${decoded.args.map(formatArg).join(", ")})` : String(e?.shortMessage ?? e?.message),
      cause: error,
      ...(name ? { errorName: name, errorArgs: decoded.args } : {}),
    });
  }
  if (isConnectionFailure(error)) {
    return new ChainError("CHAIN_UNREACHABLE", `The chain is unreachable: ${label}`, {
      details: "check that the RPC endpoint is up (for the devnet: `airqube devnet`)",
      cause: error,
    });
  }
  const message = String(e?.shortMessage ?? e?.message ?? error);
  return new ChainError("CHAIN_INVALID_RESPONSE", `The chain call failed: ${label}`, {
    details: message,
    cause: error,
  });
}

/** Decodes revert data against the escrow's and the token's custom errors. */
export function decodeRevert(data: string): { name: string; args: unknown[] } | undefined {
  for (const iface of ERROR_INTERFACES) {
    try {
      const parsed = iface.parseError(data);
      if (parsed) return { name: parsed.name, args: [...parsed.args] };
    } catch {
      // not this interface's error
    }
  }
  return undefined;
}

const hexData = z.string().regex(/^0x([0-9a-fA-F]{2})*$/);

function revertData(error: unknown): string | undefined {
  // ethers puts revert data on `data` (CALL_EXCEPTION), or nests the JSON-RPC error under `info`/`error`.
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0) {
    const e = queue.shift();
    if (typeof e !== "object" || e === null || seen.has(e)) continue;
    seen.add(e);
    const d = (e as { data?: unknown }).data;
    if (hexData.safeParse(d).success && (d as string).length >= 10) return d as string;
    for (const key of ["data", "error", "info", "cause"]) queue.push((e as Record<string, unknown>)[key]);
  }
  return undefined;
}

function isConnectionFailure(error: unknown): boolean {
  const seen = new Set<unknown>();
  let e: unknown = error;
  while (typeof e === "object" && e !== null && !seen.has(e)) {
    seen.add(e);
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "NETWORK_ERROR" || code === "TIMEOUT") {
      return true;
    }
    if (typeof message === "string" && /ECONNREFUSED|fetch failed|socket hang up|connect E/i.test(message)) {
      return true;
    }
    e = (e as { cause?: unknown; error?: unknown }).cause ?? (e as { error?: unknown }).error;
  }
  return false;
}

function formatArg(arg: unknown): string {
  return typeof arg === "bigint" ? arg.toString() : String(arg);
}

const chainIdAnswer = z.object({ result: z.string().regex(/^0x[0-9a-fA-F]+$/) });

/**
 * Asks an RPC endpoint for its chain id (one plain request, no retries), so that a dead chain fails fast.
 *
 * @throws ChainError `CHAIN_UNREACHABLE`, `CHAIN_INVALID_RESPONSE` or `CHAIN_TIMEOUT`.
 */
export async function fetchChainId(rpcUrl: string, options: CallOptions = {}): Promise<number> {
  return runChainCall(
    `ask ${rpcUrl} for its chain id`,
    async () => {
      const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_CHAIN_TIMEOUT_MS);
      const response = await fetch(rpcUrl, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
        signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
      }).catch((error: unknown) => {
        throw new ChainError("CHAIN_UNREACHABLE", `The chain is unreachable: ${rpcUrl}`, {
          details: "check that the RPC endpoint is up (for the devnet: `airqube devnet`)",
          cause: error,
        });
      });
      const text = await response.text();
      if (text.length > 65_536) throw new ChainError("CHAIN_INVALID_RESPONSE", "Oversized eth_chainId answer");
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (error) {
        throw new ChainError("CHAIN_INVALID_RESPONSE", "The RPC endpoint did not answer JSON", { cause: error });
      }
      const parsed = chainIdAnswer.safeParse(json);
      if (!parsed.success) {
        throw new ChainError("CHAIN_INVALID_RESPONSE", "The RPC endpoint gave no chain id", {
          details: text.slice(0, 200),
        });
      }
      return Number.parseInt(parsed.data.result, 16);
    },
    options,
  );
}

/**
 * An ethers provider set up for Airqube: a fixed network (no start-up probing loop when the chain is down) and
 * no request cache (ethers caches identical requests for 250 ms by default, which hands out stale nonces on an
 * automining chain such as the devnet's).
 *
 * @example
 * const provider = createRpcProvider(chain.rpcUrl, chain.chainId);
 */
export function createRpcProvider(rpcUrl: string, chainId: number, pollingIntervalMs = 250): JsonRpcProvider {
  return new JsonRpcProvider(rpcUrl, chainId, {
    staticNetwork: Network.from(chainId),
    cacheTimeout: -1,
    pollingInterval: pollingIntervalMs,
  });
}

/**
 * The contract's clock, unix seconds: the latest block's timestamp, or our clock plus the largest lead of the
 * chain's clock over ours seen so far. A chain that mines only on demand (the devnet) and runs ahead of our clock
 * has a stale latest block while nothing is mined: without the lead, a wait for a deadline never ends and a
 * keeper thinks it is earlier than the next block will say (and misses a dispute's short windows).
 *
 * @example
 * const clock = new ChainClock();
 * const now = await clock.now(provider, { signal });
 */
export class ChainClock {
  /** Largest lead of the chain's clock over ours seen, seconds. */
  private leadS = 0;

  /** @throws ChainError as {@link runChainCall}. */
  async now(provider: JsonRpcProvider, options: CallOptions = {}, label = "read the latest block"): Promise<number> {
    const block = await runChainCall(label, () => provider.getBlock("latest"), options);
    const wall = Math.floor(Date.now() / 1000);
    const timestamp = block?.timestamp ?? 0;
    if (timestamp - wall > this.leadS) this.leadS = timestamp - wall;
    return Math.max(timestamp, wall + this.leadS);
  }
}
