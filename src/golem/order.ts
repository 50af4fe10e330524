/**
 * Pure mapping from a qube spec to a golem-js order, and from what the Golem market returns (untrusted,
 * validated with zod) to provider candidates. No I/O.
 *
 * The workload image is the GVMI whose hash the config maps the spec's Docker digest to: Golem checks a
 * SHA3-224 of the GVMI file, never a Docker image id, so the mapping is explicit.
 */
import type { MarketOrderSpec } from "@golem-sdk/golem-js";
import { z } from "zod";
import { type QubeSpec, UserError } from "../qube/index.js";
import type { ProviderCandidate } from "../requestor/api.js";
import type { GolemConfig, GolemImage } from "./config.js";

const GiB = 1024 ** 3;
/** 1 GLM in its smallest unit (18 decimals). */
export const GLM_WEI = 10n ** 18n;
/** Time a rental needs beyond the qube's wall time: deploy, transfers, packing. */
export const RENT_OVERHEAD_SEC = 15 * 60;

/** The GVMI mapped to the spec's image, or UserError `GOLEM_IMAGE_UNMAPPED`/`GOLEM_IMAGE_URL_MISSING`. */
export function golemImageFor(
  spec: Pick<QubeSpec, "image">,
  config: Pick<GolemConfig, "images" | "allowRemote">,
): GolemImage {
  const image = config.images[spec.image.digest];
  if (!image)
    throw new UserError("GOLEM_IMAGE_UNMAPPED", "No Golem image (GVMI) is configured for this Docker image", {
      details: `${spec.image.ref} ${spec.image.digest}: convert it with gvmkit-build and add golem.images["${spec.image.digest}"] = { hash, url } to the config file`,
    });
  if (!image.url && !config.allowRemote)
    throw new UserError("GOLEM_IMAGE_URL_MISSING", "The Golem image has no URL", {
      details: `${spec.image.digest}: give golem.images[...].url (http(s):// or file://); looking the hash up in the Golem registry needs golem.allowRemote`,
    });
  return image;
}

/** Hours of rental for a qube, in quarter hours so that golem-js's `rentHours * 3600` is a whole number. */
export function rentHoursFor(spec: Pick<QubeSpec, "limits">): number {
  const seconds = Math.ceil(spec.limits.wallTimeMs / 1000) + RENT_OVERHEAD_SEC;
  return Math.ceil(seconds / 900) / 4;
}

/** Resources asked of the provider: memory, disk for scratch plus inputs plus outputs twice (files and tar). */
export function workloadResources(spec: Pick<QubeSpec, "limits" | "inputs">): {
  minMemGib: number;
  minStorageGib: number;
  minCpuThreads: number;
} {
  const inputs = spec.inputs.reduce((sum, i) => sum + i.size, 0);
  const storage = spec.limits.scratchBytes + inputs + 2 * spec.limits.outputBytes;
  return {
    minMemGib: Math.ceil((spec.limits.memoryBytes / GiB) * 100) / 100,
    minStorageGib: Math.max(1, Math.ceil((storage / GiB) * 100) / 100),
    minCpuThreads: Math.max(1, Math.ceil(spec.limits.milliCpus / 1000)),
  };
}

/**
 * The golem-js order for one rental of `spec` on the provider `providerId`.
 *
 * @example
 * const rental = await glm.oneOf({ order: orderFor(spec, config, candidate.id) });
 */
export function orderFor(spec: QubeSpec, config: GolemConfig, providerId?: string): MarketOrderSpec {
  const image = golemImageFor(spec, config);
  return {
    demand: {
      subnetTag: config.subnet,
      workload: {
        imageHash: image.hash,
        ...(image.url ? { imageUrl: image.url } : {}),
        runtime: { name: config.runtime.name, ...(config.runtime.version ? { version: config.runtime.version } : {}) },
        ...workloadResources(spec),
      },
    },
    market: {
      rentHours: rentHoursFor(spec),
      pricing: { model: "linear", ...config.pricing },
      ...(providerId
        ? { offerProposalFilter: (proposal) => proposal.provider.id.toLowerCase() === providerId.toLowerCase() }
        : {}),
    },
  };
}

/** The payment platform golem-js uses for a network ("erc20-holesky-tglm", "erc20-polygon-glm"). */
export function paymentPlatform(config: Pick<GolemConfig, "paymentDriver" | "paymentNetwork">): string {
  const token = config.paymentNetwork === "mainnet" || config.paymentNetwork === "polygon" ? "glm" : "tglm";
  return `${config.paymentDriver}-${config.paymentNetwork}-${token}`;
}

/** What we use of a scanned offer (yagna's `Offer` DTO); anything else in it is ignored. */
export const scannedOfferSchema = z.object({
  offerId: z.string().min(1).max(256),
  providerId: z.string().regex(/^0x[0-9a-fA-F]{40}$/, "must be a Golem node id"),
  properties: z
    .object({
      "golem.com.usage.vector": z.array(z.string().max(128)).min(1).max(16),
      "golem.com.pricing.model.linear.coeffs": z.array(z.number().finite().min(0)).min(1).max(17),
      "golem.inf.mem.gib": z.number().finite().min(0).optional(),
      "golem.inf.storage.gib": z.number().finite().min(0).optional(),
      "golem.inf.cpu.threads": z.int().min(0).max(100_000).optional(),
      "golem.runtime.name": z.string().max(64).optional(),
      "golem.node.id.name": z.string().max(256).optional(),
    })
    .passthrough(),
});

/** GLM (a float from the market) → wei, rounded up. */
export function glmToWei(glm: number): bigint {
  if (!Number.isFinite(glm) || glm <= 0) return 0n;
  const [whole, frac = ""] = glm.toFixed(18).split(".");
  const wei = BigInt(whole ?? "0") * GLM_WEI + BigInt(frac.padEnd(18, "0").slice(0, 18));
  return wei;
}

/** A GLM amount as yagna writes it (a decimal string, at most 18 decimals) → wei; undefined when malformed. */
export function parseGlm(amount: unknown): bigint | undefined {
  if (typeof amount !== "string") return undefined;
  const match = /^(\d{1,30})(?:\.(\d{1,18}))?$/.exec(amount);
  if (!match) return undefined;
  return BigInt(match[1]!) * GLM_WEI + BigInt((match[2] ?? "").padEnd(18, "0"));
}

/**
 * Whether a provider's bill (an invoice amount or a debit note's total due) is within what the requestor agreed
 * to pay for the rental: at most the candidate's quoted price for the whole rental and at most `maxGlmPerQube`.
 */
export function withinAgreedPrice(
  amount: unknown,
  quoteWei: bigint,
  config: Pick<GolemConfig, "maxGlmPerQube">,
): boolean {
  const billed = parseGlm(amount);
  if (billed === undefined) return false;
  const cap = glmToWei(config.maxGlmPerQube);
  return billed <= (quoteWei < cap ? quoteWei : cap);
}

/**
 * Turns a scanned offer into a candidate for `spec`, or undefined when it does not fit (invalid, too small,
 * too expensive for the per-qube cap, no address on our payment platform).
 */
export function candidateFromOffer(raw: unknown, spec: QubeSpec, config: GolemConfig): ProviderCandidate | undefined {
  const parsed = scannedOfferSchema.safeParse(raw);
  if (!parsed.success) return undefined;
  const { providerId, properties: p } = parsed.data;
  const usage = p["golem.com.usage.vector"];
  const coeffs = p["golem.com.pricing.model.linear.coeffs"];
  if (coeffs.length !== usage.length + 1) return undefined;
  if (config.runtime.name !== p["golem.runtime.name"]) return undefined;
  const need = workloadResources(spec);
  if ((p["golem.inf.mem.gib"] ?? 0) < need.minMemGib) return undefined;
  if ((p["golem.inf.storage.gib"] ?? 0) < need.minStorageGib) return undefined;
  const threads = p["golem.inf.cpu.threads"] ?? 0;
  if (threads < need.minCpuThreads) return undefined;
  const address = (p as Record<string, unknown>)[`golem.com.payment.platform.${paymentPlatform(config)}.address`];
  if (typeof address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(address)) return undefined;
  const envSec = coeffs[usage.indexOf("golem.usage.duration_sec")] ?? 0;
  const cpuSec = coeffs[usage.indexOf("golem.usage.cpu_sec")] ?? 0;
  const start = coeffs[coeffs.length - 1] ?? 0;
  if (
    start > config.pricing.maxStartPrice ||
    cpuSec * 3600 > config.pricing.maxCpuPerHourPrice ||
    envSec * 3600 > config.pricing.maxEnvPerHourPrice
  )
    return undefined;
  const seconds = spec.limits.wallTimeMs / 1000 + RENT_OVERHEAD_SEC;
  const glm = start + seconds * (envSec + cpuSec * threads);
  if (glm > config.maxGlmPerQube) return undefined;
  return {
    id: providerId.toLowerCase(),
    payout: address.toLowerCase(),
    tiers: ["container", "microvm"],
    price: glmToWei(glm),
  };
}
