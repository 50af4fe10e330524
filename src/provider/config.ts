/**
 * Provider configuration: a JSON file and CLI flags, merged and validated with zod. Every number is bounded;
 * listen and bootstrap addresses must be loopback unless `public` is set (public mode, `--public`).
 */
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { z } from "zod";
import { providerImagesConfigSchema } from "../images/limits.js";
import { MAX_INPUT_TOTAL_BYTES, peerIdSchema, TIERS, tierSchema, UserError, weiSchema } from "../qube/index.js";
import { INTERMITTENT_LIE } from "./behaviour.js";

/** Adversary behaviours for tests; refused outside devnet or test configurations. */
export const behaviourSchema = z
  .string()
  .refine(
    (v) => /^(honest|lie|lazy|copy|slow|crash|collude:[A-Za-z0-9_-]{1,32})$/.test(v) || INTERMITTENT_LIE.test(v),
    "must be honest, lie, lie:every=N, lie:p=P[,seed=S], lazy, copy, slow, crash or collude:GROUP",
  );

/**
 * The provider configuration schema: every field bounded, defaults filled in. Refuses a non-loopback chain
 * RPC URL without `allowPublicRpc`, and adversary behaviours outside a devnet or test configuration.
 */
export const providerConfigSchema = z
  .strictObject({
    dataDir: z.string().min(1),
    listen: z.array(z.string()).min(1).max(8).default(["/ip4/127.0.0.1/tcp/0"]),
    bootstrap: z.array(z.string()).max(32).default([]),
    /** Public mode: real hosts (non-loopback listen, announce and bootstrap addresses; see net/addresses.ts). */
    public: z.boolean().default(false),
    /** @deprecated public mode and a public chain RPC at once; use `public` and `allowPublicRpc`. */
    allowPublic: z.boolean().default(false),
    /** Permit a chain RPC URL off this machine (kept apart from public mode). */
    allowPublicRpc: z.boolean().default(false),
    /** Public mode: also dial private-range addresses (a LAN, network-namespace tests). */
    allowPrivate: z.boolean().default(false),
    /** Public mode: also dial and announce loopback (tests on one machine only). */
    allowLoopback: z.boolean().default(false),
    /** Addresses announced instead of the listen addresses (a public address or DNS name in front of a NAT). */
    announce: z.array(z.string().min(1).max(256)).max(8).optional(),
    /** Addresses announced in addition to the listen addresses. */
    appendAnnounce: z.array(z.string().min(1).max(256)).max(8).optional(),
    /** Addresses never announced. */
    noAnnounce: z.array(z.string().min(1).max(256)).max(32).optional(),
    /** Peer ids never dialled nor accepted. */
    denyPeers: z.array(peerIdSchema).max(10_000).optional(),
    /** When given, the only peer ids dialled or accepted (a closed network; list the bootnodes too). */
    allowPeers: z.array(peerIdSchema).max(10_000).optional(),
    tiers: z.array(tierSchema).min(1).max(TIERS.length).default(["container"]),
    maxConcurrent: z.int().min(1).max(64).default(2),
    price: z
      .strictObject({ currency: z.string().regex(/^[A-Z]{2,10}$/), start: weiSchema, perSecond: weiSchema })
      .default({ currency: "GLM", start: "1000000000000000", perSecond: "100000000000000" }),
    /** EVM payout address; default: an address whose key is created in the data directory. */
    payout: z
      .string()
      .regex(/^0x[0-9a-fA-F]{40}$/)
      .optional(),
    operator: z.string().min(1).max(128).optional(),
    /**
     * Paid qubes: the chain's JSON-RPC URL and the escrow. The payout key is `payout.key` in the data
     * directory. With a chain, every qube must come with an open escrow job.
     */
    chain: z
      .strictObject({
        rpcUrl: z.url({ protocol: /^https?$/ }).max(2048),
        escrow: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
        /** Largest stake bonded for one qube, wei. */
        maxStake: weiSchema.default("10000000000000000000"),
        /** 2: `escrow` is an AirqubeEscrowV2 (standing stake, signed Accept and commitments); default 1. */
        escrowVersion: z.union([z.literal(1), z.literal(2)]).default(1),
        /** Escrow v2: the balance kept deposited as the standing stake, wei (default maxStake * maxConcurrent). */
        stakeDeposit: weiSchema.optional(),
      })
      .optional(),
    resources: z
      .strictObject({
        milliCpus: z.int().min(100).max(256_000),
        memoryBytes: z
          .int()
          .min(16 * 1024 * 1024)
          .max(2 ** 40),
        pids: z.int().min(8).max(65_536),
        scratchBytes: z
          .int()
          .min(1024 * 1024)
          .max(2 ** 44),
        maxWallTimeMs: z
          .int()
          .min(1000)
          .max(7 * 24 * 3600 * 1000),
        /** Largest total of a qube's inputs this provider accepts (offered; default DEFAULT_MAX_INPUT_BYTES). */
        maxInputBytes: z.int().min(0).max(MAX_INPUT_TOTAL_BYTES).optional(),
      })
      .optional(),
    /** Directory where escape-suite reports are cached by (tier, runtime, image, hardening) fingerprint. */
    probeCache: z.string().optional(),
    /** Host uids for every tier's sandboxes (container, gvisor, micro-VM), one per concurrent qube (default: all as nobody). */
    sandboxUids: z.strictObject({ first: z.int().min(1000), count: z.int().min(1).max(65_536) }).optional(),
    devnet: z.boolean().default(false),
    behaviour: behaviourSchema.default("honest"),
    /** Shipped images: whether taken, their bounds and the cache's size cap (src/images). */
    images: providerImagesConfigSchema.prefault({}),
  })
  .superRefine((config, ctx) => {
    if (
      config.chain &&
      !config.allowPublic &&
      !config.allowPublicRpc &&
      !/^https?:\/\/(127\.[0-9.]+|localhost|\[::1\])(:[0-9]+)?(\/|$)/.test(config.chain.rpcUrl)
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["chain", "rpcUrl"],
        message: "must be a loopback URL unless allowPublicRpc is set (--allow-public-rpc)",
      });
    }
    if (config.behaviour !== "honest" && !config.devnet && process.env.AIRQUBE_TEST !== "1") {
      ctx.addIssue({
        code: "custom",
        path: ["behaviour"],
        message: "adversary behaviours are only allowed in a devnet or test configuration",
      });
    }
  });

/** A validated provider configuration (see {@link providerConfigSchema}; built by {@link loadProviderConfig}). */
export type ProviderConfig = z.infer<typeof providerConfigSchema>;
/**
 * What a provider offers per qube: CPU in thousandths of a core, memory and scratch in bytes, processes, the
 * longest wall time in ms, and the largest total of inputs in bytes.
 */
export type ProviderResources = NonNullable<ProviderConfig["resources"]>;

/** The total input size a provider accepts when its config names none: 1 GiB. */
export const DEFAULT_MAX_INPUT_BYTES = 1024 * 1024 * 1024;

/** Resources this machine can offer by default: all but one core, half the memory, 1 GiB of inputs. */
export function defaultResources(): ProviderResources {
  return {
    milliCpus: Math.max(1000, (cpus().length - 1) * 1000),
    memoryBytes: Math.min(2 ** 40, Math.floor(totalmem() / 2)),
    pids: 256,
    scratchBytes: 1024 * 1024 * 1024,
    maxWallTimeMs: 3600 * 1000,
    maxInputBytes: DEFAULT_MAX_INPUT_BYTES,
  };
}

/**
 * Reads a config file (JSON) and merges flags over it (flags that are undefined are ignored).
 *
 * @throws UserError `CONFIG_UNREADABLE` (the file cannot be read or parsed) or `CONFIG_INVALID` (with the
 * first failing field).
 *
 * @example
 * const config = loadProviderConfig(undefined, { dataDir: "/var/lib/airqube", bootstrap: [bootstrapAddr] });
 */
export function loadProviderConfig(file: string | undefined, flags: Record<string, unknown>): ProviderConfig {
  let base: Record<string, unknown> = {};
  if (file) {
    try {
      base = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (error) {
      throw new UserError("CONFIG_UNREADABLE", "Could not read the provider config file", {
        details: `${file}: ${(error as Error).message}`,
        cause: error,
      });
    }
  }
  const merged = { ...base, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) };
  const result = providerConfigSchema.safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new UserError("CONFIG_INVALID", "The provider configuration is invalid", {
      details: `${issue?.path.join(".") || "(root)"}: ${issue?.message}`,
    });
  }
  return result.data;
}
