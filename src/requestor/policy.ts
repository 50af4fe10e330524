/**
 * Replication policies, pure. `fixed`: k replicas, quorum q, tie-breakers up to a bound. `adaptive` (BOINC's
 * adaptive replication): a provider trusted after `trustAfter` consecutive valid results runs a qube alone,
 * except for a spot check with probability `spotCheckPermille / 1000`, or 1/count when that is 0; an
 * untrusted one is replicated until `quorum` agree.
 */
import type { RedundancyPolicy } from "../qube/index.js";
import type { Reputation } from "./reputation.js";

/** How a run replicates a qube, as {@link planReplication} decides it. */
export interface ReplicationPlan {
  /** Replicas to dispatch first. */
  replicas: number;
  /** Equal answers needed for a verified result. */
  quorum: number;
  /** Most providers the run may give a seat to, tie-breakers included. */
  maxReplicas: number;
  /** True when one trusted provider runs the qube alone. */
  solo: boolean;
}

/** Default tie-breaker bound of fixed policies: k plus max(2, k). */
export function fixedMaxReplicas(k: number): number {
  return k + Math.max(2, k);
}

/** Spot-check probability for a trusted provider with `count` consecutive valid results. */
export function spotCheckProbability(policy: Extract<RedundancyPolicy, { mode: "adaptive" }>, count: number): number {
  return policy.spotCheckPermille > 0 ? policy.spotCheckPermille / 1000 : 1 / Math.max(1, count);
}

/**
 * Plans the first round for a qube whose first candidate has `first` reputation.
 *
 * @example
 * planReplication({ mode: "adaptive", quorum: 2, maxReplicas: 5, trustAfter: 10, spotCheckPermille: 0 }, rep, Math.random);
 */
export function planReplication(
  policy: RedundancyPolicy,
  first: Reputation | undefined,
  random: () => number,
): ReplicationPlan {
  if (policy.mode === "fixed")
    return { replicas: policy.k, quorum: policy.quorum, maxReplicas: fixedMaxReplicas(policy.k), solo: false };
  const trusted = first !== undefined && first.consecutiveValid >= policy.trustAfter;
  if (trusted && random() >= spotCheckProbability(policy, first.consecutiveValid)) {
    return { replicas: 1, quorum: 1, maxReplicas: 1, solo: true };
  }
  return {
    replicas: policy.quorum,
    quorum: policy.quorum,
    maxReplicas: Math.max(policy.quorum, policy.maxReplicas),
    solo: false,
  };
}
