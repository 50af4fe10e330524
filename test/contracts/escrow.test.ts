import { expect } from "chai";
import {
  budgetOf,
  commitmentOf,
  deployEscrowFixture,
  E18,
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
  t,
  tuples,
} from "./helpers.js";

const { loadFixture, time } = networkHelpers;
const R = hex32(0xaaaa); // the honest root
const W = hex32(0xbbbb); // a wrong root

describe("AirqubeEscrow", () => {
  describe("openJob", () => {
    it("locks the budget, emits JobOpened and derives the id like src/chain", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const id = jobIdOf(job);
      expect(await escrow.jobIdOf(t(job))).to.equal(id);
      const tx = escrow.connect(requestor).openJob(t(job));
      await expect(tx)
        .to.emit(escrow, "JobOpened")
        .withArgs(id, job.requestor, job.qubeId, 3n * PRICE);
      await expect(tx).to.changeTokenBalances(ethers, token, [requestor, escrow], [-3n * PRICE, 3n * PRICE]);
      expect(await escrow.jobState(id)).to.deep.equal([1n, 0n, 0n, 0n]);
      expect(await escrow.MAX_PROVIDERS()).to.equal(12n);
      expect(await escrow.token()).to.equal(await token.getAddress());
    });

    it("rejects a caller that is not the requestor", async () => {
      const { escrow, requestor, providers, outsider } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await expect(escrow.connect(outsider).openJob(t(job)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNotRequestor")
        .withArgs(await outsider.getAddress(), job.requestor);
    });

    it("rejects no providers and more than 12", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const none = await makeJob(requestor, [], { quorum: 1 });
      await expect(escrow.connect(requestor).openJob(t(none)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowInvalidProviderCount")
        .withArgs(0);
      const many = Array.from({ length: 13 }, (_, i) => ethers.getAddress(hex32(i + 1).slice(-40)));
      const tooMany = await makeJob(requestor, providers, { providers: many, quorum: 7 });
      await expect(escrow.connect(requestor).openJob(t(tooMany)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowInvalidProviderCount")
        .withArgs(13);
    });

    it("rejects a quorum that is not a strict majority, or above k", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      for (const quorum of [0, 1, 4]) {
        const job = await makeJob(requestor, providers.slice(0, 3), { quorum });
        await expect(escrow.connect(requestor).openJob(t(job)))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowInvalidQuorum")
          .withArgs(quorum, 3);
      }
    });

    it("rejects a zero price", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3), { price: 0n });
      await expect(escrow.connect(requestor).openJob(t(job))).to.be.revertedWithCustomError(
        escrow,
        "AirqubeEscrowZeroPrice",
      );
    });

    it("rejects deadlines out of order or in the past", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const base = await makeJob(requestor, providers.slice(0, 3));
      const cases: Array<[number, number, number]> = [
        [base.commitDeadline - 1000, base.revealDeadline, base.finalDeadline],
        [base.commitDeadline, base.commitDeadline, base.finalDeadline],
        [base.commitDeadline, base.revealDeadline, base.revealDeadline],
      ];
      for (const [c, r, f] of cases) {
        const job = { ...base, commitDeadline: c, revealDeadline: r, finalDeadline: f };
        await expect(escrow.connect(requestor).openJob(t(job)))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowInvalidDeadlines")
          .withArgs(c, r, f);
      }
    });

    it("rejects a zero or duplicated provider", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const base = await makeJob(requestor, providers.slice(0, 3));
      const zero = { ...base, providers: [base.providers[0]!, ethers.ZeroAddress, base.providers[2]!] };
      await expect(escrow.connect(requestor).openJob(t(zero)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowInvalidProvider")
        .withArgs(ethers.ZeroAddress);
      const dup = { ...base, providers: [base.providers[0]!, base.providers[1]!, base.providers[0]!] };
      await expect(escrow.connect(requestor).openJob(t(dup)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowInvalidProvider")
        .withArgs(base.providers[0]);
    });

    it("rejects a job that exists already", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await escrow.connect(requestor).openJob(t(job));
      await expect(escrow.connect(requestor).openJob(t(job)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowJobExists")
        .withArgs(jobIdOf(job));
    });

    it("rejects calldata that is not canonically encoded", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { quorum: 1 });
      const data = escrow.interface.encodeFunctionData("openJob", [t(job)]);
      // Move the providers array one word further (offset 0x140 -> 0x160) and pad: same values, other bytes.
      const words = data.slice(10).match(/.{64}/g)!;
      const head = words.slice(0, 11);
      head[4] = (0x160).toString(16).padStart(64, "0");
      const reencoded = `${data.slice(0, 10)}${[...head, "0".repeat(64), ...words.slice(11)].join("")}`;
      await expect(
        requestor.sendTransaction({ to: await escrow.getAddress(), data: reencoded }),
      ).to.be.revertedWithCustomError(escrow, "AirqubeEscrowNonCanonicalJob");
    });

    it("rejects calldata with bits beyond a value's width (a dirty nonce)", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { quorum: 1 });
      const data = escrow.interface.encodeFunctionData("openJob", [t(job)]);
      const words = data.slice(10).match(/.{64}/g)!;
      // Word 0 is the tuple offset; the head starts at word 1, so the nonce is word 3. Values the escrow reads
      // itself (requestor, providers, price, ...) already revert without a reason when dirty (ABI decoder).
      words[3] = `01${words[3]!.slice(2)}`;
      await expect(
        requestor.sendTransaction({ to: await escrow.getAddress(), data: `${data.slice(0, 10)}${words.join("")}` }),
      ).to.be.revertedWithCustomError(escrow, "AirqubeEscrowNonCanonicalJob");
    });

    it("fails without an allowance (token error bubbles up)", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(deployEscrowFixture);
      await token.connect(requestor).approve(await escrow.getAddress(), 0n);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await expect(escrow.connect(requestor).openJob(t(job)))
        .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
        .withArgs(await escrow.getAddress(), 0n, budgetOf(job));
    });
  });

  describe("commit", () => {
    it("bonds the stake, records the commitment and emits Committed", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await escrow.connect(requestor).openJob(t(job));
      const o = own(job, 1, R);
      expect(await escrow.commitmentOf(jobIdOf(job), R, o.salt, job.providers[1]!)).to.equal(o.commitment);
      const tx = escrow.connect(providers[1]!).commit(t(job), 1, o.commitment);
      await expect(tx).to.emit(escrow, "Committed").withArgs(jobIdOf(job), job.providers[1], o.commitment);
      await expect(tx).to.changeTokenBalances(ethers, token, [providers[1]!, escrow], [-STAKE, STAKE]);
      const [status, committed, revealed] = await escrow.jobState(jobIdOf(job));
      expect([status, committed, revealed]).to.deep.equal([1n, 2n, 0n]);
    });

    it("moves no tokens when the stake is zero", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { stake: 0n, quorum: 1 });
      await escrow.connect(requestor).openJob(t(job));
      await expect(escrow.connect(providers[0]!).commit(t(job), 0, own(job, 0, R).commitment)).to.changeTokenBalances(
        ethers,
        token,
        [providers[0]!, escrow],
        [0n, 0n],
      );
    });

    it("rejects an unknown job", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await expect(escrow.connect(providers[0]!).commit(t(job), 0, own(job, 0, R).commitment))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowJobNotOpen")
        .withArgs(jobIdOf(job), 0);
    });

    it("accepts a commitment at the deadline and rejects one after it", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await escrow.connect(requestor).openJob(t(job));
      await time.setNextBlockTimestamp(job.commitDeadline);
      await escrow.connect(providers[0]!).commit(t(job), 0, own(job, 0, R).commitment);
      await expect(escrow.connect(providers[1]!).commit(t(job), 1, own(job, 1, R).commitment))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooLate")
        .withArgs(jobIdOf(job), job.commitDeadline);
    });

    it("rejects a caller that does not hold the seat, or a seat out of range", async () => {
      const { escrow, requestor, providers, outsider } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await escrow.connect(requestor).openJob(t(job));
      await expect(escrow.connect(providers[1]!).commit(t(job), 0, own(job, 0, R).commitment))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNotProvider")
        .withArgs(jobIdOf(job), job.providers[1], 0);
      await expect(escrow.connect(outsider).commit(t(job), 3, own(job, 0, R).commitment))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNotProvider")
        .withArgs(jobIdOf(job), await outsider.getAddress(), 3);
    });

    it("rejects a second commitment and a zero commitment", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await escrow.connect(requestor).openJob(t(job));
      await escrow.connect(providers[0]!).commit(t(job), 0, own(job, 0, R).commitment);
      await expect(escrow.connect(providers[0]!).commit(t(job), 0, own(job, 0, W).commitment))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowAlreadyCommitted")
        .withArgs(jobIdOf(job), job.providers[0]);
      await expect(escrow.connect(providers[1]!).commit(t(job), 1, ethers.ZeroHash))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowZeroCommitment")
        .withArgs(jobIdOf(job));
    });
  });

  describe("reveal", () => {
    async function committedJob() {
      const f = await deployEscrowFixture();
      const job = await makeJob(f.requestor, f.providers.slice(0, 3));
      const openings = [own(job, 2, R), own(job, 0, R), own(job, 1, W)];
      await openAndCommit(f.escrow, f.requestor, f.providers, job, openings);
      return { ...f, job, openings };
    }

    it("records a provider's opening once everyone committed, and emits Revealed", async () => {
      const { escrow, providers, job, openings } = await loadFixture(committedJob);
      const mine = [hidden(openings[0]!), openings[1]!, hidden(openings[2]!)];
      await expect(escrow.connect(providers[0]!).reveal(t(job), tuples(mine)))
        .to.emit(escrow, "Revealed")
        .withArgs(jobIdOf(job), job.providers[0], R, openings[1]!.salt);
      const [, committed, revealed] = await escrow.jobState(jobIdOf(job));
      expect([committed, revealed]).to.deep.equal([7n, 1n]);
    });

    it("skips openings revealed already and records the new ones", async () => {
      const { escrow, outsider, job, openings } = await loadFixture(committedJob);
      await escrow.connect(outsider).reveal(t(job), tuples([hidden(openings[0]!), openings[1]!, hidden(openings[2]!)]));
      await expect(escrow.connect(outsider).reveal(t(job), tuples(openings)))
        .to.emit(escrow, "Revealed")
        .withArgs(jobIdOf(job), job.providers[2], R, openings[0]!.salt);
      expect((await escrow.jobState(jobIdOf(job)))[2]).to.equal(7n);
    });

    it("rejects a reveal with nothing new", async () => {
      const { escrow, outsider, job, openings } = await loadFixture(committedJob);
      await expect(escrow.connect(outsider).reveal(t(job), tuples(openings.map(hidden))))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNothingToReveal")
        .withArgs(jobIdOf(job));
      await escrow.connect(outsider).reveal(t(job), tuples(openings));
      await expect(escrow.connect(outsider).reveal(t(job), tuples(openings)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNothingToReveal")
        .withArgs(jobIdOf(job));
    });

    it("rejects a reveal before everyone committed and before the commit deadline", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const [o] = await openAndCommit(escrow, requestor, providers, job, [own(job, 0, R)]);
      await expect(escrow.connect(providers[0]!).reveal(t(job), tuples([o!])))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
        .withArgs(jobIdOf(job), job.commitDeadline);
      await time.increaseTo(job.commitDeadline);
      await expect(escrow.connect(providers[0]!).reveal(t(job), tuples([o!]))).to.emit(escrow, "Revealed");
    });

    it("accepts a reveal after the reveal deadline while the job is open, and rejects one after the final deadline", async () => {
      // Changed with issue 22: a provider may reveal until the job is closed (it was: until the reveal deadline).
      const { escrow, providers, job, openings } = await loadFixture(committedJob);
      await time.increaseTo(job.revealDeadline + 1);
      await expect(
        escrow
          .connect(providers[0]!)
          .reveal(t(job), tuples([hidden(openings[0]!), openings[1]!, hidden(openings[2]!)])),
      ).to.emit(escrow, "Revealed");
      await time.increaseTo(job.finalDeadline + 1);
      await expect(escrow.connect(providers[0]!).reveal(t(job), tuples(openings)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooLate")
        .withArgs(jobIdOf(job), job.finalDeadline);
    });

    it("rejects commitments out of order, missing or forged", async () => {
      const { escrow, outsider, job, openings } = await loadFixture(committedJob);
      const cases = [
        [openings[1]!, openings[0]!, openings[2]!],
        openings.slice(0, 2),
        [openings[0]!, openings[1]!, own(job, 1, R)],
      ];
      for (const c of cases) {
        await expect(escrow.connect(outsider).reveal(t(job), tuples(c)))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowCommitmentsMismatch")
          .withArgs(jobIdOf(job));
      }
    });

    it("rejects an opening that does not match its commitment", async () => {
      const { escrow, outsider, job, openings } = await loadFixture(committedJob);
      const lie = { ...openings[2]!, outputsRoot: R }; // provider 1 committed to W
      await expect(escrow.connect(outsider).reveal(t(job), tuples([openings[0]!, openings[1]!, lie])))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowBadOpening")
        .withArgs(jobIdOf(job), job.providers[1]);
    });

    it("rejects a job that is not open", async () => {
      const { escrow, requestor, job, openings } = await loadFixture(committedJob);
      await escrow.connect(requestor).settle(t(job), tuples(openings));
      await expect(escrow.connect(requestor).reveal(t(job), tuples(openings)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowJobNotOpen")
        .withArgs(jobIdOf(job), 2);
    });
  });

  describe("settle", () => {
    it("pays everyone in a unanimous quorum at once (fast path)", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const openings = await openAndCommit(
        escrow,
        requestor,
        providers,
        job,
        [0, 1, 2].map((i) => own(job, i, R)),
      );
      const id = jobIdOf(job);
      const tx = escrow.connect(requestor).settle(t(job), tuples(openings));
      await expect(tx).to.emit(escrow, "Settled").withArgs(id, R, 3, 0);
      for (const p of job.providers)
        await expect(tx)
          .to.emit(escrow, "Credited")
          .withArgs(id, p, PRICE + STAKE);
      await expect(tx).to.not.emit(escrow, "Slashed");
      await expect(tx).to.changeTokenBalances(ethers, token, [escrow], [0n]);
      for (const p of job.providers) expect(await escrow.balanceOf(p)).to.equal(PRICE + STAKE);
      expect(await escrow.balanceOf(job.requestor)).to.equal(0n);
      expect((await escrow.jobState(id))[0]).to.equal(2n);
    });

    it("slashes a dissenter; the quorum shares its stake, the dust and the unused price go to the requestor", async () => {
      // Changed with issue 22: a dissent needs a qualified majority (quorum plus one per dissent) to be outvoted,
      // as the requestor decides; 4 of 5 against 1 is one (it was 2 of 3 against 1).
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 5));
      const openings = await openAndCommit(escrow, requestor, providers, job, [
        own(job, 0, R),
        own(job, 1, W),
        own(job, 2, R),
        own(job, 3, R),
        own(job, 4, R),
      ]);
      const id = jobIdOf(job);
      const share = STAKE / 4n;
      const tx = escrow.connect(requestor).settle(t(job), tuples(openings));
      await expect(tx).to.emit(escrow, "Settled").withArgs(id, R, 4, STAKE);
      await expect(tx).to.emit(escrow, "Slashed").withArgs(id, job.providers[1], STAKE);
      await expect(tx)
        .to.emit(escrow, "Credited")
        .withArgs(id, job.providers[0], PRICE + STAKE + share);
      await expect(tx)
        .to.emit(escrow, "Credited")
        .withArgs(id, job.requestor, PRICE + (STAKE - 4n * share));
      expect(await escrow.balanceOf(job.providers[1]!)).to.equal(0n);
      expect(await escrow.balanceOf(job.providers[2]!)).to.equal(PRICE + STAKE + share);
      expect(await escrow.balanceOf(job.requestor)).to.equal(PRICE + 1n);
    });

    it("returns the stake of a provider that never revealed and was never asked, once the reveal deadline passed", async () => {
      // Changed with issue 22: without an on-chain reveal request a non-revealer is not slashed.
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 5));
      const openings = await openAndCommit(
        escrow,
        requestor,
        providers,
        job,
        [0, 1, 2, 3, 4].map((i) => own(job, i, R)),
      );
      const withheld = [...openings.slice(0, 4), hidden(openings[4]!)];
      await expect(escrow.connect(requestor).settle(t(job), tuples(withheld)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
        .withArgs(jobIdOf(job), job.revealDeadline);
      await time.increaseTo(job.revealDeadline + 1);
      const tx = escrow.connect(requestor).settle(t(job), tuples(withheld));
      await expect(tx).to.emit(escrow, "Settled").withArgs(jobIdOf(job), R, 4, 0);
      await expect(tx).to.not.emit(escrow, "Slashed");
      expect(await escrow.balanceOf(job.providers[4]!)).to.equal(STAKE);
      expect(await escrow.balanceOf(job.requestor)).to.equal(PRICE);
    });

    it("slashes a provider that never revealed only after a reveal request and its full window", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const openings = await openAndCommit(
        escrow,
        requestor,
        providers,
        job,
        [0, 1, 2].map((i) => own(job, i, R)),
      );
      const withheld = [openings[0]!, openings[1]!, hidden(openings[2]!)];
      await escrow.connect(requestor).requestReveal(t(job));
      const revealBy = (await now()) + (job.revealDeadline - job.commitDeadline);
      await time.increaseTo(revealBy - 1); // the settlement's block is the window's last second
      await expect(escrow.connect(requestor).settle(t(job), tuples(withheld)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
        .withArgs(jobIdOf(job), revealBy);
      await time.increaseTo(revealBy + 1);
      await expect(escrow.connect(requestor).settle(t(job), tuples(withheld)))
        .to.emit(escrow, "Slashed")
        .withArgs(jobIdOf(job), job.providers[2], STAKE);
    });

    it("without a quorum pays nobody, returns revealers' stakes and gives non-revealers' to the requestor", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const openings = await openAndCommit(escrow, requestor, providers, job, [
        own(job, 0, R),
        own(job, 1, W),
        own(job, 2, hex32(0xcccc)),
      ]);
      await escrow.connect(requestor).requestReveal(t(job));
      await time.increase(job.revealDeadline - job.commitDeadline + 1);
      const id = jobIdOf(job);
      const tx = escrow.connect(requestor).settle(t(job), tuples([openings[0]!, openings[1]!, hidden(openings[2]!)]));
      await expect(tx).to.emit(escrow, "Settled").withArgs(id, ethers.ZeroHash, 0, STAKE);
      await expect(tx).to.emit(escrow, "Slashed").withArgs(id, job.providers[2], STAKE);
      expect(await escrow.balanceOf(job.providers[0]!)).to.equal(STAKE);
      expect(await escrow.balanceOf(job.providers[1]!)).to.equal(STAKE);
      expect(await escrow.balanceOf(job.requestor)).to.equal(3n * PRICE + STAKE);
    });

    it("settles with the providers that committed once the commit deadline passed", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const openings = await openAndCommit(escrow, requestor, providers, job, [own(job, 2, R), own(job, 0, R)]);
      await expect(escrow.connect(requestor).settle(t(job), tuples(openings)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
        .withArgs(jobIdOf(job), job.commitDeadline);
      await time.increaseTo(job.commitDeadline);
      await expect(escrow.connect(requestor).settle(t(job), tuples(openings)))
        .to.emit(escrow, "Settled")
        .withArgs(jobIdOf(job), R, 2, 0);
      expect(await escrow.balanceOf(job.requestor)).to.equal(PRICE);
    });

    it("refunds the whole budget when nobody committed", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await escrow.connect(requestor).openJob(t(job));
      await time.increaseTo(job.commitDeadline);
      await expect(escrow.connect(requestor).settle(t(job), []))
        .to.emit(escrow, "Credited")
        .withArgs(jobIdOf(job), job.requestor, 3n * PRICE);
    });

    it("counts an opening revealed on chain, and refuses a settlement that leaves it out", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const openings = await openAndCommit(
        escrow,
        requestor,
        providers,
        job,
        [0, 1, 2].map((i) => own(job, i, R)),
      );
      // Provider 1 fears censorship and reveals on chain itself.
      await escrow
        .connect(providers[1]!)
        .reveal(t(job), tuples([hidden(openings[0]!), openings[1]!, hidden(openings[2]!)]));
      await time.increaseTo(job.revealDeadline);
      const censored = [openings[0]!, hidden(openings[1]!), openings[2]!];
      await expect(escrow.connect(requestor).settle(t(job), tuples(censored)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowRevealMissing")
        .withArgs(jobIdOf(job), job.providers[1]);
      // Provider 1 settles itself with what is on chain: the others never revealed, but nobody asked them on
      // chain, so they get their stakes back (changed with issue 22: they were slashed).
      const tx = escrow
        .connect(providers[1]!)
        .settle(t(job), tuples([hidden(openings[0]!), openings[1]!, hidden(openings[2]!)]));
      await expect(tx).to.emit(escrow, "Settled").withArgs(jobIdOf(job), ethers.ZeroHash, 0, 0);
      for (const i of [0, 1, 2]) expect(await escrow.balanceOf(job.providers[i]!)).to.equal(STAKE);
    });

    it("treats a zero root with a non-zero salt as revealed", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { quorum: 1 });
      const openings = await openAndCommit(escrow, requestor, providers, job, [own(job, 0, ethers.ZeroHash)]);
      await expect(escrow.connect(requestor).settle(t(job), tuples(openings)))
        .to.emit(escrow, "Settled")
        .withArgs(jobIdOf(job), ethers.ZeroHash, 1, 0);
      expect(await escrow.balanceOf(job.providers[0]!)).to.equal(PRICE + STAKE);
    });

    it("with a zero stake slashes nothing", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 5), { stake: 0n });
      const openings = await openAndCommit(escrow, requestor, providers, job, [
        own(job, 0, R),
        own(job, 1, W),
        own(job, 2, R),
        own(job, 3, R),
        own(job, 4, R),
      ]);
      const tx = escrow.connect(requestor).settle(t(job), tuples(openings));
      await expect(tx).to.not.emit(escrow, "Slashed");
      await expect(tx).to.emit(escrow, "Settled").withArgs(jobIdOf(job), R, 4, 0);
    });

    it("rejects a bad opening, a wrong chain, a settled job and a late settlement", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      const openings = await openAndCommit(
        escrow,
        requestor,
        providers,
        job,
        [0, 1, 2].map((i) => own(job, i, R)),
      );
      const id = jobIdOf(job);
      await expect(
        escrow
          .connect(requestor)
          .settle(t(job), tuples([openings[0]!, openings[1]!, { ...openings[2]!, salt: hex32(1) }])),
      )
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowBadOpening")
        .withArgs(id, job.providers[2]);
      await expect(escrow.connect(requestor).settle(t(job), tuples(openings.slice(1))))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowCommitmentsMismatch")
        .withArgs(id);
      await time.increaseTo(job.finalDeadline + 1);
      await expect(escrow.connect(requestor).settle(t(job), tuples(openings)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooLate")
        .withArgs(id, job.finalDeadline);
      await escrow.connect(requestor).reclaim(t(job));
      await expect(escrow.connect(requestor).settle(t(job), tuples(openings)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowJobNotOpen")
        .withArgs(id, 3);
    });
  });

  describe("reclaim", () => {
    it("after the final deadline credits the budget to the requestor and the stakes back", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3));
      await openAndCommit(escrow, requestor, providers, job, [own(job, 0, R), own(job, 2, R)]);
      const id = jobIdOf(job);
      await time.increaseTo(job.finalDeadline - 1);
      await expect(escrow.connect(requestor).reclaim(t(job)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
        .withArgs(id, job.finalDeadline);
      await time.increaseTo(job.finalDeadline);
      const tx = escrow.connect(requestor).reclaim(t(job));
      await expect(tx)
        .to.emit(escrow, "Reclaimed")
        .withArgs(id, job.requestor, 3n * PRICE);
      await expect(tx).to.emit(escrow, "Credited").withArgs(id, job.providers[0], STAKE);
      await expect(tx).to.emit(escrow, "Credited").withArgs(id, job.providers[2], STAKE);
      expect(await escrow.balanceOf(job.providers[1]!)).to.equal(0n);
      expect(await escrow.balanceOf(job.requestor)).to.equal(3n * PRICE);
      expect((await escrow.jobState(id))[0]).to.equal(3n);
      await expect(escrow.connect(requestor).reclaim(t(job)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowJobNotOpen")
        .withArgs(id, 3);
    });

    it("when nobody committed, is allowed right after the commit deadline", async () => {
      const { escrow, requestor, providers } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 3), { stake: 0n });
      await escrow.connect(requestor).openJob(t(job));
      await time.increaseTo(job.commitDeadline - 1);
      await expect(escrow.connect(requestor).reclaim(t(job)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowTooEarly")
        .withArgs(jobIdOf(job), job.commitDeadline);
      await time.increaseTo(job.commitDeadline);
      await expect(escrow.connect(requestor).reclaim(t(job)))
        .to.emit(escrow, "Reclaimed")
        .withArgs(jobIdOf(job), job.requestor, 3n * PRICE);
    });
  });

  describe("withdraw", () => {
    it("pays out the whole balance once, then has nothing left", async () => {
      const { escrow, token, requestor, providers, outsider } = await loadFixture(deployEscrowFixture);
      const job = await makeJob(requestor, providers.slice(0, 1), { quorum: 1 });
      const openings = await openAndCommit(escrow, requestor, providers, job, [own(job, 0, R)]);
      await escrow.connect(requestor).settle(t(job), tuples(openings));
      const tx = escrow.connect(providers[0]!).withdraw();
      await expect(tx)
        .to.emit(escrow, "Withdrawn")
        .withArgs(job.providers[0], PRICE + STAKE);
      await expect(tx).to.changeTokenBalances(
        ethers,
        token,
        [providers[0]!, escrow],
        [PRICE + STAKE, -(PRICE + STAKE)],
      );
      await expect(escrow.connect(providers[0]!).withdraw())
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNothingToWithdraw")
        .withArgs(job.providers[0]);
      await expect(escrow.connect(outsider).withdraw())
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowNothingToWithdraw")
        .withArgs(await outsider.getAddress());
      expect(await token.balanceOf(await escrow.getAddress())).to.equal(0n);
    });
  });

  describe("test token", () => {
    it("has 18 decimals and EIP-2612 permit", async () => {
      const { token, requestor, outsider } = await loadFixture(deployEscrowFixture);
      expect(await token.decimals()).to.equal(18n);
      const glm = await ethers.getContractAt("TestGLM", await token.getAddress());
      const owner = await requestor.getAddress();
      const spender = await outsider.getAddress();
      const deadline = BigInt((await time.latest()) + 3600);
      const { chainId } = await ethers.provider.getNetwork();
      const sig = await requestor.signTypedData(
        { name: "Test Golem Network Token", version: "1", chainId, verifyingContract: await token.getAddress() },
        {
          Permit: [
            { name: "owner", type: "address" },
            { name: "spender", type: "address" },
            { name: "value", type: "uint256" },
            { name: "nonce", type: "uint256" },
            { name: "deadline", type: "uint256" },
          ],
        },
        { owner, spender, value: 5n * E18, nonce: 0n, deadline },
      );
      const { v, r, s } = ethers.Signature.from(sig);
      await glm.getFunction("permit")(owner, spender, 5n * E18, deadline, v, r, s);
      expect(await glm.getFunction("allowance")(owner, spender)).to.equal(5n * E18);
    });
  });

  it("commitmentOf matches src/chain", async () => {
    const { escrow } = await loadFixture(deployEscrowFixture);
    const [id, root, salt] = [hex32(1), hex32(2), hex32(3)];
    const provider = ethers.getAddress(hex32(4).slice(-40));
    expect(await escrow.commitmentOf(id, root, salt, provider)).to.equal(commitmentOf(id, root, salt, provider));
  });
});
