/**
 * The requestor SDK: find providers on a market (embedded network or Golem), run a sealed qube on k distinct
 * providers with commit-reveal, decide by quorum (tie-breakers on dissent, up to a bound), and hand back the
 * verified outputs with every provider's signed statement. Typed progress events let a CLI or UI follow it.
 */
import { randomUUID } from "node:crypto";
import { mkdir, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { jobToJson } from "../chain/job-json.js";
import { rootToBytes32, saltToBytes32 } from "../chain/qube-ids.js";
import { COMMIT_GRACE_MS } from "../net/exchange/constants.js";
import { PeerError, toAirqubeError, UserError, type VerifiedQubeSpec } from "../qube/index.js";
import { type DirLock, lockDataDir } from "../store/dir-lock.js";
import type { ComputeMarket, Dispatch, EscrowSeat, ProviderAnswer, ProviderCandidate, SealedQube } from "./api.js";
import { type JournalEscrowJob, RequestorJournal } from "./journal.js";
import { outcomeOf, type QubeOutcome, voteKey } from "./outcome.js";
import { closeJournalled, isChainDown, type PaymentReport, type PaymentsPort } from "./payments.js";
import { planReplication } from "./policy.js";
import { decide, type QuorumDecision, type Vote } from "./quorum.js";
import { type ReputationStore, SqliteReputation } from "./reputation.js";

/** Progress events (past tense, for observers only). */
export type RunEvent =
  | { type: "offersFound"; count: number; usable: number }
  /** Fewer distinct providers than the redundancy asks for, and the run goes on (`allowFewer`). */
  | { type: "fewerProviders"; wanted: number; available: number }
  | { type: "agreementSigned"; provider: string }
  | { type: "qubeSent"; provider: string }
  | { type: "qubeStarted"; provider: string }
  | { type: "qubeCommitted"; provider: string }
  | { type: "revealRequested"; providers: string[] }
  | { type: "resultReceived"; provider: string; outputsRoot: string }
  | { type: "providerFailed"; provider: string; code: string; message: string; details?: string }
  | { type: "tieBreakerDispatched"; replicas: number; reason: string }
  | { type: "providerMarked"; provider: string }
  | { type: "decided"; status: QuorumDecision["status"] }
  | { type: "budgetLocked"; jobId: string; providers: string[]; budget: string; txHash: string }
  | { type: "paymentClosed"; report: PaymentReport };

export interface RunOptions {
  signal?: AbortSignal;
  onProgress?: (event: RunEvent) => void;
  /** Where the verified outputs go. */
  outputDir: string;
  /** Extra filter on candidates (price cap, probe score ...). */
  filter?: (candidate: ProviderCandidate) => boolean;
  /** Providers to try first (when they are eligible), e.g. a security team probing a given provider. */
  prefer?: string[];
  /** Shuffles candidates (inject a seeded one in tests). Default Math.random. */
  random?: () => number;
  /**
   * Run on fewer distinct providers than the redundancy asks for when no more are available (a
   * `fewerProviders` event says so). Without it, that is a `NOT_ENOUGH_PROVIDERS` error before any dispatch.
   */
  allowFewer?: boolean;
}

export interface RunResult {
  qubeId: string;
  status: "verified" | "no-consensus";
  /** True only for a deterministic qube whose outputs a quorum agreed on. */
  verified: boolean;
  outputsRoot?: string;
  agreeing: string[];
  dissenting: string[];
  /** Every answer received, with the provider's signed statement when the backend gives one. */
  answers: Omit<ProviderAnswer, "outputDir">[];
  /** Every provider that refused or failed, with its reason (`details`: the provider's own code and reason). */
  failures: { provider: string; code: string; message: string; details?: string }[];
  outputs: { path: string; size: number; sha256: string }[];
  /**
   * What happened to the qube (exit code, time-out, OOM, declared outputs it never wrote, stderr tail), as the
   * agreeing providers report it; absent without agreement. Providers vote on it together with the outputs root.
   */
  outcome?: QubeOutcome;
  reason?: string;
  /** With a payments port: every escrow job of the run and its settlement (transaction, who got what). */
  payments?: PaymentReport[];
}

export interface RequestorOptions {
  market: ComputeMarket;
  /** Reputation store (default: SQLite in `dataDir`). */
  reputation?: ReputationStore;
  /** How long a provider caught with a wrong result is excluded. Default one hour. */
  excludeMs?: number;
  /** Directory of the journal and of the per-provider output staging. */
  dataDir: string;
  now?: () => Date;
  /**
   * Pay on agreement through an escrow. Without it qubes run unpaid. With it, every round's budget is locked
   * before the qube is sent, and the run settles it after the decision.
   */
  payments?: PaymentsPort;
  /** How long a run waits for the escrow to allow settlement (e.g. the commit deadline after a failure); later
   * jobs stay open in the journal for {@link Requestor.recoverPayments}. Default 180 s. */
  settleWaitMs?: number;
  /** The commit grace the market gives providers (used for the escrow's commit deadline). Default 30 s. */
  commitGraceMs?: number;
}

/** Distinct-operator rule: no two replicas to one provider id, payout address or declared operator. */
export function distinctFrom(chosen: ProviderCandidate[]): (candidate: ProviderCandidate) => boolean {
  return (candidate) =>
    !chosen.some(
      (c) =>
        c.id === candidate.id ||
        (c.payout !== undefined && c.payout === candidate.payout) ||
        (c.operator !== undefined && c.operator === candidate.operator),
    );
}

export class Requestor {
  readonly journal: RequestorJournal;
  readonly reputation: ReputationStore;
  private readonly now: () => Date;
  private readonly dirLock: DirLock;

  constructor(private readonly options: RequestorOptions) {
    // one process per data directory: a second run must not mark this one's qubes interrupted
    this.dirLock = lockDataDir(options.dataDir, "airqube requestor");
    this.journal = new RequestorJournal(join(options.dataDir, "journal.sqlite"));
    this.reputation = options.reputation ?? new SqliteReputation(join(options.dataDir, "reputation.sqlite"));
    this.now = options.now ?? (() => new Date());
    this.journal.recover(this.now());
  }

  /** Runs a sealed qube to a verified result or to "no consensus". */
  async run(qube: SealedQube, options: RunOptions): Promise<RunResult> {
    const { spec } = qube;
    const emit = (event: RunEvent) => options.onProgress?.(event);
    const policy = spec.spec.redundancy;
    const now = this.now();
    const staging = join(this.options.dataDir, "qubes", spec.id, randomUUID());
    await mkdir(staging, { recursive: true });
    this.journal.started(spec.id, spec.envelope, now);

    const wanted = policy.mode === "fixed" ? policy.k : policy.quorum;
    const all = await this.options.market.findProviders(spec, {
      wanted,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const unusable = (c: ProviderCandidate): string | undefined =>
      this.options.payments && c.payout === undefined
        ? "no payout address (this run pays)"
        : c.probe && (c.probe.fail > 0 || c.probe.inconclusive > 0)
          ? `escape suite not clean (${c.probe.fail} fail, ${c.probe.inconclusive} inconclusive)`
          : this.reputation.isExcluded(c.id, now)
            ? "excluded: it returned a wrong result recently"
            : (options.filter?.(c) ?? true)
              ? undefined
              : "refused by the run's filter (e.g. --max-price)";
    const eligible = (c: ProviderCandidate) => unusable(c) === undefined;
    const random = options.random ?? Math.random;
    // sorted first so that a seeded `random` gives a reproducible order; preferred providers go first
    const usable = shuffle(
      all.filter(eligible).sort((a, b) => (a.id < b.id ? -1 : 1)),
      random,
    );
    const preferred = options.prefer ?? [];
    usable.sort((a, b) => Number(preferred.includes(b.id)) - Number(preferred.includes(a.id)));
    emit({ type: "offersFound", count: all.length, usable: usable.length });

    let plan = planReplication(policy, usable[0] ? this.reputation.get(usable[0].id) : undefined, random);
    const chosen: ProviderCandidate[] = [];
    const failures: RunResult["failures"] = [];
    const answers: ProviderAnswer[] = [];
    const votes: Vote[] = [];
    const unrevealed: Dispatch[] = [];
    let want = plan.replicas;
    let decision: QuorumDecision | undefined;
    const seats = new Map<string, EscrowSeat>();
    try {
      const available = distinctCount(usable);
      if (policy.mode === "fixed" && available < policy.k) {
        if (!options.allowFewer) {
          const skipped = all
            .filter((c) => !eligible(c))
            .map((c) => `${c.id}: ${unusable(c)}`)
            .join("; ");
          throw new PeerError(
            "NOT_ENOUGH_PROVIDERS",
            `Found ${available} usable distinct provider${available === 1 ? "" : "s"} for a redundancy of ${policy.k}`,
            {
              details: `${all.length} offer${all.length === 1 ? "" : "s"} found${skipped ? ` (unusable: ${skipped})` : ""}; lower --redundancy, start more providers, or pass --allow-fewer to run on fewer`,
            },
          );
        }
        emit({ type: "fewerProviders", wanted: policy.k, available });
      }
      for (;;) {
        const committed = await this.commitRound(
          qube,
          want,
          usable,
          chosen,
          failures,
          plan,
          options,
          emit,
          eligible,
          seats,
        );
        emit({ type: "revealRequested", providers: committed.map((d) => d.provider.id) });
        const revealed = await Promise.all(
          committed.map((dispatch) => this.reveal(dispatch, staging, failures, options, emit)),
        );
        for (let i = 0; i < committed.length; i++) {
          const answer = revealed[i];
          if (answer) answers.push(answer);
          else unrevealed.push(committed[i]!);
          // providers vote on the outputs root and on how the process ended
          votes.push({ provider: committed[i]!.provider.id, root: answer ? voteKey(answer) : undefined });
        }
        this.recordOpenings(revealed, seats);
        decision = decide(votes, { quorum: plan.quorum, maxReplicas: plan.maxReplicas }, chosen.length);
        if (decision.status === "no-consensus" && plan.solo && policy.mode === "adaptive") {
          // the trusted provider did not deliver: fall back to replication
          plan = {
            replicas: policy.quorum,
            quorum: policy.quorum,
            maxReplicas: Math.max(policy.quorum, policy.maxReplicas) + chosen.length,
            solo: false,
          };
          decision = decide(votes, { quorum: plan.quorum, maxReplicas: plan.maxReplicas }, chosen.length);
        }
        if (decision.status !== "need-more") break;
        if (
          usable.filter(distinctFrom(chosen)).length === 0 &&
          !(await this.refresh(qube, usable, chosen, options, eligible))
        ) {
          decision = {
            status: "no-consensus",
            reason: `${decision.reason}, and no further distinct provider is available`,
            groups: groupVotes(votes),
          };
          break;
        }
        want = decision.replicas;
        emit({ type: "tieBreakerDispatched", replicas: want, reason: decision.reason });
      }
    } catch (error) {
      // aborted by the caller (Ctrl-C): interrupted, not failed; the providers were told to stop
      const interrupted = options.signal?.aborted === true;
      const summary = interrupted
        ? { code: "INTERRUPTED", message: "The run was interrupted; the providers were told to stop the qube" }
        : toAirqubeError(error).toJSON();
      this.journal.finished(spec.id, interrupted ? "interrupted" : "failed", summary, this.now());
      await rm(staging, { recursive: true, force: true });
      throw error;
    }
    this.judge(spec.id, decision, answers, unrevealed, emit);
    emit({ type: "decided", status: decision.status });
    const result = await this.finish(spec, decision, answers, failures, staging, options.outputDir);
    if (this.options.payments) {
      const ids = new Set([...seats.values()].map((s) => s.jobId));
      const entries = this.journal.escrowJobs({ qubeId: spec.id, openOnly: true }).filter((e) => ids.has(e.jobId));
      result.payments = await this.closeJobs(entries, this.options.settleWaitMs ?? 180_000, options.signal, emit);
    }
    this.journal.finished(
      spec.id,
      result.status,
      { ...result, answers: result.answers.map((a) => ({ provider: a.provider, outputsRoot: a.outputsRoot })) },
      this.now(),
    );
    return result;
  }

  /**
   * Updates reputations and keeps evidence after a decision: agreeing providers gain a valid result; a
   * dissenter (another root than the verified one) or a provider whose commitment had no valid reveal is
   * marked and excluded for `excludeMs`, and what proves it is journalled.
   */
  private judge(
    qubeId: string,
    decision: QuorumDecision,
    answers: ProviderAnswer[],
    unrevealed: Dispatch[],
    emit: (event: RunEvent) => void,
  ): void {
    const now = this.now();
    const excludeMs = this.options.excludeMs ?? 3600_000;
    const mark = (provider: string, evidence: unknown) => {
      this.reputation.recordWrong(provider, now, excludeMs);
      this.journal.evidence(qubeId, provider, evidence, now);
      emit({ type: "providerMarked", provider });
    };
    for (const dispatch of unrevealed) {
      mark(dispatch.provider.id, { kind: "commitment-without-valid-reveal", commitment: dispatch.commitment ?? null });
    }
    if (decision.status !== "verified") return;
    const winner = answers.find((a) => voteKey(a) === decision.root);
    for (const answer of answers) {
      if (voteKey(answer) === decision.root) this.reputation.recordValid(answer.provider);
      else
        mark(answer.provider, {
          kind: "conflicting-statements",
          qubeId,
          accepted: winner?.statement ?? decision.root,
          dissent: answer.statement ?? answer.outputsRoot,
        });
    }
  }

  /**
   * Dispatches until `want` new providers have committed (replacing failures), within the replica bound.
   * With payments, the round's providers are chosen first and their job is locked before anything is sent
   * (a failure to lock fails the run); each replacement locks its own job first (a failure to lock ends
   * that replacement, recorded as a failure).
   */
  private async commitRound(
    qube: SealedQube,
    want: number,
    usable: ProviderCandidate[],
    chosen: ProviderCandidate[],
    failures: RunResult["failures"],
    plan: { maxReplicas: number; quorum: number },
    options: RunOptions,
    emit: (event: RunEvent) => void,
    eligible: (c: ProviderCandidate) => boolean,
    seats: Map<string, EscrowSeat>,
  ): Promise<Dispatch[]> {
    const committed: Dispatch[] = [];
    const errors: Error[] = [];
    let lockError: unknown;
    const payments = this.options.payments;
    const next = (): ProviderCandidate | undefined => usable.find(distinctFrom(chosen));
    const pick = async (): Promise<ProviderCandidate | undefined> => {
      if (chosen.length >= plan.maxReplicas) return undefined;
      const candidate = next() ?? (await this.refresh(qube, usable, chosen, options, eligible));
      if (candidate) chosen.push(candidate);
      return candidate;
    };
    const fail = (provider: string, error: unknown) => {
      const e = toAirqubeError(error);
      failures.push({ provider, code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) });
      errors.push(e);
      this.journal.dispatch(qube.spec.id, provider, "failed", this.now(), { error: `${e.code}: ${e.message}` });
      emit({
        type: "providerFailed",
        provider,
        code: e.code,
        message: e.message,
        ...(e.details ? { details: e.details } : {}),
      });
    };
    const dispatchTo = async (candidate: ProviderCandidate): Promise<boolean> => {
      const provider = candidate.id;
      const seat = seats.get(provider);
      this.journal.dispatch(qube.spec.id, provider, "dispatched", this.now());
      try {
        const dispatch = await this.options.market.dispatch(candidate, qube, {
          ...(options.signal ? { signal: options.signal } : {}),
          ...(seat ? { escrow: seat } : {}),
          onAgreement: (p) => emit({ type: "agreementSigned", provider: p }),
          onSent: (p) => emit({ type: "qubeSent", provider: p }),
          onStarted: (p) => emit({ type: "qubeStarted", provider: p }),
        });
        await dispatch.awaitCommitment(options.signal ? { signal: options.signal } : {});
        this.journal.dispatch(qube.spec.id, provider, "committed", this.now());
        emit({ type: "qubeCommitted", provider });
        committed.push(dispatch);
        return true;
      } catch (error) {
        options.signal?.throwIfAborted();
        fail(provider, error);
        return false;
      }
    };
    /** Paid runs ask a provider whether it would admit the qube before any money is locked for it. */
    const admits = async (candidate: ProviderCandidate): Promise<boolean> => {
      if (!payments || !this.options.market.admits) return true;
      try {
        await this.options.market.admits(candidate, qube, {
          price: candidate.price > 1n ? candidate.price : 1n,
          payment: { chainId: payments.chainId, escrow: payments.escrow },
          ...(options.signal ? { signal: options.signal } : {}),
        });
        return true;
      } catch (error) {
        options.signal?.throwIfAborted();
        fail(candidate.id, error);
        return false;
      }
    };
    /** Waits for every attempt; on an interrupt, tells the providers that already committed to stop. */
    const settleAll = async (attempts: Promise<void>[]): Promise<void> => {
      const results = await Promise.allSettled(attempts);
      if (options.signal?.aborted) {
        await Promise.all(
          committed.map((d) =>
            d.cancel
              ? d.cancel("the requestor was interrupted")
              : d.abort(new PeerError("QUBE_CANCELLED", "The requestor was interrupted")),
          ),
        );
        options.signal.throwIfAborted();
      }
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
    };
    const attempt = async (first?: ProviderCandidate): Promise<void> => {
      let candidate = first;
      for (;;) {
        if (!candidate) {
          candidate = await pick();
          if (!candidate) return;
          if (payments && !(await admits(candidate))) {
            candidate = undefined;
            continue;
          }
          if (payments) {
            try {
              await this.lock(qube, [candidate], plan.quorum, seats, options, emit);
            } catch (error) {
              options.signal?.throwIfAborted();
              lockError = error;
              fail(candidate.id, error);
              return;
            }
          }
        }
        if (await dispatchTo(candidate)) return;
        candidate = undefined;
      }
    };
    if (payments) {
      const picks: ProviderCandidate[] = [];
      while (picks.length < want) {
        const batch: ProviderCandidate[] = [];
        while (picks.length + batch.length < want) {
          const candidate = await pick();
          if (!candidate) break;
          batch.push(candidate);
        }
        if (batch.length === 0) break;
        // asked first: only providers that would admit the qube get a seat in the job that locks money
        const admitted = await Promise.all(batch.map((candidate) => admits(candidate)));
        picks.push(...batch.filter((_, i) => admitted[i]));
      }
      // the budget is locked before the qube goes anywhere: a chain that is down fails the run here
      if (picks.length > 0) await this.lock(qube, picks, plan.quorum, seats, options, emit);
      await settleAll(picks.map((candidate) => attempt(candidate)));
    } else {
      await settleAll(Array.from({ length: want }, () => attempt()));
    }
    // the chain went down mid-qube: that, not "no provider", is why nothing could run
    if (committed.length === 0 && want > 0 && isChainDown(lockError)) throw lockError;
    if (committed.length === 0 && want > 0 && payments?.ensureReachable) {
      await payments.ensureReachable(options.signal ? { signal: options.signal } : {});
    }
    if (committed.length === 0 && want > 0) {
      // every provider's reason, not only its code (the CLI also prints one line per provider)
      throw new PeerError("NO_PROVIDER", "No provider could run the qube", {
        details:
          failures.length > 0
            ? failures.map((f) => `${f.provider}: ${f.code}${f.details ? `: ${f.details}` : ""}`).join("; ")
            : "no usable offer was found",
        ...(errors.length > 0 ? { cause: errors.at(-1) } : {}),
      });
    }
    return committed;
  }

  /** Opens one escrow job for `candidates` and journals it; the job's quorum is a majority of its seats. */
  private async lock(
    qube: SealedQube,
    candidates: ProviderCandidate[],
    quorum: number,
    seats: Map<string, EscrowSeat>,
    options: RunOptions,
    emit: (event: RunEvent) => void,
  ): Promise<void> {
    const n = candidates.length;
    // biome-ignore lint/complexity/useMathMinMax: bigints (Math.max takes numbers)
    const price = candidates.reduce((max, c) => (c.price > max ? c.price : max), 1n);
    // the qube's first job leads its group: replacements and tie-breakers are settled with it
    const leader = seats.values().next().value?.job;
    const { seat, txHash } = await this.options.payments!.lock(
      {
        qubeId: qube.spec.id,
        payouts: candidates.map((c) => c.payout!),
        price,
        quorum: Math.min(n, Math.max(quorum, Math.floor(n / 2) + 1)),
        wallTimeMs: qube.spec.spec.limits.wallTimeMs,
        commitGraceMs: this.options.commitGraceMs ?? COMMIT_GRACE_MS,
        ...(leader ? { leader } : {}),
      },
      {
        ...(options.signal ? { signal: options.signal } : {}),
        onPrepared: (s) => this.journal.escrowOpened(qube.spec.id, s.jobId, jobToJson(s.job), null, this.now()),
      },
    );
    this.journal.escrowLockTx(seat.jobId, txHash, this.now());
    for (const c of candidates) seats.set(c.id, seat);
    emit({
      type: "budgetLocked",
      jobId: seat.jobId,
      providers: candidates.map((c) => c.id),
      budget: (seat.job.price * BigInt(n)).toString(),
      txHash,
    });
  }

  /** Journals the openings of verified reveals (payout address → root and salt), per escrow job. */
  private recordOpenings(answers: (ProviderAnswer | undefined)[], seats: Map<string, EscrowSeat>): void {
    const byJob = new Map<string, Record<string, { outputsRoot: string; salt: string }>>();
    for (const answer of answers) {
      const seat = answer ? seats.get(answer.provider) : undefined;
      if (!answer || !seat || !answer.payout || !answer.salt) continue;
      const record = byJob.get(seat.jobId) ?? {};
      record[answer.payout.toLowerCase()] = {
        outputsRoot: rootToBytes32(answer.outputsRoot),
        salt: saltToBytes32(answer.salt),
      };
      byJob.set(seat.jobId, record);
    }
    for (const [jobId, openings] of byJob) this.journal.escrowOpenings(jobId, openings, this.now());
  }

  /** Settles (or reclaims) journalled escrow jobs; a job the contract does not allow yet stays open. */
  private async closeJobs(
    entries: JournalEscrowJob[],
    maxWaitMs: number,
    signal: AbortSignal | undefined,
    emit: (event: RunEvent) => void,
  ): Promise<PaymentReport[]> {
    return closeJournalled(this.options.payments!, this.journal, entries, {
      maxWaitMs,
      now: this.now,
      emit: (report) => emit({ type: "paymentClosed", report }),
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * Settles or reclaims every escrow job a previous run left open (a requestor that stopped between the
   * result and the settlement loses no payment). Jobs the contract does not allow yet stay open.
   *
   * @example
   * const requestor = new Requestor({ market, dataDir, payments });
   * const reports = await requestor.recoverPayments();
   */
  async recoverPayments(
    options: { signal?: AbortSignal; maxWaitMs?: number; onProgress?: (event: RunEvent) => void } = {},
  ): Promise<PaymentReport[]> {
    if (!this.options.payments) {
      throw new UserError("PAYMENTS_UNCONFIGURED", "No payments port is configured", {
        details: "pass `payments` (an EscrowPayments) to the Requestor",
      });
    }
    const open = this.journal.escrowJobs({ openOnly: true });
    return this.closeJobs(open, options.maxWaitMs ?? 0, options.signal, (e) => options.onProgress?.(e));
  }

  /** Looks for further providers when the known ones are used up (replacements, tie-breakers). */
  private async refresh(
    qube: SealedQube,
    usable: ProviderCandidate[],
    chosen: ProviderCandidate[],
    options: RunOptions,
    eligible: (c: ProviderCandidate) => boolean,
  ): Promise<ProviderCandidate | undefined> {
    const fresh = await this.options.market.findProviders(qube.spec, {
      wanted: chosen.length + 1,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    for (const candidate of fresh) {
      if (!usable.some((c) => c.id === candidate.id) && eligible(candidate)) usable.push(candidate);
    }
    return usable.find(distinctFrom(chosen));
  }

  private async reveal(
    dispatch: Dispatch,
    staging: string,
    failures: RunResult["failures"],
    options: RunOptions,
    emit: (event: RunEvent) => void,
  ): Promise<ProviderAnswer | undefined> {
    const provider = dispatch.provider.id;
    try {
      const answer = await dispatch.reveal(join(staging, provider), options.signal ? { signal: options.signal } : {});
      emit({ type: "resultReceived", provider, outputsRoot: answer.outputsRoot });
      return answer;
    } catch (error) {
      options.signal?.throwIfAborted();
      const e = toAirqubeError(error);
      failures.push({ provider, code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) });
      emit({
        type: "providerFailed",
        provider,
        code: e.code,
        message: e.message,
        ...(e.details ? { details: e.details } : {}),
      });
      return undefined;
    }
  }

  private async finish(
    spec: VerifiedQubeSpec,
    decision: QuorumDecision,
    answers: ProviderAnswer[],
    failures: RunResult["failures"],
    staging: string,
    outputDir: string,
  ): Promise<RunResult> {
    const strip = (a: ProviderAnswer) => {
      const { outputDir: _, ...rest } = a;
      return rest;
    };
    try {
      if (decision.status === "verified") {
        const winner = answers.find((a) => voteKey(a) === decision.root)!;
        await moveContents(winner.outputDir, outputDir);
        return {
          qubeId: spec.id,
          status: "verified",
          verified: spec.spec.deterministic,
          outputsRoot: winner.outputsRoot,
          outcome: outcomeOf(winner, spec.spec.outputs),
          agreeing: decision.agreeing,
          dissenting: decision.dissenting,
          answers: answers.map(strip),
          failures,
          outputs: winner.files.map(({ path, size, sha256 }) => ({ path, size, sha256 })),
          ...(spec.spec.deterministic
            ? {}
            : { reason: "the qube is declared non-deterministic: outputs agreed but are not reported as verified" }),
        };
      }
      return {
        qubeId: spec.id,
        status: "no-consensus",
        verified: false,
        agreeing: [],
        dissenting: answers.map((a) => a.provider),
        answers: answers.map(strip),
        failures,
        outputs: [],
        reason: decision.status === "no-consensus" ? decision.reason : "undecided",
      };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  close(): void {
    this.journal.close();
    this.dirLock.release();
  }
}

/** How many providers of `candidates` can be used together under the distinct-operator rule. */
function distinctCount(candidates: ProviderCandidate[]): number {
  const chosen: ProviderCandidate[] = [];
  for (const c of candidates) if (distinctFrom(chosen)(c)) chosen.push(c);
  return chosen.length;
}

function groupVotes(votes: Vote[]): Record<string, string[]> {
  const groups: Record<string, string[]> = {};
  for (const v of votes) {
    const key = v.root ?? "(no valid reveal)";
    groups[key] = [...(groups[key] ?? []), v.provider];
  }
  return groups;
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

async function moveContents(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const entry of await readdir(from).catch(() => [] as string[])) {
    try {
      await rename(join(from, entry), join(to, entry));
    } catch (error) {
      throw new UserError("OUTPUT_CONFLICT", "Could not place the verified outputs", {
        details: `${join(to, entry)}: ${(error as Error).message}`,
        cause: error,
      });
    }
  }
}
