/**
 * The escape suite run on a remote provider, as qubes: `RemoteSandbox` implements the sandbox port by sending
 * each probe qube to one chosen provider over the network. The probe's stdout, stderr and exit status travel
 * as declared outputs, so they are covered by the provider's signed result statement like any result.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { peerIdFromString } from "@libp2p/peer-id";
import { loadOrCreateIdentity } from "../net/keys.js";
import { PROBE_IMAGE, type ProbeReport, runProbeSuite } from "../probes/index.js";
import {
  type AirqubeError,
  PeerError,
  type ResultStatement,
  type SignedEnvelope,
  type Tier,
  toAirqubeError,
  UserError,
} from "../qube/index.js";
import type { QubeRun, Sandbox, SandboxResult } from "../sandbox/api.js";
import { sealQube, specLimitsFor } from "./draft.js";
import { Libp2pMarket } from "./libp2p-market.js";
import type { PaymentReport, PaymentsPort } from "./payments.js";
import { Requestor } from "./requestor.js";

/** How long to look for the provider's offer before saying it is not on the network. */
const FIND_PROVIDER_MS = 8_000;

/** Where the remote qube's own output is captured (the probe program knows this name and skips it). */
const CAPTURE_DIR = ".airqube-remote";
const CAPTURE = `/output/${CAPTURE_DIR}`;

/** A sandbox that is one remote provider. */
export class RemoteSandbox implements Sandbox {
  readonly statements: SignedEnvelope<ResultStatement>[] = [];
  /** Every escrow job the probe qubes paid through (paid runs only). */
  readonly payments: PaymentReport[] = [];
  /**
   * Set when the provider did not run the first qube at all (it refused, could not be reached, or the run
   * could not pay): the suite cannot say anything about its sandbox, so every later qube fails the same way
   * and the caller reports this one error instead of a page of inconclusive rows.
   */
  fatal: AirqubeError | undefined;
  private runs = 0;
  constructor(
    readonly tier: Tier,
    private readonly provider: string,
    private readonly requestor: Requestor,
    private readonly identity: ReturnType<typeof loadOrCreateIdentity>,
  ) {}

  async run(qube: QubeRun, options: { signal?: AbortSignal } = {}): Promise<SandboxResult> {
    const limits = qube.limits ?? {};
    const sealed = await sealQube(
      {
        image: qube.image,
        // the probe's stdout, stderr and status become declared outputs, covered by the signed statement
        command: [
          "/bin/sh",
          "-c",
          `mkdir ${CAPTURE} && "$@" > ${CAPTURE}/stdout 2> ${CAPTURE}/stderr; echo $? > ${CAPTURE}/exit`,
          "airqube-probe",
          ...qube.command,
        ],
        env: qube.env ?? {},
        outputs: [CAPTURE_DIR],
        tier: this.tier,
        limits: specLimitsFor(limits),
        redundancy: { mode: "fixed", k: 1, quorum: 1 },
      },
      this.identity,
    );
    if (this.fatal) throw this.fatal;
    const first = this.runs++ === 0;
    const out = await mkdtemp(join(tmpdir(), "airqube-remote-probe-"));
    try {
      let answer: Awaited<ReturnType<Requestor["run"]>>["answers"][number] | undefined;
      try {
        const result = await this.requestor.run(sealed, {
          outputDir: out,
          filter: (c) => c.id === this.provider,
          ...(options.signal ? { signal: options.signal } : {}),
        });
        this.payments.push(...(result.payments ?? []));
        answer = result.answers.find((a) => a.provider === this.provider);
        if (!answer?.statement) {
          throw new PeerError("PROVIDER_NO_ANSWER", "The provider did not answer the probe qube", {
            details: result.failures.map((f) => `${f.code}: ${f.message}`).join("; ") || result.reason,
          });
        }
      } catch (error) {
        if (first && !options.signal?.aborted) this.fatal = toAirqubeError(error);
        throw error;
      }
      this.statements.push(answer.statement);
      const statement = answer.statement.payload;
      const read = (name: string) => readFile(join(out, CAPTURE_DIR, name), "utf8").catch(() => "");
      const exit = Number((await read("exit")).trim());
      return {
        tier: statement.tier,
        imageDigest: statement.imageDigest,
        exitCode: Number.isInteger(exit) ? exit : -1,
        durationMs: statement.usage.wallMs,
        stdout: await read("stdout"),
        stderr: await read("stderr"),
        stdoutTruncated: false,
        stderrTruncated: false,
        oomKilled: statement.outcome === "oom",
        timedOut: statement.outcome === "timeout",
        outputs: [],
        startedAt: statement.startedAt,
        endedAt: statement.finishedAt,
      };
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {}
}

/** Options of {@link runRemoteProbeSuite}. */
export interface RemoteProbeOptions {
  /** The provider's peer id. */
  provider: string;
  /** Bootstrap multiaddrs; default `AIRQUBE_BOOTSTRAP` (comma-separated). */
  bootstrap?: string[];
  /** The requestor's data directory (identity, journal, reputation). */
  dataDir: string;
  /** The sandbox tier to probe. */
  tier: Tier;
  /** Aborts the suite. */
  signal?: AbortSignal;
  /** Pays the probe qubes like `airqube run` (escrow jobs an earlier run left open are settled first). */
  payments?: PaymentsPort;
  /** @deprecated same as `network.public`. */
  allowPublic?: boolean;
  /** Public mode (`--public`), and its address permissions (see Libp2pMarketOptions). */
  network?: { public?: boolean; allowPrivate?: boolean; allowLoopback?: boolean };
}

/**
 * Runs the suite on a remote provider; the report carries the provider's signed statements (and, paid, the
 * escrow jobs). A provider id that is malformed or not on the network, or a provider that will not run the
 * suite's first qube, is one error, not a report.
 *
 * @throws UserError `PROVIDER_ID_INVALID`, `BOOTSTRAP_MISSING`, `PROVIDER_UNKNOWN`; PeerError
 * `BOOTSTRAP_UNREACHABLE`; the provider's refusal or failure.
 *
 * @example
 * const report = await runRemoteProbeSuite({ provider: "12D3KooW…", bootstrap, dataDir, tier: "container" });
 * console.log(report.summary, report.statements.length);
 */
export async function runRemoteProbeSuite(options: RemoteProbeOptions): Promise<
  ProbeReport & {
    provider: string;
    statements: SignedEnvelope<ResultStatement>[];
    payments?: PaymentReport[];
    recovered?: PaymentReport[];
  }
> {
  try {
    peerIdFromString(options.provider);
  } catch (error) {
    throw new UserError("PROVIDER_ID_INVALID", "The provider id is not a peer id", {
      details: `${options.provider}: expected a libp2p peer id such as 12D3KooW... (see \`airqube offers\`)`,
      cause: error,
    });
  }
  const bootstrap =
    options.bootstrap ?? (process.env.AIRQUBE_BOOTSTRAP ? process.env.AIRQUBE_BOOTSTRAP.split(",") : []);
  if (bootstrap.length === 0)
    throw new UserError("BOOTSTRAP_MISSING", "No bootstrap peer", {
      details: "pass --bootstrap MULTIADDR or set AIRQUBE_BOOTSTRAP",
    });
  const identity = loadOrCreateIdentity(options.dataDir);
  const market = await Libp2pMarket.connect({
    identity,
    bootstrap,
    ...(options.allowPublic ? { allowPublic: true } : {}),
    ...options.network,
  });
  let requestor: Requestor;
  try {
    requestor = new Requestor({
      market,
      dataDir: options.dataDir,
      ...(options.payments ? { payments: options.payments } : {}),
    });
  } catch (error) {
    // the journal or reputation store could not be opened: the market started above must not outlive it
    await market.close();
    throw error;
  }
  try {
    await findOffer(market, options.provider, options.signal);
    const recovered = options.payments
      ? await requestor.recoverPayments(options.signal ? { signal: options.signal } : {})
      : undefined;
    const sandbox = new RemoteSandbox(options.tier, options.provider, requestor, identity);
    const report = await runProbeSuite({
      tier: options.tier,
      image: PROBE_IMAGE,
      sandboxFactory: () => sandbox,
      localEngine: false, // row 42 (engine versions) is the provider's own suite run's to check
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (sandbox.fatal) throw sandbox.fatal;
    return {
      ...report,
      provider: options.provider,
      statements: sandbox.statements,
      ...(options.payments ? { payments: sandbox.payments, recovered: recovered ?? [] } : {}),
    };
  } finally {
    requestor.close();
    await market.close();
  }
}

/** Waits (a few seconds) for the provider's offer; a provider that is not on the network is one clear error. */
async function findOffer(market: Libp2pMarket, provider: string, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + FIND_PROVIDER_MS;
  while (!market.offerOf(provider)) {
    if (Date.now() >= deadline) {
      const known = market.offers.list().map((k) => k.offer.provider);
      throw new UserError("PROVIDER_UNKNOWN", "No provider with this id is on the network", {
        details: `${provider}: no offer from it in ${FIND_PROVIDER_MS / 1000} s (${known.length} other provider${known.length === 1 ? "" : "s"} seen${known.length ? `: ${known.slice(0, 5).join(", ")}` : ""}); list them with \`airqube offers\``,
      });
    }
    await market.offers.queryConnected(signal ? { signal } : {});
    await new Promise((r) => setTimeout(r, 250));
    signal?.throwIfAborted();
  }
}
