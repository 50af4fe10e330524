/**
 * The requestor-side port every backend implements (`Libp2pMarket` for the embedded network, `GolemMarket`
 * for the Golem network): find providers for a qube, and run it on one provider in two phases (commit, then
 * reveal) so that the requestor can apply commit-reveal and a quorum on top of any backend.
 */

import type { EscrowJob } from "../chain/job.js";
import type { EscrowBatchWire, EscrowCommitmentsWire } from "../net/exchange/messages.js";
import { type AirqubeError, PeerError } from "../qube/errors.js";
import type {
  Commitment,
  OutputManifest,
  ResultStatement,
  SignedEnvelope,
  Tier,
  VerifiedQubeSpec,
} from "../qube/index.js";
import type { SandboxOutput } from "../sandbox/api.js";

/** A provider a qube may be sent to. */
export interface ProviderCandidate {
  /** Provider id (libp2p peer id, or the Golem provider id). */
  id: string;
  /** Where it is paid; two candidates with one payout address count as one operator. */
  payout?: string;
  /** Declared operator key, if any. */
  operator?: string;
  tiers: Tier[];
  /** Price for this qube, wei. */
  price: bigint;
  /** Escape-suite summary of the tier the qube needs, when the backend has one. */
  probe?: { reportHash: string; pass: number; fail: number; inconclusive: number };
}

/** What one provider answered, after the backend checked everything it can check. */
export interface ProviderAnswer {
  provider: string;
  payout?: string;
  outputsRoot: string;
  manifest: OutputManifest;
  files: SandboxOutput[];
  /** Directory holding this provider's outputs. */
  outputDir: string;
  /** Signed by the provider on the embedded network; absent on Golem (it signs nothing). */
  statement?: SignedEnvelope<ResultStatement>;
  commitment?: SignedEnvelope<Commitment>;
  /** The salt of the provider's verified reveal (hex); with `outputsRoot` it opens its escrow commitment. */
  salt?: string;
  /** Escrow v2: the provider's commitment to the batch and its signed `Commitments` (checked by the payments). */
  escrowCommitments?: EscrowCommitmentsWire;
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

/** One qube running on one provider. */
export interface Dispatch {
  readonly provider: ProviderCandidate;
  /** The provider's signed commitment, once received (embedded network only). */
  readonly commitment?: SignedEnvelope<Commitment>;
  /** Resolves with the provider's commitment hash once it has run the qube. */
  awaitCommitment(options?: { signal?: AbortSignal }): Promise<string>;
  /**
   * Asks for the reveal and receives the outputs into `outputDir`; `onBytes` is told the bytes of outputs
   * received so far as they arrive (a backend that receives them in one piece may never call it).
   */
  reveal(
    outputDir: string,
    options?: { signal?: AbortSignal; onBytes?: (received: number) => void },
  ): Promise<ProviderAnswer>;
  /** Gives up on this provider (and releases whatever it holds). */
  abort(reason: Error): void;
  /** Tells the provider to stop the qube and free its seat (Ctrl-C), then gives up on it; never throws. */
  cancel?(reason: string): Promise<void>;
}

/** A sealed qube ready to dispatch: the signed spec and its inputs on the requestor's disk. */
export interface SealedQube {
  spec: VerifiedQubeSpec;
  /** Spec input path → host file. */
  inputs: Map<string, string>;
  /** The image archive file of `spec.image.archiveDigest`, shipped to providers that lack the image. */
  imageArchive?: string;
}

/** The escrow job a dispatch is paid from: the budget is locked on chain before the qube is sent. */
export interface EscrowSeat {
  /** The job's id (escrow v2: the batch's id). */
  jobId: string;
  /** 2: a batch of one qube on escrow v2, which `job` stands for (same fields); absent: an escrow v1 job. */
  version?: 2;
  job: EscrowJob;
  chainId: number;
  /** The escrow contract's address. */
  escrow: string;
}

/** Progress callbacks of {@link ComputeMarket.dispatch}, each called with the provider id. */
export interface DispatchEvents {
  /** The provider agreed to run the qube. */
  onAgreement?: (provider: string) => void;
  /** The qube (spec and inputs) has been handed to the provider. */
  onSent?: (provider: string) => void;
  /** The provider started running the qube. */
  onStarted?: (provider: string) => void;
}

/** How long a market keeps looking for providers. */
export interface FindProvidersOptions {
  signal?: AbortSignal;
  wanted?: number;
  /**
   * The run's own eligibility rule (price cap, named provider, exclusions): offers it refuses do not count
   * towards `wanted`, so discovery goes on until enough usable ones arrived or the market's time is up.
   */
  accept?: (candidate: ProviderCandidate) => boolean;
}

/** The port. */
export interface ComputeMarket {
  readonly name: string;
  /**
   * `wanted` is a hint: the backend may return as soon as it has that many candidates that `accept` takes (all,
   * without it). `accept` only decides when discovery may stop: every candidate found is returned.
   */
  findProviders(spec: VerifiedQubeSpec, options?: FindProvidersOptions): Promise<ProviderCandidate[]>;
  /**
   * Agrees with `candidate` on running the qube, paid from `escrow` when given, and sends it the spec and
   * inputs. Resolves with the running dispatch; rejects with a typed error when the provider refuses or
   * cannot be reached.
   */
  dispatch(
    candidate: ProviderCandidate,
    qube: SealedQube,
    options?: { signal?: AbortSignal; escrow?: EscrowSeat } & DispatchEvents,
  ): Promise<Dispatch>;
  /**
   * Asks the provider, before any money is locked, whether it would admit the qube at `price` (wei) paid
   * through `payment`. Resolves when it would; rejects with its refusal (the error's `code` is the
   * provider's reason code, e.g. `IMAGE_UNAVAILABLE`) or when it cannot be reached. Optional: a backend
   * without it is not asked.
   */
  admits?(
    candidate: ProviderCandidate,
    qube: SealedQube,
    terms: { price: bigint; payment?: { chainId: number; escrow: string }; signal?: AbortSignal },
  ): Promise<void>;
  /**
   * Escrow v2: asks the provider to admit the qube paid through `batch` (not yet open) and to sign its `Accept`
   * of it. Resolves with the signature (checked by the payments); rejects with its refusal.
   */
  acceptEscrowBatch?(
    candidate: ProviderCandidate,
    qube: SealedQube,
    batch: EscrowBatchWire,
    options?: { signal?: AbortSignal },
  ): Promise<[string, string]>;
  /** Releases the backend's connections and resources. */
  close(): Promise<void>;
}

/**
 * Providers would not sign their seat of an escrow batch (escrow v2's `Accept`: a refusal, no answer, or an
 * answer without it): the batch cannot be locked with them. The engine gives them up, replaces them, and locks
 * again with the seats that did accept.
 */
export class SeatsRefusedError extends PeerError {
  readonly refusals: { provider: string; error: AirqubeError }[];
  constructor(refusals: { provider: string; error: AirqubeError }[]) {
    super("ESCROW_ACCEPT_REFUSED", "Providers would not accept their seat of the escrow batch", {
      details: refusals.map((r) => `${r.provider}: ${r.error.code}`).join("; "),
    });
    this.refusals = refusals;
  }
}
