/**
 * The requestor's driver of the round engine (engine.ts): it runs each command the engine emits over the ports
 * (market, payments, journal) concurrently, and hands what each leads to back to the engine as an event, one at
 * a time, until the engine decides. The engine decides everything (seats, replacements, tie-breakers, the
 * quorum); the driver only does I/O and records what happened. An interrupt tells every provider that
 * committed to stop the qube.
 */
import { join } from "node:path";
import { PeerError, toAirqubeError } from "../qube/index.js";
import {
  type ComputeMarket,
  type Dispatch,
  type EscrowSeat,
  type ProviderAnswer,
  type ProviderCandidate,
  type SealedQube,
  SeatsRefusedError,
} from "./api.js";
import { type EngineCommand, type EngineEvent, type EngineFailure, type EngineOutcome, RoundEngine } from "./engine.js";
import type { RequestorJournal } from "./journal.js";
import { voteKey } from "./outcome.js";
import { isChainDown, type PaymentsPort } from "./payments.js";
import type { QuorumDecision } from "./quorum.js";
import type { ReputationStore } from "./reputation.js";
import type { RunEvent, RunReport } from "./requestor.js";

/** What the driver works through: the requestor's ports, and how it locks a budget and records openings. */
export interface DriverPorts {
  market: ComputeMarket;
  payments: PaymentsPort | undefined;
  journal: RequestorJournal;
  reputation: ReputationStore;
  now: () => Date;
  /** Opens one escrow job for `candidates` with this quorum (and journals it before the transaction). */
  lock(candidates: ProviderCandidate[], quorum: number): Promise<void>;
  /** Records a provider's opening for its escrow seat. */
  recordOpening(answer: ProviderAnswer): void;
  /** The escrow seats locked so far, by provider (empty when the run does not pay). */
  seats: ReadonlyMap<string, EscrowSeat>;
}

/** One run: the qube, the candidates found first, and how candidates found later are judged. */
export interface DriverRun {
  qube: SealedQube;
  /** Eligible candidates in the order to try them. */
  usable: ProviderCandidate[];
  /** Every candidate found first (for the NOT_ENOUGH_PROVIDERS details). */
  all: ProviderCandidate[];
  /** Why a candidate cannot be used, or undefined when it can. */
  unusable: (c: ProviderCandidate) => string | undefined;
  random: () => number;
  /** Where each provider's outputs are staged (one directory per provider under it). */
  staging: string;
  signal?: AbortSignal;
  allowFewer: boolean;
  emit: (event: RunEvent) => void;
}

/** What a decided run leaves: the engine's outcome, and every answer, dispatch and failure. */
export interface Driven {
  outcome: Extract<EngineOutcome, { kind: "decided" }>;
  decision: QuorumDecision;
  answers: ProviderAnswer[];
  dispatches: Map<string, Dispatch>;
  failures: RunReport["failures"];
}

/** Drives one run of the round engine; use once. */
export class RoundDriver {
  private readonly engine: RoundEngine;
  private readonly known: Map<string, ProviderCandidate>;
  private readonly dispatches = new Map<string, Dispatch>();
  private readonly committed = new Map<string, Dispatch>();
  private readonly answers: ProviderAnswer[] = [];
  private readonly failures: RunReport["failures"] = [];
  private readonly events: EngineEvent[] = [];
  private readonly tasks = new Set<Promise<void>>();
  private wake: (() => void) | undefined;
  private fatal: unknown;
  private outcome: EngineOutcome | undefined;

  constructor(
    private readonly ports: DriverPorts,
    private readonly run: DriverRun,
  ) {
    this.known = new Map(run.usable.map((c) => [c.id, c]));
    this.engine = new RoundEngine({
      policy: run.qube.spec.spec.redundancy,
      paid: ports.payments !== undefined,
      allowFewer: run.allowFewer,
      random: run.random,
      reputation: (id) => ports.reputation.get(id),
    });
  }

  /**
   * Runs the engine to its decision.
   *
   * @throws PeerError `NOT_ENOUGH_PROVIDERS`, `NO_PROVIDER`, `ENGINE_STALLED`; the lock's error (e.g. a
   * ChainError) when no budget could be locked or the chain went down; the signal's reason when aborted.
   */
  async drive(): Promise<Driven> {
    const { signal } = this.run;
    try {
      this.execute(this.engine.start(this.run.usable));
      while (this.outcome === undefined) {
        if (this.fatal !== undefined || signal?.aborted) break;
        const event = this.events.shift();
        if (event) {
          this.execute(this.engine.handle(event));
          continue;
        }
        if (this.tasks.size === 0)
          throw new PeerError("ENGINE_STALLED", "The requestor's round engine stopped without a decision");
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
      }
      if (signal?.aborted) await this.interrupt(signal);
      if (this.fatal !== undefined) throw this.fatal;
    } finally {
      // nothing of this run may keep going: outstanding work ends with the run (their results are dropped)
      await Promise.allSettled([...this.tasks]);
    }
    const ended = this.outcome as EngineOutcome;
    if (ended.kind !== "decided") return this.failed(ended);
    const { answers, dispatches, failures } = this;
    return { outcome: ended, decision: ended.decision, answers, dispatches, failures };
  }

  /** Tells every provider that committed to stop the qube and free its seat, then throws the abort. */
  private async interrupt(signal: AbortSignal): Promise<never> {
    await Promise.all(
      [...this.committed.values()].map((d) =>
        d.cancel
          ? d.cancel("the requestor was interrupted")
          : d.abort(new PeerError("QUBE_CANCELLED", "The requestor was interrupted")),
      ),
    );
    signal.throwIfAborted();
    throw signal.reason;
  }

  /** The error of a run the engine ended without a decision. */
  private async failed(ended: Exclude<EngineOutcome, { kind: "decided" }>): Promise<never> {
    const { all, unusable } = this.run;
    if (ended.code === "NOT_ENOUGH_PROVIDERS") {
      const skipped = all
        .filter((c) => unusable(c) !== undefined)
        .map((c) => `${c.id}: ${unusable(c)}`)
        .join("; ");
      const { available, wanted } = ended;
      throw new PeerError(
        "NOT_ENOUGH_PROVIDERS",
        `Found ${available} usable distinct provider${available === 1 ? "" : "s"} for a redundancy of ${wanted}`,
        {
          details: `${all.length} offer${all.length === 1 ? "" : "s"} found${skipped ? ` (unusable: ${skipped})` : ""}; lower --redundancy, start more providers, or pass --allow-fewer to run on fewer`,
        },
      );
    }
    if (ended.code === "LOCK_FAILED")
      throw ended.failure.cause ?? new PeerError(ended.failure.code, ended.failure.message);
    // nothing committed: the chain going down mid-qube, not "no provider", is why nothing could run
    if (ended.chainDown) throw ended.chainDown.cause ?? new PeerError(ended.chainDown.code, ended.chainDown.message);
    const { payments } = this.ports;
    if (payments?.ensureReachable) await payments.ensureReachable(this.withSignal());
    throw new PeerError("NO_PROVIDER", "No provider could run the qube", {
      details:
        this.failures.length > 0
          ? this.failures.map((f) => `${f.provider}: ${f.code}${f.details ? `: ${f.details}` : ""}`).join("; ")
          : "no usable offer was found",
      ...(ended.failures.length > 0 ? { cause: ended.failures.at(-1)?.failure.cause } : {}),
    });
  }

  private withSignal(): { signal?: AbortSignal } {
    return this.run.signal ? { signal: this.run.signal } : {};
  }

  private post(event: EngineEvent): void {
    this.events.push(event);
    this.wake?.();
  }

  /** Runs one command's work concurrently; an expected failure is an event, anything else ends the run. */
  private task(work: () => Promise<void>): void {
    const running = work()
      .catch((error: unknown) => {
        this.fatal ??= error; // only an interrupt or a bug gets here: every expected failure is an event
        this.wake?.();
      })
      .finally(() => this.tasks.delete(running));
    this.tasks.add(running);
  }

  /** Records a provider's failure (report, journal, progress) and returns it as the engine's failure. */
  private failure(provider: string, error: unknown, journalled = true): EngineFailure {
    const e = toAirqubeError(error);
    const details = e.details ? { details: e.details } : {};
    this.failures.push({ provider, code: e.code, message: e.shortMessage, ...details });
    if (journalled)
      this.ports.journal.dispatch(this.run.qube.spec.id, provider, "failed", this.ports.now(), {
        error: `${e.code}: ${e.message}`,
      });
    this.run.emit({ type: "providerFailed", provider, code: e.code, message: e.shortMessage, ...details });
    return { code: e.code, message: e.shortMessage, ...details, cause: e };
  }

  /** Rethrows when the run was aborted (the abort is not the provider's failure). */
  private checkAborted(): void {
    this.run.signal?.throwIfAborted();
  }

  private execute(commands: EngineCommand[]): void {
    const { emit } = this.run;
    for (const command of commands) {
      switch (command.type) {
        case "findMore":
          this.task(() => this.findMore(command.wanted));
          break;
        case "admit":
          for (const provider of command.providers) this.task(() => this.admit(provider));
          break;
        case "lock":
          this.task(() => this.lock(command.providers, command.quorum));
          break;
        case "dispatch":
          this.task(() => this.dispatch(command.provider));
          break;
        case "reveal":
          emit({ type: "revealRequested", providers: command.providers });
          for (const provider of command.providers) this.task(() => this.reveal(provider));
          break;
        case "fewerProviders":
          emit({ type: "fewerProviders", wanted: command.wanted, available: command.available });
          break;
        case "tieBreaker":
          emit({ type: "tieBreakerDispatched", replicas: command.replicas, reason: command.reason });
          break;
        case "finished":
          this.outcome = command.outcome;
          break;
      }
    }
  }

  /** Asks the market for more candidates; the new eligible ones go to the engine. */
  private async findMore(wanted: number): Promise<void> {
    const fresh = await this.ports.market
      .findProviders(this.run.qube.spec, {
        wanted,
        accept: (c) => !this.known.has(c.id) && this.run.unusable(c) === undefined,
        ...this.withSignal(),
      })
      .catch((error: unknown) => {
        this.checkAborted();
        throw error;
      });
    const usable = fresh.filter((c) => !this.known.has(c.id) && this.run.unusable(c) === undefined);
    for (const c of usable) this.known.set(c.id, c);
    this.post({ type: "found", candidates: usable });
  }

  /** Asks a provider whether it would admit the qube (paid runs: before any budget is locked). */
  private async admit(provider: string): Promise<void> {
    const candidate = this.known.get(provider)!;
    const { market, payments } = this.ports;
    try {
      if (payments && market.admits) {
        await market.admits(candidate, this.run.qube, {
          price: candidate.price > 1n ? candidate.price : 1n,
          payment: { chainId: payments.chainId, escrow: payments.escrow },
          ...this.withSignal(),
        });
      }
      this.post({ type: "admitted", provider });
    } catch (error) {
      this.checkAborted();
      this.post({ type: "refused", provider, failure: this.failure(provider, error) });
    }
  }

  /** Locks one escrow job for these seats. */
  private async lock(providers: string[], quorum: number): Promise<void> {
    try {
      await this.ports.lock(
        providers.map((id) => this.known.get(id)!),
        quorum,
      );
      this.post({ type: "locked", providers });
    } catch (error) {
      this.checkAborted();
      if (error instanceof SeatsRefusedError) {
        // escrow v2: the seats that would not sign are replaced; nothing was locked
        const refused = error.refusals.map((r) => ({
          provider: r.provider,
          failure: this.failure(r.provider, r.error),
        }));
        this.post({ type: "seatsRefused", providers, refused });
        return;
      }
      const chainDown = isChainDown(error);
      const recorded =
        providers.length === 1
          ? this.failure(providers[0]!, error)
          : { ...toAirqubeError(error).toJSON(), cause: error };
      this.post({ type: "lockFailed", providers, failure: recorded, chainDown });
    }
  }

  /** Sends the qube to a provider and waits for its commitment. */
  private async dispatch(provider: string): Promise<void> {
    const candidate = this.known.get(provider)!;
    const { journal, market, now } = this.ports;
    const qubeId = this.run.qube.spec.id;
    const { emit } = this.run;
    journal.dispatch(qubeId, provider, "dispatched", now());
    try {
      const escrow = this.ports.seats.get(provider);
      const dispatch = await market.dispatch(candidate, this.run.qube, {
        ...this.withSignal(),
        ...(escrow ? { escrow } : {}),
        onAgreement: (p) => emit({ type: "agreementSigned", provider: p }),
        onSent: (p) => emit({ type: "qubeSent", provider: p }),
        onStarted: (p) => emit({ type: "qubeStarted", provider: p }),
      });
      this.dispatches.set(provider, dispatch);
      await dispatch.awaitCommitment(this.withSignal());
      this.committed.set(provider, dispatch);
      journal.dispatch(qubeId, provider, "committed", now());
      emit({ type: "qubeCommitted", provider });
      this.post({ type: "committed", provider });
    } catch (error) {
      this.checkAborted();
      this.post({ type: "failed", provider, failure: this.failure(provider, error) });
    }
  }

  /** Asks a provider that committed for its reveal and outputs; the vote goes to the engine. */
  private async reveal(provider: string): Promise<void> {
    const dispatch = this.committed.get(provider)!;
    // the bytes received so far, at most once per OUTPUTS_PROGRESS_MS (a progress display's figure only: a
    // display that throws cannot fail the reveal)
    let shown = Number.NEGATIVE_INFINITY;
    const onBytes = (bytes: number) => {
      const now = performance.now();
      if (now - shown < OUTPUTS_PROGRESS_MS) return;
      shown = now;
      try {
        this.run.emit({ type: "outputsReceiving", provider, bytes });
      } catch {}
    };
    try {
      const answer = await dispatch.reveal(join(this.run.staging, provider), { ...this.withSignal(), onBytes });
      this.run.emit({ type: "resultReceived", provider, outputsRoot: answer.outputsRoot });
      this.answers.push(answer);
      this.ports.recordOpening(answer);
      // providers vote on the outputs root and on how the process ended
      this.post({ type: "revealed", provider, vote: voteKey(answer) });
    } catch (error) {
      this.checkAborted();
      const notReceived = !isProvidersFault(error);
      // a reveal that never arrived is journalled as a failure; an invalid one as evidence when the run is judged
      const { code, cause } = this.failure(provider, error, notReceived);
      this.post({
        type: "revealFailed",
        provider,
        failure: { code, message: toAirqubeError(error).message, cause },
        ...(notReceived ? { notReceived } : {}),
      });
    }
  }
}

/** Least time between two `outputsReceiving` events of one provider, ms. */
const OUTPUTS_PROGRESS_MS = 1000;

/** Failures of the stream itself: a reveal cut by them never arrived, and proves nothing against the provider. */
const TRANSPORT_FAILURES = new Set(["STREAM_CLOSED", "STREAM_FAILED", "STREAM_TIMEOUT", "PROVIDER_UNREACHABLE"]);

/**
 * Whether a failed reveal is the provider's proven fault: it sent something invalid (a peer error other than the
 * stream failing). Time-outs, closed streams and our own faults (a full disk, a bug) are not.
 */
export function isProvidersFault(error: unknown): boolean {
  const e = toAirqubeError(error);
  return e instanceof PeerError && !TRANSPORT_FAILURES.has(e.code);
}
