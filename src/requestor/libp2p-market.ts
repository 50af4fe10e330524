/**
 * The embedded-network backend of the requestor port: offers from gossipsub and direct queries, agreements
 * signed by both sides, qubes exchanged over the exchange protocol with commit-reveal.
 */
import { randomBytes } from "node:crypto";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { wireOfJob } from "../chain/escrow-v2-wire.js";
import { mayDial } from "../net/addresses.js";
import { type AgreementTerms, proposeAgreement } from "../net/agreement.js";
import { awaitDirectConnection, DCUTR_TIMEOUT_MS } from "../net/dcutr.js";
import { COMMIT_GRACE_MS } from "../net/exchange/constants.js";
import { askAdmission, ExchangeSession } from "../net/exchange/dialer.js";
import type { EscrowBatchWire } from "../net/exchange/messages.js";
import { type AirqubeNode, addressPolicyOf, createNode } from "../net/node.js";
import { OfferBook } from "../net/offers/discovery.js";
import { type Offer, qubePrice } from "../net/offers/offer.js";
import { type Identity, PeerError, type SignedEnvelope, toHex, type VerifiedQubeSpec } from "../qube/index.js";
import type {
  ComputeMarket,
  Dispatch,
  DispatchEvents,
  EscrowSeat,
  FindProvidersOptions,
  ProviderAnswer,
  ProviderCandidate,
  SealedQube,
} from "./api.js";
import { toWireJob } from "./payments.js";

/** Why public mode skips an offer that names no address it dials. */
const PUBLIC_NOT_DIALLED =
  "public mode never dials loopback, private-range, link-local or unspecified addresses that an offer names (--allow-private-addrs dials private ranges, for a LAN)";
/** Why the devnet skips an offer that names no loopback address. */
const DEVNET_NOT_DIALLED = "the devnet dials loopback only (--public for a real deployment)";

/** How long a candidate has to answer the liveness ping before its offer is dropped. */
export const LIVENESS_TIMEOUT_MS = 3_000;
/** How long a ping answer counts (a disconnect forgets it at once). */
export const LIVENESS_CACHE_MS = 10_000;
/**
 * How long a provider whose ping failed is not pinged again. The discovery loop asks for offers every 150 ms
 * and a fresh copy of an offer brings its provider back: without this, an offer naming someone else's public
 * address made a requestor dial it several times a second for as long as it looked for providers.
 */
export const LIVENESS_RETRY_MS = 1_000;

/** Options of {@link Libp2pMarket.connect}. */
export interface Libp2pMarketOptions {
  /** The requestor's identity: its peer id, signing and sealing keys. */
  identity: Identity;
  /** Multiaddrs of bootstrap peers (one must answer; empty: none dialled). */
  bootstrap: string[];
  /** Public mode (see NodeOptions.public): never dials loopback or private addresses an offer names. */
  public?: boolean;
  /** @deprecated same as `public`. */
  allowPublic?: boolean;
  /** Public mode: also dial private-range addresses (a LAN, network-namespace tests). */
  allowPrivate?: boolean;
  /** Public mode: also dial loopback (tests on one machine). */
  allowLoopback?: boolean;
  /**
   * Public mode: addresses to listen on (default none). A requestor with a reachable address lets a provider
   * behind NAT that it reached through a relay dial it back directly (DCUtR's reverse connection).
   */
  listen?: string[];
  /** Public mode: addresses announced instead of the listen addresses (a public IP or name in front of a NAT). */
  announce?: string[];
  /** Public mode: addresses announced besides the listen addresses. */
  appendAnnounce?: string[];
  /** How long a candidate has to answer a ping before it is dropped (default LIVENESS_TIMEOUT_MS). */
  livenessTimeoutMs?: number;
  /** Extra time beyond the qube's wall time that a provider gets to commit. Default 30 s. */
  commitGraceMs?: number;
  /** How long to gather offers before answering `findProviders`. */
  discoveryMs?: number;
  /** Clock for offer expiry and agreement deadlines (tests); default the system clock. */
  now?: () => Date;
}

/**
 * The embedded network as a {@link ComputeMarket}: a libp2p requestor node that collects signed offers,
 * pings candidates before using them, signs agreements and exchanges qubes with commit-reveal.
 *
 * @example
 * const market = await Libp2pMarket.connect({ identity, bootstrap: ["/ip4/127.0.0.1/tcp/4001/p2p/12D3…"] });
 * try {
 *   const candidates = await market.findProviders(qube.spec, { wanted: 3 });
 * } finally {
 *   await market.close();
 * }
 */
export class Libp2pMarket implements ComputeMarket {
  readonly name = "libp2p";
  /** When each provider last answered a ping (ms since epoch). */
  private readonly alive = new Map<string, number>();
  /** When each provider last failed its ping, and why (ms since epoch). */
  private readonly unreachable = new Map<string, { at: number; error: PeerError }>();

  private constructor(
    readonly node: AirqubeNode,
    readonly offers: OfferBook,
    private readonly options: Libp2pMarketOptions,
  ) {
    // a provider that disconnected must answer again before it is used
    node.addEventListener("peer:disconnect", (event) => this.alive.delete(event.detail.toString()));
  }

  /**
   * Starts a requestor node, subscribes to offers and dials the bootstrap peers until one answers (up to 3
   * rounds, 5 s per dial). Throws PeerError `BOOTSTRAP_UNREACHABLE` when none answers.
   */
  static async connect(options: Libp2pMarketOptions): Promise<Libp2pMarket> {
    const node = await createNode({
      identity: options.identity,
      bootstrap: options.bootstrap,
      ...(options.public || options.allowPublic ? { public: true } : {}),
      ...(options.allowPrivate ? { allowPrivate: true } : {}),
      ...(options.allowLoopback ? { allowLoopback: true } : {}),
      // a requestor in public mode listens nowhere unless told (it opens every stream itself)
      ...(options.listen ? { listen: options.listen } : options.public || options.allowPublic ? { listen: [] } : {}),
      ...(options.announce?.length ? { announce: options.announce } : {}),
      ...(options.appendAnnounce?.length ? { appendAnnounce: options.appendAnnounce } : {}),
    });
    const offers = new OfferBook(node, options.now ? { now: options.now } : {});
    offers.start();
    try {
      await dialBootstrap(node, options.bootstrap);
    } catch (error) {
      offers.stop();
      await node.stop();
      throw error;
    }
    return new Libp2pMarket(node, offers, options);
  }

  /** What this node dials (the connection gater enforces the same policy on every dial). */
  private get policy() {
    return addressPolicyOf(this.options);
  }

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  /**
   * Gathers offers for a while (gossip and direct queries to connected peers) and returns the usable ones
   * whose providers answer: every candidate is pinged (within `livenessTimeoutMs`) before the requestor may
   * lock escrow for it or sign an agreement with it; one that does not answer is dropped from the offer book
   * (`PROVIDER_UNREACHABLE` in its dropped offers).
   */
  async findProviders(spec: VerifiedQubeSpec, options: FindProvidersOptions = {}): Promise<ProviderCandidate[]> {
    const wanted = options.wanted ?? 1;
    const accept = options.accept ?? (() => true);
    const enough = (found: ProviderCandidate[]) => found.filter(accept).length >= wanted;
    // Offers already known and still valid are enough: no discovery round trip, only the liveness check.
    const known = await this.live(this.candidates(spec), options);
    if (enough(known)) return known;
    const started = Date.now();
    const until = started + (this.options.discoveryMs ?? 5000);
    for (;;) {
      await this.offers.queryConnected(options);
      const found = await this.live(this.candidates(spec), options);
      // enough offers, and a short settle time so that cheaper or better ones can still arrive
      if ((enough(found) && Date.now() - started >= 300) || Date.now() >= until) return found;
      await new Promise((r) => setTimeout(r, 150));
      options.signal?.throwIfAborted();
    }
  }

  /** The candidates that answer a ping now (answers are remembered for LIVENESS_CACHE_MS, until a disconnect). */
  private async live(candidates: ProviderCandidate[], options: { signal?: AbortSignal }): Promise<ProviderCandidate[]> {
    const timeoutMs = this.options.livenessTimeoutMs ?? LIVENESS_TIMEOUT_MS;
    const answers = await Promise.all(
      candidates.map(async (candidate) => {
        const seen = this.alive.get(candidate.id);
        if (seen !== undefined && Date.now() - seen < LIVENESS_CACHE_MS) return true;
        const offer = this.offerOf(candidate.id);
        if (!offer) return false;
        // an offer is the provider's word only: an address this node's policy does not dial (in public mode:
        // loopback, private, link-local, unspecified) is never tried, and an offer naming no other is skipped
        // without a dial (a hostile offer must not make a requestor dial its own ports or its LAN)
        const dialable = offer.addrs.filter((a) => mayDial(a, this.policy));
        if (offer.addrs.length > 0 && dialable.length === 0) {
          this.offers.drop(
            offer.provider,
            new PeerError("OFFER_NOT_DIALLABLE", "The offer names no address this requestor dials: offer skipped", {
              details: `${offer.addrs.join(", ").slice(0, 600)}: ${this.policy.public ? PUBLIC_NOT_DIALLED : DEVNET_NOT_DIALLED}`,
            }),
          );
          return false;
        }
        const failed = this.unreachable.get(candidate.id);
        if (failed !== undefined && Date.now() - failed.at < LIVENESS_RETRY_MS) {
          // not dialled again so soon; a fresh copy of the offer cleared the record of why it is not used
          this.offers.drop(offer.provider, failed.error);
          return false;
        }
        const timeout = AbortSignal.timeout(timeoutMs);
        const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
        try {
          const peer = peerIdFromString(offer.provider);
          await this.node.peerStore.merge(peer, { multiaddrs: dialable.map((a) => multiaddr(a)) });
          await this.node.services.ping.ping(peer, { signal });
          // a requestor with addresses of its own may be dialled back directly by a provider behind NAT (DCUtR),
          // which then closes the relayed connection: wait for that before any exchange stream opens on it
          if (this.options.listen?.length) await awaitDirectConnection(this.node, peer, DCUTR_TIMEOUT_MS);
          this.alive.set(candidate.id, Date.now());
          this.unreachable.delete(candidate.id);
          return true;
        } catch (error) {
          options.signal?.throwIfAborted();
          const unreachable = new PeerError(
            "PROVIDER_UNREACHABLE",
            "The provider did not answer a ping: offer dropped",
            {
              details: `${offer.addrs.join(", ")}: ${(error as Error).message}`.slice(0, 500),
              cause: error,
            },
          );
          this.unreachable.set(candidate.id, { at: Date.now(), error: unreachable });
          this.offers.drop(offer.provider, unreachable);
          return false;
        }
      }),
    );
    return candidates.filter((_, i) => answers[i]);
  }

  /** Candidates from the offers known now. */
  candidates(spec: VerifiedQubeSpec): ProviderCandidate[] {
    return this.offers
      .list()
      .filter(({ offer }) => offer.tiers.includes(spec.spec.tier) && offer.provider !== this.options.identity.peerId)
      .map(({ offer }) => toCandidate(offer, spec));
  }

  /** The valid offer known from `provider`, if any. */
  offerOf(provider: string): Offer | undefined {
    return this.offers.list().find((known) => known.offer.provider === provider)?.offer;
  }

  /**
   * Asks the provider whether it would admit the qube at `terms.price`. Throws PeerError `OFFER_UNKNOWN`
   * without a valid offer from it, or the provider's refusal.
   */
  async admits(
    candidate: ProviderCandidate,
    qube: SealedQube,
    terms: { price: bigint; payment?: { chainId: number; escrow: string }; signal?: AbortSignal },
  ): Promise<void> {
    const offer = this.offerOf(candidate.id);
    if (!offer) throw new PeerError("OFFER_UNKNOWN", "No valid offer from this provider", { details: candidate.id });
    await askAdmission(
      this.node,
      { provider: offer.provider, addrs: offer.addrs },
      qube.spec,
      { price: terms.price, ...(terms.payment ? { payment: terms.payment } : {}) },
      terms.signal ? { signal: terms.signal } : {},
    );
  }

  /**
   * Escrow v2: asks the provider to admit the qube paid through `batch` and to sign its `Accept` of it.
   * Throws PeerError `OFFER_UNKNOWN` without a valid offer from it, `ESCROW_ACCEPT_MISSING`, or its refusal.
   */
  async acceptEscrowBatch(
    candidate: ProviderCandidate,
    qube: SealedQube,
    batch: EscrowBatchWire,
    options: { signal?: AbortSignal } = {},
  ): Promise<[string, string]> {
    const offer = this.offerOf(candidate.id);
    if (!offer) throw new PeerError("OFFER_UNKNOWN", "No valid offer from this provider", { details: candidate.id });
    const { escrowAccept } = await askAdmission(
      this.node,
      { provider: offer.provider, addrs: offer.addrs },
      qube.spec,
      { price: BigInt(batch.price), payment: { chainId: batch.chainId, escrow: batch.escrow }, escrowBatch: batch },
      options,
    );
    if (!escrowAccept)
      throw new PeerError("ESCROW_ACCEPT_MISSING", "The provider admitted the escrow v2 batch without its Accept");
    return escrowAccept;
  }

  /**
   * Signs an agreement with the provider (price, deadline = wall time + commit grace, escrow job if paid),
   * opens an exchange session and sends the sealed inputs. Throws PeerError `OFFER_UNKNOWN` without a valid
   * offer from it, or the exchange's typed errors.
   */
  async dispatch(
    candidate: ProviderCandidate,
    qube: SealedQube,
    options: { signal?: AbortSignal; escrow?: EscrowSeat } & DispatchEvents = {},
  ): Promise<Dispatch> {
    const offer = this.offerOf(candidate.id);
    if (!offer) throw new PeerError("OFFER_UNKNOWN", "No valid offer from this provider", { details: candidate.id });
    const now = this.now();
    const terms: AgreementTerms = {
      version: 1,
      qubeId: qube.spec.id,
      requestor: this.options.identity.peerId,
      provider: offer.provider,
      // a paid qube: the agreed price is the escrow job's (what each provider of the quorum is paid)
      price: (options.escrow ? options.escrow.job.price : candidate.price).toString(),
      currency: offer.price.currency,
      deadline: new Date(
        now.getTime() + qube.spec.spec.limits.wallTimeMs + (this.options.commitGraceMs ?? COMMIT_GRACE_MS),
      ).toISOString(),
      ...(options.escrow ? { escrowJob: options.escrow.jobId } : {}),
      nonce: randomBytes(16).toString("hex"),
      requestorSealingKey: toHex(this.options.identity.sealing.publicKey),
    };
    const proposal: SignedEnvelope<AgreementTerms> = proposeAgreement(terms, this.options.identity);
    const session = await ExchangeSession.open(
      this.node,
      { provider: offer.provider, addrs: offer.addrs, sealingKey: Buffer.from(offer.sealingKey, "hex") },
      qube.spec,
      proposal,
      this.options.identity,
      qube.inputs,
      {
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.escrow
          ? options.escrow.version === 2
            ? { escrowBatch: wireOfJob(options.escrow.job, options.escrow.chainId, options.escrow.escrow) }
            : { escrow: toWireJob(options.escrow) }
          : {}),
        ...(qube.imageArchive ? { imageArchive: qube.imageArchive } : {}),
      },
    );
    options.onAgreement?.(candidate.id);
    options.onSent?.(candidate.id);
    return new Libp2pDispatch(candidate, session, options, this.options.commitGraceMs);
  }

  /** Stops following offers and stops the node. */
  async close(): Promise<void> {
    this.offers.stop();
    await this.node.stop();
  }
}

class Libp2pDispatch implements Dispatch {
  constructor(
    readonly provider: ProviderCandidate,
    private readonly session: ExchangeSession,
    private readonly events: DispatchEvents,
    private readonly commitGraceMs?: number,
  ) {}

  get commitment() {
    return this.session.commitment;
  }

  async awaitCommitment(options: { signal?: AbortSignal } = {}): Promise<string> {
    const commitment = await this.session.awaitCommitment({
      ...options,
      ...(this.commitGraceMs !== undefined ? { graceMs: this.commitGraceMs } : {}),
      onStarted: () => this.events.onStarted?.(this.provider.id),
    });
    return commitment.payload.commitment;
  }

  async reveal(
    outputDir: string,
    options: { signal?: AbortSignal; onBytes?: (received: number) => void } = {},
  ): Promise<ProviderAnswer> {
    const result = await this.session.reveal(outputDir, options);
    const statement = result.statement.payload;
    return {
      provider: this.provider.id,
      ...(this.provider.payout ? { payout: this.provider.payout } : {}),
      outputsRoot: statement.outputsRoot,
      manifest: result.manifest,
      files: result.files,
      outputDir,
      statement: result.statement,
      ...(this.session.commitment ? { commitment: this.session.commitment } : {}),
      salt: result.reveal.payload.salt,
      ...(this.session.escrowCommitments ? { escrowCommitments: this.session.escrowCommitments } : {}),
      exitCode: statement.exitCode,
      stdout: result.stdout,
      stderr: result.stderr,
    };
  }

  abort(reason: Error): void {
    this.session.abort(reason);
  }

  cancel(reason: string): Promise<void> {
    return this.session.cancel(reason);
  }
}

function toCandidate(offer: Offer, spec: VerifiedQubeSpec): ProviderCandidate {
  const probe = offer.probes[spec.spec.tier];
  return {
    id: offer.provider,
    payout: offer.payout.toLowerCase(),
    ...(offer.operator ? { operator: offer.operator } : {}),
    tiers: offer.tiers,
    price: qubePrice(
      { start: BigInt(offer.price.start), perSecond: BigInt(offer.price.perSecond) },
      spec.spec.limits.wallTimeMs,
    ),
    ...(probe
      ? {
          probe: { reportHash: probe.reportHash, pass: probe.pass, fail: probe.fail, inconclusive: probe.inconclusive },
        }
      : {}),
  };
}

/** Dials the bootstrap peers (a few tries each) so that a wrong address fails now, with a clear error. */
async function dialBootstrap(node: AirqubeNode, bootstrap: string[]): Promise<void> {
  if (bootstrap.length === 0) return;
  const errors: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    for (const address of bootstrap) {
      try {
        await node.dial(multiaddr(address), { signal: AbortSignal.timeout(5_000) });
        return;
      } catch (error) {
        errors.push(`${address}: ${(error as Error).message}`);
      }
    }
    await new Promise((r) => setTimeout(r, 300 * (attempt + 1)));
  }
  throw new PeerError("BOOTSTRAP_UNREACHABLE", "Could not reach any bootstrap peer", {
    details: errors.slice(-bootstrap.length).join("; "),
  });
}
