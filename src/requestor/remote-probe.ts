/**
 * The escape suite run on a remote provider, as qubes: `RemoteSandbox` implements the sandbox port by sending
 * each probe qube to one chosen provider over the network. The probe's stdout, stderr and exit status travel
 * as declared outputs, so they are covered by the provider's signed result statement like any result.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadOrCreateIdentity } from "../net/keys.js";
import { PROBE_IMAGE, type ProbeReport, runProbeSuite } from "../probes/index.js";
import { PeerError, type ResultStatement, type SignedEnvelope, type Tier, UserError } from "../qube/index.js";
import type { QubeRun, RunResult, Sandbox } from "../sandbox/api.js";
import { sealQube, specLimitsFor } from "./draft.js";
import { Libp2pMarket } from "./libp2p-market.js";
import { Requestor } from "./requestor.js";

/** Where the remote qube's own output is captured (the probe program knows this name and skips it). */
const CAPTURE_DIR = ".airqube-remote";
const CAPTURE = `/output/${CAPTURE_DIR}`;

/** A sandbox that is one remote provider. */
export class RemoteSandbox implements Sandbox {
  readonly statements: SignedEnvelope<ResultStatement>[] = [];
  constructor(
    readonly tier: Tier,
    private readonly provider: string,
    private readonly requestor: Requestor,
    private readonly identity: ReturnType<typeof loadOrCreateIdentity>,
  ) {}

  async run(qube: QubeRun, options: { signal?: AbortSignal } = {}): Promise<RunResult> {
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
    const out = await mkdtemp(join(tmpdir(), "airqube-remote-probe-"));
    try {
      const result = await this.requestor.run(sealed, {
        outputDir: out,
        filter: (c) => c.id === this.provider,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const answer = result.answers.find((a) => a.provider === this.provider);
      if (!answer?.statement) {
        throw new PeerError("PROVIDER_NO_ANSWER", "The provider did not answer the probe qube", {
          details: result.failures.map((f) => `${f.code}: ${f.message}`).join("; ") || result.reason,
        });
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

export interface RemoteProbeOptions {
  provider: string;
  bootstrap?: string[];
  dataDir: string;
  tier: Tier;
  signal?: AbortSignal;
}

/** Runs the suite on a remote provider; the report carries the provider's signed statements. */
export async function runRemoteProbeSuite(
  options: RemoteProbeOptions,
): Promise<ProbeReport & { provider: string; statements: SignedEnvelope<ResultStatement>[] }> {
  const bootstrap =
    options.bootstrap ?? (process.env.AIRQUBE_BOOTSTRAP ? process.env.AIRQUBE_BOOTSTRAP.split(",") : []);
  if (bootstrap.length === 0)
    throw new UserError("BOOTSTRAP_MISSING", "No bootstrap peer", {
      details: "pass --bootstrap MULTIADDR or set AIRQUBE_BOOTSTRAP",
    });
  const identity = loadOrCreateIdentity(options.dataDir);
  const market = await Libp2pMarket.connect({ identity, bootstrap });
  const requestor = new Requestor({ market, dataDir: options.dataDir });
  try {
    const sandbox = new RemoteSandbox(options.tier, options.provider, requestor, identity);
    const report = await runProbeSuite({
      tier: options.tier,
      image: PROBE_IMAGE,
      sandboxFactory: () => sandbox,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return { ...report, provider: options.provider, statements: sandbox.statements };
  } finally {
    requestor.close();
    await market.close();
  }
}
