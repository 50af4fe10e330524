/**
 * `airqube sandbox run`: one qube in a local hardened sandbox. `--out PATH` means what it means in
 * `airqube run`: a path under /output, placed at `--output DIR/PATH`; a declared output the qube never writes
 * is named and fails the command (exit 123). The exit status follows `exit-status.ts`.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { type Command, Option } from "commander";
import { type AirqubeError, UserError } from "../qube/errors.js";
import { outputRefusalOf } from "../qube/statement.js";
import { missingOutputs } from "../requestor/outcome.js";
import type { Sandbox, SandboxResult, Tier } from "../sandbox/api.js";
import { ContainerSandbox } from "../sandbox/container-sandbox.js";
import {
  AIRQUBE_ERROR_EXIT,
  describeEnd,
  describeMissing,
  exitStatusOf,
  KILLED_EXIT,
  OUTPUT_MISSING_EXIT,
  TIMEOUT_EXIT,
} from "./exit-status.js";
import { printJson, reportError } from "./output.js";
import { declaredOutputs } from "./paths.js";
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
  if (tier === "container" || tier === "gvisor") return new ContainerSandbox({ tier });
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
    .option("--tier <tier>", "isolation tier: container | gvisor | microvm", "container")
    .option("--input <dir>", "directory placed read-only at /input")
    .option("--output <dir>", "directory that receives the outputs: /output/PATH lands at DIR/PATH")
    .option(
      "--out <path>",
      "declared output: a path under /output, placed at --output DIR/PATH (repeatable; default: all of /output); one the qube never writes fails the run (exit 123)",
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
      "\nExit status (like docker run): the qube's exit code (127: command not found, 128+n: killed by signal n);\n" +
        `  ${TIMEOUT_EXIT}: killed at --timeout; ${KILLED_EXIT}: killed at the memory limit; ${OUTPUT_MISSING_EXIT}: outputs not delivered (exited 0\n` +
        `  but a declared --out was never written, or outputs refused for breaking a limit, e.g. OUTPUT_TOO_MANY_FILES);\n` +
        `  ${AIRQUBE_ERROR_EXIT}: the sandbox itself failed.\n` +
        "Example:\n  airqube sandbox run --image airqube/busybox:latest --output ./out --out a.txt -- sh -c 'echo hi > /output/a.txt'",
    )
    .action(async (command: string[], flags: RunFlags) => {
      process.exitCode = await runSandbox(command, flags);
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Moves what the sandbox unpacked under `staging/output/` to `dir`, refusing to overwrite anything. */
async function placeOutputs(staging: string, dir: string): Promise<void> {
  const from = join(staging, "output");
  for (const entry of await readdir(from).catch(() => [] as string[])) {
    if (existsSync(join(dir, entry)))
      throw new UserError("OUTPUT_CONFLICT", "An output would overwrite an existing file", {
        details: join(dir, entry),
      });
    await rename(join(from, entry), join(dir, entry));
  }
}

/** How the qube ended, as `exit-status.ts` reads it. */
function outcomeOfSandbox(result: SandboxResult, declared: string[]) {
  const kind = result.timedOut
    ? ("timeout" as const)
    : result.oomKilled
      ? ("oom" as const)
      : result.exitCode < 0
        ? ("unknown" as const)
        : result.exitCode > 255
          ? ("killed" as const)
          : ("exited" as const);
  return {
    kind,
    exitCode: kind === "exited" ? result.exitCode : null,
    missingOutputs: missingOutputs(declared, result.outputs),
  };
}

async function runSandbox(command: string[], flags: RunFlags): Promise<number> {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let sandbox: Sandbox | undefined;
  let staging: string | undefined;
  let createdOutput = false;
  let failed = false;
  try {
    if (flags.tier !== "container" && flags.tier !== "gvisor" && flags.tier !== "microvm")
      throw new UserError("TIER_UNKNOWN", `Unknown tier "${flags.tier}"`, {
        details: "use container, gvisor or microvm",
      });
    const env = Object.fromEntries(
      flags.env.map((pair) => {
        const at = pair.indexOf("=");
        return at > 0 ? [pair.slice(0, at), pair.slice(at + 1)] : [pair, ""];
      }),
    );
    const declared = declaredOutputs(flags.out, flags.output);
    const outputs = declared.length > 0 ? declared.map((p) => `/output/${p}`) : flags.output ? ["/output"] : [];
    if (flags.output) {
      // a run that fails leaves nothing behind, not even the directory it made for the outputs
      createdOutput = !existsSync(flags.output);
      await mkdir(flags.output, { recursive: true });
      staging = await mkdtemp(join(flags.output, ".airqube-staging-"));
    }
    sandbox = await createSandbox(flags.tier);
    const raw = await sandbox.run(
      {
        image: flags.image,
        ...(flags.imageDigest ? { imageDigest: flags.imageDigest } : {}),
        command,
        env,
        ...(flags.input ? { inputDir: flags.input } : {}),
        outputs,
        ...(staging ? { outputDir: staging } : {}),
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
    if (staging && flags.output) await placeOutputs(staging, flags.output);
    // paths relative to /output, as --out names them
    const result = {
      ...raw,
      outputs: raw.outputs.map((f) => ({ ...f, path: f.path.replace(/^output\//, "") })),
    };
    const outcome = outcomeOfSandbox(result, declared);
    const status = exitStatusOf(outcome);
    if (flags.json) printJson({ ...result, missingOutputs: outcome.missingOutputs, exitStatus: status });
    else {
      process.stdout.write(result.stdout);
      process.stderr.write(result.stderr);
      if (result.stdoutTruncated || result.stderrTruncated)
        process.stderr.write("airqube: output truncated at the log cap\n");
      for (const file of result.outputs)
        process.stderr.write(
          `airqube: output ${flags.output ? join(flags.output, file.path) : file.path} ${file.size} bytes sha256:${file.sha256}\n`,
        );
      for (const line of describeMissing(outcome.missingOutputs)) process.stderr.write(`airqube:${line.slice(1)}\n`);
      if (status !== 0)
        process.stderr.write(
          `airqube: ${describeEnd(outcome, { timeoutMs: flags.timeout })}${status === OUTPUT_MISSING_EXIT ? " but left a declared output unwritten" : ""} (exit status ${status})\n`,
        );
    }
    return status;
  } catch (error) {
    failed = true;
    const status = reportError(error, Boolean(flags.json));
    // outputs that broke a limit or rule are the qube's own outcome (123, as in `airqube run`), not a failure
    // of the sandbox: say which file and why
    const refusal = outputRefusalOf(error);
    if (refusal === undefined) return status;
    const details = (error as AirqubeError).details;
    if (details) process.stderr.write(`airqube:   ${details}\n`);
    process.stderr.write(
      `airqube: ${describeEnd({ kind: "outputs-refused", exitCode: null, outputRefusal: refusal })} (exit status ${OUTPUT_MISSING_EXIT})\n`,
    );
    return OUTPUT_MISSING_EXIT;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (staging) await rm(staging, { recursive: true, force: true });
    // only an empty directory goes (rmdir refuses anything else)
    if (failed && createdOutput && flags.output) await rmdir(flags.output).catch(() => undefined);
    await sandbox?.close();
  }
}
