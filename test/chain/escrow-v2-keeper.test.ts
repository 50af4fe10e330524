import { randomBytes } from "node:crypto";
import { expect } from "chai";
import type { JsonRpcProvider } from "ethers";
import { batchIdOf } from "../../src/chain/escrow-v2-batch.js";
import { EscrowV2Client } from "../../src/chain/escrow-v2-client.js";
import { batchOfJob, wireOfJob } from "../../src/chain/escrow-v2-wire.js";
import type { EscrowJob } from "../../src/chain/job.js";
import type { LocalChain } from "../../src/chain/local-chain.js";
import { ProviderPaymentsV2, type SeatV2Report } from "../../src/provider/payments-v2.js";
import { tmp } from "../helpers/network.js";
import { advance, E18, startV2Chain, type V2Chain } from "./v2-chain.js";

const hex32 = () => `0x${randomBytes(32).toString("hex")}`;

/**
 * The escrow v2 keeper of three providers on a real local chain (time moved with `evm_increaseTime`): a
 * requestor opens a batch with their `Accept` and vanishes; the seats' keepers propose, add their columns,
 * reveal and finalize, and every seat is paid.
 */
describe("provider: escrow v2 keeper when the requestor vanishes (real EDR chain)", function () {
  this.timeout(120_000);
  let fixture: V2Chain;
  let chain: LocalChain;
  let rpc: JsonRpcProvider;
  let requestor: EscrowV2Client;
  let seats: ProviderPaymentsV2[];

  before(async () => {
    fixture = await startV2Chain(6);
    ({ chain, rpc } = fixture);
    const escrow = fixture.escrow;
    requestor = await EscrowV2Client.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[1]!.privateKey,
      escrow,
    });
    await requestor.deposit(100n * E18);
    seats = await Promise.all(
      [2, 3, 4, 5].map((i) =>
        ProviderPaymentsV2.connect(
          { rpcUrl: chain.rpcUrl, escrow, maxStake: String(10n * E18), stakeDeposit: String(20n * E18) },
          chain.accounts[i]!.privateKey,
          { dataDir: tmp("aq-keeper-v2-") },
        ),
      ),
    );
    for (const seat of seats) expect(await seat.ensureStake()).to.equal(20n * E18);
    // a second start deposits nothing: the standing stake is there
    expect(await seats[0]!.ensureStake()).to.equal(0n);
  });

  after(async () => {
    for (const seat of seats ?? []) await seat.close();
    requestor?.close();
    await fixture?.stop();
  });

  /**
   * Every seat is done with the settled batches `ids`: a seat whose keeper ran before the settlement in the last
   * pass learns of it on its next pass (`was-settled`; the seats' order in a pass decides which seats), and after
   * that pass no seat has anything left to do.
   */
  const expectClosed = async (ids: Set<string>, label: string) => {
    for (const seat of seats)
      for (const r of await seat.keep()) {
        expect(r.action, label).to.equal("was-settled");
        expect(ids.has(r.batchId), r.batchId).to.equal(true);
      }
    for (const seat of seats) expect(await seat.keep(), label).to.deep.equal([]);
  };

  it("proposes, adds, reveals and finalizes by itself: every seat paid, no transaction from the requestor after open", async () => {
    const now = (await rpc.getBlock("latest"))!.timestamp;
    const qube = `aq1${randomBytes(32).toString("hex")}`;
    const job: EscrowJob = {
      requestor: requestor.address,
      qubeId: `0x${qube.slice(3)}`,
      nonce: BigInt(now) * 256n,
      providers: seats.slice(0, 3).map((s) => s.client.address),
      price: 2n * E18,
      stake: E18,
      quorum: 2,
      commitDeadline: now + 100,
      revealDeadline: now + 130,
      finalDeadline: now + 400,
    };
    const wire = wireOfJob(job, chain.chainId, requestor.escrowAddress);
    const batch = batchOfJob(job);
    const accepts = [];
    for (const seat of seats.slice(0, 3)) {
      const verdict = await seat.accept({
        batch: wire,
        qubeId: qube,
        price: job.price,
        wallTimeMs: 10_000,
        now: new Date(now * 1000),
      });
      expect(verdict.ok, JSON.stringify(verdict)).to.equal(true);
      if (verdict.ok) accepts.push(verdict.signature);
    }
    await requestor.open(batch, accepts);
    const terms = { escrowJob: batchIdOf(batch), price: job.price.toString() } as never;
    const root = hex32();
    for (const seat of seats.slice(0, 3)) {
      const checked = await seat.check({
        batch: wire,
        terms,
        qubeId: qube,
        wallTimeMs: 10_000,
        now: new Date(now * 1000),
      });
      expect(checked.ok, checked.ok ? "" : checked.reason).to.equal(true);
      await seat.commit(batch, { outputsRoot: root, salt: hex32() });
    }
    const before = await Promise.all(seats.slice(0, 3).map((s) => s.client.balance()));
    // the requestor vanishes; past the reveal deadline the keepers act
    await advance(rpc, 131);
    const actions: SeatV2Report["action"][] = [];
    for (let round = 0; round < 40; round++) {
      for (const seat of seats) for (const r of await seat.keep()) actions.push(r.action);
      if ((await requestor.batchState(batch)).status === "settled") break;
      await advance(rpc, 5);
    }
    expect((await requestor.batchState(batch)).status, actions.join(",")).to.equal("settled");
    expect(actions.filter((a) => a === "proposed")).to.have.length(1);
    expect(actions.filter((a) => a === "added")).to.have.length(2);
    expect(actions.filter((a) => a === "revealed")).to.have.length(3);
    const dispute = await requestor.dispute(batch);
    expect(dispute!.revealed.size).to.equal(3);
    const after = await Promise.all(seats.slice(0, 3).map((s) => s.client.balance()));
    for (let i = 0; i < 3; i++) expect(after[i]! - before[i]!).to.equal(job.price + job.stake);
    await expectClosed(new Set([batchIdOf(batch)]), actions.join(","));
  });

  it("a group (k = 3 with a dissenter and a tie-breaker) after the requestor vanished: each batch disputed, the group finalized; the pair and the tie-breaker paid, the dissenter slashed", async () => {
    const now = (await rpc.getBlock("latest"))!.timestamp;
    const qube = `aq1${randomBytes(32).toString("hex")}`;
    const round = (providers: ProviderPaymentsV2[], nonce: bigint): EscrowJob => ({
      requestor: requestor.address,
      qubeId: `0x${qube.slice(3)}`,
      nonce,
      providers: providers.map((s) => s.client.address),
      price: 2n * E18,
      stake: E18,
      quorum: Math.floor(providers.length / 2) + 1,
      commitDeadline: now + 100,
      revealDeadline: now + 130,
      finalDeadline: now + 400,
    });
    const first = round(seats.slice(0, 3), BigInt(now) * 256n + 1n);
    const tie = round([seats[3]!], BigInt(now) * 256n + 2n);
    const leaderId = batchIdOf(batchOfJob(first));
    const rounds = [
      { job: first, wire: wireOfJob(first, chain.chainId, requestor.escrowAddress), seats: seats.slice(0, 3) },
      { job: tie, wire: wireOfJob(tie, chain.chainId, requestor.escrowAddress, leaderId), seats: [seats[3]!] },
    ];
    const right = hex32();
    for (const [r, { job, wire, seats: members }] of rounds.entries()) {
      const accepts = [];
      for (const seat of members) {
        const input = { batch: wire, qubeId: qube, price: job.price, wallTimeMs: 10_000, now: new Date(now * 1000) };
        const verdict = await seat.accept(input);
        expect(verdict.ok, JSON.stringify(verdict)).to.equal(true);
        if (verdict.ok) accepts.push(verdict.signature);
      }
      if (r === 0) await requestor.open(batchOfJob(job), accepts);
      else await requestor.openFollowUp(batchOfJob(job), accepts, batchOfJob(first));
      const terms = { escrowJob: batchIdOf(batchOfJob(job)), price: job.price.toString() } as never;
      for (const [s, seat] of members.entries()) {
        const input = { batch: wire, terms, qubeId: qube, wallTimeMs: 10_000, now: new Date(now * 1000) };
        expect((await seat.check(input)).ok).to.equal(true);
        // seat 2 of the first round dissents
        await seat.commit(batchOfJob(job), { outputsRoot: r === 0 && s === 2 ? hex32() : right, salt: hex32() });
      }
    }
    const before = await Promise.all(seats.map((s) => s.client.balance()));
    await advance(rpc, 131);
    const actions: SeatV2Report["action"][] = [];
    for (let i = 0; i < 60; i++) {
      for (const seat of seats) for (const r of await seat.keep()) actions.push(r.action);
      if ((await requestor.batchState(batchOfJob(tie))).status === "settled") break;
      await advance(rpc, 5);
    }
    expect((await requestor.batchState(batchOfJob(first))).status, actions.join(",")).to.equal("settled");
    expect((await requestor.batchState(batchOfJob(tie))).status, actions.join(",")).to.equal("settled");
    expect(
      actions.filter((a) => a === "proposed"),
      actions.join(","),
    ).to.have.length(2);
    expect(
      actions.filter((a) => a === "finalized"),
      actions.join(","),
    ).to.have.length(1);
    const after = await Promise.all(seats.map((s) => s.client.balance()));
    const share = E18 / 3n; // the dissenter's stake, shared by the three winners of the group
    expect(after.map((b, i) => b - before[i]!)).to.deep.equal([
      2n * E18 + E18 + share,
      2n * E18 + E18 + share,
      0n,
      2n * E18 + E18 + share,
    ]);
    await expectClosed(new Set([leaderId, batchIdOf(batchOfJob(tie))]), actions.join(","));
  });
});
