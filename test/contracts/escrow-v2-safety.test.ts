import { expect } from "chai";
import fc from "fast-check";
import type { EscrowBatch } from "../../src/chain/escrow-v2-batch.js";
import { batchIdOf } from "../../src/chain/escrow-v2-batch.js";
import {
  bt,
  DEPOSIT,
  deployV2,
  makeBatch,
  openBatch,
  openFollowUpBatch,
  owedV2,
  PRICE2,
  R,
  STAKE2,
  statementsOf,
  uniform,
  v2Fixture,
  W,
  ZERO,
} from "./escrow-v2-fixture.js";
import { hex32, networkHelpers, type TokenT } from "./helpers.js";

const { loadFixture, time } = networkHelpers;

async function reentrantFixture() {
  return deployV2("ReentrantToken");
}

describe("AirqubeEscrowV2 safety", () => {
  it("isolation: settling, disputing and reclaiming one batch never moves another's locked funds", async () => {
    const { escrow, token, requestor, providers, outsider } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 3);
    const escrowAddress = await escrow.getAddress();
    const accounts = await Promise.all([requestor, ...providers, outsider].map((s) => s.getAddress()));
    const a = await makeBatch(requestor, seats, { nonce: 1n, jobs: 2 });
    const b = await makeBatch(requestor, seats, { nonce: 2n, jobs: 3, stake: 2n * STAKE2 });
    const c = await makeBatch(requestor, seats, { nonce: 3n });
    for (const x of [a, b, c]) await openBatch(escrow, requestor, x, seats);
    const all = [a, b, c];
    const check = async () =>
      expect(await token.balanceOf(escrowAddress)).to.equal(await owedV2(escrow, accounts, all));
    // A's statements do not settle B (ids differ), and A settles without touching B's or C's locks
    const sa = await statementsOf(escrow, a, seats, uniform(a, [R, R, W]));
    await expect(escrow.connect(requestor).settle(bt(b), sa.signatures, [...sa.openings, ...sa.openings.slice(0, 6)]))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
      .withArgs(batchIdOf(b), b.providers[0]!);
    await escrow.connect(requestor).settle(bt(a), sa.signatures, sa.openings);
    await check();
    // everyone withdraws everything: what stays is exactly B's and C's locks
    for (const s of [requestor, ...providers, outsider]) {
      const bal = await escrow.balanceOf(await s.getAddress());
      if (bal > 0n) await escrow.connect(s).withdraw(bal);
    }
    expect(await token.balanceOf(escrowAddress)).to.equal((b.price + b.stake) * 3n * 3n + (c.price + c.stake) * 3n);
    // B goes to dispute, C is reclaimed: B is still whole and settles in full afterwards
    const sb = await statementsOf(escrow, b, seats, uniform(b, [R, R, R]));
    await time.increaseTo(b.commitDeadline + 1);
    await escrow.connect(requestor).propose(bt(b), sb.signatures, sb.commitments);
    await time.increaseTo(c.finalDeadline + 1);
    await escrow.reclaim(bt(c));
    await check();
    await escrow.finalize(bt(b), sb.commitments, sb.openings);
    await check();
    for (const p of b.providers) expect(await escrow.balanceOf(p)).to.equal(3n * (PRICE2 + 2n * STAKE2) + STAKE2);
    for (const s of [requestor, ...providers, outsider]) {
      const bal = await escrow.balanceOf(await s.getAddress());
      if (bal > 0n) await escrow.connect(s).withdraw(bal);
    }
    expect(await token.balanceOf(escrowAddress)).to.equal(0n);
  });

  it("nonces: a batch cannot be opened twice, a ring slot waits for its batch to close, then takes a later nonce", async () => {
    const { escrow, requestor, providers } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 1);
    const first = await makeBatch(requestor, seats, { nonce: 5n, quorum: 1 });
    await openBatch(escrow, requestor, first, seats);
    const sameSlot = await makeBatch(requestor, seats, { nonce: 5n + 256n, quorum: 1 });
    await expect(openBatch(escrow, requestor, sameSlot, seats))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2NonceUnavailable")
      .withArgs(first.requestor, 5n + 256n);
    const st = await statementsOf(escrow, first, seats, [[R]]);
    await escrow.connect(requestor).settle(bt(first), st.signatures, st.openings);
    // the same batch again (same nonce), or an older nonce of the slot: refused even though the slot is closed
    for (const again of [first, { ...first, nonce: 5n, price: 2n * PRICE2 }]) {
      await expect(openBatch(escrow, requestor, again, seats))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2NonceUnavailable")
        .withArgs(first.requestor, 5n);
    }
    await openBatch(escrow, requestor, sameSlot, seats);
    expect((await escrow.batchState(bt(sameSlot)))[0]).to.equal(1n);
    // the old batch's record is gone: it reads as None and cannot be settled again
    expect((await escrow.batchState(bt(first)))[0]).to.equal(0n);
    await expect(escrow.connect(requestor).settle(bt(first), st.signatures, st.openings))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
      .withArgs(batchIdOf(first), 0n);
    // another requestor's nonce 5 is its own
    const other = await makeBatch(providers[4]!, seats, { nonce: 5n, quorum: 1 });
    await openBatch(escrow, providers[4]!, other, seats);
  });

  it("multicall: settle the last batch and open the next in one transaction", async () => {
    const { escrow, requestor, providers } = await loadFixture(v2Fixture);
    const seats = providers.slice(0, 3);
    const one = await makeBatch(requestor, seats, { nonce: 7n });
    const two = await makeBatch(requestor, seats, { nonce: 7n + 256n });
    await openBatch(escrow, requestor, one, seats);
    const st = await statementsOf(escrow, one, seats, [[R, R, R]]);
    const { acceptsOf } = await import("./escrow-v2-fixture.js");
    const calls = [
      escrow.interface.encodeFunctionData("settle", [bt(one), st.signatures, st.openings]),
      escrow.interface.encodeFunctionData("open", [bt(two), await acceptsOf(escrow, two, seats)]),
    ];
    const multi = escrow as unknown as { connect(s: unknown): { multicall(d: string[]): Promise<unknown> } };
    await multi.connect(requestor).multicall(calls);
    expect((await escrow.batchState(bt(two)))[0]).to.equal(1n);
    for (const p of one.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT + PRICE2 - STAKE2);
    // in reverse order the open fails (the slot is still busy) and nothing happens
    await expect(multi.connect(requestor).multicall([calls[1]!, calls[0]!])).to.be.revertedWithCustomError(
      escrow,
      "AirqubeEscrowV2NonceUnavailable",
    );
  });

  describe("reentrancy through a malicious token", () => {
    it("a token re-entering withdraw() during a withdrawal makes it revert", async () => {
      const { escrow, token, outsider } = await loadFixture(reentrantFixture);
      await token.arm(await escrow.getAddress(), escrow.interface.encodeFunctionData("withdraw", [1n]), true);
      await expect(escrow.connect(outsider).withdraw(5n)).to.be.revertedWithCustomError(
        escrow,
        "ReentrancyGuardReentrantCall",
      );
      expect(await escrow.balanceOf(await outsider.getAddress())).to.equal(DEPOSIT);
    });

    it("a swallowed re-entry achieves nothing: debited first, paid once", async () => {
      const { escrow, token, outsider } = await loadFixture(reentrantFixture);
      const me = await outsider.getAddress();
      await token.arm(
        await escrow.getAddress(),
        escrow.interface.encodeFunctionData("withdraw", [DEPOSIT - 5n]),
        false,
      );
      const before = await token.balanceOf(me);
      await escrow.connect(outsider).withdraw(5n);
      expect(await token.balanceOf(me)).to.equal(before + 5n);
      expect([await token.attempts(), await token.successes()]).to.deep.equal([1n, 0n]);
      expect((await token.lastError()).slice(0, 10)).to.equal(
        escrow.interface.getError("ReentrancyGuardReentrantCall")!.selector,
      );
      expect(await escrow.balanceOf(me)).to.equal(DEPOSIT - 5n);
    });

    it("re-entering settle() from a deposit's transfer is refused", async () => {
      const { escrow, token, requestor, providers, outsider } = await loadFixture(reentrantFixture);
      const seats = providers.slice(0, 1);
      const batch = await makeBatch(requestor, seats, { quorum: 1 });
      await openBatch(escrow, requestor, batch, seats);
      const st = await statementsOf(escrow, batch, seats, [[R]]);
      await token.arm(
        await escrow.getAddress(),
        escrow.interface.encodeFunctionData("settle", [bt(batch), st.signatures, st.openings]),
        true,
      );
      await expect(escrow.connect(outsider).deposit(1n)).to.be.revertedWithCustomError(
        escrow,
        "ReentrancyGuardReentrantCall",
      );
    });
  });

  describe("invariant: the escrow holds exactly what it owes", () => {
    type Op =
      | { kind: "open"; k: number; jobs: number; stake: number; nonce: number }
      | { kind: "settle"; batch: number; liar: number }
      | { kind: "release"; batch: number }
      | { kind: "propose"; batch: number; drop: number; by: number }
      | { kind: "add"; batch: number; seat: number }
      | { kind: "reveal"; batch: number; seat: number }
      | { kind: "finalize"; batch: number; hide: number }
      | { kind: "reclaim"; batch: number }
      | { kind: "followUp"; batch: number; nonce: number; liar: boolean }
      | { kind: "settleGroup"; batch: number }
      | { kind: "disputeGroup"; batch: number; drop: number; hide: number }
      | { kind: "finalizeGroup"; batch: number; hide: number }
      | { kind: "deposit"; who: number; amount: number }
      | { kind: "withdraw"; who: number; amount: number }
      | { kind: "wait"; seconds: number };

    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant("open" as const),
          k: fc.integer({ min: 1, max: 3 }),
          jobs: fc.integer({ min: 1, max: 3 }),
          stake: fc.integer({ min: 0, max: 5 }),
          nonce: fc.nat(600),
        }),
      },
      fc.record({ kind: fc.constant("settle" as const), batch: fc.nat(7), liar: fc.nat(7) }),
      fc.record({ kind: fc.constant("release" as const), batch: fc.nat(7) }),
      fc.record({ kind: fc.constant("propose" as const), batch: fc.nat(7), drop: fc.nat(3), by: fc.nat(3) }),
      fc.record({ kind: fc.constant("add" as const), batch: fc.nat(7), seat: fc.nat(2) }),
      fc.record({ kind: fc.constant("reveal" as const), batch: fc.nat(7), seat: fc.nat(2) }),
      fc.record({ kind: fc.constant("finalize" as const), batch: fc.nat(7), hide: fc.nat(511) }),
      fc.record({ kind: fc.constant("reclaim" as const), batch: fc.nat(7) }),
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant("followUp" as const),
          batch: fc.nat(7),
          nonce: fc.nat(600),
          liar: fc.boolean(),
        }),
      },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant("settleGroup" as const), batch: fc.nat(7) }) },
      {
        weight: 2,
        arbitrary: fc.record({
          kind: fc.constant("disputeGroup" as const),
          batch: fc.nat(7),
          drop: fc.nat(3),
          hide: fc.nat(511),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({ kind: fc.constant("finalizeGroup" as const), batch: fc.nat(7), hide: fc.nat(511) }),
      },
      fc.record({ kind: fc.constant("deposit" as const), who: fc.nat(3), amount: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ kind: fc.constant("withdraw" as const), who: fc.nat(3), amount: fc.integer({ min: 0, max: 600 }) }),
      fc.record({ kind: fc.constant("wait" as const), seconds: fc.constantFrom(60, 120, 250) }),
    );

    interface Tracked {
      batch: EscrowBatch;
      st: Awaited<ReturnType<typeof statementsOf>>;
      current?: string[];
      /** The follow-ups this batch leads, in the order they were opened. */
      followUps: Tracked[];
      leader?: Tracked;
    }

    /** The openings `finalize` gets: none where the proposal has no commitment, and those `hide` selects. */
    const finalOpenings = (t: Tracked, hide: number) =>
      t.st.openings.map((x, i) =>
        t.current![Math.floor(i / 2)] === ZERO || (hide >> Math.floor(i / 2)) & 1 ? ZERO : x,
      );

    it("after any sequence of random operations, including disputes and groups (fast-check, seeded)", async function () {
      this.timeout(300_000);
      let applied = 0;
      let reverted = 0;
      // group calls that went through (not the no-ops of a pick without a group)
      const groups = { followUp: 0, settleGroup: 0, finalizeGroup: 0 };
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 24 }), async (ops) => {
          const f = await loadFixture(v2Fixture);
          const { escrow, requestor } = f;
          const seats = f.providers.slice(0, 3);
          const people = [requestor, ...seats];
          const accounts = await Promise.all([requestor, ...f.providers, f.outsider].map((s) => s.getAddress()));
          const escrowAddress = await escrow.getAddress();
          const batches: Tracked[] = [];
          const pick = (i: number) => batches[i % Math.max(batches.length, 1)];
          const leaders = () => batches.filter((t) => t.followUps.length > 0);
          const groupOf = (i: number) => {
            const t = leaders()[i % Math.max(leaders().length, 1)];
            return t && [t, ...t.followUps];
          };
          const propose = async (t: Tracked, drop: number, by: number) => {
            const k = t.batch.providers.length;
            const keep = (pos: number) => pos % k !== drop;
            const commitments = t.st.commitments.map((c, pos) => (keep(pos) ? c : ZERO));
            const signatures = t.st.signatures.map((x, i) => (Math.floor(i / 2) !== drop ? x : ZERO));
            await escrow.connect(people[by % (k + 1)]!).propose(bt(t.batch), signatures, commitments);
            t.current = commitments;
          };
          const finalizeGroup = async (group: Tracked[], hide: number) => {
            await escrow.finalizeGroup(
              group.map((m) => bt(m.batch)),
              group.map((m) => m.current ?? []),
              group.map((m) => (m.current ? finalOpenings(m, hide) : [])),
            );
            groups.finalizeGroup++;
          };
          const apply = async (o: Op) => {
            switch (o.kind) {
              case "open": {
                const ss = seats.slice(0, o.k);
                const batch = await makeBatch(requestor, ss, {
                  jobs: o.jobs,
                  nonce: BigInt(o.nonce),
                  stake: BigInt(o.stake) * 10n ** 17n + BigInt(o.stake),
                });
                // the last seat of a k = 3 batch lies on job 0
                const roots = uniform(
                  batch,
                  ss.map(() => R),
                );
                if (o.k === 3) roots[0] = [R, R, W];
                const st = await statementsOf(escrow, batch, ss, roots);
                await openBatch(escrow, requestor, batch, ss);
                batches.push({ batch, st, followUps: [] });
                return;
              }
              case "followUp": {
                // a k = 1 tie-breaker (a seat outside the leader's) agreeing with the majority, or not
                const leader = pick(o.batch);
                if (!leader) return;
                const tieSeat = f.providers[3]!;
                const batch = await makeBatch(requestor, [tieSeat], {
                  nonce: BigInt(o.nonce),
                  quorum: 1,
                  jobs: leader.batch.jobs,
                  qubesRoot: leader.batch.qubesRoot,
                  stake: leader.batch.stake,
                });
                const st = await statementsOf(escrow, batch, [tieSeat], uniform(batch, [o.liar ? W : R]));
                await openFollowUpBatch(escrow, requestor, batch, leader.batch, [tieSeat]);
                const t: Tracked = { batch, st, followUps: [], leader };
                leader.followUps.push(t);
                groups.followUp++;
                batches.push(t);
                return;
              }
              case "settleGroup": {
                const group = groupOf(o.batch);
                if (!group) return;
                await escrow.connect(requestor).settleGroup(
                  group.map((m) => bt(m.batch)),
                  group.map((m) => m.st.signatures),
                  group.map((m) => m.st.openings),
                );
                groups.settleGroup++;
                return;
              }
              case "finalizeGroup": {
                const group = groupOf(o.batch);
                if (group) await finalizeGroup(group, o.hide);
                return;
              }
              case "settle": {
                const t = pick(o.batch);
                if (t) await escrow.connect(requestor).settle(bt(t.batch), t.st.signatures, t.st.openings);
                return;
              }
              case "release": {
                const t = pick(o.batch);
                if (t) await escrow.connect(requestor).release(bt(t.batch));
                return;
              }
              case "propose": {
                const t = pick(o.batch);
                if (t) await propose(t, o.drop, o.by);
                return;
              }
              case "disputeGroup": {
                // the requestor proposes each batch of a group not yet under dispute (dropping a seat of the
                // leader's, maybe; one batch's revert does not stop the others), waits out both windows and
                // finalizes the group
                const group = groupOf(o.batch);
                if (!group) return;
                let failure: unknown;
                let proposed = 0;
                for (const t of group) {
                  if (t.current) continue;
                  try {
                    await propose(t, t === group[0] ? o.drop : -1, 0);
                    proposed++;
                  } catch (error) {
                    failure = error;
                  }
                }
                if (failure !== undefined && proposed === 0) throw failure;
                await time.increase(201);
                await finalizeGroup(group, o.hide);
                return;
              }
              case "add": {
                const t = pick(o.batch);
                if (!t?.current) return;
                const k = t.batch.providers.length;
                const seat = o.seat % k;
                await escrow.addCommitments(
                  bt(t.batch),
                  t.current,
                  seat,
                  t.st.signatures.slice(2 * seat, 2 * seat + 2),
                  t.st.columns[seat]!,
                );
                t.current = t.current.map((c, pos) => (pos % k === seat ? t.st.commitments[pos]! : c));
                return;
              }
              case "reveal": {
                const t = pick(o.batch);
                if (!t?.current) return;
                const k = t.batch.providers.length;
                const entries: string[] = [];
                for (let pos = o.seat % k; pos < t.current.length; pos += k) {
                  entries.push(hex32(pos), t.st.openings[2 * pos]!, t.st.openings[2 * pos + 1]!);
                }
                await escrow.reveal(bt(t.batch), t.current, entries);
                return;
              }
              case "finalize": {
                const t = pick(o.batch);
                if (!t?.current) return;
                await escrow.finalize(bt(t.batch), t.current, finalOpenings(t, o.hide));
                return;
              }
              case "reclaim": {
                const t = pick(o.batch);
                if (t) await escrow.reclaim(bt(t.batch));
                return;
              }
              case "deposit":
                await escrow.connect(people[o.who]!).deposit(BigInt(o.amount) * 10n ** 18n);
                return;
              case "withdraw":
                await escrow.connect(people[o.who]!).withdraw(BigInt(o.amount) * 10n ** 18n);
                return;
              case "wait":
                await time.increase(o.seconds);
                return;
            }
          };
          for (const o of ops) {
            try {
              await apply(o);
              applied++;
            } catch (error) {
              // reverts are expected (wrong status, window, slot, balance); only the escrow's own errors
              expect(String((error as Error).message)).to.match(/AirqubeEscrowV2|reverted/);
              reverted++;
            }
            expect(await (f.token as TokenT).balanceOf(escrowAddress)).to.equal(
              await owedV2(
                escrow,
                accounts,
                batches.map((t) => t.batch),
              ),
            );
          }
        }),
        { numRuns: 60, seed: 18, endOnFailure: true },
      );
      expect(groups.followUp).to.be.greaterThan(5);
      expect(groups.settleGroup).to.be.greaterThan(0);
      expect(groups.finalizeGroup).to.be.greaterThan(0);
      expect(applied).to.be.greaterThan(80);
      expect(reverted).to.be.greaterThan(10);
    });
  });
});
