/** `airqube probe`: the sandbox escape regression suite, locally or on a remote provider. */
import { writeFile } from "node:fs/promises";
import { type Command, Option } from "commander";
import {
  exitStatus,
  listWeakenings,
  PROBE_IMAGE,
  type ProbeReport,
  reportHash,
  runProbeSuite,
  toJUnit,
} from "../probes/index.js";
import { UserError } from "../qube/index.js";
import { printable } from "../qube/printable.js";
import type { EscrowPayments } from "../requestor/payments.js";
import { type DirLock, lockDataDir } from "../store/dir-lock.js";
import { interruptHandler, reportInterrupted } from "./interrupt.js";
import { printJson, reportError } from "./output.js";
import { defaultRequestorDir } from "./paths.js";
import { type PaymentFlags, paymentSettingsFrom } from "./payment-options.js";
import { describePayment } from "./payment-report.js";
import { useDevnetProfile } from "./profile-hook.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

interface ProbeFlags extends PaymentFlags {
  public?: boolean;
  allowPrivateAddrs?: boolean;
  backend: "libp2p" | "golem";
  golemRuntime?: "vm" | "airqube";
  config?: string;
  tier: "container" | "gvisor" | "microvm";
  weaken?: string[];
  listWeakenings?: boolean;
  provider?: string;
  bootstrap?: string[];
  dataDir: string;
  json?: boolean;
  junit?: string;
  image: string;
}

export function registerProbeCommand(program: Command): void {
  program
    .command("probe")
    .hook("preAction", useDevnetProfile)
    .description("run the sandbox escape regression suite and report, per probe, whether each defence holds")
    .addOption(
      new Option("--tier <tier>", "sandbox tier").choices(["container", "gvisor", "microvm"]).default("container"),
    )
    .option("--weaken <name>", "remove one defence for this run, to prove the suite can fail (repeatable)", collect)
    .option("--list-weakenings", "list the weakenings and exit")
    .option(
      "--provider <id>",
      "run the suite as a qube on this provider (peer id, or Golem node id) instead of locally",
    )
    .addOption(new Option("--backend <name>", "network of --provider").choices(["libp2p", "golem"]).default("libp2p"))
    .addOption(
      new Option(
        "--golem-runtime <name>",
        "--backend golem: airqube verifies the signed escape-suite summary in the provider's offer (no probe qube)",
      ).choices(["vm", "airqube"]),
    )
    .option("--config <file>", "JSON config file (its `golem` section configures the Golem backend)")
    .option(
      "--bootstrap <multiaddr>",
      "bootstrap peer for --provider (repeatable; default $AIRQUBE_BOOTSTRAP)",
      collect,
    )
    .option("--data-dir <dir>", "requestor identity for --provider", defaultRequestorDir())
    .option("--image <ref>", "the probe image", PROBE_IMAGE)
    .option("--rpc-url <url>", "--provider, paid: JSON-RPC URL of the chain (default $AIRQUBE_RPC_URL)")
    .option("--escrow <address>", "--provider, paid: the AirqubeEscrow contract (default $AIRQUBE_ESCROW)")
    .option(
      "--payment-key-file <file>",
      "--provider, paid: file holding the paying account's hex private key (default $AIRQUBE_PAYMENT_KEY_FILE)",
    )
    .option("--allow-public", "allow a non-loopback RPC URL and peers (real deployments only)")
    .option("--public", "--provider: public mode (bootstrap and provider addresses off this machine)")
    .option("--allow-private-addrs", "--provider, public mode: also dial private-range addresses (a LAN)")
    .option("--json", "print the JSON report")
    .option("--junit <file>", "also write a JUnit XML report")
    .addHelpText(
      "after",
      "\nExit status: 0 when nothing failed and nothing was inconclusive, 1 when a probe failed, 2 when one was inconclusive." +
        "\n\nWith --provider the suite's qubes are paid like `airqube run` (--rpc-url, --escrow, --payment-key-file, or\n" +
        "AIRQUBE_* variables, or the profile of a running `airqube devnet up`).",
    )
    .action(async (flags: ProbeFlags) => {
      process.exitCode = await probe(flags);
    });
}

function printReport(report: ProbeReport): void {
  const mark = { pass: "PASS", fail: "FAIL", inconclusive: "????", skipped: "skip" } as const;
  for (const p of report.probes)
    process.stdout.write(
      `${mark[p.verdict]} ${String(p.id).padStart(2)} ${p.title.padEnd(44)} ${p.evidence.slice(0, 70)}\n`,
    );
  const s = report.summary;
  process.stdout.write(
    `\n${report.suite} ${report.suiteVersion} on ${report.tier} (${report.host.runtime} ${report.host.runtimeVersion}, kernel ${report.host.kernel})\n`,
  );
  process.stdout.write(
    `${s.pass} pass, ${s.fail} fail, ${s.inconclusive} inconclusive, ${s.skipped} skipped; report sha256:${reportHash(report)}\n`,
  );
}

async function probe(flags: ProbeFlags): Promise<number> {
  try {
    if (flags.listWeakenings) {
      const list = listWeakenings();
      if (flags.json) printJson(list);
      else for (const w of list) process.stdout.write(`${w.name.padEnd(26)} ${w.description}\n`);
      return 0;
    }
    let report: ProbeReport;
    // a missing or invalid --config is an error whatever the backend
    const file = await (await import("./config-file.js")).readConfigFile(flags.config);
    if (flags.golemRuntime && !(flags.provider && flags.backend === "golem"))
      throw new UserError("GOLEM_FLAG_WITHOUT_GOLEM", "--golem-runtime needs --backend golem and --provider");
    if (flags.provider && flags.backend === "golem") {
      const { loadGolemConfig, runGolemProbe } = await import("../golem/index.js");
      const config = loadGolemConfig(
        process.env,
        file.golem as never,
        flags.golemRuntime ? { runtime: flags.golemRuntime } : {},
      );
      if (config.runtime.name === "airqube") return await runtimeEvidence(config, flags.provider, Boolean(flags.json));
      report = await runGolemProbe({ config, provider: flags.provider });
    } else if (flags.provider) {
      if (flags.weaken?.length) throw new UserError("WEAKEN_REMOTE", "Weakenings apply only to local sandboxes");
      report = await remoteProbe(flags, flags.provider);
    } else {
      const onProgress = flags.json
        ? undefined
        : (event: { phase: string; state: string }) =>
            process.stderr.write(`airqube probe: ${event.phase} ${event.state}\n`);
      report = await runProbeSuite({
        tier: flags.tier,
        weakenings: flags.weaken ?? [],
        ...(onProgress ? { onProgress } : {}),
      });
    }
    if (flags.junit) await writeFile(flags.junit, toJUnit(report));
    if (flags.json) printJson(report);
    else printReport(report);
    return exitStatus(report);
  } catch (error) {
    if (error instanceof ProbeInterrupted) return reportInterrupted(Boolean(flags.json));
    return reportError(error, Boolean(flags.json));
  }
}

class ProbeInterrupted extends UserError {
  constructor() {
    super("INTERRUPTED", "Interrupted (Ctrl-C)");
  }
}

/** The suite on a remote provider, paid like `airqube run` when payment settings are given (or profiled). */
/** `--golem-runtime airqube`: the provider's signed summary, verified; exit 0 when it is clean, 1 when refused. */
async function runtimeEvidence(
  config: import("../golem/index.js").GolemConfig,
  provider: string,
  json: boolean,
): Promise<number> {
  const { golemRuntimeEvidence } = await import("../golem/probe.js");
  const { verdict } = await golemRuntimeEvidence({ config, provider });
  if (json) printJson({ provider, ...verdict });
  else if (verdict.ok)
    for (const tier of verdict.offer.tiers) {
      const s = verdict.offer.summaries[tier]!;
      process.stdout.write(
        `${provider} ${tier}: ${s.pass} pass, ${s.fail} fail, ${s.inconclusive} inconclusive, ${s.skipped} skipped; ` +
          `report ${s.reportHash}, suite ${s.suiteVersion}, run ${s.at}, signed by ${s.publicKey}\n`,
      );
    }
  else process.stdout.write(`${provider}: refused: ${verdict.code}: ${printable(verdict.reason, 500)}\n`);
  return verdict.ok ? 0 : 1;
}

async function remoteProbe(flags: ProbeFlags, provider: string): Promise<ProbeReport> {
  const { runRemoteProbeSuite } = await import("../requestor/remote-probe.js");
  const { EscrowPayments: Escrow } = await import("../requestor/payments.js");
  const controller = new AbortController();
  const onSignal = interruptHandler(controller);
  process.once("SIGINT", onSignal);
  let payments: EscrowPayments | undefined;
  let lock: DirLock | undefined;
  try {
    const settings = await paymentSettingsFrom(flags, process.env);
    // one process per data directory, refused at once: before the chain and the network (the suite's
    // Requestor takes this process's lock again, re-entrantly)
    lock = lockDataDir(flags.dataDir, "airqube probe --provider");
    if (settings) {
      payments = await Escrow.connect(
        { rpcUrl: settings.rpcUrl, escrow: settings.escrow, privateKey: settings.privateKey },
        { signal: controller.signal },
      );
      if (!flags.json)
        process.stderr.write(`airqube: paying from ${payments.account} through escrow ${payments.escrow}\n`);
    }
    const report = await runRemoteProbeSuite({
      provider,
      dataDir: flags.dataDir,
      tier: flags.tier,
      signal: controller.signal,
      ...(flags.bootstrap ? { bootstrap: flags.bootstrap } : {}),
      ...(payments ? { payments } : {}),
      ...(flags.allowPublic ? { allowPublic: true } : {}),
      network: {
        ...(flags.public ? { public: true } : {}),
        ...(flags.allowPrivateAddrs ? { allowPrivate: true } : {}),
      },
    });
    if (!flags.json)
      for (const job of [...(report.recovered ?? []), ...(report.payments ?? [])])
        for (const line of describePayment(job, new Map())) process.stderr.write(`${line}\n`);
    return report;
  } catch (error) {
    if (controller.signal.aborted) throw new ProbeInterrupted();
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    payments?.dispose();
    lock?.release();
  }
}
