import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { Contract } from "ethers";
import { testGLMAbi } from "../../src/chain/abi/test-glm.js";
import { createRpcProvider } from "../../src/chain/rpc.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { JobLedger } from "../../src/provider/ledger.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const CLEAN_ENV = ["AIRQUBE_RPC_URL", "AIRQUBE_ESCROW", "AIRQUBE_PAYMENT_KEY_FILE", "AIRQUBE_BOOTSTRAP"];

async function airqube(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !CLEAN_ENV.includes(k))),
    AIRQUBE_LOG_LEVEL: "warn",
    AIRQUBE_HOME: tmp("aq-adm-home-"),
  };
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], { timeout: 240_000, env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const jsonLines = (stdout: string) =>
  stdout
    .trim()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown> & { event?: string });

describe("devnet: providers are asked before any money is locked @docker", function () {
  this.timeout(300_000);
  let devnet: Devnet;
  let payFlags: string[];

  before(async () => {
    devnet = await Devnet.start({ providers: 3, chain: true, probeCache: PROBE_CACHE, readyTimeoutMs: 180_000 });
    const chain = devnet.chain!;
    payFlags = ["--rpc-url", chain.rpcUrl, "--escrow", chain.escrow, "--payment-key-file", chain.requestorKeyFile];
  });
  after(async () => {
    await devnet?.stop(3000);
  });

  /** Token balances of the requestor and of the escrow contract (every locked budget sits in the escrow). */
  async function balances(): Promise<{ requestor: bigint; escrow: bigint }> {
    const chain = devnet.chain!;
    const rpc = createRpcProvider(chain.rpcUrl, chain.chainId);
    try {
      const token = new Contract(chain.token, testGLMAbi, rpc);
      const of = (account: string) => token.getFunction("balanceOf")(account) as Promise<bigint>;
      return { requestor: await of(chain.requestor.address), escrow: await of(chain.escrow) };
    } finally {
      rpc.destroy();
    }
  }

  const ledgerSizes = () =>
    devnet.providers.map((p) => {
      const ledger = new JobLedger(join(p.dataDir, "ledger.sqlite"));
      try {
        return ledger.recent(1000).length;
      } finally {
        ledger.close();
      }
    });

  /** A paid run every provider must refuse: each says why, nothing is locked, nothing is dispatched. */
  async function expectRefusedBeforeLocking(extra: string[], code: string, reason: RegExp) {
    const before = await balances();
    const ledgers = ledgerSizes();
    const dataDir = tmp("aq-adm-req-");
    const out = await airqube([
      "run",
      "--json",
      "--bootstrap",
      devnet.bootstrap,
      "--data-dir",
      dataDir,
      ...payFlags,
      "--image",
      "airqube/busybox:latest",
      "--output",
      tmp("aq-adm-out-"),
      "--memory",
      "64m",
      ...extra,
      "--",
      "sh",
      "-c",
      "echo never > /output/result",
    ]);
    expect(out.code, out.stderr).to.equal(125);
    const lines = jsonLines(out.stdout);
    const events = lines.map((l) => l.event);
    // refused when asked: no budget was locked, no qube was sent
    expect(events).not.to.include("budgetLocked");
    expect(events).not.to.include("qubeSent");
    const refusals = lines.filter((l) => l.event === "providerFailed") as { provider: string; code: string }[];
    expect(refusals.map((r) => r.provider).sort()).to.deep.equal(devnet.providers.map((p) => p.peerId).sort());
    for (const r of refusals) expect(r.code).to.equal(code);
    const error = lines.at(-1)!.error as { code: string; details: string };
    expect(error.code).to.equal("NO_PROVIDER");
    expect(error.details).to.match(reason);
    // the chain: the requestor's tokens and the escrow's holdings are exactly as before
    expect(await balances()).to.deep.equal(before);
    // the journal holds no escrow job, and no provider recorded a job
    const journal = await airqube(["journal", "--json", "--data-dir", dataDir]);
    const qubes = JSON.parse(journal.stdout) as { escrowJobs: unknown[] }[];
    expect(qubes.flatMap((q) => q.escrowJobs)).to.deep.equal([]);
    expect(ledgerSizes()).to.deep.equal(ledgers);
  }

  it("an image digest no provider has: refused with IMAGE_UNAVAILABLE, no escrow job, balance unchanged", async () => {
    await expectRefusedBeforeLocking(
      ["--image-digest", `sha256:${"0".repeat(64)}`],
      "IMAGE_UNAVAILABLE",
      /IMAGE_UNAVAILABLE/,
    );
  });

  it("a timeout over every provider's maximum: refused with LIMITS_EXCEEDED, no escrow job, balance unchanged", async () => {
    await expectRefusedBeforeLocking(["--timeout", "2h"], "LIMITS_EXCEEDED", /wallTimeMs 7200000 is over/);
  });

  it("a qube the providers admit is still locked and paid (the query does not get in the way)", async () => {
    const before = await balances();
    const out = await airqube([
      "run",
      "--json",
      "--bootstrap",
      devnet.bootstrap,
      "--data-dir",
      tmp("aq-adm-req-"),
      ...payFlags,
      "--image",
      "airqube/busybox:latest",
      "--output",
      tmp("aq-adm-out-"),
      "--timeout",
      "10s",
      "--memory",
      "64m",
      "--",
      "sh",
      "-c",
      "echo fine > /output/result",
    ]);
    expect(out.code, out.stderr).to.equal(0);
    const result = jsonLines(out.stdout).at(-1) as { status: string; payments: { status: string; price: string }[] };
    expect(result.status).to.equal("verified");
    expect(result.payments.map((p) => p.status)).to.deep.equal(["settled"]);
    const after = await balances();
    expect(before.requestor - after.requestor).to.equal(3n * BigInt(result.payments[0]!.price));
  });
});
