/**
 * Pure mapping from a qube spec to a golem-js order, and from what the Golem market returns (untrusted,
 * validated with zod) to provider candidates. No I/O.
 *
 * The workload image is the GVMI whose hash the config maps the spec's Docker digest to: Golem checks a
 * SHA3-224 of the GVMI file, never a Docker image id, so the mapping is explicit.
 */
import type { MarketOrderSpec } from "@golem-sdk/golem-js";
import { z } from "zod";
import { type QubeSpec, TIERS, type Tier, tierSatisfies, UserError } from "../qube/index.js";
import type { ProviderCandidate } from "../requestor/api.js";
import type { GolemConfig, GolemImage } from "./config.js";
import { RUNTIME_NAME as AIRQUBE_RUNTIME, type SignedProbeSummary, verifyRuntimeOffer } from "./runtime/offer.js";

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
 * The golem-js order for one rental of `spec` on the provider `providerId`. With the `airqube` runtime, the
 * proposal an agreement is made on must carry a summary that verifies as the scanned offer's did, signed by
 * the same key when `probeKey` (the candidate's `operator`) is given: a provider cannot swap its evidence
 * between the scan and the agreement.
 *
 * @example
 * const rental = await glm.oneOf({ order: orderFor(spec, config, candidate.id, candidate.operator) });
 */
export function orderFor(spec: QubeSpec, config: GolemConfig, providerId?: string, probeKey?: string): MarketOrderSpec {
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
      ...(providerId || config.runtime.name === AIRQUBE_RUNTIME
        ? {
            offerProposalFilter: (proposal) =>
              (!providerId || proposal.provider.id.toLowerCase() === providerId.toLowerCase()) &&
              (config.runtime.name !== AIRQUBE_RUNTIME ||
                runtimeEvidence(proposal.properties, spec, config, Date.now(), probeKey).evidence !== undefined),
          }
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
 * too expensive for the per-qube cap, no address on our payment platform; with the `airqube` runtime, an
 * escape-suite summary that does not verify or is not clean, or an image or tier the runtime does not offer).
 * {@link offerVerdict} says why.
 */
export function candidateFromOffer(
  raw: unknown,
  spec: QubeSpec,
  config: GolemConfig,
  now: number = Date.now(),
): ProviderCandidate | undefined {
  const verdict = offerVerdict(raw, spec, config, now);
  return "candidate" in verdict ? verdict.candidate : undefined;
}

/** What a verified runtime offer proves, as the requestor records it for the candidate. */
export interface RuntimeEvidence {
  /** The offered tiers. */
  tiers: Tier[];
  /** The escape-suite summary of the tier the qube runs in (signed, verified, clean). */
  summary: SignedProbeSummary;
  /** The distinct-operator key: every node showing summaries of one key counts as one operator. */
  operator: string;
}

/**
 * Checks an `airqube` runtime offer's properties for `spec` at `now`: the signed summaries
 * (`verifyRuntimeOffer`), the qube's image among the accepted ones, and a tier at least as strong as the
 * qube's; with `probeKey`, the summaries' signer must be that one. Pure.
 */
export function runtimeEvidence(
  properties: unknown,
  spec: Pick<QubeSpec, "image" | "tier">,
  config: Pick<GolemConfig, "runtime">,
  now: number,
  probeKey?: string,
): { evidence: RuntimeEvidence; reason?: undefined } | { evidence?: undefined; reason: string } {
  const verdict = verifyRuntimeOffer(properties, {
    now,
    ...(config.runtime.maxSummaryAgeMs !== undefined ? { maxAgeMs: config.runtime.maxSummaryAgeMs } : {}),
  });
  if (!verdict.ok) return { reason: `${verdict.code}: ${verdict.reason}` };
  const { offer } = verdict;
  const operator = `probe-key:${offer.publicKey}`;
  if (probeKey !== undefined && probeKey !== operator)
    return { reason: "the escape-suite summary is signed by another key than the scanned offer's" };
  if (!offer.images.includes(spec.image.digest))
    return { reason: `the runtime does not accept the image ${spec.image.digest}` };
  // the weakest offered tier that satisfies the qube's: the evidence of the sandbox it will run in
  const tier = TIERS.find((t) => offer.tiers.includes(t) && tierSatisfies(spec.tier, t));
  const summary = tier ? offer.summaries[tier] : undefined;
  if (!summary) return { reason: `no offered tier satisfies ${spec.tier} (offers ${offer.tiers.join(", ")})` };
  return { evidence: { tiers: offer.tiers, summary, operator } };
}

/** An offer made a candidate, or the reason it was refused (`probe`: for its runtime's escape-suite evidence). */
export type OfferVerdict = { candidate: ProviderCandidate } | { reason: string; probe?: true };

/**
 * {@link candidateFromOffer} with the reason an offer is refused: `{ candidate }` or `{ reason }`.
 *
 * @example
 * const verdict = offerVerdict(offer, spec.spec, config, Date.now());
 * if ("reason" in verdict) logger.info({ provider: offer.providerId, reason: verdict.reason }, "offer refused");
 */
export function offerVerdict(raw: unknown, spec: QubeSpec, config: GolemConfig, now: number): OfferVerdict {
  const parsed = scannedOfferSchema.safeParse(raw);
  if (!parsed.success) return { reason: "malformed offer" };
  const { providerId, properties: p } = parsed.data;
  const usage = p["golem.com.usage.vector"];
  const coeffs = p["golem.com.pricing.model.linear.coeffs"];
  if (coeffs.length !== usage.length + 1) return { reason: "malformed pricing" };
  if (config.runtime.name !== p["golem.runtime.name"]) return { reason: "another runtime" };
  const need = workloadResources(spec);
  if ((p["golem.inf.mem.gib"] ?? 0) < need.minMemGib) return { reason: "too little memory" };
  if ((p["golem.inf.storage.gib"] ?? 0) < need.minStorageGib) return { reason: "too little storage" };
  const threads = p["golem.inf.cpu.threads"] ?? 0;
  if (threads < need.minCpuThreads) return { reason: "too few CPU threads" };
  const address = (p as Record<string, unknown>)[`golem.com.payment.platform.${paymentPlatform(config)}.address`];
  if (typeof address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(address))
    return { reason: "no address on the payment platform" };
  const envSec = coeffs[usage.indexOf("golem.usage.duration_sec")] ?? 0;
  const cpuSec = coeffs[usage.indexOf("golem.usage.cpu_sec")] ?? 0;
  const start = coeffs[coeffs.length - 1] ?? 0;
  if (
    start > config.pricing.maxStartPrice ||
    cpuSec * 3600 > config.pricing.maxCpuPerHourPrice ||
    envSec * 3600 > config.pricing.maxEnvPerHourPrice
  )
    return { reason: "above the price caps" };
  const seconds = spec.limits.wallTimeMs / 1000 + RENT_OVERHEAD_SEC;
  const glm = start + seconds * (envSec + cpuSec * threads);
  if (glm > config.maxGlmPerQube) return { reason: "above maxGlmPerQube" };
  const base = { id: providerId.toLowerCase(), payout: address.toLowerCase(), price: glmToWei(glm) };
  if (config.runtime.name !== AIRQUBE_RUNTIME) return { candidate: { ...base, tiers: ["container", "microvm"] } };
  // Airqube's runtime: its signed escape-suite summary is the provider's probe evidence (no remote probe)
  const checked = runtimeEvidence(p, spec, config, now);
  if (!checked.evidence) return { reason: checked.reason, probe: true };
  const { tiers, summary, operator } = checked.evidence;
  return {
    candidate: {
      ...base,
      tiers,
      operator,
      probe: {
        reportHash: summary.reportHash,
        pass: summary.pass,
        fail: summary.fail,
        inconclusive: summary.inconclusive,
      },
    },
  };
}
