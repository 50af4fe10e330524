import { expect } from "chai";
import type { Signer } from "ethers";
import { batchIdOf, columnHashOf, compactSignature } from "../../src/chain/escrow-v2-batch.js";
import {
  bt,
  DEPOSIT,
  type EscrowV2T,
  makeBatch,
  openBatch,
  PRICE2,
  R,
  STAKE2,
  saltOf,
  statementsOf,
  uniform,
  v2Fixture,
  W,
  ZERO,
} from "./escrow-v2-fixture.js";
import { hex32, networkHelpers } from "./helpers.js";

const { loadFixture, time } = networkHelpers;
const WINDOW = 100;

/** Keeps only the given seats' columns (others zero) in job-major commitments, and their signatures. */
function onlySeats(k: number, st: { commitments: string[]; signatures: string[] }, seats: number[]) {
  return {
    commitments: st.commitments.map((c, pos) => (seats.includes(pos % k) ? c : ZERO)),
    signatures: st.signatures.map((x, i) => (seats.includes(Math.floor(i / 2)) ? x : ZERO)),
  };
}

/** The openings of the given seats only (others two zeros). */
function openingsOf(k: number, openings: string[], seats: number[]): string[] {
  return openings.map((x, i) => (seats.includes(Math.floor(i / 2) % k) ? x : ZERO));
}

async function proposedAt(escrow: EscrowV2T, batch: unknown[]): Promise<number> {
  return Number((await escrow.batchState(batch))[1]);
}

describe("AirqubeEscrowV2 disputes", () => {
  it("a settler drops an honest provider; it adds its signed column, reveals and is paid", async () => {
    const { escrow, requestor, providers } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 3);
    const batch = await makeBatch(requestor, seats, { jobs: 2 });
    const b = bt(batch);
    await openBatch(escrow, requestor, batch, seats);
    const st = await statementsOf(escrow, batch, seats, uniform(batch, [R, R, R]));
    const dropped = onlySeats(3, st, [0, 1]);
    // before the commit deadline a requestor cannot leave a seat out
    await expect(escrow.connect(requestor).propose(b, dropped.signatures, dropped.commitments))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooEarly")
      .withArgs(st.id, batch.commitDeadline);
    await time.increaseTo(batch.commitDeadline + 1);
    await expect(escrow.connect(requestor).propose(b, dropped.signatures, dropped.commitments))
      .to.emit(escrow, "Proposed")
      .withArgs(st.id, batch.requestor, dropped.commitments, batch.commitDeadline + 2 + WINDOW);
    // the fast path and a reclaim are closed while the dispute runs
    await expect(escrow.connect(requestor).settle(b, st.signatures, st.openings))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(st.id, 2n);
    // no reveal during the commitment window: nothing published can be copied into a late column
    await expect(escrow.reveal(b, dropped.commitments, [hex32(0), R, saltOf(0, 0)]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooEarly")
      .withArgs(st.id, (await proposedAt(escrow, b)) + WINDOW);
    const sig2 = st.signatures.slice(4, 6);
    await expect(escrow.connect(seats[2]!).addCommitments(b, dropped.commitments, 2, sig2, st.columns[2]!))
      .to.emit(escrow, "CommitmentsAdded")
      .withArgs(st.id, 2, st.columns[2]!);
    await time.increase(WINDOW);
    // seat 2 opens on chain itself
    const own2 = [hex32(2), R, saltOf(0, 2), hex32(5), R, saltOf(1, 2)];
    await expect(escrow.connect(seats[2]!).reveal(b, st.commitments, own2))
      .to.emit(escrow, "Revealed")
      .withArgs(st.id, 5, R, saltOf(1, 2));
    expect((await escrow.batchState(b))[2]).to.equal((1n << 2n) | (1n << 5n));
    await time.increase(WINDOW);
    // the settler cannot leave seat 2's recorded openings out
    await expect(escrow.finalize(b, st.commitments, openingsOf(3, st.openings, [0, 1])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2RevealMissing")
      .withArgs(st.id, 2);
    await expect(escrow.connect(requestor).finalize(b, st.commitments, st.openings))
      .to.emit(escrow, "Settled")
      .withArgs(st.id, 6n, 0n);
    for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT + 2n * PRICE2);
    expect((await escrow.batchState(b))[0]).to.equal(3n);
  });

  it("a committed seat that stays silent through the reveal window is slashed; one never committed is not", async () => {
    const { escrow, requestor, providers } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 5);
    const batch = await makeBatch(requestor, seats); // quorum 3
    const b = bt(batch);
    await openBatch(escrow, requestor, batch, seats);
    // seat 3 committed but never opens; seat 4 never committed
    const st = await statementsOf(escrow, batch, seats, [[R, R, R, W, undefined]]);
    await time.increaseTo(batch.commitDeadline + 1);
    await escrow.connect(requestor).propose(b, st.signatures, st.commitments);
    await time.increase(2 * WINDOW + 1);
    const openings = openingsOf(5, st.openings, [0, 1, 2]);
    // committed 4, 3 votes: 2 * 3 < quorum 3 + 4 committed, so no winner (v1's rule); the silent seat is slashed
    await expect(escrow.finalize(b, st.commitments, openings))
      .to.emit(escrow, "Settled")
      .withArgs(st.id, 0n, STAKE2);
    // no winner: nobody paid, revealers keep their stakes, the silent seat's stake goes to the requestor
    for (const i of [0, 1, 2, 4]) expect(await escrow.balanceOf(batch.providers[i]!)).to.equal(DEPOSIT);
    expect(await escrow.balanceOf(batch.providers[3]!)).to.equal(DEPOSIT - STAKE2);
    expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT + STAKE2);
  });

  it("with a winner, the silent committed seat's stake goes to the winners and the absent seat is unpaid", async () => {
    const { escrow, requestor, providers } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 5);
    const batch = await makeBatch(requestor, seats);
    const b = bt(batch);
    await openBatch(escrow, requestor, batch, seats);
    const st = await statementsOf(escrow, batch, seats, [[R, R, R, R, undefined]]);
    await time.increaseTo(batch.commitDeadline + 1);
    await escrow.connect(requestor).propose(b, st.signatures, st.commitments);
    await time.increase(2 * WINDOW + 1);
    // committed 4, 4 votes: 2 * 4 >= 3 + 4
    await escrow.finalize(b, st.commitments, st.openings);
    for (const i of [0, 1, 2, 3]) expect(await escrow.balanceOf(batch.providers[i]!)).to.equal(DEPOSIT + PRICE2);
    expect(await escrow.balanceOf(batch.providers[4]!)).to.equal(DEPOSIT);
    expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT - 4n * PRICE2);
  });

  it("a seat settles after the reveal deadline when the requestor vanished; others join", async () => {
    const { escrow, requestor, providers, outsider } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 3);
    const batch = await makeBatch(requestor, seats);
    const b = bt(batch);
    await openBatch(escrow, requestor, batch, seats);
    const st = await statementsOf(escrow, batch, seats, [[R, R, R]]);
    const mine = onlySeats(3, st, [0]);
    await time.increaseTo(batch.commitDeadline + 1);
    await expect(escrow.connect(seats[0]!).propose(b, mine.signatures, mine.commitments))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooEarly")
      .withArgs(st.id, batch.revealDeadline);
    await expect(escrow.connect(outsider).propose(b, mine.signatures, mine.commitments))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2Unauthorized")
      .withArgs(await outsider.getAddress());
    await time.increaseTo(batch.revealDeadline + 1);
    await escrow.connect(seats[0]!).propose(b, mine.signatures, mine.commitments);
    const c1 = mine.commitments.map((c, i) => (i === 1 ? st.commitments[1]! : c));
    await escrow.addCommitments(b, mine.commitments, 1, st.signatures.slice(2, 4), st.columns[1]!);
    await escrow.addCommitments(b, c1, 2, st.signatures.slice(4, 6), st.columns[2]!);
    await time.increase(2 * WINDOW + 1);
    await escrow.connect(seats[1]!).finalize(b, st.commitments, st.openings);
    for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT + PRICE2);
  });

  it("a seat that signs a second column after seeing openings is caught: no vote, stake slashed", async () => {
    const { escrow, requestor, providers } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 3);
    const batch = await makeBatch(requestor, seats);
    const b = bt(batch);
    await openBatch(escrow, requestor, batch, seats);
    // seat 2 gave the requestor a garbage column A; after the openings of seats 0 and 1 became public (a pending
    // settlement), it signs column B with the copied root and proposes with it
    const a = await statementsOf(escrow, batch, seats, [[R, R, W]]);
    const copied = await statementsOf(escrow, batch, seats, [[R, R, R]]);
    const hashes = [columnHashOf(a.columns[2]!), columnHashOf(copied.columns[2]!)];
    const sigs = [...a.signatures.slice(4, 6), ...copied.signatures.slice(4, 6)];
    await expect(escrow.proveEquivocation(b, 2, hashes, sigs))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(a.id, 1n);
    await time.increaseTo(batch.revealDeadline + 1);
    await escrow.connect(seats[2]!).propose(b, copied.signatures, copied.commitments);
    await expect(escrow.proveEquivocation(b, 2, [hashes[0]!, hashes[0]!], sigs))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2NotEquivocation")
      .withArgs(a.id, 2);
    await expect(escrow.proveEquivocation(b, 3, hashes, sigs))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
      .withArgs(a.id);
    await expect(escrow.proveEquivocation(b, 1, hashes, sigs))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
      .withArgs(a.id, batch.providers[1]!);
    await expect(escrow.connect(requestor).proveEquivocation(b, 2, hashes, sigs))
      .to.emit(escrow, "Equivocated")
      .withArgs(a.id, 2);
    await time.increase(WINDOW + 1);
    // seat 2 reveals its copied opening on chain; it still gets no vote
    await escrow.connect(seats[2]!).reveal(b, copied.commitments, [hex32(2), R, saltOf(0, 2)]);
    await time.increase(WINDOW);
    await expect(escrow.finalize(b, copied.commitments, copied.openings))
      .to.emit(escrow, "Settled")
      .withArgs(a.id, 0n, STAKE2);
    expect(await escrow.balanceOf(batch.providers[2]!)).to.equal(DEPOSIT - STAKE2);
    for (const i of [0, 1]) expect(await escrow.balanceOf(batch.providers[i]!)).to.equal(DEPOSIT);
    expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT + STAKE2);
  });

  describe("reverts", () => {
    async function disputed(f: Awaited<ReturnType<typeof v2Fixture>>, seats: Signer[]) {
      const batch = await makeBatch(f.requestor, seats, { jobs: 2 });
      await openBatch(f.escrow, f.requestor, batch, seats);
      const st = await statementsOf(f.escrow, batch, seats, uniform(batch, [R, R, R]));
      const dropped = onlySeats(3, st, [0, 1]);
      return { batch, b: bt(batch), st, dropped };
    }

    it("propose: status, lengths, signatures and the last moment", async () => {
      const f = await loadFixture(v2Fixture);
      const { escrow, requestor } = f;
      const seats = f.providers.slice(0, 3);
      const { batch, b, st, dropped } = await disputed(f, seats);
      const as = escrow.connect(requestor);
      await expect(as.propose(b, st.signatures.slice(2), st.commitments))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
        .withArgs(st.id);
      await expect(as.propose(b, st.signatures, st.commitments.slice(1)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
        .withArgs(st.id);
      const swapped = [...st.signatures.slice(2, 4), ...st.signatures.slice(0, 2), ...st.signatures.slice(4)];
      await expect(as.propose(b, swapped, st.commitments))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
        .withArgs(st.id, batch.providers[0]!);
      // all present: allowed before the commit deadline
      const other = await makeBatch(requestor, seats, { nonce: 2n });
      await openBatch(escrow, requestor, other, seats);
      const so = await statementsOf(escrow, other, seats, [[R, R, R]]);
      await as.propose(bt(other), so.signatures, so.commitments);
      await expect(as.propose(bt(other), so.signatures, so.commitments))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(so.id, 2n);
      await expect(escrow.reclaim(bt(other)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(so.id, 2n);
      // too late: both windows must end by the final deadline
      await time.increaseTo(batch.finalDeadline - 2 * WINDOW + 1);
      await expect(as.propose(b, dropped.signatures, dropped.commitments))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooLate")
        .withArgs(st.id, batch.finalDeadline - 2 * WINDOW);
    });

    it("addCommitments: window, proposal, seat, column and signature", async () => {
      const f = await loadFixture(v2Fixture);
      const { escrow, requestor } = f;
      const seats = f.providers.slice(0, 3);
      const { batch, b, st, dropped } = await disputed(f, seats);
      await time.increaseTo(batch.commitDeadline + 1);
      await escrow.connect(requestor).propose(b, dropped.signatures, dropped.commitments);
      const sig2 = st.signatures.slice(4, 6);
      const col2 = st.columns[2]!;
      await expect(escrow.addCommitments(b, st.commitments, 2, sig2, col2))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2ProposalMismatch")
        .withArgs(st.id);
      for (const [seat, col] of [
        [3, col2],
        [2, col2.slice(1)],
      ] as const) {
        await expect(escrow.addCommitments(b, dropped.commitments, seat, sig2, col))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
          .withArgs(st.id);
      }
      await expect(escrow.addCommitments(b, dropped.commitments, 1, st.signatures.slice(2, 4), st.columns[1]!))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2SeatPresent")
        .withArgs(st.id, 1);
      await expect(escrow.addCommitments(b, dropped.commitments, 2, sig2, [ZERO, ZERO]))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2SeatPresent")
        .withArgs(st.id, 2);
      // a column signed by someone else, or another column than signed
      await expect(escrow.addCommitments(b, dropped.commitments, 2, st.signatures.slice(0, 2), col2))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
        .withArgs(st.id, batch.providers[2]!);
      await expect(escrow.addCommitments(b, dropped.commitments, 2, sig2, [col2[0]!, hex32(1)]))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
        .withArgs(st.id, batch.providers[2]!);
      const at = await proposedAt(escrow, b);
      await time.increaseTo(at + WINDOW + 1);
      await expect(escrow.addCommitments(b, dropped.commitments, 2, sig2, col2))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooLate")
        .withArgs(st.id, at + WINDOW);
      expect(compactSignature(await seats[0]!.signMessage("x"))[0]).to.match(/^0x/);
    });

    it("reveal and finalize: windows, proposal, lengths, openings", async () => {
      const f = await loadFixture(v2Fixture);
      const { escrow, requestor } = f;
      const seats = f.providers.slice(0, 3);
      const { batch, b, st } = await disputed(f, seats);
      await time.increaseTo(batch.commitDeadline + 1);
      await escrow.connect(requestor).propose(b, st.signatures, st.commitments);
      const at = await proposedAt(escrow, b);
      await expect(escrow.finalize(b, st.commitments, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooEarly")
        .withArgs(st.id, at + 2 * WINDOW);
      await time.increaseTo(at + WINDOW + 1);
      const c = st.commitments;
      const rev = (openings: string[], commitments = c) => escrow.reveal(b, commitments, openings);
      await expect(rev([hex32(0), R, saltOf(0, 0)], [...c].reverse()))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2ProposalMismatch")
        .withArgs(st.id);
      for (const bad of [
        [hex32(0), R],
        [hex32(6), R, saltOf(0, 0)],
      ]) {
        await expect(rev(bad)).to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength").withArgs(st.id);
      }
      for (const bad of [
        [hex32(1), R, saltOf(0, 0)], // another seat's salt
        [hex32(1), ZERO, saltOf(0, 1)], // zero root
      ]) {
        await expect(rev(bad)).to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadOpening").withArgs(st.id, 1);
      }
      // the same opening twice in one call is recorded once; again later, nothing new
      const o0 = [hex32(0), R, saltOf(0, 0)];
      await rev([...o0, ...o0]);
      await expect(rev(o0)).to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2NothingToReveal").withArgs(st.id);
      await time.increaseTo(at + 2 * WINDOW + 1);
      await expect(rev([hex32(1), R, saltOf(0, 1)]))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooLate")
        .withArgs(st.id, at + 2 * WINDOW);
      await expect(escrow.finalize(b, [...c].reverse(), st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2ProposalMismatch")
        .withArgs(st.id);
      await expect(escrow.finalize(b, c, st.openings.slice(2)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
        .withArgs(st.id);
      const wrong = [...st.openings];
      wrong[2 * 3 + 1] = hex32(0xdead); // job 1 seat 0: wrong salt
      await expect(escrow.finalize(b, c, wrong))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadOpening")
        .withArgs(st.id, 3);
      // an opening for a seat that never committed is refused too
      const never = await makeBatch(requestor, seats, { nonce: 3n });
      await openBatch(escrow, requestor, never, seats);
      const sn = await statementsOf(escrow, never, seats, [[R, R, undefined]]);
      await time.increaseTo(never.commitDeadline + 1);
      await escrow.connect(requestor).propose(bt(never), sn.signatures, sn.commitments);
      await time.increase(2 * WINDOW + 1);
      const forged = [...sn.openings];
      forged[4] = R;
      forged[5] = saltOf(0, 2);
      await expect(escrow.finalize(bt(never), sn.commitments, forged))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadOpening")
        .withArgs(sn.id, 2);
      await escrow.finalize(b, c, st.openings);
      await expect(escrow.finalize(b, c, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(st.id, 3n);
      expect(batchIdOf(batch)).to.equal(st.id);
      expect(W).to.not.equal(R);
    });
  });
});
