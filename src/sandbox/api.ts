/**
 * The sandbox port: run one qube in a fresh, hardened, disposable sandbox and destroy it afterwards.
 * Tiers (`container`, `microvm`) implement it; everything above the sandbox layer speaks only this.
 */

import type { Tier } from "../qube/schemas.js";
import type { SandboxUsage } from "./usage.js";

/** The isolation tiers Airqube knows (one definition, in the qube format: `TIERS`). */
export type { SandboxUsage, Tier };

/** Resource limits of one qube. All are hard caps enforced by the sandbox. */
export interface SandboxLimits {
  /** CPU share in cores (e.g. 0.5, 1, 2). */
  cpus: number;
  /** Memory in bytes; swap is never granted beyond it (Memory = MemorySwap). */
  memoryBytes: number;
  /** Maximum number of processes/threads. */
  pids: number;
  /** Size of the writable scratch space (/scratch and /tmp) in bytes. */
  scratchBytes: number;
  /** Wall-clock deadline in milliseconds, after which the qube is killed. */
  wallTimeMs: number;
  /** Cap on captured stdout and on stderr, each, in bytes. */
  logBytes: number;
  /** Caps applied when copying declared outputs out of the sandbox. */
  output: ArchiveLimits;
}

/** Caps for any archive crossing the sandbox boundary (inputs in, outputs out). */
export interface ArchiveLimits {
  maxFileBytes: number;
  maxTotalBytes: number;
  maxFiles: number;
}

/** One input file to place in the sandbox, read-only, under /input. */
export interface SandboxInput {
  /** Relative path under /input, e.g. `data/a.txt`. */
  path: string;
  /** Absolute path of the file on the host. */
  source: string;
}

/** What to run. */
export interface QubeRun {
  /** Image reference as known to the tier's runtime, e.g. `airqube/busybox:latest`. */
  image: string;
  /**
   * Expected image digest (`sha256:...`, the runtime's content-addressed image id). When set, a runtime
   * image with another digest is refused before anything runs.
   */
  imageDigest?: string;
  command: string[];
  env?: Record<string, string>;
  /** Input files, placed read-only under /input. */
  inputs?: SandboxInput[];
  /** Host directory whose whole contents are placed under /input (alternative to `inputs`). */
  inputDir?: string;
  /**
   * Declared output paths inside the sandbox (absolute, under /output or /scratch). Only these are copied
   * out, through the safe unpacker, into `outputDir`.
   */
  outputs?: string[];
  /** Host directory that receives the declared outputs; required when `outputs` is non-empty. */
  outputDir?: string;
  limits?: Partial<SandboxLimits>;
}

/** One file the qube produced, as unpacked on the host. */
export interface SandboxOutput {
  /** Path relative to the output directory, `/`-separated. */
  path: string;
  size: number;
  /** Lower-case hex SHA-256 of the contents. */
  sha256: string;
}

/** What the sandbox reports after the qube ended (normally, by a limit, or by time-out). */
export interface SandboxResult {
  tier: Tier;
  /** Digest of the image actually run. */
  imageDigest: string;
  /** Exit code; 137 when killed (time-out, OOM), -1 when unknown. */
  exitCode: number;
  durationMs: number;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  oomKilled: boolean;
  timedOut: boolean;
  outputs: SandboxOutput[];
  startedAt: string;
  endedAt: string;
  /** CPU time and peak memory metered by the host (the container's cgroup, the QEMU process); absent when unread. */
  usage?: SandboxUsage;
}

/** A sandbox tier. Each `run` uses a fresh sandbox that is destroyed before `run` settles. */
export interface Sandbox {
  readonly tier: Tier;
  /**
   * Runs one qube to completion (or to its deadline) and returns what happened. Rejects with an
   * `AirqubeError` when the sandbox itself fails (image missing, digest mismatch, bad output archive);
   * a qube that fails or is killed is a normal result. Always destroys the sandbox, even on abort.
   */
  run(qube: QubeRun, options?: { signal?: AbortSignal }): Promise<SandboxResult>;
  /** Releases pooled resources (warm containers, preloaded VMs). */
  close(): Promise<void>;
}

/** Defaults every tier applies when a limit is not given. */
export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  cpus: 1,
  memoryBytes: 256 * 1024 * 1024,
  pids: 64,
  scratchBytes: 64 * 1024 * 1024,
  wallTimeMs: 30_000,
  logBytes: 1024 * 1024,
  output: { maxFileBytes: 64 * 1024 * 1024, maxTotalBytes: 256 * 1024 * 1024, maxFiles: 1000 },
};
