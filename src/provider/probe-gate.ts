/**
 * The provider's escape-suite gate: runs the suite on a tier before the tier is offered, and caches the
 * report by a fingerprint of everything that decides its outcome (tier, kernel, runtime version, probe image,
 * hardening), so that several agents on one host, or a restarted agent, do not run it again.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { release } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { PROBE_IMAGE, type ProbeReport, reportHash, runProbeSuite } from "../probes/index.js";
import type { Tier } from "../qube/index.js";
import type { Sandbox } from "../sandbox/api.js";
import { DEFAULT_SANDBOX_LIMITS } from "../sandbox/api.js";
import { hardenedContainerConfig } from "../sandbox/hardening.js";
import { imageDigest } from "../sandbox/images.js";
import type { ProbeGate, ProbeGateResult } from "./agent.js";

/** Each engine component's name, version and build (Debian's package version for Debian's builds). */
function componentVersions(version: { Components?: { Name?: string; Version?: string; Details?: unknown }[] }) {
  return (version.Components ?? []).map((c) => [c.Name, c.Version, (c.Details as { GitCommit?: string })?.GitCommit]);
}

async function fingerprint(tier: Tier, docker: Docker, uidPool: boolean): Promise<string> {
  const version = await docker.version().catch(() => ({ Version: "unknown" }));
  const probeImage = await imageDigest(docker, PROBE_IMAGE);
  const hardening = JSON.stringify(
    hardenedContainerConfig(DEFAULT_SANDBOX_LIMITS, "fingerprint", { initBinary: "/init" }),
  );
  // the components' versions too: row 42 judges runc's and containerd's (a Debian security upload changes them)
  const components = componentVersions(version as Parameters<typeof componentVersions>[0]);
  return (
    createHash("sha256")
      // with a uid pool, row 37 judges that tenants get distinct uids: a report made without one does not say so
      .update(JSON.stringify([tier, release(), version.Version, components, probeImage, hardening, uidPool]))
      .digest("hex")
      .slice(0, 32)
  );
}

/** Summary of a report as offers carry it. */
export function summaryOf(report: ProbeReport): ProbeGateResult {
  return { reportHash: `sha256:${reportHash(report)}`, ...report.summary };
}

/**
 * A probe gate that runs the real suite, with an optional cache directory.
 *
 * @example
 * const agent = new ProviderAgent(config, { probe: escapeSuiteGate({ cacheDir: "/var/cache/airqube" }) });
 */
export function escapeSuiteGate(
  options: { cacheDir?: string; docker?: Docker; onReport?: (report: ProbeReport) => void } = {},
): ProbeGate {
  const docker = options.docker ?? new Docker();
  return async (tier: Tier, sandbox: Sandbox, { signal, uids }) => {
    const key = options.cacheDir ? await fingerprint(tier, docker, uids !== undefined) : undefined;
    const file = key && options.cacheDir ? join(options.cacheDir, `probe-${key}.json`) : undefined;
    if (file) {
      const cached = await readFile(file, "utf8").then(
        (text) => JSON.parse(text) as ProbeReport,
        () => undefined,
      );
      if (cached?.summary && cached.tier === tier) {
        options.onReport?.(cached);
        return summaryOf(cached);
      }
    }
    const report = await runProbeSuite({
      tier,
      sandboxFactory: () => sandbox,
      docker,
      ...(signal ? { signal } : {}),
      ...(uids ? { uids } : {}),
    });
    options.onReport?.(report);
    if (file && options.cacheDir) {
      await mkdir(options.cacheDir, { recursive: true });
      const temp = `${file}.${process.pid}.tmp`;
      await writeFile(temp, JSON.stringify(report));
      await rename(temp, file);
    }
    return summaryOf(report);
  };
}
