/**
 * A JSON-RPC proxy on 127.0.0.1 in front of a local chain, for fault tests: it names every transaction sent
 * through it (`eth_sendRawTransaction`) by the escrow or token function it calls, and lets a test act before
 * the transaction goes on (delay it, hold it forever) and after it was mined but before the sender hears of it
 * (kill the sender, delay the answer). Batches are split into single requests. With `maxLogRange`, it refuses
 * an `eth_getLogs` over more blocks than that (as public RPC endpoints do), with a JSON-RPC error.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Interface, Transaction } from "ethers";
import { airqubeEscrowAbi } from "../../src/chain/abi/airqube-escrow.js";
import { testGLMAbi } from "../../src/chain/abi/test-glm.js";

const FUNCTIONS = [new Interface(airqubeEscrowAbi), new Interface(testGLMAbi)];

/** What a hook learns of a transaction: the function it calls (`openJob`, `settle`, `approve` ...) and its hash. */
export interface SentTx {
  name: string;
  hash: string;
  from: string;
}

export interface RpcProxyHooks {
  /** Before the transaction is forwarded; resolve `"drop"` to never forward it (the socket is destroyed). */
  before?: (tx: SentTx) => Promise<"forward" | "drop"> | "forward" | "drop";
  /** After the chain accepted it (automining: mined), before the answer goes back. */
  after?: (tx: SentTx) => Promise<void> | void;
  /** Refuse `eth_getLogs` over more than this many blocks (a `toBlock` of `latest` or none counts as wide). */
  maxLogRange?: number;
}

export interface RpcProxy {
  url: string;
  /** Every transaction seen, in order. */
  sent: SentTx[];
  /** Every `eth_getLogs` range asked for, in order, and whether it was refused. */
  logRanges: { from: number; to: number; refused: boolean }[];
  hooks: RpcProxyHooks;
  close(): Promise<void>;
}

/** Names the function a signed transaction calls. */
export function describeRawTx(raw: string): SentTx {
  const tx = Transaction.from(raw);
  let name = "unknown";
  for (const iface of FUNCTIONS) {
    const parsed = (() => {
      try {
        return iface.parseTransaction({ data: tx.data });
      } catch {
        return null;
      }
    })();
    if (parsed) {
      name = parsed.name;
      break;
    }
  }
  return { name, hash: tx.hash ?? "", from: tx.from ?? "" };
}

/**
 * Starts a proxy to `upstream` (an `http://127.0.0.1:PORT` RPC URL).
 *
 * @example
 * const proxy = await startRpcProxy(chain.rpcUrl, { after: (tx) => { if (tx.name === "settle") child.kill("SIGKILL"); } });
 */
export async function startRpcProxy(upstream: string, hooks: RpcProxyHooks = {}): Promise<RpcProxy> {
  const sent: SentTx[] = [];
  const logRanges: RpcProxy["logRanges"] = [];
  const proxy: RpcProxy = { url: "", sent, logRanges, hooks, close: async () => undefined };
  const forward = async (request: unknown): Promise<unknown> => {
    const response = await fetch(upstream, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request),
    });
    return response.json();
  };
  const one = async (request: { id?: unknown; method?: string; params?: unknown[] }): Promise<unknown | "drop"> => {
    if (request.method === "eth_getLogs" && proxy.hooks.maxLogRange !== undefined) {
      const filter = (request.params?.[0] ?? {}) as { fromBlock?: string; toBlock?: string };
      const from = Number(filter.fromBlock ?? 0);
      const to =
        filter.toBlock === undefined || filter.toBlock === "latest" ? Number.MAX_SAFE_INTEGER : Number(filter.toBlock);
      const refused = !(to - from + 1 <= proxy.hooks.maxLogRange);
      logRanges.push({ from, to, refused });
      if (refused) {
        const message = `block range too large: at most ${proxy.hooks.maxLogRange} blocks`;
        return { jsonrpc: "2.0", id: request.id, error: { code: -32005, message } };
      }
    }
    if (request.method !== "eth_sendRawTransaction") return forward(request);
    const tx = describeRawTx(String(request.params?.[0]));
    sent.push(tx);
    if ((await proxy.hooks.before?.(tx)) === "drop") return "drop";
    const answer = await forward(request);
    await proxy.hooks.after?.(tx);
    return answer;
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        const body = JSON.parse(await readBody(req)) as unknown;
        const answers = Array.isArray(body)
          ? await Promise.all(body.map((r) => one(r as never)))
          : [await one(body as never)];
        if (answers.includes("drop")) {
          req.socket.destroy();
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(Array.isArray(body) ? answers : answers[0]));
      } catch {
        req.socket.destroy();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.close = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return proxy;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}
