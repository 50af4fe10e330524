import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import { Contract } from "ethers";
import { batchIdOf } from "../../src/chain/escrow-v2-batch.js";
import { EscrowV2Client } from "../../src/chain/escrow-v2-client.js";
import { batchOfJob } from "../../src/chain/escrow-v2-wire.js";
import { jobFromJson } from "../../src/chain/job-json.js";
import { createRpcProvider } from "../../src/chain/rpc.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { Identity } from "../../src/qube/index.js";
import { sealQube } from "../../src/requestor/draft.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { baseReport, EscrowPayments, type PaymentReport, type PaymentsPort } from "../../src/requestor/payments.js";
import { EscrowV2Payments, type EscrowV2PaymentsConfig } from "../../src/requestor/payments-v2.js";
import { Requestor, type RunEvent } from "../../src/requestor/requestor.js";
import { seededRandom } from "../../src/requestor/simulate.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const limits = { wallTimeMs: 10_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 };

const creditOf = (report: PaymentReport, account: string) =>
  report.credits
    .filter((c) => c.account.toLowerCase() === account.toLowerCase())
    .reduce((sum, c) => sum + BigInt(c.amount), 0n);

/**
 * Escrow v2 end to end (issue 18): real provider agents paid through AirqubeEscrowV2 on the devnet's Hardhat
 * chain (standing stakes deposited at start, `Accept` and `Commitments` signed over the exchange protocol), the
 * requestor opening one batch per round and releasing or settling it. Three v1 providers on the same chain give
 * the gas of the same qube through v1 in the same run.
 */
describe("payments v2: a paid qube through escrow v2 on a devnet @docker", function () {
  this.timeout(300_000);
  let devnet: Devnet;
  const gas: Record<string, { total: bigint; txs: number }> = {};

  before(async () => {
    devnet = await Devnet.start({
      providers: [
        { behaviour: "honest", escrowVersion: 2 },
        { behaviour: "honest", escrowVersion: 2 },
        { behaviour: "honest", escrowVersion: 2 },
        { behaviour: "lie", escrowVersion: 2 },
        { behaviour: "honest", escrowVersion: 1 },
        { behaviour: "honest", escrowVersion: 1 },
        { behaviour: "honest", escrowVersion: 1 },
      ],
      probeCache: PROBE_CACHE,
      chain: true,
      // seven agents start at once: on a loaded machine that takes longer than one
      readyTimeoutMs: 150_000,
    });
  });
  after(async () => {
    if (Object.keys(gas).length > 0) {
      const rows = Object.entries(gas).map(([k, v]) => `${k}: ${v.total} gas in ${v.txs} transactions`);
      process.stdout.write(`      gas of a paid k = 3 qube (same run): ${rows.join("; ")}\n`);
    }
    await devnet?.stop(3000);
  });

  const v2 = () => devnet.providers.filter((p) => p.index < 4);
  const v2Honest = () => v2().filter((p) => p.behaviour === "honest");
  const liar = () => devnet.providers.find((p) => p.behaviour === "lie")!;
  const v1Honest = () => devnet.providers.filter((p) => p.index >= 4);

  async function requestorWith(
    version: 1 | 2,
    needed: string[],
    windows?: Pick<EscrowV2PaymentsConfig, "revealWindowS" | "settleWindowS" | "marginS">,
    vanish = false,
  ) {
    const chain = devnet.chain!;
    const identity = Identity.fromSeed(randomBytes(32));
    // generous discovery and liveness deadlines: seven agents and a chain share a loaded machine
    const market = await Libp2pMarket.connect({
      identity,
      bootstrap: [devnet.bootstrap],
      discoveryMs: 20_000,
      livenessTimeoutMs: 15_000,
    });
    const target = { rpcUrl: chain.rpcUrl, privateKey: chain.requestor.privateKey };
    const payments: PaymentsPort =
      version === 2
        ? await EscrowV2Payments.connect({ ...target, escrow: chain.escrowV2, ...windows })
        : await EscrowPayments.connect({ ...target, escrow: chain.escrow });
    // the offers of the providers the test names known first (on a loaded machine this takes a while)
    const known = () => needed.every((id) => market.offers.list().some((o) => o.offer.provider === id));
    for (let i = 0; i < 600 && !known(); i++) {
      await market.offers.queryConnected();
      await new Promise((r) => setTimeout(r, 100));
    }
    const dataDir = tmp("aq-pay2-req-");
    // a requestor that vanishes after the result: it never closes its batches (the providers must)
    const vanishing: PaymentsPort = {
      escrowVersion: 2,
      chainId: payments.chainId,
      escrow: payments.escrow,
      account: payments.account,
      lock: (request, options) => payments.lock(request, options),
      close: async (jobs) => jobs.map((job) => ({ ...baseReport(job), status: "pending" as const })),
      dispose: () => payments.dispose(),
    };
    const requestor = new Requestor({
      market,
      dataDir,
      payments: vanish ? vanishing : payments,
    });
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
      seal,
      close: async () => {
        requestor.close();
        payments.dispose();
        await market.close();
      },
    };
  }

  /** Escrow v2 balances of accounts. */
  async function v2Balances(accounts: string[]): Promise<bigint[]> {
    const chain = devnet.chain!;
    const rpc = createRpcProvider(chain.rpcUrl, chain.chainId);
    try {
      const escrow = new Contract(chain.escrowV2, ["function balanceOf(address) view returns (uint256)"], rpc);
      return await Promise.all(accounts.map(async (a) => BigInt(await escrow.getFunction("balanceOf")(a))));
    } finally {
      rpc.destroy();
    }
  }

  /** Gas of every transaction mined while `work` ran (the devnet's chain serves this test alone). */
  async function gasOf<T>(work: () => Promise<T>): Promise<{ result: T; total: bigint; txs: number }> {
    const rpc = createRpcProvider(devnet.chain!.rpcUrl, devnet.chain!.chainId);
    try {
      const from = await rpc.getBlockNumber();
      const result = await work();
      const to = await rpc.getBlockNumber();
      let total = 0n;
      let txs = 0;
      for (let n = from + 1; n <= to; n++) {
        const block = await rpc.getBlock(n);
        total += block?.gasUsed ?? 0n;
        txs += block?.transactions.length ?? 0;
      }
      return { result, total, txs };
    } finally {
      rpc.destroy();
    }
  }

  it("opens a batch with the providers' signed Accept and releases it when all three agree; v1 for the same qube costs more gas", async () => {
    const client = await requestorWith(
      2,
      v2Honest().map((p) => p.peerId),
    );
    try {
      const honest = v2Honest();
      const allowed = new Set(honest.map((p) => p.peerId));
      const payouts = honest.map((p) => p.payout!);
      const requestorAccount = devnet.chain!.requestor.address;
      const before = await v2Balances([...payouts, requestorAccount]);
      const events: RunEvent[] = [];
      const { result, total, txs } = await gasOf(async () =>
        client.requestor.run(await client.seal("paid-v2"), {
          outputDir: tmp("aq-pay2-out-"),
          filter: (c) => allowed.has(c.id),
          onProgress: (e) => events.push(e),
        }),
      );
      const label = JSON.stringify({ f: result.failures, p: result.payments });
      expect(result.status, label).to.equal("verified");
      const types = events.map((e) => e.type);
      expect(types.indexOf("budgetLocked")).to.be.greaterThan(-1);
      expect(types.indexOf("budgetLocked")).to.be.lessThan(types.indexOf("qubeSent"));
      expect(result.payments, label).to.have.length(1);
      const report = result.payments![0]!;
      expect(report.status, label).to.equal("settled");
      expect(report.lockTx).to.match(/^0x[0-9a-f]{64}$/);
      expect(report.slashed).to.deep.equal([]);
      const price = BigInt(report.price);
      const stake = BigInt(report.stake);
      for (const p of payouts) expect(creditOf(report, p), label).to.equal(price + stake);
      // on chain: each provider's balance gained the price (its stake was locked at open and came back), the
      // requestor's deposit paid the three prices; nothing else moved
      const after = await v2Balances([...payouts, requestorAccount]);
      for (let i = 0; i < payouts.length; i++) expect(after[i]! - before[i]!).to.equal(price);
      expect(before[3]! - after[3]!).to.equal(3n * price);
      // the unanimous path: open and release, two transactions, no provider transaction
      expect(txs).to.equal(2);
      gas.v2 = { total, txs };
      expect(client.requestor.journal.escrowJobs({ qubeId: result.qubeId }).map((j) => j.state)).to.deep.equal([
        "settled",
      ]);
    } finally {
      await client.close();
    }

    // the same qube through escrow v1 on the same chain, for the gas
    const v1 = await requestorWith(
      1,
      v1Honest().map((p) => p.peerId),
    );
    try {
      const allowed = new Set(v1Honest().map((p) => p.peerId));
      const { result, total, txs } = await gasOf(async () =>
        v1.requestor.run(await v1.seal("paid-v1"), {
          outputDir: tmp("aq-pay2-out-"),
          filter: (c) => allowed.has(c.id),
        }),
      );
      expect(result.status).to.equal("verified");
      expect(result.payments!.map((p) => p.status)).to.deep.equal(["settled"]);
      gas.v1 = { total, txs };
    } finally {
      await v1.close();
    }
    expect(
      gas.v2!.total < gas.v1!.total / 2n,
      JSON.stringify(gas, (_, v) => String(v)),
    ).to.equal(true);
  });

  it("pays the honest pair and the tie-breaker of a round with a dissenter, and slashes the dissenter: the tie-breaker's batch joins the round's group and the group is settled at once", async () => {
    const client = await requestorWith(
      2,
      v2().map((p) => p.peerId),
    );
    try {
      const allowed = new Set(v2().map((p) => p.peerId));
      const everyone = v2().map((p) => p.payout!);
      const requestorAccount = devnet.chain!.requestor.address;
      const before = await v2Balances([...everyone, requestorAccount]);
      const result = await client.requestor.run(await client.seal("liar-v2"), {
        outputDir: tmp("aq-pay2-out-"),
        filter: (c) => allowed.has(c.id),
        prefer: [liar().peerId],
        random: seededRandom(3),
      });
      const label = JSON.stringify({ f: result.failures, r: result.reason, p: result.payments });
      expect(result.status, label).to.equal("verified");
      expect(result.dissenting).to.deep.equal([liar().peerId]);
      // the round (liar + 2 honest) and the tie-breaker's follow-up batch, settled together (one settleGroup)
      expect(
        result.payments!.map((p) => [p.providers.length, p.status]),
        label,
      ).to.deep.equal([
        [3, "settled"],
        [1, "settled"],
      ]);
      const [round, tieBreaker] = result.payments as [PaymentReport, PaymentReport];
      expect(round.settleTx).to.match(/^0x[0-9a-f]{64}$/);
      expect(tieBreaker.settleTx).to.equal(round.settleTx);
      const price = BigInt(round.price);
      const stake = BigInt(round.stake);
      const liarPayout = liar().payout!.toLowerCase();
      expect(round.providers).to.include(liarPayout);
      // the group's tally: R, R, W and the tie-breaker's R: 2 * 3 >= quorum 2 + 4 committed seats
      const share = stake / 3n;
      expect(
        round.slashed.map((x) => [x.account.toLowerCase(), x.amount]),
        label,
      ).to.deep.equal([[liarPayout, stake.toString()]]);
      const tie = tieBreaker.providers[0]!;
      expect(v2Honest().map((p) => p.payout!.toLowerCase())).to.include(tie.toLowerCase());
      for (const p of round.providers.filter((p) => p !== liarPayout))
        expect(creditOf(round, p), label).to.equal(price + stake + share);
      expect(creditOf(tieBreaker, tie), label).to.equal(price + stake + share);
      // on chain: the pair and the tie-breaker gained the price and a share of the dissenter's stake, the
      // dissenter lost its stake, the requestor paid three prices (the dissenter's came back, with the dust)
      const after = await v2Balances([...everyone, requestorAccount]);
      everyone.forEach((p, i) => {
        const gained = p.toLowerCase() === liarPayout ? -stake : price + share;
        expect(after[i]! - before[i]!, p).to.equal(gained);
      });
      expect(before[everyone.length]! - after[everyone.length]!).to.equal(3n * price - (stake - 3n * share));
    } finally {
      await client.close();
    }
  });

  it("pays the honest providers when the requestor vanishes after the result: their agents propose, add, reveal and finalize", async () => {
    // short windows (the contract sets no minimum): the commit deadline ~50 s after the lock, 15 s windows
    const windows = { revealWindowS: 15, settleWindowS: 60, marginS: 10 };
    const client = await requestorWith(
      2,
      v2Honest().map((p) => p.peerId),
      windows,
      true,
    );
    try {
      const honest = v2Honest();
      const allowed = new Set(honest.map((p) => p.peerId));
      const payouts = honest.map((p) => p.payout!);
      const requestorAccount = devnet.chain!.requestor.address;
      const before = await v2Balances([...payouts, requestorAccount]);
      const result = await client.requestor.run(await client.seal("vanish-v2"), {
        outputDir: tmp("aq-pay2-out-"),
        filter: (c) => allowed.has(c.id),
      });
      expect(result.status).to.equal("verified");
      expect(result.payments!.map((p) => p.status)).to.deep.equal(["pending"]);
      const [entry] = client.requestor.journal.escrowJobs({ qubeId: result.qubeId });
      const job = jobFromJson(entry!.job as Parameters<typeof jobFromJson>[0]);
      const batch = batchOfJob(job);
      const chain = devnet.chain!;
      const reader = await EscrowV2Client.connect({
        rpcUrl: chain.rpcUrl,
        privateKey: chain.requestor.privateKey,
        escrow: chain.escrowV2,
      });
      try {
        let status = "open";
        for (let i = 0; i < 360 && status !== "settled"; i++) {
          await new Promise((r) => setTimeout(r, 500));
          status = (await reader.batchState(batch)).status;
        }
        expect(status).to.equal("settled");
        const dispute = await reader.dispute(batch);
        const settled = await reader.settlements(batchIdOf(batch));
        const diffs = (await v2Balances([...payouts, requestorAccount])).map((b, i) => String(b - before[i]!));
        const label = JSON.stringify({
          proposer: dispute?.proposer,
          commitBy: dispute?.commitBy,
          added: dispute?.added,
          revealed: [...(dispute?.revealed.keys() ?? [])],
          settled: settled.map((e) => ({ winners: e.winners, slashed: String(e.slashed), block: e.blockNumber })),
          diffs,
          batch: { commit: batch.commitDeadline, reveal: batch.revealDeadline, final: batch.finalDeadline },
        });
        // a seat proposed (the requestor never did), every other seat added its column, all revealed on chain
        expect(
          payouts.map((p) => p.toLowerCase()),
          label,
        ).to.include(dispute!.proposer.toLowerCase());
        expect(dispute!.added, label).to.have.length(2);
        expect(dispute!.revealed.size, label).to.equal(3);
      } finally {
        reader.close();
      }
      const price = job.price;
      const after = await v2Balances([...payouts, requestorAccount]);
      for (let i = 0; i < payouts.length; i++) expect(after[i]! - before[i]!).to.equal(price);
      expect(before[3]! - after[3]!).to.equal(3n * price);
    } finally {
      await client.close();
    }
  });

  // last: it takes the liar's standing stake out of the escrow
  it("replaces a provider that admits the qube but will not sign its seat of the batch (its stake is gone), and locks with the others", async () => {
    const chain = devnet.chain!;
    const drained = await EscrowV2Client.connect({
      rpcUrl: chain.rpcUrl,
      escrow: chain.escrowV2,
      privateKey: (await readFile(join(liar().dataDir, "payout.key"), "utf8")).trim(),
    });
    try {
      await drained.withdraw(await drained.balance());
      expect(await drained.balance()).to.equal(0n);
    } finally {
      drained.close();
    }
    const client = await requestorWith(
      2,
      v2().map((p) => p.peerId),
    );
    try {
      const allowed = new Set(v2().map((p) => p.peerId));
      const events: RunEvent[] = [];
      const result = await client.requestor.run(await client.seal("stake-gone"), {
        outputDir: tmp("aq-pay2-out-"),
        filter: (c) => allowed.has(c.id),
        prefer: [liar().peerId],
        random: seededRandom(5),
        onProgress: (e) => events.push(e),
      });
      const label = JSON.stringify({ f: result.failures, r: result.reason, p: result.payments });
      expect(result.status, label).to.equal("verified");
      // it was asked (admitted), refused its Accept for want of a stake, and nothing was locked for it
      expect(
        result.failures.map((f) => [f.provider, f.code]),
        label,
      ).to.deep.equal([[liar().peerId, "STAKE_UNAVAILABLE"]]);
      expect(new Set(result.agreeing)).to.deep.equal(new Set(v2Honest().map((p) => p.peerId)));
      const locks = events.filter((e) => e.type === "budgetLocked");
      expect(locks, label).to.have.length(1);
      expect((locks[0] as { providers: string[] }).providers).not.to.include(liar().peerId);
      expect(
        result.payments!.map((p) => p.status),
        label,
      ).to.deep.equal(["settled"]);
    } finally {
      await client.close();
    }
  });
});
