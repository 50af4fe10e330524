/**
 * An embedded chain for the devnet: Hardhat's in-process EDR network, served over JSON-RPC on 127.0.0.1 so
 * that providers in other processes can reach it.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { HDNodeWallet, Mnemonic } from "ethers";
import { packageRoot } from "../package-root.js";
import { UserError } from "../qube/errors.js";
import { ChainError } from "./errors.js";

/** The mnemonic of Hardhat's default accounts: public knowledge, for local test chains only. */
export const LOCAL_CHAIN_MNEMONIC = "test test test test test test test test test test test junk";

/** Largest JSON-RPC request body accepted, in bytes. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;
/** The error code geth and anvil use for reverts; ethers reads the revert data from `error.data`. */
const REVERT_ERROR_CODE = 3;

/** Options of {@link startLocalChain}. */
export interface LocalChainOptions {
  /** TCP port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** How many funded accounts to create (default 10). */
  accounts?: number;
  /** Native balance of each account, in wei (default 10 000 ETH). */
  balance?: bigint;
  /** Chain id (default 31337). */
  chainId?: number;
  /** Aborting stops the chain (and aborts a start in progress). */
  signal?: AbortSignal;
}

/** A funded test account of the local chain. */
export interface LocalAccount {
  /** Checksummed address. */
  address: string;
  /** 0x-prefixed hex. Test keys, derived from {@link LOCAL_CHAIN_MNEMONIC}. */
  privateKey: string;
}

/** A running local chain, as {@link startLocalChain} returns it. */
export interface LocalChain {
  /** `http://127.0.0.1:PORT`. */
  rpcUrl: string;
  chainId: number;
  /** The funded test accounts. */
  accounts: LocalAccount[];
  /** Stops the RPC server and the chain; idempotent. */
  stop(): Promise<void>;
  /**
   * Takes the chain off the network (closes the RPC server and every connection) while keeping its state, as
   * a node that goes down; {@link LocalChain.resume} serves it again on the same port. For fault tests.
   */
  interrupt(): Promise<void>;
  /** Serves the chain again on the same port after {@link LocalChain.interrupt}; a no-op when it is up. */
  resume(): Promise<void>;
}

interface Eip1193 {
  request(args: { method: string; params?: unknown[] | object }): Promise<unknown>;
}

/**
 * Derives the local chain's test accounts (`m/44'/60'/0'/0/i` of {@link LOCAL_CHAIN_MNEMONIC}).
 *
 * @example
 * const [deployer] = localAccounts(1);
 */
export function localAccounts(count: number): LocalAccount[] {
  const mnemonic = Mnemonic.fromPhrase(LOCAL_CHAIN_MNEMONIC);
  return Array.from({ length: count }, (_, i) => {
    const w = HDNodeWallet.fromMnemonic(mnemonic, `m/44'/60'/0'/0/${i}`);
    return { address: w.address, privateKey: w.privateKey };
  });
}

/**
 * Hardhat (an optional peer dependency of the package: only the local chain needs it), or a clear error
 * saying how to install it.
 */
async function loadHardhat(): Promise<typeof import("hardhat/hre")> {
  try {
    return await import("hardhat/hre");
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND")
      throw new UserError("HARDHAT_MISSING", "The local chain (devnet) needs Hardhat, which is not installed", {
        details: "install it next to airqube: npm install --save-dev hardhat@^3 (Node >= 22.13)",
        cause: error,
      });
    throw new ChainError("CHAIN_START_FAILED", "Could not load Hardhat", {
      details: error instanceof Error ? error.message : String(error),
      cause: error,
    });
  }
}

/**
 * Starts an in-process Hardhat (EDR) chain and serves its JSON-RPC on 127.0.0.1.
 *
 * @throws UserError `HARDHAT_MISSING` when Hardhat is not installed; ChainError `CHAIN_START_FAILED`.
 *
 * @example
 * const chain = await startLocalChain({ port: 8545 });
 * const provider = createRpcProvider(chain.rpcUrl, chain.chainId);
 * // ...
 * await chain.stop();
 */
export async function startLocalChain(options: LocalChainOptions = {}): Promise<LocalChain> {
  const { signal } = options;
  signal?.throwIfAborted();
  const chainId = options.chainId ?? 31337;
  const accounts = localAccounts(options.accounts ?? 10);
  const balance = options.balance ?? 10_000n * 10n ** 18n;

  let connection: { provider: Eip1193; close(): Promise<void> };
  const { createHardhatRuntimeEnvironment } = await loadHardhat();
  try {
    const hre = await createHardhatRuntimeEnvironment(
      {
        networks: {
          airqubeLocal: {
            type: "edr-simulated",
            chainId,
            accounts: accounts.map((a) => ({ privateKey: a.privateKey, balance: balance.toString() })),
          },
        },
      },
      {},
      // Airqube's own package, not the directory the user happens to be in (Hardhat wants a package.json there)
      packageRoot(),
    );
    connection = (await hre.network.create("airqubeLocal")) as unknown as typeof connection;
  } catch (error) {
    throw new ChainError("CHAIN_START_FAILED", "Could not start the local chain", {
      details: error instanceof Error ? error.message : String(error),
      cause: error,
    });
  }

  const serve = async (port: number) => {
    const server = createServer((req, res) => {
      void handleHttp(connection.provider, req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });
    return server;
  };
  const unserve = async (server: Server) => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  let server: Server | undefined;
  try {
    server = await serve(options.port ?? 0);
  } catch (error) {
    await connection.close();
    throw new ChainError("CHAIN_START_FAILED", "Could not serve the local chain on 127.0.0.1", {
      details: `port ${options.port ?? 0}: ${error instanceof Error ? error.message : String(error)}`,
      cause: error,
    });
  }
  const port = (server.address() as AddressInfo).port;

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      signal?.removeEventListener("abort", onAbort);
      const s = server;
      server = undefined;
      if (s) await unserve(s);
      await connection.close();
    })();
    return stopped;
  };
  const interrupt = async (): Promise<void> => {
    const s = server;
    server = undefined;
    if (s) await unserve(s);
  };
  const resume = async (): Promise<void> => {
    if (server || stopped) return;
    try {
      server = await serve(port);
    } catch (error) {
      throw new ChainError("CHAIN_START_FAILED", "Could not serve the local chain again on 127.0.0.1", {
        details: `port ${port}: ${error instanceof Error ? error.message : String(error)}`,
        cause: error,
      });
    }
  };
  const onAbort = (): void => void stop();
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) await stop();

  return { rpcUrl: `http://127.0.0.1:${port}`, chainId, accounts, stop, interrupt, resume };
}

async function handleHttp(provider: Eip1193, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (req.method !== "POST") {
    res.writeHead(req.method === "OPTIONS" ? 204 : 405).end();
    return;
  }
  let body: unknown;
  try {
    body = JSON.parse(await readBody(req));
  } catch (error) {
    send(res, { jsonrpc: "2.0", id: null, error: { code: -32700, message: `Parse error: ${String(error)}` } });
    return;
  }
  if (Array.isArray(body)) {
    send(res, await Promise.all(body.map((r) => handleRequest(provider, r))));
  } else {
    send(res, await handleRequest(provider, body));
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new RangeError(`request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

async function handleRequest(provider: Eip1193, raw: unknown): Promise<object> {
  const request = raw as { id?: unknown; method?: unknown; params?: unknown };
  const id = request?.id ?? null;
  if (typeof request !== "object" || request === null || typeof request.method !== "string") {
    return { jsonrpc: "2.0", id, error: { code: -32600, message: "Invalid request" } };
  }
  try {
    const params = Array.isArray(request.params) ? request.params : [];
    const result = await provider.request({ method: request.method, params });
    return { jsonrpc: "2.0", id, result: result ?? null };
  } catch (error) {
    return { jsonrpc: "2.0", id, error: toJsonRpcError(error) };
  }
}

function toJsonRpcError(error: unknown): { code: number; message: string; data?: unknown } {
  const e = error as { code?: unknown; message?: unknown; data?: unknown };
  const code = typeof e?.code === "number" ? e.code : -32603;
  const message = typeof e?.message === "string" ? e.message : String(error);
  const data =
    typeof e?.data === "string"
      ? e.data
      : typeof (e?.data as { data?: unknown })?.data === "string"
        ? (e.data as { data: string }).data
        : undefined;
  // Reverts (code 3) return the raw revert data, as geth and anvil do; ethers decodes custom errors from it.
  if (code === REVERT_ERROR_CODE) return { code, message, data };
  return data === undefined ? { code, message } : { code, message, data: { message, data } };
}

function send(res: ServerResponse, payload: unknown): void {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(payload));
}
