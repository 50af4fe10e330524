/**
 * The escape suite as a qube on one Golem provider: `GolemSandbox` implements the sandbox port by running each
 * probe qube on a chosen provider through `GolemMarket` and the unchanged `Requestor` (k = 1), and
 * `runGolemProbe` runs the suite's main phase (rows 1-36 as the probe program sees them) there.
 *
 * What it measures is Golem's own VM runtime, not an Airqube sandbox: the report says what the provider's
 * sandbox allows, as the probe program sees it from inside. Rows that need the requestor's host (the loopback
 * canary, namespace ids, the wall-clock kill, residue between two qubes on one host) cannot be judged
 * remotely and are reported as skipped or as the probe's own verdict only. Golem signs nothing, so the report
 * is only as trustworthy as the provider that ran it.
 *
 * Providers of Airqube's own runtime (`ya-runtime-airqube`) need no probe qube: the runtime ran the suite in the
 * sandbox it uses and signed the outcome, and `golemRuntimeEvidence` reads and verifies it from the provider's
 * offer (the requestor's market does the same for every candidate, see `offerVerdict` in order.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  PROBE_IMAGE,
  PROBES,
  type ProbeReport,
  type ProbeResult,
  parseProbeOutput,
  SUITE,
  SUITE_LIMITS,
  SUITE_VERSION,
  summarize,
} from "../probes/index.js";
import { Identity, PeerError, TimeoutError } from "../qube/index.js";
import { sealQube, specLimitsFor } from "../requestor/draft.js";
import { Requestor } from "../requestor/requestor.js";
import type { QubeRun, Sandbox, SandboxResult } from "../sandbox/api.js";
import type { GolemConfig } from "./config.js";
import { fromGolemError } from "./errors.js";
import { GolemMarket, type GolemMarketOptions } from "./golem-market.js";
import { RUNTIME_NAME, type RuntimeOfferVerdict, verifyRuntimeOffer } from "./runtime/offer.js";

/** Where the probe program lives in its image. */
export const PROBE_PROGRAM = "/airqube/probe";

/** A sandbox that is one Golem provider's VM. */
export class GolemSandbox implements Sandbox {
  readonly tier = "microvm" as const;
  constructor(
    private readonly provider: string,
    private readonly requestor: Requestor,
    private readonly identity: Identity,
    /** Docker digest of the image, the key of its GVMI in `golem.images`. */
    private readonly imageDigest?: string,
  ) {}

  async run(qube: QubeRun, options: { signal?: AbortSignal } = {}): Promise<SandboxResult> {
    const limits = qube.limits ?? {};
    const digest = qube.imageDigest ?? this.imageDigest;
    const sealed = await sealQube(
      {
        image: qube.image,
        ...(digest ? { imageDigest: digest } : {}),
        command: qube.command,
        env: qube.env ?? {},
        outputs: ["probe"],
        tier: "microvm",
        limits: {
          ...specLimitsFor(limits),
          outputBytes: 1024 * 1024,
          outputFiles: 16,
        },
        redundancy: { mode: "fixed", k: 1, quorum: 1 },
        deterministic: false,
      },
      this.identity,
    );
    const out = await mkdtemp(join(tmpdir(), "airqube-golem-probe-"));
    const startedAt = new Date();
    try {
      const result = await this.requestor.run(sealed, {
        outputDir: out,
        filter: (c) => c.id === this.provider.toLowerCase(),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const answer = result.answers[0];
      if (!answer)
        throw new PeerError("PROVIDER_NO_ANSWER", "The Golem provider did not answer the probe qube", {
          details: result.failures.map((f) => `${f.code}: ${f.message}`).join("; ") || result.reason,
        });
      const endedAt = new Date();
      return {
        tier: "microvm",
        imageDigest: sealed.spec.spec.image.digest,
        exitCode: answer.exitCode ?? -1,
        durationMs: endedAt.getTime() - startedAt.getTime(),
        stdout: answer.stdout,
        stderr: answer.stderr,
        stdoutTruncated: false,
        stderrTruncated: false,
        oomKilled: false,
        timedOut: false,
        outputs: [],
        startedAt: startedAt.toISOString(),
        endedAt: endedAt.toISOString(),
      };
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {}
}

/** Options of {@link runGolemProbe}. */
export interface GolemProbeOptions {
  /** The Golem configuration (yagna, payment, prices, images). */
  config: GolemConfig;
  /** Golem node id of the provider to probe. */
  provider: string;
  /** Requestor state (journal); default a temporary directory. */
  dataDir?: string;
  /** The probe image; default `PROBE_IMAGE` of `airqube/probes`. */
  image?: string;
  /** Docker digest of the probe image (its GVMI must be in `golem.images`); default looked up in Docker. */
  imageDigest?: string;
  /** Aborts the probe. */
  signal?: AbortSignal;
  /** golem-js overrides, for tests. */
  market?: Pick<GolemMarketOptions, "override" | "stagingDir" | "logger">;
}

/**
 * Runs the escape suite's main phase as one qube on one Golem provider and reports what its sandbox allows.
 *
 * @example
 * const report = await runGolemProbe({ config: loadGolemConfig(process.env, file.golem), provider: "0xabc..." });
 */
export async function runGolemProbe(options: GolemProbeOptions): Promise<ProbeReport & { provider: string }> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "airqube-golem-probe-req-")));
  const market = await GolemMarket.connect(options.config, {
    ...options.market,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const requestor = new Requestor({ market, dataDir });
  try {
    const sandbox = new GolemSandbox(
      options.provider,
      requestor,
      Identity.fromSeed(randomBytes(32)),
      options.imageDigest,
    );
    const startedAt = new Date().toISOString();
    const run = await sandbox.run(
      {
        image: options.image ?? PROBE_IMAGE,
        command: [PROBE_PROGRAM, "--phase", "main"],
        env: probeEnv(),
        limits: { ...SUITE_LIMITS },
      },
      options.signal ? { signal: options.signal } : {},
    );
    const parsed = parseProbeOutput(run.stdout, "main");
    const probes = PROBES.map((info): ProbeResult => {
      const base = { ...info, cves: [...info.cves] };
      if (info.id === 37)
        return {
          ...base,
          verdict: "skipped",
          evidence: "needs two qubes on one host: not judged on Golem",
          durationMs: 0,
        };
      const line = parsed.lines.get(info.id);
      if (!line || parsed.duplicates.has(info.id))
        return {
          ...base,
          verdict: "inconclusive",
          evidence: line ? "several verdicts" : `no verdict (exit ${run.exitCode})`,
          durationMs: 0,
        };
      const note = info.id === 30 ? " (no loopback canary on Golem: the probe's own verdict)" : "";
      return { ...base, verdict: line.verdict, evidence: `${line.evidence}${note}`, durationMs: line.ms ?? 0 };
    });
    return {
      suite: `${SUITE} (main phase, as a qube on Golem)`,
      suiteVersion: `${SUITE_VERSION}+${run.imageDigest}`,
      tier: "microvm",
      host: { kernel: "unknown", runtime: "golem-vm", runtimeVersion: options.config.runtime.version ?? "any" },
      startedAt,
      probes,
      summary: summarize(probes),
      provider: options.provider,
    };
  } finally {
    requestor.close();
    await market.close();
  }
}

/** What the probe is told: the suite's limits; nothing about the requestor's host, which is not the VM's. */
function probeEnv(): Record<string, string> {
  return {
    AIRQUBE_PROBE_TIER: "microvm",
    AIRQUBE_PROBE_PIDS: String(SUITE_LIMITS.pids),
    AIRQUBE_PROBE_MEMORY: String(SUITE_LIMITS.memoryBytes),
    AIRQUBE_PROBE_SCRATCH: String(SUITE_LIMITS.scratchBytes),
    AIRQUBE_PROBE_CPUS: String(SUITE_LIMITS.cpus),
    AIRQUBE_PROBE_DEADLINE_MS: String(SUITE_LIMITS.wallTimeMs),
    AIRQUBE_PROBE_CANARY_PORT: "0",
    AIRQUBE_PROBE_HOST_NS: "",
    AIRQUBE_PROBE_LSM: "",
    AIRQUBE_PROBE_NONCE: randomBytes(8).toString("hex"),
    AIRQUBE_PROBE_HOST_KERNEL: "",
    AIRQUBE_PROBE_HOST_BOOT_ID: "",
  };
}

/** Options of {@link golemRuntimeEvidence}. */
export interface GolemRuntimeEvidenceOptions {
  /** The Golem configuration; its runtime is taken as `airqube` whatever it says. */
  config: GolemConfig;
  /** Golem node id of the provider. */
  provider: string;
  /** The verifier's clock (ms since the epoch); default now. */
  now?: number;
  /** Aborts the scan. */
  signal?: AbortSignal;
  /** golem-js overrides, for tests. */
  market?: Pick<GolemMarketOptions, "override" | "logger">;
}

/**
 * The escape-suite evidence a provider of the `airqube` runtime publishes, verified: its offer is looked up in
 * a market scan (up to `timeouts.scanMs`) and its signed summaries checked as a requestor does before renting
 * (`verifyRuntimeOffer`); no probe qube runs. Throws PeerError `GOLEM_PROVIDER_NOT_FOUND` when the provider
 * offers no `airqube` runtime within the scan, and what `GolemMarket.connect` throws.
 *
 * @example
 * const { verdict } = await golemRuntimeEvidence({ config, provider: "0xabc..." });
 * if (verdict.ok) console.log(verdict.summary.pass, "pass; report", verdict.summary.reportHash);
 */
export async function golemRuntimeEvidence(
  options: GolemRuntimeEvidenceOptions,
): Promise<{ provider: string; verdict: RuntimeOfferVerdict }> {
  const config = { ...options.config, runtime: { ...options.config.runtime, name: RUNTIME_NAME } };
  const market = await GolemMarket.connect(config, {
    ...options.market,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const wanted = options.provider.toLowerCase();
  try {
    const scanSpec = market.glm.market.buildScanSpecification({
      workload: { runtime: { name: RUNTIME_NAME } },
      subnetTag: config.subnet,
      payment: { network: config.paymentNetwork, driver: config.paymentDriver },
    });
    const properties = await new Promise<Record<string, unknown> | undefined>((resolve, reject) => {
      let settled = false;
      let subscription: { unsubscribe(): void } | undefined;
      const finish = (value: Record<string, unknown> | undefined, error?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        subscription?.unsubscribe();
        if (error === undefined) resolve(value);
        else reject(error);
      };
      const onAbort = () =>
        finish(
          undefined,
          new TimeoutError("ABORTED", "The market scan was aborted", { cause: options.signal?.reason }),
        );
      const timer = setTimeout(() => finish(undefined), config.timeouts.scanMs);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      subscription = market.glm.market.scan(scanSpec).subscribe({
        next: (offer) => {
          if (offer.provider.id.toLowerCase() === wanted && offer.properties["golem.runtime.name"] === RUNTIME_NAME)
            finish(offer.properties as Record<string, unknown>);
        },
        error: (error) =>
          finish(undefined, fromGolemError(error, "GOLEM_SCAN_FAILED", "Could not scan the Golem market")),
        complete: () => finish(undefined),
      });
      if (settled) subscription.unsubscribe();
    });
    if (!properties)
      throw new PeerError("GOLEM_PROVIDER_NOT_FOUND", "The provider offers no airqube runtime", {
        details: `${options.provider}: not in a ${config.timeouts.scanMs} ms scan of subnet ${config.subnet}`,
      });
    const maxAgeMs = config.runtime.maxSummaryAgeMs;
    return {
      provider: wanted,
      verdict: verifyRuntimeOffer(properties, {
        now: options.now ?? Date.now(),
        ...(maxAgeMs !== undefined ? { maxAgeMs } : {}),
      }),
    };
  } finally {
    await market.close();
  }
}
