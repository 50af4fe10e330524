/**
 * The runtime's commands as exe-unit calls them: `offer-template`, `test`, `deploy`, `start` and `run`. Each
 * returns its exit status; stdout carries only what exe-unit reads (JSON, or the protocol in `start`).
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, posix, resolve } from "node:path";
import type Docker from "dockerode";
import type { Logger } from "pino";
import type { ProbeReport } from "../../probes/index.js";
import { AirqubeError, PlatformError, UserError } from "../../qube/errors.js";
import { printable } from "../../qube/printable.js";
import type { SignedProbeSummary } from "./offer.js";
import { checkProcessPaths } from "./paths.js";
import { runProcessInSandbox, runtimeSandbox } from "./sandbox-run.js";
import { serveRuntime } from "./service.js";
import {
  loadRuntimeConfig,
  processLimits,
  RUNTIME_VERSION,
  type RuntimeConfig,
  type RuntimeFlags,
  readDeployState,
  runtimeHome,
} from "./state.js";
import { registerInstance, sweepRuntime } from "./sweep.js";
import { leaseUidBlock, type UidLease } from "./uid-lease.js";

/** What every command gets. */
export interface CommandContext {
  flags: RuntimeFlags;
  env: Record<string, string | undefined>;
  logger: Logger;
  docker?: Docker;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** The Docker client: the context's, or one for the local engine (dockerode is loaded only by commands that need it). */
async function dockerOf(context: CommandContext): Promise<Docker> {
  return context.docker ?? new (await import("dockerode")).default();
}

/** Anything else a command meets (Docker unreachable, a file system error) is the platform's fault. */
function typed(error: unknown): AirqubeError {
  if (error instanceof AirqubeError) return error;
  return new PlatformError("RUNTIME_PLATFORM_FAILED", "The runtime's platform failed (Docker or the file system)", {
    details: String((error as Error)?.message ?? error).slice(0, 500),
    cause: error,
  });
}

function fail(context: CommandContext, error: unknown): number {
  const e = typed(error);
  context.stderr.write(`ya-runtime-airqube: ${printable(e.message, 2000)} [${printable(e.code, 64)}]\n`);
  return 1;
}

function workdirOf(flags: RuntimeFlags): string {
  if (!flags.workdir) throw new UserError("RUNTIME_WORKDIR_MISSING", "This command needs --workdir");
  return resolve(flags.workdir);
}

/** The signed summary `test` stored (`probe-summary.json` in the runtime's home), if any. */
async function readStoredSummary(home: string): Promise<SignedProbeSummary | undefined> {
  const text = await readFile(join(home, "probe-summary.json"), "utf8").catch(() => undefined);
  if (!text || text.length > 16_384) return undefined;
  const { signedProbeSummarySchema } = await import("./offer.js");
  try {
    const parsed = signedProbeSummarySchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The offer's properties: offer.ts's (name, version, tier, accepted images, the signed summary `test` stored)
 * and `golem.runtime.capabilities` (none). Without a passing summary of the configured tier there is no offer.
 *
 * @throws UserError `RUNTIME_NOT_TESTED`, `RUNTIME_OFFER_INVALID`
 */
export async function offerProperties(config: RuntimeConfig, home: string): Promise<Record<string, unknown>> {
  const { runtimeOfferProperties } = await import("./offer.js");
  const summary = await readStoredSummary(home);
  if (summary?.tier !== config.tier)
    throw new UserError("RUNTIME_NOT_TESTED", "The escape suite has not passed on this runtime's tier yet", {
      details: `run \`ya-runtime-airqube test\` (tier ${config.tier})`,
    });
  return {
    ...runtimeOfferProperties({ tiers: [config.tier], images: config.images, summary, version: RUNTIME_VERSION }),
    "golem.runtime.capabilities": [],
  };
}

/** `offer-template`: `{ constraints, properties }` on stdout. */
export async function offerTemplateCommand(context: CommandContext): Promise<number> {
  try {
    const home = runtimeHome(context.env);
    const config = await loadRuntimeConfig(home, context.env);
    context.stdout.write(`${JSON.stringify({ constraints: "", properties: await offerProperties(config, home) })}\n`);
    return 0;
  } catch (error) {
    return fail(context, error);
  }
}

/**
 * `test`: the escape suite in a fresh sandbox of the configured tier (the sandbox every process gets); the
 * report and its summary are stored in the runtime's home. Exit 1 unless 0 fail and 0 inconclusive.
 */
export async function testCommand(context: CommandContext): Promise<number> {
  const home = runtimeHome(context.env);
  let instance: Awaited<ReturnType<typeof registerInstance>> | undefined;
  let lease: UidLease | undefined;
  try {
    const config = await loadRuntimeConfig(home, context.env);
    const docker = await dockerOf(context);
    const { escapeSuiteGate } = await import("../../provider/probe-gate.js");
    await sweepRuntime(home, docker);
    instance = await registerInstance(home);
    lease = config.uids ? await leaseUidBlock(home, config.uids, instance.id) : undefined;
    const uids = lease?.pool;
    const sandbox = await runtimeSandbox(config.tier, {
      instance: instance.id,
      docker,
      systemTmp: instance.systemTmp,
      ...(uids ? { uids } : {}),
    });
    let report: ProbeReport | undefined;
    const gate = escapeSuiteGate({
      docker,
      ...(config.probeCache ? { cacheDir: config.probeCache } : {}),
      onReport: (r) => {
        report = r;
      },
    });
    const result = await gate(config.tier, sandbox, uids ? { uids } : {}).finally(() => sandbox.close());
    if (!report) throw new UserError("RUNTIME_TEST_NO_REPORT", "The escape suite gave no report");
    await mkdir(home, { recursive: true });
    await atomicWrite(join(home, "probe-report.json"), JSON.stringify(report));
    const summary = { ...result, tier: config.tier };
    context.stdout.write(`${JSON.stringify(summary)}\n`);
    if (summary.fail > 0 || summary.inconclusive > 0) {
      await rm(join(home, "probe-summary.json"), { force: true });
      const failed = report.probes
        .filter((p) => p.verdict === "fail" || p.verdict === "inconclusive")
        .map((p) => `${p.id} ${p.verdict}`);
      context.stderr.write(
        `ya-runtime-airqube: the escape suite did not pass on ${config.tier}: ${summary.fail} fail, ${summary.inconclusive} inconclusive${failed.length ? ` (${failed.join(", ")})` : ""}\n`,
      );
      return 1;
    }
    // only a passing run is signed and offered (a failed one removes an earlier summary: no stale offer)
    const { signProbeSummary } = await import("./offer.js");
    const { loadOrCreateIdentity } = await import("../../net/keys.js");
    const signed = signProbeSummary(report, loadOrCreateIdentity(home), new Date());
    await atomicWrite(join(home, "probe-summary.json"), JSON.stringify(signed));
    return 0;
  } catch (error) {
    return fail(context, error);
  } finally {
    await lease?.release();
    await instance?.release();
  }
}

async function atomicWrite(file: string, text: string): Promise<void> {
  await writeFile(`${file}.${process.pid}.tmp`, text);
  await rename(`${file}.${process.pid}.tmp`, file);
}

/** `deploy`: the DeployResult JSON on stdout; exit 1 (with `valid.Err`) when the task package is refused. */
export async function deployCommand(context: CommandContext): Promise<number> {
  const { deployResult, deployTaskPackage } = await import("./deploy.js");
  try {
    const workdir = workdirOf(context.flags);
    const config = await loadRuntimeConfig(runtimeHome(context.env), context.env);
    const state = await deployTaskPackage({
      workdir,
      taskPackage: context.flags.taskPackage,
      config,
      docker: await dockerOf(context),
    });
    context.logger.info({ imageId: state.imageId }, "deployed");
    context.stdout.write(`${JSON.stringify(deployResult())}\n`);
    return 0;
  } catch (error) {
    const e = typed(error);
    context.stdout.write(`${JSON.stringify(deployResult(`${e.code}: ${e.message}`.slice(0, 2000)))}\n`);
    return fail(context, e);
  }
}

/** Prepares a command that runs processes: config, deploy state, sweep, instance, sandbox. */
async function prepareRuns(context: CommandContext) {
  const workdir = workdirOf(context.flags);
  const home = runtimeHome(context.env);
  const config = await loadRuntimeConfig(home, context.env);
  const deploy = await readDeployState(workdir);
  const limits = processLimits(context.flags, config);
  const docker = await dockerOf(context);
  const swept = await sweepRuntime(home, docker);
  if (swept.instances || swept.containers) context.logger.warn(swept, "swept what earlier runtimes left behind");
  const instance = await registerInstance(home, workdir);
  try {
    const lease = config.uids ? await leaseUidBlock(home, config.uids, instance.id) : undefined;
    const sandbox = await runtimeSandbox(deploy.tier, {
      instance: instance.id,
      docker,
      systemTmp: instance.systemTmp,
      ...(lease ? { uids: lease.pool } : {}),
    });
    const hostRoots = [workdir, home];
    /** Closes the sandbox, gives the uid block back once its sweeps ended, removes the instance's record. */
    const close = async () => {
      await sandbox.close().catch(() => undefined);
      await lease?.release();
      await instance.release();
    };
    return { workdir, home, deploy, limits, sandbox, hostRoots, close };
  } catch (error) {
    await instance.release();
    throw error;
  }
}

/** `start`: service mode over stdin/stdout until Shutdown, the end of stdin, or a bad frame. */
export async function startCommand(
  context: CommandContext & { stdin: NodeJS.ReadableStream; signal?: AbortSignal },
): Promise<number> {
  let prepared: Awaited<ReturnType<typeof prepareRuns>> | undefined;
  try {
    prepared = await prepareRuns(context);
    const { deploy, limits, sandbox, workdir, hostRoots } = prepared;
    const stdin = context.stdin as NodeJS.ReadableStream & { destroy?: () => void };
    context.signal?.addEventListener("abort", () => stdin.destroy?.(), { once: true });
    return await serveRuntime({
      input: context.stdin,
      output: context.stdout,
      check: (spec) => checkProcessPaths(spec, hostRoots),
      run: (spec, signal) =>
        runProcessInSandbox(spec, {
          sandbox,
          deploy,
          workdir,
          hostRoots,
          limits,
          signal: context.signal ? AbortSignal.any([signal, context.signal]) : signal,
        }),
      version: RUNTIME_VERSION,
      logger: context.logger,
    });
  } catch (error) {
    return fail(context, error);
  } finally {
    await prepared?.close();
  }
}

/** `run --entrypoint E -- args` (command mode): one process; its stdout and stderr, and its exit code. */
export async function runCommand(
  context: CommandContext & { entrypoint: string; args: string[]; signal?: AbortSignal },
): Promise<number> {
  let prepared: Awaited<ReturnType<typeof prepareRuns>> | undefined;
  try {
    prepared = await prepareRuns(context);
    const { deploy, limits, sandbox, workdir, hostRoots } = prepared;
    const result = await runProcessInSandbox(
      { bin: context.entrypoint, args: [posix.basename(context.entrypoint), ...context.args], workDir: "" },
      { sandbox, deploy, workdir, hostRoots, limits, ...(context.signal ? { signal: context.signal } : {}) },
    );
    context.stdout.write(result.stdout);
    context.stderr.write(result.stderr);
    return result.exitCode >= 0 && result.exitCode < 256 ? result.exitCode : 1;
  } catch (error) {
    return fail(context, error);
  } finally {
    await prepared?.close();
  }
}
