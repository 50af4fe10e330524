/**
 * The high-level requestor API: connect to a market once, then run qubes from plain descriptions and get
 * back only what a quorum of independent providers agreed on, with the evidence. In the spirit of golem-js's
 * `GolemNetwork`: one object, `connect()`, `run()` / `runMany()`, `disconnect()`.
 *
 * Everything heavy (libp2p, ethers, SQLite, Docker, golem-js, Hardhat) is imported on `connect()`, and only
 * what the chosen market needs, so `import { Airqube } from "airqube"` stays cheap.
 *
 * @example
 * import { Airqube } from "airqube";
 *
 * const aq = new Airqube({ devnet: true }); // or { bootstrap: ["/ip4/.../p2p/12D3..."] }
 * await aq.connect();
 * try {
 *   const result = await aq.run({
 *     image: "airqube/busybox:latest",
 *     command: ["sh", "-c", "wc -c < /input/a.txt > /output/result"],
 *     inputs: { "a.txt": { data: "hello" } },
 *     outputs: ["result"],
 *     redundancy: 3,
 *   });
 *   console.log(result.verified, await result.readText("result"));
 * } finally {
 *   await aq.disconnect();
 * }
 */
import { EventEmitter } from "node:events";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import type { SignedEnvelope } from "../qube/envelope.js";
import { AirqubeError, UserError } from "../qube/errors.js";
import { relativePathProblem } from "../qube/paths.js";
import { TIERS, type Tier } from "../qube/schemas.js";
import type { RedundancyPolicy } from "../qube/spec.js";
import type { ResultStatement } from "../qube/statement.js";
import type { ComputeMarket, ProviderAnswer, ProviderCandidate } from "../requestor/api.js";
import type { QubeOutcome } from "../requestor/outcome.js";
import type { PaymentReport } from "../requestor/payments.js";
import type { RunEvent, RunReport } from "../requestor/requestor.js";

/** Where an input file's bytes come from: a file on this machine, or bytes (a string is UTF-8). */
export type InputSource = { file: string } | { data: Uint8Array | string };

/** A qube as a user describes it. Paths are relative (`a/b.txt`), `/`-separated. */
export interface QubeDescription {
  /** Image reference, e.g. `airqube/busybox:latest`. */
  image: string;
  /** `sha256:...`; default: looked up in the local Docker engine. */
  imageDigest?: string;
  /** The command and its arguments (no shell unless you call one). */
  command: string[];
  env?: Record<string, string>;
  /** Input files by path under `/input`. */
  inputs?: Record<string, InputSource>;
  /** A directory whose whole contents are placed under `/input` (next to `inputs`). */
  inputDir?: string;
  /** Declared outputs, paths under `/output` (default `["result"]`). A declared output never written makes the result not `ok`. */
  outputs?: string[];
  /** Where the verified outputs go (default: a fresh directory under the system's temp dir, see `outputDir` in the result). */
  outputDir?: string;
  /** Isolation tier (default `container`). */
  tier?: Tier;
  limits?: {
    /** Wall-clock limit per provider, ms (default 60 000). */
    timeoutMs?: number;
    /** Memory limit, bytes (default 256 MiB). */
    memoryBytes?: number;
    /** CPU limit in cores (default 1). */
    cpus?: number;
    /** Process limit (default 64). */
    pids?: number;
    /** Writable scratch space, bytes. */
    scratchBytes?: number;
  };
  /**
   * How many independent providers run it: a number k (quorum: a majority of k), `{ k, quorum }`, or a full
   * policy (`{ mode: "adaptive", ... }`). Default 3.
   */
  redundancy?: number | { k: number; quorum?: number } | RedundancyPolicy;
  /** False for a qube whose outputs may differ between honest runs: never "verified", only "agreed". Default true. */
  deterministic?: boolean;
  /** Refuse providers asking more than this per qube, wei. */
  maxPrice?: bigint;
  /** Run on fewer providers than the redundancy asks for when no more are available (a `fewerProviders` event says so). */
  allowFewer?: boolean;
}

/** Progress of one qube: the requestor's events, plus `qubeSealed` first. Past tense; for observers only. */
export type AirqubeEvent = { type: "qubeSealed"; qubeId: string } | RunEvent;

/** One verified output file. */
export interface ResultFile {
  /** Path relative to `outputDir`, `/`-separated. */
  path: string;
  size: number;
  /** Lower-case hex SHA-256 of the contents (what the quorum agreed on). */
  sha256: string;
}

/** What a run returns once a quorum agreed. */
export interface QubeResult {
  qubeId: string;
  /** True for a deterministic qube whose outputs and outcome a quorum agreed on. */
  verified: boolean;
  /** `verified`, and the qube exited 0 and wrote every declared output. */
  ok: boolean;
  /** How the qube ended (exit code, time-out, OOM, missing declared outputs, stderr tail), as the quorum reports it. */
  outcome: QubeOutcome;
  /** Merkle root of the agreed outputs. */
  outputsRoot: string;
  outputDir: string;
  outputs: ResultFile[];
  /** The agreeing provider's stdout (not covered by the outputs root: unverified). */
  stdout: string;
  evidence: {
    agreeing: string[];
    dissenting: string[];
    /** The agreeing providers' signed result statements (embedded network; Golem signs nothing). */
    statements: SignedEnvelope<ResultStatement>[];
    /** Every answer received, including dissenting ones. */
    answers: Omit<ProviderAnswer, "outputDir">[];
    /** Every provider that refused or failed, with its reason. */
    failures: RunReport["failures"];
    /** With payments: each escrow job of the run and how it was settled. */
    payments: PaymentReport[];
  };
  /** The requestor's full report (the lower-level API's `RunReport`). */
  report: RunReport;
  /** Reads one output as bytes (path as declared, relative to `outputDir`). */
  read(path: string): Promise<Buffer>;
  /** Reads one output as UTF-8 text. */
  readText(path: string): Promise<string>;
}

/** Payment through the escrow contract: the chain, the escrow and the paying key (given or read from a file). */
export interface PaymentOptions {
  rpcUrl: string;
  escrow: string;
  /** The paying account's hex private key; or `keyFile`. Never logged. */
  privateKey?: string;
  /** A file holding the key (at most 1 KiB). */
  keyFile?: string;
  /** Allow an RPC URL off this machine (real deployments). */
  allowPublicRpc?: boolean;
  /**
   * `"v2"`: `escrow` is an AirqubeEscrowV2 (the requestor pays from its deposit; providers sign their
   * acceptance and commitments). Default `"v1"`.
   */
  escrowVersion?: "v1" | "v2";
}

/** How to reach providers and pay them. */
export interface AirqubeOptions {
  /**
   * Use the devnet that `airqube devnet up` is running (its profile gives the bootstrap address, the chain
   * and the funded key, and its requestor data directory). `{ home }` points at another Airqube home.
   */
  devnet?: boolean | { home?: string };
  /** Bootstrap peers of the embedded network (multiaddrs with `/p2p/`). */
  bootstrap?: string[];
  /**
   * Public mode (real deployments): peers off this machine; addresses an offer names on loopback, private or
   * link-local ranges are never dialled (a hostile offer must not make the requestor dial its own network).
   */
  public?: boolean;
  /** Public mode on a private network (a LAN, network namespaces): dial private-range addresses too. */
  allowPrivate?: boolean;
  /** Rent providers on the Golem network through yagna instead (configured from golem-js's variables and `golem`). */
  golem?: boolean | { config?: Record<string, unknown> };
  /** Any other market (the port the embedded network and Golem implement); for tests and custom backends. */
  market?: ComputeMarket;
  /** Pay providers on agreement (embedded network only). Without it, qubes run unpaid. */
  payments?: PaymentOptions;
  /** The requestor's identity, journal and reputation (default `$AIRQUBE_HOME/requestor`; with `devnet`, the devnet's). */
  dataDir?: string;
  /** How long to gather offers before choosing providers, ms. */
  discoveryMs?: number;
}

/** A run's typed events, also delivered to `run(..., { onEvent })`. */
export interface AirqubeEvents {
  event: [event: AirqubeEvent & { qubeId?: string }];
  connected: [info: { market: string; paying?: string }];
  disconnected: [];
}

/** What `run` needs besides the description. */
export interface QubeRunOptions {
  signal?: AbortSignal;
  /** Called with each event of this run (the same events `Airqube` emits as `"event"`). */
  onEvent?: (event: AirqubeEvent) => void;
  /** Provider ids to choose first when they are eligible (e.g. a security team probing given providers). */
  prefer?: string[];
}

/** Thrown when the providers answered but no quorum agreed; `report` holds every answer and failure. */
export class NoConsensusError extends AirqubeError {
  constructor(readonly report: RunReport) {
    super("peer", "NO_CONSENSUS", "No quorum of providers agreed on the result", {
      ...(report.reason ? { details: report.reason } : {}),
    });
    this.name = "NoConsensusError";
  }
}

const MAX_INPUTS = 1024;
const MAX_INLINE_INPUT_BYTES = 64 * 1024 * 1024;

const relativePath = z.string().superRefine((path, ctx) => {
  const problem = relativePathProblem(path);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});
const count = (max: number) => z.int().min(1).max(max);

const descriptionSchema = z.strictObject({
  image: z.string().min(1).max(512),
  imageDigest: z
    .string()
    .regex(/^sha256:[0-9a-f]{64}$/, "must be sha256: and 64 hex digits")
    .optional(),
  command: z
    .array(z.string().max(64 * 1024))
    .min(1)
    .max(4096),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be a variable name"), z.string()).optional(),
  inputs: z
    .record(
      relativePath,
      z.union([
        z.strictObject({ file: z.string().min(1).max(4096) }),
        z.strictObject({ data: z.union([z.string(), z.instanceof(Uint8Array)]) }),
      ]),
    )
    .refine((r) => Object.keys(r).length <= MAX_INPUTS, `at most ${MAX_INPUTS} inputs`)
    .optional(),
  inputDir: z.string().min(1).max(4096).optional(),
  outputs: z.array(relativePath).min(1).max(1024).optional(),
  outputDir: z.string().min(1).max(4096).optional(),
  tier: z.enum(TIERS).optional(),
  limits: z
    .strictObject({
      timeoutMs: z
        .int()
        .min(1000)
        .max(24 * 3600 * 1000)
        .optional(),
      memoryBytes: z
        .int()
        .min(16 * 1024 * 1024)
        .optional(),
      cpus: z.number().positive().max(256).optional(),
      pids: z.int().min(8).max(65_536).optional(),
      scratchBytes: z.int().positive().optional(),
    })
    .optional(),
  redundancy: z
    .union([
      count(32),
      z.strictObject({ k: count(32), quorum: count(32).optional() }),
      z.looseObject({ mode: z.enum(["fixed", "adaptive"]) }),
    ])
    .optional(),
  deterministic: z.boolean().optional(),
  maxPrice: z.bigint().nonnegative().optional(),
  allowFewer: z.boolean().optional(),
});

/** Checks a description before anything is sealed or sent: a `UserError` `QUBE_INVALID` names every bad field. */
export function validateDescription(description: QubeDescription): QubeDescription {
  const parsed = descriptionSchema.safeParse(description);
  if (!parsed.success)
    throw new UserError("QUBE_INVALID", "The qube description is invalid", {
      details: parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; "),
    });
  const inline = Object.values(description.inputs ?? {}).reduce(
    (sum, source) => sum + ("data" in source ? Buffer.byteLength(source.data) : 0),
    0,
  );
  if (inline > MAX_INLINE_INPUT_BYTES)
    throw new UserError("QUBE_INVALID", "Inline inputs are too large", {
      details: `${inline} bytes of \`data\` inputs; pass files ({ file }) beyond ${MAX_INLINE_INPUT_BYTES} bytes`,
    });
  return description;
}

/** The spec's redundancy policy for a description's `redundancy`. */
export function redundancyPolicy(redundancy: QubeDescription["redundancy"]): RedundancyPolicy {
  if (redundancy === undefined) return { mode: "fixed", k: 3, quorum: 2 };
  if (typeof redundancy === "number") return { mode: "fixed", k: redundancy, quorum: Math.floor(redundancy / 2) + 1 };
  if ("mode" in redundancy) return redundancy;
  const quorum = redundancy.quorum ?? Math.floor(redundancy.k / 2) + 1;
  if (quorum > redundancy.k)
    throw new UserError("QUBE_INVALID", "The quorum cannot exceed the redundancy", {
      details: `quorum ${quorum} > k ${redundancy.k}`,
    });
  return { mode: "fixed", k: redundancy.k, quorum };
}

interface Connection {
  market: ComputeMarket;
  requestor: import("../requestor/requestor.js").Requestor;
  identity: import("../qube/identity.js").Identity;
  payments?: import("../requestor/payments.js").EscrowPayments | import("../requestor/payments-v2.js").EscrowV2Payments;
  /** Reports of escrow jobs an earlier run left open, settled on connect. */
  recovered: PaymentReport[];
  dataDir: string;
  /** The data directory's lock, taken before any connection (the Requestor takes it again, re-entrantly). */
  lock: import("../store/dir-lock.js").DirLock;
}

/** Data directories held by a connected `Airqube` of this process (the lock file only keeps other processes out). */
const HELD_DATA_DIRS = new Set<string>();

/**
 * One requestor: a market connection, an identity, a journal and, optionally, payments.
 * Not safe to share a data directory between two `Airqube` objects (the second `connect` fails with
 * `DATA_DIR_LOCKED`).
 */
export class Airqube {
  /** Typed events of every run (see {@link AirqubeEvents}). */
  readonly events = new EventEmitter<AirqubeEvents>();
  private connection: Connection | undefined;
  private connecting: Promise<Connection> | undefined;

  constructor(private readonly options: AirqubeOptions = {}) {
    const backends = [options.devnet, options.bootstrap, options.golem, options.market].filter(
      (b) => b !== undefined && b !== false,
    );
    if (backends.length > 1 && !(options.devnet && options.bootstrap))
      throw new UserError("MARKET_AMBIGUOUS", "Choose one market", {
        details: "give one of devnet, bootstrap, golem or market",
      });
    if (options.golem && options.payments)
      throw new UserError("PAYMENTS_UNSUPPORTED", "The escrow pays providers of the embedded network only", {
        details: "the Golem backend pays through yagna: drop `payments`",
      });
  }

  /** Escrow jobs an earlier run in this data directory left open, settled (or reclaimed) by `connect()`. */
  get recoveredPayments(): PaymentReport[] {
    return this.connection?.recovered ?? [];
  }

  /**
   * Connects to the market (and the chain when paying), then settles what earlier runs left open.
   *
   * @throws UserError `BOOTSTRAP_MISSING` (no market given), `DEVNET_NOT_RUNNING`, `PAYMENT_CONFIG_INVALID`,
   * `RPC_URL_NOT_LOOPBACK`, `DATA_DIR_LOCKED`, `HARDHAT_MISSING`; ChainError when the chain does not answer.
   */
  async connect(options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.connection) return;
    this.connecting ??= this.open(options.signal).finally(() => {
      this.connecting = undefined;
    });
    this.connection = await this.connecting;
    this.events.emit("connected", {
      market: this.connection.market.name,
      ...(this.connection.payments ? { paying: this.connection.payments.account } : {}),
    });
  }

  private async open(signal: AbortSignal | undefined): Promise<Connection> {
    const { airqubeHome, defaultRequestorDir } = await import("../cli/paths.js");
    let bootstrap = this.options.bootstrap;
    let payments = this.options.payments;
    let dataDir = this.options.dataDir;
    if (this.options.devnet) {
      const { readDevnetProfile } = await import("../devnet/profile.js");
      const home = (typeof this.options.devnet === "object" ? this.options.devnet.home : undefined) ?? airqubeHome();
      const profile = readDevnetProfile(home);
      if (!profile)
        throw new UserError("DEVNET_NOT_RUNNING", "No devnet is running", {
          details: `no live profile under ${home}: start one with \`airqube devnet up\``,
        });
      bootstrap ??= [profile.bootstrap];
      dataDir ??= profile.dataDir;
      if (!payments && profile.chain)
        payments = {
          rpcUrl: profile.chain.rpcUrl,
          escrow: profile.chain.escrow,
          keyFile: profile.chain.paymentKeyFile,
          ...(profile.chain.escrowVersion ? { escrowVersion: profile.chain.escrowVersion } : {}),
        };
    }
    dataDir = resolve(dataDir ?? defaultRequestorDir());
    if (HELD_DATA_DIRS.has(dataDir))
      throw new UserError("DATA_DIR_LOCKED", "The data directory is in use by another Airqube of this process", {
        details: `${dataDir}: disconnect the other one first, or give each its own dataDir`,
      });
    HELD_DATA_DIRS.add(dataDir);
    try {
      return await this.openIn(dataDir, bootstrap, payments, signal);
    } catch (error) {
      HELD_DATA_DIRS.delete(dataDir);
      throw error;
    }
  }

  private async openIn(
    dataDir: string,
    bootstrap: string[] | undefined,
    payments: PaymentOptions | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Connection> {
    // another process on the data directory is refused at once, before the chain and the network
    const { lockDataDir } = await import("../store/dir-lock.js");
    const lock = lockDataDir(dataDir, "airqube requestor (SDK)");
    let escrow: Connection["payments"];
    let market: ComputeMarket | undefined;
    try {
      if (payments) escrow = await connectPayments(payments, signal);
      const { loadOrCreateIdentity } = await import("../net/keys.js");
      const identity = loadOrCreateIdentity(dataDir);
      if (this.options.market) market = this.options.market;
      else if (this.options.golem) {
        const { GolemMarket, loadGolemConfig } = await import("../golem/index.js");
        const file = typeof this.options.golem === "object" ? this.options.golem.config : undefined;
        market = await GolemMarket.connect(loadGolemConfig(process.env, file as never), signal ? { signal } : {});
      } else {
        if (!bootstrap?.length)
          throw new UserError("BOOTSTRAP_MISSING", "No market to connect to", {
            details: "pass `bootstrap` (multiaddrs printed by `airqube devnet up`), `devnet: true` or `golem: true`",
          });
        const { Libp2pMarket } = await import("../requestor/libp2p-market.js");
        market = await Libp2pMarket.connect({
          identity,
          bootstrap,
          ...(this.options.public ? { public: true } : {}),
          ...(this.options.allowPrivate ? { allowPrivate: true } : {}),
          ...(this.options.discoveryMs !== undefined ? { discoveryMs: this.options.discoveryMs } : {}),
        });
      }
      const { Requestor } = await import("../requestor/requestor.js");
      const requestor = new Requestor({ market, dataDir, ...(escrow ? { payments: escrow } : {}) });
      let recovered: PaymentReport[] = [];
      try {
        if (escrow) recovered = await requestor.recoverPayments(signal ? { signal } : {});
      } catch (error) {
        requestor.close();
        throw error;
      }
      return { market, requestor, identity, recovered, dataDir, lock, ...(escrow ? { payments: escrow } : {}) };
    } catch (error) {
      escrow?.dispose();
      if (market && market !== this.options.market) await market.close().catch(() => {});
      lock.release();
      throw error;
    }
  }

  /**
   * Runs one qube on independent providers and resolves once a quorum agreed on its outputs and outcome.
   * A qube that exits non-zero, times out or misses a declared output still resolves (`ok` is false and
   * `outcome` says what happened): that is the agreed result. Rejects when no quorum agreed
   * ({@link NoConsensusError}), when too few providers could run it, on bad input (`UserError` `QUBE_INVALID`)
   * and on abort (the providers are told to stop; the signal's reason is thrown).
   */
  async run(description: QubeDescription, options: QubeRunOptions = {}): Promise<QubeResult> {
    validateDescription(description);
    const policy = redundancyPolicy(description.redundancy);
    const connection = this.requireConnection();
    options.signal?.throwIfAborted();
    const staged = await stageInputs(description.inputs ?? {});
    let ownOutputDir: string | undefined;
    try {
      const { sealQube } = await import("../requestor/draft.js");
      const limits = description.limits ?? {};
      const qube = await sealQube(
        {
          image: description.image,
          ...(description.imageDigest ? { imageDigest: description.imageDigest } : {}),
          command: description.command,
          env: description.env ?? {},
          ...(description.inputDir ? { inputDir: description.inputDir } : {}),
          inputFiles: staged.files,
          outputs: description.outputs ?? ["result"],
          tier: description.tier ?? "container",
          limits: {
            wallTimeMs: limits.timeoutMs ?? 60_000,
            memoryBytes: limits.memoryBytes ?? 256 * 1024 * 1024,
            milliCpus: Math.round((limits.cpus ?? 1) * 1000),
            ...(limits.pids ? { pids: limits.pids } : {}),
            ...(limits.scratchBytes ? { scratchBytes: limits.scratchBytes } : {}),
          },
          redundancy: policy,
          deterministic: description.deterministic ?? true,
        },
        connection.identity,
      );
      const qubeId = qube.spec.id;
      const emit = (event: AirqubeEvent) => {
        options.onEvent?.(event);
        this.events.emit("event", { ...event, qubeId });
      };
      emit({ type: "qubeSealed", qubeId });
      if (!description.outputDir) ownOutputDir = await mkdtemp(join(tmpdir(), "airqube-out-"));
      const outputDir = ownOutputDir ?? resolve(description.outputDir as string);
      const maxPrice = description.maxPrice;
      const report = await connection.requestor.run(qube, {
        outputDir,
        onProgress: emit,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(description.allowFewer ? { allowFewer: true } : {}),
        ...(options.prefer ? { prefer: options.prefer } : {}),
        ...(maxPrice !== undefined ? { filter: (c: ProviderCandidate) => c.price <= maxPrice } : {}),
      });
      if (report.status !== "verified" || !report.outcome || !report.outputsRoot) throw new NoConsensusError(report);
      ownOutputDir = undefined; // the caller owns it now
      return resultOf(report, report.outcome, report.outputsRoot, outputDir);
    } finally {
      await staged.cleanup();
      if (ownOutputDir) await rm(ownOutputDir, { recursive: true, force: true });
    }
  }

  /**
   * Runs several qubes, at most `concurrency` at a time (default 2), and settles like `Promise.allSettled`:
   * one qube's failure does not stop the others. An abort stops every qube still running.
   */
  async runMany(
    descriptions: QubeDescription[],
    options: QubeRunOptions & { concurrency?: number } = {},
  ): Promise<PromiseSettledResult<QubeResult>[]> {
    for (const d of descriptions) validateDescription(d);
    const concurrency = options.concurrency ?? 2;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64)
      throw new UserError("QUBE_INVALID", "concurrency must be a whole number from 1 to 64", {
        details: String(concurrency),
      });
    const results: PromiseSettledResult<QubeResult>[] = new Array(descriptions.length);
    let next = 0;
    const worker = async () => {
      while (next < descriptions.length) {
        const index = next++;
        try {
          results[index] = { status: "fulfilled", value: await this.run(descriptions[index]!, options) };
        } catch (reason) {
          results[index] = { status: "rejected", reason };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, descriptions.length) }, worker));
    return results;
  }

  /** Closes the market connection, the chain connection and the journal. Safe to call twice. */
  async disconnect(): Promise<void> {
    const pending = this.connecting;
    if (pending) await pending.catch(() => undefined);
    const connection = this.connection;
    this.connection = undefined;
    if (!connection) return;
    HELD_DATA_DIRS.delete(connection.dataDir);
    connection.requestor.close();
    connection.payments?.dispose();
    try {
      if (connection.market !== this.options.market) await connection.market.close();
    } finally {
      connection.lock.release();
    }
    this.events.emit("disconnected");
  }

  /** `await using aq = ...` disconnects at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.disconnect();
  }

  private requireConnection(): Connection {
    if (!this.connection)
      throw new UserError("NOT_CONNECTED", "Call connect() before running qubes", {
        details: "await aq.connect() once; then run() as often as you like",
      });
    return this.connection;
  }
}

async function connectPayments(
  options: PaymentOptions,
  signal: AbortSignal | undefined,
): Promise<import("../requestor/payments.js").EscrowPayments | import("../requestor/payments-v2.js").EscrowV2Payments> {
  if (options.escrowVersion !== undefined && options.escrowVersion !== "v1" && options.escrowVersion !== "v2")
    throw new UserError("PAYMENT_CONFIG_INVALID", "payments.escrowVersion must be v1 or v2", {
      details: String(options.escrowVersion),
    });
  const { checkPaymentTarget, paymentSettingsFrom, parsePrivateKey } = await import("../cli/payment-options.js");
  let settings: { rpcUrl: string; escrow: string; privateKey: string };
  if (options.privateKey !== undefined) {
    if (options.keyFile !== undefined)
      throw new UserError("PAYMENT_CONFIG_INVALID", "Give the payment key or its file, not both");
    const target = checkPaymentTarget(options, Boolean(options.allowPublicRpc));
    settings = { ...target, privateKey: parsePrivateKey(options.privateKey, "payments.privateKey") };
  } else {
    if (options.keyFile === undefined)
      throw new UserError("PAYMENT_CONFIG_INVALID", "Payments need the paying key", {
        details: "give `payments.privateKey` or `payments.keyFile`",
      });
    const read = await paymentSettingsFrom(
      {
        rpcUrl: options.rpcUrl,
        escrow: options.escrow,
        paymentKeyFile: options.keyFile,
        ...(options.allowPublicRpc ? { allowPublic: true } : {}),
      },
      {},
    );
    if (!read) throw new UserError("PAYMENT_CONFIG_INVALID", "Payments need the RPC URL, the escrow and the key");
    settings = read;
  }
  if (options.escrowVersion === "v2") {
    const { EscrowV2Payments } = await import("../requestor/payments-v2.js");
    return EscrowV2Payments.connect(settings, signal ? { signal } : {});
  }
  const { EscrowPayments } = await import("../requestor/payments.js");
  return EscrowPayments.connect(settings, signal ? { signal } : {});
}

/** Writes `data` inputs to a private temporary directory; `file` inputs are used where they are. */
async function stageInputs(
  inputs: Record<string, InputSource>,
): Promise<{ files: { path: string; source: string }[]; cleanup(): Promise<void> }> {
  const files: { path: string; source: string }[] = [];
  let dir: string | undefined;
  try {
    for (const [path, source] of Object.entries(inputs)) {
      if ("file" in source) {
        files.push({ path, source: resolve(source.file) });
        continue;
      }
      dir ??= await mkdtemp(join(tmpdir(), "airqube-in-"));
      const target = join(dir, ...path.split("/"));
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await writeFile(target, source.data, { mode: 0o600 });
      files.push({ path, source: target });
    }
  } catch (error) {
    if (dir) await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    files,
    cleanup: async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

function resultOf(report: RunReport, outcome: QubeOutcome, outputsRoot: string, outputDir: string): QubeResult {
  const agreeing = new Set(report.agreeing);
  const winner = report.answers.find((a) => a.outputsRoot === outputsRoot);
  const outputs = report.outputs.map((o) => ({ path: o.path, size: o.size, sha256: o.sha256 }));
  const known = new Set(outputs.map((o) => o.path));
  const fileOf = (path: string) => {
    if (!known.has(path))
      throw new UserError("OUTPUT_UNKNOWN", "No such verified output", {
        details: `${path}; the outputs are: ${[...known].slice(0, 20).join(", ") || "none"}`,
      });
    return join(outputDir, ...path.split("/"));
  };
  return {
    qubeId: report.qubeId,
    verified: report.verified,
    ok: report.verified && outcome.kind === "exited" && outcome.exitCode === 0 && outcome.missingOutputs.length === 0,
    outcome,
    outputsRoot,
    outputDir,
    outputs,
    stdout: winner?.stdout ?? "",
    evidence: {
      agreeing: report.agreeing,
      dissenting: report.dissenting,
      statements: report.answers
        .filter((a) => agreeing.has(a.provider) && a.statement)
        .map((a) => a.statement as SignedEnvelope<ResultStatement>),
      answers: report.answers,
      failures: report.failures,
      payments: report.payments ?? [],
    },
    report,
    read: async (path) => readFile(fileOf(path)),
    readText: async (path) => readFile(fileOf(path), "utf8"),
  };
}
