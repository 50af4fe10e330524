/**
 * `airqube probe`: runs the escape regression suite against a local sandbox tier and reports it as text,
 * JSON (`--json`) or JUnit XML (`--junit FILE`). Exit status: 0 all passed, 1 something failed, 2 something was
 * inconclusive, 125 the suite itself could not run.
 */
import { writeFile } from "node:fs/promises";
import { type Command, Option } from "commander";
import { AirqubeError, toAirqubeError } from "../qube/errors.js";
import type { Tier } from "../sandbox/api.js";
import { exitStatus, type ProbeReport, reportHash, toJUnit } from "./report.js";
import { PROBE_IMAGE, runProbeSuite } from "./runner.js";
import { listWeakenings } from "./weakenings.js";

/** Exit code when the suite could not run at all (same as `airqube sandbox run`). */
export const PROBE_ERROR_EXIT = 125;

interface ProbeFlags {
  tier: Tier;
  weaken: string[];
  json?: boolean;
  junit?: string;
  listWeakenings?: boolean;
  image: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** The human-readable report: one line per probe, then the summary and the hash. */
export function formatReport(report: ProbeReport): string {
  const mark = { pass: "PASS", fail: "FAIL", inconclusive: "????", skipped: "skip" } as const;
  const lines = [
    `${report.suite} ${report.suiteVersion}`,
    `tier ${report.tier} on ${report.host.runtime} ${report.host.runtimeVersion}, kernel ${report.host.kernel}`,
    "",
  ];
  for (const probe of report.probes) {
    const evidence = probe.evidence.length > 160 ? `${probe.evidence.slice(0, 157)}...` : probe.evidence;
    lines.push(`${mark[probe.verdict]} ${String(probe.id).padStart(2)} ${probe.title.padEnd(28)} ${evidence}`);
  }
  const s = report.summary;
  lines.push("", `${s.pass} pass, ${s.fail} fail, ${s.inconclusive} inconclusive, ${s.skipped} skipped`);
  lines.push(`report hash ${reportHash(report)}`, "");
  return lines.join("\n");
}

/**
 * Registers `airqube probe` on the main program.
 *
 * @example
 * registerProbeCommand(program); // airqube probe --json --junit probes.xml
 */
export function registerProbeCommand(program: Command): void {
  program
    .command("probe")
    .description("run the sandbox escape regression suite against a local sandbox tier")
    .addOption(new Option("--tier <tier>", "sandbox tier").choices(["container", "microvm"]).default("container"))
    .option("--weaken <name>", "remove one defence for this run, to prove probes can fail (repeatable)", collect, [])
    .option("--json", "print the JSON report on stdout")
    .option("--junit <file>", "also write the report as JUnit XML")
    .option("--list-weakenings", "list the weakenings and exit")
    .option("--image <ref>", "the probe image", PROBE_IMAGE)
    .action(async (flags: ProbeFlags) => {
      if (flags.listWeakenings) {
        const list = listWeakenings();
        if (flags.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else for (const w of list) process.stdout.write(`${w.name.padEnd(24)} ${w.description}\n`);
        return;
      }
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      try {
        const report = await runProbeSuite({
          tier: flags.tier,
          weakenings: flags.weaken,
          image: flags.image,
          signal: controller.signal,
          onProgress: (event) => {
            if (!flags.json && event.state === "finished")
              process.stderr.write(`probe: ${event.phase} phase done in ${event.durationMs} ms\n`);
          },
        });
        if (flags.junit) await writeFile(flags.junit, toJUnit(report));
        process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
        process.exitCode = exitStatus(report);
      } catch (error) {
        const e = error instanceof AirqubeError ? error : toAirqubeError(error);
        if (flags.json) process.stdout.write(`${JSON.stringify({ error: e.toJSON() })}\n`);
        process.stderr.write(`airqube: ${e.message} [${e.code}]\n`);
        process.exitCode = PROBE_ERROR_EXIT;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
    });
}
