/**
 * Requestor side of the exchange protocol, as a session with explicit phases so that the requestor can run
 * commit-reveal across k providers: `open` (propose, get the countersigned agreement, send sealed inputs),
 * `awaitCommitment` (the provider's signed commitment), `reveal` (ask for the reveal, check it against the
 * commitment and the statement, receive and unpack the outputs, recompute the outputs root).
 */
import type { Libp2p } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import {
  buildOutputManifest,
  type Commitment,
  checkReveal,
  checkStatementAgainstSpec,
  commitmentSchema,
  type Identity,
  type OutputManifest,
  outputsRootOf,
  PeerError,
  revealSchema as qubeRevealSchema,
  type ResultStatement,
  type Reveal,
  type SignedEnvelope,
  type VerifiedQubeSpec,
  verifyEnvelope,
  verifyResultStatement,
} from "../../qube/index.js";
import type { SandboxOutput } from "../../sandbox/api.js";
import { unpackTar } from "../../sandbox/unpack.js";
import { type Agreement, type AgreementTerms, verifyAgreement } from "../agreement.js";
import { parseMessage, Wire, withDeadline } from "../wire.js";
import {
  CANCEL_TIMEOUT_MS,
  COMMIT_GRACE_MS,
  EXCHANGE_PROTOCOL,
  MAX_FRAME_BYTES,
  NEGOTIATION_TIMEOUT_MS,
} from "./constants.js";
import { AdmissionRefusedError } from "./errors.js";
import {
  answerSchema,
  doneSchema,
  type EscrowBatchWire,
  type EscrowCommitmentsWire,
  type EscrowJobWire,
  providerProgressSchema,
  queryAnswerSchema,
  revealSchema,
} from "./messages.js";
import { fileSource, receiveSealed, sendSealed } from "./transfer.js";

/** Thrown when a provider refuses a proposal; carries its reason. */
export class ProposalRejectedError extends PeerError {
  constructor(code: string, reason: string) {
    super("PROPOSAL_REJECTED", "The provider refused the qube", { details: `${code}: ${reason}` });
  }
}

export interface RevealedResult {
  statement: SignedEnvelope<ResultStatement>;
  reveal: SignedEnvelope<Reveal>;
  manifest: OutputManifest;
  files: SandboxOutput[];
  stdout: string;
  stderr: string;
}

type DialNode = Pick<Libp2p, "peerStore" | "dialProtocol">;

async function dial(node: DialNode, target: { provider: string; addrs: string[] }, signal: AbortSignal): Promise<Wire> {
  const peer = peerIdFromString(target.provider);
  try {
    await node.peerStore.merge(peer, { multiaddrs: target.addrs.map((a) => multiaddr(a)) });
    return new Wire(await node.dialProtocol(peer, EXCHANGE_PROTOCOL, { signal, runOnLimitedConnection: true }), {
      maxFrameBytes: MAX_FRAME_BYTES,
    });
  } catch (error) {
    throw new PeerError("PROVIDER_UNREACHABLE", "Could not reach the provider", {
      details: `${target.provider}: ${(error as Error).message}`,
      cause: error,
    });
  }
}

/**
 * Asks a provider whether it would admit a qube at `price` (wei), paid through `payment` (absent: unpaid),
 * before anything is locked or sent. Nothing is reserved: the proposal may still be refused (e.g. at capacity).
 *
 * @throws AdmissionRefusedError with the provider's reason code when it would not; PeerError when it cannot
 * be reached or answers out of protocol.
 * @example
 * await askAdmission(node, { provider, addrs }, spec, { price: 10n ** 15n, payment: { chainId, escrow } });
 */
export async function askAdmission(
  node: DialNode,
  target: { provider: string; addrs: string[] },
  spec: VerifiedQubeSpec,
  terms: { price: bigint; payment?: { chainId: number; escrow: string }; escrowBatch?: EscrowBatchWire },
  options: { signal?: AbortSignal } = {},
): Promise<{ escrowAccept?: [string, string] }> {
  const signal = withDeadline(NEGOTIATION_TIMEOUT_MS, options.signal);
  const wire = await dial(node, target, signal);
  try {
    await wire.send(
      {
        type: "query",
        spec: spec.envelope,
        price: terms.price.toString(),
        ...(terms.payment ? { payment: terms.payment } : {}),
        ...(terms.escrowBatch ? { escrowBatch: terms.escrowBatch } : {}),
      },
      { signal },
    );
    const answer = await wire.receive(queryAnswerSchema, { signal });
    await wire.close({ signal });
    if (answer.type === "refuse") throw new AdmissionRefusedError(answer.code, answer.reason);
    if (answer.type === "failed")
      throw new PeerError("PROVIDER_FAILED", "The provider could not answer the admission query", {
        details: `${answer.code}: ${answer.reason}`,
      });
    if (terms.escrowBatch && !answer.escrowAccept)
      throw new PeerError("ESCROW_ACCEPT_MISSING", "The provider admitted the escrow v2 batch without its Accept");
    return answer.escrowAccept ? { escrowAccept: answer.escrowAccept } : {};
  } catch (error) {
    wire.abort(error as Error);
    throw error;
  }
}

/** One qube on one provider. */
export class ExchangeSession {
  agreement: Agreement | undefined;
  commitment: SignedEnvelope<Commitment> | undefined;
  /** Escrow v2: the provider's commitment to the batch and its signed `Commitments`, sent with its commitment. */
  escrowCommitments: EscrowCommitmentsWire | undefined;
  /** Plain bytes of the image archive shipped to this provider (0: it had the image). */
  imageBytesShipped = 0;
  private cancelled: Promise<void> | undefined;
  private constructor(
    private readonly wire: Wire,
    readonly provider: string,
    private readonly spec: VerifiedQubeSpec,
    private readonly identity: Identity,
  ) {}

  /**
   * Dials the provider, proposes, and on acceptance streams the sealed inputs.
   * `inputs` maps each spec input path to a host file. `escrow` is the job the budget is locked in (paid qubes).
   * `imageArchive` is the file of the spec's `image.archiveDigest`, sent sealed when the provider asks for it.
   */
  static async open(
    node: DialNode,
    target: { provider: string; addrs: string[]; sealingKey: Uint8Array },
    spec: VerifiedQubeSpec,
    proposal: SignedEnvelope<AgreementTerms>,
    identity: Identity,
    inputs: Map<string, string>,
    options: {
      signal?: AbortSignal;
      escrow?: EscrowJobWire;
      escrowBatch?: EscrowBatchWire;
      imageArchive?: string;
    } = {},
  ): Promise<ExchangeSession> {
    const signal = withDeadline(NEGOTIATION_TIMEOUT_MS, options.signal);
    const wire = await dial(node, target, signal);
    const session = new ExchangeSession(wire, target.provider, spec, identity);
    try {
      await wire.send(
        {
          type: "propose",
          spec: spec.envelope,
          proposal,
          ...(options.escrow ? { escrow: options.escrow } : {}),
          ...(options.escrowBatch ? { escrowBatch: options.escrowBatch } : {}),
        },
        { signal },
      );
      const answer = await wire.receive(answerSchema, { signal });
      if (answer.type === "reject") throw new ProposalRejectedError(answer.code, answer.reason);
      if (answer.type === "failed")
        throw new PeerError("PROVIDER_FAILED", "The provider failed while handling the proposal", {
          details: `${answer.code}: ${answer.reason}`,
        });
      const agreement = verifyAgreement({ requestor: proposal, provider: answer.agreement });
      if (agreement.provider.signer !== target.provider)
        throw new PeerError("AGREEMENT_INVALID", "The agreement is countersigned by another provider");
      session.agreement = agreement;
      if (answer.image === "send") {
        if (!options.imageArchive || !spec.spec.image.archiveDigest)
          throw new PeerError("IMAGE_NOT_SHIPPABLE", "The provider lacks the image and the qube ships none", {
            details: spec.spec.image.digest,
          });
        const sealed = { qubeId: spec.id, recipientPublicKey: target.sealingKey };
        session.imageBytesShipped = await sendSealed(wire, fileSource(options.imageArchive), sealed, options);
        await wire.send({ type: "image-end" }, options);
      }
      for (const input of spec.spec.inputs) {
        const source = inputs.get(input.path);
        if (!source) throw new PeerError("INPUT_MISSING", "No file for a declared input", { details: input.path });
        await sendSealed(wire, fileSource(source), { qubeId: spec.id, recipientPublicKey: target.sealingKey }, options);
        await wire.send({ type: "input-end", path: input.path }, options);
      }
      return session;
    } catch (error) {
      await session.end(error, options.signal);
      throw error;
    }
  }

  /** Waits for the provider's signed commitment (bounded by the qube's wall time plus a grace period). */
  async awaitCommitment(
    options: { signal?: AbortSignal; onStarted?: () => void; graceMs?: number } = {},
  ): Promise<SignedEnvelope<Commitment>> {
    const signal = withDeadline(
      this.spec.spec.limits.wallTimeMs + (options.graceMs ?? COMMIT_GRACE_MS),
      options.signal,
    );
    try {
      for (;;) {
        const message = await this.wire.receive(providerProgressSchema, { signal });
        if (message.type === "started") {
          options.onStarted?.();
          continue;
        }
        if (message.type === "failed")
          throw new PeerError("PROVIDER_FAILED", "The provider failed the qube", {
            details: `${message.code}: ${message.reason}`,
          });
        const commitment = verifyEnvelope(message.commitment, {
          kind: "commitment",
          schema: commitmentSchema,
          signer: this.provider,
        });
        if (commitment.payload.qubeId !== this.spec.id || commitment.payload.provider !== this.provider) {
          throw new PeerError("COMMITMENT_INVALID", "The commitment is for another qube or provider");
        }
        this.commitment = commitment;
        if (message.escrowCommitments) this.escrowCommitments = message.escrowCommitments;
        return commitment;
      }
    } catch (error) {
      await this.end(error, options.signal);
      throw error;
    }
  }

  /**
   * Asks for the reveal, checks it against the commitment and the statement, then receives the sealed outputs
   * into `outputDir`, unpacks them safely and recomputes the outputs root, which must match. `onBytes` is told
   * the bytes of the outputs' archive opened so far, after each piece.
   */
  async reveal(
    outputDir: string,
    options: { signal?: AbortSignal; onBytes?: (received: number) => void } = {},
  ): Promise<RevealedResult> {
    if (!this.commitment) throw new PeerError("COMMITMENT_MISSING", "No commitment to reveal against");
    // the outputs come within this deadline too: it grows with their cap at 1 MiB/s (a stalled frame still fails
    // after TRANSFER_FRAME_TIMEOUT_MS); a fixed 60 s cut the reveal of 100 MB of pages from 3 providers at once
    const signal = withDeadline(
      NEGOTIATION_TIMEOUT_MS * 4 + Math.ceil(this.spec.spec.limits.outputBytes / 1024),
      options.signal,
    );
    try {
      await this.wire.send({ type: "reveal-request" }, { signal });
      const message = await this.wire.receive(revealSchema, { signal });
      const reveal = verifyEnvelope(message.reveal, {
        kind: "reveal",
        schema: qubeRevealSchema,
        signer: this.provider,
      });
      checkReveal(this.commitment.payload, reveal.payload);
      const statementPayload = verifyResultStatement(message.statement, {
        provider: this.provider,
        qubeId: this.spec.id,
      });
      checkStatementAgainstSpec(statementPayload, this.spec.spec, this.spec.id);
      if (statementPayload.outputsRoot !== reveal.payload.outputsRoot)
        throw new PeerError("STATEMENT_MISMATCH", "The statement and the reveal name different outputs");
      const limits = this.spec.spec.limits;
      const pieces = receiveSealed(
        this.wire,
        {
          qubeId: this.spec.id,
          recipient: this.identity.sealing,
          maxBytes: limits.outputBytes + (limits.outputFiles + 16) * 2048,
        },
        { signal },
      );
      let end: unknown;
      const onBytes = options.onBytes;
      const files = await unpackTar(
        (async function* () {
          let received = 0;
          let done = false;
          try {
            for (;;) {
              const next = await pieces.next();
              if (next.done) {
                done = true;
                end = next.value;
                return;
              }
              received += next.value.byteLength;
              onBytes?.(received);
              yield next.value;
            }
          } finally {
            // the unpacker stopped early (an error): the receiver is closed as `yield*` would close it
            if (!done) await pieces.return(undefined);
          }
        })(),
        outputDir,
        { maxFileBytes: limits.outputBytes, maxTotalBytes: limits.outputBytes, maxFiles: limits.outputFiles },
        { signal },
      );
      parseMessage(doneSchema, end);
      const manifest = buildOutputManifest(files, this.spec.spec, { source: "peer" });
      const root = outputsRootOf(manifest);
      if (root !== statementPayload.outputsRoot) {
        throw new PeerError("OUTPUTS_MISMATCH", "The outputs received do not hash to the root the provider signed", {
          details: `${root} != ${statementPayload.outputsRoot}`,
        });
      }
      await this.wire.close();
      return {
        statement: message.statement as SignedEnvelope<ResultStatement>,
        reveal,
        manifest,
        files,
        stdout: message.stdout,
        stderr: message.stderr,
      };
    } catch (error) {
      await this.end(error, options.signal);
      throw error;
    }
  }

  /** After a failure: tells the provider to stop when the caller aborted (Ctrl-C), else just drops the stream. */
  private async end(error: unknown, callerSignal: AbortSignal | undefined): Promise<void> {
    if (callerSignal?.aborted) await this.cancel("the requestor was interrupted");
    else this.wire.abort(error as Error);
  }

  /**
   * Tells the provider to stop the qube (it destroys the sandbox and frees the seat), then drops the stream.
   * Bounded by {@link CANCEL_TIMEOUT_MS}; never throws.
   */
  async cancel(reason: string): Promise<void> {
    if (this.cancelled) return this.cancelled;
    this.cancelled = (async () => {
      const signal = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
      try {
        await this.wire.send({ type: "cancel", reason: reason.slice(0, 256) }, { signal });
        await this.wire.close({ signal });
      } catch {
        // the stream is gone already: the provider sees it reset, which stops the qube as well
      }
      this.wire.abort(new PeerError("QUBE_CANCELLED", "The qube was cancelled"));
    })();
    return this.cancelled;
  }

  /** Ends the session without a reveal (the provider's work is not used). */
  abort(reason: Error): void {
    this.wire.abort(reason);
  }
}
