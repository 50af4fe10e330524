import { expect } from "chai";
import type { Signer } from "ethers";
import fc from "fast-check";
import type { EscrowJob, Opening } from "../../src/chain/job.js";
import {
  budgetOf,
  deploy,
  deployEscrowFixture,
  type EscrowT,
  hex32,
  hidden,
  jobIdOf,
  makeJob,
  networkHelpers,
  openAndCommit,
  own,
  PRICE,
  STAKE,
  type TokenT,
  t,
  tuples,
} from "./helpers.js";

const { loadFixture, time } = networkHelpers;
const R = hex32(0xaaaa);
const W = hex32(0xbbbb);

async function reentrantFixture() {
  return deploy("ReentrantToken");
}

describe("AirqubeEscrow safety", () => {
  describe("isolation between jobs", () => {
    it("settling, reclaiming and withdrawing for one job never moves another job's funds", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(deployEscrowFixture);
      const escrowAddress = await escrow.getAddress();
      const a = await makeJob(requestor, providers.slice(0, 3), { nonce: 1n });
      const b = await makeJob(requestor, providers.slice(0, 3), { nonce: 2n });
      const c = await makeJob(requestor, providers.slice(0, 3), { nonce: 3n, stake: STAKE * 2n });
      const oa = await openAndCommit(
        escrow,
        requestor,
        providers,
        a,
        [0, 1, 2].map((i) => own(a, i, R)),
      );
      const ob = await openAndCommit(escrow, requestor, providers, b, [own(b, 0, R), own(b, 1, W), own(b, 2, R)]);
      await openAndCommit(escrow, requestor, providers, c, [own(c, 1, R)]);
      const lockedB = budgetOf(b) + 3n * b.stake;
      const lockedC = budgetOf(c) + c.stake;

      // Settle A and let everyone withdraw everything: what stays is exactly B's and C's locked funds.
      await escrow.connect(requestor).settle(t(a), tuples(oa));
      await expect(escrow.connect(requestor).settle(t(a), tuples(oa))).to.be.revertedWithCustomError(
        escrow,
        "AirqubeEscrowJobNotOpen",
      );
      for (const p of providers.slice(0, 3)) await escrow.connect(p).withdraw();
      expect(await token.balanceOf(escrowAddress)).to.equal(lockedB + lockedC);

      // Reclaim C after its deadline: B is still whole, and B settles in full afterwards.
      await time.increaseTo(c.finalDeadline);
      await expect(escrow.connect(requestor).settle(t(b), tuples(ob))).to.be.revertedWithCustomError(
        escrow,
        "AirqubeEscrowTooLate",
      );
      const d = await makeJob(requestor, providers.slice(0, 3), { nonce: 4n });
      const od = await openAndCommit(
        escrow,
        requestor,
        providers,
        d,
        [0, 1, 2].map((i) => own(d, i, R)),
      );
      await escrow.connect(requestor).reclaim(t(c));
      await escrow.connect(requestor).reclaim(t(b));
      await escrow.connect(requestor).withdraw();
      for (const p of providers.slice(0, 3)) await escrow.connect(p).withdraw();
      expect(await token.balanceOf(escrowAddress)).to.equal(budgetOf(d) + 3n * d.stake);
      await escrow.connect(requestor).settle(t(d), tuples(od));
      for (const p of providers.slice(0, 3)) await escrow.connect(p).withdraw();
      expect(await token.balanceOf(escrowAddress)).to.equal(0n);
    });
  });

  describe("reentrancy through a malicious token", () => {
    it("a token re-entering withdraw() during the payout makes the whole withdrawal revert", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(reentrantFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { quorum: 1 });
      const openings = await openAndCommit(escrow, requestor, providers, job, [own(job, 0, R)]);
      await escrow.connect(requestor).settle(t(job), tuples(openings));
      const payload = escrow.interface.encodeFunctionData("withdraw", []);
      await token.arm(await escrow.getAddress(), payload, true);
      await expect(escrow.connect(providers[0]!).withdraw()).to.be.revertedWithCustomError(
        escrow,
        "ReentrancyGuardReentrantCall",
      );
      expect(await escrow.balanceOf(job.providers[0]!)).to.equal(PRICE + STAKE);
    });

    it("a re-entry that the token swallows achieves nothing: paid once, balance zeroed first", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(reentrantFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { quorum: 1 });
      const openings = await openAndCommit(escrow, requestor, providers, job, [own(job, 0, R)]);
      await escrow.connect(requestor).settle(t(job), tuples(openings));
      await token.arm(await escrow.getAddress(), escrow.interface.encodeFunctionData("withdraw", []), false);
      const before = await token.balanceOf(job.providers[0]!);
      await escrow.connect(providers[0]!).withdraw();
      expect(await token.balanceOf(job.providers[0]!)).to.equal(before + PRICE + STAKE);
      expect([await token.attempts(), await token.successes()]).to.deep.equal([1n, 0n]);
      expect((await token.lastError()).slice(0, 10)).to.equal(
        escrow.interface.getError("ReentrancyGuardReentrantCall")!.selector,
      );
      expect(await token.balanceOf(await escrow.getAddress())).to.equal(0n);
    });

    it("re-entering settle() from the stake transfer of a commit is refused", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(reentrantFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { quorum: 1 });
      await escrow.connect(requestor).openJob(t(job));
      const o = own(job, 0, R);
      await token.arm(
        await escrow.getAddress(),
        escrow.interface.encodeFunctionData("settle", [t(job), tuples([o])]),
        true,
      );
      await expect(escrow.connect(providers[0]!).commit(t(job), 0, o.commitment)).to.be.revertedWithCustomError(
        escrow,
        "ReentrancyGuardReentrantCall",
      );
    });
  });

  describe("invariant: the escrow holds exactly what it owes", () => {
    type Op =
      | { kind: "open"; k: number; stake: number; nonce: number }
      | { kind: "commit"; job: number; seat: number; wrong: boolean }
      | { kind: "reveal"; job: number; seat: number }
      | { kind: "settle"; job: number; withhold: number }
      | { kind: "reclaim"; job: number }
      | { kind: "withdraw"; who: number }
      | { kind: "wait"; seconds: number };

    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        kind: fc.constant("open" as const),
        k: fc.integer({ min: 1, max: 5 }),
        stake: fc.integer({ min: 0, max: 7 }),
        nonce: fc.nat(),
      }),
      fc.record({ kind: fc.constant("commit" as const), job: fc.nat(7), seat: fc.nat(4), wrong: fc.boolean() }),
      fc.record({ kind: fc.constant("commit" as const), job: fc.nat(7), seat: fc.nat(4), wrong: fc.boolean() }),
      fc.record({ kind: fc.constant("reveal" as const), job: fc.nat(7), seat: fc.nat(4) }),
      fc.record({ kind: fc.constant("settle" as const), job: fc.nat(7), withhold: fc.nat(31) }),
      fc.record({ kind: fc.constant("reclaim" as const), job: fc.nat(7) }),
      fc.record({ kind: fc.constant("withdraw" as const), who: fc.nat(5) }),
      fc.record({ kind: fc.constant("wait" as const), seconds: fc.constantFrom(30, 90, 150) }),
    );

    interface Tracked {
      job: EscrowJob;
      chain: Opening[];
    }

    async function owed(escrow: EscrowT, accounts: string[], jobs: Tracked[]): Promise<bigint> {
      let sum = 0n;
      for (const a of accounts) sum += await escrow.balanceOf(a);
      for (const { job } of jobs) {
        const [status, committed] = await escrow.jobState(jobIdOf(job));
        if (status !== 1n) continue;
        const bonded = BigInt(committed.toString(2).split("1").length - 1);
        sum += budgetOf(job) + bonded * job.stake;
      }
      return sum;
    }

    async function apply(
      o: Op,
      f: { escrow: EscrowT; requestor: Signer; providers: Signer[] },
      jobs: Tracked[],
    ): Promise<void> {
      const { escrow, requestor, providers } = f;
      const pick = (i: number) => jobs[i % Math.max(jobs.length, 1)];
      switch (o.kind) {
        case "open": {
          const job = await makeJob(requestor, providers.slice(0, o.k), {
            nonce: BigInt(o.nonce),
            stake: BigInt(o.stake) * 10n ** 17n + BigInt(o.stake),
          });
          await escrow.connect(requestor).openJob(t(job));
          jobs.push({ job, chain: [] });
          return;
        }
        case "commit": {
          const tr = pick(o.job);
          if (!tr) return;
          const seat = o.seat % tr.job.providers.length;
          const opening = own(tr.job, seat, o.wrong ? W : R);
          await escrow.connect(providers[seat]!).commit(t(tr.job), seat, opening.commitment);
          tr.chain.push(opening);
          return;
        }
        case "reveal": {
          const tr = pick(o.job);
          if (!tr) return;
          const entries = tr.chain.map((c) => (c.index === o.seat % tr.job.providers.length ? c : hidden(c)));
          await escrow.connect(providers[0]!).reveal(t(tr.job), tuples(entries));
          return;
        }
        case "settle": {
          const tr = pick(o.job);
          if (!tr) return;
          const entries = tr.chain.map((c, i) => ((o.withhold >> i) & 1 ? hidden(c) : c));
          await escrow.connect(requestor).settle(t(tr.job), tuples(entries));
          return;
        }
        case "reclaim": {
          const tr = pick(o.job);
          if (tr) await escrow.connect(requestor).reclaim(t(tr.job));
          return;
        }
        case "withdraw": {
          const who = o.who === 5 ? requestor : providers[o.who]!;
          await escrow.connect(who).withdraw();
          return;
        }
        case "wait":
          await time.increase(o.seconds);
          return;
      }
    }

    it("after any sequence of random operations (fast-check, seeded)", async function () {
      this.timeout(600_000);
      let applied = 0;
      let reverted = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 5, maxLength: 30 }), async (ops) => {
          const f = await loadFixture(deployEscrowFixture);
          const accounts = await Promise.all([f.requestor, ...f.providers].map((s) => s.getAddress()));
          const escrowAddress = await f.escrow.getAddress();
          const jobs: Tracked[] = [];
          for (const o of ops) {
            try {
              await apply(o, f, jobs);
              applied++;
            } catch (error) {
              // Reverts are expected (wrong phase, wrong seat, ...); only custom errors of the escrow are fine.
              expect(String((error as Error).message)).to.match(/AirqubeEscrow|reverted/);
              reverted++;
            }
            expect(await (f.token as TokenT).balanceOf(escrowAddress)).to.equal(await owed(f.escrow, accounts, jobs));
          }
        }),
        { numRuns: 40, seed: 7, endOnFailure: true },
      );
      expect(applied).to.be.greaterThan(100);
      expect(reverted).to.be.greaterThan(10);
    });
  });
});
