import { expect } from "chai";
import { Wallet } from "ethers";
import {
  ACCEPT_TYPES,
  batchIdOf,
  COMMITMENTS_TYPES,
  columnHashOf,
  compactSignature,
  escrowV2Domain,
  FOLLOW_UP_TYPES,
  qubesRootOf,
} from "../../src/chain/escrow-v2-batch.js";
import {
  batchFromWire,
  batchOfJob,
  isAcceptOf,
  isCommitmentsOf,
  isFollowUpOf,
  payoutOfGroup,
  payoutOfOneJob,
  wireOfJob,
} from "../../src/chain/escrow-v2-wire.js";
import type { EscrowJob } from "../../src/chain/job.js";
import { escrowBatchWireSchema } from "../../src/net/exchange/messages.js";

const seats = [Wallet.createRandom(), Wallet.createRandom(), Wallet.createRandom()];
const requestor = Wallet.createRandom().address;
const escrow = Wallet.createRandom().address;
const qubeId = `0x${"ab".repeat(32)}`;
const job: EscrowJob = {
  requestor,
  qubeId,
  nonce: 1_700_000_000n * 256n + 7n,
  providers: seats.map((w) => w.address),
  price: 1000n,
  stake: 300n,
  quorum: 2,
  commitDeadline: 1_700_000_100,
  revealDeadline: 1_700_000_220,
  finalDeadline: 1_700_003_820,
};
const root = (b: string) => `0x${b.repeat(32)}`;

describe("escrow v2 wire: batches of one qube, statements, payouts", () => {
  it("a job's batch goes to the wire and back unchanged (same id), and the wire schema bounds it", () => {
    const batch = batchOfJob(job);
    expect(batch.qubesRoot).to.equal(qubesRootOf([qubeId]));
    expect(batch.jobs).to.equal(1);
    const wire = escrowBatchWireSchema.parse(wireOfJob(job, 31337, escrow));
    const back = batchFromWire(wire);
    expect(back.qubeIds).to.deep.equal([qubeId]);
    expect(batchIdOf(back.batch)).to.equal(batchIdOf(batch));
    // bounded at the boundary: a nonce of 2^40 or more, 13 providers, a duplicated qube
    expect(escrowBatchWireSchema.safeParse({ ...wire, nonce: String(2n ** 44n) }).success).to.equal(false);
    expect(escrowBatchWireSchema.safeParse({ ...wire, providers: Array(13).fill(seats[0]!.address) }).success).to.equal(
      false,
    );
    expect(() => batchFromWire({ ...wire, qubeIds: [qubeId, qubeId] })).to.throw(/twice/);
    // a v1 nonce (64 bits) is no batch
    expect(() => batchOfJob({ ...job, nonce: 2n ** 63n })).to.throw();
  });

  it("recognises each seat's Accept and Commitments, and nothing signed by another key or for another batch", async () => {
    const batchId = batchIdOf(batchOfJob(job));
    const at = { chainId: 31337, escrow, batchId };
    const domain = escrowV2Domain(31337, escrow);
    const accept = compactSignature(await seats[0]!.signTypedData(domain, ACCEPT_TYPES, { batchId }));
    expect(isAcceptOf(seats[0]!.address, at, accept)).to.equal(true);
    expect(isAcceptOf(seats[1]!.address, at, accept)).to.equal(false);
    expect(isAcceptOf(seats[0]!.address, { ...at, chainId: 1 }, accept)).to.equal(false);
    expect(isAcceptOf(seats[0]!.address, { ...at, batchId: root("01") }, accept)).to.equal(false);
    expect(isAcceptOf(seats[0]!.address, at, [root("00"), root("00")])).to.equal(false);
    const column = [root("cd")];
    const signed = compactSignature(
      await seats[1]!.signTypedData(domain, COMMITMENTS_TYPES, { batchId, commitments: columnHashOf(column) }),
    );
    expect(isCommitmentsOf(seats[1]!.address, at, column, signed)).to.equal(true);
    expect(isCommitmentsOf(seats[1]!.address, at, [root("ce")], signed)).to.equal(false);
  });

  it("computes the contract's payout of one job: unanimous, 2 against 1 (no winner), 4 against 1 (slashed and shared)", () => {
    const batch = batchOfJob(job);
    const all = payoutOfOneJob(batch, [root("aa"), root("aa"), root("aa")]);
    expect(all.slashed).to.deep.equal([]);
    expect(all.credits.map((c) => c.amount)).to.deep.equal([1300n, 1300n, 1300n]);
    // 2 * 2 < quorum 2 + 3 committed: nobody wins, stakes back, budget back
    const split = payoutOfOneJob(batch, [root("aa"), root("bb"), root("aa")]);
    expect(split.slashed).to.deep.equal([]);
    expect(split.credits).to.deep.equal([
      ...batch.providers.map((p) => ({ account: p, amount: 300n })),
      { account: requestor, amount: 3000n },
    ]);
    const five = [...seats, Wallet.createRandom(), Wallet.createRandom()].map((w) => w.address);
    const wide = batchOfJob({ ...job, providers: five, quorum: 3 });
    const liar = payoutOfOneJob(wide, [root("aa"), root("aa"), root("bb"), root("aa"), root("aa")]);
    expect(liar.slashed).to.deep.equal([{ account: five[2], amount: 300n }]);
    // each winner: price + stake + 300 / 4 = 75; the requestor: the liar's price, no dust
    expect(liar.credits).to.deep.equal([
      ...five.filter((_, i) => i !== 2).map((p) => ({ account: p, amount: 1375n })),
      { account: requestor, amount: 1000n },
    ]);
  });

  it("a follow-up names its leader on the wire; its FollowUp consent is bound to that leader, not an Accept", async () => {
    const leaderId = batchIdOf(batchOfJob(job));
    const follow = { ...job, nonce: job.nonce + 1n, providers: [seats[2]!.address], quorum: 1 };
    const wire = escrowBatchWireSchema.parse(wireOfJob(follow, 31337, escrow, leaderId));
    expect(wire.leader).to.equal(leaderId);
    expect(escrowBatchWireSchema.safeParse({ ...wire, leader: "0x12" }).success).to.equal(false);
    const batchId = batchIdOf(batchFromWire(wire).batch);
    const at = { chainId: 31337, escrow, batchId, leaderId };
    const domain = escrowV2Domain(31337, escrow);
    const consent = compactSignature(await seats[2]!.signTypedData(domain, FOLLOW_UP_TYPES, { batchId, leaderId }));
    expect(isFollowUpOf(seats[2]!.address, at, consent)).to.equal(true);
    expect(isFollowUpOf(seats[2]!.address, { ...at, leaderId: root("01") }, consent)).to.equal(false);
    expect(isAcceptOf(seats[2]!.address, { chainId: 31337, escrow, batchId }, consent)).to.equal(false);
    const accept = compactSignature(await seats[2]!.signTypedData(domain, ACCEPT_TYPES, { batchId }));
    expect(isFollowUpOf(seats[2]!.address, at, accept)).to.equal(false);
  });

  it("computes the contract's group payout: a tie-breaker agreeing with the pair, and one siding with the dissenter", () => {
    const leader = batchOfJob(job);
    const tieAddress = Wallet.createRandom().address;
    const tie = batchOfJob({ ...job, nonce: job.nonce + 1n, providers: [tieAddress], quorum: 1, stake: 200n });
    // R, R, W + R: 2 * 3 >= 2 + 4; the dissenter's 300 shared by three winners (100 each, no dust)
    const [round, follow] = payoutOfGroup([leader, tie], [[root("aa"), root("aa"), root("bb")], [root("aa")]]);
    expect(round!.slashed).to.deep.equal([{ account: seats[2]!.address, amount: 300n }]);
    expect(round!.credits).to.deep.equal([
      { account: seats[0]!.address, amount: 1400n },
      { account: seats[1]!.address, amount: 1400n },
      { account: requestor, amount: 1000n },
    ]);
    expect(follow).to.deep.equal({ credits: [{ account: tieAddress, amount: 1300n }], slashed: [] });
    // R, R, W + W: two against two, no winner: every stake and the whole budget back
    const [even, evenTie] = payoutOfGroup([leader, tie], [[root("aa"), root("aa"), root("bb")], [root("bb")]]);
    expect(even!.slashed).to.deep.equal([]);
    expect(even!.credits).to.deep.equal([
      ...leader.providers.map((p) => ({ account: p, amount: 300n })),
      { account: requestor, amount: 3000n },
    ]);
    expect(evenTie!.credits).to.deep.equal([
      { account: tieAddress, amount: 200n },
      { account: requestor, amount: 1000n },
    ]);
  });
});
