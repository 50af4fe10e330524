/** `airqube run`, `airqube offers` and `airqube journal`: the requestor side of the embedded network. */

import { join } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { budgetOf } from "../chain/job.js";
import { type EscrowJobJson, jobFromJson } from "../chain/job-json.js";
import { loadOrCreateIdentity } from "../net/keys.js";
import { checkNodeAddresses } from "../net/node.js";
import { PeerError, UserError } from "../qube/index.js";
import type { ComputeMarket } from "../requestor/api.js";
import { sealQube } from "../requestor/draft.js";
import { type JournalEscrowJob, type JournalQube, RequestorJournal } from "../requestor/journal.js";
import { Libp2pMarket } from "../requestor/libp2p-market.js";
import { closeJournalled, type EscrowPayments, isV1Job, type PaymentReport } from "../requestor/payments.js";
import type { EscrowV2Payments } from "../requestor/payments-v2.js";
import { Requestor, type RunEvent, type RunReport } from "../requestor/requestor.js";
import { type DirLock, lockDataDir } from "../store/dir-lock.js";
import { type AddressFlags, addAddressOptions, addressOptionsFrom } from "./address-options.js";
import { type RequestorConfig, readConfigFile } from "./config-file.js";
import { connectPayments, escrowVersionOf } from "./escrow-version.js";
import {
  AIRQUBE_ERROR_EXIT,
  describeEnd,
  describeLog,
  describeMissing,
  exitStatusOf,
  OUTPUT_MISSING_EXIT,
  TIMEOUT_EXIT,
} from "./exit-status.js";
import { shippedImageFrom } from "./image-options.js";
import { interruptHandler, reportInterrupted } from "./interrupt.js";
import { cliLogger } from "./logger.js";
import { printJson, reportError } from "./output.js";
import { declaredOutputs, defaultRequestorDir } from "./paths.js";
import { addPaymentOptions, type PaymentFlags, paymentSettingsFrom } from "./payment-options.js";
import { describePayment, glm } from "./payment-report.js";
import { useDevnetProfile } from "./profile-hook.js";
import { describeFailure, progressReporter, shortPeer } from "./progress.js";
import { parseCount, parseDuration, parsePositive, parseSize } from "./units.js";

export { readConfigFile } from "./config-file.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** A whole number of wei. */
/** Output files `airqube run` lists by name before it summarises the rest. */
const MAX_LISTED_OUTPUTS = 20;

function parseWei(value: string): bigint {
  if (!/^\d{1,78}$/.test(value.trim())) throw new InvalidArgumentError(`"${value}" is not an amount in wei`);
  return BigInt(value.trim());
}

/** The public-network flags of `run`, `offers` and `probe --provider`. */
export interface NetworkFlags {
  public?: boolean;
  allowPrivateAddrs?: boolean;
  allowLoopbackAddrs?: boolean;
  /** @deprecated public peers and a public chain RPC at once. */
  allowPublic?: boolean;
}

/** Adds `--public` and its companions to a requestor command. */
export function addNetworkOptions(command: Command): Command {
  return command
    .option("--public", "public mode: bootstrap and provider addresses off this machine (a real deployment)")
    .option("--allow-private-addrs", "public mode: also dial private-range addresses (a LAN)")
    .addOption(new Option("--allow-loopback-addrs", "public mode: also dial loopback (tests)").hideHelp());
}

/** The node options the network flags and the config file's keys select. */
export function networkOptionsFrom(
  flags: NetworkFlags,
  config: { public?: boolean | undefined; allowPrivateAddrs?: boolean | undefined } = {},
): { public?: true; allowPrivate?: true; allowLoopback?: true } {
  return {
    ...(flags.public || flags.allowPublic || config.public ? { public: true as const } : {}),
    ...(flags.allowPrivateAddrs || config.allowPrivateAddrs ? { allowPrivate: true as const } : {}),
    ...(flags.allowLoopbackAddrs ? { allowLoopback: true as const } : {}),
  };
}

interface RunFlags extends PaymentFlags, NetworkFlags, AddressFlags {
  allowPublicRpc?: boolean;
  /** `v1` (default) or `v2`: the escrow `--escrow` names. */
  escrowVersion?: string;
  backend: "libp2p" | "golem";
  config?: string;
  bootstrap?: string[];
  image: string;
  imageDigest?: string;
  shipImage?: boolean;
  imageArchive?: string;
  input?: string;
  output: string;
  out?: string[];
  env?: string[];
  redundancy: number;
  allowFewer?: boolean;
  quorum?: number;
  tier: "container" | "microvm";
  timeout: number;
  memory: number;
  cpus: number;
  maxPrice?: bigint;
  golemMinSuccessRate?: number;
  golemRuntime?: "vm" | "airqube";
  dataDir: string;
  json?: boolean;
}

/** The bootstrap peers: `--bootstrap`, else the config file's `bootstrap`, else AIRQUBE_BOOTSTRAP. */
function bootstrapFrom(flags: { bootstrap?: string[] }, config: RequestorConfig): string[] {
  const list =
    flags.bootstrap ??
    config.bootstrap ??
    (process.env.AIRQUBE_BOOTSTRAP ? process.env.AIRQUBE_BOOTSTRAP.split(",") : []);
  if (list.length === 0)
    throw new UserError("BOOTSTRAP_MISSING", "No bootstrap peer", {
      details:
        "pass --bootstrap MULTIADDR (printed by `airqube devnet up`), put `bootstrap` in the --config file, or set AIRQUBE_BOOTSTRAP",
    });
  return list;
}

export function registerRunCommands(program: Command): void {
  const runCommand = program
    .command("run")
    .hook("preAction", useDevnetProfile)
    .description("run a qube on several independent providers and accept only a result a quorum agrees on")
    .addOption(
      new Option("--backend <name>", "where providers come from: the embedded network or the Golem network (yagna)")
        .choices(["libp2p", "golem"])
        .default("libp2p"),
    )
    .option(
      "--config <file>",
      "JSON config file, checked whatever the backend: `golem` (the Golem backend), `bootstrap`, `public`, `allowPrivateAddrs`, `listen`, `announce`, `appendAnnounce`, `escrowVersion` (each flag wins over its key)",
    )
    .option(
      "--bootstrap <multiaddr>",
      "bootstrap peer (repeatable; default the config file's `bootstrap`, then $AIRQUBE_BOOTSTRAP)",
      collect,
    )
    .requiredOption("--image <ref>", "image reference, e.g. airqube/busybox:latest")
    .option("--image-digest <sha256:...>", "image digest (default: looked up in the local Docker engine)")
    .option("--ship-image", "ship the image (docker save) to providers that lack it, sealed to each")
    .option("--image-archive <file>", "ship this image archive (docker save format) to providers that lack it")
    .option("--input <dir>", "directory whose files are sealed to each provider and placed at /input")
    .requiredOption("--output <dir>", "where the verified outputs go (--out PATH lands at DIR/PATH)")
    .option(
      "--out <path>",
      "declared output: a path under /output, placed at --output DIR/PATH (repeatable; default result); one the qube never writes fails the run (exit 123)",
      collect,
    )
    .option("--env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .addOption(new Option("--redundancy <k>", "number of independent providers").argParser(parseCount).default(3))
    .option("--allow-fewer", "run on fewer providers than --redundancy when no more are available (with a warning)")
    .addOption(new Option("--quorum <q>", "agreeing answers needed (default: a majority of k)").argParser(parseCount))
    .addOption(new Option("--tier <tier>", "isolation tier").choices(["container", "microvm"]).default("container"))
    .addOption(
      new Option("--timeout <duration>", "wall-clock limit per provider")
        .argParser(parseDuration)
        .default(60_000, "60s"),
    )
    .addOption(new Option("--memory <size>", "memory limit").argParser(parseSize).default(256 * 1024 * 1024, "256m"))
    .addOption(new Option("--cpus <n>", "CPU limit in cores").argParser(parsePositive).default(1))
    .addOption(
      new Option("--max-price <wei>", "refuse providers asking more than this per qube, wei").argParser(parseWei),
    )
    .addOption(
      new Option(
        "--golem-min-success-rate <0..1>",
        "--backend golem: rent only providers whose reputation success rate is at least this (golem.reputation)",
      ).argParser(Number),
    )
    .addOption(
      new Option(
        "--golem-runtime <name>",
        "--backend golem: the provider's runtime: vm (Golem's VM, a GVMI image) or airqube (ya-runtime-airqube: " +
          "Airqube's sandboxes, a docker-save image; only offers with a verified, clean escape-suite summary) " +
          "(default golem.runtime.name, else vm)",
      ).choices(["vm", "airqube"]),
    )
    .option("--data-dir <dir>", "requestor identity and journal", defaultRequestorDir())
    .addOption(new Option("--allow-public", "public mode and a public chain RPC at once (deprecated)").hideHelp())
    .option("--json", "JSON lines: one per progress event, then the result")
    .argument("<command...>", "the command to run (after --)")
    .addHelpText(
      "after",
      "\nExample:\n  airqube run --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3... --image airqube/busybox:latest \\\n    --output ./out --out result.txt -- sh -c 'echo 42 > /output/result.txt'\n" +
        "\nPaid (the flags `airqube devnet up` prints): add --rpc-url http://127.0.0.1:PORT --escrow 0x... \\\n" +
        "    --payment-key-file DEVNET_DIR/requestor.key\n" +
        "  The budget is locked in the escrow before the qube is sent and settled after the verified result;\n" +
        "  escrow jobs an earlier run left open are settled (or reclaimed) first.\n" +
        "\nOn Golem, in Airqube's own sandboxes (providers that installed `airqube golem-runtime install`):\n" +
        "  airqube run --backend golem --golem-runtime airqube --image airqube/busybox:latest --output ./out -- ...\n" +
        "  golem.images[DIGEST] gives the sha3-224 hash and URL of the image's docker-save archive; offers whose\n" +
        "  signed escape-suite summary does not verify, or shows a fail or an inconclusive probe, are refused.\n" +
        "\nExit status (like docker run): the qube's exit code (127: command not found, 128+n: killed by signal n);\n" +
        `  ${TIMEOUT_EXIT}: the qube was killed at --timeout; 137: killed at the memory limit;\n` +
        `  ${OUTPUT_MISSING_EXIT}: outputs not delivered: the qube exited 0 but a declared --out was never written,\n` +
        "    or the providers agree that its outputs broke a limit (e.g. OUTPUT_TOO_MANY_FILES; they are paid);\n" +
        `  ${AIRQUBE_ERROR_EXIT}: Airqube failed (no provider, not enough providers, no consensus, chain, bad input).`,
    )
    .action(async (command: string[], flags: RunFlags) => {
      process.exitCode = await run(command, flags);
    });
  addPaymentOptions(runCommand);
  runCommand.addOption(
    new Option("--escrow-version <v>", "pay on agreement: v2 when --escrow is an AirqubeEscrowV2 (default v1)").choices(
      ["v1", "v2"],
    ),
  );
  addNetworkOptions(runCommand);
  // a requestor with an address of its own can be dialled back by a provider behind NAT (DCUtR)
  addAddressOptions(
    runCommand,
    "public mode: listen address (repeatable; default none), so that a provider behind NAT can dial back directly",
  );
  const offersCommand = program
    .command("offers")
    .hook("preAction", useDevnetProfile)
    .description("list the providers' signed offers on the network")
    .option("--config <file>", "JSON config file (`bootstrap`, `public`, `allowPrivateAddrs`)")
    .option("--bootstrap <multiaddr>", "bootstrap peer (repeatable; default $AIRQUBE_BOOTSTRAP)", collect)
    .option("--data-dir <dir>", "requestor identity", defaultRequestorDir())
    .option("--json", "print JSON")
    .action(async (flags: OffersFlags) => {
      process.exitCode = await offers(flags);
    });
  addNetworkOptions(offersCommand);
  program
    .command("journal")
    .hook("preAction", useDevnetProfile)
    .description("list the qubes this requestor ran, including ones interrupted by a crash")
    .option("--data-dir <dir>", "requestor data directory", defaultRequestorDir())
    .option("--settle", "settle (or reclaim) every escrow job left pending, with the payment flags or variables")
    .option("--rpc-url <url>", "with --settle: JSON-RPC URL of the chain (default $AIRQUBE_RPC_URL)")
    .option("--escrow <address>", "with --settle: escrow address (default $AIRQUBE_ESCROW)")
    .option("--payment-key-file <file>", "with --settle: the paying key's file (default $AIRQUBE_PAYMENT_KEY_FILE)")
    .option("--allow-public", "with --settle: allow an RPC URL off this machine")
    .addOption(
      new Option(
        "--escrow-version <v>",
        "with --settle: the version of the escrow --escrow names (default $AIRQUBE_ESCROW_VERSION, else v1)",
      ).choices(["v1", "v2"]),
    )
    .option("--json", "print JSON")
    .action(async (flags: SettleFlags & { settle?: boolean }) => {
      if (flags.settle) {
        process.exitCode = await settleJournal(flags);
        return;
      }
      try {
        cliLogger("journal").debug({ dataDir: flags.dataDir }, "reading the journal");
      } catch (error) {
        process.exitCode = reportError(error, Boolean(flags.json));
        return;
      }
      // a qube still dispatching is interrupted only when no process holds the data directory: listing the
      // journal of a running requestor must not mark its qube interrupted
      let lock: ReturnType<typeof lockDataDir> | undefined;
      try {
        lock = lockDataDir(flags.dataDir, "airqube journal");
      } catch (error) {
        if (!(error instanceof UserError && error.code === "DATA_DIR_LOCKED")) {
          process.exitCode = reportError(error, Boolean(flags.json));
          return;
        }
      }
      let list: (JournalQube & { escrowJobs: ReturnType<typeof escrowJobSummary>[] })[];
      try {
        const journal = new RequestorJournal(join(flags.dataDir, "journal.sqlite"));
        try {
          if (lock) journal.recover(new Date());
          list = journal.list().map((q) => ({
            ...q,
            escrowJobs: journal.escrowJobs({ qubeId: q.qubeId }).map(escrowJobSummary),
          }));
        } finally {
          journal.close();
        }
      } catch (error) {
        process.exitCode = reportError(error, Boolean(flags.json));
        return;
      } finally {
        lock?.release();
      }
      if (flags.json) printJson(list);
      else
        for (const q of list) {
          process.stdout.write(`${q.createdAt} ${q.qubeId} ${q.state} (${q.dispatches.length} providers)\n`);
          for (const j of q.escrowJobs) {
            const settle = j.settleTx ? `, ${j.state} in tx ${j.settleTx}` : "";
            const pending = j.error ? ` (${j.error.code}: ${j.error.message})` : "";
            process.stdout.write(
              `  escrow job ${j.jobId} ${j.state}${pending}: budget ${glm(j.budget)} for ${j.providers.length} providers, locked in tx ${j.lockTx ?? "?"}${settle}\n`,
            );
          }
        }
    });
}

async function run(command: string[], flags: RunFlags): Promise<number> {
  const controller = new AbortController();
  const onSignal = interruptHandler(controller);
  process.once("SIGINT", onSignal);
  let market: ComputeMarket | undefined;
  let requestor: Requestor | undefined;
  let payments: EscrowPayments | EscrowV2Payments | undefined;
  let lock: DirLock | undefined;
  let stopProgress = () => {};
  let failuresListed = false;
  const failed: Extract<RunEvent, { type: "providerFailed" }>[] = [];
  try {
    const logger = cliLogger("requestor");
    // a config file that is missing or invalid is an error whatever the backend
    const config = await readConfigFile(flags.config);
    // public peers and a public chain RPC are separate permissions (--public, --allow-public-rpc)
    const settings = await paymentSettingsFrom(
      { ...flags, allowPublic: Boolean(flags.allowPublicRpc || flags.allowPublic) },
      process.env,
    );
    if (settings && flags.backend === "golem")
      throw new UserError("PAYMENTS_UNSUPPORTED", "The escrow pays providers of the embedded network only", {
        details: "the Golem backend pays through yagna: drop --rpc-url, --escrow and --payment-key-file",
      });
    if (flags.golemMinSuccessRate !== undefined && flags.backend !== "golem")
      throw new UserError("GOLEM_FLAG_WITHOUT_GOLEM", "--golem-min-success-rate needs --backend golem");
    if (flags.golemRuntime !== undefined && flags.backend !== "golem")
      throw new UserError("GOLEM_FLAG_WITHOUT_GOLEM", "--golem-runtime needs --backend golem");
    // --listen and --announce are checked before the chain, the image and the network (a wrong one fails now)
    // each flag wins over the config file's key of the same name
    const addresses = addressOptionsFrom({
      ...(config.listen ? { listen: config.listen } : {}),
      ...(config.announce ? { announce: config.announce } : {}),
      ...(config.appendAnnounce ? { appendAnnounce: config.appendAnnounce } : {}),
      ...addressOptionsFrom(flags),
    });
    if (Object.keys(addresses).length > 0) {
      if (flags.backend === "golem")
        throw new UserError("ADDRESS_FLAG_WITHOUT_LIBP2P", "--listen and --announce are for the embedded network", {
          details:
            "the Golem backend reaches providers through yagna: drop --listen, --announce and --append-announce (and the config file's listen, announce and appendAnnounce)",
        });
      await checkNodeAddresses({ ...networkOptionsFrom(flags, config), ...addresses });
    }
    // one process per data directory, refused at once: before the chain, the image and the network (the
    // Requestor takes this process's lock again, re-entrantly)
    lock = lockDataDir(flags.dataDir, "airqube run");
    // the chain must answer before anything else happens: a chain that is down fails the run here
    if (settings)
      payments = await connectPayments(settings, escrowVersionOf(flags.escrowVersion, config), {
        signal: controller.signal,
      });
    const identity = loadOrCreateIdentity(flags.dataDir);
    const quorum = flags.quorum ?? Math.floor(flags.redundancy / 2) + 1;
    if (quorum > flags.redundancy)
      throw new UserError("QUORUM_INVALID", "The quorum cannot exceed the redundancy", {
        details: `${quorum} > ${flags.redundancy}`,
      });
    const env = Object.fromEntries(
      (flags.env ?? []).map((pair) => [pair.split("=")[0]!, pair.slice(pair.indexOf("=") + 1)]),
    );
    const shipped = await shippedImageFrom(flags, flags.dataDir, { signal: controller.signal });
    const qube = await sealQube(
      {
        image: flags.image,
        ...(flags.imageDigest ? { imageDigest: flags.imageDigest } : {}),
        ...(shipped ? { imageArchive: shipped } : {}),
        command,
        env,
        ...(flags.input ? { inputDir: flags.input } : {}),
        outputs: declaredOutputs(flags.out ?? ["result"], flags.output),
        tier: flags.tier,
        limits: { wallTimeMs: flags.timeout, memoryBytes: flags.memory, milliCpus: Math.round(flags.cpus * 1000) },
        redundancy: { mode: "fixed", k: flags.redundancy, quorum },
      },
      identity,
    );
    logger.info({ qubeId: qube.spec.id, k: flags.redundancy, quorum }, "qube sealed");
    market =
      flags.backend === "golem"
        ? await connectGolem(config, controller.signal, {
            ...(flags.golemMinSuccessRate !== undefined ? { minSuccessRate: flags.golemMinSuccessRate } : {}),
            ...(flags.golemRuntime !== undefined ? { runtime: flags.golemRuntime } : {}),
          })
        : await Libp2pMarket.connect({
            identity,
            bootstrap: bootstrapFrom(flags, config),
            ...networkOptionsFrom(flags, config),
            ...addresses,
          });
    requestor = new Requestor({ market, dataDir: flags.dataDir, ...(payments ? { payments } : {}) });
    const names = new Map<string | undefined, string>();
    if (payments) {
      names.set(payments.account.toLowerCase(), "requestor (refund)");
      // settle or reclaim what an earlier run left open before locking anything new
      const recovered = await requestor.recoverPayments({ signal: controller.signal });
      reportRecovered(recovered, payments, Boolean(flags.json), names);
    }
    const progress = progressReporter({ json: Boolean(flags.json), replicas: flags.redundancy });
    stopProgress = progress.stop;
    failuresListed = progress.listsFailures;
    const maxPrice = flags.maxPrice;
    const result = await requestor.run(qube, {
      outputDir: flags.output,
      signal: controller.signal,
      onProgress: (event) => {
        if (event.type === "providerFailed") failed.push(event);
        logger.info({ event: event.type, ...event, type: undefined }, "progress");
        progress.onProgress(event);
      },
      ...(flags.allowFewer ? { allowFewer: true } : {}),
      ...(maxPrice !== undefined ? { filter: (c) => c.price <= maxPrice } : {}),
    });
    stopProgress();
    const status = result.status === "verified" && result.outcome ? exitStatusOf(result.outcome) : AIRQUBE_ERROR_EXIT;
    logger.info({ qubeId: result.qubeId, status: result.status, outcome: result.outcome, exitStatus: status }, "done");
    if (flags.json) process.stdout.write(`${JSON.stringify({ event: "result", ...result, exitStatus: status })}\n`);
    else {
      for (const a of result.answers) if (a.payout) names.set(a.payout.toLowerCase(), a.provider);
      for (const line of describeResult(result, flags)) process.stdout.write(`${line}\n`);
      for (const report of result.payments ?? [])
        for (const line of describePayment(report, names)) process.stdout.write(`${line}\n`);
    }
    return status;
  } catch (error) {
    stopProgress();
    // Ctrl-C: the requestor told the providers to stop and journalled the qube as interrupted
    if (controller.signal.aborted) return reportInterrupted(Boolean(flags.json));
    // every provider's reason first, once (plain progress already printed each as it came; the error line
    // sums them up)
    if (!flags.json && !failuresListed) for (const f of failed) process.stderr.write(`${describeFailure(f)}\n`);
    return reportError(withSkippedOffers(error, market), Boolean(flags.json));
  } finally {
    process.off("SIGINT", onSignal);
    requestor?.close();
    payments?.dispose();
    try {
      await market?.close();
    } finally {
      lock?.release();
    }
  }
}

/** Most skipped offers a run's error names (each is also logged). */
const MAX_SKIPPED_NAMED = 10;

/**
 * A run that found too few providers says which offers the market skipped and why (an offer naming only
 * addresses this requestor does not dial: OFFER_NOT_DIALLABLE; a provider that did not answer its ping:
 * PROVIDER_UNREACHABLE; an expired or badly signed offer), in the error's details and one warning per offer in
 * the log. Any other error is returned unchanged.
 */
function withSkippedOffers(error: unknown, market: ComputeMarket | undefined): unknown {
  if (!(market instanceof Libp2pMarket) || !(error instanceof PeerError)) return error;
  if (error.code !== "NOT_ENOUGH_PROVIDERS" && error.code !== "NO_PROVIDER") return error;
  const { offers } = market.offers.droppedOffers();
  if (offers.length === 0) return error;
  const logger = cliLogger("requestor");
  for (const o of offers) logger.warn({ provider: o.provider, code: o.code, reason: o.message }, "offer skipped");
  const named = offers.slice(0, MAX_SKIPPED_NAMED).map((o) => `${o.provider}: ${o.code}: ${o.message}`);
  if (offers.length > named.length) named.push(`… and ${offers.length - named.length} more`);
  return new PeerError(error.code, error.shortMessage, {
    details: `${error.details ? `${error.details}; ` : ""}offers skipped: ${named.join("; ")}`,
    cause: error,
  });
}

// one line for a provider that refused or failed (also exported from here, where callers found it first)
export { describeFailure };

/**
 * The human form of a run's result: a head line saying whether k providers agreed and on what outcome, then
 * the providers, every refusal and failure, the outputs, missing declared outputs and the logs' tails.
 */
export function describeResult(
  result: RunReport,
  flags: { output: string; timeout?: number; redundancy?: number },
): string[] {
  const lines: string[] = [];
  const outcome = result.outcome;
  if (result.status === "verified" && outcome) {
    const voters = result.agreeing.length + result.dissenting.length;
    const head = result.verified
      ? `VERIFIED by ${result.agreeing.length}/${voters} providers`
      : `AGREED by ${result.agreeing.length}/${voters} providers (not verified: non-deterministic qube)`;
    const missing = outcome.missingOutputs.length
      ? `; declared output${outcome.missingOutputs.length === 1 ? "" : "s"} ${outcome.missingOutputs.join(", ")} never written`
      : "";
    // k asked, fewer answered: say so (a quorum of the answers is not k independent answers)
    const fewer =
      flags.redundancy !== undefined && voters < flags.redundancy
        ? ` (only ${voters} of the ${flags.redundancy} providers asked for answered)`
        : "";
    lines.push(
      `${head}${fewer}: ${describeEnd(outcome, flags.timeout !== undefined ? { timeoutMs: flags.timeout } : {})}${missing}`,
    );
  } else {
    lines.push(`NO CONSENSUS among ${result.answers.length + result.failures.length} providers: ${result.reason}`);
  }
  lines.push(`  qube ${result.qubeId}`);
  if (result.outputsRoot) lines.push(`  outputs root ${result.outputsRoot}`);
  if (result.status === "verified")
    lines.push(`  agreeing providers: ${result.agreeing.length ? result.agreeing.join(", ") : "none"}`);
  if (result.dissenting.length) lines.push(`  dissenting: ${result.dissenting.join(", ")}`);
  if (result.status !== "verified")
    for (const a of result.answers) {
      const end = a.statement?.payload;
      lines.push(
        `  ${shortPeer(a.provider)} answered ${a.outputsRoot.slice(0, 19)}…: ${end ? describeEnd({ kind: end.outcome, exitCode: end.exitCode, ...(end.outputRefusal ? { outputRefusal: end.outputRefusal } : {}) }) : `exit code ${a.exitCode}`}`,
      );
    }
  for (const f of result.failures) lines.push(describeFailure(f));
  // a few files by name; hundreds would bury the outcome (`--json` lists every one)
  const shown = result.outputs.length > MAX_LISTED_OUTPUTS + 2 ? MAX_LISTED_OUTPUTS : result.outputs.length;
  for (const o of result.outputs.slice(0, shown))
    lines.push(`  ${join(flags.output, o.path)} ${o.size} bytes sha256:${o.sha256}`);
  if (shown < result.outputs.length) {
    const rest = result.outputs.slice(shown);
    const bytes = rest.reduce((sum, o) => sum + o.size, 0);
    lines.push(`  … and ${rest.length} more files (${bytes} bytes) under ${flags.output} (--json lists them all)`);
  }
  if (outcome) lines.push(...describeMissing(outcome.missingOutputs));
  const winner = result.answers.find((a) => a.outputsRoot === result.outputsRoot);
  if (winner?.stdout) lines.push(...describeLog("stdout (unverified)", winner.stdout));
  if (outcome?.stderrTail) lines.push(...describeLog("stderr (unverified, last lines)", outcome.stderrTail));
  if (result.reason && result.status === "verified") lines.push(`  ${result.reason}`);
  return lines;
}

/** Says what the start-up recovery did with the escrow jobs an earlier run left open. */
function reportRecovered(
  reports: PaymentReport[],
  payments: EscrowPayments | EscrowV2Payments,
  json: boolean,
  names: ReadonlyMap<string | undefined, string>,
): void {
  if (json) {
    process.stdout.write(
      `${JSON.stringify({ event: "paymentsRecovered", account: payments.account, escrow: payments.escrow, payments: reports })}\n`,
    );
    return;
  }
  process.stderr.write(`airqube: paying from ${payments.account} through escrow ${payments.escrow}\n`);
  if (reports.length === 0) return;
  process.stdout.write(`recovered ${reports.length} escrow job(s) an earlier run left open:\n`);
  for (const report of reports) for (const line of describePayment(report, names)) process.stdout.write(`${line}\n`);
}

/** An escrow job of the journal, for `airqube journal` (state, transactions, amounts; never openings). */
function escrowJobSummary(entry: JournalEscrowJob) {
  const report = (entry.report ?? {}) as Partial<PaymentReport>;
  const job = entry.job as EscrowJobJson;
  return {
    jobId: entry.jobId,
    state: entry.state,
    providers: job.providers,
    budget: budgetOf(jobFromJson(job)).toString(),
    price: job.price,
    stake: job.stake,
    /** From then on the budget can be reclaimed (unix seconds). */
    finalDeadline: job.finalDeadline,
    lockTx: entry.lockTx,
    ...(report.settleTx ? { settleTx: report.settleTx } : {}),
    ...(report.credits ? { credits: report.credits } : {}),
    ...(report.slashed ? { slashed: report.slashed } : {}),
    ...(report.error ? { error: report.error } : {}),
    ...(report.notBefore ? { notBefore: report.notBefore } : {}),
  };
}

/** The Golem backend, configured from golem-js's environment variables and the config file's `golem` section. */
export async function connectGolem(
  file: RequestorConfig,
  signal: AbortSignal,
  flags: import("../golem/index.js").GolemFlags = {},
): Promise<ComputeMarket> {
  const { GolemMarket, loadGolemConfig } = await import("../golem/index.js");
  const config = loadGolemConfig(process.env, file.golem as never, flags);
  return GolemMarket.connect(config, { signal, logger: cliLogger("golem") });
}

interface OffersFlags extends NetworkFlags {
  config?: string;
  bootstrap?: string[];
  dataDir: string;
  json?: boolean;
}

async function offers(flags: OffersFlags): Promise<number> {
  let market: Libp2pMarket | undefined;
  try {
    const logger = cliLogger("requestor");
    const config = await readConfigFile(flags.config);
    market = await Libp2pMarket.connect({
      identity: loadOrCreateIdentity(flags.dataDir),
      bootstrap: bootstrapFrom(flags, config),
      ...networkOptionsFrom(flags, config),
    });
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline) {
      await market.offers.queryConnected();
      await new Promise((r) => setTimeout(r, 250));
    }
    const list = market.offers.list().map((known) => known.offer);
    // offers refused (expired, issued in the future by a provider whose clock is ahead, badly signed): say so
    const dropped = market.offers.droppedOffers();
    logger.info({ offers: list.length, dropped: dropped.count }, "offers gathered");
    if (flags.json) printJson({ offers: list, dropped });
    else {
      if (list.length === 0) process.stdout.write("no offers\n");
      if (dropped.count > 0) {
        const why = Object.entries(dropped.byCode).map(([code, n]) => `${n} ${code}`);
        process.stderr.write(`dropped ${dropped.count} offer(s): ${why.join(", ")}\n`);
        for (const o of dropped.offers)
          process.stderr.write(`  ${o.provider}: ${o.message}${o.details ? ` (${o.details})` : ""}\n`);
      }
      for (const o of list) {
        const probes = Object.entries(o.probes)
          .map(([tier, p]) => `${tier} ${p?.pass}/${(p?.pass ?? 0) + (p?.fail ?? 0) + (p?.inconclusive ?? 0)} pass`)
          .join(", ");
        process.stdout.write(
          `${o.provider}  tiers ${o.tiers.join(",")}  ${o.resources.available}/${o.resources.maxConcurrent} free  price ${glm(o.price.start)} + ${glm(o.price.perSecond)}/s  probes ${probes}\n`,
        );
      }
    }
    return 0;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  } finally {
    await market?.close();
  }
}

interface SettleFlags extends PaymentFlags {
  dataDir: string;
  json?: boolean;
  /** `v1` or `v2`: the escrow `--escrow` names. */
  escrowVersion?: string;
}

/**
 * `airqube journal --settle`: settles or reclaims what earlier runs left pending in the data directory, through
 * the escrow `--escrow` names (v1 or, with `--escrow-version v2`, v2). Jobs of the other version stay pending,
 * and the command says how many and how to settle them.
 */
async function settleJournal(flags: SettleFlags): Promise<number> {
  let payments: EscrowPayments | EscrowV2Payments | undefined;
  let journal: RequestorJournal | undefined;
  const lock = (() => {
    try {
      return lockDataDir(flags.dataDir, "airqube journal --settle");
    } catch (error) {
      return error as Error;
    }
  })();
  if (lock instanceof Error) return reportError(lock, Boolean(flags.json));
  try {
    const settings = await paymentSettingsFrom(flags, process.env);
    if (!settings)
      throw new UserError("PAYMENT_CONFIG_INVALID", "Settling needs the chain and the paying key", {
        details:
          "pass --rpc-url, --escrow and --payment-key-file (or AIRQUBE_RPC_URL, AIRQUBE_ESCROW, AIRQUBE_PAYMENT_KEY_FILE)",
      });
    const version = escrowVersionOf(flags.escrowVersion, {});
    journal = new RequestorJournal(join(flags.dataDir, "journal.sqlite"));
    const isV1 = (entry: JournalEscrowJob) => isV1Job(entry.jobId, jobFromJson(entry.job as EscrowJobJson));
    const pending = journal.escrowJobs({ openOnly: true });
    const open = pending.filter((entry) => isV1(entry) === (version === 1));
    const other = pending.length - open.length;
    if (other > 0)
      process.stderr.write(
        `airqube: ${other} escrow job(s) of escrow v${3 - version} left pending: settle them with --escrow-version v${3 - version} and that escrow's --escrow\n`,
      );
    if (open.length === 0) {
      // nothing to settle needs no chain: say so (an empty list, as the reports' list, with --json)
      if (flags.json) printJson([]);
      else process.stdout.write(`nothing to settle: no escrow v${version} job pending in ${flags.dataDir}\n`);
      return 0;
    }
    payments = await connectPayments(settings, version);
    const reports = await closeJournalled(payments, journal, open, {
      maxWaitMs: 0,
      now: () => new Date(),
    });
    if (flags.json) printJson(reports);
    else
      for (const r of reports)
        process.stdout.write(
          `${r.jobId} ${r.status}${r.settleTx ? ` in tx ${r.settleTx}` : ""}${r.notBefore ? ` (not before ${new Date(r.notBefore * 1000).toISOString()})` : ""}${r.error ? ` (${r.error.code}: ${r.error.message})` : ""}\n`,
        );
    return 0;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  } finally {
    journal?.close();
    payments?.dispose();
    lock.release();
  }
}
