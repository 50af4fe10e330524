/**
 * The Golem runtime's state: its home directory (`$AIRQUBE_RUNTIME_HOME`, default
 * `~/.local/share/airqube/golem-runtime/`), its config file (`config.json` there), the accepted image digests
 * (config and `AIRQUBE_RUNTIME_IMAGES`), the resource flags exe-unit passes, and the per-workdir `deploy.json`.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import { sha256DigestSchema } from "../../images/limits.js";
import { UserError } from "../../qube/errors.js";
import type { SandboxLimits } from "../../sandbox/api.js";

/** The runtime's name, as ya-provider's descriptor and the offer carry it. */
export const RUNTIME_NAME = "airqube";
/** The runtime's version (the descriptor's and the Hello reply's). */
export const RUNTIME_VERSION = "0.1.0";
/** Largest config file read. */
const MAX_CONFIG_BYTES = 64 * 1024;
/** Most accepted image digests (the offer lists them all). */
export const MAX_ACCEPTED_IMAGES = 32;

/** The home directory of the runtime's state (config, probe report, instance records). */
export function runtimeHome(env: Record<string, string | undefined> = process.env): string {
  return resolve(env.AIRQUBE_RUNTIME_HOME ?? join(homedir(), ".local", "share", "airqube", "golem-runtime"));
}

const limitsSchema = z.strictObject({
  pids: z.int().min(4).max(4096).optional(),
  wallTimeMs: z
    .int()
    .min(100)
    .max(24 * 3600_000)
    .optional(),
  logBytes: z
    .int()
    .min(1024)
    .max(1024 * 1024)
    .optional(),
  scratchBytes: z
    .int()
    .min(1024 * 1024)
    .max(2 ** 40)
    .optional(),
  maxOutputFiles: z.int().min(1).max(100_000).optional(),
  maxOutputFileBytes: z
    .int()
    .min(1)
    .max(2 ** 40)
    .optional(),
});

/** The config file's schema (`$AIRQUBE_RUNTIME_HOME/config.json`); every field is optional. */
export const runtimeConfigSchema = z.strictObject({
  /** The sandbox tier every process runs in. */
  tier: z.enum(["container", "gvisor", "microvm"]).default("container"),
  /** Accepted task packages: image ids (`docker inspect` Id, the config's digest) or `docker save` archive digests. */
  images: z.array(sha256DigestSchema).max(MAX_ACCEPTED_IMAGES).default([]),
  /** Per-process limits beside those exe-unit's resource flags set. */
  limits: limitsSchema.default({}),
  /**
   * Host uids for the sandboxes (as the provider's `sandboxUids`): each runtime instance leases a block of 16
   * (uid-lease.ts); default none (every sandbox as nobody). Must not overlap the provider agent's range.
   */
  uids: z.strictObject({ first: z.int(), count: z.int().min(16).max(65_536) }).optional(),
  /** Where `test` caches escape-suite reports (by the gate's fingerprint); default none (the suite runs each time). */
  probeCache: z.string().min(1).max(4096).optional(),
});
export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;

/**
 * Reads the config file (absent: the defaults) and adds the digests of `AIRQUBE_RUNTIME_IMAGES` (comma
 * separated) and the probe cache of `AIRQUBE_RUNTIME_PROBE_CACHE`.
 *
 * @throws UserError `RUNTIME_CONFIG_INVALID`
 * @example
 * const config = await loadRuntimeConfig(runtimeHome());
 */
export async function loadRuntimeConfig(
  home: string,
  env: Record<string, string | undefined> = process.env,
): Promise<RuntimeConfig> {
  const file = join(home, "config.json");
  const text = await readFile(file).then(
    (bytes) => {
      if (bytes.length > MAX_CONFIG_BYTES)
        throw new UserError("RUNTIME_CONFIG_INVALID", "The runtime's config file is too large", { details: file });
      return bytes.toString("utf8");
    },
    (error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "{}";
      throw new UserError("RUNTIME_CONFIG_INVALID", "Could not read the runtime's config file", {
        details: `${file}: ${error.message}`,
        cause: error,
      });
    },
  );
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new UserError("RUNTIME_CONFIG_INVALID", "The runtime's config file is not JSON", {
      details: file,
      cause: error,
    });
  }
  const parsed = runtimeConfigSchema.safeParse(raw);
  if (!parsed.success)
    throw new UserError("RUNTIME_CONFIG_INVALID", "The runtime's config file is invalid", {
      details: `${file}: ${parsed.error.issues[0]?.path.join(".")} ${parsed.error.issues[0]?.message}`,
    });
  const config = parsed.data;
  const extra = (env.AIRQUBE_RUNTIME_IMAGES ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const digest of extra) {
    if (!sha256DigestSchema.safeParse(digest).success)
      throw new UserError("RUNTIME_CONFIG_INVALID", "AIRQUBE_RUNTIME_IMAGES holds an invalid digest", {
        details: `${digest.slice(0, 80)}: expected sha256:<64 hex>`,
      });
  }
  const images = [...new Set([...config.images, ...extra])];
  if (images.length > MAX_ACCEPTED_IMAGES)
    throw new UserError("RUNTIME_CONFIG_INVALID", "Too many accepted images", {
      details: `${images.length}, at most ${MAX_ACCEPTED_IMAGES}`,
    });
  const probeCache = env.AIRQUBE_RUNTIME_PROBE_CACHE || config.probeCache;
  return { ...config, images, ...(probeCache ? { probeCache } : {}) };
}

/** The global flags exe-unit passes (all optional). */
export interface RuntimeFlags {
  workdir?: string;
  taskPackage?: string;
  cpuCores?: string;
  memGib?: string;
  storageGib?: string;
}

const GIB = 1024 * 1024 * 1024;

function positive(name: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0 || number > max)
    throw new UserError("RUNTIME_FLAG_INVALID", `--${name} must be a positive number`, {
      details: `${String(value).slice(0, 40)} (at most ${max})`,
    });
  return number;
}

/**
 * The limits of every process: the resource flags (cores, memory, storage: the output cap) over the config's
 * limits over the sandbox defaults. The wall time defaults to 10 minutes per process.
 *
 * @throws UserError `RUNTIME_FLAG_INVALID`
 */
export function processLimits(flags: RuntimeFlags, config: RuntimeConfig): Partial<SandboxLimits> {
  const cpus = positive("cpu-cores", flags.cpuCores, 256);
  const memGib = positive("mem-gib", flags.memGib, 4096);
  const storageGib = positive("storage-gib", flags.storageGib, 65536);
  const c = config.limits;
  const output = {
    maxFiles: c.maxOutputFiles ?? 1000,
    maxFileBytes: c.maxOutputFileBytes ?? 64 * 1024 * 1024,
    maxTotalBytes: storageGib ? Math.floor(storageGib * GIB) : 256 * 1024 * 1024,
  };
  output.maxFileBytes = Math.min(output.maxFileBytes, output.maxTotalBytes);
  return {
    ...(cpus ? { cpus } : {}),
    ...(memGib ? { memoryBytes: Math.max(6 * 1024 * 1024, Math.floor(memGib * GIB)) } : {}),
    wallTimeMs: c.wallTimeMs ?? 600_000,
    ...(c.pids ? { pids: c.pids } : {}),
    ...(c.logBytes ? { logBytes: c.logBytes } : {}),
    // the outputs are staged in the sandbox's /output tmpfs: it must hold them
    scratchBytes: c.scratchBytes ?? Math.min(Math.max(output.maxTotalBytes, 64 * 1024 * 1024), 4 * GIB),
    output,
  };
}

/** What `deploy` wrote to `W/deploy.json`: the image every process of the activity runs. */
export const deployStateSchema = z.strictObject({
  imageId: sha256DigestSchema,
  archiveDigest: sha256DigestSchema,
  tier: z.enum(["container", "gvisor", "microvm"]),
  deployedAt: z.string().max(64),
});
export type DeployState = z.infer<typeof deployStateSchema>;

/** Writes `W/deploy.json` atomically. */
export async function writeDeployState(workdir: string, state: DeployState): Promise<void> {
  const file = join(workdir, "deploy.json");
  await writeFile(`${file}.${process.pid}.tmp`, `${JSON.stringify(state)}\n`);
  await rename(`${file}.${process.pid}.tmp`, file);
}

/**
 * Reads `W/deploy.json`.
 *
 * @throws UserError `RUNTIME_NOT_DEPLOYED` when there is none or it is invalid.
 */
export async function readDeployState(workdir: string): Promise<DeployState> {
  const file = join(workdir, "deploy.json");
  const text = await readFile(file, "utf8").catch(() => undefined);
  const parsed = text && text.length < 4096 ? deployStateSchema.safeParse(safeJson(text)) : undefined;
  if (!parsed?.success)
    throw new UserError("RUNTIME_NOT_DEPLOYED", "Nothing is deployed in this work directory: run `deploy` first", {
      details: file,
    });
  return parsed.data;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
