/**
 * The round engine, pure: no I/O, no clock, no randomness of its own. Given the redundancy policy, the
 * candidates (already filtered and ordered), reputation and a random source, it consumes what happened
 * (`EngineEvent`: admitted, locked, committed, failed, revealed ...) and answers with what to do next
 * (`EngineCommand`: find more providers, ask admission, lock, dispatch, ask to reveal, finish). It owns the
 * distinct-operator rule, replacements, the replica bound, tie-breakers and adaptive replication.
 *
 * The `Requestor` drives it over the market, payments and journal; the simulator drives it with simulated
 * answers, so the simulator's figures are the product's.
 *
 * A round asks for `want` commitments. Each of its seats picks the next distinct candidate; a paid run asks the
 * candidate to admit the qube before any money is locked for it (the first round locks all its admitted seats in
 * one job; replacements and tie-breakers lock their own), then dispatches. A seat that fails is refilled with the
 * next candidate (a failed lock is not: the seat is given up). When no seat is open or in flight, the round's
 * committed providers are asked to reveal; when every reveal is in, the quorum rule decides: verified, more
 * replicas (a new round of tie-breakers), or no consensus.
 *
 * @example
 * const engine = new RoundEngine({ policy, paid: false, allowFewer: false, random: Math.random, reputation: () => undefined });
 * let commands = engine.start(candidates);
 * // run each command, then feed what happened:
 * commands = engine.handle({ type: "committed", provider: "12D3…" });
 */
import type { RedundancyPolicy } from "../qube/index.js";
import { planReplication, type ReplicationPlan } from "./policy.js";
import { decide, type QuorumDecision, type Vote } from "./quorum.js";
import type { Reputation } from "./reputation.js";

/** What the engine needs to know of a provider. */
export interface EngineCandidate {
  id: string;
  payout?: string | undefined;
  operator?: string | undefined;
}

/** A failure as the engine sees it; `cause` is carried, never inspected. */
export interface EngineFailure {
  code: string;
  message: string;
  details?: string;
  cause?: unknown;
}

/** What happened (fed to `handle`). */
export type EngineEvent =
  /** The answer to `findMore`: every candidate known now (old ones included or not). */
  | { type: "found"; candidates: EngineCandidate[] }
  | { type: "admitted"; provider: string }
  | { type: "refused"; provider: string; failure: EngineFailure }
  | { type: "locked"; providers: string[] }
  /** `chainDown`: the chain could not be reached (then a run that committed nothing fails with this failure). */
  | { type: "lockFailed"; providers: string[]; failure: EngineFailure; chainDown: boolean }
  /** Escrow v2: some seats of a lock would not sign their `Accept`; nothing was locked. */
  | { type: "seatsRefused"; providers: string[]; refused: { provider: string; failure: EngineFailure }[] }
  | { type: "committed"; provider: string }
  | { type: "failed"; provider: string; failure: EngineFailure }
  /** `vote`: what the provider's valid reveal votes for (outputs root and outcome). */
  | { type: "revealed"; provider: string; vote: string }
  /**
   * `notReceived`: the reveal never arrived whole (the stream closed or timed out, or a fault on our side), which
   * proves nothing against the provider; otherwise it arrived and was invalid (a bad signature, a reveal that
   * does not open the commitment, outputs that do not hash to the signed root, an archive over the limits).
   */
  | { type: "revealFailed"; provider: string; failure: EngineFailure; notReceived?: boolean };

/** What to do next (returned by `start` and `handle`). */
export type EngineCommand =
  | { type: "findMore"; wanted: number }
  | { type: "admit"; providers: string[] }
  | { type: "lock"; providers: string[]; quorum: number }
  | { type: "dispatch"; provider: string }
  | { type: "reveal"; providers: string[] }
  /** For observers: fewer distinct providers than the redundancy asks for, and the run goes on. */
  | { type: "fewerProviders"; wanted: number; available: number }
  /** For observers: a round of tie-breakers starts. */
  | { type: "tieBreaker"; replicas: number; reason: string }
  | { type: "finished"; outcome: EngineOutcome };

/** How a run ends. */
export type EngineOutcome =
  | {
      kind: "decided";
      decision: QuorumDecision;
      /** Providers whose answer is the verified one. */
      valid: string[];
      /** Providers to mark: a dissenting answer, or a commitment without a valid reveal. */
      marked: { provider: string; reason: "dissent" | "no-valid-reveal" }[];
    }
  | { kind: "failed"; code: "NOT_ENOUGH_PROVIDERS"; available: number; wanted: number }
  /** Nothing committed in the first round; `failure` is the lock failure when the chain was down. */
  | {
      kind: "failed";
      code: "NO_PROVIDER";
      failures: { provider: string; failure: EngineFailure }[];
      chainDown?: EngineFailure;
    }
  /** The first round's lock failed: nothing was sent. */
  | { kind: "failed"; code: "LOCK_FAILED"; failure: EngineFailure };

/** Configuration of a {@link RoundEngine}. */
export interface EngineOptions {
  /** The qube's redundancy policy. */
  policy: RedundancyPolicy;
  /** Ask admission and lock before dispatching. */
  paid: boolean;
  /** Run on fewer distinct providers than a fixed policy's k. */
  allowFewer: boolean;
  /** A uniform random number in [0, 1), e.g. `Math.random`: decides the adaptive policy's spot checks. */
  random: () => number;
  /** A provider's reputation, if known: decides whether an adaptive policy trusts it to run alone. */
  reputation: (provider: string) => Reputation | undefined;
}

type Stage = "admitting" | "admitted" | "locking" | "dispatching" | "committed" | "revealing" | "done";

interface Round {
  index: number;
  want: number;
  /** Seats still to be given a provider. */
  open: number;
  /** Providers of this round and their stage. */
  stages: Map<string, Stage>;
  committed: string[];
  /** First paid round: admitted seats wait to be locked together. */
  batchLock: boolean;
}

/** Distinct-operator rule: no two seats to one provider id, payout address or declared operator. */
export function distinctFrom(chosen: EngineCandidate[]): (candidate: EngineCandidate) => boolean {
  return (candidate) =>
    !chosen.some(
      (c) =>
        c.id === candidate.id ||
        (c.payout !== undefined && c.payout === candidate.payout) ||
        (c.operator !== undefined && c.operator === candidate.operator),
    );
}

/** How many of `candidates` can serve one qube together under the distinct-operator rule. */
export function distinctCount(candidates: EngineCandidate[]): number {
  const chosen: EngineCandidate[] = [];
  for (const c of candidates) if (distinctFrom(chosen)(c)) chosen.push(c);
  return chosen.length;
}

/**
 * The round engine of one run (see the module comment for its rules). Call `start` with the candidates,
 * carry out the {@link EngineCommand}s it returns, feed what happened to `handle`, and repeat until a
 * `finished` command carries the {@link EngineOutcome}. Pure: it does no I/O and never throws on events.
 *
 * @example
 * const engine = new RoundEngine({ policy, paid: false, allowFewer: false, random: Math.random, reputation: () => undefined });
 * let commands = engine.start(candidates);
 * // run each command, then feed what happened:
 * commands = engine.handle({ type: "committed", provider: "12D3…" });
 */
export class RoundEngine {
  private candidates: EngineCandidate[] = [];
  /** Every provider given a seat, in order (the replica bound counts them). */
  readonly chosen: EngineCandidate[] = [];
  /** Every reveal so far: the root it votes for, or undefined when the reveal failed. */
  readonly votes: Vote[] = [];
  /** Providers whose reveal never arrived (a transport failure): neither counted nor marked. */
  private readonly notReceived = new Set<string>();
  /** Every provider that failed (refused, lock failed, failed before committing, or failed to reveal), with its failure. */
  readonly failures: { provider: string; failure: EngineFailure }[] = [];
  private plan!: ReplicationPlan;
  private round!: Round;
  private finding = false;
  /** A tie-breaker round waits for `found` because no distinct candidate was left. */
  private awaitingTieBreak: QuorumDecision | undefined;
  private lastChainDown: EngineFailure | undefined;
  /** The first paid round's providers, locked in one job. */
  private batchJob: string[] | undefined;
  private outcome: EngineOutcome | undefined;
  private out: EngineCommand[] = [];

  constructor(private readonly options: EngineOptions) {}

  /** The plan in force (the adaptive fallback replaces it). */
  get replication(): ReplicationPlan {
    return this.plan;
  }

  /** True once a `finished` command was returned. */
  get finished(): boolean {
    return this.outcome !== undefined;
  }

  /** Starts the run with the usable candidates, in the order they should be tried. */
  start(candidates: EngineCandidate[]): EngineCommand[] {
    this.candidates = [...candidates];
    const policy = this.options.policy;
    const first = this.candidates[0];
    this.plan = planReplication(policy, first ? this.options.reputation(first.id) : undefined, this.options.random);
    if (policy.mode === "fixed") {
      const available = distinctCount(this.candidates);
      if (available < policy.k) {
        if (!this.options.allowFewer) {
          this.finish({ kind: "failed", code: "NOT_ENOUGH_PROVIDERS", available, wanted: policy.k });
          return this.flush();
        }
        this.out.push({ type: "fewerProviders", wanted: policy.k, available });
      }
    }
    this.startRound(this.plan.replicas, 0);
    return this.flush();
  }

  /** Feeds one event; returns the commands it leads to (none once finished). */
  handle(event: EngineEvent): EngineCommand[] {
    if (this.outcome) return [];
    switch (event.type) {
      case "found":
        this.found(event.candidates);
        break;
      case "admitted":
        if (this.stageOf(event.provider) !== "admitting") break;
        if (this.round.batchLock) {
          this.round.stages.set(event.provider, "admitted");
          this.maybeLockBatch();
        } else {
          this.round.stages.set(event.provider, "locking");
          this.out.push({ type: "lock", providers: [event.provider], quorum: this.plan.quorum });
        }
        break;
      case "refused":
        if (this.stageOf(event.provider) !== "admitting") break;
        this.seatFailed(event.provider, event.failure, true);
        break;
      case "locked":
        for (const provider of event.providers) {
          if (this.stageOf(provider) !== "locking") continue;
          this.round.stages.set(provider, "dispatching");
          this.out.push({ type: "dispatch", provider });
        }
        break;
      case "lockFailed":
        if (event.chainDown) this.lastChainDown = event.failure;
        if (this.batchJob && event.providers.some((p) => this.batchJob?.includes(p))) {
          // the first round's job: nothing was sent, the run cannot go on without its budget
          this.finish({ kind: "failed", code: "LOCK_FAILED", failure: event.failure });
          break;
        }
        for (const provider of event.providers)
          if (this.stageOf(provider) === "locking") this.seatFailed(provider, event.failure, false);
        break;
      case "seatsRefused": {
        const locking = event.providers.filter((p) => this.stageOf(p) === "locking");
        const first = this.batchJob !== undefined && locking.some((p) => this.batchJob?.includes(p));
        if (first) {
          // the first round's job was not opened: the seats that accepted wait, admitted, for the next lock,
          // taken once the refusing seats are replaced (or given up)
          this.batchJob = undefined;
          this.round.batchLock = true;
          for (const p of locking) this.round.stages.set(p, "admitted");
        }
        // (a later round locks seat by seat: its refused lock is that one seat's)
        for (const { provider, failure } of event.refused)
          if (this.stageOf(provider) === (first ? "admitted" : "locking")) this.seatFailed(provider, failure, true);
        if (first) this.maybeLockBatch();
        break;
      }
      case "committed":
        if (this.stageOf(event.provider) !== "dispatching") break;
        this.round.stages.set(event.provider, "committed");
        this.round.committed.push(event.provider);
        break;
      case "failed":
        if (this.stageOf(event.provider) !== "dispatching") break;
        this.seatFailed(event.provider, event.failure, true);
        break;
      case "revealed":
      case "revealFailed": {
        if (this.stageOf(event.provider) !== "revealing") break;
        this.round.stages.set(event.provider, "done");
        if (event.type === "revealed") this.votes.push({ provider: event.provider, root: event.vote });
        else {
          this.failures.push({ provider: event.provider, failure: event.failure });
          this.votes.push({ provider: event.provider, root: undefined });
          if (event.notReceived) this.notReceived.add(event.provider);
        }
        if (![...this.round.stages.values()].includes("revealing")) this.decideNow();
        break;
      }
    }
    if (!this.outcome) this.checkRound();
    return this.flush();
  }

  private stageOf(provider: string): Stage | undefined {
    return this.round.stages.get(provider);
  }

  private flush(): EngineCommand[] {
    const commands = this.out;
    this.out = [];
    return commands;
  }

  private finish(outcome: EngineOutcome): void {
    this.outcome = outcome;
    this.out.push({ type: "finished", outcome });
  }

  private startRound(want: number, index: number): void {
    this.round = {
      index,
      want,
      open: want,
      stages: new Map(),
      committed: [],
      batchLock: this.options.paid && index === 0,
    };
    this.fill();
    this.checkRound();
  }

  private next(): EngineCandidate | undefined {
    return this.candidates.find(distinctFrom(this.chosen));
  }

  /** Gives open seats a provider while the replica bound allows; asks for more candidates when none is left. */
  private fill(): void {
    const admit: string[] = [];
    while (this.round.open > 0) {
      if (this.chosen.length >= this.plan.maxReplicas) {
        this.round.open = 0;
        break;
      }
      const candidate = this.next();
      if (!candidate) {
        if (!this.finding) {
          this.finding = true;
          this.out.push({ type: "findMore", wanted: this.chosen.length + 1 });
        }
        break;
      }
      this.chosen.push(candidate);
      this.round.open--;
      if (this.options.paid) {
        this.round.stages.set(candidate.id, "admitting");
        admit.push(candidate.id);
      } else {
        this.round.stages.set(candidate.id, "dispatching");
        this.out.push({ type: "dispatch", provider: candidate.id });
      }
    }
    if (admit.length > 0) this.out.push({ type: "admit", providers: admit });
  }

  private found(candidates: EngineCandidate[]): void {
    this.finding = false;
    for (const c of candidates) if (!this.candidates.some((known) => known.id === c.id)) this.candidates.push(c);
    const fresh = this.next() !== undefined;
    if (this.awaitingTieBreak) {
      const decision = this.awaitingTieBreak;
      this.awaitingTieBreak = undefined;
      if (!fresh || decision.status !== "need-more") {
        this.finishDecided({
          status: "no-consensus",
          reason: `${decision.status === "need-more" ? decision.reason : "undecided"}, and no further distinct provider is available`,
          groups: groupVotes(this.votes),
        });
        return;
      }
      this.out.push({ type: "tieBreaker", replicas: decision.replicas, reason: decision.reason });
      this.startRound(decision.replicas, this.round.index + 1);
      return;
    }
    if (!fresh)
      this.round.open = 0; // nobody else to ask: the open seats are given up
    else this.fill();
    if (this.round.batchLock) this.maybeLockBatch();
  }

  private seatFailed(provider: string, failure: EngineFailure, refill: boolean): void {
    this.round.stages.delete(provider);
    this.failures.push({ provider, failure });
    if (refill && this.fallBack()) {
      // the trusted provider refused or failed before committing: a quorum of others replaces it
      this.round.want = this.plan.replicas;
      this.round.open = Math.max(0, this.plan.replicas - this.round.stages.size);
      this.fill();
    } else if (refill) {
      this.round.open++;
      this.fill();
    }
    if (this.round.batchLock) this.maybeLockBatch();
  }

  /** First paid round: once every seat is admitted or given up, lock the admitted ones in one job. */
  private maybeLockBatch(): void {
    const round = this.round;
    if (!round.batchLock || round.open > 0 || this.finding) return;
    const stages = [...round.stages.entries()];
    if (stages.some(([, stage]) => stage === "admitting")) return;
    const admitted = stages.filter(([, stage]) => stage === "admitted").map(([provider]) => provider);
    round.batchLock = false;
    if (admitted.length === 0) return; // checkRound reports that nobody could run it
    for (const provider of admitted) round.stages.set(provider, "locking");
    this.batchJob = admitted;
    this.out.push({ type: "lock", providers: admitted, quorum: this.plan.quorum });
  }

  /** When no seat is open or in flight, the round's committed providers are asked to reveal. */
  private checkRound(): void {
    if (this.outcome || this.awaitingTieBreak) return;
    const round = this.round;
    if (round.open > 0 || this.finding || round.batchLock) return;
    const stages = [...round.stages.values()];
    if (stages.some((s) => s === "admitting" || s === "admitted" || s === "locking" || s === "dispatching")) return;
    if (stages.some((s) => s === "revealing" || s === "done")) return; // already revealing or decided
    if (round.committed.length === 0) {
      if (round.index === 0) {
        this.finish({
          kind: "failed",
          code: "NO_PROVIDER",
          failures: [...this.failures],
          ...(this.lastChainDown ? { chainDown: this.lastChainDown } : {}),
        });
      } else {
        this.finishDecided({
          status: "no-consensus",
          reason: "no further provider could run the qube for a tie-breaker",
          groups: groupVotes(this.votes),
        });
      }
      return;
    }
    for (const provider of round.committed) round.stages.set(provider, "revealing");
    this.out.push({ type: "reveal", providers: [...round.committed] });
  }

  private decideNow(): void {
    let decision = decide(this.votes, this.plan, this.chosen.length);
    // the trusted provider did not deliver a valid answer: fall back to replication
    if (decision.status === "no-consensus" && this.fallBack())
      decision = decide(this.votes, this.plan, this.chosen.length);
    if (decision.status !== "need-more") {
      this.finishDecided(decision);
      return;
    }
    if (this.next() === undefined) {
      this.awaitingTieBreak = decision;
      if (!this.finding) {
        this.finding = true;
        this.out.push({ type: "findMore", wanted: this.chosen.length + 1 });
      }
      return;
    }
    this.out.push({ type: "tieBreaker", replicas: decision.replicas, reason: decision.reason });
    this.startRound(decision.replicas, this.round.index + 1);
  }

  /**
   * Adaptive replication whose trusted provider runs alone: replaces the plan by replication to the quorum (the
   * trusted seat counts toward the bound). False when the run is not solo.
   */
  private fallBack(): boolean {
    const policy = this.options.policy;
    if (!this.plan.solo || policy.mode !== "adaptive") return false;
    this.plan = {
      replicas: policy.quorum,
      quorum: policy.quorum,
      maxReplicas: Math.max(policy.quorum, policy.maxReplicas) + this.chosen.length,
      solo: false,
    };
    return true;
  }

  private finishDecided(decision: QuorumDecision): void {
    const marked: { provider: string; reason: "dissent" | "no-valid-reveal" }[] = [];
    const valid: string[] = [];
    for (const vote of this.votes) {
      if (vote.root === undefined) {
        // an invalid reveal is proof against its provider; one lost in transport is not (its opening can still
        // reach the chain, where it is paid if it matches the quorum)
        if (!this.notReceived.has(vote.provider)) marked.push({ provider: vote.provider, reason: "no-valid-reveal" });
      } else if (decision.status === "verified") {
        if (vote.root === decision.root) valid.push(vote.provider);
        else marked.push({ provider: vote.provider, reason: "dissent" });
      }
    }
    this.finish({ kind: "decided", decision, valid, marked });
  }
}

/**
 * A shuffled copy (Fisher-Yates) drawing from `random`: the order in which candidates are tried.
 *
 * @example
 * shuffled(["a", "b", "c"], seededRandom(1));
 */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function groupVotes(votes: Vote[]): Record<string, string[]> {
  const groups: Record<string, string[]> = {};
  for (const v of votes) {
    const key = v.root ?? "(no valid reveal)";
    groups[key] = [...(groups[key] ?? []), v.provider];
  }
  return groups;
}
