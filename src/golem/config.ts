/**
 * Settings of the Golem backend: from the environment, in golem-js's own names (`YAGNA_API_URL`,
 * `YAGNA_APPKEY`, `PAYMENT_NETWORK`, `YAGNA_SUBNET`), and from the `golem` section of the config file.
 * Everything is validated with zod. The yagna URL must be loopback unless `allowRemote` is set, because a
 * requestor machine talks to its own yagna daemon and to nothing else.
 */
import { z } from "zod";
import { digestSchema, UserError } from "../qube/index.js";

/** Payment networks golem-js 3 knows; `holesky` is its (and our) testnet default. */
export const PAYMENT_NETWORKS = [
  "holesky",
  "mainnet",
  "polygon",
  "amoy",
  "sepolia",
  "goerli",
  "mumbai",
  "rinkeby",
] as const;

/** The Golem image (GVMI) a Docker image digest maps to. */
export const golemImageSchema = z.strictObject({
  /** SHA3-224 of the .gvmi file, 56 lower-case hex (what `gvmkit-build` prints). */
  hash: z.string().regex(/^[0-9a-f]{56}$/, "must be the 56-hex SHA3-224 of the GVMI file"),
  /**
   * Where providers download it (`http(s)://...`), or `file:///path/image.gvmi` to serve it from this
   * requestor through yagna. Without it golem-js would ask registry.golem.network, which needs `allowRemote`.
   */
  url: z
    .string()
    .regex(/^(https?|file):\/\/\S+$/, "must be an http(s):// or file:// URL")
    .max(2048)
    .optional(),
});
/** A Golem image (GVMI): its SHA3-224 `hash` and the `url` providers download it from. */
export type GolemImage = z.infer<typeof golemImageSchema>;

const glmAmount = z.number().finite().min(0).max(1_000_000);

const reputationScore = z.number().finite().min(0).max(1);

/**
 * The opt-in reputation pre-filter (`golem.reputation`): on when any minimum is set. Scores are golem-js's
 * (Golem's reputation service, each 0..1); a provider below any minimum, rejected by the service, or (unless
 * `acceptUnlisted`) not scored at all is never rented.
 */
export const golemReputationSchema = z.strictObject({
  /** The scores' URL: https, or http on a loopback address. Default: golem-js's DEFAULT_REPUTATION_URL. */
  url: z.string().url().max(2048).optional(),
  minSuccessRate: reputationScore.optional(),
  minUptime: reputationScore.optional(),
  minCpuSingleThreadScore: reputationScore.optional(),
  minCpuMultiThreadScore: reputationScore.optional(),
  /** Rent providers the service has not scored (default false: only scored providers). */
  acceptUnlisted: z.boolean().optional(),
  /** Deadline of the fetch, ms (default 10 s). */
  timeoutMs: z.int().min(100).max(600_000).optional(),
});

/** The validated reputation pre-filter: `url` and `timeoutMs` defaulted. */
export interface GolemReputationConfig {
  url: string;
  minSuccessRate?: number;
  minUptime?: number;
  minCpuSingleThreadScore?: number;
  minCpuMultiThreadScore?: number;
  acceptUnlisted: boolean;
  timeoutMs: number;
}

/** golem-js's reputation service (`DEFAULT_REPUTATION_URL` of `@golem-sdk/golem-js/experimental`). */
export const DEFAULT_REPUTATION_URL = "https://reputation.golem.network/v2/providers/scores";

/** The file-config section (`golem` in the Airqube config file). */
export const golemFileConfigSchema = z.strictObject({
  apiUrl: z.string().url().optional(),
  appKey: z.string().min(1).max(256).optional(),
  paymentNetwork: z.enum(PAYMENT_NETWORKS).optional(),
  paymentDriver: z
    .string()
    .regex(/^[a-z0-9-]{1,32}$/)
    .optional(),
  subnet: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .optional(),
  allowRemote: z.boolean().optional(),
  /** Docker image digest ("sha256:...") → Golem image. */
  images: z.record(digestSchema, golemImageSchema).optional(),
  /** Linear-pricing caps per provider, in GLM (tGLM on testnets). */
  pricing: z
    .strictObject({
      maxStartPrice: glmAmount,
      maxCpuPerHourPrice: glmAmount,
      maxEnvPerHourPrice: glmAmount,
    })
    .partial()
    .optional(),
  /** Hard cap per provider and qube, in GLM: the size of the allocation each rental pays from. */
  maxGlmPerQube: glmAmount.positive().optional(),
  runtime: z
    .strictObject({
      name: z.string().regex(/^[a-z0-9-]{1,32}$/),
      version: z.string().max(32).optional(),
      /**
       * The `airqube` runtime: the oldest escape-suite summary an offer may carry, ms (default 30 days; see
       * `verifyRuntimeOffer`).
       */
      maxSummaryAgeMs: z
        .int()
        .min(60_000)
        .max(365 * 24 * 3_600_000)
        .optional(),
    })
    .optional(),
  /** Where inputs go and outputs come from inside the VM: both must be VOLUMEs of the image. */
  layout: z
    .strictObject({
      input: z.string().regex(/^\/[A-Za-z0-9_./-]{1,200}$/),
      output: z.string().regex(/^\/[A-Za-z0-9_./-]{1,200}$/),
    })
    .optional(),
  timeouts: z
    .strictObject({
      scanMs: z.int().min(100).max(600_000),
      negotiationMs: z.int().min(100).max(3_600_000),
      deployMs: z.int().min(100).max(3_600_000),
      transferMs: z
        .int()
        .min(100)
        .max(24 * 3_600_000),
      finalizeMs: z.int().min(100).max(3_600_000),
      runGraceMs: z.int().min(0).max(3_600_000),
    })
    .partial()
    .optional(),
  /** The opt-in reputation pre-filter (see {@link golemReputationSchema}). */
  reputation: golemReputationSchema.optional(),
  /** Cap on the captured stdout and on stderr of a qube, each, in bytes. */
  logBytes: z
    .int()
    .min(0)
    .max(64 * 1024 * 1024)
    .optional(),
});
/** The `golem` section of the Airqube config file, as written (see {@link golemFileConfigSchema}). */
export type GolemFileConfig = z.input<typeof golemFileConfigSchema>;

/** The complete, validated settings. */
export interface GolemConfig {
  apiUrl: string;
  appKey: string;
  paymentNetwork: (typeof PAYMENT_NETWORKS)[number];
  paymentDriver: string;
  subnet: string;
  allowRemote: boolean;
  images: Record<string, GolemImage>;
  pricing: { maxStartPrice: number; maxCpuPerHourPrice: number; maxEnvPerHourPrice: number };
  maxGlmPerQube: number;
  /**
   * The ExeUnit runtime asked for: `vm` (Golem's VM; the image is a GVMI) or `airqube` (`ya-runtime-airqube`:
   * Airqube's own sandboxes; the image is a `docker save` archive, and offers must carry a verified, clean
   * escape-suite summary).
   */
  runtime: { name: string; version?: string; maxSummaryAgeMs?: number };
  layout: { input: string; output: string };
  timeouts: {
    scanMs: number;
    negotiationMs: number;
    deployMs: number;
    transferMs: number;
    finalizeMs: number;
    runGraceMs: number;
  };
  logBytes: number;
  /** The reputation pre-filter; absent when no minimum is set (the default: off). */
  reputation?: GolemReputationConfig;
}

/**
 * Defaults of every setting but the app key, `allowRemote` and the images: the local yagna, the Holesky
 * testnet, price caps in GLM, and time-outs in milliseconds.
 */
export const DEFAULT_GOLEM_CONFIG = {
  apiUrl: "http://127.0.0.1:7465",
  paymentNetwork: "holesky",
  paymentDriver: "erc20",
  subnet: "public",
  pricing: { maxStartPrice: 0.5, maxCpuPerHourPrice: 1.0, maxEnvPerHourPrice: 0.5 },
  maxGlmPerQube: 1.0,
  runtime: { name: "vm" },
  layout: { input: "/input", output: "/output" },
  timeouts: {
    scanMs: 10_000,
    negotiationMs: 120_000,
    deployMs: 300_000,
    transferMs: 600_000,
    finalizeMs: 60_000,
    runGraceMs: 30_000,
  },
  logBytes: 1024 * 1024,
} as const satisfies Omit<GolemConfig, "appKey" | "allowRemote" | "images">;

const envSchema = z.object({
  YAGNA_API_URL: z.string().url().optional(),
  YAGNA_APPKEY: z.string().min(1).max(256).optional(),
  PAYMENT_NETWORK: z.enum(PAYMENT_NETWORKS).optional(),
  YAGNA_SUBNET: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .optional(),
});

function issues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
}

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host === "::1") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Command-line settings of the Golem backend (`airqube run --golem-min-success-rate`): over the file's. */
export interface GolemFlags {
  /** `golem.reputation.minSuccessRate`: turns the reputation pre-filter on. */
  minSuccessRate?: number;
  /** `golem.runtime.name` (`airqube run --golem-runtime`): `vm` or `airqube`. */
  runtime?: string;
}

/** The runtimes `--golem-runtime` names: Golem's VM, and Airqube's ExeUnit runtime (`ya-runtime-airqube`). */
export const GOLEM_RUNTIMES = ["vm", "airqube"] as const;

function withFlags(fileConfig: unknown, flags: GolemFlags): unknown {
  if (typeof fileConfig !== "object" || fileConfig === null) return fileConfig;
  let file = fileConfig as { reputation?: unknown; runtime?: unknown };
  if (flags.minSuccessRate !== undefined) {
    const reputation = typeof file.reputation === "object" && file.reputation !== null ? file.reputation : {};
    file = { ...file, reputation: { ...reputation, minSuccessRate: flags.minSuccessRate } };
  }
  if (flags.runtime !== undefined) {
    const runtime = typeof file.runtime === "object" && file.runtime !== null ? file.runtime : {};
    // the file's version pins the file's runtime only
    const { version: _version, ...rest } = runtime as { version?: unknown };
    const same = (runtime as { name?: unknown }).name === flags.runtime;
    file = { ...file, runtime: { ...(same ? runtime : rest), name: flags.runtime } };
  }
  return file;
}

/**
 * Validates the Golem settings: environment first (golem-js's names), then the command-line `flags`, then the
 * file config, then defaults.
 * Throws UserError `GOLEM_CONFIG_INVALID`, `YAGNA_APPKEY_MISSING` or `YAGNA_URL_REMOTE`.
 *
 * @example
 * const config = loadGolemConfig(process.env, fileConfig.golem);
 * const market = await GolemMarket.connect(config);
 */
export function loadGolemConfig(
  env: Record<string, string | undefined>,
  fileConfig?: unknown,
  flags: GolemFlags = {},
): GolemConfig {
  const envParsed = envSchema.safeParse(
    Object.fromEntries(
      ["YAGNA_API_URL", "YAGNA_APPKEY", "PAYMENT_NETWORK", "YAGNA_SUBNET"].map((k) => [k, env[k] || undefined]),
    ),
  );
  if (!envParsed.success)
    throw new UserError("GOLEM_CONFIG_INVALID", "The Golem settings in the environment are invalid", {
      details: issues(envParsed.error),
    });
  const fileParsed = golemFileConfigSchema.safeParse(withFlags(fileConfig ?? {}, flags));
  if (!fileParsed.success)
    throw new UserError("GOLEM_CONFIG_INVALID", "The golem section of the config file is invalid", {
      details: issues(fileParsed.error),
    });
  const e = envParsed.data;
  const f = fileParsed.data;
  const appKey = e.YAGNA_APPKEY ?? f.appKey;
  if (!appKey)
    throw new UserError("YAGNA_APPKEY_MISSING", "No yagna app key", {
      details: "set YAGNA_APPKEY (see `yagna app-key list`) or golem.appKey in the config file",
    });
  const apiUrl = (e.YAGNA_API_URL ?? f.apiUrl ?? DEFAULT_GOLEM_CONFIG.apiUrl).replace(/\/+$/, "");
  const allowRemote = f.allowRemote ?? false;
  const url = new URL(apiUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new UserError("GOLEM_CONFIG_INVALID", "The yagna API URL must be http(s)", { details: apiUrl });
  if (!allowRemote && !isLoopbackHost(url.hostname))
    throw new UserError("YAGNA_URL_REMOTE", "The yagna API URL is not a loopback address", {
      details: `${apiUrl}: run yagna on this machine, or set golem.allowRemote in the config file`,
    });
  const d = DEFAULT_GOLEM_CONFIG;
  const reputation = reputationFrom(f.reputation);
  return {
    apiUrl,
    appKey,
    paymentNetwork: e.PAYMENT_NETWORK ?? f.paymentNetwork ?? d.paymentNetwork,
    paymentDriver: f.paymentDriver ?? d.paymentDriver,
    subnet: e.YAGNA_SUBNET ?? f.subnet ?? d.subnet,
    allowRemote,
    images: f.images ?? {},
    pricing: { ...d.pricing, ...f.pricing },
    maxGlmPerQube: f.maxGlmPerQube ?? d.maxGlmPerQube,
    runtime: f.runtime ?? { ...d.runtime },
    layout: f.layout ?? { ...d.layout },
    timeouts: { ...d.timeouts, ...f.timeouts },
    logBytes: f.logBytes ?? d.logBytes,
    ...(reputation ? { reputation } : {}),
  };
}

/** The reputation pre-filter when a minimum is set; UserError `GOLEM_CONFIG_INVALID` for a plain-http remote URL. */
function reputationFrom(r: z.infer<typeof golemReputationSchema> | undefined): GolemReputationConfig | undefined {
  if (!r) return undefined;
  const { url = DEFAULT_REPUTATION_URL, acceptUnlisted = false, timeoutMs = 10_000, ...minimums } = r;
  const parsed = new URL(url);
  if (parsed.protocol !== "https:" && !(parsed.protocol === "http:" && isLoopbackHost(parsed.hostname)))
    throw new UserError("GOLEM_CONFIG_INVALID", "The reputation URL must be https (or http on loopback)", {
      details: url,
    });
  if (Object.values(minimums).every((m) => m === undefined)) return undefined;
  return { url, acceptUnlisted, timeoutMs, ...minimums };
}
