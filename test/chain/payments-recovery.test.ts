/**
 * Issues 22 and 17 at the client level, on a real local chain (EDR on 127.0.0.1): a vanished requestor takes no
 * stake and the providers' keepers get themselves paid; a requestor that comes back asks on chain and pays;
 * event reads page through an RPC that refuses wide eth_getLogs ranges; approvals are exact.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { Contract, type JsonRpcProvider, Wallet } from "ethers";
import { testGLMAbi } from "../../src/chain/abi/test-glm.js";
import { deployEscrow, fundAccounts } from "../../src/chain/deploy.js";
import { ChainError } from "../../src/chain/errors.js";
import { EscrowClient } from "../../src/chain/escrow-client.js";
import { jobIdOf } from "../../src/chain/job.js";
import { jobToJson } from "../../src/chain/job-json.js";
import { type LocalChain, startLocalChain } from "../../src/chain/local-chain.js";
import { createRpcProvider } from "../../src/chain/rpc.js";
import { ProviderPayments, type SeatReport, settleSeats } from "../../src/provider/payments.js";
import { RequestorJournal } from "../../src/requestor/journal.js";
import { closeJournalled, EscrowPayments } from "../../src/requestor/payments.js";
import { startRpcProxy } from "../helpers/rpc-proxy.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const E18 = 10n ** 18n;
const hex32 = (n: number) => `0x${n.toString(16).padStart(64, "0")}`;
const QUBE = `aq1${"ab".repeat(32)}`;
const ROOT = hex32(0x600d);

describe("chain: payments when the requestor vanishes, paged logs, exact approvals", function () {
  this.timeout(180_000);
  let chain: LocalChain;
  let rpc: JsonRpcProvider;
  let escrow: string;
  let token: string;

  before(async () => {
    chain = await startLocalChain({ accounts: 6 });
    rpc = createRpcProvider(chain.rpcUrl, chain.chainId);
    const deployer = new Wallet(chain.accounts[0]!.privateKey, rpc);
    ({ escrow, token } = await deployEscrow(deployer));
    await fundAccounts(
      deployer,
      token,
      chain.accounts.map((a) => a.address),
      1000n * E18,
    );
  });
  after(async () => {
    rpc?.destroy();
    await chain?.stop();
  });

  const requestorPayments = () =>
    EscrowPayments.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[1]!.privateKey,
      escrow,
      marginS: 30, // three providers connect and commit one after another: over 10 s beside the heavy tests
      revealWindowS: 4,
      settleWindowS: 120,
    });
  const providerPayments = (i: number) =>
    ProviderPayments.connect(
      { rpcUrl: chain.rpcUrl, escrow, maxStake: (100n * E18).toString() },
      chain.accounts[i]!.privateKey,
      {
        dataDir: mkdtempSync(join(tmpdir(), `aq-seat-${i}-`)),
      },
    );

  /** Everything the escrow holds is owed to someone: its token balance equals the sum of credits not withdrawn. */
  async function expectConserved(client: EscrowClient) {
    let owed = 0n;
    for (const a of chain.accounts) owed += await client.balanceOf(a.address);
    const glm = new Contract(token, testGLMAbi, rpc);
    expect(await glm.getFunction("balanceOf")(escrow)).to.equal(owed);
  }

  async function keepUntilClosed(providers: ProviderPayments[], deadlineMs: number): Promise<SeatReport[]> {
    const seen: SeatReport[] = [];
    const until = Date.now() + deadlineMs;
    while (Date.now() < until) {
      for (const p of providers) seen.push(...(await p.keep()).filter((r) => r.action !== "wait"));
      if (providers.every((p) => p.seats!.open().length === 0)) return seen;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`seats still open: ${JSON.stringify(seen)}`);
  }

  it("a requestor that vanishes after the providers committed takes no stake: the keepers reveal, settle and are paid (issue 22)", async () => {
    const requestor = await requestorPayments();
    const providers = await Promise.all([2, 3, 4].map(providerPayments));
    try {
      const journal = new RequestorJournal(join(mkdtempSync(join(tmpdir(), "aq-journal-")), "journal.sqlite"));
      const { seat } = await requestor.lock(
        {
          qubeId: QUBE,
          payouts: providers.map((p) => p.client.address),
          price: 5n * E18,
          quorum: 2,
          wallTimeMs: 1000,
          commitGraceMs: 0,
        },
        { onPrepared: (s) => journal.escrowOpened(QUBE, s.jobId, jobToJson(s.job), null, new Date()) },
      );
      // journalled before the lock was sent, with the deterministic id
      expect(journal.escrowJobs({ openOnly: true }).map((e) => e.jobId)).to.deep.equal([seat.jobId]);
      const before = await Promise.all(providers.map((p) => p.client.tokenBalanceOf()));
      for (const [i, p] of providers.entries())
        await p.commit(seat.job, { outputsRoot: ROOT, salt: hex32(0x5a17 + i) });
      // exact approvals: each stake approved is consumed whole
      const glm = new Contract(token, testGLMAbi, rpc);
      for (const p of providers) expect(await glm.getFunction("allowance")(p.client.address, escrow)).to.equal(0n);
      expect(await glm.getFunction("allowance")(requestor.account, escrow)).to.equal(0n);

      // the requestor is gone: it never asks for the reveals, never settles
      const seen = await keepUntilClosed(providers, 60_000);
      expect(seen.filter((r) => r.action === "revealed")).to.have.length(3);
      expect(seen.filter((r) => r.action === "settled")).to.have.length.greaterThan(0);
      const credits = await Promise.all(providers.map((p) => p.client.credits()));
      for (const c of credits) {
        expect(c.filter((x) => x.jobId === seat.jobId).reduce((s, x) => s + x.amount, 0n)).to.equal(
          seat.job.price + seat.job.stake,
        );
      }
      for (const [i, p] of providers.entries()) {
        expect(await p.client.tokenBalanceOf()).to.equal(before[i]! - seat.job.stake);
      }
      // the requestor comes back with the same journal: nothing is left to take
      const reports = await closeJournalled(requestor, journal, journal.escrowJobs({ openOnly: true }), {
        maxWaitMs: 0,
        now: () => new Date(),
      });
      expect(reports.map((r) => r.status)).to.deep.equal(["settled"]);
      expect(journal.escrowJobs({ openOnly: true })).to.deep.equal([]);
      await expectConserved(requestor.escrowClient);
      journal.close();
    } finally {
      requestor.dispose();
      for (const p of providers) await p.close();
    }
  });

  it("a requestor that comes back without openings asks on chain; providers that answer are paid, none slashed", async () => {
    const requestor = await requestorPayments();
    const providers = await Promise.all([2, 3, 4].map(providerPayments));
    try {
      const { seat } = await requestor.lock({
        qubeId: QUBE,
        payouts: providers.map((p) => p.client.address),
        price: 5n * E18,
        quorum: 2,
        wallTimeMs: 1000,
        commitGraceMs: 0,
      });
      for (const [i, p] of providers.entries()) await p.commit(seat.job, { outputsRoot: ROOT, salt: hex32(0x77 + i) });
      // the requestor closes with no openings at all: it must ask on chain and wait a full window
      const closing = requestor.close([seat.job], new Map(), { maxWaitMs: 60_000 });
      await new Promise((r) => setTimeout(r, 1500));
      const keeping = keepUntilClosed(providers, 60_000);
      const [reports] = await Promise.all([closing, keeping]);
      const group = await requestor.escrowClient.jobGroup(seat.jobId);
      expect(group.revealRequestedAt > 0).to.equal(true);
      expect(reports[0]!.status).to.equal("settled");
      expect(reports[0]!.slashed).to.deep.equal([]);
      for (const p of providers) {
        const got = (await p.client.credits()).filter((c) => c.jobId === seat.jobId);
        expect(got.reduce((s, c) => s + c.amount, 0n)).to.equal(seat.job.price + seat.job.stake);
      }
      await expectConserved(requestor.escrowClient);
    } finally {
      requestor.dispose();
      for (const p of providers) await p.close();
    }
  });

  it("airqube provider settle by hand: providers whose agents are gone reveal and settle their seats", async () => {
    const requestor = await requestorPayments();
    const dirs = [2, 3, 4].map((i) => mkdtempSync(join(tmpdir(), `aq-seat-cli-${i}-`)));
    const keys = [2, 3, 4].map((i) => chain.accounts[i]!.privateKey);
    const { seat } = await requestor.lock({
      qubeId: QUBE,
      payouts: [2, 3, 4].map((i) => chain.accounts[i]!.address),
      price: 3n * E18,
      quorum: 2,
      wallTimeMs: 1000,
      commitGraceMs: 0,
    });
    try {
      // each agent committed (its seat written to seats.sqlite first), then stopped for good
      for (const [n, dir] of dirs.entries()) {
        const p = await ProviderPayments.connect(
          { rpcUrl: chain.rpcUrl, escrow, maxStake: (100n * E18).toString() },
          keys[n]!,
          {
            dataDir: dir,
          },
        );
        await p.commit(seat.job, { outputsRoot: ROOT, salt: hex32(0x5e7 + n) });
        await p.close();
        writeFileSync(join(dir, "payout.key"), `${keys[n]}\n`, { mode: 0o600 });
      }
      const cli = (dir: string) =>
        new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
          const child = spawn(
            process.execPath,
            [
              BIN,
              "provider",
              "settle",
              "--force",
              "--json",
              "--data-dir",
              dir,
              "--rpc-url",
              chain.rpcUrl,
              "--escrow",
              escrow,
            ],
            { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, AIRQUBE_LOG_LEVEL: "warn" } },
          );
          let out = "";
          let err = "";
          child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
          child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
          child.on("close", (code) => resolve({ code, out, err }));
        });
      // by hand, the first provider reveals on chain at once; the others' reveals (their agents' work) follow
      const first = await cli(dirs[0]!);
      expect(first.code, first.err).to.equal(0);
      expect((JSON.parse(first.out) as SeatReport[]).map((r) => r.action)).to.deep.equal(["revealed"]);
      for (const n of [1, 2]) {
        const reports = await settleSeats(dirs[n]!, {
          rpcUrl: chain.rpcUrl,
          escrow,
          force: true,
          privateKey: keys[n]!,
        });
        expect(reports.map((r) => r.action)).to.deep.equal(["revealed"]);
      }
      // past the reveal deadline the contract allows a provider to settle: by hand again
      await rpc.send("evm_increaseTime", [seat.job.revealDeadline - Math.floor(Date.now() / 1000) + 5]);
      await rpc.send("evm_mine", []);
      const second = await cli(dirs[0]!);
      expect(second.code, second.err).to.equal(0);
      expect((JSON.parse(second.out) as SeatReport[]).map((r) => r.action)).to.deep.equal(["settled"]);
      for (const i of [2, 3, 4]) {
        const credits = await requestor.escrowClient.credits(chain.accounts[i]!.address);
        expect(credits.filter((c) => c.jobId === seat.jobId).reduce((t, c) => t + c.amount, 0n)).to.equal(
          seat.job.price + seat.job.stake,
        );
      }
      await expectConserved(requestor.escrowClient);
    } finally {
      requestor.dispose();
    }
  });

  it("reads events from the deployment block in bounded ranges through an RPC that refuses wide ones", async () => {
    // move the chain well past the deployment block
    await rpc.send("hardhat_mine", ["0x400"]);
    const MAX = 100;
    const proxy = await startRpcProxy(chain.rpcUrl, { maxLogRange: MAX });
    const proxied = (range?: number) =>
      EscrowClient.connect({
        rpcUrl: proxy.url,
        privateKey: chain.accounts[2]!.privateKey,
        escrow,
        ...(range === undefined ? {} : { logRangeBlocks: range }),
      });
    const direct = await EscrowClient.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[2]!.privateKey,
      escrow,
    });
    const narrow = await proxied(MAX);
    // the default range (2 000 blocks) is wider than this endpoint accepts: the client narrows it by itself
    const wide = await proxied();
    try {
      const expected = await direct.credits();
      expect(expected.length).to.be.greaterThan(0);
      expect(narrow.deploymentBlock > 0).to.equal(true);
      expect(await narrow.credits()).to.deep.equal(expected);
      expect(proxy.logRanges.length).to.be.greaterThan(5);
      expect(proxy.logRanges[0]!.from).to.equal(narrow.deploymentBlock);
      expect(proxy.logRanges.filter((r) => r.refused)).to.deep.equal([]);
      proxy.logRanges.length = 0;
      expect(await wide.credits()).to.deep.equal(expected);
      const refused = proxy.logRanges.filter((r) => r.refused);
      expect(refused.length, "halved until accepted").to.be.within(1, 6);
      expect(proxy.logRanges[0]!.from).to.equal(wide.deploymentBlock);
      // once narrowed, later reads ask only for ranges the endpoint accepts
      proxy.logRanges.length = 0;
      expect(await wide.credits()).to.deep.equal(expected);
      expect(proxy.logRanges.filter((r) => r.refused)).to.deep.equal([]);
      // an endpoint that refuses even one block is a ChainError, not an endless retry
      proxy.hooks.maxLogRange = 0;
      const caught = await wide.credits().catch((e: unknown) => e);
      expect(caught).to.be.instanceOf(ChainError);
      expect((caught as ChainError).code).to.equal("CHAIN_INVALID_RESPONSE");
    } finally {
      direct.close();
      narrow.close();
      wide.close();
      await proxy.close();
    }
  });

  it("journals a lock before sending it and reconciles one that was never mined as abandoned", async () => {
    const requestor = await requestorPayments();
    const journal = new RequestorJournal(join(mkdtempSync(join(tmpdir(), "aq-journal-")), "journal.sqlite"));
    try {
      let caught: unknown;
      try {
        // a provider list the contract refuses (duplicate): the lock transaction reverts after being journalled
        await requestor.lock(
          {
            qubeId: QUBE,
            payouts: [chain.accounts[2]!.address, chain.accounts[2]!.address],
            price: E18,
            quorum: 2,
            wallTimeMs: 1000,
            commitGraceMs: 0,
          },
          { onPrepared: (s) => journal.escrowOpened(QUBE, s.jobId, jobToJson(s.job), null, new Date()) },
        );
      } catch (error) {
        caught = error;
      }
      expect(caught).to.be.instanceOf(ChainError);
      const [entry] = journal.escrowJobs({ openOnly: true });
      expect(entry?.lockTx).to.equal(null);
      // before its commit deadline it may still be mined: pending; after it: abandoned
      const early = await closeJournalled(requestor, journal, journal.escrowJobs({ openOnly: true }), {
        maxWaitMs: 0,
        now: () => new Date(),
      });
      expect(early.map((r) => r.status)).to.deep.equal(["pending"]);
      const job = (await import("../../src/chain/job-json.js")).jobFromJson(entry!.job as never);
      expect(jobIdOf(job)).to.equal(entry!.jobId);
      await rpc.send("evm_increaseTime", [job.commitDeadline - Math.floor(Date.now() / 1000) + 5]);
      await rpc.send("evm_mine", []);
      const late = await closeJournalled(requestor, journal, journal.escrowJobs({ openOnly: true }), {
        maxWaitMs: 0,
        now: () => new Date(),
      });
      expect(late.map((r) => r.status)).to.deep.equal(["abandoned"]);
      expect(journal.escrowJobs({ openOnly: true })).to.deep.equal([]);
    } finally {
      journal.close();
      requestor.dispose();
    }
  });
});
