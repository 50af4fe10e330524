/**
 * Every hardening flag of the container tier, as data. `hardenedContainerConfig` is pure: the same limits
 * give the same Docker create options, and `test/sandbox/hardening.test.ts` pins them. Weakenings (used only
 * by the escape suite to prove each probe can fail) are applied on top of this object, never inside it.
 */
import type { SandboxLimits } from "./api.js";
import { seccompProfile } from "./seccomp.js";

/** The label every Airqube container carries, so that a restarted agent can sweep leftovers. */
export const SANDBOX_LABEL = "io.airqube.sandbox";

/** The unprivileged identity qubes run as (nobody:nogroup). */
export const SANDBOX_USER = "65534:65534";

/** Where the static Airqube init is mounted inside every container. */
export const INIT_PATH = "/.airqube-init";

/** The writable scratch mounts: everything else is read-only. */
export const SCRATCH_PATHS = ["/scratch", "/output", "/tmp"] as const;

/** Docker's default masked paths (kept explicit so a test pins them and a weakening can clear them). */
export const MASKED_PATHS: readonly string[] = [
  "/proc/asound",
  "/proc/acpi",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
];

/** Docker's default read-only /proc paths. */
export const READONLY_PATHS: readonly string[] = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
];

/** The subset of dockerode's HostConfig Airqube sets. */
export interface HardenedHostConfig {
  NetworkMode: string;
  ReadonlyRootfs: boolean;
  CapDrop: string[];
  CapAdd: string[];
  SecurityOpt: string[];
  Privileged: boolean;
  PidsLimit: number;
  Memory: number;
  MemorySwap: number;
  MemorySwappiness?: number;
  OomKillDisable: boolean;
  NanoCpus: number;
  Ulimits: { Name: string; Soft: number; Hard: number }[];
  Tmpfs: Record<string, string>;
  MaskedPaths: string[];
  ReadonlyPaths: string[];
  IpcMode: string;
  PidMode: string;
  UTSMode: string;
  UsernsMode: string;
  CgroupnsMode: "private" | "host";
  Init: boolean;
  AutoRemove: boolean;
  Binds: string[];
  Devices: unknown[];
  LogConfig: { Type: string; Config: Record<string, string> };
  /** The OCI runtime (absent: the engine's default, runc); `runsc` for the gvisor tier. */
  Runtime?: string;
}

/** Options for `docker.createContainer`, minus image, command and environment. */
export interface HardenedContainerConfig {
  User: string;
  WorkingDir: string;
  NetworkDisabled: boolean;
  AttachStdin: boolean;
  OpenStdin: boolean;
  /** Set only on warm containers: stdin closes after the host's one attach. */
  StdinOnce?: boolean;
  Tty: boolean;
  Labels: Record<string, string>;
  StopTimeout: number;
  HostConfig: HardenedHostConfig;
  /** Environment added beside the qube's own: never set by the hardening (the escape suite's `env:secret` does). */
  Env?: string[];
}

/**
 * Returns the Docker create options that confine one qube, as nobody or as `identity.uid` (a uid of its own).
 *
 * @example
 * const config = hardenedContainerConfig(DEFAULT_LIMITS, "job-1", { initBinary: "/usr/lib/airqube/airqube-init" });
 * await docker.createContainer({ Image: digest, Cmd: ["true"], ...config });
 */
export function hardenedContainerConfig(
  limits: SandboxLimits,
  runId: string,
  mounts: { initBinary: string; inputDir?: string },
  identity: { uid?: number } = {},
): HardenedContainerConfig {
  // nobody:nogroup, or the sandbox's own uid from the provider's range (UidPool): the same number as gid
  const uid = identity.uid ?? 65534;
  const scratchMount = `rw,noexec,nosuid,nodev,size=${limits.scratchBytes},mode=1777,uid=${uid},gid=${uid}`;
  return {
    User: identity.uid === undefined ? SANDBOX_USER : `${uid}:${uid}`, // never root inside: an escape lands unprivileged
    WorkingDir: "/scratch",
    NetworkDisabled: true, // no network stack configured at all
    AttachStdin: false,
    OpenStdin: false,
    Tty: false,
    Labels: { [SANDBOX_LABEL]: "1", [`${SANDBOX_LABEL}.run`]: runId },
    StopTimeout: 1,
    HostConfig: {
      NetworkMode: "none", // loopback only: no bridge, no host network
      ReadonlyRootfs: true, // the image cannot be modified; only the tmpfs mounts below are writable
      CapDrop: ["ALL"], // no capabilities (Docker keeps 14 by default, NET_RAW among them)
      CapAdd: [],
      SecurityOpt: [
        "no-new-privileges:true", // setuid binaries and file caps cannot raise privileges
        `seccomp=${JSON.stringify(seccompProfile())}`, // Docker's default plus io_uring and friends
      ],
      Privileged: false,
      PidsLimit: limits.pids, // fork bombs stop here
      Memory: limits.memoryBytes,
      MemorySwap: limits.memoryBytes, // equal to Memory: no swap beyond the limit
      OomKillDisable: false, // the kernel kills the qube at the limit
      NanoCpus: Math.round(limits.cpus * 1e9), // CPU quota
      Ulimits: [
        { Name: "nofile", Soft: 1024, Hard: 1024 }, // bounded descriptors
        { Name: "core", Soft: 0, Hard: 0 }, // no core dumps (they could leak memory to the host disk)
      ],
      Tmpfs: Object.fromEntries(SCRATCH_PATHS.map((path) => [path, scratchMount])), // size-capped, noexec scratch
      MaskedPaths: [...MASKED_PATHS], // Docker's defaults, explicit
      ReadonlyPaths: [...READONLY_PATHS], // Docker's defaults, explicit
      IpcMode: "private", // no shared IPC namespace, not even with other qubes
      PidMode: "", // a private pid namespace (empty = Docker's default: private)
      UTSMode: "",
      UsernsMode: "",
      CgroupnsMode: "private", // the qube sees only its own cgroup
      Init: false,
      AutoRemove: false, // Airqube removes the container itself, after reading its state
      // Only two host paths, both read-only: our static init (as Docker's own --init does) and the qube's inputs.
      Binds: [`${mounts.initBinary}:${INIT_PATH}:ro`, ...(mounts.inputDir ? [`${mounts.inputDir}:/input:ro`] : [])],
      Devices: [], // no devices beyond Docker's minimal /dev
      LogConfig: { Type: "none", Config: {} }, // stdout/stderr are captured by attach, never stored on the host
    },
  };
}

/** The name the engine knows gVisor's runtime by (scripts/docker-engine.sh registers Debian's runsc under it). */
export const GVISOR_RUNTIME = "runsc";

/**
 * Host pids a gVisor sandbox needs besides its tasks (the Sentry's and gofer's threads: 44 measured idle), and
 * per task (the ptrace platform gives each a traced host stub: 21 tasks took 169 more). The host's pids cgroup
 * holds the whole sandbox; a cap of the qube's own count there made the Sentry itself fail to start threads.
 */
export const GVISOR_BASE_PIDS = 64;
export const GVISOR_PIDS_PER_TASK = 8;

/**
 * The gvisor tier's create options: every flag of the container tier and gVisor's runtime, so the qube's system
 * calls reach gVisor's own kernel (the Sentry) instead of the host's. The engine registers runsc with the ptrace
 * platform, no network stack and `--oci-seccomp` (the same seccomp profile, applied inside). The pids limit
 * moves: the host's pids cgroup, which holds the Sentry as well, gets room for it (GVISOR_BASE_PIDS, and
 * GVISOR_PIDS_PER_TASK host pids per task), and the qube's own count is enforced inside by the Sentry as
 * RLIMIT_NPROC (soft = hard = the pids limit; raising it needs CAP_SYS_RESOURCE, which is dropped). gVisor does
 * not apply the pids cgroup to its tasks: without the rlimit a fork bomb grew until the memory limit killed the
 * whole sandbox. The rlimit counts the uid's tasks in this sandbox's kernel only (never the host's, where it
 * would count every runc container of the same uid). The escape suite's fork bomb (row 32) checks it.
 *
 * @example
 * const config = gvisorContainerConfig(hardenedContainerConfig(DEFAULT_SANDBOX_LIMITS, "job-1", { initBinary }));
 */
export function gvisorContainerConfig(config: HardenedContainerConfig): HardenedContainerConfig {
  const tasks = config.HostConfig.PidsLimit;
  if (!(tasks > 0)) return { ...config, HostConfig: { ...config.HostConfig, Runtime: GVISOR_RUNTIME } };
  const pids = GVISOR_BASE_PIDS + GVISOR_PIDS_PER_TASK * tasks;
  const ulimits = [
    ...config.HostConfig.Ulimits.filter((u) => u.Name !== "nproc"),
    { Name: "nproc", Soft: tasks, Hard: tasks },
  ];
  return {
    ...config,
    HostConfig: { ...config.HostConfig, Runtime: GVISOR_RUNTIME, PidsLimit: pids, Ulimits: ulimits },
  };
}

/**
 * The create options of a warm container (`ContainerSandbox` with `warm`): exactly `hardenedContainerConfig`
 * with no input bind, plus an open stdin on which the host sends the one qube frame the init waits for
 * (`--await-qube`). Stdin closes after the host's single attach, and the init reads it once, then points it
 * at /dev/null; the qube never sees it. Every confinement flag is the cold container's, unchanged.
 *
 * @example
 * const config = warmContainerConfig(DEFAULT_LIMITS, "warm-1", { initBinary: "/usr/lib/airqube/airqube-init" });
 * await docker.createContainer({ Image: digest, Entrypoint: [INIT_PATH], Cmd: ["--await-qube"], ...config });
 */
export function warmContainerConfig(
  limits: SandboxLimits,
  runId: string,
  mounts: { initBinary: string },
  identity: { uid?: number } = {},
): HardenedContainerConfig {
  const config = hardenedContainerConfig(limits, runId, { initBinary: mounts.initBinary }, identity);
  return {
    ...config,
    AttachStdin: true, // the host attaches once, to send the qube frame
    OpenStdin: true,
    StdinOnce: true, // closed when that attach ends: no second qube can be sent
    Labels: { ...config.Labels, [`${SANDBOX_LABEL}.warm`]: "1" },
  };
}
