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
import { printJson, reportError } from "./output.js";
import { defaultRequestorDir } from "./paths.js";

const collect = (value: string, previous: string[] = []) => [...previous, value];

interface ProbeFlags {
  backend: "libp2p" | "golem";
  config?: string;
  tier: "container" | "microvm";
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
    .description("run the sandbox escape regression suite and report, per probe, whether each defence holds")
    .addOption(new Option("--tier <tier>", "sandbox tier").choices(["container", "microvm"]).default("container"))
    .option("--weaken <name>", "remove one defence for this run, to prove the suite can fail (repeatable)", collect)
    .option("--list-weakenings", "list the weakenings and exit")
    .option(
      "--provider <id>",
      "run the suite as a qube on this provider (peer id, or Golem node id) instead of locally",
    )
    .addOption(new Option("--backend <name>", "network of --provider").choices(["libp2p", "golem"]).default("libp2p"))
    .option("--config <file>", "JSON config file (its `golem` section configures the Golem backend)")
    .option(
      "--bootstrap <multiaddr>",
      "bootstrap peer for --provider (repeatable; default $AIRQUBE_BOOTSTRAP)",
      collect,
    )
    .option("--data-dir <dir>", "requestor identity for --provider", defaultRequestorDir())
    .option("--image <ref>", "the probe image", PROBE_IMAGE)
    .option("--json", "print the JSON report")
    .option("--junit <file>", "also write a JUnit XML report")
    .addHelpText(
      "after",
      "\nExit status: 0 when nothing failed and nothing was inconclusive, 1 when a probe failed, 2 when one was inconclusive.",
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
    if (flags.provider && flags.backend === "golem") {
      const { loadGolemConfig, runGolemProbe } = await import("../golem/index.js");
      const { readConfigFile } = await import("./run-command.js");
      const file = await readConfigFile(flags.config);
      report = await runGolemProbe({
        config: loadGolemConfig(process.env, file.golem as never),
        provider: flags.provider,
      });
    } else if (flags.provider) {
      if (flags.weaken?.length) throw new UserError("WEAKEN_REMOTE", "Weakenings apply only to local sandboxes");
      const { runRemoteProbeSuite } = await import("../requestor/remote-probe.js");
      report = await runRemoteProbeSuite({
        provider: flags.provider,
        bootstrap: flags.bootstrap,
        dataDir: flags.dataDir,
        tier: flags.tier,
      });
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
    return reportError(error, Boolean(flags.json));
  }
}
