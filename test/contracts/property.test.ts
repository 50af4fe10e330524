/**
 * Property (issue 22): over random crash points of the requestor and the providers, every honest provider whose
 * answer is in the decided quorum is paid, no honest provider that follows the protocol is slashed, and the
 * escrow's token balance always equals what it owes (budgets and stakes are conserved).
 *
 * A qube runs as a leader job of 3 seats plus follow-ups for the seats that crashed before committing (and one
 * tie-breaker when a liar dissents). Crash points: a provider crashes before committing, or after committing
 * (never reveals); the requestor vanishes after the commits (never settles), or comes back and asks on chain.
 * Honest live providers reveal on chain by themselves when the requestor is silent or asks (as the keeper does).
 */
import { expect } from "chai";
import type { Signer } from "ethers";
import fc from "fast-check";
import type { EscrowJob, Opening } from "../../src/chain/job.js";
import { decide } from "../../src/requestor/quorum.js";
import {
  deployEscrowFixture,
  hex32,
  hidden,
  jobIdOf,
  makeJob,
  networkHelpers,
  now,
  own,
  PRICE,
  STAKE,
  t,
  tuples,
} from "./helpers.js";

const { loadFixture, time } = networkHelpers;
const R = hex32(0xaaaa);
const W = hex32(0xbbbb);

type Kind = "honest" | "liar" | "crash-before-commit" | "crash-after-commit";

describe("AirqubeEscrow: property over random crash points", () => {
  it("pays every honest provider of the decided quorum, slashes none that follows the protocol, conserves tokens", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom<Kind>("honest", "honest", "liar", "crash-before-commit", "crash-after-commit"), {
          minLength: 5,
          maxLength: 5,
        }),
        fc.constantFrom("settles", "vanishes", "asks-on-chain"),
        async (kinds, requestorFate) => {
          const f = await loadFixture(deployEscrowFixture);
          const signers = f.providers;
          const escrowAddr = await f.escrow.getAddress();
          const all = [f.requestor, ...signers];
          const tokenBefore = await Promise.all(all.map((s) => f.token.balanceOf(s.address)));
          // the leader: seats 0-2; follow-ups (one seat each) for seats 3 and 4 when needed
          const leader = await makeJob(f.requestor, signers.slice(0, 3), { finalDeadline: (await now()) + 2000 });
          await f.escrow.connect(f.requestor).openJob(t(leader));
          const group: { job: EscrowJob; seat: Signer; kind: Kind; index: number; opening?: Opening }[] = [];
          for (let i = 0; i < 3; i++) group.push({ job: leader, seat: signers[i]!, kind: kinds[i]!, index: i });
          const followUps: EscrowJob[] = [];
          const needed = kinds.slice(0, 3).filter((k) => k === "crash-before-commit" || k === "liar").length;
          for (let j = 0; j < Math.min(needed, 2); j++) {
            const t0 = await now();
            const fu: EscrowJob = {
              ...leader,
              nonce: BigInt(jobIdOf(leader)) & ((1n << 64n) - 1n),
              providers: [signers[3 + j]!.address],
              quorum: 1,
              commitDeadline: t0 + 100,
              revealDeadline: t0 + 200,
              finalDeadline: leader.finalDeadline,
            };
            await f.escrow.connect(f.requestor).openFollowUp(t(fu), t(leader));
            followUps.push(fu);
            group.push({ job: fu, seat: signers[3 + j]!, kind: kinds[3 + j]!, index: 0 });
          }
          for (const g of group) {
            if (g.kind === "crash-before-commit") continue;
            g.opening = own(g.job, g.index, g.kind === "liar" ? W : R);
            await f.escrow.connect(g.seat).commit(t(g.job), g.index, g.opening.commitment);
          }
          const jobs = [leader, ...followUps];
          const chainOf = (job: EscrowJob, reveal: (g: (typeof group)[number]) => boolean) =>
            group.filter((g) => g.job === job && g.opening).map((g) => (reveal(g) ? g.opening! : hidden(g.opening!)));
          const live = (g: (typeof group)[number]) => g.kind === "honest" || g.kind === "liar";
          const last = Math.max(...jobs.map((j) => j.commitDeadline));
          await time.increaseTo(last + 1);
          if (requestorFate === "settles") {
            // the requestor got the off-chain reveals of the live providers and settles at once
            if (group.some((g) => g.opening && !live(g))) {
              // some committed provider never revealed: the requestor asks on chain before settling
              for (const job of jobs) await f.escrow.connect(f.requestor).requestReveal(t(job));
              await time.increase(101);
            }
          } else if (requestorFate === "asks-on-chain") {
            for (const job of jobs) await f.escrow.connect(f.requestor).requestReveal(t(job));
          }
          // honest live providers reveal on chain by themselves (requestor silent, or asked on chain)
          if (requestorFate !== "settles") {
            for (const g of group.filter((x) => x.kind === "honest" && x.opening)) {
              await f.escrow.connect(g.seat).reveal(t(g.job), tuples(chainOf(g.job, (x) => x === g)));
            }
            // past every job's reveal deadline, and past the window of a request
            await time.increaseTo(Math.max(...jobs.map((j) => j.revealDeadline), (await now()) + 100) + 2);
          }
          const settler =
            requestorFate === "settles" ? f.requestor : (signers.find((_, i) => kinds[i] === "honest") ?? f.outsider);
          const openings = jobs.map((job) => tuples(chainOf(job, live)));
          if (jobs.length === 1) await f.escrow.connect(settler).settle(t(leader), openings[0]!);
          else await f.escrow.connect(settler).settleGroup(jobs.map(t), openings);

          // the qube's decision, by the requestor's own rule (src/requestor/quorum.ts) over the committed seats
          const votes = await Promise.all(
            group
              .filter((g) => g.opening)
              .map(async (g) => ({
                provider: await g.seat.getAddress(),
                root: live(g) ? g.opening!.outputsRoot : undefined,
              })),
          );
          const decision = decide(votes, { quorum: leader.quorum, maxReplicas: 99 }, votes.length);
          const label = `${kinds} ${requestorFate} ${decision.status}`;
          for (const g of group.filter((x) => x.kind === "honest" && x.opening)) {
            const balance = await f.escrow.balanceOf(await g.seat.getAddress());
            if (decision.status === "verified" && decision.root === R) {
              // in the decided quorum: paid price + stake (+ a share of the slashed), never slashed
              expect(balance >= PRICE + STAKE, label).to.equal(true);
            } else if (decision.status !== "verified") {
              // no decision: nobody is paid, and an honest provider keeps its stake
              expect(balance, label).to.equal(STAKE);
            }
          }
          // conservation: what the escrow holds is what it owes, and nobody's tokens appeared or vanished
          let owed = 0n;
          for (const s of all) owed += await f.escrow.balanceOf(s.address);
          expect(await f.token.balanceOf(escrowAddr)).to.equal(owed);
          const tokenAfter = await Promise.all(all.map((s) => f.token.balanceOf(s.address)));
          const sum = (xs: bigint[]) => xs.reduce((a, b) => a + b, 0n);
          expect(sum(tokenAfter) + owed).to.equal(sum(tokenBefore));
        },
      ),
      { numRuns: 40 },
    );
  });
});
