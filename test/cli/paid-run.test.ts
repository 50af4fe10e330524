import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { formatUnits } from "ethers";
import { ChainError } from "../../src/chain/errors.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { JobLedger } from "../../src/provider/ledger.js";
import { Identity } from "../../src/qube/index.js";
import { sealQube } from "../../src/requestor/draft.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { EscrowPayments, type PaymentReport } from "../../src/requestor/payments.js";
import { Requestor } from "../../src/requestor/requestor.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const PAYMENT_ENV = ["AIRQUBE_RPC_URL", "AIRQUBE_ESCROW", "AIRQUBE_PAYMENT_KEY_FILE", "AIRQUBE_BOOTSTRAP"];

/** Runs the CLI as a child process (asynchronously: the devnet's chain is served from this process). */
async function airqube(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !PAYMENT_ENV.includes(k)));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      timeout: 240_000,
      env: { ...base, AIRQUBE_LOG_LEVEL: "warn", ...env },
    });
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

const creditOf = (report: PaymentReport, account: string) =>
  report.credits
    .filter((c) => c.account.toLowerCase() === account.toLowerCase())
    .reduce((sum, c) => sum + BigInt(c.amount), 0n);

const qubeArgs = (text: string) => [
  "--image",
  "airqube/busybox:latest",
  "--output",
  tmp("aq-paid-out-"),
  "--timeout",
  "10s",
  "--memory",
  "64m",
  "--",
  "sh",
  "-c",
  `echo ${text} > /output/result`,
];

describe("cli: airqube run pays on agreement @docker", function () {
  this.timeout(300_000);
  let devnet: Devnet;
  let payFlags: string[];
  let key: string;

  before(async () => {
    devnet = await Devnet.start({ providers: 3, chain: true, probeCache: PROBE_CACHE });
    const chain = devnet.chain!;
    payFlags = ["--rpc-url", chain.rpcUrl, "--escrow", chain.escrow, "--payment-key-file", chain.requestorKeyFile];
    key = chain.requestor.privateKey.replace(/^0x/, "").toLowerCase();
  });
  after(async () => {
    await devnet?.stop(3000);
  });

  const ledgerCounts = () =>
    devnet.providers.map((p) => {
      const ledger = new JobLedger(join(p.dataDir, "ledger.sqlite"));
      try {
        return ledger.recent(1000).length;
      } finally {
        ledger.close();
      }
    });

  it("locks the budget before dispatch, settles the verified result, and prints the transactions and credits", async () => {
    const dataDir = tmp("aq-paid-req-");
    const { code, stdout, stderr } = await airqube([
      "run",
      "--json",
      "--bootstrap",
      devnet.bootstrap,
      "--data-dir",
      dataDir,
      ...payFlags,
      ...qubeArgs("paid"),
    ]);
    expect(code, stderr).to.equal(0);
    expect(`${stdout}${stderr}`.toLowerCase()).not.to.contain(key);
    const lines = jsonLines(stdout);
    const events = lines.map((l) => l.event);
    // nothing was left open: the recovery comes first and finds nothing
    expect(lines[0]).to.deep.include({ event: "paymentsRecovered", payments: [] });
    expect(events.indexOf("budgetLocked")).to.be.greaterThan(0);
    expect(events.indexOf("budgetLocked")).to.be.lessThan(events.indexOf("qubeSent"));
    const result = lines.at(-1) as { event: string; status: string; verified: boolean; payments: PaymentReport[] };
    expect(result.event).to.equal("result");
    expect(result.status).to.equal("verified");
    expect(result.verified).to.equal(true);
    expect(result.payments).to.have.length(1);
    const report = result.payments[0]!;
    expect(report.status).to.equal("settled");
    expect(report.lockTx).to.match(/^0x[0-9a-f]{64}$/);
    expect(report.settleTx).to.match(/^0x[0-9a-f]{64}$/);
    const price = BigInt(report.price);
    const stake = BigInt(report.stake);
    expect(price > 0n).to.equal(true);
    for (const p of devnet.providers) expect(creditOf(report, p.payout!)).to.equal(price + stake);
    expect(creditOf(report, devnet.chain!.requestor.address)).to.equal(BigInt(report.budget) - 3n * price);

    // the journal shows the job settled, with both transactions
    const journal = await airqube(["journal", "--json", "--data-dir", dataDir]);
    expect(journal.code).to.equal(0);
    const [qube] = JSON.parse(journal.stdout) as { state: string; escrowJobs: Record<string, unknown>[] }[];
    expect(qube!.state).to.equal("verified");
    expect(qube!.escrowJobs).to.have.length(1);
    expect(qube!.escrowJobs[0]).to.deep.include({
      jobId: report.jobId,
      state: "settled",
      lockTx: report.lockTx,
      settleTx: report.settleTx,
      budget: report.budget,
    });

    // one figure: `provider status` and `provider earnings` print the same credited amount (price + stake back)
    const provider = devnet.providers[0]!.dataDir;
    const figure = `  credited by the escrow: ${formatUnits(price + stake, 18)} GLM over 1 credit (prices paid plus stakes returned)`;
    const status = await airqube(["provider", "status", "--data-dir", provider]);
    const earnings = await airqube(["provider", "earnings", "--data-dir", provider]);
    expect(status.stdout.split("\n"), status.stderr).to.include(figure);
    expect(earnings.stdout.split("\n"), earnings.stderr).to.include(figure);
  });

  it("settles on start what a crashed run left open (settings from the environment), and the journal shows it", async () => {
    const dataDir = tmp("aq-paid-restart-");
    const chain = devnet.chain!;
    // a requestor that stops between the verified result and the settlement
    const identity = Identity.fromSeed(randomBytes(32));
    const market = await Libp2pMarket.connect({ identity, bootstrap: [devnet.bootstrap] });
    const real = await EscrowPayments.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.requestor.privateKey,
      escrow: chain.escrow,
    });
    const crashing = new Requestor({
      market,
      dataDir,
      payments: {
        chainId: real.chainId,
        escrow: real.escrow,
        account: real.account,
        lock: (request, options) => real.lock(request, options),
        close: async () => {
          throw new ChainError("CHAIN_UNREACHABLE", "The requestor stopped before settling");
        },
        dispose: () => real.dispose(),
      },
    });
    let left: PaymentReport;
    try {
      const qube = await sealQube(
        {
          image: "airqube/busybox:latest",
          command: ["sh", "-c", "echo crashed > /output/result"],
          outputs: ["result"],
          limits: { wallTimeMs: 10_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 },
          redundancy: { mode: "fixed", k: 3, quorum: 2 },
        },
        identity,
      );
      const result = await crashing.run(qube, { outputDir: tmp("aq-paid-out-") });
      expect(result.status).to.equal("verified");
      expect(result.payments!.map((p) => p.status)).to.deep.equal(["pending"]);
      left = result.payments![0]!;
    } finally {
      crashing.close();
      real.dispose();
      await market.close();
    }
    const before = await airqube(["journal", "--data-dir", dataDir]);
    expect(before.stdout).to.contain(`escrow job ${left.jobId} open (CHAIN_UNREACHABLE`);

    const { code, stdout, stderr } = await airqube(["run", "--data-dir", dataDir, ...qubeArgs("after")], {
      AIRQUBE_BOOTSTRAP: devnet.bootstrap,
      AIRQUBE_RPC_URL: chain.rpcUrl,
      AIRQUBE_ESCROW: chain.escrow,
      AIRQUBE_PAYMENT_KEY_FILE: chain.requestorKeyFile,
    });
    expect(code, stderr).to.equal(0);
    expect(`${stdout}${stderr}`.toLowerCase()).not.to.contain(key);
    const text = stdout.split("\n");
    const recovered = text.indexOf("recovered 1 escrow job(s) an earlier run left open:");
    const verified = text.findIndex((l) => l.startsWith("VERIFIED by "));
    expect(recovered, stdout).to.be.greaterThan(-1);
    expect(verified).to.be.greaterThan(recovered);
    expect(text[recovered + 1]).to.equal(`PAID on agreement: escrow job ${left.jobId}`);
    expect(text[recovered + 3]).to.match(/^ {2}settled in tx 0x[0-9a-f]{64}$/);
    // the new run's own job, settled, with the providers named by peer id
    const own = text.slice(verified).join("\n");
    expect(own).to.match(/PAID on agreement: escrow job 0x[0-9a-f]{64}\n {2}budget .* GLM locked in tx 0x[0-9a-f]{64}/);
    expect(own).to.match(/ {2}settled in tx 0x[0-9a-f]{64}/);
    for (const p of devnet.providers) expect(own).to.contain(`    ${p.peerId} credited `);

    const journal = await airqube(["journal", "--json", "--data-dir", dataDir]);
    const qubes = JSON.parse(journal.stdout) as { escrowJobs: { jobId: string; state: string }[] }[];
    const jobs = qubes.flatMap((q) => q.escrowJobs);
    expect(jobs).to.have.length(2);
    expect(jobs.map((j) => j.state)).to.deep.equal(["settled", "settled"]);
    expect(jobs.map((j) => j.jobId)).to.include(left.jobId);
    const after = await airqube(["journal", "--data-dir", dataDir]);
    expect(after.stdout).to.match(new RegExp(`escrow job ${left.jobId} settled: budget .* locked in tx 0x`));
  });

  it("a chain that is down: CHAIN_UNREACHABLE, exit 125, nothing dispatched", async () => {
    const dataDir = tmp("aq-paid-down-");
    const before = ledgerCounts();
    const chain = devnet.chain!;
    const { code, stdout, stderr } = await airqube([
      "run",
      "--json",
      "--bootstrap",
      devnet.bootstrap,
      "--data-dir",
      dataDir,
      "--rpc-url",
      "http://127.0.0.1:1",
      "--escrow",
      chain.escrow,
      "--payment-key-file",
      chain.requestorKeyFile,
      ...qubeArgs("unpaid"),
    ]);
    expect(code).to.equal(125);
    expect(stderr).to.contain("[CHAIN_UNREACHABLE]");
    const lines = jsonLines(stdout);
    expect(lines).to.have.length(1);
    expect((lines[0]!.error as { code: string }).code).to.equal("CHAIN_UNREACHABLE");
    expect(ledgerCounts()).to.deep.equal(before);
    const journal = await airqube(["journal", "--json", "--data-dir", dataDir]);
    expect(JSON.parse(journal.stdout)).to.deep.equal([]);
  });
});

describe("cli: airqube run payment settings", function () {
  this.timeout(60_000);
  const escrow = `0x${"11".repeat(20)}`;

  const expectRefused = async (args: string[], code: string, env: Record<string, string> = {}) => {
    const out = await airqube(
      [
        "run",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/1/p2p/x",
        "--data-dir",
        tmp("aq-paid-cfg-"),
        ...args,
        ...qubeArgs("x"),
      ],
      env,
    );
    expect(out.code, out.stderr).to.equal(125);
    expect(out.stderr).to.contain(`[${code}]`);
    return out;
  };

  it("refuses a non-loopback RPC URL unless --allow-public", async () => {
    const keyFile = join(tmp("aq-paid-key-"), "k");
    await writeFile(keyFile, `0x${"ab".repeat(32)}\n`, { mode: 0o600 });
    const { stderr } = await expectRefused(
      ["--rpc-url", "http://203.0.113.7:8545", "--escrow", escrow, "--payment-key-file", keyFile],
      "RPC_URL_NOT_LOOPBACK",
    );
    expect(stderr).to.contain("--allow-public");
    expect(stderr).not.to.contain("ab".repeat(32));
  });

  it("needs all three settings, a valid escrow address and a key file holding a key (never echoed)", async () => {
    const { stderr } = await expectRefused(["--rpc-url", "http://127.0.0.1:8545"], "PAYMENT_CONFIG_INVALID");
    expect(stderr).to.contain("--escrow (or AIRQUBE_ESCROW)");
    expect(stderr).to.contain("--payment-key-file (or AIRQUBE_PAYMENT_KEY_FILE)");
    const dir = tmp("aq-paid-key-");
    await expectRefused([], "PAYMENT_CONFIG_INVALID", {
      AIRQUBE_RPC_URL: "http://127.0.0.1:8545",
      AIRQUBE_ESCROW: "0x1234",
      AIRQUBE_PAYMENT_KEY_FILE: join(dir, "k"),
    });
    await expectRefused(
      ["--rpc-url", "http://127.0.0.1:8545", "--escrow", escrow, "--payment-key-file", join(dir, "missing")],
      "PAYMENT_KEY_INVALID",
    );
    const secret = "not-a-key-but-secret-nevertheless";
    await writeFile(join(dir, "bad"), secret, { mode: 0o600 });
    const bad = await expectRefused(
      ["--rpc-url", "http://127.0.0.1:8545", "--escrow", escrow, "--payment-key-file", join(dir, "bad")],
      "PAYMENT_KEY_INVALID",
    );
    expect(`${bad.stdout}${bad.stderr}`).not.to.contain(secret);
  });
});
