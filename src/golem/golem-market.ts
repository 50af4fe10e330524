/**
 * The Golem backend of the requestor port: providers come from the Golem market (a yagna `scan`), each
 * replica is a rental of exactly one chosen provider through golem-js (`oneOf` with a provider filter), paid
 * through Golem's own GLM flow (an allocation per rental, invoices accepted by golem-js). Sealing,
 * redundancy and verification stay Airqube's own: the `Requestor` runs unchanged on top.
 */
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Logger as GolemLogger, GolemNetwork, type GolemNetworkOptions, nullLogger } from "@golem-sdk/golem-js";
import type { Logger as PinoLogger } from "pino";
import { PeerError, PlatformError, TimeoutError, type VerifiedQubeSpec } from "../qube/index.js";
import type { ComputeMarket, Dispatch, DispatchEvents, ProviderCandidate, SealedQube } from "../requestor/api.js";
import type { GolemConfig } from "./config.js";
import { fromGolemError } from "./errors.js";
import { GolemDispatch } from "./golem-dispatch.js";
import { offerVerdict, paymentPlatform, workloadResources } from "./order.js";
import { ReputationFilter } from "./reputation.js";
import { YagnaStorageProvider } from "./storage.js";

/** How long fetched reputation scores are used before they are fetched again. */
const REPUTATION_TTL_MS = 10 * 60_000;

/** Options of {@link GolemMarket.connect}. */
export interface GolemMarketOptions {
  /** Aborts connecting. */
  signal?: AbortSignal;
  /**
   * golem-js service overrides (`new GolemNetwork({ override })`). Tests pass in-memory market, activity and
   * payment APIs here; leave it unset to talk to the yagna daemon of `config.apiUrl` (with Airqube's
   * {@link YagnaStorageProvider} for file transfers).
   */
  override?: GolemNetworkOptions["override"];
  /** Where a dispatch stages downloads and outputs (a private subdirectory each). Default: the OS temp dir. */
  stagingDir?: string;
  /** Pino logger for golem-js's messages (its chatter at debug level); default none. */
  logger?: PinoLogger;
}

/** Routes golem-js's logging to pino (debug level for its chatter). */
function golemLogger(logger: PinoLogger | undefined): GolemLogger {
  if (!logger) return nullLogger();
  const wrap = (l: PinoLogger): GolemLogger => ({
    child: (namespace) => wrap(l.child({ golem: namespace })),
    debug: (msg: string, ctx?: unknown) => l.debug({ ctx }, msg),
    info: (msg: string, ctx?: unknown) => l.debug({ ctx }, msg),
    warn: (msg: string, ctx?: unknown) => l.warn({ ctx }, msg),
    error: (msg: string, ctx?: unknown) => l.error({ ctx }, msg),
  });
  return wrap(logger);
}

/**
 * The Golem network as a {@link ComputeMarket}: providers rented through golem-js and a local yagna daemon,
 * with Airqube's redundancy and verification on top (Golem providers sign nothing, so the requestor commits
 * to each answer itself).
 *
 * @example
 * const market = await GolemMarket.connect(loadGolemConfig(process.env, file.golem));
 * const requestor = new Requestor({ market, dataDir });
 * const report = await requestor.run(qube, { outputDir: "out" });
 * requestor.close();
 * await market.close();
 */
export class GolemMarket implements ComputeMarket {
  readonly name = "golem";
  private readonly active = new Set<GolemDispatch>();
  /** Counter-proposal id → provider id, to attribute the provider's rejections. */
  private readonly counters = new Map<string, string>();
  private readonly rejectionWatchers = new Map<string, Set<(reason: string) => void>>();
  private closed = false;
  /** The reputation scores of the last fetch that succeeded, and when. */
  private reputationCache: { at: number; filter: Promise<ReputationFilter> } | undefined;

  private constructor(
    readonly glm: GolemNetwork,
    readonly config: GolemConfig,
    private readonly options: GolemMarketOptions,
  ) {
    const market = glm.market.events;
    market.on("offerCounterProposalSent", ({ offerProposal, counterProposal }) =>
      this.counters.set(counterProposal.id, offerProposal.provider.id.toLowerCase()),
    );
    market.on("offerCounterProposalRejected", ({ counterProposal, reason }) =>
      this.rejected(this.counters.get(counterProposal.id), reason),
    );
    market.on("agreementRejected", ({ agreement, reason }) =>
      this.rejected(agreement.provider.id.toLowerCase(), reason),
    );
  }

  /**
   * Connects to yagna (or to the overrides) and returns the market.
   *
   * @throws `YAGNA_UNREACHABLE`: a PlatformError, or a UserError when golem-js blames the configuration (e.g.
   * the app key); TimeoutError `YAGNA_UNREACHABLE_TIMEOUT`, or `ABORTED` when `signal` aborted.
   *
   * @example
   * const market = await GolemMarket.connect(loadGolemConfig(process.env, file.golem));
   * const result = await new Requestor({ market, dataDir }).run(qube, { outputDir: "out" });
   */
  static async connect(config: GolemConfig, options: GolemMarketOptions = {}): Promise<GolemMarket> {
    options.signal?.throwIfAborted();
    const glm = new GolemNetwork({
      logger: golemLogger(options.logger),
      api: { key: config.appKey, url: config.apiUrl },
      payment: { network: config.paymentNetwork, driver: config.paymentDriver },
      // Airqube's storage provider unless the caller overrides: golem-js's own buffers whole downloads and
      // crashes the process on the first one under ESM (`jsSha3.sha3_256 is not a function`)
      override: options.override ?? {
        storageProvider: new YagnaStorageProvider({
          apiUrl: config.apiUrl,
          appKey: config.appKey,
          ...(options.logger ? { logger: options.logger } : {}),
        }),
      },
    });
    try {
      await raceSignal(glm.connect(), options.signal);
    } catch (error) {
      await glm.disconnect().catch(() => undefined);
      throw fromGolemError(error, "YAGNA_UNREACHABLE", "Could not connect to the yagna daemon", options.signal);
    }
    return new GolemMarket(glm, config, options);
  }

  /**
   * Scans the Golem market for providers able to run `spec` within the configured prices, for up to
   * `timeouts.scanMs` (less when enough were found).
   */
  async findProviders(
    spec: VerifiedQubeSpec,
    options: { signal?: AbortSignal; wanted?: number } = {},
  ): Promise<ProviderCandidate[]> {
    options.signal?.throwIfAborted();
    const { config } = this;
    const reputation = await this.reputation(options.signal);
    const enough = Math.max(1, options.wanted ?? 1) + 2;
    const scanSpec = this.glm.market.buildScanSpecification({
      workload: { runtime: { name: config.runtime.name }, ...workloadResources(spec.spec) },
      subnetTag: config.subnet,
      payment: { network: config.paymentNetwork, driver: config.paymentDriver },
    });
    const found = new Map<string, ProviderCandidate>();
    const refused = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      let subscription: { unsubscribe(): void } | undefined;
      const finish = (error?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        subscription?.unsubscribe();
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = () =>
        finish(new TimeoutError("ABORTED", "The market scan was aborted", { cause: options.signal?.reason }));
      const timer = setTimeout(() => finish(), config.timeouts.scanMs);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      subscription = this.glm.market.scan(scanSpec).subscribe({
        next: (offer) => {
          const verdict = offerVerdict(
            { offerId: offer.offerId, providerId: offer.provider.id, properties: offer.properties },
            spec.spec,
            config,
            Date.now(),
          );
          const candidate = "candidate" in verdict ? verdict.candidate : undefined;
          // why an offer was refused, once per provider and scan; the airqube runtime's evidence at warn level
          if ("reason" in verdict && !refused.has(offer.provider.id) && refused.size < 1000) {
            refused.add(offer.provider.id);
            const evidence = verdict.probe === true;
            this.options.logger?.[evidence ? "warn" : "debug"](
              { provider: offer.provider.id, reason: verdict.reason },
              "Golem offer refused before any agreement",
            );
          }
          // the reputation pre-filter: before redundancy picks anyone
          if (candidate && reputation) {
            const wallet = offer.properties[`golem.com.payment.platform.${paymentPlatform(config)}.address`];
            const provider = { id: candidate.id, ...(typeof wallet === "string" ? { walletAddress: wallet } : {}) };
            if (!reputation.verdict(provider).ok) return;
          }
          if (candidate && !found.has(candidate.id)) found.set(candidate.id, candidate);
          if (found.size >= enough) queueMicrotask(() => finish());
        },
        error: (error) => finish(fromGolemError(error, "GOLEM_SCAN_FAILED", "Could not scan the Golem market")),
        complete: () => finish(),
      });
      if (settled) subscription?.unsubscribe();
    });
    return [...found.values()].sort((a, b) => (a.price < b.price ? -1 : a.price > b.price ? 1 : 0));
  }

  /** Rents `candidate`, deploys the image and uploads the inputs; the qube runs in `awaitCommitment`. */
  async dispatch(
    candidate: ProviderCandidate,
    qube: SealedQube,
    options: { signal?: AbortSignal } & DispatchEvents = {},
  ): Promise<Dispatch> {
    if (this.closed) throw new PlatformError("MARKET_CLOSED", "The Golem market is closed");
    const reputation = await this.reputation(options.signal);
    const verdict = reputation?.verdict({ id: candidate.id });
    if (verdict && !verdict.ok)
      throw new PeerError("GOLEM_PROVIDER_REPUTATION", "The provider is below the configured reputation", {
        details: `${candidate.id}: ${verdict.reason}`,
      });
    const workDir = await mkdtemp(join(this.options.stagingDir ?? tmpdir(), "airqube-golem-"));
    const { signal, ...events } = options;
    const dispatch: GolemDispatch = new GolemDispatch(
      candidate,
      qube,
      {
        glm: this.glm,
        config: this.config,
        workDir,
        watchRejections: (provider, onRejected) => this.watchRejections(provider, onRejected),
        onDisposed: () => this.active.delete(dispatch),
      },
      events,
    );
    this.active.add(dispatch);
    await dispatch.prepare(signal ? { signal } : {});
    return dispatch;
  }

  /** Aborts what is still running, releases every rental and allocation, and disconnects from yagna. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pending = [...this.active];
    for (const d of pending) d.abort(new PlatformError("MARKET_CLOSED", "The Golem market is closing"));
    await Promise.all(
      pending.map(async (d) => {
        await d.release();
        await d.dispose();
      }),
    );
    await this.glm.disconnect().catch(() => undefined);
  }

  /**
   * The reputation pre-filter when configured: scores fetched once per {@link REPUTATION_TTL_MS} (a failed
   * fetch is not kept: the next call tries again). Throws what {@link ReputationFilter.load} throws.
   */
  private async reputation(signal?: AbortSignal): Promise<ReputationFilter | undefined> {
    const settings = this.config.reputation;
    if (!settings) return undefined;
    const cached = this.reputationCache;
    if (cached && Date.now() - cached.at < REPUTATION_TTL_MS) return cached.filter;
    const filter = ReputationFilter.load(settings, this.config.paymentNetwork, signal ? { signal } : {});
    const entry = { at: Date.now(), filter };
    this.reputationCache = entry;
    filter.catch(() => {
      if (this.reputationCache === entry) this.reputationCache = undefined;
    });
    return filter;
  }

  private watchRejections(provider: string, onRejected: (reason: string) => void): () => void {
    const id = provider.toLowerCase();
    let set = this.rejectionWatchers.get(id);
    if (!set) {
      set = new Set();
      this.rejectionWatchers.set(id, set);
    }
    set.add(onRejected);
    return () => {
      set.delete(onRejected);
      if (set.size === 0) this.rejectionWatchers.delete(id);
    };
  }

  private rejected(provider: string | undefined, reason: string): void {
    if (!provider) return;
    for (const watcher of this.rejectionWatchers.get(provider) ?? []) watcher(String(reason).slice(0, 500));
  }
}

async function raceSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new TimeoutError("ABORTED", "Aborted", { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
