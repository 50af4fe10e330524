/**
 * The provider agent: proves its sandbox tiers with the escape suite, announces a signed offer, admits qubes
 * within its capacity and limits, runs each in a fresh sandbox, commits, reveals, keeps a ledger, and drains
 * on shutdown. Composition root of the provider side; every collaborator can be overridden for tests.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import Docker from "dockerode";
import type { Logger } from "pino";
import { pino } from "pino";
import type { EscrowBatch } from "../chain/escrow-v2-batch.js";
import type { EscrowJob } from "../chain/job.js";
import { rootToBytes32 } from "../chain/qube-ids.js";
import { ImageCache } from "../images/image-cache.js";
import {
  type Admission,
  type AdmittedJob,
  type CommitPlan,
  type ExchangeHost,
  type Execution,
  handleExchange,
  type JobEvent,
} from "../net/exchange/handler.js";
import { loadOrCreateIdentity, loadOrCreatePayoutWallet } from "../net/keys.js";
import type { AirqubeNode, NodeOptions } from "../net/node.js";
import { awaitRelayAddress, checkNodeAddresses, createNode } from "../net/node.js";
import { announceOffers } from "../net/offers/announce.js";
import { describeSkew } from "../net/offers/clock.js";
import { OFFER_TTL_MS, PEER_EXCHANGE_PEERS } from "../net/offers/constants.js";
import { OfferBook } from "../net/offers/discovery.js";
import { type Offer, type SignedOffer, signOffer } from "../net/offers/offer.js";
import {
  buildOutputManifest,
  createCommitment,
  type OutputRefusal,
  outputRefusalOf,
  outputsRootOf,
  PlatformError,
  type QubeSpec,
  type ResultStatement,
  signCommitment,
  signResultStatement,
  signReveal,
  type Tier,
  toHex,
  UserError,
} from "../qube/index.js";
import type { Sandbox } from "../sandbox/api.js";
import { ContainerSandbox } from "../sandbox/container-sandbox.js";
import { UidPool, type UidRange } from "../sandbox/uid-pool.js";
import { sweepUid } from "../sandbox/uid-sweep.js";
import { type DirLock, lockDataDir } from "../store/dir-lock.js";
import { checkAdmission } from "./admission.js";
import { type Behaviour, parseBehaviour } from "./behaviour.js";
import { DEFAULT_MAX_INPUT_BYTES, defaultResources, type ProviderConfig, type ProviderResources } from "./config.js";
import { JobLedger, type RefusalStage } from "./ledger.js";
import { ProviderPayments, writeChainFile } from "./payments.js";
import { ProviderPaymentsV2 } from "./payments-v2.js";

/** The escape-suite outcome the agent needs per tier. */
export interface ProbeGateResult {
  /** Hash of the suite's report (see `reportHash` in `airqube/probes`), published in offers. */
  reportHash: string;
  /** Probes that passed. */
  pass: number;
  /** Probes that failed: any failure keeps the tier from being offered. */
  fail: number;
  /** Probes that could not decide: any keeps the tier from being offered. */
  inconclusive: number;
  /** Probes skipped. */
  skipped: number;
}

/** Runs (or looks up) the escape suite for one tier. */
/** `uids`: the pool the agent's sandboxes draw host uids from, when one is configured (row 37 judges it). */
export type ProbeGate = (
  tier: Tier,
  sandbox: Sandbox,
  options: { signal?: AbortSignal; uids?: UidPool },
) => Promise<ProbeGateResult>;

/** The collaborators of a {@link ProviderAgent} (tests pass fakes). */
export interface ProviderDeps {
  /** A sandbox per tier; default a `ContainerSandbox` for `container` (other tiers must be given). */
  sandboxes?: Partial<Record<Tier, Sandbox>>;
  /** Vets each configured tier at start (e.g. {@link escapeSuiteGate}). */
  probe: ProbeGate;
  /** Pino logger; default silent. */
  logger?: Logger;
  /** Clock (tests); default the system clock. */
  now?: () => Date;
  /**
   * The host uids of every sandbox the agent runs, when the caller made sandboxes of its own (the micro-VM
   * tier) that must draw from the same pool; default a pool of `config.sandboxUids`, made when first needed.
   */
  uidPool?: UidPool;
}

/** A running agent's state, as {@link ProviderAgent.status} returns it (also written to `status.json`). */
export interface ProviderStatus {
  /** The provider's libp2p peer id. */
  peerId: string;
  /** The multiaddrs the node listens on. */
  addrs: string[];
  /** The address it is paid to. */
  payout: string;
  /** The tiers offered (those that passed the escape suite). */
  tiers: Tier[];
  /** Qubes admitted and not yet finished. */
  running: number;
  /** Most qubes run at once. */
  maxConcurrent: number;
  /** True once `stop` began: no new qube is admitted. */
  draining: boolean;
  /** The escape suite's outcome per configured tier. */
  probes: Partial<Record<Tier, ProbeGateResult>>;
}

/** How often `status.json` is rewritten while the agent runs (besides every job event). */
const STATUS_REFRESH_MS = 15_000;
/** Most offers of other providers `status.json` lists. */
const MAX_STATUS_OFFERS = 200;

/** How long a provider listening on `/p2p-circuit` waits for a relay reservation before it announces. */
const RELAY_RESERVATION_WAIT_MS = 15_000;

/**
 * The provider agent. `start` vets each configured tier with the escape suite, joins the network, announces
 * signed offers and serves qubes; `stop` drains and shuts down. One agent per data directory at a time.
 *
 * @example
 * const config = loadProviderConfig(undefined, { dataDir, bootstrap: [bootstrapAddr] });
 * const agent = new ProviderAgent(config, { probe: escapeSuiteGate({ cacheDir: join(dataDir, "probe-cache") }) });
 * const status = await agent.start();
 * console.log(status.peerId, status.tiers);
 * process.once("SIGINT", () => agent.stop({ drainMs: 10_000 }));
 */
export class ProviderAgent {
  /** The provider's identity (peer id, signing and sealing keys), kept in the data directory. */
  readonly identity;
  /** The job ledger (`ledger.sqlite` in the data directory). */
  readonly ledger: JobLedger;
  /** The address the provider is paid to. */
  readonly payout: string;
  /** The payout key, when the agent is paid on chain (never logged). */
  private readonly payoutKey: string | undefined;
  private payments: ProviderPayments | undefined;
  /** Escrow v2 (`chain.escrowVersion` 2), instead of `payments`. */
  private paymentsV2: ProviderPaymentsV2 | undefined;
  /** Escrow v2 batches of admitted paid qubes, by admitted job id. */
  private readonly escrowBatches = new Map<string, EscrowBatch>();
  /** Escrow jobs of admitted paid qubes, by admitted job id. */
  private readonly escrowJobs = new Map<string, EscrowJob>();
  private node: AirqubeNode | undefined;
  private stopAnnouncing: (() => Promise<void>) | undefined;
  /** Refreshes `status.json` (offers seen, capacity) for local readers such as the dashboard. */
  private statusTimer: NodeJS.Timeout | undefined;
  /** Offers of other providers, relayed to requestors that ask. */
  private market: OfferBook | undefined;
  private readonly sandboxes: Partial<Record<Tier, Sandbox>>;
  private uidPool: UidPool | undefined;
  private readonly probes: Partial<Record<Tier, ProbeGateResult>> = {};
  private readonly running = new Map<string, Promise<void>>();
  private readonly resources: ProviderResources;
  private readonly behaviour: Behaviour;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private tiers: Tier[] = [];
  private readonly docker = new Docker();
  private draining = false;
  private readonly dirLock: DirLock;
  /** Shipped images (content-addressed, size-capped, shared by concurrent qubes). */
  readonly images: ImageCache;

  /**
   * Locks the data directory and loads (or creates) the identity, the payout key and the ledger.
   *
   * @throws UserError `DATA_DIR_LOCKED`, `PAYOUT_KEY_MISMATCH` (paid on chain with a `payout` that is not the
   * data directory's payout key); PlatformError `STORE_UNAVAILABLE`.
   */
  constructor(
    readonly config: ProviderConfig,
    private readonly deps: ProviderDeps,
  ) {
    // one process per data directory: a second agent must not delete this one's jobs
    this.dirLock = lockDataDir(config.dataDir, "airqube provider agent");
    this.identity = loadOrCreateIdentity(config.dataDir);
    if (config.chain) {
      // paid on chain: the agent signs its commitments, so it needs the payout key itself
      const wallet = loadOrCreatePayoutWallet(config.dataDir);
      if (config.payout && config.payout.toLowerCase() !== wallet.address.toLowerCase()) {
        throw new UserError(
          "PAYOUT_KEY_MISMATCH",
          "The payout address is not the one of the data directory's payout key",
          {
            details: `--payout ${config.payout}, payout.key is ${wallet.address}; drop --payout or replace payout.key`,
          },
        );
      }
      this.payout = wallet.address;
      this.payoutKey = wallet.privateKey;
    } else {
      this.payout = config.payout ?? loadOrCreatePayoutWallet(config.dataDir).address;
    }
    this.ledger = new JobLedger(join(config.dataDir, "ledger.sqlite"));
    this.resources = config.resources ?? defaultResources();
    this.behaviour = parseBehaviour(config.behaviour);
    this.logger = deps.logger ?? pino({ level: "silent" });
    this.now = deps.now ?? (() => new Date());
    this.sandboxes = deps.sandboxes ?? {};
    this.uidPool = deps.uidPool;
    this.images = new ImageCache(join(config.dataDir, "images"), this.docker, config.images);
  }

  /**
   * Starts the agent; resolves once it is listening and has announced its first offer.
   *
   * @throws PlatformError `NO_SAFE_TIER` when no tier passed the escape suite; UserError `ADDRESS_*` for a bad
   * listen, announce or bootstrap address, `TIER_UNAVAILABLE` (a tier without a sandbox); the chain's errors
   * when paid on chain.
   */
  async start(options: { signal?: AbortSignal } = {}): Promise<ProviderStatus> {
    const abandoned = this.ledger.recover(this.now());
    if (abandoned.length > 0) this.logger.warn({ jobs: abandoned }, "jobs abandoned by a previous run");
    await rm(join(this.config.dataDir, "jobs"), { recursive: true, force: true });
    await this.images.sweep();
    await ContainerSandbox.sweep().catch((error) =>
      this.logger.warn({ err: error }, "could not sweep leftover containers"),
    );

    // address and config errors are the user's: report them now, not after the escape suite (tens of seconds)
    await checkNodeAddresses(this.nodeOptions());
    for (const tier of this.config.tiers) {
      const sandbox = this.sandboxFor(tier);
      const summary = await this.deps.probe(tier, sandbox, {
        ...options,
        ...(this.uidPool ? { uids: this.uidPool } : {}),
      });
      this.probes[tier] = summary;
      if (summary.fail > 0 || summary.inconclusive > 0) {
        this.logger.error({ tier, summary }, "escape suite did not pass: tier not offered");
        continue;
      }
      this.tiers.push(tier);
    }
    if (this.tiers.length === 0) {
      throw new PlatformError("NO_SAFE_TIER", "No sandbox tier passed the escape suite; refusing to offer anything", {
        details: JSON.stringify(this.probes),
      });
    }
    if (this.config.chain?.escrowVersion === 2 && this.payoutKey) {
      const chain = this.config.chain;
      this.paymentsV2 = await ProviderPaymentsV2.connect(
        {
          rpcUrl: chain.rpcUrl,
          escrow: chain.escrow,
          maxStake: chain.maxStake,
          stakeDeposit: chain.stakeDeposit ?? (BigInt(chain.maxStake) * BigInt(this.config.maxConcurrent)).toString(),
        },
        this.payoutKey,
        { ...options, dataDir: this.config.dataDir },
      );
      // the standing stake, deposited once (a later start tops it up only when it is short)
      const deposited = await this.paymentsV2.ensureStake(options).catch((error: unknown) => {
        this.logger.warn({ err: error }, "could not deposit the escrow v2 stake: batches will be refused");
        return 0n;
      });
      if (deposited > 0n) this.logger.info({ amount: deposited.toString() }, "escrow v2 stake deposited");
      this.paymentsV2.startKeeper(5_000, (report) => this.logger.info({ ...report }, "escrow v2 seat"));
      writeChainFile(this.config.dataDir, chain, 2);
    } else if (this.config.chain && this.payoutKey) {
      this.payments = await ProviderPayments.connect(this.config.chain, this.payoutKey, {
        ...options,
        dataDir: this.config.dataDir,
      });
      // reveal, settle or reclaim by itself when a requestor goes silent (see ProviderPayments.keep)
      this.payments.startKeeper(5_000, (report) => this.logger.info({ ...report }, "escrow seat"));
      writeChainFile(this.config.dataDir, this.config.chain);
    }
    this.node = await createNode({ identity: this.identity, ...this.nodeOptions(), clock: this.now });
    if (this.config.listen.some((a) => a.includes("/p2p-circuit"))) {
      // behind NAT: be reachable through a relay before announcing anything
      const relayed = await awaitRelayAddress(this.node, RELAY_RESERVATION_WAIT_MS);
      if (relayed.length === 0)
        this.logger.warn(
          { waitedMs: RELAY_RESERVATION_WAIT_MS },
          "no relay reservation yet: requestors cannot reach this provider through a relay until one is made",
        );
    }
    await handleExchange(this.node, this.host(), {
      onError: (error, peer) => this.logger.warn({ peer, code: error.code, err: error.message }, "exchange failed"),
    });
    // peer exchange: providers mesh with each other, so offers keep flowing when every bootnode is gone
    this.market = new OfferBook(this.node, { peerExchange: PEER_EXCHANGE_PEERS });
    this.market.start();
    this.stopAnnouncing = await announceOffers(this.node, () => this.signedOffer(), {
      known: () => this.market?.envelopes() ?? [],
      now: this.now,
      // peers reject offers from a clock that is off: tell the operator, who would otherwise never know
      onClockSkew: (skew) => this.logger.warn({ skewMs: skew.skewMs, peers: skew.peers }, describeSkew(skew)),
      onClockRecovered: (skew) => this.logger.info({ skewMs: skew.skewMs }, "clock back in agreement with peers"),
    });
    await this.writeStatus();
    this.statusTimer = setInterval(() => void this.writeStatus(), STATUS_REFRESH_MS);
    this.statusTimer.unref();
    this.logger.info({ peerId: this.identity.peerId, addrs: this.addrs(), tiers: this.tiers }, "provider ready");
    return this.status();
  }

  /** The node's network options from the config (public mode, addresses). */
  private nodeOptions(): Omit<NodeOptions, "identity"> {
    const c = this.config;
    return {
      listen: c.listen,
      bootstrap: c.bootstrap,
      public: c.public || c.allowPublic,
      ...(c.allowPrivate ? { allowPrivate: true } : {}),
      ...(c.allowLoopback ? { allowLoopback: true } : {}),
      ...(c.announce ? { announce: c.announce } : {}),
      ...(c.appendAnnounce ? { appendAnnounce: c.appendAnnounce } : {}),
      ...(c.noAnnounce ? { noAnnounce: c.noAnnounce } : {}),
      ...(c.denyPeers ? { denyPeers: c.denyPeers } : {}),
      ...(c.allowPeers ? { allowPeers: c.allowPeers } : {}),
    };
  }

  private sandboxFor(tier: Tier): Sandbox {
    const existing = this.sandboxes[tier];
    if (existing) return existing;
    if (tier !== "container" && tier !== "gvisor")
      throw new UserError("TIER_UNAVAILABLE", `No sandbox for tier ${tier} was configured`);
    // one pool for every tier: no two live sandboxes share a uid
    if (this.config.sandboxUids && !this.uidPool) this.uidPool = sweptUidPool(this.config.sandboxUids, this.logger);
    const sandbox = new ContainerSandbox({ tier, ...(this.uidPool ? { uids: this.uidPool } : {}) });
    this.sandboxes[tier] = sandbox;
    return sandbox;
  }

  /** The multiaddrs the node listens on (empty before `start`). */
  addrs(): string[] {
    return (this.node?.getMultiaddrs() ?? []).map((ma) => ma.toString());
  }

  /** The agent's state now. */
  status(): ProviderStatus {
    return {
      peerId: this.identity.peerId,
      addrs: this.addrs(),
      payout: this.payout,
      tiers: [...this.tiers],
      running: this.running.size,
      maxConcurrent: this.config.maxConcurrent,
      draining: this.draining,
      probes: { ...this.probes },
    };
  }

  private async writeStatus(): Promise<void> {
    const self = this.identity.peerId;
    // what other providers offer, as this agent's offer book holds it (verified offers; the newest first)
    const offersSeen = (this.market?.list() ?? [])
      .filter((known) => known.offer.provider !== self)
      .sort((a, b) => Date.parse(b.offer.issuedAt) - Date.parse(a.offer.issuedAt))
      .slice(0, MAX_STATUS_OFFERS)
      .map(({ offer }) => ({
        provider: offer.provider,
        tiers: offer.tiers,
        price: offer.price,
        maxWallTimeMs: offer.resources.maxWallTimeMs,
        available: offer.resources.available,
        maxConcurrent: offer.resources.maxConcurrent,
        issuedAt: offer.issuedAt,
      }));
    const status = {
      ...this.status(),
      price: { ...this.config.price },
      offersSeen,
      pid: process.pid,
      updatedAt: this.now().toISOString(),
    };
    await writeFile(join(this.config.dataDir, "status.json"), `${JSON.stringify(status, null, 2)}\n`).catch(
      () => undefined,
    );
  }

  /** The offer as of now (fresh availability and expiry). */
  offer(): Offer {
    const now = this.now();
    const addrs = this.addrs().map((a) => a.replace(/\/p2p\/[^/]+$/, ""));
    return {
      version: 1,
      provider: this.identity.peerId,
      addrs: addrs.slice(0, 8),
      sealingKey: toHex(this.identity.sealing.publicKey),
      payout: this.payout,
      ...(this.config.operator ? { operator: this.config.operator } : {}),
      tiers: [...this.tiers],
      resources: {
        ...this.resources,
        maxInputBytes: this.resources.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES,
        maxConcurrent: this.config.maxConcurrent,
        available: Math.max(0, this.config.maxConcurrent - this.running.size),
      },
      price: { ...this.config.price },
      probes: Object.fromEntries(this.tiers.map((tier) => [tier, this.probes[tier]!])),
      images: {
        shipped: this.config.images.acceptShipped,
        ...(this.config.images.registries.length > 0
          ? { pulls: this.config.images.registries.map((registry) => new URL(registry).host) }
          : {}),
        maxArchiveBytes: this.config.images.maxArchiveBytes,
      },
      issuedAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + OFFER_TTL_MS).toISOString(),
    };
  }

  /** The offer as of now, signed with the provider's identity. */
  signedOffer(): SignedOffer {
    return signOffer(this.offer(), this.identity);
  }

  private host(): ExchangeHost {
    return {
      identity: this.identity,
      now: this.now,
      query: async ({ spec, price, payment, escrowBatch, peer }) => {
        // asked before the requestor locks any money: everything the proposal would check, short of the job
        const refusal = (await this.refusalFor(spec.spec, price)) ?? this.paymentRefusal(payment);
        if (refusal) this.refused("query", spec.id, peer, refusal);
        if (refusal || !escrowBatch) return refusal;
        // escrow v2: the batch the requestor would open; admitting it is signing its Accept
        if (!this.paymentsV2) {
          const unsupported = { code: "ESCROW_UNSUPPORTED", reason: "this provider is not paid through escrow v2" };
          this.refused("query", spec.id, peer, unsupported);
          return unsupported;
        }
        const verdict = await this.paymentsV2.accept({
          batch: escrowBatch,
          qubeId: spec.id,
          price,
          wallTimeMs: spec.spec.limits.wallTimeMs,
          now: this.now(),
        });
        if (!verdict.ok) {
          const refused = { code: verdict.code, reason: verdict.reason };
          this.refused("query", spec.id, peer, refused);
          return refused;
        }
        return { escrowAccept: verdict.signature };
      },
      admit: async ({ spec, agreement, escrow, escrowBatch, peer }): Promise<Admission> => {
        const refusal = await this.refusalFor(spec.spec, BigInt(agreement.requestor.payload.price));
        if (refusal) {
          this.refused("proposal", spec.id, peer, refusal);
          return { ok: false, ...refusal };
        }
        let escrowJob: EscrowJob | undefined;
        let batch: EscrowBatch | undefined;
        if (this.paymentsV2) {
          const verdict = await this.paymentsV2.check({
            ...(escrowBatch ? { batch: escrowBatch } : {}),
            terms: agreement.requestor.payload,
            qubeId: spec.id,
            wallTimeMs: spec.spec.limits.wallTimeMs,
            now: this.now(),
          });
          if (!verdict.ok) {
            this.refused("proposal", spec.id, peer, { code: verdict.code, reason: verdict.reason });
            return { ok: false, code: verdict.code, reason: verdict.reason };
          }
          batch = verdict.batch;
        } else if (escrowBatch) {
          const unsupported = { code: "ESCROW_UNSUPPORTED", reason: "this provider is not paid through escrow v2" };
          this.refused("proposal", spec.id, peer, unsupported);
          return { ok: false, ...unsupported };
        } else if (this.payments) {
          const verdict = await this.payments.check({
            ...(escrow ? { escrow } : {}),
            terms: agreement.requestor.payload,
            qubeId: spec.id,
            wallTimeMs: spec.spec.limits.wallTimeMs,
            now: this.now(),
          });
          if (!verdict.ok) {
            this.refused("proposal", spec.id, peer, { code: verdict.code, reason: verdict.reason });
            return { ok: false, code: verdict.code, reason: verdict.reason };
          }
          escrowJob = verdict.job;
        } else if (escrow || agreement.requestor.payload.escrowJob) {
          const unsupported = { code: "ESCROW_UNSUPPORTED", reason: "this provider is not configured with a chain" };
          this.refused("proposal", spec.id, peer, unsupported);
          return { ok: false, ...unsupported };
        }
        const jobId = randomUUID();
        if (escrowJob) this.escrowJobs.set(jobId, escrowJob);
        if (batch) this.escrowBatches.set(jobId, batch);
        const dir = join(this.config.dataDir, "jobs", jobId);
        let release!: () => void;
        const done = new Promise<void>((resolve) => {
          release = resolve;
        });
        this.running.set(jobId, done);
        // the image stays in the cache (never evicted) while the qube is admitted
        const releaseImage = this.images.acquire(spec.spec.image.digest);
        done.then(async () => {
          releaseImage();
          this.running.delete(jobId);
          this.escrowJobs.delete(jobId);
          this.escrowBatches.delete(jobId);
          await rm(dir, { recursive: true, force: true });
          await this.writeStatus();
        });
        return {
          ok: true,
          job: { jobId, inputsDir: join(dir, "inputs"), outputsDir: join(dir, "raw", "output"), release },
        };
      },
      execute: (job, spec, _agreement, options) => this.execute(job, spec.spec, spec.id, options),
      commit: (job, execution) => this.commit(job, execution),
      record: (jobId, event) => this.record(jobId, event),
      afterCommit: (job) => this.behaviour.afterCommit(job),
      images: {
        maxArchiveBytes: this.config.images.maxArchiveBytes,
        plan: async (spec) => ((await this.images.plan(spec.spec.image)).kind === "ship" ? "send" : "have"),
        install: async (spec, source, options) => {
          const { digest, archiveDigest } = spec.spec.image;
          const installed = await this.images.install(
            { imageId: digest, archiveDigest: archiveDigest! },
            source,
            options,
          );
          this.logger.info(
            { qubeId: spec.id, image: digest, bytes: installed.archiveBytes },
            "shipped image installed",
          );
        },
        ready: async (spec, { signal }) => {
          await this.images.waitFor(spec.spec.image.digest);
          let plan = await this.images.plan(spec.spec.image);
          if (plan.kind === "pull") {
            await this.images.pull({ ref: plan.ref, digest: spec.spec.image.digest }, { signal });
            plan = await this.images.plan(spec.spec.image);
          }
          if (plan.kind !== "present")
            throw new PlatformError("IMAGE_UNAVAILABLE", "The qube's image is not available", {
              details: plan.kind === "unavailable" ? plan.reason : spec.spec.image.digest,
            });
        },
      },
    };
  }

  /** Logs a refusal and keeps it in the ledger's bounded refusal table (a failed write is logged, not thrown). */
  private refused(stage: RefusalStage, qubeId: string, peer: string, refusal: { code: string; reason: string }): void {
    this.logger.info({ qubeId, peer, ...refusal }, stage === "query" ? "qube refused when asked" : "qube refused");
    try {
      this.ledger.refused({ stage, qubeId, requestor: peer, code: refusal.code, reason: refusal.reason }, this.now());
    } catch (error) {
      this.logger.warn({ err: error, qubeId }, "refusal not recorded in the ledger");
    }
  }

  /** The first reason to refuse `spec` at `price` now (limits, tier, capacity, price, image), if any. */
  private async refusalFor(spec: QubeSpec, price: bigint): Promise<{ code: string; reason: string } | undefined> {
    const refusal = checkAdmission({
      spec,
      price,
      tiers: this.tiers,
      resources: this.resources,
      pricing: { start: BigInt(this.config.price.start), perSecond: BigInt(this.config.price.perSecond) },
      running: this.running.size,
      maxConcurrent: this.config.maxConcurrent,
      draining: this.draining,
    });
    if (refusal) return refusal;
    const image = await this.images.plan(spec.image);
    return image.kind === "unavailable" ? { code: "IMAGE_UNAVAILABLE", reason: image.reason } : undefined;
  }

  /** Whether the way the requestor would pay (an escrow on a chain, or not at all) suits this provider. */
  private paymentRefusal(
    payment: { chainId: number; escrow: string } | undefined,
  ): { code: string; reason: string } | undefined {
    const client = this.paymentsV2?.client ?? this.payments?.client;
    if (!client)
      return payment
        ? { code: "ESCROW_UNSUPPORTED", reason: "this provider is not configured with a chain" }
        : undefined;
    const { chainId, escrowAddress } = client;
    if (!payment)
      return {
        code: "ESCROW_REQUIRED",
        reason: `this provider works paid only: lock the budget in escrow ${escrowAddress} on chain ${chainId}`,
      };
    if (payment.chainId !== chainId || payment.escrow.toLowerCase() !== escrowAddress.toLowerCase())
      return {
        code: "ESCROW_MISMATCH",
        reason: `the budget would be locked in escrow ${payment.escrow} (chain ${payment.chainId}); this provider is paid through ${escrowAddress} (chain ${chainId})`,
      };
    return undefined;
  }

  private record(jobId: string, event: JobEvent): void {
    const now = this.now();
    if (event.state === "accepted") this.ledger.accepted(jobId, event.qubeId, event.requestor, event.price, now);
    else if (event.state === "committed")
      this.ledger.transition(jobId, "committed", now, { outputsRoot: event.outputsRoot });
    else if (event.state === "failed")
      this.ledger.transition(jobId, "failed", now, { errorCode: event.code, errorReason: event.reason });
    else this.ledger.transition(jobId, event.state, now);
    this.logger.info({ jobId, ...event }, "job");
    void this.writeStatus();
  }

  private async execute(
    job: AdmittedJob,
    spec: QubeSpec,
    qubeId: string,
    options: { signal: AbortSignal },
  ): Promise<Execution> {
    const tier = spec.tier;
    const sandbox = this.sandboxFor(tier);
    const raw = join(job.outputsDir, "..");
    await mkdir(raw, { recursive: true });
    const startedAt = this.now();
    const run = this.behaviour.run(
      () =>
        sandbox.run(
          {
            image: spec.image.digest,
            imageDigest: spec.image.digest,
            command: spec.command,
            env: spec.env,
            ...(spec.inputs.length > 0 ? { inputDir: job.inputsDir } : {}),
            outputs: spec.outputs.map((path) => `/output/${path}`),
            outputDir: raw,
            limits: {
              cpus: spec.limits.milliCpus / 1000,
              memoryBytes: spec.limits.memoryBytes,
              pids: spec.limits.pids,
              scratchBytes: spec.limits.scratchBytes,
              wallTimeMs: spec.limits.wallTimeMs,
              output: {
                maxFileBytes: spec.limits.outputBytes,
                maxTotalBytes: spec.limits.outputBytes,
                maxFiles: spec.limits.outputFiles,
              },
            },
          },
          options,
        ),
      spec.image.digest,
    );
    // outputs that break a limit or rule are the qube's own outcome, not this provider's failure: it says so in
    // a signed statement like any other outcome, so honest providers agree on it and are paid for the work
    const result = await run.catch((error: unknown) => {
      const refused = outputRefusalOf(error);
      if (refused) return { refused };
      throw error;
    });
    await mkdir(job.outputsDir, { recursive: true });
    if ("refused" in result) return this.refusedOutputs(job, spec, qubeId, startedAt, result.refused);
    await this.behaviour.tamper(job.outputsDir, spec.outputs);
    const files = await this.behaviour.listOutputs(job.outputsDir, result.outputs);
    const manifest = buildOutputManifest(files, spec, { source: "user" });
    const outcome: ResultStatement["outcome"] = result.timedOut
      ? "timeout"
      : result.oomKilled
        ? "oom"
        : result.exitCode > 255 || result.exitCode < 0
          ? "killed"
          : "exited";
    const statement: ResultStatement = {
      version: 1,
      qubeId,
      provider: this.identity.peerId,
      tier,
      imageDigest: result.imageDigest,
      outcome,
      exitCode: outcome === "exited" ? result.exitCode : null,
      outputsRoot: outputsRootOf(manifest),
      usage: {
        // metered by the sandbox from the host (cgroup or QEMU process); 0 only when it could not be read
        cpuMs: result.usage?.cpuMs ?? 0,
        wallMs: result.durationMs,
        maxMemoryBytes: result.usage?.maxMemoryBytes ?? 0,
        outputBytes: manifest.files.reduce((n, f) => n + f.size, 0),
        outputFiles: manifest.files.length,
      },
      probeReportHash: this.probes[tier]!.reportHash,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date(Math.max(this.now().getTime(), startedAt.getTime())).toISOString(),
    };
    this.ledger.metered(job.jobId, statement.usage, this.now());
    return {
      statement: signResultStatement(statement, this.identity),
      manifest,
      stdout: result.stdout,
      stderr: result.stderr,
    };
  }

  /** The signed statement of a qube whose outputs the sandbox refused: no output, the refusal named. */
  private refusedOutputs(
    job: AdmittedJob,
    spec: QubeSpec,
    qubeId: string,
    startedAt: Date,
    refusal: OutputRefusal,
  ): Execution {
    const manifest = buildOutputManifest([], spec, { source: "user" });
    const finishedAt = new Date(Math.max(this.now().getTime(), startedAt.getTime()));
    const statement: ResultStatement = {
      version: 1,
      qubeId,
      provider: this.identity.peerId,
      tier: spec.tier,
      imageDigest: spec.image.digest,
      outcome: "outputs-refused",
      exitCode: null,
      outputRefusal: refusal,
      outputsRoot: outputsRootOf(manifest),
      usage: {
        cpuMs: 0,
        wallMs: finishedAt.getTime() - startedAt.getTime(),
        maxMemoryBytes: 0,
        outputBytes: 0,
        outputFiles: 0,
      },
      probeReportHash: this.probes[spec.tier]!.reportHash,
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
    };
    this.ledger.metered(job.jobId, statement.usage, this.now());
    return { statement: signResultStatement(statement, this.identity), manifest, stdout: "", stderr: "" };
  }

  /**
   * Commits to the outputs: for a paid qube, first bonds the stake and commits on chain with the same salt
   * (so the requestor can settle with the off-chain reveal), then signs the off-chain commitment.
   */
  private async commit(job: AdmittedJob, execution: Execution): Promise<CommitPlan> {
    const self = this.identity.peerId;
    const salt = randomBytes(32);
    const escrowJob = this.escrowJobs.get(job.jobId);
    if (escrowJob && this.payments) {
      const { hash } = await this.payments.commit(escrowJob, {
        outputsRoot: rootToBytes32(execution.statement.payload.outputsRoot),
        salt: `0x${salt.toString("hex")}`,
      });
      this.logger.info({ jobId: job.jobId, tx: hash }, "stake bonded and committed on chain");
    }
    const { commitment, reveal } = createCommitment({
      qubeId: execution.statement.payload.qubeId,
      outputsRoot: execution.statement.payload.outputsRoot,
      salt,
      provider: this.behaviour.sealProvider(self),
    });
    const ours = { ...commitment, provider: self };
    const batch = this.escrowBatches.get(job.jobId);
    // escrow v2: the same root and salt, signed as the batch's Commitments (no transaction)
    const escrowCommitments =
      batch && this.paymentsV2
        ? await this.paymentsV2.commit(batch, {
            outputsRoot: rootToBytes32(execution.statement.payload.outputsRoot),
            salt: `0x${salt.toString("hex")}`,
          })
        : undefined;
    return {
      commitment: signCommitment(ours, this.identity),
      ...(escrowCommitments ? { escrowCommitments } : {}),
      reveal: () => signReveal({ ...reveal, provider: self }, this.identity),
    };
  }

  /** Stops taking work, waits for running qubes (up to `drainMs`), then stops the node. */
  async stop(options: { drainMs?: number } = {}): Promise<void> {
    this.draining = true;
    clearInterval(this.statusTimer);
    await this.writeStatus();
    await this.stopAnnouncing?.();
    this.market?.stop();
    const drain = Promise.all(this.running.values());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([drain, new Promise((r) => (timer = setTimeout(r, options.drainMs ?? 60_000)))]);
    clearTimeout(timer);
    await this.node?.stop();
    await this.payments?.close();
    await this.paymentsV2?.close();
    for (const sandbox of Object.values(this.sandboxes)) await sandbox?.close();
    // the sweeps of the uids the sandboxes gave back end before the agent does
    await this.uidPool?.settled();
    this.ledger.close();
    this.dirLock.release();
  }
}

/**
 * The provider's pool of sandbox uids: each released uid is swept (its processes killed, its files in the host's
 * world-writable directories removed) before another qube gets it; one the sweep could not clean stays out of
 * service, with a warning.
 */
export function sweptUidPool(range: UidRange, logger: Logger): UidPool {
  return new UidPool(range, {
    sweep: (uid) => sweepUid(uid),
    onSwept: (report) => {
      if (!report.complete) logger.warn(report, "sandbox uid not clean after its qube: taken out of service");
      else if (report.killed > 0 || report.removed > 0) logger.warn(report, "removed what a sandbox uid left behind");
    },
  });
}
