/**
 * Issue 22: reveal requests (nobody is slashed for not revealing unless asked on chain and given a full window)
 * and groups (a qube's follow-up jobs are settled with its first job, so payment follows the qube's decision).
 */
import { expect } from "chai";
import type { Signer } from "ethers";
import type { EscrowJob, Opening } from "../../src/chain/job.js";
import {
  deployEscrowFixture,
  type EscrowT,
  ethers,
  hex32,
  hidden,
  jobIdOf,
  makeJob,
  networkHelpers,
  now,
  openAndCommit,
  own,
  PRICE,
  STAKE,
  type TokenT,
  t,
  tuples,
} from "./helpers.js";

const { loadFixture, time } = networkHelpers;
const R = hex32(0xaaaa); // the honest root
const W = hex32(0xbbbb); // a wrong root

/** A follow-up of `leader` for the given providers (nonce bound to the leader's id). */
async function followUp(leader: EscrowJob, providers: Signer[], overrides: Partial<EscrowJob> = {}) {
  const t0 = await now();
  return {
    ...leader,
    nonce: BigInt(jobIdOf(leader)) & ((1n << 64n) - 1n),
    providers: await Promise.all(providers.map((p) => p.getAddress())),
    quorum: Math.floor(providers.length / 2) + 1,
    commitDeadline: t0 + 100,
    revealDeadline: t0 + 200,
    finalDeadline: t0 + 300,
    ...overrides,
  } satisfies EscrowJob;
}

async function commitAll(escrow: EscrowT, providers: Signer[], job: EscrowJob, openings: Opening[]) {
  for (const o of openings) await escrow.connect(providers[o.index]!).commit(t(job), o.index, o.commitment);
}

/** Escrow balances of everyone plus the token the escrow holds must match (nothing created or lost). */
async function expectConserved(escrow: EscrowT, token: TokenT, accounts: string[]) {
  let owed = 0n;
  for (const a of accounts) owed += await escrow.balanceOf(a);
  expect(await token.balanceOf(await escrow.getAddress())).to.equal(owed);
}

describe("AirqubeEscrow: reveal requests", () => {
  async function committed() {
    const f = await deployEscrowFixture();
    const job = await makeJob(f.requestor, f.providers.slice(0, 3));
    const openings = await openAndCommit(
      f.escrow,
      f.requestor,
      f.providers,
      job,
      [0, 1, 2].map((i) => own(job, i, R)),
    );
    return { ...f, job, openings };
  }

  it("records the request and emits RevealRequested with the end of the window", async () => {
    const { escrow, requestor, job } = await loadFixture(committed);
    const tx = await escrow.connect(requestor).requestReveal(t(job));
    const at = (await ethers.provider.getBlock(tx.blockNumber!))!.timestamp;
    await expect(tx)
      .to.emit(escrow, "RevealRequested")
      .withArgs(jobIdOf(job), at + (job.revealDeadline - job.commitDeadline));
    expect(await escrow.jobGroup(jobIdOf(job))).to.deep.equal([false, 0n, BigInt(at)]);
  });

  it("is the requestor's alone, once, after the commit phase, and only while its window fits", async () => {
    const { escrow, requestor, providers, outsider } = await loadFixture(deployEscrowFixture);
    const job = await makeJob(requestor, providers.slice(0, 3));
    const id = jobIdOf(job);
    await openAndCommit(escrow, requestor, providers, job, [own(job, 0, R)]);
    await expect(escrow.connect(requestor).requestReveal(t(job)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
      .withArgs(id, job.commitDeadline);
    await time.increaseTo(job.commitDeadline + 1);
    await expect(escrow.connect(outsider).requestReveal(t(job)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNotRequestor")
      .withArgs(await outsider.getAddress(), job.requestor);
    const window = job.revealDeadline - job.commitDeadline;
    await time.increaseTo(job.finalDeadline - window); // the next block is one second too late
    await expect(escrow.connect(requestor).requestReveal(t(job)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooLate")
      .withArgs(id, job.finalDeadline - window);
  });

  it("cannot be made twice", async () => {
    const { escrow, requestor, job } = await loadFixture(committed);
    await escrow.connect(requestor).requestReveal(t(job));
    await expect(escrow.connect(requestor).requestReveal(t(job)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowAlreadyRequested")
      .withArgs(jobIdOf(job));
  });

  it("a vanished requestor that settles after the reveal deadline takes no stake (issue 22)", async () => {
    const { escrow, token, requestor, providers, job, openings } = await loadFixture(committed);
    // every provider committed on chain and was never asked to reveal; the requestor comes back late
    await time.increaseTo(job.revealDeadline + 1);
    const tx = escrow.connect(requestor).settle(t(job), tuples(openings.map(hidden)));
    await expect(tx).to.emit(escrow, "Settled").withArgs(jobIdOf(job), ethers.ZeroHash, 0, 0);
    await expect(tx).to.not.emit(escrow, "Slashed");
    for (const p of job.providers) expect(await escrow.balanceOf(p)).to.equal(STAKE);
    expect(await escrow.balanceOf(job.requestor)).to.equal(3n * PRICE);
    await expectConserved(
      escrow,
      token,
      [requestor, ...providers].map((s) => s.address),
    );
  });

  it("providers that reveal on chain by themselves are paid when they settle without the requestor", async () => {
    const { escrow, providers, job, openings } = await loadFixture(committed);
    for (const i of [0, 1, 2]) {
      const mine = openings.map((o) => (o.index === i ? o : hidden(o)));
      await escrow.connect(providers[i]!).reveal(t(job), tuples(mine));
    }
    await expect(escrow.connect(providers[0]!).settle(t(job), tuples(openings)))
      .to.emit(escrow, "Settled")
      .withArgs(jobIdOf(job), R, 3, 0);
    for (const p of job.providers) expect(await escrow.balanceOf(p)).to.equal(PRICE + STAKE);
  });

  it("a provider that revealed on chain is paid even if the requestor asks afterwards and another stays silent", async () => {
    const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
    const job = await makeJob(requestor, providers.slice(0, 5));
    const openings = await openAndCommit(
      escrow,
      requestor,
      providers,
      job,
      [0, 1, 2, 3, 4].map((i) => own(job, i, R)),
    );
    for (const i of [0, 1, 2, 3]) {
      await escrow.connect(providers[i]!).reveal(t(job), tuples(openings.map((o) => (o.index === i ? o : hidden(o)))));
    }
    await escrow.connect(requestor).requestReveal(t(job));
    await time.increase(job.revealDeadline - job.commitDeadline + 1);
    const tx = escrow.connect(requestor).settle(t(job), tuples([...openings.slice(0, 4), hidden(openings[4]!)]));
    await expect(tx).to.emit(escrow, "Slashed").withArgs(jobIdOf(job), job.providers[4], STAKE);
    const share = STAKE / 4n;
    expect(await escrow.balanceOf(job.providers[0]!)).to.equal(PRICE + STAKE + share);
    expect(await escrow.balanceOf(job.providers[4]!)).to.equal(0n);
  });
});

describe("AirqubeEscrow: groups", () => {
  /** The case: k = 3, two chosen providers never commit, two replacements (follow-ups) agree. */
  async function replaced() {
    const f = await deployEscrowFixture();
    const [p0, p1, p2, p3, p4] = f.providers as unknown as [Signer, Signer, Signer, Signer, Signer];
    const leader = await makeJob(f.requestor, [p0, p1, p2]);
    await f.escrow.connect(f.requestor).openJob(t(leader));
    const lo = own(leader, 0, R);
    await commitAll(f.escrow, f.providers, leader, [lo]);
    const f3 = await followUp(leader, [p3]);
    const f4 = await followUp(leader, [p4]);
    await f.escrow.connect(f.requestor).openFollowUp(t(f3), t(leader));
    await f.escrow.connect(f.requestor).openFollowUp(t(f4), t(leader));
    const o3 = own(f3, 0, R);
    const o4 = own(f4, 0, R);
    await f.escrow.connect(p3).commit(t(f3), 0, o3.commitment);
    await f.escrow.connect(p4).commit(t(f4), 0, o4.commitment);
    return { ...f, leader, f3, f4, lo, o3, o4 };
  }

  it("links a follow-up to its leader and emits FollowUpOpened with both jobs", async () => {
    const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
    const leader = await makeJob(requestor, providers.slice(0, 3));
    await escrow.connect(requestor).openJob(t(leader));
    const f = await followUp(leader, [providers[3]!]);
    await expect(escrow.connect(requestor).openFollowUp(t(f), t(leader)))
      .to.emit(escrow, "FollowUpOpened")
      .withArgs(jobIdOf(leader), jobIdOf(f), t(leader), t(f));
    expect(await escrow.jobGroup(jobIdOf(leader))).to.deep.equal([false, 1n, 0n]);
    expect(await escrow.jobGroup(jobIdOf(f))).to.deep.equal([true, 0n, 0n]);
  });

  it("rejects a follow-up of another qube, with an unbound nonce, of a follow-up, or of a closed leader", async () => {
    const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
    const leader = await makeJob(requestor, providers.slice(0, 3));
    await escrow.connect(requestor).openJob(t(leader));
    const lid = jobIdOf(leader);
    for (const bad of [
      await followUp(leader, [providers[3]!], { qubeId: hex32(0xdead) }),
      await followUp(leader, [providers[3]!], { nonce: 7n }),
    ]) {
      await expect(escrow.connect(requestor).openFollowUp(t(bad), t(leader)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNotAFollowUp")
        .withArgs(jobIdOf(bad), lid);
    }
    const f = await followUp(leader, [providers[3]!]);
    await escrow.connect(requestor).openFollowUp(t(f), t(leader));
    const ff = await followUp(f, [providers[4]!]);
    await expect(escrow.connect(requestor).openFollowUp(t(ff), t(f)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNotAFollowUp")
      .withArgs(jobIdOf(ff), jobIdOf(f));
    const lone = await makeJob(requestor, providers.slice(0, 1), { quorum: 1, nonce: 9n });
    await escrow.connect(requestor).openJob(t(lone));
    await time.increaseTo(lone.commitDeadline + 1);
    await escrow.connect(requestor).reclaim(t(lone));
    const late = await followUp(lone, [providers[4]!]);
    await expect(escrow.connect(requestor).openFollowUp(t(late), t(lone)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowJobNotOpen")
      .withArgs(jobIdOf(lone), 3);
  });

  it("refuses to settle a job of a group alone", async () => {
    const { escrow, requestor, leader, f3, lo, o3 } = await loadFixture(replaced);
    await time.increaseTo(leader.commitDeadline + 1);
    await expect(escrow.connect(requestor).settle(t(leader), tuples([lo])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowGroupSettlement")
      .withArgs(jobIdOf(leader));
    await expect(escrow.connect(requestor).settle(t(f3), tuples([o3])))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowGroupSettlement")
      .withArgs(jobIdOf(f3));
  });

  it("pays the first-round provider in the decided quorum with the replacements (issue 22)", async () => {
    const { escrow, token, requestor, providers, leader, f3, f4, lo, o3, o4 } = await loadFixture(replaced);
    await time.increaseTo(leader.commitDeadline + 1);
    const tx = escrow
      .connect(requestor)
      .settleGroup([t(leader), t(f3), t(f4)], [tuples([lo]), tuples([o3]), tuples([o4])]);
    await expect(tx).to.emit(escrow, "Settled").withArgs(jobIdOf(leader), R, 1, 0);
    await expect(tx).to.emit(escrow, "Settled").withArgs(jobIdOf(f3), R, 1, 0);
    await expect(tx).to.not.emit(escrow, "Slashed");
    for (const p of [leader.providers[0]!, f3.providers[0]!, f4.providers[0]!]) {
      expect(await escrow.balanceOf(p)).to.equal(PRICE + STAKE);
    }
    expect(await escrow.balanceOf(leader.requestor)).to.equal(2n * PRICE); // the two seats that never committed
    for (const id of [leader, f3, f4].map(jobIdOf)) expect((await escrow.jobState(id))[0]).to.equal(2n);
    await expectConserved(
      escrow,
      token,
      [requestor, ...providers].map((s) => s.address),
    );
  });

  it("slashes a tie-breaker whose answer went against the group's quorum, and pays the quorum", async () => {
    const { escrow, token, requestor, providers, outsider } = await loadFixture(deployEscrowFixture);
    const [p0, p1, p2, p3, p4] = providers as unknown as [Signer, Signer, Signer, Signer, Signer];
    const leader = await makeJob(requestor, [p0, p1, p2]);
    const lo = await openAndCommit(escrow, requestor, providers, leader, [
      own(leader, 0, R),
      own(leader, 1, W),
      own(leader, 2, R),
    ]);
    // R, W, R needs tie-breakers: the first sides with the liar, two more outvote both dissents (4 >= 2 + 2)
    const tbs = [await followUp(leader, [p3]), await followUp(leader, [p4]), await followUp(leader, [outsider])];
    const signersOf = [p3, p4, outsider];
    const tbo = [own(tbs[0]!, 0, W), own(tbs[1]!, 0, R), own(tbs[2]!, 0, R)];
    for (const [i, tb] of tbs.entries()) {
      await escrow.connect(requestor).openFollowUp(t(tb), t(leader));
      await escrow.connect(signersOf[i]!).commit(t(tb), 0, tbo[i]!.commitment);
    }
    const tx = escrow
      .connect(p4)
      .settleGroup(
        [t(leader), t(tbs[2]!), t(tbs[0]!), t(tbs[1]!)],
        [tuples(lo), tuples([tbo[2]!]), tuples([tbo[0]!]), tuples([tbo[1]!])],
      );
    await expect(tx).to.emit(escrow, "Slashed").withArgs(jobIdOf(tbs[0]!), tbs[0]!.providers[0], STAKE);
    await expect(tx).to.emit(escrow, "Slashed").withArgs(jobIdOf(leader), leader.providers[1], STAKE);
    const share = (2n * STAKE) / 4n;
    for (const p of [leader.providers[0]!, leader.providers[2]!, tbs[1]!.providers[0]!, tbs[2]!.providers[0]!]) {
      expect(await escrow.balanceOf(p)).to.equal(PRICE + STAKE + share);
    }
    expect(await escrow.balanceOf(tbs[0]!.providers[0]!)).to.equal(0n);
    expect(await escrow.balanceOf(leader.requestor)).to.equal(2n * PRICE + (2n * STAKE - 4n * share));
    await expectConserved(
      escrow,
      token,
      [requestor, ...providers, outsider].map((s) => s.address),
    );
  });

  it("without a qualified majority of the group's committed seats pays nobody and slashes nobody who revealed", async () => {
    const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
    const [p0, p1, p2, p3] = providers as unknown as [Signer, Signer, Signer, Signer];
    const leader = await makeJob(requestor, [p0, p1, p2]);
    const lo = await openAndCommit(escrow, requestor, providers, leader, [
      own(leader, 0, R),
      own(leader, 1, W),
      own(leader, 2, R),
    ]);
    const tb = await followUp(leader, [p3]);
    await escrow.connect(requestor).openFollowUp(t(tb), t(leader));
    const o = own(tb, 0, W);
    await escrow.connect(p3).commit(t(tb), 0, o.commitment);
    const tx = escrow.connect(requestor).settleGroup([t(leader), t(tb)], [tuples(lo), tuples([o])]);
    await expect(tx).to.emit(escrow, "Settled").withArgs(jobIdOf(leader), ethers.ZeroHash, 0, 0);
    await expect(tx).to.not.emit(escrow, "Slashed");
    for (const p of [...leader.providers, tb.providers[0]!]) expect(await escrow.balanceOf(p)).to.equal(STAKE);
    expect(await escrow.balanceOf(leader.requestor)).to.equal(4n * PRICE);
  });

  it("rejects a group that is incomplete, repeats a job, does not start with the leader or mixes in a stranger", async () => {
    const { escrow, requestor, providers, leader, f3, f4, lo, o3, o4 } = await loadFixture(replaced);
    await time.increaseTo(leader.commitDeadline + 1);
    const lid = jobIdOf(leader);
    const stranger = await makeJob(requestor, providers.slice(3, 4), {
      quorum: 1,
      nonce: BigInt(lid) & ((1n << 64n) - 1n),
    });
    await escrow.connect(requestor).openJob(t(stranger));
    const cases: [unknown[][], unknown[][][], string][] = [
      [[t(leader), t(f3)], [tuples([lo]), tuples([o3])], lid],
      [[t(leader), t(f3), t(f3)], [tuples([lo]), tuples([o3]), tuples([o3])], lid],
      [[t(leader), t(f3), t(stranger)], [tuples([lo]), tuples([o3]), []], lid],
    ];
    for (const [jobs, openings, id] of cases) {
      await expect(escrow.connect(requestor).settleGroup(jobs, openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowGroupMismatch")
        .withArgs(id);
    }
    await expect(
      escrow.connect(requestor).settleGroup([t(f3), t(leader), t(f4)], [tuples([o3]), tuples([lo]), tuples([o4])]),
    )
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowGroupMismatch")
      .withArgs(jobIdOf(f3));
  });

  it("waits for every job of the group to allow settlement", async () => {
    const { escrow, requestor, providers, leader, f3, f4, lo, o3, o4 } = await loadFixture(replaced);
    const late = await followUp(leader, [providers[1]!], {
      commitDeadline: (await now()) + 150,
      revealDeadline: (await now()) + 250,
    });
    await escrow.connect(requestor).openFollowUp(t(late), t(leader));
    await time.increaseTo(leader.commitDeadline + 1);
    await expect(
      escrow
        .connect(requestor)
        .settleGroup([t(leader), t(f3), t(f4), t(late)], [tuples([lo]), tuples([o3]), tuples([o4]), []]),
    )
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
      .withArgs(jobIdOf(late), late.commitDeadline);
  });

  it("keeps a group's job that nobody committed open until the final deadline (no early reclaim)", async () => {
    const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
    const leader = await makeJob(requestor, providers.slice(0, 3));
    await escrow.connect(requestor).openJob(t(leader));
    const f = await followUp(leader, [providers[3]!]);
    await escrow.connect(requestor).openFollowUp(t(f), t(leader));
    await time.increaseTo(leader.commitDeadline + 1);
    await expect(escrow.connect(requestor).reclaim(t(leader)))
      .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
      .withArgs(jobIdOf(leader), leader.finalDeadline);
  });

  it("knows the block it was deployed in", async () => {
    const { escrow } = await loadFixture(deployEscrowFixture);
    const block = await escrow.deploymentBlock();
    expect(block > 0n).to.equal(true);
    expect(await ethers.provider.getCode(await escrow.getAddress(), Number(block) - 1)).to.equal("0x");
  });
});
