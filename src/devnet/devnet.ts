/**
 * A local network on one machine: a bootstrap peer and N provider agents, each a separate process on
 * 127.0.0.1, with their data under one directory. The escape suite runs once up front and its report is
 * shared through the probe cache (same host, same runtime: same result). `stop()` ends every process.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Wallet } from "ethers";
import { deployEscrow, fundAccounts } from "../chain/deploy.js";
import { deployEscrowV2, EscrowV2Client } from "../chain/escrow-v2-client.js";
import { type LocalChain, startLocalChain } from "../chain/local-chain.js";
import { createRpcProvider } from "../chain/rpc.js";
import { packageRoot } from "../package-root.js";
import { escapeSuiteGate } from "../provider/probe-gate.js";
import { PlatformError, TimeoutError, UserError } from "../qube/index.js";
import { ContainerSandbox } from "../sandbox/container-sandbox.js";

/** The `airqube` entry point of this package (from src/, dist/ or node_modules/airqube). */
const BIN = join(packageRoot(), "bin", "airqube.js");

/** How one devnet provider is started (each field is the `airqube provider` flag of the same name). */
export interface DevnetProviderOptions {
  /** Adversary behaviour (tests only). */
  behaviour?: string;
  /** Most qubes it runs at once. */
  maxConcurrent?: number;
  /** Declared operator key (providers of one operator never serve one qube together). */
  operator?: string;
  /** Payout address; not allowed with `chain` (the devnet creates the payout keys). */
  payout?: string;
  /** Start price, wei. */
  priceStart?: string;
  /** Price per second of wall time, wei (default 0 when `priceStart` is given). */
  pricePerSecond?: string;
  /** With a chain: the escrow this provider is paid through (default the devnet's `escrowVersion`). */
  escrowVersion?: 1 | 2;
}

/** Options of {@link Devnet.start}. */
export interface DevnetOptions {
  /** How many providers, or the options of each. */
  providers: number | DevnetProviderOptions[];
  /** Root directory; default a fresh temporary one. */
  dir?: string;
  /** Escape-suite report cache shared by the agents (default: inside `dir`). */
  probeCache?: string;
  /** Passed to every child (e.g. AIRQUBE_SLOW_MS). */
  env?: Record<string, string>;
  /** Aborts the start (TimeoutError `ABORTED`). */
  signal?: AbortSignal;
  /**
   * Called as the devnet comes up: `probed` (the escape suite's summary), `chainReady` (RPC URL and escrow),
   * `bootstrapReady` (its address), `providerReady` (index and peer id), and `providerExited` (index, exit
   * code and signal) whenever a provider process ends.
   */
  onEvent?: (event: {
    type: "probed" | "chainReady" | "bootstrapReady" | "providerReady" | "providerExited";
    detail: unknown;
  }) => void;
  /** How long each process may take to become ready, ms (default 60 000). */
  readyTimeoutMs?: number;
  /**
   * Starts a local chain on 127.0.0.1 with the test token and the escrow, funds the requestor and every
   * provider, and runs the providers paid (each gets its funded payout key in its data directory).
   */
  chain?: boolean;
  /** Token each funded account gets, wei (default 1000 GLM). */
  fundWei?: bigint;
  /**
   * 2: the providers are paid through escrow v2 (`AirqubeEscrowV2`, deployed beside v1 on every devnet chain):
   * the requestor's deposit is made (half its tokens) and each provider deposits its standing stake at start.
   * Default 1 (escrow v1).
   */
  escrowVersion?: 1 | 2;
}

/** What a requestor needs to pay on the devnet's chain. */
export interface DevnetChain {
  /** `http://127.0.0.1:PORT`. */
  rpcUrl: string;
  chainId: number;
  escrow: string;
  /** The escrow v2 contract (`AirqubeEscrowV2`), deployed beside `escrow` for the same token. */
  escrowV2: string;
  /** The escrow the providers are paid through: 1 (`escrow`) or 2 (`escrowV2`). */
  escrowVersion: 1 | 2;
  token: string;
  /** The funded requestor account and its key (a well-known test key: local chains only; never print it). */
  requestor: { address: string; privateKey: string };
  /** `requestor.key` in the devnet directory (mode 0600), holding that key. */
  requestorKeyFile: string;
  /** Payout address of each provider, by index. */
  payouts: string[];
  /** Stops the chain (done by `Devnet.stop`; exposed so tests can take the chain down). */
  stop(): Promise<void>;
  /** Takes the chain off the network, keeping its state (fault tests); `resume()` serves it again, same port. */
  interrupt(): Promise<void>;
  /** Serves the chain again on the same port after `interrupt()`; a no-op when it is up. */
  resume(): Promise<void>;
}

/** One running devnet provider. */
export interface DevnetProvider {
  /** Its position in `Devnet.providers`. */
  index: number;
  peerId: string;
  /** The multiaddrs it listens on. */
  addrs: string[];
  /** Its data directory (identity, ledger, payout key). */
  dataDir: string;
  /** Its `airqube provider` child process. */
  process: ChildProcess;
  /** Its behaviour (`honest` unless a test asked otherwise). */
  behaviour: string;
  /** Payout address (with a chain: the funded account whose key is in its data directory). */
  payout?: string;
}

interface Ready {
  event: "ready";
  peerId: string;
  addrs: string[];
}

/** Starts one `airqube` child process and waits for its `ready` JSON line. */
function spawnReady(
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<{ child: ChildProcess; ready: Ready }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new TimeoutError("DEVNET_TIMEOUT", "A devnet process did not become ready in time", {
          details: `${args.join(" ")}\n${stderr}`,
        }),
      );
    }, timeoutMs);
    const onAbort = () => {
      child.kill("SIGKILL");
      clearTimeout(timer);
      reject(new TimeoutError("ABORTED", "Devnet start was aborted"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (line) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      try {
        const ready = JSON.parse(line) as Ready;
        if (ready.event !== "ready")
          throw new PlatformError("DEVNET_START_FAILED", "Unexpected first line", { details: line });
        resolve({ child, ready });
      } catch {
        child.kill("SIGKILL");
        reject(
          new PlatformError("DEVNET_START_FAILED", "A devnet process failed to start", {
            details: `${line}\n${stderr}`,
          }),
        );
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(
        new PlatformError("DEVNET_START_FAILED", "A devnet process exited during start", {
          details: `exit ${code}\n${stderr}`,
        }),
      );
    });
  });
}

/**
 * A running devnet: a bootstrap peer and provider processes (`airqube` children) and, with `chain`, a local
 * chain with the escrow. Stop it when done.
 *
 * @example
 * const devnet = await Devnet.start({ providers: 3, chain: true });
 * try {
 *   const aq = new Airqube({ bootstrap: [devnet.bootstrap] });
 *   // ... run qubes ...
 * } finally {
 *   await devnet.stop();
 * }
 */
export class Devnet {
  private constructor(
    readonly dir: string,
    readonly bootstrap: string,
    readonly providers: DevnetProvider[],
    private readonly bootstrapProcess: ChildProcess,
    readonly chain?: DevnetChain,
  ) {}

  /**
   * Starts a devnet and resolves when every provider has announced itself.
   *
   * @throws UserError `DEVNET_INVALID` (a `payout` with `chain`), `HARDHAT_MISSING` (a chain without
   * Hardhat installed); PlatformError `DEVNET_START_FAILED`; TimeoutError `DEVNET_TIMEOUT` or `ABORTED`.
   *
   * @example
   * const devnet = await Devnet.start({ providers: 3 });
   * // ... run qubes against devnet.bootstrap ...
   * await devnet.stop();
   */
  static async start(options: DevnetOptions): Promise<Devnet> {
    const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "airqube-devnet-")));
    await mkdir(dir, { recursive: true });
    const probeCache = options.probeCache ?? join(dir, "probe-cache");
    const timeout = options.readyTimeoutMs ?? 60_000;
    const env = { AIRQUBE_LOG_LEVEL: process.env.AIRQUBE_LOG_LEVEL ?? "warn", ...options.env };
    const summary = await escapeSuiteGate({ cacheDir: probeCache })(
      "container",
      new ContainerSandbox(),
      options.signal ? { signal: options.signal } : {},
    );
    options.onEvent?.({ type: "probed", detail: summary });
    const specs: DevnetProviderOptions[] =
      typeof options.providers === "number" ? Array.from({ length: options.providers }, () => ({})) : options.providers;
    if (options.chain && specs.some((spec) => spec.payout)) {
      throw new UserError("DEVNET_INVALID", "A devnet with a chain creates the payout keys; do not set `payout`");
    }
    const usesV2 = options.escrowVersion === 2 || specs.some((spec) => spec.escrowVersion === 2);
    const chain = options.chain ? await startChain(dir, specs.length, usesV2, options) : undefined;
    if (chain)
      options.onEvent?.({
        type: "chainReady",
        detail: { rpcUrl: chain.rpcUrl, escrow: chain.escrow, escrowV2: chain.escrowV2 },
      });

    let boot: { child: ChildProcess; ready: Ready };
    try {
      boot = await spawnReady(["devnet", "bootstrap", "--json"], env, timeout, options.signal);
    } catch (error) {
      await chain?.stop();
      throw error;
    }
    const bootstrap = boot.ready.addrs[0]!;
    options.onEvent?.({ type: "bootstrapReady", detail: bootstrap });
    const started: DevnetProvider[] = [];
    try {
      const results = await Promise.all(
        specs.map(async (spec, index) => {
          const dataDir = join(dir, `provider-${index}`);
          const args = [
            "provider",
            "start",
            "--json",
            "--devnet",
            "--data-dir",
            dataDir,
            "--bootstrap",
            bootstrap,
            "--probe-cache",
            probeCache,
          ];
          if (spec.behaviour) args.push("--behaviour", spec.behaviour);
          if (spec.maxConcurrent) args.push("--max-concurrent", String(spec.maxConcurrent));
          if (spec.operator) args.push("--operator", spec.operator);
          if (spec.payout) args.push("--payout", spec.payout);
          if (spec.priceStart)
            args.push("--price-start", spec.priceStart, "--price-per-second", spec.pricePerSecond ?? "0");
          if (chain) {
            // the funded payout key goes into the data directory, never onto a command line
            await mkdir(dataDir, { recursive: true, mode: 0o700 });
            await writeFile(join(dataDir, "payout.key"), `${chain.providerKeys[index]}\n`, { mode: 0o600 });
            if ((spec.escrowVersion ?? chain.escrowVersion) === 2)
              args.push("--rpc-url", chain.rpcUrl, "--escrow", chain.escrowV2, "--escrow-version", "v2");
            else args.push("--rpc-url", chain.rpcUrl, "--escrow", chain.escrow);
          }
          const { child, ready } = await spawnReady(args, env, timeout, options.signal);
          const provider: DevnetProvider = {
            index,
            peerId: ready.peerId,
            addrs: ready.addrs,
            dataDir,
            process: child,
            behaviour: spec.behaviour ?? "honest",
            ...(chain ? { payout: chain.payouts[index]! } : spec.payout ? { payout: spec.payout } : {}),
          };
          started.push(provider);
          child.once("exit", (code, signal) =>
            options.onEvent?.({ type: "providerExited", detail: { index, code, signal } }),
          );
          options.onEvent?.({ type: "providerReady", detail: { index, peerId: ready.peerId } });
          return provider;
        }),
      );
      const { providerKeys: _, ...exposed } = chain ?? { providerKeys: [] };
      return new Devnet(
        dir,
        bootstrap,
        results.sort((a, b) => a.index - b.index),
        boot.child,
        chain ? (exposed as DevnetChain) : undefined,
      );
    } catch (error) {
      for (const p of started) p.process.kill("SIGKILL");
      boot.child.kill("SIGKILL");
      await chain?.stop();
      throw error;
    }
  }

  /** Stops every process: SIGTERM (providers drain), then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    const all = [...this.providers.map((p) => p.process), this.bootstrapProcess];
    await Promise.all(all.map((child) => stopChild(child, graceMs)));
    await this.chain?.stop();
  }
}

/**
 * Starts the local chain, deploys the token and the escrows (v1 and v2), and funds the requestor (account 1)
 * and the providers (accounts 2..n+1) with tokens; every account has native currency for gas. With a provider
 * paid through v2 (`usesV2`), the requestor deposits half its tokens in escrow v2.
 */
async function startChain(
  dir: string,
  providers: number,
  usesV2: boolean,
  options: DevnetOptions,
): Promise<DevnetChain & { providerKeys: string[] }> {
  const chain: LocalChain = await startLocalChain({ accounts: providers + 2 });
  try {
    const rpc = createRpcProvider(chain.rpcUrl, chain.chainId);
    try {
      const deployer = new Wallet(chain.accounts[0]!.privateKey, rpc);
      const call = options.signal ? { signal: options.signal } : {};
      const { token, escrow } = await deployEscrow(deployer, {}, call);
      const funded = chain.accounts.slice(1);
      await fundAccounts(
        deployer,
        token,
        funded.map((a) => a.address),
        options.fundWei ?? 1000n * 10n ** 18n,
        call,
      );
      const requestor = chain.accounts[1]!;
      const escrowV2 = await deployEscrowV2(deployer, token, call);
      const escrowVersion = options.escrowVersion ?? 1;
      if (usesV2) {
        // the requestor pays from a standing deposit (one permit deposit of half its tokens)
        const client = await EscrowV2Client.connect(
          { rpcUrl: chain.rpcUrl, privateKey: requestor.privateKey, escrow: escrowV2 },
          call,
        );
        try {
          await client.deposit((options.fundWei ?? 1000n * 10n ** 18n) / 2n, call);
        } finally {
          client.close();
        }
      }
      const requestorKeyFile = join(dir, "requestor.key");
      await writeFile(requestorKeyFile, `${requestor.privateKey}\n`, { mode: 0o600 });
      const providerAccounts = chain.accounts.slice(2);
      return {
        rpcUrl: chain.rpcUrl,
        chainId: chain.chainId,
        escrow,
        escrowV2,
        escrowVersion,
        token,
        requestor: { address: requestor.address, privateKey: requestor.privateKey },
        requestorKeyFile,
        payouts: providerAccounts.map((a) => a.address),
        providerKeys: providerAccounts.map((a) => a.privateKey),
        stop: () => chain.stop(),
        interrupt: () => chain.interrupt(),
        resume: () => chain.resume(),
      };
    } finally {
      rpc.destroy();
    }
  } catch (error) {
    await chain.stop();
    throw error;
  }
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
