/**
 * The opt-in reputation pre-filter of the Golem backend: golem-js's `ReputationSystem` (experimental) holds
 * the scores of Golem's reputation service (success rate, uptime, CPU benchmark scores, each 0..1, plus
 * rejected providers and operators), and providers below the configured minimums are dropped from the
 * candidates before redundancy picks any, and refused again at dispatch.
 *
 * The scores are fetched here rather than by `ReputationSystem.fetchData`, which has no time-out and checks
 * nothing of the body: with a deadline, a size cap and zod, so a service that is down, hangs or answers
 * garbage gives a typed error (PlatformError `GOLEM_REPUTATION_UNAVAILABLE`/`GOLEM_REPUTATION_INVALID`,
 * TimeoutError `GOLEM_REPUTATION_UNAVAILABLE_TIMEOUT`) and never rents anyone unfiltered.
 */
import { ReputationSystem } from "@golem-sdk/golem-js/experimental";
import { z } from "zod";
import { PlatformError, TimeoutError } from "../qube/index.js";
import type { GolemReputationConfig } from "./config.js";

/** Largest reputation document read (the public service's is a few hundred KiB). */
export const REPUTATION_MAX_BYTES = 16 * 1024 * 1024;

const score = z.number().finite().min(0).max(1);
const providerInfo = z.looseObject({ id: z.string().min(1).max(128), name: z.string().max(256).optional() });
const reputationDataSchema = z.looseObject({
  testedProviders: z
    .array(
      z.looseObject({
        provider: providerInfo,
        scores: z.looseObject({
          successRate: score,
          uptime: score,
          cpuSingleThreadScore: score,
          cpuMultiThreadScore: score,
        }),
      }),
    )
    .max(1_000_000),
  rejectedProviders: z
    .array(z.looseObject({ provider: providerInfo, reason: z.string().max(4096).optional() }))
    .max(1_000_000)
    .optional(),
  rejectedOperators: z
    .array(
      z.looseObject({
        operator: z.looseObject({ walletAddress: z.string().min(1).max(128) }),
        reason: z.string().max(4096).optional(),
      }),
    )
    .max(1_000_000)
    .optional(),
});

/** The score keys a minimum can be set on, by config key. */
const MINIMUMS = [
  ["minSuccessRate", "successRate"],
  ["minUptime", "uptime"],
  ["minCpuSingleThreadScore", "cpuSingleThreadScore"],
  ["minCpuMultiThreadScore", "cpuMultiThreadScore"],
] as const;

/** Why a provider may or may not be rented. */
export type ReputationVerdict = { ok: true } | { ok: false; reason: string };

function issues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
    .join("; ");
}

/**
 * Reads the body of `response`, refusing past `max` bytes without buffering the rest.
 */
async function readCapped(response: Response, max: number): Promise<string> {
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > max) {
    await response.body?.cancel().catch(() => undefined);
    throw new PlatformError("GOLEM_REPUTATION_INVALID", "The reputation service's answer is too large", {
      details: `${declared} bytes > ${max}`,
    });
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.byteLength;
    if (size > max) {
      await response.body?.cancel().catch(() => undefined);
      throw new PlatformError("GOLEM_REPUTATION_INVALID", "The reputation service's answer is too large", {
        details: `more than ${max} bytes`,
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The scores of one fetch, and the verdict on a provider under the configured minimums.
 *
 * @example
 * const filter = await ReputationFilter.load(config.reputation, config.paymentNetwork);
 * const ok = candidates.filter((c) => filter.verdict({ id: c.id }).ok);
 */
export class ReputationFilter {
  private readonly rejectedProviders = new Map<string, string>();
  private readonly rejectedOperators = new Map<string, string>();

  private constructor(
    /** golem-js's reputation client, holding the fetched data (ids in lower case). */
    readonly system: ReputationSystem,
    readonly config: GolemReputationConfig,
  ) {
    const data = system.getData();
    for (const r of data.rejectedProviders ?? []) this.rejectedProviders.set(r.provider.id, r.reason ?? "rejected");
    for (const r of data.rejectedOperators ?? [])
      this.rejectedOperators.set(r.operator.walletAddress, r.reason ?? "rejected");
  }

  /**
   * Fetches the scores of `paymentNetwork` from `config.url` (`?network=` as golem-js asks), within
   * `config.timeoutMs`.
   *
   * @throws PlatformError `GOLEM_REPUTATION_UNAVAILABLE` (refused, not 2xx) or `GOLEM_REPUTATION_INVALID`
   * (not JSON, not the expected shape, a score outside 0..1, too large); TimeoutError
   * `GOLEM_REPUTATION_UNAVAILABLE_TIMEOUT`, or `ABORTED` when `signal` aborted.
   */
  static async load(
    config: GolemReputationConfig,
    paymentNetwork: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<ReputationFilter> {
    options.signal?.throwIfAborted();
    const url = new URL(config.url);
    url.searchParams.set("network", paymentNetwork);
    const deadline = AbortSignal.timeout(config.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
    let text: string;
    try {
      const response = await fetch(url, { signal, redirect: "error", headers: { accept: "application/json" } });
      if (!response.ok) {
        await response.body?.cancel().catch(() => undefined);
        throw new PlatformError("GOLEM_REPUTATION_UNAVAILABLE", "The reputation service did not answer", {
          details: `${url.origin}${url.pathname}: HTTP ${response.status}`,
        });
      }
      text = await readCapped(response, REPUTATION_MAX_BYTES);
    } catch (error) {
      if (error instanceof PlatformError) throw error;
      if (options.signal?.aborted)
        throw new TimeoutError("ABORTED", "Fetching the reputation scores was aborted", { cause: error });
      if (deadline.aborted)
        throw new TimeoutError(
          "GOLEM_REPUTATION_UNAVAILABLE_TIMEOUT",
          "The reputation service did not answer in time",
          {
            details: `${url.origin}${url.pathname}: nothing within ${config.timeoutMs} ms`,
            cause: error,
          },
        );
      throw new PlatformError("GOLEM_REPUTATION_UNAVAILABLE", "The reputation service did not answer", {
        details: `${url.origin}${url.pathname}: ${error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error)}`,
        cause: error,
      });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new PlatformError("GOLEM_REPUTATION_INVALID", "The reputation service's answer is not JSON", {
        details: `${url.origin}${url.pathname}: ${text.slice(0, 80)}`,
        cause: error,
      });
    }
    const parsed = reputationDataSchema.safeParse(json);
    if (!parsed.success)
      throw new PlatformError("GOLEM_REPUTATION_INVALID", "The reputation service's answer is not reputation data", {
        details: `${url.origin}${url.pathname}: ${issues(parsed.error)}`,
      });
    const lower = <T extends { id: string }>(p: T): T => ({ ...p, id: p.id.toLowerCase() });
    const data = parsed.data;
    const system = new ReputationSystem({ url: config.url, paymentNetwork });
    system.setData({
      testedProviders: data.testedProviders.map((e) => ({
        provider: { walletAddress: "", name: "", ...lower(e.provider) },
        scores: e.scores,
      })),
      rejectedProviders: (data.rejectedProviders ?? []).map((e) => ({
        provider: { walletAddress: "", name: "", ...lower(e.provider) },
        ...(e.reason !== undefined ? { reason: e.reason } : {}),
      })),
      rejectedOperators: (data.rejectedOperators ?? []).map((e) => ({
        operator: { walletAddress: e.operator.walletAddress.toLowerCase() },
        ...(e.reason !== undefined ? { reason: e.reason } : {}),
      })),
    });
    return new ReputationFilter(system, config);
  }

  /**
   * Whether `provider` may be rented: not a rejected provider or operator, listed (unless
   * `acceptUnlisted`), and every configured minimum met.
   */
  verdict(provider: { id: string; walletAddress?: string }): ReputationVerdict {
    const id = provider.id.toLowerCase();
    const wallet = provider.walletAddress?.toLowerCase();
    const operator = wallet ? this.rejectedOperators.get(wallet) : undefined;
    if (operator !== undefined)
      return { ok: false, reason: `operator rejected by the reputation service: ${operator}` };
    const rejected = this.rejectedProviders.get(id);
    if (rejected !== undefined) return { ok: false, reason: `rejected by the reputation service: ${rejected}` };
    const scores = this.system.getProviderScores(id);
    if (!scores)
      return this.config.acceptUnlisted ? { ok: true } : { ok: false, reason: "not scored by the reputation service" };
    for (const [key, scoreKey] of MINIMUMS) {
      const min = this.config[key];
      if (min !== undefined && scores[scoreKey] < min)
        return { ok: false, reason: `${scoreKey} ${scores[scoreKey]} < ${min}` };
    }
    return { ok: true };
  }
}
