import { expect } from "chai";
import type { JsonRpcProvider } from "ethers";
import { ChainError } from "../../src/chain/errors.js";
import {
  batchCommitmentOf,
  batchIdOf,
  type EscrowBatch,
  parseEscrowBatch,
  qubesRootOf,
} from "../../src/chain/escrow-v2-batch.js";
import { type BatchOpening, EscrowV2Client } from "../../src/chain/escrow-v2-client.js";
import type { LocalChain } from "../../src/chain/local-chain.js";
import { UserError } from "../../src/qube/errors.js";
import { startRpcProxy } from "../helpers/rpc-proxy.js";
import { E18, startV2Chain, type V2Chain } from "./v2-chain.js";

const hex32 = (n: number) => `0x${n.toString(16).padStart(64, "0")}`;
const ROOT = hex32(0x1234);
const ZERO = hex32(0);

describe("chain: EscrowV2Client (real EDR chain on 127.0.0.1)", function () {
  this.timeout(120_000);
  let fixture: V2Chain;
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let requestor: EscrowV2Client;
  let seats: EscrowV2Client[];
  /** A provider outside the seats: the tie-breaker of the group test. */
  let tieBreaker: EscrowV2Client;
  let nonce = 1n;
  /** The disputed batch of the dispute test, its final commitments and seat 2's opening (read back later). */
  let disputed: { batch: EscrowBatch; commitments: string[]; opening: BatchOpening } | undefined;

  before(async () => {
    fixture = await startV2Chain(6);
    ({ chain, rpc: provider } = fixture);
    const escrow = fixture.escrow;
    const connect = (i: number) =>
      EscrowV2Client.connect({ rpcUrl: chain.rpcUrl, privateKey: chain.accounts[i]!.privateKey, escrow });
    requestor = await connect(1);
    seats = await Promise.all([2, 3, 4].map(connect));
    tieBreaker = await connect(5);
    for (const c of [requestor, ...seats, tieBreaker]) await c.deposit(100n * E18);
  });

  after(async () => {
    for (const c of [requestor, ...(seats ?? []), tieBreaker]) c?.close();
    await fixture?.stop();
  });

  async function newBatch(jobs: number): Promise<EscrowBatch> {
    const now = (await provider.getBlock("latest"))!.timestamp;
    return {
      requestor: requestor.address,
      nonce: nonce++,
      qubesRoot: qubesRootOf(Array.from({ length: jobs }, (_, j) => hex32(0xc0be00 + j))),
      jobs,
      providers: seats.map((s) => s.address),
      price: 2n * E18,
      stake: E18,
      quorum: 2,
      commitDeadline: now + 100,
      revealDeadline: now + 200,
      finalDeadline: now + 500,
    };
  }

  /** Each seat's openings and signed column for `jobs` jobs, all agreeing. */
  async function statements(batch: EscrowBatch) {
    const id = batchIdOf(batch);
    const openings: BatchOpening[][] = [];
    const columns: string[][] = seats.map(() => []);
    for (let j = 0; j < batch.jobs; j++) {
      const row: BatchOpening[] = [];
      for (const [s, seat] of seats.entries()) {
        const o = { outputsRoot: ROOT, salt: hex32(0x5a17 + j * 16 + s) };
        row.push(o);
        columns[s]!.push(batchCommitmentOf(id, j, o.outputsRoot, o.salt, seat.address));
      }
      openings.push(row);
    }
    const signatures = await Promise.all(seats.map((s, i) => s.signCommitments(batch, columns[i]!)));
    return { openings, columns, signatures };
  }

  it("deposits with permit, opens and settles a batch of two qubes, withdraws", async () => {
    expect(await requestor.balance()).to.equal(100n * E18);
    const batch = await newBatch(2);
    const accepts = await Promise.all(seats.map((s) => s.signAccept(batch)));
    const opened = await requestor.open(batch, accepts);
    expect(opened.batchId).to.equal(batchIdOf(batch));
    expect((await requestor.batchState(batch)).status).to.equal("open");
    for (const s of seats) expect(await s.balance()).to.equal(98n * E18);
    const st = await statements(batch);
    await requestor.settle(batch, st.signatures, st.openings);
    expect((await requestor.batchState(batch)).status).to.equal("settled");
    for (const s of seats) expect(await s.balance()).to.equal(104n * E18);
    expect(await requestor.balance()).to.equal(88n * E18);
    await seats[0]!.withdraw(4n * E18);
    expect(await seats[0]!.balance()).to.equal(100n * E18);
  });

  it("a dropped seat adds its column and is paid after the dispute", async () => {
    const batch = await newBatch(1);
    await requestor.open(batch, await Promise.all(seats.map((s) => s.signAccept(batch))));
    const st = await statements(batch);
    const before = await seats[2]!.balance();
    await provider.send("evm_increaseTime", [101]);
    const dropped = [st.columns[0]![0]!, st.columns[1]![0]!, ZERO];
    await requestor.propose(batch, [st.signatures[0]!, st.signatures[1]!, [ZERO, ZERO]], dropped);
    await seats[2]!.addCommitments(batch, dropped, 2, st.signatures[2]!, st.columns[2]!);
    const full = [...dropped.slice(0, 2), st.columns[2]![0]!];
    await provider.send("evm_increaseTime", [101]);
    await seats[2]!.reveal(batch, full, new Map([[2, st.openings[0]![2]!]]));
    expect((await requestor.batchState(batch)).revealed).to.deep.equal([2]);
    await provider.send("evm_increaseTime", [101]);
    await seats[2]!.finalize(batch, full, st.openings[0]!);
    expect(await seats[2]!.balance()).to.equal(before + 2n * E18 + E18);
    disputed = { batch, commitments: full, opening: st.openings[0]![2]! };
  });

  it("release pays every seat in full; settlements and disputes are read from the deployment block in pages", async () => {
    const batch = await newBatch(2);
    await requestor.open(batch, await Promise.all(seats.map((s) => s.signAccept(batch))));
    const before = await Promise.all(seats.map((s) => s.balance()));
    const released = await requestor.release(batch);
    const after = await Promise.all(seats.map((s) => s.balance()));
    // price 2 and stake 1 per job, two jobs: the stake was locked at open, so the balance grows by 6
    for (const [i, b] of after.entries()) expect(b - before[i]!).to.equal(6n * E18);
    expect((await requestor.batchState(batch)).status).to.equal("settled");
    // the chain moves far past the deployment block; the endpoint accepts at most 50 blocks per eth_getLogs
    await provider.send("hardhat_mine", ["0x12c"]);
    const proxy = await startRpcProxy(chain.rpcUrl, { maxLogRange: 50 });
    const reader = await EscrowV2Client.connect({
      rpcUrl: proxy.url,
      privateKey: chain.accounts[4]!.privateKey,
      escrow: requestor.escrowAddress,
    });
    try {
      const all = await reader.settlements();
      expect(proxy.logRanges[0]!.from).to.equal(reader.deploymentBlock);
      expect(
        proxy.logRanges.some((r) => r.refused),
        "the default range is narrowed",
      ).to.equal(true);
      // every settlement of the earlier tests (settle, finalize) and this release, as the direct endpoint has them
      expect(all).to.deep.equal(await requestor.settlements());
      expect(all.map((x) => x.batchId)).to.include.members([batchIdOf(disputed!.batch), batchIdOf(batch)]);
      expect(all.length).to.be.greaterThan(2);
      const mine = await reader.settlements(batchIdOf(batch));
      expect(mine).to.deep.equal([
        {
          batchId: batchIdOf(batch),
          winners: 6,
          slashed: 0n,
          blockNumber: released.blockNumber,
          txHash: released.hash,
        },
      ]);
      // once narrowed, later reads stay within what the endpoint accepts
      proxy.logRanges.length = 0;
      const dispute = await reader.dispute(disputed!.batch);
      expect(proxy.logRanges.length).to.be.greaterThan(4 * 6);
      expect(proxy.logRanges.filter((r) => r.refused)).to.deep.equal([]);
      expect(dispute?.proposer).to.equal(requestor.address);
      expect(dispute?.commitments).to.deep.equal(disputed!.commitments);
      expect(dispute?.added).to.deep.equal([2]);
      expect([...dispute!.revealed]).to.deep.equal([[2, disputed!.opening]]);
      expect(dispute?.equivocated).to.deep.equal([]);
      expect(dispute!.commitBy).to.be.greaterThan(0);
      expect(await reader.dispute(batch)).to.equal(undefined);
    } finally {
      reader.close();
      await proxy.close();
    }
    const bad = await EscrowV2Client.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[4]!.privateKey,
      escrow: requestor.escrowAddress,
      logRangeBlocks: 0,
    }).catch((e: unknown) => e);
    expect(bad).to.be.instanceOf(UserError);
  });

  it("groups: a tie-breaker joins the leader's group; settleGroup pays the pair and the tie-breaker, finalizeGroup after a dispute", async () => {
    const W = hex32(0x5678);
    const open = async () => {
      const leader = await newBatch(1);
      await requestor.open(leader, await Promise.all(seats.map((s) => s.signAccept(leader))));
      const tie = { ...(await newBatch(1)), providers: [tieBreaker.address], quorum: 1 };
      const opened = await requestor.openFollowUp(tie, [await tieBreaker.signFollowUp(tie, leader)], leader);
      expect(opened.batchId).to.equal(batchIdOf(tie));
      // seat 2 dissents; the tie-breaker agrees with the pair
      const st = await statements(leader);
      const salt = hex32(0x7777);
      const ties = { outputsRoot: ROOT, salt };
      const w = { outputsRoot: W, salt: hex32(0x8888) };
      const column = [batchCommitmentOf(batchIdOf(leader), 0, W, w.salt, seats[2]!.address)];
      st.signatures[2] = await seats[2]!.signCommitments(leader, column);
      st.openings[0]![2] = w;
      st.columns[2] = column;
      const tieColumn = [batchCommitmentOf(batchIdOf(tie), 0, ROOT, salt, tieBreaker.address)];
      const tieSignature = await tieBreaker.signCommitments(tie, tieColumn);
      return { leader, tie, st, ties, tieColumn, tieSignature };
    };
    const a = await open();
    expect(await requestor.batchGroup(a.leader)).to.deep.equal({ leader: true, followUp: false, followUpSeats: 1 });
    expect(await requestor.batchGroup(a.tie)).to.deep.equal({ leader: false, followUp: true, followUpSeats: 0 });
    // the group as the events tell it, from either batch
    expect(await tieBreaker.group(a.tie)).to.deep.equal([a.leader, a.tie]);
    expect(await seats[0]!.group(a.leader)).to.deep.equal([a.leader, a.tie]);
    const before = await Promise.all([...seats, tieBreaker].map((s) => s.balance()));
    const alone = await requestor.release(a.leader).catch((e: unknown) => e);
    expect((alone as ChainError).errorName).to.equal("AirqubeEscrowV2GroupSettlement");
    await requestor.settleGroup([a.leader, a.tie], [a.st.signatures, [a.tieSignature]], [a.st.openings, [[a.ties]]]);
    const share = E18 / 3n; // seat 2's stake shared by the three winners
    const after = await Promise.all([...seats, tieBreaker].map((s) => s.balance()));
    expect(after.map((b, i) => b - before[i]!)).to.deep.equal([
      2n * E18 + E18 + share,
      2n * E18 + E18 + share,
      0n,
      2n * E18 + E18 + share,
    ]);
    // the same group through disputes: the requestor proposes both, then anyone finalizes after the windows
    const b = await open();
    await provider.send("evm_increaseTime", [101]);
    const commitments = [0, 1, 2].map((s) => b.st.columns[s]![0]!);
    await requestor.propose(b.leader, b.st.signatures, commitments);
    await requestor.propose(b.tie, [b.tieSignature], b.tieColumn);
    await provider.send("evm_increaseTime", [202]);
    const dispute = await tieBreaker.dispute(b.leader);
    await tieBreaker.finalizeGroup(
      [b.leader, b.tie],
      [
        { commitments: dispute!.commitments, openings: b.st.openings[0]! },
        { commitments: b.tieColumn, openings: [b.ties] },
      ],
    );
    expect((await tieBreaker.settlements(batchIdOf(b.tie)))[0]?.winners).to.equal(1);
    expect((await requestor.batchState(b.leader)).status).to.equal("settled");
  });

  it("reverts come back as typed errors with the decoded custom error", async () => {
    const batch = await newBatch(1);
    const accepts = await Promise.all(seats.map((s) => s.signAccept(batch)));
    const err = await seats[0]!.open(batch, accepts).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(ChainError);
    expect((err as ChainError).code).to.equal("CHAIN_REVERTED");
    expect((err as ChainError).errorName).to.equal("AirqubeEscrowV2Unauthorized");
    await requestor.open(batch, accepts);
    const late = await requestor.reclaim(batch).catch((e: unknown) => e);
    expect((late as ChainError).errorName).to.equal("AirqubeEscrowV2TooEarly");
    expect(() => parseEscrowBatch({ ...batch, jobs: 100 })).to.throw(UserError, /invalid/);
  });
});
