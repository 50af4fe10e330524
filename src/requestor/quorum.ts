/**
 * The quorum rule, pure. Answers are grouped by outputs root; a qube is verified when at least `quorum`
 * responders agree and nobody dissents. On dissent (another root, or a commitment without a valid reveal)
 * tie-breakers run until one root holds a qualified majority: its votes reach `quorum` plus the number of
 * dissenting votes, so that every dissent is outvoted by one more agreeing replica. Otherwise it asks for
 * more replicas, up to `maxReplicas`, and then reports no consensus.
 */

/** One provider's vote in a quorum. */
export interface Vote {
  provider: string;
  /** The outputs root revealed, or undefined for a provider that committed and never revealed validly. */
  root: string | undefined;
}

/**
 * What {@link decide} concludes: `verified` (the root, who agreed, who dissented), `need-more` (how many more
 * replicas to run, and why) or `no-consensus` (why, and the providers grouped by root).
 */
export type QuorumDecision =
  | { status: "verified"; root: string; agreeing: string[]; dissenting: string[] }
  | { status: "need-more"; replicas: number; reason: string }
  | { status: "no-consensus"; reason: string; groups: Record<string, string[]> };

/** The numbers {@link decide} applies. */
export interface QuorumPolicy {
  /** Equal answers needed when nobody dissents. */
  quorum: number;
  /** Most providers that may be tried in all; past it, no consensus. */
  maxReplicas: number;
}

/**
 * Decides on the votes so far. `used` is the number of providers tried (including failed ones).
 *
 * @example
 * decide([{ provider: "a", root: "r" }, { provider: "b", root: "r" }], { quorum: 2, maxReplicas: 5 }, 2);
 * // { status: "verified", root: "r", agreeing: ["a", "b"], dissenting: [] }
 */
export function decide(votes: Vote[], policy: QuorumPolicy, used: number): QuorumDecision {
  const groups = new Map<string, string[]>();
  const missing: string[] = [];
  for (const vote of votes) {
    if (vote.root === undefined) missing.push(vote.provider);
    else groups.set(vote.root, [...(groups.get(vote.root) ?? []), vote.provider]);
  }
  const ranked = [...groups.entries()].sort((a, b) => b[1].length - a[1].length);
  const [best, second] = ranked;
  const valid = votes.length - missing.length;
  const bestCount = best?.[1].length ?? 0;
  const others = valid - bestCount;
  if (best && bestCount >= policy.quorum && others === 0 && missing.length === 0) {
    return { status: "verified", root: best[0], agreeing: best[1], dissenting: [] };
  }
  // After dissent, a qualified majority: quorum votes plus one for every dissenting vote.
  if (best && bestCount >= policy.quorum + others + missing.length && (!second || second[1].length < bestCount)) {
    return {
      status: "verified",
      root: best[0],
      agreeing: best[1],
      dissenting: votes.map((v) => v.provider).filter((p) => !best[1].includes(p)),
    };
  }
  // The fewest extra replicas that could still produce a qualified majority for the leading root.
  const more = Math.max(1, policy.quorum + others + missing.length - bestCount);
  if (used + more > policy.maxReplicas) {
    return {
      status: "no-consensus",
      reason: `no qualified majority after ${used} replicas (bound ${policy.maxReplicas})`,
      groups: Object.fromEntries([
        ...ranked,
        ...(missing.length ? [["(no valid reveal)", missing] as [string, string[]]] : []),
      ]),
    };
  }
  return { status: "need-more", replicas: more, reason: others + missing.length > 0 ? "dissent" : "too few answers" };
}
