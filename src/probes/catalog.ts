/**
 * The probe catalog: what each probe of ../shared/design/PROBES.md attacks and which defence it checks.
 * The in-sandbox program (`native/probe.c`) reports verdicts by id; the report joins them with this table.
 *
 * Each probe checks every defence its row names, layer by layer: a probe fails when one of them is missing
 * even if another layer still stops the attack (for example, `/proc/sys` on a read-write mount fails row 2
 * although file permissions still refuse the unprivileged user). That is what lets a single weakening turn
 * each probe to `fail`.
 */
import { RUNTIME_CVES } from "./runtime-cves.js";

/** Coarse grouping used in reports and JUnit class names. */
export type ProbeCategory =
  | "proc"
  | "devices"
  | "syscalls"
  | "identity"
  | "namespaces"
  | "runtime"
  | "filesystem"
  | "network"
  | "resources"
  | "kernel"
  | "isolation";

/** How bad an escape a probe's failure would allow. */
export type ProbeSeverity = "critical" | "high" | "medium" | "low";

/** One row of the probe table. */
export interface ProbeInfo {
  id: number;
  title: string;
  category: ProbeCategory;
  severity: ProbeSeverity;
  cves: string[];
  defence: string;
}

/** Rows 1-43 of PROBES.md, in order (38-43: suite v2; 42 is judged by the harness on the host). */
export const PROBES: readonly ProbeInfo[] = [
  {
    id: 1,
    title: "sysrq",
    category: "proc",
    severity: "critical",
    cves: [],
    defence: "read-only or masked /proc (sysrq-trigger, /proc/bus, /proc/fs, /proc/irq)",
  },
  { id: 2, title: "core_pattern", category: "proc", severity: "critical", cves: [], defence: "/proc/sys read-only" },
  {
    id: 3,
    title: "kcore, kmsg",
    category: "proc",
    severity: "high",
    cves: [],
    defence: "masked paths (/proc/kcore, /proc/keys, /proc/timer_list, ...); no /dev/kmsg",
  },
  {
    id: 4,
    title: "mem devices",
    category: "devices",
    severity: "critical",
    cves: [],
    defence: "minimal /dev, device cgroup",
  },
  {
    id: 5,
    title: "block devices",
    category: "devices",
    severity: "critical",
    cves: [],
    defence: "no block devices, device cgroup",
  },
  { id: 6, title: "mknod", category: "devices", severity: "high", cves: [], defence: "no CAP_MKNOD, device cgroup" },
  {
    id: 7,
    title: "mount, setns, pivot_root",
    category: "syscalls",
    severity: "critical",
    cves: [],
    defence: "seccomp, no CAP_SYS_ADMIN",
  },
  {
    id: 8,
    title: "cgroup release_agent",
    category: "syscalls",
    severity: "critical",
    cves: ["CVE-2022-0492"],
    defence: "cgroupfs read-only, seccomp, no user namespaces, no CAP_SYS_ADMIN",
  },
  { id: 9, title: "devices.allow", category: "devices", severity: "critical", cves: [], defence: "cgroupfs read-only" },
  {
    id: 10,
    title: "user namespace",
    category: "syscalls",
    severity: "high",
    cves: ["CVE-2022-0185", "CVE-2023-32233"],
    defence: "seccomp (unshare/clone namespace flags)",
  },
  {
    id: 11,
    title: "kernel modules",
    category: "syscalls",
    severity: "critical",
    cves: [],
    defence: "seccomp, no CAP_SYS_MODULE",
  },
  { id: 12, title: "keyring", category: "syscalls", severity: "medium", cves: ["CVE-2016-0728"], defence: "seccomp" },
  {
    id: 13,
    title: "risky syscalls",
    category: "syscalls",
    severity: "high",
    cves: ["CVE-2023-2598", "CVE-2021-4154"],
    defence: "seccomp (userfaultfd, perf_event_open, bpf, io_uring)",
  },
  {
    id: 14,
    title: "ptrace",
    category: "syscalls",
    severity: "high",
    cves: ["CVE-2019-13272"],
    defence: "seccomp, no CAP_SYS_PTRACE, private pid namespace",
  },
  {
    id: 15,
    title: "open_by_handle_at (shocker)",
    category: "syscalls",
    severity: "critical",
    cves: [],
    defence: "seccomp, no CAP_DAC_READ_SEARCH",
  },
  {
    id: 16,
    title: "kernel log",
    category: "syscalls",
    severity: "medium",
    cves: [],
    defence: "seccomp, no CAP_SYSLOG",
  },
  {
    id: 17,
    title: "raw sockets",
    category: "syscalls",
    severity: "medium",
    cves: ["CVE-2020-14386"],
    defence: "no CAP_NET_RAW",
  },
  {
    id: 18,
    title: "capabilities",
    category: "identity",
    severity: "high",
    cves: [],
    defence: "all capabilities dropped (effective, permitted, bounding, ambient)",
  },
  { id: 19, title: "privilege gain", category: "identity", severity: "high", cves: [], defence: "no-new-privileges" },
  {
    id: 20,
    title: "identity",
    category: "identity",
    severity: "high",
    cves: [],
    defence: "non-root user, or a user namespace remap",
  },
  {
    id: 21,
    title: "LSM",
    category: "identity",
    severity: "medium",
    cves: [],
    defence: "AppArmor/SELinux confinement where the host has one",
  },
  {
    id: 22,
    title: "host namespaces",
    category: "namespaces",
    severity: "critical",
    cves: [],
    defence: "private pid, net, ipc, uts, mount and cgroup namespaces",
  },
  {
    id: 23,
    title: "runtime sockets",
    category: "runtime",
    severity: "critical",
    cves: [],
    defence: "no runtime socket mounted",
  },
  {
    id: 24,
    title: "runtime TCP APIs",
    category: "runtime",
    severity: "critical",
    cves: [],
    defence: "no network (the host's loopback and gateway unreachable)",
  },
  {
    id: 25,
    title: "leaked fds",
    category: "runtime",
    severity: "critical",
    cves: ["CVE-2024-21626"],
    defence: "patched runtime, private pid namespace (no runtime process in reach)",
  },
  {
    id: 26,
    title: "runtime binary overwrite",
    category: "runtime",
    severity: "critical",
    cves: ["CVE-2019-5736"],
    defence: "patched runtime, non-root",
  },
  {
    id: 27,
    title: "host mounts",
    category: "filesystem",
    severity: "critical",
    cves: [],
    defence: "only declared mounts, host binds read-only",
  },
  {
    id: 28,
    title: "read-only root",
    category: "filesystem",
    severity: "medium",
    cves: [],
    defence: "read-only root file system",
  },
  {
    id: 29,
    title: "cloud metadata",
    category: "network",
    severity: "critical",
    cves: [],
    defence: "no network (no route to metadata addresses)",
  },
  { id: 30, title: "egress", category: "network", severity: "high", cves: [], defence: "no network" },
  { id: 31, title: "DNS", category: "network", severity: "medium", cves: [], defence: "no reachable resolver" },
  { id: 32, title: "fork bomb", category: "resources", severity: "medium", cves: [], defence: "pids limit" },
  {
    id: 33,
    title: "memory bomb",
    category: "resources",
    severity: "medium",
    cves: [],
    defence: "memory limit equal to memory+swap",
  },
  {
    id: 34,
    title: "disk fill",
    category: "resources",
    severity: "medium",
    cves: [],
    defence: "size-capped scratch tmpfs",
  },
  {
    id: 35,
    title: "CPU and time",
    category: "resources",
    severity: "medium",
    cves: [],
    defence: "CPU quota and wall-clock kill at the deadline",
  },
  {
    id: 36,
    title: "kernel identity (VM tier)",
    category: "kernel",
    severity: "high",
    cves: [],
    defence: "a separate kernel (VM tier only)",
  },
  {
    id: 37,
    title: "residue",
    category: "isolation",
    severity: "high",
    cves: [],
    defence: "a fresh, disposable sandbox per qube (files, processes, IPC)",
  },
  {
    id: 38,
    title: "character devices",
    category: "devices",
    severity: "critical",
    cves: [],
    defence: "only the minimal character devices (no fuse, tun, kvm, userfaultfd, vsock, loop-control, ...)",
  },
  {
    id: 39,
    title: "supplementary groups",
    category: "identity",
    severity: "high",
    cves: [],
    defence: "no supplementary group beyond the primary one, never gid 0",
  },
  {
    id: 40,
    title: "procfs and sysfs through any mount",
    category: "proc",
    severity: "critical",
    cves: [],
    defence: "no second procfs or writable sysfs (e.g. under a non-recursive read-only bind of the host's /)",
  },
  {
    id: 41,
    title: "secrets",
    category: "isolation",
    severity: "high",
    cves: [],
    defence: "no credentials in the environment, no service-account token or secrets mount",
  },
  {
    id: 42,
    title: "runtime CVEs",
    category: "runtime",
    severity: "critical",
    cves: RUNTIME_CVES.map((cve) => cve.id),
    defence:
      "engine, containerd and runc versions with every known escape fix (upstream or a distribution backport); the harness checks them on the host",
  },
  {
    id: 43,
    title: "syscall sweep",
    category: "syscalls",
    severity: "high",
    cves: [],
    defence: "seccomp allowlist: every system call number outside the tier's allowlist refused before the kernel",
  },
];

/** Rows the harness judges on the host (the probe program may never print a verdict for them). */
export const HARNESS_ROWS: readonly number[] = [42];

/** The highest probe id. */
export const PROBE_COUNT = PROBES.length;

/** Looks a probe up by id. */
export function probeInfo(id: number): ProbeInfo | undefined {
  return PROBES[id - 1]?.id === id ? PROBES[id - 1] : PROBES.find((probe) => probe.id === id);
}
