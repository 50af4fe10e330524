/**
 * The offer properties of `ya-runtime-airqube`, the Airqube ExeUnit runtime for Golem providers, and the
 * signed escape-suite summary they carry.
 *
 * A Golem offer is a flat map of properties that yagna relays unsigned, so the runtime's evidence signs
 * itself: `airqube.probe.summary` holds, per offered tier, the counts of the suite's report, its hash, the
 * suite version and when it ran, signed with the runtime's Airqube key (Ed25519, domain
 * `airqube/probe-summary/v1` over the RFC 8785 bytes of the summary without its signature). A requestor
 * verifies the signature, the freshness and that nothing failed or was inconclusive before it rents anyone.
 *
 * What a signature proves: the holder of that key ran the suite with this outcome. It cannot bind the summary
 * to the Golem node that advertises it (the runtime does not know its node id when it writes the offer), so a
 * node may copy another's summary; the requestor therefore counts every node showing one summary key as one
 * operator (see `candidateFromOffer`), and copying gains no seat in a quorum.
 *
 * Pure: no I/O, no clock (`at` and `now` are passed in).
 */
import { z } from "zod";
import { type ProbeReport, reportHash } from "../../probes/report.js";
import { SUITE } from "../../probes/runner.js";
import { fromHex, toHex } from "../../qube/bytes.js";
import { canonicalBytes } from "../../qube/canonical.js";
import { InternalError, PeerError, UserError } from "../../qube/errors.js";
import { type Identity, verifySignature } from "../../qube/identity.js";
import {
  boundedInt,
  digestSchema,
  isoTimeSchema,
  sha256HexSchema,
  TIERS,
  type Tier,
  tierSchema,
} from "../../qube/schemas.js";
import { formatIssues } from "../../qube/validate.js";

/** The runtime's name in Golem (`golem.runtime.name`, the descriptor's `name`, the preset's exe-unit). */
export const RUNTIME_NAME = "airqube";

/** The offer property names the runtime publishes. */
export const OFFER_PROPERTY = {
  name: "golem.runtime.name",
  version: "golem.runtime.version",
  tiers: "airqube.runtime.tiers",
  images: "airqube.runtime.images",
  summary: "airqube.probe.summary",
} as const;

/** Signature kind of a probe summary (domain `airqube/probe-summary/v1`). */
export const PROBE_SUMMARY_KIND = "probe-summary";
/** Most image digests one offer lists. */
export const MAX_OFFER_IMAGES = 32;
/** Largest `airqube.probe.summary` value, in bytes (three tiers take about 1.5 KB). */
export const MAX_SUMMARY_PROPERTY_BYTES = 4096;
/** Largest `airqube.runtime.images` value, in bytes (32 digests of 71 characters and commas). */
export const MAX_IMAGES_PROPERTY_BYTES = MAX_OFFER_IMAGES * 72;
/** Largest `airqube.runtime.tiers` or version value, in bytes. */
export const MAX_SHORT_PROPERTY_BYTES = 64;
/** A summary older than this is stale (the suite judges the kernel and runtime, which change with updates). */
export const DEFAULT_SUMMARY_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
/** A summary dated up to this far in the future is accepted (the provider's clock may be ahead). */
export const SUMMARY_CLOCK_SKEW_MS = 5 * 60 * 1000;

const count = boundedInt(0, 1000);

/** The signed part of a probe summary. */
export const probeSummaryBodySchema = z.strictObject({
  v: z.literal(1),
  tier: tierSchema,
  pass: count,
  fail: count,
  inconclusive: count,
  skipped: count,
  /** `sha256:` and the report's hash (see `reportHash` in `airqube/probes`). */
  reportHash: digestSchema,
  /** The suite's version and the probe image's digest, e.g. `1.0.0+sha256:...`. */
  suiteVersion: z.string().regex(/^[\x21-\x7e]{1,160}$/, "must be 1-160 printable ASCII characters"),
  /** When the suite ran. */
  at: isoTimeSchema,
  /** Raw Ed25519 public key of the signer, lower-case hex. */
  publicKey: sha256HexSchema,
});

/** A probe summary with its signature (lower-case hex of 64 bytes). */
export const signedProbeSummarySchema = probeSummaryBodySchema.extend({
  signature: z.string().regex(/^[0-9a-f]{128}$/, "must be 64 bytes of lower-case hex"),
});

/** One tier's escape-suite outcome, signed by the runtime's key. */
export type SignedProbeSummary = z.infer<typeof signedProbeSummarySchema>;

const versionSchema = z.string().regex(/^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$/, "must be a version like 0.1.0");

/**
 * Signs the summary of a suite report with the runtime's key. Refuses a weakened run (`suite` other than
 * the suite's own name) and a report whose counts do not match its probes: UserError `PROBE_REPORT_UNFIT`.
 *
 * @example
 * const summary = signProbeSummary(report, identity, new Date()); // stored by `ya-runtime-airqube test`
 */
export function signProbeSummary(report: ProbeReport, identity: Identity, at: Date): SignedProbeSummary {
  if (report.suite !== SUITE)
    throw new UserError("PROBE_REPORT_UNFIT", "Only a full, unweakened run of the escape suite can be signed", {
      details: `suite ${JSON.stringify(report.suite.slice(0, 120))}`,
    });
  const counted = { pass: 0, fail: 0, inconclusive: 0, skipped: 0 };
  for (const probe of report.probes) counted[probe.verdict]++;
  const { summary } = report;
  if (
    counted.pass !== summary.pass ||
    counted.fail !== summary.fail ||
    counted.inconclusive !== summary.inconclusive ||
    counted.skipped !== summary.skipped
  )
    throw new UserError("PROBE_REPORT_UNFIT", "The report's summary does not match its probes");
  const body = parseBody(
    {
      v: 1,
      tier: report.tier,
      ...counted,
      reportHash: `sha256:${reportHash(report)}`,
      suiteVersion: report.suiteVersion,
      at: at.toISOString(),
      publicKey: toHex(identity.publicKey),
    },
    "user",
  );
  return { ...body, signature: toHex(identity.sign(PROBE_SUMMARY_KIND, canonicalBytes(body))) };
}

/** What {@link runtimeOfferProperties} publishes. */
export interface RuntimeOfferInput {
  /** The tiers the runtime runs qubes in, each with its summary. */
  tiers: readonly Tier[];
  /** Docker image digests (`sha256:...`) the runtime accepts as task packages. */
  images: readonly string[];
  /** One signed summary per offered tier (one key signs all). */
  summary: SignedProbeSummary | readonly SignedProbeSummary[];
  /** The runtime's version. */
  version: string;
}

/**
 * The offer properties of the runtime (string values, bounded sizes): what `offer-template` prints.
 * Throws UserError `RUNTIME_OFFER_INVALID` on anything a requestor's {@link verifyRuntimeOffer} would refuse
 * but age (unknown or repeated tier, a tier without its summary, too many images, an oversized value, a bad
 * signature, a suite that did not pass): a runtime never advertises what requestors refuse.
 *
 * @example
 * const properties = runtimeOfferProperties({ tiers: ["container"], images: [digest], summary, version: "0.1.0" });
 */
export function runtimeOfferProperties(input: RuntimeOfferInput): Record<string, string> {
  const invalid = (details: string) =>
    new UserError("RUNTIME_OFFER_INVALID", "The runtime's offer properties are invalid", { details });
  const summaries = Array.isArray(input.summary) ? [...input.summary] : [input.summary as SignedProbeSummary];
  const properties = {
    [OFFER_PROPERTY.name]: RUNTIME_NAME,
    [OFFER_PROPERTY.version]: input.version,
    [OFFER_PROPERTY.tiers]: input.tiers.join(","),
    [OFFER_PROPERTY.images]: input.images.join(","),
    [OFFER_PROPERTY.summary]: JSON.stringify(summaries),
  };
  if (input.tiers.length === 0) throw invalid("no tier");
  if (input.images.length === 0) throw invalid("no accepted image");
  // the same checks a requestor makes, signatures and a clean outcome included, as of the latest summary
  const now = Math.max(...summaries.map((summary) => Date.parse(summary?.at ?? "")));
  try {
    parseRuntimeOffer(properties, { now: Number.isFinite(now) ? now : 0, maxAgeMs: Number.MAX_SAFE_INTEGER });
  } catch (error) {
    if (error instanceof PeerError)
      throw invalid(error.details ? `${error.shortMessage}: ${error.details}` : error.shortMessage);
    throw error;
  }
  return properties;
}

/** A verified runtime offer. */
export interface RuntimeOffer {
  version: string;
  tiers: Tier[];
  images: string[];
  /** The summary of each offered tier. */
  summaries: Partial<Record<Tier, SignedProbeSummary>>;
  /** The summaries' signer (raw Ed25519 public key, hex). */
  publicKey: string;
}

/** Options of {@link verifyRuntimeOffer}. */
export interface VerifyRuntimeOfferOptions {
  /** The verifier's time (ms since the epoch or a Date). */
  now: number | Date;
  /** Summaries older than this are refused. Default {@link DEFAULT_SUMMARY_MAX_AGE_MS}. */
  maxAgeMs?: number;
}

/** The outcome of {@link verifyRuntimeOffer}. */
export type RuntimeOfferVerdict =
  | {
      ok: true;
      offer: RuntimeOffer;
      /** The summary of the weakest offered tier (every offered tier's is in `offer.summaries`). */
      summary: SignedProbeSummary;
    }
  | { ok: false; code: string; reason: string };

/**
 * Checks an offer's properties (untrusted): the runtime's name, every value's size before parsing, the tiers
 * and images, each summary's shape, signature (one key for all) and age, and that the suite passed on every
 * offered tier (no fail, no inconclusive, at least one pass).
 *
 * @example
 * const verdict = verifyRuntimeOffer(offer.properties, { now: Date.now() });
 * if (!verdict.ok) logger.info({ provider, reason: verdict.reason }, "offer refused");
 */
export function verifyRuntimeOffer(properties: unknown, options: VerifyRuntimeOfferOptions): RuntimeOfferVerdict {
  try {
    const offer = parseRuntimeOffer(properties, options);
    const weakest = TIERS.find((t) => offer.summaries[t] !== undefined);
    const summary = weakest ? offer.summaries[weakest] : undefined;
    if (!summary) throw new InternalError("RUNTIME_OFFER_NO_SUMMARY", "A verified offer has no summary");
    return { ok: true, offer, summary };
  } catch (error) {
    if (error instanceof PeerError)
      return {
        ok: false,
        code: error.code,
        reason: error.details ? `${error.shortMessage}: ${error.details}` : error.shortMessage,
      };
    throw error;
  }
}

/**
 * {@link verifyRuntimeOffer} that throws a PeerError instead: `RUNTIME_OFFER_NOT_AIRQUBE`,
 * `RUNTIME_OFFER_PROPERTY_MISSING`, `RUNTIME_OFFER_PROPERTY_TOO_LARGE`, `RUNTIME_OFFER_INVALID`,
 * `PROBE_SUMMARY_INVALID`, `PROBE_SUMMARY_SIGNATURE_INVALID`, `PROBE_SUMMARY_STALE`, `PROBE_SUMMARY_FUTURE`,
 * `PROBE_SUMMARY_NOT_CLEAN`.
 */
export function parseRuntimeOffer(properties: unknown, options: VerifyRuntimeOfferOptions): RuntimeOffer {
  if (typeof properties !== "object" || properties === null || Array.isArray(properties))
    throw new PeerError("RUNTIME_OFFER_INVALID", "The offer's properties are not an object");
  const props = properties as Record<string, unknown>;
  const name = property(props, OFFER_PROPERTY.name, MAX_SHORT_PROPERTY_BYTES);
  if (name !== RUNTIME_NAME)
    throw new PeerError("RUNTIME_OFFER_NOT_AIRQUBE", "The offer is not for the airqube runtime", {
      details: `golem.runtime.name ${JSON.stringify(name)}`,
    });
  const version = property(props, OFFER_PROPERTY.version, MAX_SHORT_PROPERTY_BYTES);
  if (!versionSchema.safeParse(version).success) throw offerInvalid(`${OFFER_PROPERTY.version}: not a version`);
  const tiers = listOf(
    property(props, OFFER_PROPERTY.tiers, MAX_SHORT_PROPERTY_BYTES),
    OFFER_PROPERTY.tiers,
    3,
    tierSchema,
  );
  const images = listOf(
    property(props, OFFER_PROPERTY.images, MAX_IMAGES_PROPERTY_BYTES),
    OFFER_PROPERTY.images,
    MAX_OFFER_IMAGES,
    digestSchema,
  );
  const summaryText = property(props, OFFER_PROPERTY.summary, MAX_SUMMARY_PROPERTY_BYTES);
  let raw: unknown;
  try {
    raw = JSON.parse(summaryText);
  } catch (error) {
    throw new PeerError("PROBE_SUMMARY_INVALID", "The probe summary is not JSON", { cause: error });
  }
  const parsed = z.array(signedProbeSummarySchema).min(1).max(TIERS.length).safeParse(raw);
  if (!parsed.success)
    throw new PeerError("PROBE_SUMMARY_INVALID", "The probe summary is invalid", {
      details: formatIssues(parsed.error.issues),
    });
  const summaries: Partial<Record<Tier, SignedProbeSummary>> = {};
  const publicKey = parsed.data[0]!.publicKey;
  for (const summary of parsed.data) {
    if (summaries[summary.tier]) throw summaryInvalid(`two summaries for ${summary.tier}`);
    if (!tiers.includes(summary.tier)) throw summaryInvalid(`a summary for ${summary.tier}, which is not offered`);
    if (summary.publicKey !== publicKey) throw summaryInvalid("summaries signed by different keys");
    checkSummary(summary, options);
    summaries[summary.tier] = summary;
  }
  const missing = tiers.filter((t) => !summaries[t]);
  if (missing.length > 0) throw summaryInvalid(`no summary for ${missing.join(", ")}`);
  return { version, tiers, images, summaries, publicKey };
}

/**
 * Checks one signed summary: signature, age against `now`, and a clean outcome. Throws a PeerError
 * `PROBE_SUMMARY_SIGNATURE_INVALID`, `PROBE_SUMMARY_STALE`, `PROBE_SUMMARY_FUTURE` or `PROBE_SUMMARY_NOT_CLEAN`.
 */
export function checkSummary(summary: SignedProbeSummary, options: VerifyRuntimeOfferOptions): void {
  const { signature, ...body } = summary;
  if (
    !verifySignature(
      PROBE_SUMMARY_KIND,
      canonicalBytes(body, { source: "peer" }),
      fromHex(signature, 64),
      fromHex(body.publicKey, 32),
    )
  )
    throw new PeerError("PROBE_SUMMARY_SIGNATURE_INVALID", "The probe summary's signature does not verify", {
      details: `${body.tier}, key ${body.publicKey.slice(0, 16)}...`,
    });
  const now = typeof options.now === "number" ? options.now : options.now.getTime();
  const at = Date.parse(body.at);
  const maxAge = options.maxAgeMs ?? DEFAULT_SUMMARY_MAX_AGE_MS;
  if (at > now + SUMMARY_CLOCK_SKEW_MS)
    throw new PeerError("PROBE_SUMMARY_FUTURE", "The probe summary is dated in the future", {
      details: `${body.tier}: ${body.at}`,
    });
  if (now - at > maxAge)
    throw new PeerError("PROBE_SUMMARY_STALE", "The probe summary is too old", {
      details: `${body.tier}: ran ${body.at}, older than ${Math.round(maxAge / 3600_000)} h`,
    });
  if (body.fail > 0 || body.inconclusive > 0 || body.pass === 0)
    throw new PeerError("PROBE_SUMMARY_NOT_CLEAN", "The escape suite did not pass on this provider", {
      details: `${body.tier}: ${body.pass} pass, ${body.fail} fail, ${body.inconclusive} inconclusive`,
    });
}

function parseBody(value: unknown, source: "user" | "peer"): z.infer<typeof probeSummaryBodySchema> {
  const parsed = probeSummaryBodySchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const details = formatIssues(parsed.error.issues);
  if (source === "user") throw new UserError("PROBE_REPORT_UNFIT", "The report cannot be summarised", { details });
  throw new PeerError("PROBE_SUMMARY_INVALID", "The probe summary is invalid", { details });
}

function property(props: Record<string, unknown>, name: string, maxBytes: number): string {
  const value = props[name];
  if (value === undefined)
    throw new PeerError("RUNTIME_OFFER_PROPERTY_MISSING", "The offer lacks a property", { details: name });
  if (typeof value !== "string") throw offerInvalid(`${name}: not a string`);
  // UTF-16 length bounds the work before the exact byte count
  if (value.length > maxBytes || Buffer.byteLength(value, "utf8") > maxBytes)
    throw new PeerError("RUNTIME_OFFER_PROPERTY_TOO_LARGE", "An offer property is too large", {
      details: `${name}: over ${maxBytes} bytes`,
    });
  return value;
}

function listOf<S extends z.ZodType<string>>(text: string, name: string, max: number, item: S): z.output<S>[] {
  const items = text.split(",");
  if (items.length > max) throw offerInvalid(`${name}: more than ${max} items`);
  const out: z.output<S>[] = [];
  for (const value of items) {
    const parsed = item.safeParse(value);
    if (!parsed.success) throw offerInvalid(`${name}: ${JSON.stringify(value.slice(0, 80))} is invalid`);
    if (out.includes(parsed.data)) throw offerInvalid(`${name}: ${value} is listed twice`);
    out.push(parsed.data);
  }
  return out;
}

function offerInvalid(details: string): PeerError {
  return new PeerError("RUNTIME_OFFER_INVALID", "The runtime offer is invalid", { details });
}

function summaryInvalid(details: string): PeerError {
  return new PeerError("PROBE_SUMMARY_INVALID", "The probe summary is invalid", { details });
}
