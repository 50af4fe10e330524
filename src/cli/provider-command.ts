/** `airqube provider start|status|earnings`. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Command, Option } from "commander";
import { EscrowClient } from "../chain/escrow-client.js";
import { EscrowV2Client } from "../chain/escrow-v2-client.js";
import { loadOrCreatePayoutWallet } from "../net/keys.js";
import { ProviderAgent, sweptUidPool } from "../provider/agent.js";
import { loadProviderConfig } from "../provider/config.js";
import { JobLedger } from "../provider/ledger.js";
import { CHAIN_FILES, readChainFile, type SeatReport, settleSeats } from "../provider/payments.js";
import { ProviderPaymentsV2, SeatV2Store } from "../provider/payments-v2.js";
import { escapeSuiteGate } from "../provider/probe-gate.js";
import { UserError } from "../qube/index.js";
import type { Sandbox } from "../sandbox/api.js";
import { lockDataDir } from "../store/dir-lock.js";
import { type AddressFlags, addAddressOptions, collect } from "./address-options.js";
import { parseEscrowVersion } from "./escrow-version.js";
import { cliLogger } from "./logger.js";
import { printJson, reportError } from "./output.js";
import { defaultProbeCache, defaultProviderDir } from "./paths.js";
import { glm } from "./payment-report.js";
import { parseCount } from "./units.js";

interface StartFlags extends AddressFlags {
  config?: string;
  public?: boolean;
  allowPrivateAddrs?: boolean;
  allowLoopbackAddrs?: boolean;
  allowPublicRpc?: boolean;
  bootstrap?: string[];
  tier?: string[];
  maxConcurrent?: number;
  priceStart?: string;
  pricePerSecond?: string;
  dataDir?: string;
  payout?: string;
  operator?: string;
  probeCache?: string;
  behaviour?: string;
  devnet?: boolean;
  rpcUrl?: string;
  escrow?: string;
  maxStake?: string;
  escrowVersion?: string;
  json?: boolean;
}

export function registerProviderCommand(program: Command): void {
  const provider = program
    .command("provider")
    .description("run a provider agent that earns by running qubes in hardened sandboxes");
  addAddressOptions(
    provider
      .command("start")
      .description(
        "prove the sandbox tiers with the escape suite, announce an offer, and serve qubes until interrupted",
      )
      .option("--config <file>", "JSON config file (flags override it)"),
    "listen address (repeatable; default /ip4/127.0.0.1/tcp/0)",
  )
    .option("--public", "public mode: real hosts (non-loopback listen, announce, bootstrap and dial addresses)")
    .option("--allow-private-addrs", "public mode: also dial private-range addresses (a LAN)")
    .addOption(new Option("--allow-loopback-addrs", "public mode: also dial and announce loopback (tests)").hideHelp())
    .option("--allow-public-rpc", "paid qubes: allow a chain RPC URL off this machine")
    .option("--bootstrap <multiaddr>", "bootstrap peer (repeatable)", collect)
    .option("--tier <tier>", "tier to offer: container | microvm (repeatable; default container)", collect)
    .addOption(new Option("--max-concurrent <n>", "qubes run at once").argParser(parseCount))
    .option("--price-start <wei>", "fixed price per qube, wei")
    .option("--price-per-second <wei>", "price per second of wall-time limit, wei")
    .option("--payout <address>", "EVM payout address (default: a key created in the data directory)")
    .option("--operator <key>", "operator key shared by your machines (requestors spread replicas across operators)")
    .option("--data-dir <dir>", "identity, ledger and job files", defaultProviderDir())
    .option("--probe-cache <dir>", "cache of escape-suite reports", defaultProbeCache())
    .option("--rpc-url <url>", "paid qubes: JSON-RPC URL of the chain (the payout key is payout.key in the data dir)")
    .option("--escrow <address>", "paid qubes: address of the AirqubeEscrow contract")
    .option("--max-stake <wei>", "paid qubes: largest stake bonded for one qube (default 10 GLM)")
    .addOption(
      new Option(
        "--escrow-version <v>",
        "paid qubes: v2 when --escrow is an AirqubeEscrowV2 (standing stake, signed Accept and commitments)",
      ).choices(["v1", "v2"]),
    )
    .addOption(new Option("--behaviour <name>", "adversary behaviour for tests (devnet only)").hideHelp())
    .addOption(new Option("--devnet", "mark this agent as part of a local devnet").hideHelp())
    .option("--json", "print machine-readable events on stdout")
    .action(async (flags: StartFlags) => {
      process.exitCode = await start(flags);
    });
  provider
    .command("status")
    .description("show what the agent in a data directory is doing and what it has done")
    .option("--data-dir <dir>", "the agent's data directory", defaultProviderDir())
    .option("--json", "print JSON")
    .action(async (flags: { dataDir: string; json?: boolean }) => {
      process.exitCode = await status(flags);
    });
  provider
    .command("earnings")
    .description("show what the escrow credited to this provider's payout account, and withdraw it")
    .option("--data-dir <dir>", "the agent's data directory (payout.key, chain.json)", defaultProviderDir())
    .option("--rpc-url <url>", "JSON-RPC URL of the chain (default: the one the agent last ran with)")
    .option("--escrow <address>", "escrow address (default: the one the agent last ran with)")
    .option("--withdraw", "withdraw the whole credited balance to the payout account")
    .addOption(escrowVersionOption())
    .option("--json", "print JSON")
    .action(async (flags: EarningsFlags) => {
      process.exitCode = await earnings(flags);
    });
  provider
    .command("settle")
    .description("reveal, settle or reclaim by hand the escrow jobs this provider committed to (the agent does it too)")
    .option(
      "--data-dir <dir>",
      "the agent's data directory (payout.key, chain.json, seats.sqlite)",
      defaultProviderDir(),
    )
    .option("--rpc-url <url>", "JSON-RPC URL of the chain (default: the one the agent last ran with)")
    .option("--escrow <address>", "escrow address (default: the one the agent last ran with)")
    .option(
      "--force",
      "escrow v1: reveal on chain now and settle as soon as the contract allows, without waiting for the requestor",
    )
    .addOption(escrowVersionOption())
    .option("--json", "print JSON")
    .action(async (flags: EarningsFlags & { force?: boolean }) => {
      try {
        const version = providerEscrowVersion(flags);
        if (version === 2 && flags.force)
          throw new UserError("FLAG_UNSUPPORTED", "--force is for escrow v1", {
            details:
              "escrow v2 has no early reveal: a seat proposes a settlement after the batch's reveal deadline, which `provider settle` does when it is due",
          });
        const lock = lockDataDir(flags.dataDir, "airqube provider settle");
        try {
          const options = {
            privateKey: loadOrCreatePayoutWallet(flags.dataDir).privateKey,
            ...(flags.rpcUrl ? { rpcUrl: flags.rpcUrl } : {}),
            ...(flags.escrow ? { escrow: flags.escrow } : {}),
            ...(flags.force ? { force: true } : {}),
          };
          const reports =
            version === 2 ? await settleSeatsV2(flags.dataDir, options) : await settleSeats(flags.dataDir, options);
          if (flags.json) printJson(reports);
          else
            for (const r of reports)
              console.log(
                `${r.jobId} ${r.action}${r.tx ? ` ${r.tx}` : ""}${r.notBefore ? ` (not before ${new Date(r.notBefore * 1000).toISOString()})` : ""}${r.error ? ` ${r.error.code}: ${r.error.message}` : ""}`,
              );
          process.exitCode = reports.some((r) => r.action === "error") ? 1 : 0;
        } finally {
          lock.release();
        }
      } catch (error) {
        process.exitCode = reportError(error, Boolean(flags.json));
      }
    });
}

interface EarningsFlags {
  dataDir: string;
  rpcUrl?: string;
  escrow?: string;
  withdraw?: boolean;
  /** `v1` or `v2`. */
  escrowVersion?: string;
  json?: boolean;
}

/** `--escrow-version` of `provider earnings` and `provider settle`. */
function escrowVersionOption(): Option {
  return new Option(
    "--escrow-version <v>",
    "the escrow the agent is paid through (default $AIRQUBE_ESCROW_VERSION, else v2 when only a v2 agent ran in the data directory, else v1)",
  ).choices(["v1", "v2"]);
}

/**
 * The escrow version of `provider earnings|settle`: the flag, else AIRQUBE_ESCROW_VERSION, else v2 when the data
 * directory holds only the chain file of a v2 agent (`chain-v2.json`), else v1.
 */
function providerEscrowVersion(flags: { escrowVersion?: string; dataDir: string }): 1 | 2 {
  const explicit = flags.escrowVersion ?? (process.env.AIRQUBE_ESCROW_VERSION || undefined);
  if (explicit !== undefined) return parseEscrowVersion(explicit);
  const has = (version: 1 | 2) => existsSync(join(flags.dataDir, CHAIN_FILES[version]));
  return has(2) && !has(1) ? 2 : 1;
}

/** The RPC URL and escrow of a command: the flags, else the chain file the agent wrote for that version. */
function chainOf(flags: { dataDir: string; rpcUrl?: string; escrow?: string }, version: 1 | 2) {
  const saved = readChainFile(flags.dataDir, version);
  const rpcUrl = flags.rpcUrl ?? saved?.rpcUrl;
  const escrow = flags.escrow ?? saved?.escrow;
  if (!rpcUrl || !escrow)
    throw new UserError("CHAIN_UNCONFIGURED", `No chain is known for this provider's escrow v${version}`, {
      details: `pass --rpc-url and --escrow, or run the agent with them once (it writes ${CHAIN_FILES[version]})`,
    });
  return { rpcUrl, escrow };
}

/** The payout wallet of an agent's data directory (never created here: earnings need an agent that ran). */
function payoutWalletOf(dataDir: string) {
  if (!existsSync(join(dataDir, "payout.key")))
    throw new UserError("PROVIDER_UNKNOWN", "No payout key in this data directory", { details: dataDir });
  return loadOrCreatePayoutWallet(dataDir);
}

/** `provider settle` through escrow v2: one pass of the agent's keeper over its open seats (`seats-v2.sqlite`). */
async function settleSeatsV2(
  dataDir: string,
  options: { privateKey: string; rpcUrl?: string; escrow?: string },
): Promise<SeatReport[]> {
  const chain = chainOf({ dataDir, ...options }, 2);
  const payments = await ProviderPaymentsV2.connect(
    { ...chain, maxStake: "0", stakeDeposit: "0" },
    options.privateKey,
    {
      dataDir,
    },
  );
  try {
    // the same report shape as v1's (a batch id stands for the job id)
    return (await payments.keep()).map(({ batchId, ...rest }) => ({ jobId: batchId, ...rest }) as SeatReport);
  } finally {
    await payments.close();
  }
}

/**
 * `provider earnings` through escrow v2: the account's balance in the escrow (its standing stake and every
 * credit, less what open batches lock), the agent's seats and which of them were settled on chain. v2 emits one
 * event per settlement, not one per credit, so there is no per-qube amount to list.
 */
async function earningsV2(flags: EarningsFlags): Promise<number> {
  let client: EscrowV2Client | undefined;
  try {
    const chain = chainOf(flags, 2);
    const wallet = payoutWalletOf(flags.dataDir);
    client = await EscrowV2Client.connect({ ...chain, privateKey: wallet.privateKey });
    const seatsFile = join(flags.dataDir, "seats-v2.sqlite");
    const seats = (() => {
      if (!existsSync(seatsFile)) return [];
      const store = new SeatV2Store(seatsFile);
      try {
        return store.all();
      } finally {
        store.dispose();
      }
    })();
    const mine = new Set(seats.map((s) => s.batchId.toLowerCase()));
    const settled = (await client.settlements()).filter((s) => mine.has(s.batchId.toLowerCase()));
    const balance = await client.balance();
    const withdrawn = flags.withdraw && balance > 0n ? await client.withdraw(balance) : undefined;
    const report = {
      payout: client.address,
      chainId: client.chainId,
      escrow: client.escrowAddress,
      escrowVersion: 2,
      balanceWei: (withdrawn ? 0n : balance).toString(),
      seats: { total: seats.length, open: seats.filter((s) => s.state === "open").length, settled: settled.length },
      settlements: settled.map((s) => ({ batchId: s.batchId, tx: s.txHash })),
      ...(withdrawn ? { withdrawal: { tx: withdrawn.hash, amountWei: balance.toString() } } : {}),
    };
    if (flags.json) printJson(report);
    else {
      process.stdout.write(`provider payout ${report.payout} (escrow v2 ${report.escrow}, chain ${report.chainId})\n`);
      process.stdout.write(
        `  balance in the escrow (standing stake and credits, less open batches' locks): ${glm(report.balanceWei)}\n`,
      );
      process.stdout.write(
        `  seats: ${report.seats.total} (${report.seats.open} open, ${report.seats.settled} settled on chain)\n`,
      );
      for (const s of settled.slice(-10))
        process.stdout.write(`    batch ${s.batchId.slice(0, 10)}… settled (tx ${s.txHash.slice(0, 10)}…)\n`);
      if (withdrawn)
        process.stdout.write(
          `  withdrew ${glm(balance)} in tx ${withdrawn.hash} (the agent deposits its standing stake again when it starts)\n`,
        );
      else if (flags.withdraw) process.stdout.write("  nothing to withdraw\n");
    }
    return 0;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  } finally {
    client?.close();
  }
}

async function earnings(flags: EarningsFlags): Promise<number> {
  let client: EscrowClient | undefined;
  try {
    if (providerEscrowVersion(flags) === 2) return await earningsV2(flags);
    const chain = chainOf(flags, 1);
    const wallet = payoutWalletOf(flags.dataDir);
    client = await EscrowClient.connect({ ...chain, privateKey: wallet.privateKey });
    const credits = await client.credits();
    const credited = await client.balanceOf();
    cliLogger("provider").debug({ credits: credits.length }, "credits read");
    const withdrawn = flags.withdraw && credited > 0n ? await client.withdraw() : undefined;
    const wallet_ = await client.tokenBalanceOf();
    const total = credits.reduce((sum, c) => sum + c.amount, 0n);
    const report = {
      payout: client.address,
      chainId: client.chainId,
      escrow: client.escrowAddress,
      creditedWei: (withdrawn ? 0n : credited).toString(),
      totalCreditedWei: total.toString(),
      credits: credits.map((c) => ({ jobId: c.jobId, amountWei: c.amount.toString(), tx: c.txHash })),
      walletWei: wallet_.toString(),
      ...(withdrawn ? { withdrawal: { tx: withdrawn.hash, amountWei: withdrawn.amount.toString() } } : {}),
    };
    if (flags.json) printJson(report);
    else {
      process.stdout.write(`provider payout ${report.payout} (escrow ${report.escrow}, chain ${report.chainId})\n`);
      process.stdout.write(`  ${earnedLine(total, credits.length)}\n`);
      process.stdout.write(`  credited, withdrawable: ${glm(report.creditedWei)}\n`);
      for (const c of credits.slice(-10))
        process.stdout.write(`    job ${c.jobId.slice(0, 10)}… +${glm(c.amount)} (tx ${c.txHash.slice(0, 10)}…)\n`);
      if (withdrawn) process.stdout.write(`  withdrew ${glm(withdrawn.amount)} in tx ${withdrawn.hash}\n`);
      else if (flags.withdraw) process.stdout.write("  nothing to withdraw\n");
      process.stdout.write(`  wallet balance:         ${glm(wallet_)}\n`);
    }
    return 0;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  } finally {
    client?.close();
  }
}

async function start(flags: StartFlags): Promise<number> {
  const logger = cliLogger("provider");
  let agent: ProviderAgent | undefined;
  try {
    const price =
      flags.priceStart !== undefined || flags.pricePerSecond !== undefined
        ? { currency: "GLM", start: flags.priceStart ?? "0", perSecond: flags.pricePerSecond ?? "0" }
        : undefined;
    const config = loadProviderConfig(flags.config, {
      dataDir: flags.dataDir,
      listen: flags.listen,
      bootstrap: flags.bootstrap,
      public: flags.public,
      announce: flags.announce,
      appendAnnounce: flags.appendAnnounce,
      allowPrivate: flags.allowPrivateAddrs,
      allowLoopback: flags.allowLoopbackAddrs,
      allowPublicRpc: flags.allowPublicRpc,
      tiers: flags.tier,
      maxConcurrent: flags.maxConcurrent,
      price,
      payout: flags.payout,
      operator: flags.operator,
      probeCache: flags.probeCache,
      behaviour: flags.behaviour,
      devnet: flags.devnet,
      chain:
        flags.rpcUrl !== undefined || flags.escrow !== undefined
          ? {
              rpcUrl: flags.rpcUrl,
              escrow: flags.escrow,
              ...(flags.maxStake !== undefined ? { maxStake: flags.maxStake } : {}),
              ...(flags.escrowVersion !== undefined ? { escrowVersion: parseEscrowVersion(flags.escrowVersion) } : {}),
            }
          : undefined,
    });
    const sandboxes: Partial<Record<"container" | "microvm", Sandbox>> = {};
    // one pool of host uids for every tier: no two live sandboxes (container, gvisor or QEMU) share a uid
    const uidPool = config.sandboxUids ? sweptUidPool(config.sandboxUids, logger) : undefined;
    if (config.tiers.includes("microvm")) {
      const { MicroVmSandbox } = await import("../sandbox/microvm-sandbox.js");
      sandboxes.microvm = new MicroVmSandbox(uidPool ? { uids: uidPool } : {});
    }
    agent = new ProviderAgent(config, {
      probe: escapeSuiteGate(config.probeCache ? { cacheDir: config.probeCache } : {}),
      sandboxes,
      logger,
      ...(uidPool ? { uidPool } : {}),
    });
    const shutdown = new Promise<string>((resolve) => {
      process.once("SIGINT", () => resolve("SIGINT"));
      process.once("SIGTERM", () => resolve("SIGTERM"));
    });
    const ready = await agent.start();
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: "ready", ...ready })}\n`);
    else {
      process.stdout.write(`provider ${ready.peerId} ready\n`);
      for (const addr of ready.addrs) process.stdout.write(`  listening on ${addr}\n`);
      for (const [tier, probe] of Object.entries(ready.probes))
        process.stdout.write(
          `  ${tier}: escape suite ${probe?.pass} pass, ${probe?.fail} fail, ${probe?.inconclusive} inconclusive (${probe?.reportHash})\n`,
        );
      process.stdout.write(`  payout ${ready.payout}; press Ctrl-C to stop\n`);
    }
    const signal = await shutdown;
    logger.info({ signal }, "draining");
    const summary = agent.ledger.summary();
    const t0 = performance.now();
    await agent.stop();
    logger.info({ ms: Math.round(performance.now() - t0) }, "stopped");
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: "stopped", ...summary })}\n`);
    return 0;
  } catch (error) {
    await agent?.stop({ drainMs: 0 }).catch(() => undefined);
    return reportError(error, Boolean(flags.json));
  }
}

/**
 * The one earnings figure both `provider status` and `provider earnings` print: everything the escrow credited
 * to the payout account (prices, stakes returned, shares of slashed stakes), read from the chain. The ledger's
 * agreed prices are not earnings (an unpaid qube, or one never settled, pays nothing).
 */
export function earnedLine(totalWei: bigint, credits: number): string {
  // a credit holds the price *and* the provider's own stake given back: calling the sum "earned" doubled it
  return `credited by the escrow: ${glm(totalWei)} over ${credits} credit${credits === 1 ? "" : "s"} (prices paid plus stakes returned)`;
}

/** Reads the earnings of a provider data directory from its chain, or says why it cannot. */
async function earnedOf(dataDir: string): Promise<{ totalWei?: string; credits?: number; note?: string }> {
  const saved = readChainFile(dataDir);
  if (!saved) return { totalWei: "0", credits: 0, note: "unpaid provider: no chain configured" };
  if (!existsSync(join(dataDir, "payout.key"))) return { note: "no payout key in the data directory" };
  let client: EscrowClient | undefined;
  try {
    const wallet = loadOrCreatePayoutWallet(dataDir);
    client = await EscrowClient.connect(
      { rpcUrl: saved.rpcUrl, escrow: saved.escrow, privateKey: wallet.privateKey },
      { timeoutMs: 10_000 },
    );
    const credits = await client.credits(client.address, { timeoutMs: 10_000 });
    return { totalWei: credits.reduce((sum, c) => sum + c.amount, 0n).toString(), credits: credits.length };
  } catch (error) {
    return { note: `chain unreachable (${(error as Error).message.slice(0, 200)})` };
  } finally {
    client?.close();
  }
}

async function status(flags: { dataDir: string; json?: boolean }): Promise<number> {
  try {
    cliLogger("provider").debug({ dataDir: flags.dataDir }, "reading the provider's status");
    const file = join(flags.dataDir, "status.json");
    if (!existsSync(file))
      throw new UserError("PROVIDER_UNKNOWN", "No provider has run in this data directory", { details: flags.dataDir });
    const state = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown> & { pid: number };
    let alive = false;
    try {
      process.kill(state.pid, 0);
      alive = true;
    } catch {}
    const ledger = new JobLedger(join(flags.dataDir, "ledger.sqlite"));
    const { earnedWei: agreedWei, ...summary } = ledger.summary();
    const recentJobs = ledger.recent(10);
    ledger.close();
    const earned = await earnedOf(flags.dataDir);
    const report = {
      ...state,
      alive,
      ledger: { ...summary, agreedInRevealedWei: agreedWei },
      earnedWei: earned.totalWei ?? null,
      ...(earned.note ? { earnedNote: earned.note } : {}),
      recentJobs,
    };
    if (flags.json) printJson(report);
    else {
      process.stdout.write(`provider ${String(state.peerId)} ${alive ? "running" : "stopped"} (pid ${state.pid})\n`);
      process.stdout.write(
        `  tiers ${JSON.stringify(state.tiers)}, running ${String(state.running)}/${String(state.maxConcurrent)}${state.draining ? ", draining" : ""}\n`,
      );
      process.stdout.write(`  jobs ${summary.jobs} ${JSON.stringify(summary.byState)}\n`);
      process.stdout.write(
        `  ${earned.totalWei !== undefined ? earnedLine(BigInt(earned.totalWei), earned.credits ?? 0) : "credited by the escrow: unknown"}${earned.note ? ` (${earned.note})` : ""}\n`,
      );
      for (const job of recentJobs)
        process.stdout.write(
          `  ${job.createdAt} ${job.qubeId.slice(0, 15)}… ${job.state}${job.errorCode ? ` ${job.errorCode}` : ""}\n`,
        );
    }
    return 0;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  }
}
