/**
 * Runs the escape suite against one sandbox tier: four qubes of the probe image in sequence (main: rows 1-36, 38-41, 43;
 * plant and check: row 37; deadline: row 35's wall-clock kill; on the gvisor tier two more, memory: rows 32-33 and
 * cpu: row 35's quota read from the host's cgroup), a loopback canary for row 30, and the report.
 *
 * Expectations (limits, the canary's port, the host's namespace ids and LSM) go to the probe in its
 * environment. They always describe the unweakened sandbox: a weakening changes what the sandbox enforces,
 * never what the probe expects.
 */
import { randomBytes } from "node:crypto";
import { readFile, readlink } from "node:fs/promises";
import { version as osVersion, release } from "node:os";
import Docker from "dockerode";
import { type AirqubeError, PlatformError, toAirqubeError, UserError } from "../qube/errors.js";
import {
  DEFAULT_SANDBOX_LIMITS,
  type QubeRun,
  type Sandbox,
  type SandboxLimits,
  type SandboxResult,
  type Tier,
} from "../sandbox/api.js";
import { type HardenedContainerConfig, hardenedContainerConfig } from "../sandbox/hardening.js";
import { ALLOWED_SYSCALLS } from "../sandbox/seccomp.js";
import type { UidPool, UidRange } from "../sandbox/uid-pool.js";
import { type Canary, openCanary } from "./canary.js";
import { PROBES, type ProbeInfo } from "./catalog.js";
import {
  OUTPUT_LIMITS,
  type ParsedOutput,
  type ProbeLine,
  type ProbePhase,
  parseProbeOutput,
  type Verdict,
} from "./protocol.js";
import { type ProbeReport, type ProbeResult, summarize } from "./report.js";
import { judgeRuntimeCves, type RuntimeVersions, runtimeVersionsFrom } from "./runtime-cves.js";
import { composeWeakenings, ineffectiveWeakenings } from "./weakenings.js";

/** The suite's name and version, as they appear in reports. */
export const SUITE = "airqube-escape-suite";
/** The suite's version; reports carry it with the probe image's digest (`1.0.0+sha256:…`). */
export const SUITE_VERSION = "1.0.0";

/** The image holding /airqube/probe (built by `npm run images`). */
export const PROBE_IMAGE = "airqube/probe:latest";

/** Where the probe program lives inside the image. */
export const PROBE_PATH = "/airqube/probe";

/** The limits every probe qube runs under; the probe is told the same numbers. */
export const SUITE_LIMITS = {
  cpus: 0.5,
  memoryBytes: 128 * 1024 * 1024,
  pids: 64,
  scratchBytes: 32 * 1024 * 1024,
  wallTimeMs: 60_000,
  logBytes: OUTPUT_LIMITS.maxBytes,
} as const satisfies Partial<SandboxLimits>;

/** The deadline of the qube that spins past it (row 35). */
export const DEADLINE_MS = 1500;
/** How late the sandbox may kill the spinning qube and still pass. */
export const DEADLINE_SLACK_MS = 1500;

/** Hooks a sandbox factory receives: the composed weakenings, absent when none. */
export interface SandboxHooks {
  /** Removes defences from the hardened container config (see `ContainerSandboxOptions.weaken`). */
  weaken?: (config: HardenedContainerConfig) => HardenedContainerConfig;
  /** Changes the limits after defaults (see `ContainerSandboxOptions.weakenLimits`). */
  weakenLimits?: (limits: SandboxLimits) => SandboxLimits;
}

/** Progress of a suite run (to observe, never for control flow). */
export interface ProbeProgress {
  phase: ProbePhase;
  state: "started" | "finished";
  durationMs?: number;
}

/** Options of {@link runProbeSuite}. */
export interface ProbeSuiteOptions {
  /** The tier to probe; default `"container"`. */
  tier?: Tier;
  /** Names of weakenings to apply (see `listWeakenings()`); container and gvisor tiers only. */
  weakenings?: readonly string[];
  /** The probe image; default {@link PROBE_IMAGE}. */
  image?: string;
  /** Builds the sandbox; defaults to `ContainerSandbox` (or `MicroVmSandbox`) with the hooks applied. */
  sandboxFactory?: (tier: Tier, hooks: SandboxHooks) => Sandbox | Promise<Sandbox>;
  /** The Docker client; default one for the local engine. */
  docker?: Docker;
  /** Aborts the run. */
  signal?: AbortSignal;
  /** Called when each phase starts and finishes. */
  onProgress?: (event: ProbeProgress) => void;
  /**
   * Whether the sandbox runs on this host's engine, so row 42 may check its versions (default true). A remote
   * suite sets false: the provider's engine is not visible, row 42 is skipped there and its own run checks it.
   */
  localEngine?: boolean;
  /**
   * The host uids the sandbox draws from (`ContainerSandbox`/`MicroVmSandbox` `uids`): the default sandbox gets
   * them; with a `sandboxFactory`, pass the range or pool its sandbox was given. Row 37 then fails when the check
   * qube runs as the plant qube's uid. Without it, tenants sharing a uid (all as nobody, the default) is evidence,
   * not a failure.
   */
  uids?: UidRange | UidPool;
}

interface PhaseOutcome {
  result?: SandboxResult;
  error?: AirqubeError;
  parsed: ParsedOutput;
}

async function defaultSandbox(
  tier: Tier,
  hooks: SandboxHooks,
  docker: Docker,
  uids: UidRange | UidPool | undefined,
): Promise<Sandbox> {
  if (tier === "container" || tier === "gvisor") {
    const { ContainerSandbox } = await import("../sandbox/container-sandbox.js");
    return new ContainerSandbox({ docker, tier, ...hooks, ...(uids ? { uids } : {}) });
  }
  const { MicroVmSandbox } = await import("../sandbox/microvm-sandbox.js");
  return new MicroVmSandbox({ docker, ...(uids ? { uids } : {}) });
}

async function withTimeout<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([promise.catch(() => fallback), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The tier's allowlist as the probe's row 43 reads it: every name the seccomp profile allows, `clone` and
 * `personality` as `:cond` (allowed for some arguments), `clone3` as `:enosys` (refused with ENOSYS). The same
 * policy on every tier: the container and gvisor tiers load this profile, the micro-VM's init a filter built
 * from it (scripts/vm-seccomp-header.ts).
 */
export function syscallAllowlist(): string {
  return [...ALLOWED_SYSCALLS, "clone:cond", "personality:cond", "clone3:enosys"].join(",");
}

/** The host's namespace ids, e.g. `pid:4026531836,net:4026531833,...` (empty when unreadable). */
async function hostNamespaces(): Promise<string> {
  const kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup"];
  const parts = await Promise.all(
    kinds.map(async (kind) => {
      const link = await readlink(`/proc/self/ns/${kind}`).catch(() => "");
      const inode = /\[(\d+)\]/.exec(link)?.[1];
      return inode ? `${kind}:${inode}` : "";
    }),
  );
  return parts.filter(Boolean).join(",");
}

async function hostInfo(
  tier: Tier,
  docker: Docker,
): Promise<{ host: ProbeReport["host"]; lsm: string; versions: RuntimeVersions }> {
  const [version, info] = await Promise.all([
    withTimeout(
      docker.version() as Promise<Parameters<typeof runtimeVersionsFrom>[0]>,
      5000,
      {} as Parameters<typeof runtimeVersionsFrom>[0],
    ),
    withTimeout(docker.info() as Promise<{ SecurityOptions?: string[] }>, 5000, {} as { SecurityOptions?: string[] }),
  ]);
  const options = info.SecurityOptions ?? [];
  const lsm = options.some((o) => o.includes("apparmor"))
    ? "apparmor"
    : options.some((o) => o.includes("selinux"))
      ? "selinux"
      : info.SecurityOptions
        ? "none"
        : "";
  return {
    host: {
      kernel: release(),
      runtime: tier === "container" ? "docker" : tier === "gvisor" ? "docker+runsc" : "qemu",
      runtimeVersion: tier === "container" ? (version.Version ?? "unknown") : `docker ${version.Version ?? "unknown"}`,
    },
    lsm,
    versions: runtimeVersionsFrom(version),
  };
}

/**
 * The writable mounts of the (possibly weakened) sandbox that the host or other containers share: binds without
 * `ro`, and any volume or mount option the hardening never sets. Read from the same hardening the sandbox uses.
 */
export function sharedWritableMounts(weaken?: (config: HardenedContainerConfig) => HardenedContainerConfig): string[] {
  const base = hardenedContainerConfig({ ...DEFAULT_SANDBOX_LIMITS, ...SUITE_LIMITS }, "row-42", {
    initBinary: "/usr/lib/airqube/airqube-init",
    inputDir: "/nonexistent/inputs",
  });
  const config = weaken ? weaken(structuredClone(base)) : base;
  const host = config.HostConfig as HardenedContainerConfig["HostConfig"] & Record<string, unknown>;
  const binds = host.Binds.filter((bind) => {
    const options = bind.split(":")[2] ?? "";
    return !options.split(",").includes("ro");
  });
  const others = ["Mounts", "VolumesFrom", "VolumeDriver"].filter((key) => {
    const value = host[key];
    return Array.isArray(value) ? value.length > 0 : Boolean(value);
  });
  return [...binds, ...others];
}

function describeRun(outcome: PhaseOutcome): string {
  if (outcome.error) return `the sandbox failed: ${outcome.error.code}: ${outcome.error.message}`;
  const r = outcome.result;
  if (!r) return "the phase did not run";
  const notes = [
    `exit ${r.exitCode}`,
    r.timedOut ? "timed out" : "",
    r.oomKilled ? "OOM-killed" : "",
    outcome.parsed.rejected ? `${outcome.parsed.rejected} invalid lines dropped` : "",
    outcome.parsed.truncated ? "output truncated" : "",
    r.stderr ? `stderr: ${r.stderr.slice(0, 200)}` : "",
  ];
  return notes.filter(Boolean).join(", ");
}

function lineFor(outcome: PhaseOutcome, id: number): { line?: ProbeLine; problem?: string } {
  if (outcome.parsed.duplicates.has(id)) return { problem: "the probe printed several verdicts for this row" };
  const line = outcome.parsed.lines.get(id);
  if (!line) return { problem: `no verdict (${describeRun(outcome)})` };
  return { line };
}

function result(info: ProbeInfo, verdict: Verdict, evidence: string, durationMs: number): ProbeResult {
  return { ...info, cves: [...info.cves], verdict, evidence, durationMs: Math.max(0, Math.round(durationMs)) };
}

/** fail beats inconclusive beats pass; skipped only when both parts are skipped. */
function combine(a: Verdict, b: Verdict): Verdict {
  if (a === "fail" || b === "fail") return "fail";
  if (a === "inconclusive" || b === "inconclusive") return "inconclusive";
  if (a === "skipped" && b === "skipped") return "skipped";
  return "pass";
}

/**
 * Runs the escape suite and returns its report. Probe failures are verdicts in the report, not errors.
 *
 * @throws UserError `WEAKENING_UNSUPPORTED` (weakenings on the micro-VM tier) or `WEAKENING_UNKNOWN`.
 *
 * @example
 * const report = await runProbeSuite({ tier: "container" });
 * process.exitCode = exitStatus(report);
 */
export async function runProbeSuite(options: ProbeSuiteOptions = {}): Promise<ProbeReport> {
  const tier = options.tier ?? "container";
  const signal = options.signal;
  signal?.throwIfAborted();
  const composed = composeWeakenings(options.weakenings ?? []);
  // The gvisor tier is the container tier's config under runsc: the same weakenings apply (each must still show).
  if (tier === "microvm" && composed.names.length > 0)
    throw new UserError("WEAKENING_UNSUPPORTED", "Weakenings apply to the container and gvisor tiers only", {
      details: composed.names.join(", "),
    });
  const docker = options.docker ?? new Docker();
  const hooks: SandboxHooks = {
    ...(composed.weaken ? { weaken: composed.weaken } : {}),
    ...(composed.weakenLimits ? { weakenLimits: composed.weakenLimits } : {}),
  };
  const image = options.image ?? PROBE_IMAGE;
  const startedAt = new Date().toISOString();
  const [{ host, lsm, versions }, namespaces, bootId] = await Promise.all([
    hostInfo(tier, docker),
    tier === "microvm" ? Promise.resolve("") : hostNamespaces(),
    readFile("/proc/sys/kernel/random/boot_id", "utf8").then(
      (s) => s.trim(),
      () => "",
    ),
  ]);
  const sandbox = options.sandboxFactory
    ? await options.sandboxFactory(tier, hooks)
    : await defaultSandbox(tier, hooks, docker, options.uids);
  let canary: Canary | undefined;
  try {
    canary = await openCanary(signal ? { signal } : {});
    const nonce = randomBytes(8).toString("hex");
    const env = (deadlineMs: number): Record<string, string> => ({
      AIRQUBE_PROBE_TIER: tier,
      AIRQUBE_PROBE_PIDS: String(SUITE_LIMITS.pids),
      AIRQUBE_PROBE_MEMORY: String(SUITE_LIMITS.memoryBytes),
      AIRQUBE_PROBE_SCRATCH: String(SUITE_LIMITS.scratchBytes),
      AIRQUBE_PROBE_CPUS: String(SUITE_LIMITS.cpus),
      AIRQUBE_PROBE_DEADLINE_MS: String(deadlineMs),
      AIRQUBE_PROBE_CANARY_PORT: String(canary?.port ?? 0),
      AIRQUBE_PROBE_HOST_NS: namespaces,
      // In a VM the qube faces the guest kernel, which the tier boots with no major LSM: the host's LSM
      // confines QEMU, not the qube. A guest that shows a label (e.g. AppArmor's "unconfined") still fails row 21.
      // The same holds under gVisor: the qube faces the Sentry, and the host's LSM confines runsc.
      AIRQUBE_PROBE_LSM: tier === "container" ? lsm : "none",
      AIRQUBE_PROBE_NONCE: nonce,
      AIRQUBE_PROBE_HOST_KERNEL: `${release()} ${osVersion()}`,
      AIRQUBE_PROBE_HOST_BOOT_ID: bootId,
      AIRQUBE_PROBE_SYSCALLS: syscallAllowlist(),
    });
    const runPhase = async (
      phase: ProbePhase,
      wallTimeMs: number,
      extraEnv: Record<string, string> = {},
    ): Promise<PhaseOutcome> => {
      options.onProgress?.({ phase, state: "started" });
      const qube: QubeRun = {
        image,
        command: [PROBE_PATH, "--phase", phase],
        env: { ...env(phase === "deadline" ? wallTimeMs : SUITE_LIMITS.wallTimeMs), ...extraEnv },
        limits: { ...SUITE_LIMITS, wallTimeMs },
      };
      const started = performance.now();
      let outcome: PhaseOutcome;
      try {
        const runResult = await sandbox.run(qube, signal ? { signal } : {});
        outcome = { result: runResult, parsed: parseProbeOutput(runResult.stdout, phase) };
      } catch (error) {
        if (signal?.aborted) throw error;
        outcome = {
          error: toAirqubeError(error),
          parsed: { lines: new Map(), duplicates: new Set(), rejected: 0, truncated: false },
        };
      }
      options.onProgress?.({ phase, state: "finished", durationMs: Math.round(performance.now() - started) });
      return outcome;
    };

    const connectionsBefore = canary.connections;
    const main = await runPhase("main", SUITE_LIMITS.wallTimeMs);
    const canaryHits = canary.connections - connectionsBefore;
    const plant = await runPhase("plant", 20_000);
    // the check qube is told the plant qube's uid: none of its processes or files may be in reach
    const plantUid = residueIdentity(plant)?.uid;
    const check = await runPhase("check", 20_000, plantUid === undefined ? {} : { AIRQUBE_PROBE_PEER_UID: plantUid });
    const deadline = await runPhase("deadline", DEADLINE_MS);
    // gVisor's Sentry holds every task's memory and counts CPU time itself: the fork and memory bombs get a sandbox
    // of their own (the host's OOM killer ends the whole sandbox), and the CPU quota is judged from the host's cgroup.
    const gvisor =
      tier === "gvisor"
        ? { memory: await runPhase("memory", 30_000), cpu: await runPhase("cpu", 30_000), plant, check }
        : undefined;

    if (composed.names.length > 0) checkWeakeningsTookEffect(composed.names, main, deadline, namespaces);

    const probes = PROBES.map((info): ProbeResult => {
      if (info.id === 42) return runtimeCveRow(info, tier, versions, options.localEngine ?? true, composed.weaken);
      if (info.id === 35) return deadlineRow(info, main, deadline, gvisor);
      if (info.id === 33 && gvisor) return sandboxMemoryRow(info, gvisor.memory);
      if (info.id === 32 && gvisor) {
        const { line, problem } = lineFor(gvisor.memory, 32);
        return line
          ? result(info, line.verdict, line.evidence, line.ms ?? 0)
          : result(info, "inconclusive", problem ?? "no verdict", 0);
      }
      if (info.id === 37) return residueRow(info, plant, check, { tier, uidPool: options.uids !== undefined });
      const { line, problem } = lineFor(main, info.id);
      if (!line) return result(info, "inconclusive", problem ?? "no verdict", 0);
      if (info.id === 30) return canaryRow(info, line, canaryHits, canary?.token ?? "");
      return result(info, line.verdict, line.evidence, line.ms ?? 0);
    });
    const digest = main.result?.imageDigest ?? "unknown";
    return {
      suite: composed.names.length ? `${SUITE} (weakened: ${composed.names.join(", ")})` : SUITE,
      suiteVersion: `${SUITE_VERSION}+${digest}`,
      tier,
      host,
      startedAt,
      probes,
      summary: summarize(probes),
    };
  } finally {
    await canary?.close();
    await sandbox.close().catch(() => undefined);
  }
}

/**
 * Fails a weakened run whose weakenings did not all change the sandbox (a silent no-op, or a sandbox that never
 * started): such a run proves nothing about the probes. Reads the probe's facts line and the deadline phase.
 */
function checkWeakeningsTookEffect(
  names: readonly string[],
  main: PhaseOutcome,
  deadline: PhaseOutcome,
  namespaces: string,
): void {
  const hostNamespaces = new Map(
    namespaces
      .split(",")
      .filter(Boolean)
      .map((pair) => pair.split(":") as [string, string]),
  );
  const spun = deadline.parsed.lines.get(35);
  const deadlineKilled =
    spun?.verdict === "fail" ? false : deadline.result?.timedOut === true ? true : deadline.result ? false : undefined;
  const missing = ineffectiveWeakenings(names, {
    facts: main.parsed.facts ?? new Map(),
    hostNamespaces,
    limits: SUITE_LIMITS,
    deadlineKilled,
  });
  if (missing.length === 0) return;
  throw new PlatformError("WEAKENING_INEFFECTIVE", "A weakening did not change the sandbox: the run proves nothing", {
    details: `${missing.map((m) => `${m.name} (looked for: ${m.shows})`).join("; ")}${
      main.parsed.facts ? "" : `; the probe printed no facts (${describeRun(main)})`
    }`,
  });
}

function runtimeCveRow(
  info: ProbeInfo,
  tier: Tier,
  versions: RuntimeVersions,
  localEngine: boolean,
  weaken?: (config: HardenedContainerConfig) => HardenedContainerConfig,
): ProbeResult {
  if (!localEngine)
    return result(
      info,
      "skipped",
      `tier ${tier} on a remote provider: its engine's versions are not visible here (its own suite run checks them)`,
      0,
    );
  const shared = sharedWritableMounts(weaken);
  const { verdict, evidence } = judgeRuntimeCves(versions, tier, {
    sharedWritableMount: shared.length > 0,
    sharedMounts: shared,
  });
  return result(info, verdict, `harness: ${evidence}`, 0);
}

function canaryRow(info: ProbeInfo, line: ProbeLine, hits: number, token: string): ProbeResult {
  if (hits === 0) return result(info, line.verdict, line.evidence, line.ms ?? 0);
  const confirmed = token !== "" && line.evidence.includes(token);
  const harness = `harness: the loopback canary accepted ${hits} connection(s) from the sandbox${confirmed ? ", token read back" : ""}`;
  return result(info, "fail", `${line.evidence}; ${harness}`, line.ms ?? 0);
}

/** How far the sandbox's CPU use may exceed the declared CPUs (the probe's own allowance in row 35). */
const cpuAllowance = (cpus: number) => cpus * 1.3 + 0.05;

/**
 * Row 35's CPU part from the host (gvisor tier): the cpu phase spins every CPU for a while; its CPU time in the
 * host's cgroup (the Sentry's included), less that of the idle plant or check phase (start-up and teardown; the
 * lesser), over the spin's duration, must stay within the quota. The Sentry's own accounting cannot tell: a
 * throttled host thread still counts as running for it.
 */
export function hostCpuVerdict(
  cpu: { spinMs: number | undefined; cpuMs: number | undefined },
  idleCpuMs: readonly (number | undefined)[],
  cpus: number,
): { verdict: Verdict; evidence: string } {
  const idle = idleCpuMs.filter((ms): ms is number => ms !== undefined);
  if (cpu.spinMs === undefined || cpu.spinMs < 500 || cpu.cpuMs === undefined || idle.length === 0)
    return { verdict: "inconclusive", evidence: "the cpu phase gave no spin or no host CPU time to judge" };
  const used = Math.max(0, cpu.cpuMs - Math.min(...idle)) / cpu.spinMs;
  const evidence = `host cgroup: ${used.toFixed(2)} CPUs over a ${Math.round(cpu.spinMs)} ms spin (declared ${cpus.toFixed(2)}; ${cpu.cpuMs} ms in the phase, ${Math.min(...idle)} ms in an idle one)`;
  return used > cpuAllowance(cpus)
    ? { verdict: "fail", evidence: `not throttled: ${evidence}` }
    : { verdict: "pass", evidence };
}

/**
 * Row 33 on the gvisor tier: the probe's own verdict when it printed one; otherwise a sandbox the host's OOM
 * killer ended with its cgroup's peak at the limit passes (the memory is the Sentry's, so the whole sandbox goes).
 */
function sandboxMemoryRow(info: ProbeInfo, memory: PhaseOutcome): ProbeResult {
  const { line, problem } = lineFor(memory, 33);
  if (line) return result(info, line.verdict, line.evidence, line.ms ?? 0);
  const r = memory.result;
  const peak = r?.usage?.maxMemoryBytes;
  const limit = SUITE_LIMITS.memoryBytes;
  const mib = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`;
  if (r?.oomKilled && peak !== undefined && peak > 0) {
    const evidence = `the host's OOM killer ended the whole sandbox (the Sentry holds the bomb's memory) at a cgroup peak of ${mib(peak)}, limit ${mib(limit)}`;
    return result(info, peak <= limit + limit / 8 ? "pass" : "fail", evidence, r.durationMs);
  }
  return result(info, "inconclusive", problem ?? "no verdict", r?.durationMs ?? 0);
}

function deadlineRow(
  info: ProbeInfo,
  main: PhaseOutcome,
  deadline: PhaseOutcome,
  gvisor?: { cpu: PhaseOutcome; plant: PhaseOutcome; check: PhaseOutcome },
): ProbeResult {
  const cpu = lineFor(main, 35);
  let cpuVerdict: Verdict = cpu.line?.verdict ?? "inconclusive";
  let cpuEvidence = cpu.line?.evidence ?? cpu.problem ?? "no verdict";
  if (gvisor) {
    const spin = lineFor(gvisor.cpu, 35);
    const host = hostCpuVerdict(
      { spinMs: spin.line?.verdict === "pass" ? spin.line.ms : undefined, cpuMs: gvisor.cpu.result?.usage?.cpuMs },
      [gvisor.plant.result?.usage?.cpuMs, gvisor.check.result?.usage?.cpuMs],
      SUITE_LIMITS.cpus,
    );
    cpuVerdict = combine(cpuVerdict, host.verdict);
    cpuEvidence = `${cpuEvidence}; ${spin.line?.evidence ?? spin.problem ?? "no spin"}; ${host.evidence}`;
  }
  let wallVerdict: Verdict;
  let wallEvidence: string;
  const spun = deadline.parsed.lines.get(35);
  const r = deadline.result;
  if (spun?.verdict === "fail") {
    wallVerdict = "fail";
    wallEvidence = spun.evidence;
  } else if (r?.timedOut && r.durationMs <= DEADLINE_MS + DEADLINE_SLACK_MS) {
    wallVerdict = "pass";
    wallEvidence = `killed at the ${DEADLINE_MS} ms deadline`;
  } else if (r?.timedOut) {
    wallVerdict = "fail";
    wallEvidence = `killed only after ${r.durationMs} ms, deadline ${DEADLINE_MS} ms`;
  } else {
    wallVerdict = "inconclusive";
    wallEvidence = `the spinning qube was not killed and did not report (${describeRun(deadline)})`;
  }
  return result(
    info,
    combine(cpuVerdict, wallVerdict),
    `cpu: ${cpuEvidence}; deadline: ${wallEvidence}`,
    (cpu.line?.ms ?? 0) + (r?.durationMs ?? 0),
  );
}

/** The identity line row 37's phases print first: `uid N, euid N, /scratch owned by N` (numbers as strings). */
function residueIdentity(outcome: PhaseOutcome): { uid: string; euid: string; scratchOwner: string } | undefined {
  const match = /^uid (\d{1,10}), euid (\d{1,10}), \/scratch owned by (\d{1,10}|\?)/.exec(
    outcome.parsed.lines.get(37)?.evidence ?? "",
  );
  if (!match || Number(match[1]) > 4_294_967_294) return undefined;
  return { uid: match[1]!, euid: match[2]!, scratchOwner: match[3]! };
}

/**
 * Row 37's host-uid part: the check qube (the next tenant) must run as another uid than the plant qube when the
 * sandbox draws uids from a pool; without a pool every qube runs as nobody, which the evidence says. On the
 * micro-VM tier the probe sees the guest's uid, not QEMU's host uid: reported, not judged.
 */
function residueUidVerdict(
  plant: PhaseOutcome,
  check: PhaseOutcome,
  context: { tier: Tier; uidPool: boolean },
): { verdict: Verdict; evidence: string } {
  const first = residueIdentity(plant);
  const second = residueIdentity(check);
  if (!first || !second)
    return context.uidPool && context.tier !== "microvm"
      ? { verdict: "inconclusive", evidence: "uids: a phase did not report its uid, so distinct tenants are unproven" }
      : { verdict: "pass", evidence: "uids: not reported" };
  const seen = `plant ran as uid ${first.uid} (euid ${first.euid}, /scratch of ${first.scratchOwner}), check as uid ${second.uid} (euid ${second.euid}, /scratch of ${second.scratchOwner})`;
  if (context.tier === "microvm")
    return { verdict: "pass", evidence: `uids: guest uids (QEMU's host uid is not visible from inside): ${seen}` };
  const shared = first.uid === second.uid || first.euid === second.euid || first.uid === second.euid;
  if (!shared) return { verdict: "pass", evidence: `uids: distinct tenants: ${seen}` };
  if (context.uidPool)
    return {
      verdict: "fail",
      evidence: `uids: consecutive tenants share a host uid although a uid pool is configured: ${seen}`,
    };
  return { verdict: "pass", evidence: `uids: tenants share a host uid (no uid pool configured, the default): ${seen}` };
}

function residueRow(
  info: ProbeInfo,
  plant: PhaseOutcome,
  check: PhaseOutcome,
  context: { tier: Tier; uidPool: boolean } = { tier: "container", uidPool: false },
): ProbeResult {
  const planted = lineFor(plant, 37);
  const found = lineFor(check, 37);
  const duration = (planted.line?.ms ?? 0) + (found.line?.ms ?? 0);
  const uids = residueUidVerdict(plant, check, context);
  if (planted.line?.verdict !== "pass") {
    const why = planted.line?.evidence ?? planted.problem ?? "no verdict";
    // A leftover found by the check (or a shared uid under a pool) still fails the row even when planting was incomplete.
    if (found.line?.verdict === "fail" || uids.verdict === "fail")
      return result(
        info,
        "fail",
        `plant: ${why}; check: ${found.line?.evidence ?? found.problem}; ${uids.evidence}`,
        duration,
      );
    return result(info, "inconclusive", `the first qube could not plant its markers: ${why}`, duration);
  }
  if (!found.line)
    return result(info, "inconclusive", `plant: ${planted.line.evidence}; check: ${found.problem}`, duration);
  return result(
    info,
    combine(found.line.verdict, uids.verdict),
    `plant: ${planted.line.evidence}; check: ${found.line.evidence}; ${uids.evidence}`,
    duration,
  );
}
