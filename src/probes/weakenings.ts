/**
 * Weakenings: each removes exactly one defence from the container sandbox, to prove that the probes guarding
 * it can fail. They are pure transformations of the hardened create options (or of the run limits), applied
 * by `ContainerSandbox` just before the container is created. Never used outside the escape suite.
 */
import { UserError } from "../qube/errors.js";
import type { SandboxLimits } from "../sandbox/api.js";
import type { HardenedContainerConfig } from "../sandbox/hardening.js";

type ConfigTransform = (config: HardenedContainerConfig) => HardenedContainerConfig;
type LimitsTransform = (limits: SandboxLimits) => SandboxLimits;

/** One named weakening. */
export interface Weakening {
  /** e.g. `seccomp:unconfined`, `cap:NET_RAW`. */
  name: string;
  description: string;
  /** Transforms the Docker create options. */
  config?: ConfigTransform;
  /** Transforms the run limits (after defaults). */
  limits?: LimitsTransform;
}

/** Capabilities `cap:<NAME>` accepts (Linux 6.x names without the CAP_ prefix). */
// biome-ignore format: a packed list reads better
export const CAPABILITIES: readonly string[] = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
  "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
  "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
  "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
  "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
  "CHECKPOINT_RESTORE",
];

/** With the host's network, the only address any probe connects to is the harness's loopback canary. */
const HOST_NETWORK_NOTE = "probes connect only to the harness's loopback canary";

/** Returns a structural copy with `HostConfig` fields replaced. */
function withHost(config: HardenedContainerConfig, host: Partial<HardenedContainerConfig["HostConfig"]>) {
  return { ...config, HostConfig: { ...config.HostConfig, ...host } };
}

/** Adds Docker create options the hardened type does not model (dockerode passes them through). */
function withExtraHost(config: HardenedContainerConfig, extra: Record<string, unknown>): HardenedContainerConfig {
  return { ...config, HostConfig: { ...config.HostConfig, ...extra } } as HardenedContainerConfig;
}

const FIXED: readonly Weakening[] = [
  {
    name: "seccomp:unconfined",
    description: "runs without any seccomp filter",
    config: (c) =>
      withHost(c, {
        SecurityOpt: [...c.HostConfig.SecurityOpt.filter((o) => !o.startsWith("seccomp=")), "seccomp=unconfined"],
      }),
  },
  {
    name: "no-new-privileges:off",
    description: "lets setuid and file-capability binaries raise privileges",
    config: (c) =>
      withHost(c, { SecurityOpt: c.HostConfig.SecurityOpt.filter((o) => !o.startsWith("no-new-privileges")) }),
  },
  {
    name: "readonly-root:off",
    description: "mounts the image's root file system read-write",
    config: (c) => withHost(c, { ReadonlyRootfs: false }),
  },
  {
    name: "pids-limit:off",
    description: "removes the pids limit",
    config: (c) => withHost(c, { PidsLimit: -1 }),
  },
  {
    name: "memory-limit:off",
    description: "removes the memory limit (and the swap limit with it)",
    config: (c) => withHost(c, { Memory: 0, MemorySwap: 0 }),
  },
  {
    name: "cpu-limit:off",
    description: "removes the CPU quota",
    config: (c) => withHost(c, { NanoCpus: 0 }),
  },
  {
    name: "disk-limit:off",
    description: "removes the size cap of the scratch tmpfs mounts",
    config: (c) =>
      withHost(c, {
        Tmpfs: Object.fromEntries(
          Object.entries(c.HostConfig.Tmpfs).map(([path, options]) => [
            path,
            options
              .split(",")
              .filter((option) => !option.startsWith("size="))
              .join(","),
          ]),
        ),
      }),
  },
  {
    name: "timeout:off",
    description: "raises the wall-clock deadline to ten minutes (the probe stops itself long before)",
    limits: (l) => ({ ...l, wallTimeMs: Math.max(l.wallTimeMs, 600_000) }),
  },
  {
    name: "user:root",
    description: "runs the qube as uid 0 (still without capabilities)",
    config: (c) => ({ ...c, User: "0:0" }),
  },
  {
    name: "proc:unmasked",
    description: "clears the masked and read-only /proc and /sys paths",
    config: (c) => withHost(c, { MaskedPaths: [], ReadonlyPaths: [] }),
  },
  {
    name: "network:host",
    description: `shares the host's network namespace (${HOST_NETWORK_NOTE})`,
    config: (c) => ({ ...withHost(c, { NetworkMode: "host" }), NetworkDisabled: false }),
  },
  {
    name: "pid:host",
    description: "shares the host's pid namespace",
    config: (c) => withHost(c, { PidMode: "host" }),
  },
  {
    name: "ipc:host",
    description: "shares the host's IPC namespace and /dev/shm",
    config: (c) => withHost(c, { IpcMode: "host" }),
  },
  {
    name: "mount:docker-socket",
    description: "bind-mounts the Docker socket at /var/run/docker.sock (the probe only connects, never sends)",
    config: (c) => withHost(c, { Binds: [...c.HostConfig.Binds, "/var/run/docker.sock:/var/run/docker.sock"] }),
  },
  {
    name: "mount:host-cgroup",
    description: "bind-mounts the host's /sys/fs/cgroup read-write (the probe opens files, never writes)",
    config: (c) => withHost(c, { Binds: [...c.HostConfig.Binds, "/sys/fs/cgroup:/sys/fs/cgroup:rw"] }),
  },
  {
    name: "device-cgroup:off",
    description: "lets the device cgroup allow every device (a *:* rwm)",
    config: (c) => withExtraHost(c, { DeviceCgroupRules: ["a *:* rwm"] }),
  },
];

/** Every weakening the suite knows, `cap:<NAME>` shown once as a pattern. */
export function listWeakenings(): { name: string; description: string }[] {
  return [
    { name: "cap:<NAME>", description: `adds one capability, e.g. cap:NET_RAW (one of ${CAPABILITIES.length} names)` },
    ...FIXED.map(({ name, description }) => ({ name, description })),
  ];
}

/**
 * Resolves one weakening by name.
 *
 * @example
 * const w = weakening("cap:NET_RAW"); // w.config adds NET_RAW to CapAdd
 */
export function weakening(name: string): Weakening {
  const cap = /^cap:([A-Z_]+)$/.exec(name);
  if (cap) {
    const capName = cap[1]!;
    if (!CAPABILITIES.includes(capName))
      throw new UserError("WEAKENING_UNKNOWN", "Unknown capability", { details: `${capName}; see --list-weakenings` });
    return {
      name,
      description: `adds CAP_${capName}`,
      config: (c) => withHost(c, { CapAdd: [...c.HostConfig.CapAdd, capName] }),
    };
  }
  const found = FIXED.find((w) => w.name === name);
  if (!found)
    throw new UserError("WEAKENING_UNKNOWN", "Unknown weakening", {
      details: `${name}; see airqube probe --list-weakenings`,
    });
  return found;
}

/**
 * Composes several weakenings (applied in order) into the two hooks `ContainerSandbox` takes.
 *
 * @example
 * const { weaken, weakenLimits } = composeWeakenings(["seccomp:unconfined"]);
 * new ContainerSandbox({ weaken, weakenLimits });
 */
export function composeWeakenings(names: readonly string[]): {
  names: string[];
  weaken?: ConfigTransform;
  weakenLimits?: LimitsTransform;
} {
  const list = [...new Set(names)].map(weakening);
  const configs = list.flatMap((w) => (w.config ? [w.config] : []));
  const limits = list.flatMap((w) => (w.limits ? [w.limits] : []));
  return {
    names: list.map((w) => w.name),
    ...(configs.length ? { weaken: (c: HardenedContainerConfig) => configs.reduce((acc, f) => f(acc), c) } : {}),
    ...(limits.length ? { weakenLimits: (l: SandboxLimits) => limits.reduce((acc, f) => f(acc), l) } : {}),
  };
}

/** The weakenings the mutation test runs: every fixed one and the capabilities the probes guard. */
export const MUTATION_WEAKENINGS: readonly string[] = [
  ...FIXED.map((w) => w.name),
  ...["SYS_ADMIN", "NET_RAW", "MKNOD", "SYS_MODULE", "SYS_PTRACE", "DAC_READ_SEARCH", "SYSLOG"].map((c) => `cap:${c}`),
];
