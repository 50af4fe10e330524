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

/**
 * What a weakened run showed of the sandbox it ran in, from the probe's facts line (see `emit_facts` in
 * native/probe.c) and the harness's own view. Used to check that each weakening really changed the sandbox.
 */
export interface WeakeningObservation {
  /** The probe's raw facts, e.g. `capbnd`, `seccomp`, `uid`, `groups`, `ns_net`, `sockets`; empty when none came. */
  facts: ReadonlyMap<string, string>;
  /** The host's namespace inode numbers by kind (`pid`, `net`, `ipc`, ...). */
  hostNamespaces: ReadonlyMap<string, string>;
  /** The limits the unweakened sandbox enforces. */
  limits: Pick<SandboxLimits, "memoryBytes" | "scratchBytes">;
  /** Whether the sandbox killed the deadline phase's spinning qube (undefined: the phase did not tell). */
  deadlineKilled: boolean | undefined;
}

/** How to see that a weakening took effect. */
export interface WeakeningEffect {
  /** What is looked for, e.g. `CapBnd holds CAP_NET_RAW`. */
  shows: string;
  seen: (observation: WeakeningObservation) => boolean;
}

/** One named weakening. */
export interface Weakening {
  /** e.g. `seccomp:unconfined`, `cap:NET_RAW`. */
  name: string;
  description: string;
  /** Transforms the Docker create options. */
  config?: ConfigTransform;
  /** Transforms the run limits (after defaults). */
  limits?: LimitsTransform;
  /** The observable change; every weakening has one, and a run whose weakening shows none fails. */
  effect: WeakeningEffect;
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

const fact = (o: WeakeningObservation, key: string) => o.facts.get(key);
const count = (o: WeakeningObservation, key: string) => Number(o.facts.get(key) ?? "0") || 0;
const sharesHost = (kind: string): WeakeningEffect => ({
  shows: `the ${kind} namespace is the host's`,
  seen: (o) => fact(o, `ns_${kind}`) !== undefined && fact(o, `ns_${kind}`) === o.hostNamespaces.get(kind),
});

/** Character devices `device:<NAME>` passes in (host path; the container sees the same path). */
export const DEVICES: Readonly<Record<string, string>> = {
  fuse: "/dev/fuse",
  tun: "/dev/net/tun",
  kvm: "/dev/kvm",
  userfaultfd: "/dev/userfaultfd",
  vsock: "/dev/vsock",
  "loop-control": "/dev/loop-control",
};

/** A canary credential planted by `env:secret` (fake: it opens nothing anywhere). */
const SECRET_CANARY = "AWS_SECRET_ACCESS_KEY=airqube-probe-canary-not-a-real-key";

const FIXED: readonly Weakening[] = [
  {
    name: "seccomp:unconfined",
    description: "runs without any seccomp filter",
    config: (c) =>
      withHost(c, {
        SecurityOpt: [...c.HostConfig.SecurityOpt.filter((o) => !o.startsWith("seccomp=")), "seccomp=unconfined"],
      }),
    effect: { shows: "Seccomp mode 0 in /proc/self/status", seen: (o) => fact(o, "seccomp") === "0" },
  },
  {
    name: "no-new-privileges:off",
    description: "lets setuid and file-capability binaries raise privileges",
    config: (c) =>
      withHost(c, { SecurityOpt: c.HostConfig.SecurityOpt.filter((o) => !o.startsWith("no-new-privileges")) }),
    effect: { shows: "NoNewPrivs 0", seen: (o) => fact(o, "nnp") === "0" },
  },
  {
    name: "readonly-root:off",
    description: "mounts the image's root file system read-write",
    config: (c) => withHost(c, { ReadonlyRootfs: false }),
    effect: { shows: "/ on a read-write mount", seen: (o) => fact(o, "rootrw") === "1" },
  },
  {
    name: "pids-limit:off",
    description: "removes the pids limit (and the gvisor tier's RLIMIT_NPROC, which carries it there)",
    config: (c) => withHost(c, { PidsLimit: -1, Ulimits: c.HostConfig.Ulimits.filter((u) => u.Name !== "nproc") }),
    effect: {
      shows: "pids.max is max (under gVisor, with no pids cgroup in sight: RLIMIT_NPROC unlimited)",
      seen: (o) => fact(o, "pids") === "max" || (fact(o, "pids") === "none" && fact(o, "nproc") === "unlimited"),
    },
  },
  {
    name: "memory-limit:off",
    description: "removes the memory limit (and the swap limit with it)",
    config: (c) => withHost(c, { Memory: 0, MemorySwap: 0 }),
    effect: {
      shows: "memory.limit_in_bytes above the suite's limit",
      seen: (o) => count(o, "mem") > o.limits.memoryBytes,
    },
  },
  {
    name: "cpu-limit:off",
    description: "removes the CPU quota",
    config: (c) => withHost(c, { NanoCpus: 0 }),
    effect: { shows: "cpu.cfs_quota_us is -1", seen: (o) => fact(o, "cpuquota") === "-1" },
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
    effect: {
      shows: "/scratch larger than the suite's scratch size",
      seen: (o) => count(o, "scratch") > o.limits.scratchBytes,
    },
  },
  {
    name: "timeout:off",
    description: "raises the wall-clock deadline to ten minutes (the probe stops itself long before)",
    limits: (l) => ({ ...l, wallTimeMs: Math.max(l.wallTimeMs, 600_000) }),
    effect: {
      shows: "the spinning qube outlives its deadline",
      seen: (o) => o.deadlineKilled === false,
    },
  },
  {
    name: "user:root",
    description: "runs the qube as uid 0 (still without capabilities)",
    config: (c) => ({ ...c, User: "0:0" }),
    effect: { shows: "euid 0", seen: (o) => fact(o, "uid") === "0" },
  },
  {
    name: "proc:unmasked",
    description: "clears the masked and read-only /proc and /sys paths",
    config: (c) => withHost(c, { MaskedPaths: [], ReadonlyPaths: [] }),
    effect: { shows: "a masked or read-only /proc path neither", seen: (o) => count(o, "unmasked") > 0 },
  },
  {
    name: "network:host",
    description: `shares the host's network namespace (${HOST_NETWORK_NOTE})`,
    config: (c) => ({ ...withHost(c, { NetworkMode: "host" }), NetworkDisabled: false }),
    effect: sharesHost("net"),
  },
  {
    name: "pid:host",
    description: "shares the host's pid namespace",
    config: (c) => withHost(c, { PidMode: "host" }),
    effect: sharesHost("pid"),
  },
  {
    name: "ipc:host",
    description: "shares the host's IPC namespace and /dev/shm",
    config: (c) => withHost(c, { IpcMode: "host" }),
    effect: sharesHost("ipc"),
  },
  {
    name: "mount:docker-socket",
    description: "bind-mounts the Docker socket at /var/run/docker.sock (the probe only connects, never sends)",
    config: (c) => withHost(c, { Binds: [...c.HostConfig.Binds, "/var/run/docker.sock:/var/run/docker.sock"] }),
    effect: { shows: "a socket file on a mounted file system", seen: (o) => count(o, "sockets") > 0 },
  },
  {
    name: "mount:host-cgroup",
    description: "bind-mounts the host's /sys/fs/cgroup read-write (the probe opens files, never writes)",
    config: (c) => withHost(c, { Binds: [...c.HostConfig.Binds, "/sys/fs/cgroup:/sys/fs/cgroup:rw"] }),
    effect: { shows: "a read-write cgroupfs mount", seen: (o) => count(o, "cgrouprw") > 0 },
  },
  {
    name: "device-cgroup:off",
    description: "lets the device cgroup allow every device (a *:* rwm)",
    config: (c) => withExtraHost(c, { DeviceCgroupRules: ["a *:* rwm"] }),
    effect: { shows: "devices.list is a *:* rwm", seen: (o) => fact(o, "devall") === "1" },
  },
  {
    name: "group:disk",
    description: "adds the host's disk group (gid 6) as a supplementary group",
    config: (c) => withExtraHost(c, { GroupAdd: ["6"] }),
    effect: { shows: "gid 6 among the groups", seen: (o) => (fact(o, "groups") ?? "").split(",").includes("6") },
  },
  {
    name: "mount:host-root-ro",
    description: "binds the host's / at /host read-only, not recursively (the probe opens files, never writes)",
    config: (c) => withHost(c, { Binds: [...c.HostConfig.Binds, "/:/host:ro"] }),
    effect: {
      shows: "a second procfs or sysfs, a socket or a character device from the host",
      seen: (o) => count(o, "procrw") + count(o, "sockets") + count(o, "chardevs") > 0,
    },
  },
  {
    name: "env:secret",
    description: "adds a fake cloud secret to the qube's environment",
    config: (c) => ({ ...c, Env: [...(c.Env ?? []), SECRET_CANARY] }),
    effect: { shows: "a secret-looking variable", seen: (o) => count(o, "secrets") > 0 },
  },
  ...Object.entries(DEVICES).map(
    ([name, path]): Weakening => ({
      name: `device:${name}`,
      description: `passes ${path} in (read-write, as the host's node mode allows)`,
      config: (c) =>
        withHost(c, {
          Devices: [...c.HostConfig.Devices, { PathOnHost: path, PathInContainer: path, CgroupPermissions: "rwm" }],
        }),
      effect: { shows: "an unexpected character device", seen: (o) => count(o, "chardevs") > 0 },
    }),
  ),
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
    const bit = BigInt(CAPABILITIES.indexOf(capName)); // the list is in capability-number order
    return {
      name,
      description: `adds CAP_${capName}`,
      config: (c) => withHost(c, { CapAdd: [...c.HostConfig.CapAdd, capName] }),
      effect: {
        shows: `CapBnd holds CAP_${capName}`,
        seen: (o) =>
          /^[0-9a-f]{1,16}$/.test(fact(o, "capbnd") ?? "") && ((BigInt(`0x${fact(o, "capbnd")}`) >> bit) & 1n) === 1n,
      },
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
 * The weakenings that did not show their effect in a run (a no-op like `cap:SYS_RESOURCE` for a non-root user
 * on an engine whose bounding set lacks it), each with what was looked for.
 *
 * @example
 * ineffectiveWeakenings(["cap:NET_RAW"], observation); // [] when CapBnd holds CAP_NET_RAW
 */
export function ineffectiveWeakenings(
  names: readonly string[],
  observation: WeakeningObservation,
): { name: string; shows: string }[] {
  return [...new Set(names)]
    .map(weakening)
    .filter((w) => !w.effect.seen(observation))
    .map((w) => ({ name: w.name, shows: w.effect.shows }));
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
  // every fixed one whose device exists on the machines the suite runs on (no /dev/kvm there)
  ...FIXED.map((w) => w.name).filter((name) => name !== "device:kvm"),
  ...["SYS_ADMIN", "NET_RAW", "MKNOD", "SYS_MODULE", "SYS_PTRACE", "DAC_READ_SEARCH", "SYSLOG"].map((c) => `cap:${c}`),
];
