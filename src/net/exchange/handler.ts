/**
 * Provider side of the exchange protocol. It verifies everything the requestor sends before acting on it
 * (spec signature and id, the proposal's signature and terms), asks the host for admission, receives the
 * sealed inputs, lets the host run the qube, commits, waits for the reveal request, then reveals and streams
 * the outputs sealed to the requestor. Any violation aborts the stream; the provider keeps serving.
 */
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Connection, Stream } from "@libp2p/interface";
import {
  type AirqubeError,
  type Commitment,
  fromHex,
  type Identity,
  type OutputManifest,
  PeerError,
  type ResultStatement,
  type SignedEnvelope,
  TimeoutError,
  toAirqubeError,
  type VerifiedQubeSpec,
  verifySignedQubeSpec,
} from "../../qube/index.js";
import { packDirectory } from "../../sandbox/pack.js";
import { type Agreement, type AgreementTerms, countersign, verifyProposal } from "../agreement.js";
import { parseMessage, Wire, withDeadline } from "../wire.js";
import {
  EXCHANGE_PROTOCOL,
  MAX_FRAME_BYTES,
  MAX_LOG_EXCERPT,
  NEGOTIATION_TIMEOUT_MS,
  REVEAL_WAIT_MS,
} from "./constants.js";
import { QubeCancelledError } from "./errors.js";
import {
  type EscrowBatchWire,
  type EscrowCommitmentsWire,
  type EscrowJobWire,
  imageEndSchema,
  inputEndSchema,
  openingSchema,
  type QueryMessage,
  requestorControlSchema,
} from "./messages.js";
import { receiveSealed, sendSealed, writeNewFile } from "./transfer.js";

/** A qube the host admitted. */
export interface AdmittedJob {
  jobId: string;
  /** Directory the inputs are written to (created by the handler). */
  inputsDir: string;
  /** Directory the outputs must end up in. */
  outputsDir: string;
  /** Frees the capacity slot; called exactly once. */
  release(): void;
}

export type Admission = { ok: true; job: AdmittedJob } | { ok: false; code: string; reason: string };

/** What the host computed for one qube. */
export interface Execution {
  statement: SignedEnvelope<ResultStatement>;
  manifest: OutputManifest;
  stdout: string;
  stderr: string;
}

/** What the host answers when asked to commit (the behaviour hook for adversary tests lives here). */
export interface CommitPlan {
  commitment: SignedEnvelope<Commitment>;
  /** Escrow v2: the commitment to the batch and its signed `Commitments`, sent with the commitment. */
  escrowCommitments?: EscrowCommitmentsWire;
  /** Reveal payload signed by the provider, sent after the reveal request. */
  reveal: () => SignedEnvelope<unknown>;
}

/** The provider agent, as the protocol sees it. */
export interface ExchangeHost {
  identity: Identity;
  now(): Date;
  /**
   * Answers an admission query (asked before the requestor locks any money): a refusal with a stable code, or
   * undefined when the qube would be admitted now. Reserves nothing. Without it every query is answered
   * `admissible` and the proposal decides.
   */
  query?(request: {
    spec: VerifiedQubeSpec;
    /** What each provider would be paid, wei. */
    price: bigint;
    /** The escrow the budget would be locked in (absent: unpaid). */
    payment?: { chainId: number; escrow: string };
    /** Escrow v2: the batch the requestor would open (validated in shape only); admitting it means signing. */
    escrowBatch?: EscrowBatchWire;
    peer: string;
  }): Promise<{ code: string; reason: string } | { escrowAccept: [string, string] } | undefined>;
  /** `escrow` is the proposal's escrow job (validated in shape only: the host checks it against the chain). */
  admit(request: {
    spec: VerifiedQubeSpec;
    agreement: Agreement;
    peer: string;
    escrow?: EscrowJobWire;
    /** Escrow v2: the proposal's batch (validated in shape only: the host checks it against the chain). */
    escrowBatch?: EscrowBatchWire;
  }): Promise<Admission>;
  execute(
    job: AdmittedJob,
    spec: VerifiedQubeSpec,
    agreement: Agreement,
    options: { signal: AbortSignal },
  ): Promise<Execution>;
  /** May bond and commit on chain first (paid qubes): the off-chain commitment is sent once this resolves. */
  commit(job: AdmittedJob, execution: Execution): CommitPlan | Promise<CommitPlan>;
  /** Journals a state change of a job (the ledger). */
  record(jobId: string, event: JobEvent): void;
  /** Optional: called after commit, before waiting for the reveal request (the `crash`/`slow` behaviours). */
  afterCommit?(job: AdmittedJob): Promise<void>;
  /** Optional: shipped images (src/images). Without it, a qube's image must be on the provider already. */
  images?: ImageHost;
}

/** How the host gets a qube's image: already there, being installed for another qube, or shipped now. */
export interface ImageHost {
  /** Whether the requestor must ship the image of this admitted qube (`send`), or the host has or gets it. */
  plan(spec: VerifiedQubeSpec): Promise<"send" | "have">;
  /** The largest archive accepted (the opener refuses more). */
  maxArchiveBytes: number;
  /** Checks, loads and caches the shipped archive; the source is the opened, bounded, digest-checked stream. */
  install(spec: VerifiedQubeSpec, source: AsyncIterable<Uint8Array>, options: { signal: AbortSignal }): Promise<void>;
  /** Resolves once the image is usable (waits for another qube's install of it); throws when it is not. */
  ready(spec: VerifiedQubeSpec, options: { signal: AbortSignal }): Promise<void>;
}

export type JobEvent =
  | { state: "accepted"; qubeId: string; requestor: string; price: string }
  | { state: "running" }
  | { state: "committed"; outputsRoot: string }
  | { state: "revealed" }
  | { state: "failed"; code: string; reason: string }
  | { state: "abandoned"; reason: string };

/** Registers the handler on a libp2p node. */
export async function handleExchange(
  node: {
    handle(
      protocol: string,
      handler: (stream: Stream, connection: Connection) => void | Promise<void>,
      options?: object,
    ): Promise<void>;
  },
  host: ExchangeHost,
  options: { signal?: AbortSignal; onError?: (error: AirqubeError, peer: string) => void } = {},
): Promise<void> {
  await node.handle(
    EXCHANGE_PROTOCOL,
    async (stream, connection) => {
      const peer = connection.remotePeer.toString();
      const wire = new Wire(stream, { maxFrameBytes: MAX_FRAME_BYTES });
      try {
        await serve(wire, peer, host, options.signal);
      } catch (error) {
        const e = toAirqubeError(error);
        options.onError?.(e, peer);
        await wire.send({ type: "failed", code: e.code, reason: e.shortMessage.slice(0, 1000) }).catch(() => undefined);
        wire.abort(e);
      }
    },
    // relayed (limited) connections are served: a provider behind NAT is reached through a bootnode's relay,
    // whose limits (net/limits.ts: 1 GiB and 30 min per connection) are sized for a qube's transfers
    { maxInboundStreams: 64, runOnLimitedConnection: true },
  );
}

/** Answers an admission query: verifies the spec and its signer, then asks the host. */
async function answerQuery(wire: Wire, query: QueryMessage, peer: string, host: ExchangeHost): Promise<void> {
  const spec = verifySignedQubeSpec(query.spec, { now: host.now(), source: "peer" });
  if (spec.envelope.signer !== peer)
    throw new PeerError("PEER_MISMATCH", "The spec must be signed by the connected peer");
  const answer = await host.query?.({
    spec,
    price: BigInt(query.price),
    ...(query.payment ? { payment: query.payment } : {}),
    ...(query.escrowBatch ? { escrowBatch: query.escrowBatch } : {}),
    peer,
  });
  const refusal = answer && "code" in answer ? answer : undefined;
  if (!refusal && query.escrowBatch && !(answer && "escrowAccept" in answer))
    throw new PeerError("ESCROW_UNSUPPORTED", "This provider does not take escrow v2 batches");
  const accept = answer && "escrowAccept" in answer ? { escrowAccept: answer.escrowAccept } : {};
  await wire.send(
    refusal
      ? { type: "refuse", code: refusal.code, reason: refusal.reason.slice(0, 1024) }
      : host.images && (await host.images.plan(spec)) === "send"
        ? { type: "admissible", image: "send", ...accept }
        : { type: "admissible", ...accept },
    { signal: withDeadline(NEGOTIATION_TIMEOUT_MS) },
  );
  await wire.close({ signal: withDeadline(NEGOTIATION_TIMEOUT_MS) });
}

async function serve(wire: Wire, peer: string, host: ExchangeHost, signal?: AbortSignal): Promise<void> {
  const first = await wire.receive(openingSchema, { signal: withDeadline(NEGOTIATION_TIMEOUT_MS, signal) });
  if (first.type === "query") return answerQuery(wire, first, peer, host);
  const now = host.now();
  const spec = verifySignedQubeSpec(first.spec, { now, source: "peer" });
  const proposal = verifyProposal(first.proposal);
  const terms: AgreementTerms = proposal.payload;
  if (spec.envelope.signer !== peer || proposal.signer !== peer) {
    throw new PeerError("PEER_MISMATCH", "The spec and proposal must be signed by the connected peer");
  }
  if (terms.qubeId !== spec.id)
    throw new PeerError("AGREEMENT_INVALID", "The proposal names another qube", { details: terms.qubeId });
  if (terms.requestor !== spec.spec.requestor)
    throw new PeerError("AGREEMENT_INVALID", "The proposal's requestor is not the spec's");
  if (Date.parse(terms.deadline) <= now.getTime())
    throw new PeerError("AGREEMENT_INVALID", "The proposal's deadline has passed");
  const agreement = countersign(proposal, host.identity);
  const admission = await host.admit({
    spec,
    agreement,
    peer,
    ...(first.escrow ? { escrow: first.escrow } : {}),
    ...(first.escrowBatch ? { escrowBatch: first.escrowBatch } : {}),
  });
  if (!admission.ok) {
    await wire.send({ type: "reject", code: admission.code, reason: admission.reason });
    await wire.close();
    return;
  }
  const job = admission.job;
  const controller = new AbortController();
  const jobSignal = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
  let cancelled: QubeCancelledError | undefined;
  let revealTimer: NodeJS.Timeout | undefined;
  try {
    host.record(job.jobId, { state: "accepted", qubeId: spec.id, requestor: peer, price: terms.price });
    const shipImage = host.images && (await host.images.plan(spec)) === "send";
    await wire.send({
      type: "accept",
      agreement: agreement.provider,
      ...(shipImage ? { image: "send" as const } : {}),
    });
    if (shipImage && host.images) await receiveImage(wire, spec, host.identity, host.images, jobSignal);
    await receiveInputs(wire, spec, job, host.identity, jobSignal);
    await host.images?.ready(spec, { signal: jobSignal });

    // From here the requestor sends nothing until the reveal request, so the next message is read while the
    // qube runs: a cancel, or a stream the requestor reset or closed, stops the qube and frees the seat now.
    const control = wire.receive(requestorControlSchema, { signal: jobSignal }).then(
      (message) => {
        if (message.type === "cancel") {
          cancelled = new QubeCancelledError(message.reason);
          controller.abort(cancelled);
        }
        return message;
      },
      (error: unknown) => {
        if (!jobSignal.aborted) {
          cancelled = new QubeCancelledError(`the requestor went away (${toAirqubeError(error).code})`);
          controller.abort(cancelled);
        }
        throw error;
      },
    );
    control.catch(() => undefined);

    await wire.send({ type: "started" });
    host.record(job.jobId, { state: "running" });
    const execution = await host.execute(job, spec, agreement, { signal: jobSignal });
    if (cancelled) throw cancelled;
    const plan = await host.commit(job, execution);
    if (cancelled) throw cancelled;
    await wire.send({
      type: "commit",
      commitment: plan.commitment,
      ...(plan.escrowCommitments ? { escrowCommitments: plan.escrowCommitments } : {}),
    });
    host.record(job.jobId, { state: "committed", outputsRoot: execution.statement.payload.outputsRoot });
    await host.afterCommit?.(job);

    revealTimer = setTimeout(
      () => controller.abort(new TimeoutError("STREAM_TIMEOUT", "No reveal request came in time")),
      REVEAL_WAIT_MS,
    );
    const request = await control;
    clearTimeout(revealTimer);
    if (request.type === "cancel") throw cancelled ?? new QubeCancelledError(request.reason);
    const archive = packDirectory(job.outputsDir);
    await wire.send({
      type: "reveal",
      reveal: plan.reveal(),
      statement: execution.statement,
      manifest: execution.manifest,
      stdout: execution.stdout.slice(0, MAX_LOG_EXCERPT / 4),
      stderr: execution.stderr.slice(0, MAX_LOG_EXCERPT / 4),
    });
    await sendSealed(
      wire,
      archive,
      { qubeId: spec.id, recipientPublicKey: fromHex(terms.requestorSealingKey, 32) },
      { signal: jobSignal },
    );
    await wire.send({ type: "done" });
    host.record(job.jobId, { state: "revealed" });
    await wire.close();
  } catch (error) {
    const e = cancelled ?? toAirqubeError(error);
    host.record(job.jobId, { state: "failed", code: e.code, reason: e.shortMessage });
    if (!(e instanceof QubeCancelledError)) throw e;
    // cancelled: nothing to report back; the stream is dropped
    wire.abort(e);
  } finally {
    clearTimeout(revealTimer);
    controller.abort();
    job.release();
  }
}

/** Receives the sealed image archive (bounded, digest-checked by the opener) and has the host install it. */
async function receiveImage(
  wire: Wire,
  spec: VerifiedQubeSpec,
  identity: Identity,
  images: ImageHost,
  signal: AbortSignal,
): Promise<void> {
  const archiveDigest = spec.spec.image.archiveDigest;
  if (!archiveDigest) throw new PeerError("IMAGE_NOT_SHIPPABLE", "The qube names no image archive to ship");
  const pieces = receiveSealed(
    wire,
    {
      qubeId: spec.id,
      recipient: identity.sealing,
      maxBytes: images.maxArchiveBytes,
      expectedSha256: archiveDigest.replace(/^sha256:/, ""),
    },
    { signal },
  );
  let end: unknown;
  await images.install(
    spec,
    (async function* () {
      end = yield* pieces;
    })(),
    { signal },
  );
  parseMessage(imageEndSchema, end);
}

async function receiveInputs(
  wire: Wire,
  spec: VerifiedQubeSpec,
  job: AdmittedJob,
  identity: Identity,
  signal: AbortSignal,
): Promise<void> {
  await mkdir(job.inputsDir, { recursive: true });
  for (const input of spec.spec.inputs) {
    const target = join(job.inputsDir, input.path);
    await mkdir(dirname(target), { recursive: true });
    const pieces = receiveSealed(
      wire,
      {
        qubeId: spec.id,
        recipient: identity.sealing,
        maxBytes: input.size,
        expectedSize: input.size,
        expectedSha256: input.sha256,
      },
      { signal },
    );
    let end: unknown;
    await writeNewFile(
      target,
      (async function* () {
        end = yield* pieces;
      })(),
    );
    const message = parseMessage(inputEndSchema, end);
    if (message.path !== input.path)
      throw new PeerError("INPUT_UNEXPECTED", "Inputs arrived out of order", { details: message.path });
  }
}
