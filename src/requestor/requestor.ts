/**
 * The requestor SDK: find providers on a market (embedded network or Golem), run a sealed qube on k distinct
 * providers with commit-reveal, decide by quorum (tie-breakers on dissent, up to a bound), and hand back the
 * verified outputs with every provider's signed statement. Typed progress events let a CLI or UI follow it.
 */
import { randomUUID } from "node:crypto";
import { mkdir, readdir, rename, rm, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { jobToJson } from "../chain/job-json.js";
import { rootToBytes32, saltToBytes32 } from "../chain/qube-ids.js";
import { COMMIT_GRACE_MS } from "../net/exchange/constants.js";
import type { EscrowBatchWire } from "../net/exchange/messages.js";
import { PeerError, toAirqubeError, UserError, type VerifiedQubeSpec } from "../qube/index.js";
import { type DirLock, lockDataDir } from "../store/dir-lock.js";
import {
  type ComputeMarket,
  type Dispatch,
  type EscrowSeat,
  type ProviderAnswer,
  type ProviderCandidate,
  type SealedQube,
  SeatsRefusedError,
} from "./api.js";
import { type EngineOutcome, shuffled } from "./engine.js";
import { type JournalEscrowJob, RequestorJournal } from "./journal.js";
import { outcomeOf, type QubeOutcome, voteKey } from "./outcome.js";
import { closeJournalled, type PaymentReport, type PaymentsPort } from "./payments.js";
import { isEscrowV2 } from "./payments-v2.js";
import type { QuorumDecision } from "./quorum.js";
import { type ReputationStore, SqliteReputation } from "./reputation.js";
import { type Driven, RoundDriver } from "./round-driver.js";

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
  /** Bytes of a provider's outputs received so far, while they arrive (at most once a second per provider). */
  | { type: "outputsReceiving"; provider: string; bytes: number }
  | { type: "resultReceived"; provider: string; outputsRoot: string }
  | { type: "providerFailed"; provider: string; code: string; message: string; details?: string }
  | { type: "tieBreakerDispatched"; replicas: number; reason: string }
  /** A provider marked and excluded: it answered otherwise than the verified result, or committed without a valid reveal. */
  | { type: "providerMarked"; provider: string; reason: "dissent" | "no-valid-reveal" }
  | { type: "decided"; status: QuorumDecision["status"] }
  | { type: "budgetLocked"; jobId: string; providers: string[]; budget: string; txHash: string }
  | { type: "paymentClosed"; report: PaymentReport };

/** Options of {@link Requestor.run}. */
export interface RunOptions {
  /** Aborts the run: the providers are told to stop and the qube is journalled as interrupted. */
  signal?: AbortSignal;
  /** Called with each progress event. */
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

/** What {@link Requestor.run} returns: the decision, the answers and failures, and the verified outputs. */
export interface RunReport {
  qubeId: string;
  /** `verified`: a quorum agreed (see `verified` for whether the result is trusted). */
  status: "verified" | "no-consensus";
  /** True only for a deterministic qube whose outputs a quorum agreed on. */
  verified: boolean;
  /** The agreed outputs root, when a quorum agreed. */
  outputsRoot?: string;
  /** Providers whose answer is the agreed one. */
  agreeing: string[];
  /** Providers that answered otherwise (all answering providers when there is no consensus). */
  dissenting: string[];
  /** Every answer received, with the provider's signed statement when the backend gives one. */
  answers: Omit<ProviderAnswer, "outputDir">[];
  /** Every provider that refused or failed, with its reason (`details`: the provider's own code and reason). */
  failures: { provider: string; code: string; message: string; details?: string }[];
  /** The agreed output files, now in `outputDir` (size in bytes, SHA-256 hex). */
  outputs: { path: string; size: number; sha256: string }[];
  /**
   * What happened to the qube (exit code, time-out, OOM, declared outputs it never wrote, stderr tail), as the
   * agreeing providers report it; absent without agreement. Providers vote on it together with the outputs root.
   */
  outcome?: QubeOutcome;
  /** Why there is no consensus, or why agreed outputs are not reported as verified. */
  reason?: string;
  /** With a payments port: every escrow job of the run and its settlement (transaction, who got what). */
  payments?: PaymentReport[];
}

/** Options of a {@link Requestor}. */
export interface RequestorOptions {
  /** Where providers are found and qubes run. */
  market: ComputeMarket;
  /** Reputation store (default: SQLite in `dataDir`). */
  reputation?: ReputationStore;
  /** Journal of qubes and escrow jobs (default: `journal.sqlite` in `dataDir`); the requestor closes it. */
  journal?: RequestorJournal;
  /** How long a provider caught with a wrong result is excluded. Default one hour. */
  excludeMs?: number;
  /** Directory of the journal and of the per-provider output staging. */
  dataDir: string;
  /** Clock (tests); default the system clock. */
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

export { distinctFrom } from "./engine.js";

/**
 * Runs sealed qubes on a {@link ComputeMarket} with redundancy, commit-reveal and a quorum, and (with a
 * payments port) pays through the escrow. One requestor per data directory at a time; close it when done.
 *
 * @example
 * const market = await Libp2pMarket.connect({ identity, bootstrap });
 * const requestor = new Requestor({ market, dataDir });
 * try {
 *   const qube = await sealQube({ image: "airqube/busybox:latest", command: ["sh", "-c", "echo hi > /output/r"], outputs: ["r"] }, identity);
 *   const report = await requestor.run(qube, { outputDir: "./out", onProgress: (e) => console.log(e.type) });
 *   console.log(report.verified, report.outputsRoot);
 * } finally {
 *   requestor.close();
 *   await market.close();
 * }
 */
export class Requestor {
  /** The journal of qubes and escrow jobs (`journal.sqlite` in the data directory). */
  readonly journal: RequestorJournal;
  /** Provider reputations (by default `reputation.sqlite` in the data directory). */
  readonly reputation: ReputationStore;
  private readonly now: () => Date;
  private readonly dirLock: DirLock;

  /**
   * Locks the data directory, opens the journal and marks qubes a previous process left open as interrupted.
   *
   * @throws UserError `DATA_DIR_LOCKED` when another process uses the data directory; PlatformError
   * `STORE_UNAVAILABLE`.
   */
  constructor(private readonly options: RequestorOptions) {
    // one process per data directory: a second run must not mark this one's qubes interrupted
    this.dirLock = lockDataDir(options.dataDir, "airqube requestor");
    this.journal = options.journal ?? new RequestorJournal(join(options.dataDir, "journal.sqlite"));
    this.reputation = options.reputation ?? new SqliteReputation(join(options.dataDir, "reputation.sqlite"));
    this.now = options.now ?? (() => new Date());
    this.journal.recover(this.now());
  }

  /**
   * Runs a sealed qube to a verified result or to "no consensus", and moves the agreed outputs into
   * `options.outputDir`.
   *
   * @throws PeerError `NOT_ENOUGH_PROVIDERS` (before any dispatch, unless `allowFewer`), `NO_PROVIDER` (no
   * provider committed); the payments' ChainError when a lock fails or the chain is down; UserError
   * `OUTPUT_CONFLICT`.
   */
  async run(qube: SealedQube, options: RunOptions): Promise<RunReport> {
    const { spec } = qube;
    const emit = (event: RunEvent) => options.onProgress?.(event);
    const policy = spec.spec.redundancy;
    const now = this.now();
    const staging = join(this.options.dataDir, "qubes", spec.id, randomUUID());
    await mkdir(staging, { recursive: true });
    this.journal.started(spec.id, spec.envelope, now);

    /** Journals the run as failed (or interrupted, when the caller aborted it), removes its staging, rethrows. */
    const failWith = async (error: unknown): Promise<never> => {
      // aborted by the caller (Ctrl-C): interrupted, not failed; the providers were told to stop
      const interrupted = options.signal?.aborted === true;
      const summary = interrupted
        ? { code: "INTERRUPTED", message: "The run was interrupted; the providers were told to stop the qube" }
        : toAirqubeError(error).toJSON();
      this.journal.finished(spec.id, interrupted ? "interrupted" : "failed", summary, this.now());
      await removeStaging(staging);
      throw error;
    };

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
    const wanted = policy.mode === "fixed" ? policy.k : policy.quorum;
    let all: ProviderCandidate[];
    try {
      all = await this.options.market.findProviders(spec, {
        wanted,
        accept: eligible,
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      return failWith(error);
    }
    const random = options.random ?? Math.random;
    // sorted first so that a seeded `random` gives a reproducible order; preferred providers go first
    const usable = shuffled(
      all.filter(eligible).sort((a, b) => (a.id < b.id ? -1 : 1)),
      random,
    );
    const preferred = options.prefer ?? [];
    usable.sort((a, b) => Number(preferred.includes(b.id)) - Number(preferred.includes(a.id)));
    emit({ type: "offersFound", count: all.length, usable: usable.length });

    const seats = new Map<string, EscrowSeat>();
    const driver = new RoundDriver(
      {
        market: this.options.market,
        payments: this.options.payments,
        journal: this.journal,
        reputation: this.reputation,
        now: this.now,
        lock: (candidates, quorum) => this.lock(qube, candidates, quorum, seats, options, emit),
        recordOpening: (answer) => this.recordOpenings([answer], seats),
        seats,
      },
      {
        qube,
        usable,
        all,
        unusable,
        random,
        staging,
        allowFewer: options.allowFewer === true,
        emit,
        ...(options.signal ? { signal: options.signal } : {}),
      },
    );
    let driven: Driven;
    try {
      driven = await driver.drive();
    } catch (error) {
      return failWith(error);
    }
    const { decision, answers, failures } = driven;
    this.judge(spec.id, driven.outcome, answers, driven.dispatches, emit);
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
   * Updates reputations and keeps evidence after a decision, as the engine judged: agreeing providers gain a
   * valid result; a dissenter (another root than the verified one) or a provider whose commitment had no valid
   * reveal is marked and excluded for `excludeMs`, and what proves it is journalled.
   */
  private judge(
    qubeId: string,
    outcome: Extract<EngineOutcome, { kind: "decided" }>,
    answers: ProviderAnswer[],
    dispatches: Map<string, Dispatch>,
    emit: (event: RunEvent) => void,
  ): void {
    const now = this.now();
    const excludeMs = this.options.excludeMs ?? 3600_000;
    const { decision } = outcome;
    const winner = decision.status === "verified" ? answers.find((a) => voteKey(a) === decision.root) : undefined;
    for (const provider of outcome.valid) this.reputation.recordValid(provider);
    for (const { provider, reason } of outcome.marked) {
      const answer = answers.find((a) => a.provider === provider);
      const evidence =
        reason === "no-valid-reveal"
          ? { kind: "commitment-without-valid-reveal", commitment: dispatches.get(provider)?.commitment ?? null }
          : {
              kind: "conflicting-statements",
              qubeId,
              accepted: winner?.statement ?? (decision.status === "verified" ? decision.root : null),
              dissent: answer?.statement ?? answer?.outputsRoot ?? null,
            };
      this.reputation.recordWrong(provider, now, excludeMs);
      this.journal.evidence(qubeId, provider, evidence, now);
      emit({ type: "providerMarked", provider, reason });
    }
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
        // escrow v2 too: a later round's batch is a follow-up in the group of the qube's first batch
        ...(leader ? { leader } : {}),
        ...(isEscrowV2(this.options.payments)
          ? { accept: (batch: EscrowBatchWire) => this.acceptances(qube, candidates, batch, options.signal) }
          : {}),
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

  /**
   * Escrow v2: every seat's signed `Accept` of the batch, in seat order (asked at once over the market).
   *
   * @throws PeerError `ESCROW_UNSUPPORTED` when the market cannot ask; {@link SeatsRefusedError} naming every
   *   provider that refused or did not answer.
   */
  private async acceptances(
    qube: SealedQube,
    candidates: ProviderCandidate[],
    batch: EscrowBatchWire,
    signal: AbortSignal | undefined,
  ): Promise<[string, string][]> {
    const market = this.options.market;
    if (!market.acceptEscrowBatch)
      throw new PeerError("ESCROW_UNSUPPORTED", "This market cannot ask providers to accept an escrow v2 batch");
    const answers = await Promise.allSettled(
      candidates.map((c) => market.acceptEscrowBatch!(c, qube, batch, signal ? { signal } : {})),
    );
    signal?.throwIfAborted();
    const refusals = answers.flatMap((answer, i) =>
      answer.status === "rejected" ? [{ provider: candidates[i]!.id, error: toAirqubeError(answer.reason) }] : [],
    );
    if (refusals.length > 0) throw new SeatsRefusedError(refusals);
    return answers.map((answer) => (answer as PromiseFulfilledResult<[string, string]>).value);
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
        // escrow v2: the signed commitment travels with the opening (EscrowV2Payments checks both)
        ...(answer.escrowCommitments ? answer.escrowCommitments : {}),
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

  private async finish(
    spec: VerifiedQubeSpec,
    decision: QuorumDecision,
    answers: ProviderAnswer[],
    failures: RunReport["failures"],
    staging: string,
    outputDir: string,
  ): Promise<RunReport> {
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
      await removeStaging(staging);
    }
  }

  /** Closes the journal and releases the data directory (the market and payments are the caller's to close). */
  close(): void {
    this.journal.close();
    this.dirLock.release();
  }
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

/** Removes a run's staging (`qubes/<qube id>/<run>`), and its qube's directory when no other run uses it. */
async function removeStaging(staging: string): Promise<void> {
  await rm(staging, { recursive: true, force: true });
  // another run of the same qube may be staging beside it: then the directory is not empty and stays
  await rmdir(dirname(staging)).catch(() => undefined);
}
