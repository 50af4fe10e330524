/**
 * Admission control, pure: may this provider take this qube now? Returns the first reason to refuse, with a
 * stable code the requestor can act on, or undefined when the qube is admitted.
 */

import { qubePrice } from "../net/offers/offer.js";
import type { QubeSpec, Tier } from "../qube/index.js";
import { DEFAULT_MAX_INPUT_BYTES, type ProviderResources } from "./config.js";

/** What {@link checkAdmission} decides on: the qube, its price, and the provider's offer and load. */
export interface AdmissionInput {
  spec: QubeSpec;
  /** The price offered for the qube, wei. */
  price: bigint;
  /** The tiers the provider offers. */
  tiers: Tier[];
  /** The largest resources the provider gives one qube. */
  resources: ProviderResources;
  /** The provider's price list, wei: a start price plus a price per second of wall time. */
  pricing: { start: bigint; perSecond: bigint };
  /** Qubes running now. */
  running: number;
  maxConcurrent: number;
  /** True while the provider shuts down. */
  draining: boolean;
}

/** Why a provider refuses a qube: a stable `code` (e.g. `AT_CAPACITY`) and a human-readable `reason`. */
export interface Refusal {
  code: string;
  reason: string;
}

/** Minimum price for a spec under a price list. */
export function minimumPrice(spec: QubeSpec, pricing: { start: bigint; perSecond: bigint }): bigint {
  return qubePrice(pricing, spec.limits.wallTimeMs);
}

/**
 * Decides whether the provider admits a qube: undefined when it does, otherwise the first refusal among
 * `DRAINING`, `AT_CAPACITY`, `TIER_UNAVAILABLE`, `NETWORK_UNSUPPORTED`, `LIMITS_EXCEEDED`,
 * `INPUTS_TOO_LARGE`, `NORMALISATION_UNSUPPORTED` and `PRICE_TOO_LOW`. Pure.
 *
 * @example
 * const refusal = checkAdmission({ spec, price, tiers: ["container"], resources, pricing, running: 0, maxConcurrent: 2, draining: false });
 * if (refusal) console.log(refusal.code, refusal.reason);
 */
export function checkAdmission(input: AdmissionInput): Refusal | undefined {
  const { spec, resources } = input;
  if (input.draining) return { code: "DRAINING", reason: "the provider is shutting down" };
  if (input.running >= input.maxConcurrent)
    return { code: "AT_CAPACITY", reason: `all ${input.maxConcurrent} slots are busy` };
  if (!input.tiers.includes(spec.tier))
    return {
      code: "TIER_UNAVAILABLE",
      reason: `tier ${spec.tier} is not offered (offered: ${input.tiers.join(", ")})`,
    };
  if (spec.network.mode !== "none")
    return { code: "NETWORK_UNSUPPORTED", reason: "only qubes without network are run" };
  const over: [string, number, number][] = [
    ["milliCpus", spec.limits.milliCpus, resources.milliCpus],
    ["memoryBytes", spec.limits.memoryBytes, resources.memoryBytes],
    ["pids", spec.limits.pids, resources.pids],
    ["scratchBytes", spec.limits.scratchBytes, resources.scratchBytes],
    ["wallTimeMs", spec.limits.wallTimeMs, resources.maxWallTimeMs],
  ];
  for (const [name, asked, offered] of over) {
    if (asked > offered)
      return { code: "LIMITS_EXCEEDED", reason: `${name} ${asked} is over this provider's ${offered}` };
  }
  const inputBytes = spec.inputs.reduce((total, input) => total + input.size, 0);
  const maxInputBytes = resources.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES;
  if (inputBytes > maxInputBytes)
    return {
      code: "INPUTS_TOO_LARGE",
      reason: `inputs of ${inputBytes} bytes are over this provider's ${maxInputBytes}`,
    };
  const n = spec.normalise;
  if (!n.stripModes || !n.stripOwners || !n.stripTimestamps) {
    return {
      code: "NORMALISATION_UNSUPPORTED",
      reason: "outputs are compared without modes, owners and timestamps; set all strip rules",
    };
  }
  const min = minimumPrice(spec, input.pricing);
  if (input.price < min)
    return { code: "PRICE_TOO_LOW", reason: `offered ${input.price} wei, the minimum for this qube is ${min} wei` };
  return undefined;
}
