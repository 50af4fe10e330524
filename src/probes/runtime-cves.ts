/**
 * Row 42: the engine's, containerd's and runc's versions against known container-escape CVEs, as data.
 *
 * Versions come from the engine itself (`docker version`: each component's version, and for Debian's packages
 * the full package version in `Details.GitCommit`, e.g. runc `1.1.5+ds1-1+deb12u1`). A distribution often fixes
 * a CVE by a backport, so by its upstream version a Debian package looks vulnerable: runc 1.1.5 predates
 * upstream's fix of CVE-2024-21626 (1.1.12), yet Debian's 1.1.5+ds1-1+deb12u1 carries it. The data therefore
 * names the distribution versions that fixed each CVE, taken from the packages' own changelogs
 * (/usr/share/doc/<package>/changelog.Debian.gz, which list the CVE in the fixing upload). A backport counts only
 * for the upstream version it was made for. Versions compare as dpkg compares them (`~` sorts before anything).
 */
import type { Tier } from "../sandbox/api.js";
import type { Verdict } from "./protocol.js";

/** The engine component a CVE is in. */
export type RuntimeComponent = "runc" | "containerd" | "engine";

/** One known escape CVE of the container runtime stack. */
export interface RuntimeCve {
  id: string;
  component: RuntimeComponent;
  summary: string;
  /**
   * Upstream versions that fixed it, one per release branch (dpkg notation: `1.0.0~rc7`). A version is fixed when
   * a fix of its own major.minor branch is at or below it, or when it is at or above every fix.
   */
  fixed: readonly string[];
  /** Distribution versions that fixed it by a backport (same upstream version and at or above it). */
  backports?: readonly { version: string; source: string }[];
  /**
   * What an attack needs beyond the version, when the advisory names it. `shared-writable-mount`: the attacker
   * configures the container's mounts and races runc through a writable mount it shares with another container.
   */
  requires?: "shared-writable-mount";
}

/** The data: escape CVEs of runc, containerd and the Docker engine. */
export const RUNTIME_CVES: readonly RuntimeCve[] = [
  {
    id: "CVE-2019-5736",
    component: "runc",
    summary: "the container overwrites the host's runc binary through /proc/self/exe",
    fixed: ["1.0.0~rc7"],
  },
  {
    id: "CVE-2019-16884",
    component: "runc",
    summary: "AppArmor bypass through a malicious image's /proc mount",
    fixed: ["1.0.0~rc9"],
  },
  {
    id: "CVE-2019-19921",
    component: "runc",
    summary: "mount race through a symlinked /proc (volume mount race)",
    fixed: ["1.0.0~rc10"],
  },
  {
    id: "CVE-2021-30465",
    component: "runc",
    summary: "symlink-exchange race in mount destinations: host files bound into the container",
    fixed: ["1.0.0~rc95"],
    backports: [{ version: "1.0.0~rc94+ds1-2", source: "runc changelog.Debian: Backport patch for CVE-2021-30465" }],
  },
  {
    id: "CVE-2023-27561",
    component: "runc",
    summary: "CVE-2019-19921 re-introduced (volume mount race through a symlinked /proc)",
    fixed: ["1.1.5"],
  },
  {
    id: "CVE-2023-28642",
    component: "runc",
    summary: "AppArmor/SELinux bypass with a symlinked /proc",
    fixed: ["1.1.5"],
  },
  {
    id: "CVE-2024-21626",
    component: "runc",
    summary: "leaked host file descriptors (WORKDIR /proc/self/fd/N): the container reaches the host's file system",
    fixed: ["1.1.12"],
    backports: [
      {
        version: "1.1.5+ds1-1+deb12u1",
        source: "runc changelog.Debian (bookworm-security): CVE-2024-21626: container breakouts due to leaked fds",
      },
    ],
  },
  {
    id: "CVE-2025-31133",
    component: "runc",
    summary: "maskedPaths: /dev/null swapped for a symlink during set-up, so runc bind-mounts a host file writable",
    fixed: ["1.2.8", "1.3.3", "1.4.0~rc3"],
    requires: "shared-writable-mount",
  },
  {
    id: "CVE-2025-52565",
    component: "runc",
    summary: "/dev/console bind-mount race redirected to a host path",
    fixed: ["1.2.8", "1.3.3", "1.4.0~rc3"],
    requires: "shared-writable-mount",
  },
  {
    id: "CVE-2025-52881",
    component: "runc",
    summary: "runc's writes to /proc redirected through racing shared mounts (LSM bypass, host /proc writes)",
    fixed: ["1.2.8", "1.3.3", "1.4.0~rc3"],
    requires: "shared-writable-mount",
  },
  {
    id: "CVE-2020-15257",
    component: "containerd",
    summary: "containerd-shim's API on an abstract socket reachable from a container sharing the host network",
    fixed: ["1.3.9", "1.4.3"],
  },
  {
    id: "CVE-2019-14271",
    component: "engine",
    summary: "docker cp loads the container's libnss: code runs on the host",
    fixed: ["19.03.1"],
  },
];

/** The versions of the engine stack, as the engine reports them (undefined: not reported). */
export interface RuntimeVersions {
  engine?: { version: string; debian?: string };
  containerd?: { version: string; debian?: string };
  runc?: { version: string; debian?: string };
}

interface VersionComponent {
  Name?: string;
  Version?: string;
  Details?: { GitCommit?: string };
}

/**
 * Reads the stack's versions from the engine's `version()` answer; a component's Debian package version is its
 * `Details.GitCommit` when that is the version with a Debian revision appended (how Debian builds report it).
 *
 * @example
 * runtimeVersionsFrom(await docker.version()).runc; // { version: "1.1.5+ds1", debian: "1.1.5+ds1-1+deb12u1" }
 */
export function runtimeVersionsFrom(answer: { Version?: string; Components?: VersionComponent[] }): RuntimeVersions {
  const out: RuntimeVersions = {};
  const of = (component: VersionComponent | undefined) => {
    const version = component?.Version;
    if (!version || !/^\d/.test(version)) return undefined;
    const commit = component.Details?.GitCommit ?? "";
    return commit.startsWith(`${version}-`) ? { version, debian: commit } : { version };
  };
  const components = answer.Components ?? [];
  const engine = of(components.find((c) => c.Name === "Engine")) ?? of({ Version: answer.Version ?? "" });
  const containerd = of(components.find((c) => c.Name === "containerd"));
  const runc = of(components.find((c) => c.Name === "runc"));
  if (engine) out.engine = engine;
  if (containerd) out.containerd = containerd;
  if (runc) out.runc = runc;
  return out;
}

/** dpkg's order of one character in a non-digit part: `~` first, then the end, letters, then the rest. */
function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === "~") return -1;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let diff = 0;
    while ((i < a.length && !/\d/.test(a[i]!)) || (j < b.length && !/\d/.test(b[j]!))) {
      const ac = i < a.length && !/\d/.test(a[i]!) ? a[i] : undefined;
      const bc = j < b.length && !/\d/.test(b[j]!) ? b[j] : undefined;
      diff = order(ac) - order(bc);
      if (diff !== 0) return Math.sign(diff);
      if (ac !== undefined) i++;
      if (bc !== undefined) j++;
    }
    const an = /^\d*/.exec(a.slice(i))![0];
    const bn = /^\d*/.exec(b.slice(j))![0];
    i += an.length;
    j += bn.length;
    const na = BigInt(an || "0");
    const nb = BigInt(bn || "0");
    if (na !== nb) return na < nb ? -1 : 1;
  }
  return 0;
}

function split(version: string): { epoch: number; upstream: string; revision: string } {
  const colon = version.indexOf(":");
  const epoch = colon > 0 ? Number(version.slice(0, colon)) || 0 : 0;
  const rest = colon > 0 ? version.slice(colon + 1) : version;
  const dash = rest.lastIndexOf("-");
  return dash > 0
    ? { epoch, upstream: rest.slice(0, dash), revision: rest.slice(dash + 1) }
    : { epoch, upstream: rest, revision: "" };
}

/**
 * Compares two versions as `dpkg --compare-versions` does: negative, zero or positive.
 *
 * @example
 * compareVersions("1.1.5+ds1-1+deb12u1", "1.1.12"); // < 0
 * compareVersions("1.0.0~rc95", "1.0.0"); // < 0
 */
export function compareVersions(a: string, b: string): number {
  const x = split(a);
  const y = split(b);
  if (x.epoch !== y.epoch) return x.epoch < y.epoch ? -1 : 1;
  return compareFragment(x.upstream, y.upstream) || compareFragment(x.revision, y.revision);
}

/** The upstream version without a distribution's repack suffix (`1.1.5+ds1` -> `1.1.5`, `20.10.24+dfsg1`). */
function upstreamOf(version: string): string {
  return split(version).upstream.replace(/[+~](ds|dfsg)\d*$/, "");
}

const branch = (version: string) => /^\d+\.\d+/.exec(version)?.[0] ?? version;

/** How one CVE stands for one installed version. */
export type CveStatus = "fixed" | "fixed-by-backport" | "vulnerable";

/**
 * Whether an installed version has a CVE's fix: upstream (its branch's fix, or every fix), or a distribution
 * backport made for the same upstream version.
 *
 * @example
 * cveStatus(cve2024_21626, { version: "1.1.5+ds1", debian: "1.1.5+ds1-1+deb12u1" }); // "fixed-by-backport"
 */
export function cveStatus(cve: RuntimeCve, installed: { version: string; debian?: string }): CveStatus {
  const upstream = upstreamOf(installed.version);
  const sameBranch = cve.fixed.filter((f) => branch(f) === branch(upstream));
  const fixedUpstream =
    sameBranch.some((f) => compareVersions(upstream, f) >= 0) ||
    cve.fixed.every((f) => compareVersions(upstream, f) >= 0);
  if (fixedUpstream) return "fixed";
  const debian = installed.debian;
  if (
    debian &&
    (cve.backports ?? []).some(
      (b) => split(b.version).upstream === split(debian).upstream && compareVersions(debian, b.version) >= 0,
    )
  )
    return "fixed-by-backport";
  return "vulnerable";
}

/** The components whose CVEs reach a qube on each tier (gVisor replaces runc; a micro-VM uses none of them). */
export const COMPONENTS_BY_TIER: Readonly<Record<Tier, readonly RuntimeComponent[]>> = {
  container: ["runc", "containerd", "engine"],
  gvisor: ["containerd", "engine"],
  microvm: [],
};

/** What the row knows of the sandbox besides versions. */
export interface RuntimeCveContext {
  /** Some mount of the sandbox is writable and shared with the host or other containers (a rw host bind). */
  sharedWritableMount: boolean;
  /** Where the writable shared mounts are, for the evidence. */
  sharedMounts?: readonly string[];
}

/**
 * Row 42's verdict: fail when an applicable CVE is unfixed in the installed version and nothing it needs is
 * missing from the sandbox; inconclusive when a component's version is unknown; skipped on the micro-VM tier.
 *
 * @example
 * judgeRuntimeCves(runtimeVersionsFrom(await docker.version()), "container", { sharedWritableMount: false });
 */
export function judgeRuntimeCves(
  versions: RuntimeVersions,
  tier: Tier,
  context: RuntimeCveContext,
  data: readonly RuntimeCve[] = RUNTIME_CVES,
): { verdict: Verdict; evidence: string } {
  const components = COMPONENTS_BY_TIER[tier];
  if (components.length === 0)
    return {
      verdict: "skipped",
      evidence: `tier ${tier}: the qube runs under QEMU with a kernel of its own; the engine and runc only unpack images`,
    };
  const notes: string[] = [];
  const failures: string[] = [];
  const unknown: string[] = [];
  for (const component of components) {
    const installed = versions[component];
    const cves = data.filter((cve) => cve.component === component);
    if (!installed) {
      unknown.push(component);
      continue;
    }
    const name = `${component} ${installed.debian ?? installed.version}`;
    const status = cves.map((cve) => ({ cve, status: cveStatus(cve, installed) }));
    const backported = status.filter((s) => s.status === "fixed-by-backport").map((s) => s.cve.id);
    const vulnerable = status.filter((s) => s.status === "vulnerable");
    const line = [`${name}: ${status.length - vulnerable.length}/${status.length} known escape CVEs fixed`];
    if (backported.length) line.push(`by Debian backport: ${backported.join(", ")}`);
    const unreachable = vulnerable.filter(
      ({ cve }) => cve.requires === "shared-writable-mount" && !context.sharedWritableMount,
    );
    if (unreachable.length)
      line.push(
        `${unreachable.map((s) => s.cve.id).join(", ")} unfixed in this version, not reachable here: each needs a writable mount shared with another container, and every mount of this sandbox is the provider's (tmpfs, read-only binds)`,
      );
    for (const { cve } of vulnerable.filter((s) => !unreachable.includes(s))) {
      const why =
        cve.requires === "shared-writable-mount"
          ? ` (writable shared mount: ${(context.sharedMounts ?? []).join(", ") || "present"})`
          : "";
      failures.push(`${name} has ${cve.id}: ${cve.summary}${why}`);
    }
    notes.push(line.join("; "));
  }
  const evidence = [...failures.map((f) => `FAIL ${f}`), ...notes].join("; ");
  if (failures.length) return { verdict: "fail", evidence };
  if (unknown.length)
    return {
      verdict: "inconclusive",
      evidence: `${evidence}${evidence ? "; " : ""}the engine did not report the version of ${unknown.join(", ")}`,
    };
  return { verdict: "pass", evidence };
}
