/**
 * `/api/earnings` against a real chain (Hardhat's in-process EDR network on 127.0.0.1): the escrow credits a
 * provider for two settled jobs, the provider withdraws once; the dashboard reads the credits, the withdrawal
 * and what is left from the events (in pages of 2 blocks, so several pages), and says when the chain is down.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { type JsonRpcProvider, Wallet } from "ethers";
import { deployEscrow, fundAccounts } from "../../src/chain/deploy.js";
import { EscrowClient, type OwnOpening } from "../../src/chain/escrow-client.js";
import { type EscrowJob, jobIdOf } from "../../src/chain/job.js";
import { type LocalChain, startLocalChain } from "../../src/chain/local-chain.js";
import { createRpcProvider } from "../../src/chain/rpc.js";
import { cachedEarnings, readEarnings } from "../../src/dashboard/earnings-view.js";
import { type Dashboard, startDashboard } from "../../src/dashboard/server.js";
import { writeChainFile } from "../../src/provider/payments.js";

const E18 = 10n ** 18n;
const hex32 = (n: number) => `0x${n.toString(16).padStart(64, "0")}`;

// biome-ignore lint/suspicious/noExplicitAny: the test reads the JSON body field by field
function getJson(port: number, path: string, token: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, headers: { Authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

describe("dashboard: earnings on chain (real EDR chain on 127.0.0.1)", function () {
  this.timeout(120_000);
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let escrow: string;
  let requestor: EscrowClient;
  let providers: EscrowClient[];
  let root: string;
  let providerDir: string;
  let dashboard: Dashboard;
  const jobIds: string[] = [];
  let withdrawTx = "";

  before(async () => {
    chain = await startLocalChain({ accounts: 5 });
    provider = createRpcProvider(chain.rpcUrl, chain.chainId);
    const deployer = new Wallet(chain.accounts[0]!.privateKey, provider);
    const deployed = await deployEscrow(deployer);
    escrow = deployed.escrow;
    const connect = (i: number) =>
      EscrowClient.connect({ rpcUrl: chain.rpcUrl, privateKey: chain.accounts[i]!.privateKey, escrow });
    requestor = await connect(1);
    await fundAccounts(
      deployer,
      deployed.token,
      chain.accounts.map((a) => a.address),
      1000n * E18,
    );
    providers = await Promise.all([2, 3, 4].map(connect));
    // two jobs settled on agreement (each provider credited price + stake), one withdrawal between them
    for (let n = 0; n < 2; n++) {
      const now = (await provider.getBlock("latest"))!.timestamp;
      const job: EscrowJob = {
        requestor: requestor.address,
        qubeId: hex32(0xc0be + n),
        nonce: BigInt(n),
        providers: providers.map((p) => p.address),
        price: (3n + BigInt(n)) * E18,
        stake: E18,
        quorum: 2,
        commitDeadline: now + 100,
        revealDeadline: now + 200,
        finalDeadline: now + 300,
      };
      await requestor.openJob(job);
      const reveals = new Map<string, OwnOpening>();
      for (const [i, p] of providers.entries()) {
        const own = { outputsRoot: hex32(0x600d), salt: hex32(100 + i) };
        reveals.set(p.address, own);
        await p.commit(job, own);
      }
      await requestor.settle(job, reveals);
      jobIds.push(jobIdOf(job));
      if (n === 0) withdrawTx = (await providers[0]!.withdraw()).hash;
    }
    root = mkdtempSync(join(tmpdir(), "airqube-dashboard-earnings-"));
    providerDir = join(root, "provider");
    mkdirSync(providerDir, { recursive: true });
    // as a paid agent leaves its data directory: chain.json and its payout key (the status names the payout too)
    writeChainFile(providerDir, { rpcUrl: chain.rpcUrl, escrow });
    writeFileSync(join(providerDir, "payout.key"), `${chain.accounts[2]!.privateKey}\n`, { mode: 0o600 });
    dashboard = await startDashboard({
      requestorDir: join(root, "requestor"),
      providerDir,
      home: root,
      port: 0,
      earningsTtlMs: 0,
    });
  });

  after(async () => {
    await dashboard?.close();
    for (const c of [requestor, ...(providers ?? [])]) c?.close();
    provider?.destroy();
    await chain?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("/api/earnings: credits and withdrawals of the payout account, and what it can still withdraw", async () => {
    const { status, body } = await getJson(dashboard.port, "/api/earnings", dashboard.token);
    expect(status).to.equal(200);
    expect(body).to.include({
      paid: true,
      rpcUrl: chain.rpcUrl,
      escrow,
      payout: providers[0]!.address,
      chainId: 31337,
      // price + stake of each job: (3 + 1) + (4 + 1) GLM
      totalCreditedWei: (9n * E18).toString(),
      totalWithdrawnWei: (4n * E18).toString(),
      withdrawableWei: (5n * E18).toString(),
      creditCount: 2,
      withdrawalCount: 1,
    });
    expect(body.error).to.equal(undefined);
    // newest first
    expect(body.credits.map((c: { jobId: string; amountWei: string }) => [c.jobId, c.amountWei])).to.deep.equal([
      [jobIds[1], (5n * E18).toString()],
      [jobIds[0], (4n * E18).toString()],
    ]);
    expect(body.withdrawals).to.have.length(1);
    expect(body.withdrawals[0]).to.include({ amountWei: (4n * E18).toString(), tx: withdrawTx });
    // the same figures as the client `airqube provider earnings` uses
    const credits = await providers[0]!.credits();
    expect(credits.reduce((s, c) => s + c.amount, 0n)).to.equal(9n * E18);
  });

  it("reads the events in pages: the same answer when the endpoint takes 2 blocks per eth_getLogs", async () => {
    // readEarnings connects its own client; a narrow default range is exercised through log-pages directly
    const narrow = await EscrowClient.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: Wallet.createRandom().privateKey,
      escrow,
      logRangeBlocks: 2,
    });
    try {
      const [credits, withdrawals] = await Promise.all([
        narrow.credits(providers[0]!.address),
        narrow.withdrawals(providers[0]!.address),
      ]);
      expect(credits.map((c) => c.jobId)).to.deep.equal(jobIds);
      expect(withdrawals.map((w) => [w.amount, w.txHash])).to.deep.equal([[4n * E18, withdrawTx]]);
      // another account's withdrawals are not counted
      expect(await narrow.withdrawals(providers[1]!.address)).to.deep.equal([]);
    } finally {
      narrow.close();
    }
  });

  it("a chain that does not answer: the typed error in the answer, within the deadline; one read per TTL", async () => {
    await chain.interrupt();
    try {
      const started = Date.now();
      const view = await readEarnings(providerDir, new Date(), { timeoutMs: 2_000 });
      expect(Date.now() - started).to.be.below(10_000);
      expect(view.paid).to.equal(true);
      if (!view.paid) return;
      expect(view.error?.code).to.match(/^CHAIN_(UNREACHABLE|TIMEOUT)$/);
      expect(view.totalCreditedWei).to.equal(undefined);
    } finally {
      await chain.resume();
    }
    let reads = 0;
    let clock = 0;
    const cached = cachedEarnings(
      async () => {
        reads++;
        return { paid: false, note: "x" };
      },
      15_000,
      () => clock,
    );
    await Promise.all([cached(), cached(), cached()]);
    clock = 14_999;
    await cached();
    expect(reads).to.equal(1);
    clock = 15_000;
    await cached();
    expect(reads).to.equal(2);
  });
});
