/**
 * Event reads in pages: `eth_getLogs` from a contract's deployment block to the latest block, in block ranges
 * that public RPC endpoints accept. Shared by the escrow clients (v1 `EscrowClient`, v2 `EscrowV2Client`).
 */
import type { Contract, EventLog, JsonRpcProvider, Log } from "ethers";
import { type CallOptions, toChainError } from "./rpc.js";

/** A client's widest block range of one `eth_getLogs` request; narrowed (and kept) when an endpoint refuses. */
export interface LogRange {
  blocks: number;
}

/**
 * Event logs of `contract` matching `filter`, from `fromBlock` to the latest block, read in ranges of at most
 * `range.blocks` blocks (public RPC endpoints refuse wide `eth_getLogs` ranges). An endpoint that answers a
 * range with an error (each has its own limit: 10 000, 2 000, 1 000, 500 blocks ...) is asked again with half
 * the range, down to one block, and `range` keeps the narrower range for later reads; a chain that does not
 * answer is not retried.
 *
 * @throws ChainError (through the caller's `runChainCall`) when even a one-block range is refused.
 */
export async function queryLogPages(
  contract: Contract,
  provider: JsonRpcProvider,
  filter: Parameters<Contract["queryFilter"]>[0],
  fromBlock: number,
  range: LogRange,
  options: CallOptions = {},
): Promise<(EventLog | Log)[]> {
  const latest = await provider.getBlockNumber();
  const out: (EventLog | Log)[] = [];
  for (let from = fromBlock; from <= latest; ) {
    options.signal?.throwIfAborted();
    const to = Math.min(latest, from + range.blocks - 1);
    try {
      out.push(...(await contract.queryFilter(filter, from, to)));
    } catch (error) {
      const refused = toChainError("read events", error).code === "CHAIN_INVALID_RESPONSE";
      if (!refused || to === from) throw error;
      range.blocks = Math.max(1, Math.floor((to - from + 1) / 2));
      continue;
    }
    from = to + 1;
  }
  return out;
}
