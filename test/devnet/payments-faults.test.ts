/**
 * Issue 22 on a devnet with a chain (deadlines shortened for the test): a requestor killed after every provider
 * received and committed to the qube takes no stake (the providers' agents reveal on chain and settle by
 * themselves, and a re-run with the same data directory finds nothing to take); and a chain that dies mid-qube
 * is reported as CHAIN_UNREACHABLE, not NO_PROVIDER.
 */
import { randomBytes } from "node:crypto";
import { expect } from "chai";
import { ChainError } from "../../src/chain/errors.js";
import { EscrowClient } from "../../src/chain/escrow-client.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { Identity } from "../../src/qube/index.js";
import { sealQube } from "../../src/requestor/draft.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { EscrowPayments } from "../../src/requestor/payments.js";
import { Requestor, type RunEvent } from "../../src/requestor/requestor.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const limits = { wallTimeMs: 5_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 };

describe("payments: faults on a devnet with a chain @docker", function () {
  this.timeout(300_000);
  let devnet: Devnet;

  before(async () => {
    devnet = await Devnet.start({
      providers: ["honest", "honest", "honest"].map((behaviour) => ({ behaviour })),
      probeCache: PROBE_CACHE,
      chain: true,
    });
  });
  after(async () => {
    await devnet?.stop(3000);
  });

  async function requestorWith(dataDir: string) {
    const chain = devnet.chain!;
    const identity = Identity.fromSeed(randomBytes(32));
    const market = await Libp2pMarket.connect({ identity, bootstrap: [devnet.bootstrap] });
    const payments = await EscrowPayments.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.requestor.privateKey,
      escrow: chain.escrow,
      marginS: 10,
      revealWindowS: 8,
      settleWindowS: 300,
    });
    for (let i = 0; i < 100 && market.offers.list().length < devnet.providers.length; i++) {
      await market.offers.queryConnected();
      await new Promise((r) => setTimeout(r, 100));
    }
    const requestor = new Requestor({ market, dataDir, payments, commitGraceMs: 5_000 });
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

  it("a requestor killed after every provider committed takes no stake; the providers get themselves paid", async () => {
    const dataDir = tmp("aq-pay-kill-");
    const first = await requestorWith(dataDir);
    const kill = new AbortController();
    const committed = new Set<string>();
    let jobId = "";
    try {
      const run = first.requestor.run(await first.seal(`kill-${Date.now()}`), {
        outputDir: tmp("aq-pay-out-"),
        signal: kill.signal,
        onProgress: (e: RunEvent) => {
          if (e.type === "budgetLocked") jobId = e.jobId;
          if (e.type === "qubeCommitted") committed.add(e.provider);
          // killed once every provider holds the qube and committed, before any reveal was asked
          if (committed.size === 3) kill.abort(new Error("killed"));
        },
      });
      await run.then(
        () => expect.fail("the run should have been killed"),
        () => undefined,
      );
    } finally {
      await first.close();
    }
    expect(committed.size).to.equal(3);
    const chain = devnet.chain!;
    const watcher = await EscrowClient.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.requestor.privateKey,
      escrow: chain.escrow,
    });
    try {
      // the agents reveal on chain and settle once the requestor stayed silent past half the reveal window
      const until = Date.now() + 120_000;
      while ((await watcher.jobState(jobId)).status === "open" && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 1000));
      }
      const state = await watcher.jobState(jobId);
      expect(state.status).to.equal("settled");
      expect(state.revealed).to.deep.equal([0, 1, 2]);
      for (const p of devnet.providers) {
        const credits = (await watcher.credits(p.payout!)).filter((c) => c.jobId === jobId);
        expect(credits.length, p.payout).to.equal(1);
        expect(credits[0]!.amount > 0n).to.equal(true);
      }
      // the requestor comes back with the same data directory: the job is settled, it gets only its refund
      const again = await requestorWith(dataDir);
      try {
        const reports = await again.requestor.recoverPayments();
        expect(reports.map((r) => r.status)).to.deep.equal(["settled"]);
        const requestorCredits = (await watcher.credits()).filter((c) => c.jobId === jobId);
        const providerCredits = await Promise.all(
          devnet.providers.map(async (p) => (await watcher.credits(p.payout!)).filter((c) => c.jobId === jobId)),
        );
        const paid = providerCredits.flat().reduce((s, c) => s + c.amount, 0n);
        const refunded = requestorCredits.reduce((s, c) => s + c.amount, 0n);
        // budget + the three stakes, all credited, none of the stakes to the requestor
        expect(refunded < paid / 3n).to.equal(true);
      } finally {
        await again.close();
      }
    } finally {
      watcher.close();
    }
  });

  it("reports CHAIN_UNREACHABLE, not NO_PROVIDER, when the chain dies mid-qube", async () => {
    const client = await requestorWith(tmp("aq-pay-chaindown-"));
    try {
      let caught: unknown;
      try {
        await client.requestor.run(await client.seal(`down-${Date.now()}`), {
          outputDir: tmp("aq-pay-out-"),
          onProgress: (e) => {
            // the budget is locked and the qube on its way: the chain dies now
            if (e.type === "budgetLocked") void devnet.chain!.stop();
          },
        });
      } catch (error) {
        caught = error;
      }
      expect(caught).to.be.instanceOf(ChainError);
      expect((caught as ChainError).code).to.be.oneOf(["CHAIN_UNREACHABLE", "CHAIN_TIMEOUT"]);
    } finally {
      await client.close();
    }
  });
});
