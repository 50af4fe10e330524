import { expect } from "chai";
import { type JsonRpcProvider, Wallet } from "ethers";
import { deployEscrow, fundAccounts } from "../../src/chain/deploy.js";
import { ChainError } from "../../src/chain/errors.js";
import { EscrowClient, type OwnOpening } from "../../src/chain/escrow-client.js";
import { budgetOf, type EscrowJob, jobIdOf, parseEscrowJob } from "../../src/chain/job.js";
import { type LocalChain, localAccounts, startLocalChain } from "../../src/chain/local-chain.js";
import { createRpcProvider } from "../../src/chain/rpc.js";
import { UserError } from "../../src/qube/errors.js";

const E18 = 10n ** 18n;
const hex32 = (n: number) => `0x${n.toString(16).padStart(64, "0")}`;

describe("chain: local chain and EscrowClient (real EDR chain on 127.0.0.1)", function () {
  this.timeout(120_000);
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let escrow: string;
  let token: string;
  let requestor: EscrowClient;
  let providers: EscrowClient[];
  let nonce = 0n;

  before(async () => {
    chain = await startLocalChain({ accounts: 6 });
    provider = createRpcProvider(chain.rpcUrl, chain.chainId);
    const deployer = new Wallet(chain.accounts[0]!.privateKey, provider);
    ({ escrow, token } = await deployEscrow(deployer));
    await fundAccounts(
      deployer,
      token,
      chain.accounts.map((a) => a.address),
      1000n * E18,
    );
    const connect = (i: number) =>
      EscrowClient.connect({ rpcUrl: chain.rpcUrl, privateKey: chain.accounts[i]!.privateKey, escrow });
    requestor = await connect(1);
    providers = await Promise.all([2, 3, 4].map(connect));
  });

  after(async () => {
    for (const c of [requestor, ...(providers ?? [])]) c?.close();
    provider?.destroy();
    await chain?.stop();
  });

  async function newJob(overrides: Partial<EscrowJob> = {}): Promise<EscrowJob> {
    const now = (await provider.getBlock("latest"))!.timestamp;
    return {
      requestor: requestor.address,
      qubeId: hex32(0xc0be),
      nonce: nonce++,
      providers: providers.map((p) => p.address),
      price: 10n * E18,
      stake: 2n * E18,
      quorum: 2,
      commitDeadline: now + 100,
      revealDeadline: now + 200,
      finalDeadline: now + 300,
      ...overrides,
    };
  }

  it("serves well-known test accounts on 127.0.0.1", async () => {
    expect(chain.rpcUrl).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(chain.accounts[0]!.address).to.equal(localAccounts(1)[0]!.address);
    expect(chain.accounts[0]!.address).to.equal("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    expect(await provider.getBalance(chain.accounts[5]!.address)).to.equal(10_000n * E18);
    expect(requestor.chainId).to.equal(31337);
    expect(requestor.tokenAddress).to.equal(token);
  });

  it("runs a job end to end: lock, commit, settle on agreement, withdraw", async () => {
    const job = await newJob();
    const before = await providers[0]!.tokenBalanceOf();
    const { jobId, gasUsed } = await requestor.openJob(job);
    expect(jobId).to.equal(jobIdOf(job));
    expect(gasUsed > 0n).to.equal(true);
    expect(await requestor.jobState(jobId)).to.deep.equal({ status: "open", committed: [], revealed: [] });
    const reveals = new Map<string, OwnOpening>();
    for (const [i, p] of providers.entries()) {
      const own = { outputsRoot: hex32(0x600d), salt: hex32(100 + i) };
      reveals.set(p.address, own);
      await p.commit(job, own);
    }
    expect((await requestor.jobState(jobId)).committed).to.deep.equal([0, 1, 2]);
    const settled = await requestor.settle(job, reveals);
    expect(settled.hash).to.match(/^0x[0-9a-f]{64}$/);
    expect(await requestor.jobState(jobId)).to.deep.include({ status: "settled" });
    // Everyone agreed: price + stake each; the whole budget went to the providers. (A dissent among three needs
    // a tie-breaker since issue 22: see test/contracts/groups.test.ts.)
    expect(await providers[0]!.balanceOf()).to.equal(10n * E18 + 2n * E18);
    expect(await requestor.balanceOf()).to.equal(0n);
    const credits = await providers[0]!.credits();
    expect(credits.map((c) => [c.jobId, c.amount])).to.deep.equal([[jobId, 12n * E18]]);
    const { amount } = await providers[0]!.withdraw();
    expect(amount).to.equal(12n * E18);
    expect(await providers[0]!.tokenBalanceOf()).to.equal(before - 2n * E18 + 12n * E18);
    await providers[1]!.withdraw();
    await providers[2]!.withdraw();
  });

  it("decodes custom errors of reverted transactions into ChainError", async () => {
    const job = await newJob();
    await requestor.openJob(job);
    const own = { outputsRoot: hex32(1), salt: hex32(2) };
    await providers[0]!.commit(job, own);
    const error = await providers[0]!.commit(job, own).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(ChainError);
    const e = error as ChainError;
    expect(e.code).to.equal("CHAIN_REVERTED");
    expect(e.fault).to.equal("user");
    expect(e.errorName).to.equal("AirqubeEscrowAlreadyCommitted");
    expect(e.errorArgs).to.deep.equal([jobIdOf(job), providers[0]!.address]);
    expect(e.shortMessage).to.equal("Transaction reverted: commit");
    const early = (await requestor.settle(job, new Map()).catch((x: unknown) => x)) as ChainError;
    expect([early.errorName, early.errorArgs[1]]).to.deep.equal(["AirqubeEscrowTooEarly", BigInt(job.commitDeadline)]);
    const nothing = (await providers[2]!.withdraw().catch((x: unknown) => x)) as ChainError;
    expect(nothing.errorName).to.equal("AirqubeEscrowNothingToWithdraw");
  });

  it("lets a provider reveal on chain and settle itself when the requestor goes silent", async () => {
    const job = await newJob();
    await requestor.openJob(job);
    const mine = { outputsRoot: hex32(0x600d), salt: hex32(7) };
    for (const [i, p] of providers.entries()) {
      await p.commit(job, i === 0 ? mine : { outputsRoot: hex32(0x600d), salt: hex32(8 + i) });
    }
    await providers[0]!.reveal(job, new Map([[providers[0]!.address, mine]]));
    expect((await requestor.jobState(jobIdOf(job))).revealed).to.deep.equal([0]);
    await provider.send("evm_increaseTime", [250]);
    await provider.send("evm_mine", []);
    await providers[0]!.settle(job, new Map());
    // Nobody else revealed and nobody was asked on chain: no quorum, every stake goes back (issue 22: it was
    // slashed to the requestor); the requestor gets its budget back.
    for (const p of providers) expect(await p.balanceOf()).to.equal(2n * E18);
    expect(await requestor.balanceOf()).to.equal(budgetOf(job));
  });

  it("fails fast with CHAIN_UNREACHABLE when the chain is down, and CHAIN_INVALID_RESPONSE without a contract", async () => {
    const [key] = localAccounts(1);
    const down = await EscrowClient.connect(
      { rpcUrl: "http://127.0.0.1:9", privateKey: key!.privateKey, escrow },
      { timeoutMs: 5_000 },
    ).catch((e: unknown) => e);
    expect(down).to.be.instanceOf(ChainError);
    expect((down as ChainError).code).to.equal("CHAIN_UNREACHABLE");
    expect((down as ChainError).fault).to.equal("platform");
    const nowhere = await EscrowClient.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: key!.privateKey,
      escrow: "0x000000000000000000000000000000000000dEaD",
    }).catch((e: unknown) => e);
    expect((nowhere as ChainError).code).to.equal("CHAIN_INVALID_RESPONSE");
  });

  it("reports CHAIN_TIMEOUT when aborted", async () => {
    const controller = new AbortController();
    controller.abort();
    const error = (await requestor
      .balanceOf(undefined, { signal: controller.signal })
      .catch((e: unknown) => e)) as ChainError;
    expect(error.code).to.equal("CHAIN_TIMEOUT");
  });

  it("rejects an invalid job before sending anything", async () => {
    expect(() => parseEscrowJob({})).to.throw(UserError);
    const job = await newJob({ qubeId: "0x1234" });
    const error = await requestor.openJob(job).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(UserError);
    expect((error as UserError).code).to.equal("ESCROW_JOB_INVALID");
  });

  it("a stopped chain makes calls fail with CHAIN_UNREACHABLE", async () => {
    const other = await startLocalChain({ accounts: 2 });
    const w = new Wallet(other.accounts[0]!.privateKey, createRpcProvider(other.rpcUrl, other.chainId));
    const d = await deployEscrow(w);
    const c = await EscrowClient.connect({
      rpcUrl: other.rpcUrl,
      privateKey: other.accounts[1]!.privateKey,
      escrow: d.escrow,
    });
    await other.stop();
    await other.stop(); // idempotent
    const error = (await c.balanceOf(undefined, { timeoutMs: 5_000 }).catch((e: unknown) => e)) as ChainError;
    c.close();
    (w.provider as JsonRpcProvider).destroy();
    expect(error).to.be.instanceOf(ChainError);
    expect(error.code).to.equal("CHAIN_UNREACHABLE");
  });
});
