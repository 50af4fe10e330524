/**
 * The verification simulator, pure and seeded: a pool of providers of which a fraction are saboteurs, many
 * qubes, and a replication policy; it counts wrong results accepted and replicas spent. It runs the same
 * round engine as the requestor (`RoundEngine`: quorum rule, replacements, tie-breakers, adaptive replication and
 * its fallback), fed with simulated answers, so its figures are the product's.
 *
 * Policies: `fixed:m` is Sarmenta's m-first majority voting (replicas are added one at a time until some
 * answer has m votes; the model behind the analytic error in VERIFICATION.md); `quorum:k:q` is Airqube's fixed
 * rule (k replicas, quorum q, tie-breakers on dissent, dissenters marked and excluded); `adaptive` is BOINC's
 * adaptive replication on top of Airqube's rule.
 */
import { type RedundancyPolicy, UserError } from "../qube/index.js";
import { type EngineCommand, type EngineOutcome, RoundEngine, shuffled } from "./engine.js";
import { MemoryReputation } from "./reputation.js";

export interface SimulationOptions {
  providers: number;
  /** Fraction of saboteurs (f). */
  saboteurs: number;
  /** Probability that a saboteur returns a wrong answer (s). Default 1. */
  saboteurErrorRate?: number;
  qubes: number;
  /** `fixed:M`, `quorum:K:Q` or `adaptive[:TRUST_AFTER[:QUORUM]]`. */
  policy: string;
  /** Saboteurs return the same wrong answer (the worst case; Sarmenta's model). */
  collude?: boolean;
  /** How many qubes a marked provider stays excluded. Default: for the rest of the run. */
  excludeQubes?: number;
  seed?: number;
}

export interface SimulationResult {
  policy: string;
  saboteurFraction: number;
  saboteurErrorRate: number;
  collude: boolean;
  qubes: number;
  wrongAccepted: number;
  noConsensus: number;
  errorRate: number;
  costFactor: number;
}

/** Sarmenta's analytic error of m-first majority voting with saboteur fraction f and error rate s. */
export function majorityVotingError(m: number, f: number, s = 1): number {
  const phi = f * s;
  let eps = 0;
  for (let j = m; j <= 2 * m - 1; j++) eps += binomial(2 * m - 1, j) * phi ** j * (1 - phi) ** (2 * m - 1 - j);
  return eps;
}

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/** A small, fast, seeded PRNG (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Answer = (provider: number, qube: number) => string;

export function simulate(options: SimulationOptions): SimulationResult {
  const random = seededRandom(options.seed ?? 1);
  const n = options.providers;
  const saboteurCount = Math.round(options.saboteurs * n);
  const s = options.saboteurErrorRate ?? 1;
  const isSaboteur = (p: number) => p < saboteurCount;
  const answer: Answer = (p, q) =>
    isSaboteur(p) && random() < s ? (options.collude ? "wrong" : `wrong-${p}-${q}`) : "right";
  let wrong = 0;
  let noConsensus = 0;
  let replicas = 0;
  const parts = options.policy.split(":");
  const kind = parts[0];
  const reputation = new MemoryReputation();
  const excludeMs = options.excludeQubes ?? Number.MAX_SAFE_INTEGER / 4;

  for (let q = 0; q < options.qubes; q++) {
    const now = new Date(q);
    const excluded = (p: number) => reputation.isExcluded(String(p), now);
    const used = new Set<number>();
    const pick = (): number | undefined => {
      for (let tries = 0; tries < 10 * n; tries++) {
        const p = Math.floor(random() * n);
        if (!used.has(p) && !excluded(p)) {
          used.add(p);
          return p;
        }
      }
      return undefined;
    };
    if (kind === "fixed") {
      // Sarmenta's m-first voting: add replicas one by one until an answer has m votes.
      const m = Number(parts[1] ?? 2);
      const counts = new Map<string, number>();
      for (;;) {
        const p = pick();
        if (p === undefined) {
          noConsensus++;
          break;
        }
        replicas++;
        const a = answer(p, q);
        const c = (counts.get(a) ?? 0) + 1;
        counts.set(a, c);
        if (c >= m) {
          if (a !== "right") wrong++;
          break;
        }
      }
      continue;
    }
    let policy: RedundancyPolicy;
    if (kind === "quorum") policy = { mode: "fixed", k: Number(parts[1] ?? 3), quorum: Number(parts[2] ?? 2) };
    else if (kind === "adaptive")
      policy = {
        mode: "adaptive",
        quorum: Number(parts[2] ?? 2),
        maxReplicas: 8,
        trustAfter: Number(parts[1] ?? 10),
        spotCheckPermille: 0,
      };
    else
      throw new UserError("POLICY_UNKNOWN", "Unknown simulation policy", {
        details: `${options.policy}: use fixed:M, quorum:K:Q or adaptive[:TRUST_AFTER[:QUORUM]]`,
      });
    // The product's own engine decides: candidates in a random order, every answer fed back as the market would.
    const pool = shuffled(
      Array.from({ length: n }, (_, p) => p).filter((p) => !excluded(p)),
      random,
    ).map((p) => ({ id: String(p) }));
    const engine = new RoundEngine({
      policy,
      paid: false,
      allowFewer: true,
      random,
      reputation: (id) => reputation.get(id),
    });
    let outcome: EngineOutcome | undefined;
    let commands = engine.start(pool);
    while (commands.length > 0) {
      const next: EngineCommand[] = [];
      for (const command of commands) {
        if (command.type === "dispatch") next.push(...engine.handle({ type: "committed", provider: command.provider }));
        else if (command.type === "reveal")
          for (const p of command.providers)
            next.push(...engine.handle({ type: "revealed", provider: p, vote: answer(Number(p), q) }));
        else if (command.type === "findMore") next.push(...engine.handle({ type: "found", candidates: [] }));
        else if (command.type === "finished") outcome = command.outcome;
      }
      commands = next;
    }
    replicas += engine.chosen.length;
    if (outcome?.kind === "decided" && outcome.decision.status === "verified") {
      if (outcome.decision.root !== "right") wrong++;
      for (const p of outcome.valid) reputation.recordValid(p);
      for (const { provider } of outcome.marked) reputation.recordWrong(provider, now, excludeMs);
    } else noConsensus++;
  }
  return {
    policy: options.policy,
    saboteurFraction: options.saboteurs,
    saboteurErrorRate: s,
    collude: Boolean(options.collude),
    qubes: options.qubes,
    wrongAccepted: wrong,
    noConsensus,
    errorRate: wrong / options.qubes,
    costFactor: replicas / options.qubes,
  };
}
