import { randomBytes } from "node:crypto";
import { expect } from "chai";
import type { JsonRpcProvider } from "ethers";
import type { OwnOpening } from "../../src/chain/escrow-client.js";
import { batchCommitmentOf, batchIdOf } from "../../src/chain/escrow-v2-batch.js";
import { type CompactSignature, EscrowV2Client } from "../../src/chain/escrow-v2-client.js";
import { batchFromWire, batchOfJob } from "../../src/chain/escrow-v2-wire.js";
import type { EscrowJob } from "../../src/chain/job.js";
import type { LocalChain } from "../../src/chain/local-chain.js";
import type { EscrowBatchWire } from "../../src/net/exchange/messages.js";
import { EscrowV2Payments, type V2Opening } from "../../src/requestor/payments-v2.js";
import { E18, startV2Chain, type V2Chain } from "./v2-chain.js";

const hex32 = () => `0x${randomBytes(32).toString("hex")}`;

/**
 * The requestor's escrow v2 payments with a group on a real local chain: a replacement round (a seat of the
 * first round never committed) opened as a follow-up; `close` takes the group's dispute path (each batch
 * proposed, `finalizeGroup` after the windows) and the group's quorum pays the two first-round seats and the
 * replacement. Short real windows (2 s): the requestor waits on the chain's clock.
 */
describe("requestor: escrow v2 payments close a group through its dispute (real EDR chain)", function () {
  this.timeout(120_000);
  let fixture: V2Chain;
  let chain: LocalChain;
  let rpc: JsonRpcProvider;
  let payments: EscrowV2Payments;
  let seats: EscrowV2Client[];

  before(async () => {
    fixture = await startV2Chain(6);
    ({ chain, rpc } = fixture);
    const escrow = fixture.escrow;
    payments = await EscrowV2Payments.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[1]!.privateKey,
      escrow,
      marginS: 1,
      revealWindowS: 2,
      settleWindowS: 30,
    });
    await payments.escrowClient.deposit(100n * E18);
    seats = await Promise.all(
      [2, 3, 4, 5].map((i) =>
        EscrowV2Client.connect({ rpcUrl: chain.rpcUrl, privateKey: chain.accounts[i]!.privateKey, escrow }),
      ),
    );
    for (const s of seats) await s.deposit(10n * E18);
  });

  after(async () => {
    for (const s of seats ?? []) s.close();
    payments?.dispose();
    await fixture?.stop();
  });

  it("a replacement joins the group; a seat that never committed is left out by the dispute and the group's quorum pays the rest", async () => {
    const qubeId = `aq1${randomBytes(32).toString("hex")}`;
    const clientOf = (address: string) => seats.find((s) => s.address.toLowerCase() === address.toLowerCase())!;
    // each seat consents as its agent does: FollowUp for a batch that names a leader, Accept otherwise
    const accept = async (wire: EscrowBatchWire): Promise<CompactSignature[]> => {
      const { batch } = batchFromWire(wire);
      return Promise.all(
        batch.providers.map((p) =>
          wire.leader ? clientOf(p).signFollowUp(batch, wire.leader) : clientOf(p).signAccept(batch),
        ),
      );
    };
    const request = { qubeId, price: 2n * E18, quorum: 2, wallTimeMs: 1000, commitGraceMs: 0, accept };
    const first = await payments.lock({ ...request, payouts: seats.slice(0, 3).map((s) => s.address) });
    // seat 2 failed before committing: the engine replaces it with seat 3 in a follow-up round
    // its own quorum is a majority of its one seat (as the engine computes it); the group counts the leader's
    const replacement = await payments.lock({
      ...request,
      quorum: 1,
      payouts: [seats[3]!.address],
      leader: first.seat.job,
    });
    expect(await payments.escrowClient.batchGroup(batchOfJob(first.seat.job))).to.deep.equal({
      leader: true,
      followUp: false,
      followUpSeats: 1,
    });
    const root = hex32();
    const openings = new Map<string, OwnOpening>();
    const commit = async (job: EscrowJob, seat: EscrowV2Client) => {
      const batch = batchOfJob(job);
      const salt = hex32();
      const commitment = batchCommitmentOf(batchIdOf(batch), 0, root, salt, seat.address);
      const signature = await seat.signCommitments(batch, [commitment]);
      const opening: V2Opening = { outputsRoot: root, salt, commitment, signature };
      openings.set(seat.address.toLowerCase(), opening);
    };
    for (const seat of seats.slice(0, 2)) await commit(first.seat.job, seat);
    await commit(replacement.seat.job, seats[3]!);
    const before = await Promise.all(seats.map((s) => s.balance()));
    const reports = await payments.close([first.seat.job, replacement.seat.job], openings, { maxWaitMs: 60_000 });
    expect(
      reports.map((r) => [r.jobId, r.status]),
      JSON.stringify(reports),
    ).to.deep.equal([
      [first.seat.jobId, "settled"],
      [replacement.seat.jobId, "settled"],
    ]);
    expect(reports[0]!.settleTx).to.equal(reports[1]!.settleTx);
    for (const job of [first.seat.job, replacement.seat.job]) {
      expect((await payments.escrowClient.dispute(batchOfJob(job)))?.proposer).to.equal(payments.account);
    }
    // R, R and the replacement's R over three committed seats (2 * 3 >= 2 + 3); seat 2 gets its stake back
    const after = await Promise.all(seats.map((s) => s.balance()));
    expect(after.map((b, i) => b - before[i]!)).to.deep.equal([4n * E18, 4n * E18, 2n * E18, 4n * E18]);
  });

  it("a follow-up too late for its leader's group (it would end more than one leader span after it) is opened as a batch of its own", async () => {
    const qubeId = `aq1${randomBytes(32).toString("hex")}`;
    const accept = async (wire: EscrowBatchWire): Promise<CompactSignature[]> => {
      const { batch } = batchFromWire(wire);
      expect(wire.leader).to.equal(undefined);
      return Promise.all(batch.providers.map((p) => seats.find((s) => s.address === p)!.signAccept(batch)));
    };
    const request = { qubeId, price: E18, quorum: 1, wallTimeMs: 1000, commitGraceMs: 0, accept };
    const first = await payments.lock({ ...request, payouts: [seats[0]!.address] });
    const leader = first.seat.job;
    // the leader's span is 32 s (2 s reveal window + 30 s settle window): two spans later a follow-up's reveal
    // deadline and two windows no longer end within one span after the leader's final deadline
    await rpc.send("evm_increaseTime", [2 * (leader.finalDeadline - leader.commitDeadline)]);
    await rpc.send("evm_mine", []);
    const late = await payments.lock({ ...request, payouts: [seats[1]!.address], leader });
    expect(await payments.escrowClient.batchGroup(batchOfJob(late.seat.job))).to.deep.equal({
      leader: false,
      followUp: false,
      followUpSeats: 0,
    });
    expect((await payments.escrowClient.batchState(batchOfJob(late.seat.job))).status).to.equal("open");
  });
});
