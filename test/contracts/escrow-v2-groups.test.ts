import { expect } from "chai";
import type { Signer } from "ethers";
import { batchIdOf, type EscrowBatch } from "../../src/chain/escrow-v2-batch.js";
import {
  acceptsOf,
  bt,
  DEPOSIT,
  type EscrowV2T,
  followUpAcceptsOf,
  makeBatch,
  openBatch,
  openFollowUpBatch,
  owedV2,
  PRICE2,
  R,
  STAKE2,
  saltOf,
  statementsOf,
  v2Fixture,
  W,
  ZERO,
} from "./escrow-v2-fixture.js";
import { hex32, networkHelpers } from "./helpers.js";

const { loadFixture, time } = networkHelpers;
const WINDOW = 100;
type Statements = Awaited<ReturnType<typeof statementsOf>>;

/** A k = 3 leader (seats 0-2, quorum 2) with `leaderRoots`, and one k = 1 follow-up per entry of `followUps`. */
async function groupOf(
  f: Awaited<ReturnType<typeof v2Fixture>>,
  leaderRoots: (string | undefined)[],
  followUps: { seat: Signer; root: string | undefined }[],
  leaderOverrides: Partial<EscrowBatch> = {},
  nonce = 1n,
) {
  const { escrow, requestor, providers } = f;
  const seats = providers.slice(0, 3);
  const leader = await makeBatch(requestor, seats, { nonce, ...leaderOverrides });
  await openBatch(escrow, requestor, leader, seats);
  const batches = [leader];
  const statements = [await statementsOf(escrow, leader, seats, [leaderRoots])];
  for (const [i, fu] of followUps.entries()) {
    const batch = await makeBatch(requestor, [fu.seat], { nonce: nonce + 1n + BigInt(i), quorum: 1 });
    await openFollowUpBatch(escrow, requestor, batch, leader, [fu.seat]);
    batches.push(batch);
    statements.push(await statementsOf(escrow, batch, [fu.seat], [[fu.root]]));
  }
  return { leader, batches, statements, tuples: batches.map(bt) };
}

const sigs = (sts: Statements[]) => sts.map((s) => s.signatures);
const opens = (sts: Statements[]) => sts.map((s) => s.openings);
const comms = (sts: Statements[]) => sts.map((s) => s.commitments);

async function groupBits(escrow: EscrowV2T, batch: unknown[]) {
  return [...(await escrow.batchGroup(batch))];
}

async function balances(escrow: EscrowV2T, signers: Signer[]): Promise<bigint[]> {
  return Promise.all(signers.map(async (s) => escrow.balanceOf(await s.getAddress())));
}

describe("AirqubeEscrowV2 groups", () => {
  it("k = 3 with one dissenter and a tie-breaker: the pair and the tie-breaker are paid, the dissenter slashed", async () => {
    const f = await loadFixture(v2Fixture);
    const { escrow, requestor, providers, outsider } = f;
    const [p0, p1, p2, p3] = providers;
    const leader = await makeBatch(requestor, [p0!, p1!, p2!]);
    const open = await (await openBatch(escrow, requestor, leader, [p0!, p1!, p2!])).wait();
    const tie = await makeBatch(requestor, [p3!], { nonce: 2n, quorum: 1 });
    const accepts = await followUpAcceptsOf(escrow, tie, leader, [p3!]);
    const lid = batchIdOf(leader);
    const tid = batchIdOf(tie);
    const openTie = escrow.connect(requestor).openFollowUp(bt(tie), accepts, bt(leader));
    await expect(openTie).to.emit(escrow, "FollowUpOpened").withArgs(lid, tid, bt(leader), bt(tie));
    const openTieGas = (await (await openTie).wait())!.gasUsed;
    expect(await groupBits(escrow, bt(leader))).to.deep.equal([true, false, 1n]);
    expect(await groupBits(escrow, bt(tie))).to.deep.equal([false, true, 0n]);
    const sl = await statementsOf(escrow, leader, [p0!, p1!, p2!], [[R, R, W]]);
    const st = await statementsOf(escrow, tie, [p3!], [[R]]);
    // neither batch settles alone, by any path
    for (const [b, s, id] of [
      [leader, sl, lid],
      [tie, st, tid],
    ] as const) {
      await expect(escrow.connect(requestor).release(bt(b)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2GroupSettlement")
        .withArgs(id);
      await expect(escrow.connect(requestor).settle(bt(b), s.signatures, s.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2GroupSettlement")
        .withArgs(id);
    }
    await expect(escrow.connect(outsider).settleGroup([bt(leader), bt(tie)], sigs([sl, st]), opens([sl, st])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2Unauthorized")
      .withArgs(await outsider.getAddress());
    const settle = escrow.connect(requestor).settleGroup([bt(leader), bt(tie)], sigs([sl, st]), opens([sl, st]));
    await expect(settle)
      .to.emit(escrow, "Settled")
      .withArgs(lid, 2, STAKE2)
      .and.to.emit(escrow, "Settled")
      .withArgs(tid, 1, 0);
    const settleGas = (await (await settle).wait())!.gasUsed;
    // votes R, R, W, R over four committed seats: 2 * 3 >= quorum 2 + 4; the dissenter's stake is shared
    const share = STAKE2 / 3n;
    expect(await balances(escrow, [p0!, p1!, p2!, p3!])).to.deep.equal([
      DEPOSIT + PRICE2 + share,
      DEPOSIT + PRICE2 + share,
      DEPOSIT - STAKE2,
      DEPOSIT + PRICE2 + share,
    ]);
    expect(await escrow.balanceOf(leader.requestor)).to.equal(DEPOSIT - 3n * PRICE2 + (STAKE2 - 3n * share));
    expect((await escrow.batchState(bt(leader)))[0]).to.equal(3n);
    expect((await escrow.batchState(bt(tie)))[0]).to.equal(3n);
    await expect(escrow.connect(requestor).settleGroup([bt(leader), bt(tie)], sigs([sl, st]), opens([sl, st])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(lid, 3n);
    console.log(
      `      gas: open (k = 3) ${open!.gasUsed}, openFollowUp (k = 1) ${openTieGas}, ` +
        `settleGroup (k = 3 + 1 tie-breaker) ${settleGas}`,
    );
  });

  it("a replacement for a seat that never committed: the group is paid per the leader's quorum (dispute path)", async () => {
    const f = await loadFixture(v2Fixture);
    const { escrow, requestor, providers } = f;
    // a unanimous quorum (3 of 3): the leader alone has two votes and no winner; with the replacement, three
    const g = await groupOf(f, [R, R, undefined], [{ seat: providers[3]!, root: R }], { quorum: 3 });
    const [sl, sr] = g.statements as [Statements, Statements];
    const lid = batchIdOf(g.leader);
    // the fast path needs every opening: the gap goes through the dispute path
    await expect(escrow.connect(requestor).settleGroup(g.tuples, sigs(g.statements), opens(g.statements)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadOpening")
      .withArgs(lid, 2);
    await time.increaseTo(g.batches[1]!.commitDeadline + 1);
    await escrow.connect(requestor).propose(g.tuples[0]!, sl.signatures, sl.commitments);
    await escrow.connect(requestor).propose(g.tuples[1]!, sr.signatures, sr.commitments);
    const revealBy = Number((await escrow.batchState(g.tuples[0]!))[1]) + 2 * WINDOW;
    await expect(escrow.finalizeGroup(g.tuples, comms(g.statements), opens(g.statements)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooEarly")
      .withArgs(lid, revealBy);
    await time.increase(2 * WINDOW + 1);
    await expect(escrow.finalize(g.tuples[0]!, sl.commitments, sl.openings))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2GroupSettlement")
      .withArgs(lid);
    await expect(escrow.finalizeGroup(g.tuples, comms(g.statements), [sl.openings]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2GroupMismatch")
      .withArgs(ZERO);
    await escrow.finalizeGroup(g.tuples, comms(g.statements), opens(g.statements));
    const [p0, p1, p2, p3] = providers;
    expect(await balances(escrow, [p0!, p1!, p2!, p3!])).to.deep.equal([
      DEPOSIT + PRICE2,
      DEPOSIT + PRICE2,
      DEPOSIT, // never committed: its stake back, unpaid
      DEPOSIT + PRICE2,
    ]);
    expect(await escrow.balanceOf(g.leader.requestor)).to.equal(DEPOSIT - 3n * PRICE2);
  });

  it("a group without a qualified majority pays nobody and slashes nobody who revealed", async () => {
    const f = await loadFixture(v2Fixture);
    const { escrow, requestor, providers } = f;
    // R, R, W and a tie-breaker W: two against two over four seats, no root has 2c >= 2 + 4
    const g = await groupOf(f, [R, R, W], [{ seat: providers[3]!, root: W }]);
    await expect(escrow.connect(requestor).settleGroup(g.tuples, sigs(g.statements), opens(g.statements)))
      .to.emit(escrow, "Settled")
      .withArgs(batchIdOf(g.leader), 0, 0)
      .and.to.emit(escrow, "Settled")
      .withArgs(batchIdOf(g.batches[1]!), 0, 0);
    expect(await balances(escrow, [requestor, ...providers.slice(0, 4)])).to.deep.equal(Array(5).fill(DEPOSIT));
  });

  it("openFollowUp: same requestor, qubes and jobs, a leader that is open and not a follow-up, bounded seats, the seats' consent to the group", async () => {
    const f = await loadFixture(v2Fixture);
    const { escrow, requestor, providers, outsider } = f;
    const [p0, p1, p2, p3, p4] = providers as unknown as [Signer, Signer, Signer, Signer, Signer];
    const leader = await makeBatch(requestor, [p0, p1, p2]);
    await openBatch(escrow, requestor, leader, [p0, p1, p2]);
    const lid = batchIdOf(leader);
    const notAFollowUp = async (by: Signer, batch: EscrowBatch, lead = leader) =>
      expect(escrow.connect(by).openFollowUp(bt(batch), await followUpAcceptsOf(escrow, batch, lead, [p3]), bt(lead)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2NotAFollowUp")
        .withArgs(batchIdOf(batch), batchIdOf(lead));
    const tie = (overrides: Partial<EscrowBatch> = {}) =>
      makeBatch(requestor, [p3], { nonce: 2n, quorum: 1, ...overrides });
    // a stranger cannot join a requestor's group with its own batch
    await notAFollowUp(outsider, await makeBatch(outsider, [p3], { nonce: 2n, quorum: 1 }));
    await notAFollowUp(requestor, await tie({ qubesRoot: hex32(0xdead) }));
    await notAFollowUp(requestor, await tie({ jobs: 2, qubesRoot: leader.qubesRoot }));
    // a follow-up ends at most one leader span (final - commit deadline) after the leader
    const span = leader.finalDeadline - leader.commitDeadline;
    await notAFollowUp(requestor, await tie({ finalDeadline: leader.finalDeadline + span + 1 }));
    // the seats' plain Accept (or a FollowUp for another leader) does not put them into a group
    const t = await tie({ finalDeadline: leader.finalDeadline + span });
    await expect(escrow.connect(requestor).openFollowUp(bt(t), await acceptsOf(escrow, t, [p3]), bt(leader)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
      .withArgs(batchIdOf(t), await p3.getAddress());
    const other = await makeBatch(requestor, [p0, p1, p2], { nonce: 9n });
    const foreign = await followUpAcceptsOf(escrow, t, other, [p3]);
    await expect(escrow.connect(requestor).openFollowUp(bt(t), foreign, bt(leader)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
      .withArgs(batchIdOf(t), await p3.getAddress());
    expect(await escrow.followUpDigest(batchIdOf(t), lid)).to.not.equal(await escrow.acceptDigest(batchIdOf(t)));
    await openFollowUpBatch(escrow, requestor, t, leader, [p3]);
    // a follow-up does not lead a group of its own
    const second = await makeBatch(requestor, [p3], { nonce: 3n, quorum: 1 });
    await notAFollowUp(requestor, second, t);
    // the follow-ups of a group have at most MAX_FOLLOW_UP_SEATS seats in all (1 + 5 + 5, then 3 more is 14)
    expect(await escrow.MAX_FOLLOW_UP_SEATS()).to.equal(12n);
    const five = [p0, p1, p2, p3, p4];
    for (const nonce of [4n, 5n]) {
      const big = await makeBatch(requestor, five, { nonce, quorum: 3 });
      await openFollowUpBatch(escrow, requestor, big, leader, five);
    }
    expect(await groupBits(escrow, bt(leader))).to.deep.equal([true, false, 11n]);
    const over = await makeBatch(requestor, [p0, p1, p2], { nonce: 6n });
    await expect(openFollowUpBatch(escrow, requestor, over, leader, [p0, p1, p2]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2NotAFollowUp")
      .withArgs(batchIdOf(over), lid);
    // a leader that is not open (settled alone before any follow-up) takes no follow-up
    const done = await makeBatch(requestor, [p0], { nonce: 7n, quorum: 1 });
    await openBatch(escrow, requestor, done, [p0]);
    await escrow.connect(requestor).release(bt(done));
    const late = await makeBatch(requestor, [p3], { nonce: 8n, quorum: 1 });
    await expect(openFollowUpBatch(escrow, requestor, late, done, [p3]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(batchIdOf(done), 3n);
    expect(await groupBits(escrow, bt(done))).to.deep.equal([false, false, 0n]);
    expect(await groupBits(escrow, bt(late))).to.deep.equal([false, false, 0n]);
  });

  it("settleGroup takes exactly the leader's group: leader first, every follow-up once, in order; no stranger", async () => {
    const f = await loadFixture(v2Fixture);
    const { escrow, requestor, providers } = f;
    const [p0, p1, p2, p3, p4] = providers as unknown as [Signer, Signer, Signer, Signer, Signer];
    const g = await groupOf(
      f,
      [R, R, W],
      [
        { seat: p3, root: R },
        { seat: p4, root: R },
      ],
    );
    const [L, F1, F2] = g.tuples as [unknown[], unknown[], unknown[]];
    const [sL, s1, s2] = g.statements as [Statements, Statements, Statements];
    // another open batch of the same requestor and qube, outside the group
    const x = await makeBatch(requestor, [p3], { nonce: 9n, quorum: 1 });
    await openBatch(escrow, requestor, x, [p3]);
    const sx = await statementsOf(escrow, x, [p3], [[R]]);
    const lid = batchIdOf(g.leader);
    const cases: [unknown[][], Statements[], string][] = [
      [[L, F1], [sL, s1], lid],
      [[L, F2, F1], [sL, s2, s1], lid],
      [[L, F1, F1], [sL, s1, s1], lid],
      [[L, F1, bt(x)], [sL, s1, sx], lid],
      [[L, F1, F2, bt(x)], [sL, s1, s2, sx], lid],
      [[F1, L, F2], [s1, sL, s2], batchIdOf(g.batches[1]!)],
      [[L], [sL], ZERO],
    ];
    for (const [batches, sts, id] of cases) {
      await expect(escrow.connect(requestor).settleGroup(batches, sigs(sts), opens(sts)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2GroupMismatch")
        .withArgs(id);
      await expect(escrow.finalizeGroup(batches, comms(sts), opens(sts)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2GroupMismatch")
        .withArgs(id);
    }
    await expect(escrow.connect(requestor).settleGroup([L, F1, F2], sigs([sL, s1]), opens([sL, s1, s2])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2GroupMismatch")
      .withArgs(ZERO);
    // each batch is checked as settle checks it: a signature of another batch fails
    await expect(escrow.connect(requestor).settleGroup([L, F1, F2], sigs([sL, s2, s2]), opens([sL, s1, s2])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
      .withArgs(batchIdOf(g.batches[1]!), await p3.getAddress());
    // a member under dispute: the group goes through the dispute path
    await escrow.connect(requestor).propose(F2, s2.signatures, s2.commitments);
    await expect(escrow.connect(requestor).settleGroup([L, F1, F2], sigs([sL, s1, s2]), opens([sL, s1, s2])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(batchIdOf(g.batches[2]!), 2n);
    expect(await balances(escrow, [p0, p1, p2])).to.deep.equal(Array(3).fill(DEPOSIT - STAKE2));
  });

  it("the requestor vanishes: the seats propose each batch, add, reveal and finalize the group; nobody honest is dropped", async () => {
    const f = await loadFixture(v2Fixture);
    const { escrow, requestor, providers, outsider } = f;
    const [p0, p1, p2, p3] = providers as unknown as [Signer, Signer, Signer, Signer];
    const g = await groupOf(f, [R, R, W], [{ seat: p3, root: R }]);
    const [L, T] = g.tuples as [unknown[], unknown[]];
    const [sL, sT] = g.statements as [Statements, Statements];
    const lid = batchIdOf(g.leader);
    const tid = batchIdOf(g.batches[1]!);
    await time.increaseTo(g.batches[1]!.revealDeadline + 1);
    // each seat knows its own column only: seat 0 proposes the leader, the tie-breaker its own batch
    const only = (st: Statements, seat: number, k: number) => ({
      commitments: st.commitments.map((c, pos) => (pos % k === seat ? c : ZERO)),
      signatures: st.signatures.map((s, i) => (Math.floor(i / 2) === seat ? s : ZERO)),
    });
    const mine = only(sL, 0, 3);
    await escrow.connect(p0).propose(L, mine.signatures, mine.commitments);
    await escrow.connect(p3).propose(T, sT.signatures, sT.commitments);
    // seats 1 and 2 add their columns in the commitment window
    let current = mine.commitments;
    for (const seat of [1, 2]) {
      await escrow
        .connect([p1, p2][seat - 1]!)
        .addCommitments(L, current, seat, sL.signatures.slice(2 * seat, 2 * seat + 2), sL.columns[seat]!);
      current = current.map((c, pos) => (pos % 3 === seat ? sL.commitments[pos]! : c));
    }
    await time.increase(WINDOW);
    // the honest seats reveal on chain; the dissenter stays silent
    for (const [signer, seat] of [
      [p0, 0],
      [p1, 1],
    ] as const) {
      await escrow.connect(signer).reveal(L, current, [hex32(seat), R, saltOf(0, seat)]);
    }
    await escrow.connect(p3).reveal(T, sT.commitments, [hex32(0), R, saltOf(0, 0)]);
    await time.increase(WINDOW + 1);
    // a settler cannot leave out an opening recorded on chain
    const withoutSeat1 = sL.openings.map((x, i) => (Math.floor(i / 2) === 1 || Math.floor(i / 2) === 2 ? ZERO : x));
    await expect(escrow.connect(outsider).finalizeGroup([L, T], [current, sT.commitments], [withoutSeat1, sT.openings]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2RevealMissing")
      .withArgs(lid, 1);
    const openings = sL.openings.map((x, i) => (Math.floor(i / 2) === 2 ? ZERO : x));
    await expect(escrow.connect(outsider).finalizeGroup([L, T], [current, sT.commitments], [openings, sT.openings]))
      .to.emit(escrow, "Settled")
      .withArgs(lid, 2, STAKE2)
      .and.to.emit(escrow, "Settled")
      .withArgs(tid, 1, 0);
    const share = STAKE2 / 3n;
    expect(await balances(escrow, [p0, p1, p2, p3])).to.deep.equal([
      DEPOSIT + PRICE2 + share,
      DEPOSIT + PRICE2 + share,
      DEPOSIT - STAKE2, // committed, silent after the proposal: slashed
      DEPOSIT + PRICE2 + share,
    ]);
    expect(await escrow.balanceOf(await requestor.getAddress())).to.equal(
      DEPOSIT - 3n * PRICE2 + (STAKE2 - 3n * share),
    );
  });

  it("reclaim works for every batch of a group after its final deadline; a proposed leader finalizes without a reclaimed follow-up", async () => {
    const f = await loadFixture(v2Fixture);
    const { escrow, token, requestor, providers, outsider } = f;
    const g = await groupOf(f, [R, R, W], [{ seat: providers[3]!, root: R }]);
    const h = await groupOf(f, [R, R, R], [{ seat: providers[4]!, root: R }], {}, 3n);
    const i = await groupOf(f, [R, R, R], [{ seat: providers[4]!, root: R }], {}, 5n);
    const [L, T] = g.tuples as [unknown[], unknown[]];
    const [sL, sT] = g.statements as [Statements, Statements];
    const lid = batchIdOf(g.leader);
    const tid = batchIdOf(g.batches[1]!);
    const accounts = await Promise.all([requestor, ...providers, outsider].map((s) => s.getAddress()));
    const all = [...g.batches, ...h.batches, ...i.batches];
    const [sH] = h.statements as [Statements];
    const check = async () =>
      expect(await token.balanceOf(await escrow.getAddress())).to.equal(await owedV2(escrow, accounts, all));
    await expect(escrow.reclaim(T))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooEarly")
      .withArgs(tid, g.batches[1]!.finalDeadline);
    await time.increaseTo(g.leader.commitDeadline + 1);
    await escrow.connect(requestor).propose(L, sL.signatures, sL.commitments);
    await escrow.connect(requestor).propose(h.tuples[0]!, sH.signatures, sH.commitments);
    await time.increase(2 * WINDOW + 1);
    // the tie-breaker is still open: it can still be proposed, so the group waits
    await expect(escrow.finalizeGroup([L, T], [sL.commitments, sT.commitments], [sL.openings, sT.openings]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(tid, 1n);
    await time.increaseTo(i.batches[1]!.finalDeadline + 1);
    await expect(escrow.connect(requestor).settleGroup(i.tuples, sigs(i.statements), opens(i.statements)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooLate")
      .withArgs(batchIdOf(i.leader), i.leader.finalDeadline);
    for (const b of [T, h.tuples[1]!, ...i.tuples]) await escrow.reclaim(b);
    await check();
    // without the reclaimed tie-breaker the leader alone has no winner (R, R, W: 4 < 2 + 3)
    await expect(escrow.finalizeGroup([L, T], [sL.commitments, []], [sL.openings, []]))
      .to.emit(escrow, "Settled")
      .withArgs(lid, 0, 0);
    await check();
    await expect(escrow.finalizeGroup([L, T], [sL.commitments, []], [sL.openings, []]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(lid, 3n);
    // a winner without the reclaimed follow-up: the leader's three votes
    await expect(escrow.finalizeGroup(h.tuples, [sH.commitments, []], [sH.openings, []]))
      .to.emit(escrow, "Settled")
      .withArgs(batchIdOf(h.leader), 3, 0);
    await check();
    // nothing of the group is under dispute any more
    await expect(escrow.finalizeGroup(i.tuples, [[], []], [[], []]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(batchIdOf(i.leader), 4n);
    expect(await balances(escrow, [requestor, ...providers])).to.deep.equal([
      DEPOSIT - 3n * PRICE2,
      ...Array(3).fill(DEPOSIT + PRICE2),
      DEPOSIT,
      DEPOSIT,
    ]);
  });
});
