/**
 * One RunProcess in a fresh Airqube sandbox: the deployed image (by id), `W/vol-input` staged read-only as
 * /input, the process's /output copied out through the safe unpacker (Airqube's output limits) and merged
 * into `W/vol-output`. The sandbox is destroyed before the run settles, also on abort (Kill, Shutdown).
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type Docker from "dockerode";
import { PlatformError, UserError } from "../../qube/errors.js";
import type { Sandbox, SandboxLimits, SandboxResult, Tier } from "../../sandbox/api.js";
import { ContainerSandbox } from "../../sandbox/container-sandbox.js";
import type { UidPool } from "../../sandbox/uid-pool.js";
import { checkProcessPaths } from "./paths.js";
import type { DeployState } from "./state.js";
import { runtimeLabels } from "./sweep.js";

/** What a process runs: as RunProcess carries it. */
export interface RuntimeProcessSpec {
  bin: string;
  args: string[];
  workDir: string;
}

/**
 * The sandbox of a runtime instance: its containers carry the instance's labels (see sweep.ts).
 *
 * @example
 * const sandbox = await runtimeSandbox("container", { instance: instance.id, docker, systemTmp: instance.systemTmp });
 */
export async function runtimeSandbox(
  tier: Tier,
  options: { instance: string; docker: Docker; systemTmp: string; uids?: UidPool },
): Promise<Sandbox> {
  if (tier === "microvm") {
    const { MicroVmSandbox } = await import("../../sandbox/microvm-sandbox.js");
    // converted images are cached where the provider's are (the system's temp dir, shared by the instances);
    // each VM's private dir is made under the instance's temp dir (TMPDIR), where the sweep finds a gone
    // instance's QEMUs
    return new MicroVmSandbox({
      docker: options.docker,
      cacheDir: process.env.AIRQUBE_VM_CACHE ?? join(options.systemTmp, `airqube-vm-cache-${process.getuid?.() ?? 0}`),
      ...(options.uids ? { uids: options.uids } : {}),
    });
  }
  return new ContainerSandbox({
    docker: options.docker,
    tier,
    labels: runtimeLabels(options.instance),
    ...(options.uids ? { uids: options.uids } : {}),
  });
}

/**
 * The command the sandbox runs. RunProcess's `args` is the program's argv, `args[0]` its name (exe-unit sends
 * the entry point's basename there): the sandbox execs `bin` with `args[1..]` (its init names the program by its
 * path). Under `sh` to change directory when `workDir` is not the default (/scratch).
 */
export function sandboxCommand(spec: RuntimeProcessSpec): string[] {
  const argv = spec.args.slice(1);
  if (spec.workDir === "" || spec.workDir === "/scratch") return [spec.bin, ...argv];
  // the image's sh changes directory and execs the program (no shell parsing of the arguments)
  return ["/bin/sh", "-c", 'cd "$0" && exec "$@"', spec.workDir, spec.bin, ...argv];
}

/** Options of {@link runProcessInSandbox}. */
export interface SandboxRunOptions {
  sandbox: Sandbox;
  deploy: DeployState;
  workdir: string;
  /** Host directories no path may name (the work dir is always one). */
  hostRoots: readonly string[];
  limits: Partial<SandboxLimits>;
  signal?: AbortSignal;
}

/**
 * Runs one process to completion in a fresh sandbox and merges its /output into `W/vol-output`.
 *
 * @throws RuntimePathError before anything runs; the sandbox's errors (TimeoutError `ABORTED` on abort).
 * @example
 * const result = await runProcessInSandbox({ bin: "/bin/sh", args: ["-c", "date > /output/t"], workDir: "" }, options);
 */
export async function runProcessInSandbox(
  spec: RuntimeProcessSpec,
  options: SandboxRunOptions,
): Promise<SandboxResult> {
  const { workdir } = options;
  checkProcessPaths(spec, [workdir, ...options.hostRoots]);
  const inputDir = join(workdir, "vol-input");
  const outputDir = join(workdir, "vol-output");
  await mkdir(inputDir, { recursive: true });
  await mkdir(outputDir, { recursive: true });
  const staging = join(workdir, `.airqube-staging-${process.pid}-${randomBytes(6).toString("hex")}`);
  try {
    const result = await options.sandbox.run(
      {
        image: options.deploy.imageId,
        imageDigest: options.deploy.imageId,
        command: sandboxCommand(spec),
        inputDir,
        outputs: ["/output"],
        outputDir: staging,
        limits: options.limits,
      },
      options.signal ? { signal: options.signal } : {},
    );
    await mergeInto(join(staging, "output"), outputDir);
    return result;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Moves the unpacked outputs (regular files and directories only, the unpacker's guarantee) into the volume:
 * a later run's file replaces an earlier one's, as on a persistent volume; a file where a directory is (or the
 * other way round), or any link in the volume, is refused.
 */
async function mergeInto(from: string, to: string): Promise<void> {
  const entries = await readdir(from, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return [];
    throw error;
  });
  for (const entry of entries) {
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    const existing = await lstat(target).catch(() => undefined);
    if (existing?.isSymbolicLink() || (existing && existing.isDirectory() !== entry.isDirectory()))
      throw new UserError("RUNTIME_OUTPUT_CONFLICT", "An output collides with what vol-output already holds", {
        details: target,
      });
    if (entry.isDirectory()) {
      if (!existing) await rename(source, target);
      else await mergeInto(source, target);
    } else if (entry.isFile()) await rename(source, target);
    else throw new PlatformError("RUNTIME_OUTPUT_INVALID", "An unpacked output is neither file nor directory");
  }
}
