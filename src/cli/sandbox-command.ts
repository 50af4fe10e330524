/** `airqube sandbox run`: one qube in a local hardened sandbox. */
import { type Command, Option } from "commander";
import { UserError } from "../qube/errors.js";
import type { Sandbox, Tier } from "../sandbox/api.js";
import { ContainerSandbox } from "../sandbox/container-sandbox.js";
import { printJson, reportError } from "./output.js";
import { parseCount, parseDuration, parsePositive, parseSize } from "./units.js";

interface RunFlags {
  image: string;
  imageDigest?: string;
  tier: Tier;
  input?: string;
  output?: string;
  out: string[];
  env: string[];
  timeout: number;
  memory: number;
  cpus: number;
  pids: number;
  scratch: number;
  json?: boolean;
}

/** Builds the sandbox of a tier; the micro-VM tier is loaded only when asked for. */
export async function createSandbox(tier: Tier): Promise<Sandbox> {
  if (tier === "container") return new ContainerSandbox();
  const { MicroVmSandbox } = await import("../sandbox/microvm-sandbox.js");
  return new MicroVmSandbox();
}

export function registerSandboxCommand(program: Command): void {
  const sandbox = program.command("sandbox").description("run qubes in a local hardened sandbox");
  sandbox
    .command("run")
    .description("run one command in a fresh, hardened, disposable sandbox")
    .requiredOption("--image <ref>", "image reference, e.g. airqube/busybox:latest")
    .option("--image-digest <sha256:...>", "refuse to run unless the image has exactly this digest")
    .option("--tier <tier>", "isolation tier: container | microvm", "container")
    .option("--input <dir>", "directory placed read-only at /input")
    .option("--output <dir>", "directory that receives the declared outputs (default output path: /output)")
    .option(
      "--out <path>",
      "declared output path inside the sandbox (repeatable; default /output when --output is set)",
      collect,
      [],
    )
    .option("--env <KEY=VALUE>", "environment variable (repeatable)", collect, [])
    .addOption(
      new Option("--timeout <duration>", "wall-clock deadline").argParser(parseDuration).default(30_000, "30s"),
    )
    .addOption(
      new Option("--memory <size>", "memory limit (no swap beyond it)")
        .argParser(parseSize)
        .default(256 * 1024 * 1024, "256m"),
    )
    .addOption(new Option("--cpus <n>", "CPU quota in cores").argParser(parsePositive).default(1))
    .addOption(new Option("--pids <n>", "process limit").argParser(parseCount).default(64))
    .addOption(
      new Option("--scratch <size>", "size of /scratch, /tmp and /output each")
        .argParser(parseSize)
        .default(64 * 1024 * 1024, "64m"),
    )
    .option("--json", "print one JSON object instead of the qube's own output")
    .argument("<command...>", "the command to run (put it after --)")
    .addHelpText(
      "after",
      "\nExit status: the qube's exit code, or 125 when the sandbox itself failed.\nExample:\n  airqube sandbox run --image airqube/busybox:latest --json -- sh -c 'echo hi'",
    )
    .action(async (command: string[], flags: RunFlags) => {
      process.exitCode = await runSandbox(command, flags);
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function runSandbox(command: string[], flags: RunFlags): Promise<number> {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let sandbox: Sandbox | undefined;
  try {
    if (flags.tier !== "container" && flags.tier !== "microvm")
      throw new UserError("TIER_UNKNOWN", `Unknown tier "${flags.tier}"`, {
        details: "use container or microvm",
      });
    const env = Object.fromEntries(
      flags.env.map((pair) => {
        const at = pair.indexOf("=");
        return at > 0 ? [pair.slice(0, at), pair.slice(at + 1)] : [pair, ""];
      }),
    );
    const outputs = flags.out.length > 0 ? flags.out : flags.output ? ["/output"] : [];
    sandbox = await createSandbox(flags.tier);
    const result = await sandbox.run(
      {
        image: flags.image,
        ...(flags.imageDigest ? { imageDigest: flags.imageDigest } : {}),
        command,
        env,
        ...(flags.input ? { inputDir: flags.input } : {}),
        outputs,
        ...(flags.output ? { outputDir: flags.output } : {}),
        limits: {
          wallTimeMs: flags.timeout,
          memoryBytes: flags.memory,
          cpus: flags.cpus,
          pids: flags.pids,
          scratchBytes: flags.scratch,
        },
      },
      { signal: controller.signal },
    );
    if (flags.json) printJson(result);
    else {
      process.stdout.write(result.stdout);
      process.stderr.write(result.stderr);
      if (result.stdoutTruncated || result.stderrTruncated)
        process.stderr.write("airqube: output truncated at the log cap\n");
      if (result.timedOut) process.stderr.write(`airqube: killed at the ${flags.timeout} ms deadline\n`);
      if (result.oomKilled) process.stderr.write("airqube: killed at the memory limit\n");
      for (const file of result.outputs)
        process.stderr.write(`airqube: output ${file.path} ${file.size} bytes sha256:${file.sha256}\n`);
    }
    return result.exitCode < 0 ? 125 : result.exitCode;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await sandbox?.close();
  }
}
