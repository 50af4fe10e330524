import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { ChainError } from "../../src/chain/errors.js";
import { jobIdOf, parseEscrowJob } from "../../src/chain/job.js";
import { qubeIdToBytes32 } from "../../src/chain/qube-ids.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { JobLedger } from "../../src/provider/ledger.js";
import { Identity } from "../../src/qube/index.js";
import { sealQube } from "../../src/requestor/draft.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { EscrowPayments, type PaymentReport, type PaymentsPort } from "../../src/requestor/payments.js";
import { Requestor, type RunEvent } from "../../src/requestor/requestor.js";
import { seededRandom } from "../../src/requestor/simulate.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const limits = { wallTimeMs: 10_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 };

const creditOf = (report: PaymentReport, account: string) =>
  report.credits
    .filter((c) => c.account.toLowerCase() === account.toLowerCase())
    .reduce((sum, c) => sum + BigInt(c.amount), 0n);

describe("payments: pay on agreement on a devnet with a chain @docker", function () {
  this.timeout(300_000);
  let devnet: Devnet;
  const behaviours = ["honest", "honest", "honest", "lie"];

  before(async () => {
    devnet = await Devnet.start({
      providers: behaviours.map((behaviour) => ({ behaviour })),
      probeCache: PROBE_CACHE,
      chain: true,
    });
  });
  after(async () => {
    await devnet?.stop(3000);
  });

  async function requestorWith(dataDir = tmp("aq-pay-req-"), wrap?: (p: PaymentsPort) => PaymentsPort) {
    const chain = devnet.chain!;
    const identity = Identity.fromSeed(randomBytes(32));
    const market = await Libp2pMarket.connect({ identity, bootstrap: [devnet.bootstrap] });
    const payments = await EscrowPayments.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.requestor.privateKey,
      escrow: chain.escrow,
    });
    // every provider's offer known first, so that a round is never short of the providers a test names
    for (let i = 0; i < 100 && market.offers.list().length < devnet.providers.length; i++) {
      await market.offers.queryConnected();
      await new Promise((r) => setTimeout(r, 100));
    }
    const requestor = new Requestor({ market, dataDir, payments: wrap ? wrap(payments) : payments });
    const seal = (text: string) =>
      sealQube(
        {
          image: "airqube/busybox:latest",
          command: ["sh", "-c", `echo ${text} > /output/result`],
          outputs: ["result"],
          limits,
          redundancy: { mode: "fixed", k: 3, quorum: 2 },
        },
        identity,
      );
    return {
      requestor,
      payments,
      dataDir,
      seal,
      close: async () => {
        requestor.close();
        payments.dispose();
        await market.close();
      },
    };
  }

  const honest = () => devnet.providers.filter((p) => p.behaviour === "honest");
  const liar = () => devnet.providers.find((p) => p.behaviour === "lie")!;

  it("locks the budget before dispatch, and settles a verified k = 3 qube: price + stake to each, the rest refunded", async () => {
    const client = await requestorWith();
    try {
      const allowed = new Set(honest().map((p) => p.peerId));
      const events: RunEvent[] = [];
      const requestorBefore = await client.payments.escrowClient.balanceOf();
      const result = await client.requestor.run(await client.seal("paid"), {
        outputDir: tmp("aq-pay-out-"),
        filter: (c) => allowed.has(c.id),
        onProgress: (e) => events.push(e),
      });
      expect(result.status, JSON.stringify({ f: result.failures, p: result.payments })).to.equal("verified");
      const types = events.map((e) => e.type);
      expect(types.indexOf("budgetLocked")).to.be.lessThan(types.indexOf("qubeSent"));
      expect(result.payments).to.have.length(1);
      const report = result.payments![0]!;
      expect(report.status).to.equal("settled");
      expect(report.settleTx).to.match(/^0x[0-9a-f]{64}$/);
      expect(report.lockTx).to.match(/^0x[0-9a-f]{64}$/);
      const price = BigInt(report.price);
      const stake = BigInt(report.stake);
      expect(price > 0n).to.equal(true);
      const label = JSON.stringify({ f: result.failures, p: result.payments });
      for (const p of honest()) expect(creditOf(report, p.payout!), label).to.equal(price + stake);
      expect(report.slashed).to.deep.equal([]);
      // every seat agreed: the whole budget went to the providers; the requestor's refund (if any) is the rest
      const refund = creditOf(report, devnet.chain!.requestor.address);
      expect(refund).to.equal(BigInt(report.budget) - 3n * price);
      expect(await client.payments.escrowClient.balanceOf()).to.equal(requestorBefore + refund);
      // the journal keeps the job settled
      const journalled = client.requestor.journal.escrowJobs({ qubeId: result.qubeId });
      expect(journalled.map((j) => j.state)).to.deep.equal(["settled"]);

      // a provider sees its earnings and withdraws them
      const dataDir = honest()[0]!.dataDir;
      // (asynchronously: the chain runs in this process)
      const run = async (args: string[]) => {
        const out = await promisify(execFile)(process.execPath, [
          BIN,
          "provider",
          "earnings",
          "--data-dir",
          dataDir,
          "--json",
          ...args,
        ]);
        return JSON.parse(out.stdout) as { creditedWei: string; withdrawal?: { amountWei: string; tx: string } };
      };
      const seen = await run([]);
      expect(BigInt(seen.creditedWei) >= price + stake).to.equal(true);
      const withdrawn = await run(["--withdraw"]);
      expect(withdrawn.withdrawal?.amountWei).to.equal(seen.creditedWei);
      expect(withdrawn.creditedWei).to.equal("0");
    } finally {
      await client.close();
    }
  });

  it("takes the stake of a lying provider in the round and gives it to the agreeing ones", async () => {
    const client = await requestorWith();
    try {
      const result = await client.requestor.run(await client.seal("liar"), {
        outputDir: tmp("aq-pay-out-"),
        prefer: [liar().peerId],
        random: seededRandom(3),
      });
      const label = JSON.stringify({ f: result.failures, r: result.reason, p: result.payments });
      expect(result.status, label).to.equal("verified");
      expect(result.dissenting).to.deep.equal([liar().peerId]);
      // the round (liar + 2 honest) is the leader job; the tie-breaker that outvotes the dissent is its
      // follow-up, and the two are settled as one group (issue 22: payment follows the qube's decision)
      expect(result.payments!.map((p) => [p.providers.length, p.status])).to.deep.equal([
        [3, "settled"],
        [1, "settled"],
      ]);
      expect(result.payments![0]!.settleTx).to.equal(result.payments![1]!.settleTx);
      const [round, tieBreaker] = result.payments as [PaymentReport, PaymentReport];
      const price = BigInt(round.price);
      const stake = BigInt(round.stake);
      expect(round.providers).to.include(liar().payout!.toLowerCase());
      expect(round.slashed).to.deep.equal([{ account: liar().payout!, amount: stake.toString() }]);
      expect(creditOf(round, liar().payout!)).to.equal(0n);
      const agreeing = round.providers.filter((p) => p !== liar().payout!.toLowerCase());
      // the liar's stake is shared by the group's three winners (the tie-breaker among them); dust to the requestor
      const share = stake / 3n;
      for (const p of agreeing) expect(creditOf(round, p)).to.equal(price + stake + share);
      expect(creditOf(round, devnet.chain!.requestor.address)).to.equal(price + (stake - 3n * share));
      expect(creditOf(tieBreaker, tieBreaker.providers[0]!)).to.equal(BigInt(tieBreaker.price) + stake + share);
    } finally {
      await client.close();
    }
  });

  it("settles on restart when the requestor stopped between the result and the settlement", async () => {
    const dataDir = tmp("aq-pay-restart-");
    const crashing = await requestorWith(dataDir, (real) => ({
      chainId: real.chainId,
      escrow: real.escrow,
      account: real.account,
      lock: (request, options) => real.lock(request, options),
      close: async () => {
        throw new ChainError("CHAIN_UNREACHABLE", "The requestor stopped before settling");
      },
      dispose: () => real.dispose(),
    }));
    const allowed = new Set(honest().map((p) => p.peerId));
    let qubeId: string;
    try {
      const result = await crashing.requestor.run(await crashing.seal("restart"), {
        outputDir: tmp("aq-pay-out-"),
        filter: (c) => allowed.has(c.id),
      });
      expect(result.status).to.equal("verified");
      qubeId = result.qubeId;
      expect(result.payments!.map((p) => [p.status, p.error?.code])).to.deep.equal([["pending", "CHAIN_UNREACHABLE"]]);
    } finally {
      await crashing.close();
    }
    const restarted = await requestorWith(dataDir);
    try {
      expect(restarted.requestor.journal.escrowJobs({ openOnly: true })).to.have.length(1);
      const reports = await restarted.requestor.recoverPayments();
      expect(reports.map((r) => r.status)).to.deep.equal(["settled"]);
      const price = BigInt(reports[0]!.price);
      const stake = BigInt(reports[0]!.stake);
      for (const p of honest()) expect(creditOf(reports[0]!, p.payout!)).to.equal(price + stake);
      expect(restarted.requestor.journal.escrowJobs({ qubeId, openOnly: true })).to.deep.equal([]);
      expect(await restarted.requestor.recoverPayments()).to.deep.equal([]);
    } finally {
      await restarted.close();
    }
  });

  it("providers refuse a qube whose escrow job is missing or not open on chain", async () => {
    const unopened = await requestorWith(tmp("aq-pay-fake-"), (real) => ({
      chainId: real.chainId,
      escrow: real.escrow,
      account: real.account,
      // a job that was never opened: its budget is not locked
      lock: async (request) => {
        const now = Math.floor(Date.now() / 1000);
        const job = parseEscrowJob({
          requestor: real.account,
          qubeId: qubeIdToBytes32(request.qubeId),
          nonce: 1n,
          providers: request.payouts,
          price: request.price,
          stake: request.price,
          quorum: request.quorum,
          commitDeadline: now + 600,
          revealDeadline: now + 700,
          finalDeadline: now + 800,
        });
        return { seat: { jobId: jobIdOf(job), job, chainId: real.chainId, escrow: real.escrow }, txHash: "0x" };
      },
      close: (job, openings, options) => real.close(job, openings, options),
      dispose: () => real.dispose(),
    }));
    try {
      const allowed = new Set(honest().map((p) => p.peerId));
      const failed: string[] = [];
      const error = await unopened.requestor
        .run(await unopened.seal("unfunded"), {
          outputDir: tmp("aq-pay-out-"),
          filter: (c) => allowed.has(c.id),
          onProgress: (e) => e.type === "providerFailed" && failed.push(`${e.message}: ${e.details ?? ""}`),
        })
        .then(
          () => undefined,
          (e: unknown) => e as Error,
        );
      expect(error?.message).to.match(/No provider could run the qube/);
      expect(failed).to.have.length(3);
      for (const message of failed)
        expect(message).to.match(/ESCROW_NOT_OPEN: escrow job 0x[0-9a-f]{64} is not opened/);
    } finally {
      await unopened.close();
    }
    // a requestor that does not pay at all
    const identity = Identity.fromSeed(randomBytes(32));
    const market = await Libp2pMarket.connect({ identity, bootstrap: [devnet.bootstrap] });
    const unpaid = new Requestor({ market, dataDir: tmp("aq-pay-unpaid-") });
    try {
      const qube = await sealQube(
        {
          image: "airqube/busybox:latest",
          command: ["sh", "-c", "echo free > /output/result"],
          outputs: ["result"],
          limits,
          redundancy: { mode: "fixed", k: 1, quorum: 1 },
        },
        identity,
      );
      const failed: string[] = [];
      const error = await unpaid
        .run(qube, {
          outputDir: tmp("aq-pay-out-"),
          onProgress: (e) => e.type === "providerFailed" && failed.push(`${e.message}: ${e.details ?? ""}`),
        })
        .then(
          () => undefined,
          (e: unknown) => e as Error,
        );
      expect(error?.message).to.match(/No provider could run the qube/);
      expect(failed.length).to.be.greaterThan(0);
      for (const message of failed) expect(message).to.match(/ESCROW_REQUIRED: this provider works paid only/);
    } finally {
      unpaid.close();
      await market.close();
    }
  });

  it("fails with a clear error and dispatches nothing when the chain is down before dispatch", async () => {
    const client = await requestorWith();
    try {
      const qube = await client.seal("unpaid");
      await devnet.chain!.stop();
      const events: RunEvent[] = [];
      let caught: unknown;
      try {
        await client.requestor.run(qube, { outputDir: tmp("aq-pay-out-"), onProgress: (e) => events.push(e) });
      } catch (error) {
        caught = error;
      }
      expect(caught).to.be.instanceOf(ChainError);
      expect((caught as ChainError).code).to.equal("CHAIN_UNREACHABLE");
      expect((caught as ChainError).message).to.match(/unreachable: open the job/);
      expect(events.filter((e) => ["agreementSigned", "qubeSent", "budgetLocked"].includes(e.type))).to.deep.equal([]);
      for (const p of devnet.providers) {
        const ledger = new JobLedger(join(p.dataDir, "ledger.sqlite"));
        expect(ledger.recent(50).filter((j) => j.qubeId === qube.spec.id)).to.deep.equal([]);
        ledger.close();
      }
      expect(client.requestor.journal.get(qube.spec.id)?.dispatches).to.deep.equal([]);
    } finally {
      await client.close();
    }
  });
});
