import { expect } from "chai";
import { Signature } from "ethers";
import {
  ACCEPT_TYPES,
  batchBudgetOf,
  batchCommitmentOf,
  batchIdOf,
  COMMITMENTS_TYPES,
  columnHashOf,
  compactSignature,
} from "../../src/chain/escrow-v2-batch.js";
import {
  acceptsOf,
  bt,
  DEPOSIT,
  deployV2,
  domainOf,
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
import { E18, ethers, hex32, networkHelpers } from "./helpers.js";

const { loadFixture, time } = networkHelpers;

async function noDepositFixture() {
  return deployV2("TestGLM", false);
}

describe("AirqubeEscrowV2", () => {
  describe("balances", () => {
    it("deposit and withdraw move tokens and balances, with events; zero and overdrafts are refused", async () => {
      const { escrow, token, outsider } = await loadFixture(noDepositFixture);
      const me = await outsider.getAddress();
      await expect(escrow.connect(outsider).deposit(5n * E18))
        .to.emit(escrow, "Deposited")
        .withArgs(me, 5n * E18);
      expect(await escrow.balanceOf(me)).to.equal(5n * E18);
      expect(await token.balanceOf(await escrow.getAddress())).to.equal(5n * E18);
      await expect(escrow.connect(outsider).withdraw(2n * E18))
        .to.emit(escrow, "Withdrawn")
        .withArgs(me, 2n * E18);
      await expect(escrow.connect(outsider).withdraw(4n * E18))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InsufficientBalance")
        .withArgs(me, 3n * E18, 4n * E18);
      await expect(escrow.connect(outsider).withdraw(0n)).to.be.revertedWithCustomError(
        escrow,
        "AirqubeEscrowV2ZeroAmount",
      );
      await expect(escrow.connect(outsider).deposit(0n)).to.be.revertedWithCustomError(
        escrow,
        "AirqubeEscrowV2ZeroAmount",
      );
      await escrow.connect(outsider).withdraw(3n * E18);
      expect(await escrow.balanceOf(me)).to.equal(0n);
      expect(await token.balanceOf(me)).to.equal(1_000n * E18);
      // a never-used account has nothing to withdraw
      const fresh = (await ethers.getSigners())[9]!;
      await expect(escrow.connect(fresh).withdraw(1n))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InsufficientBalance")
        .withArgs(await fresh.getAddress(), 0n, 1n);
    });

    it("depositWithPermit needs no approval, and a permit used up by someone else is ignored", async () => {
      const { escrow, token, outsider } = await loadFixture(noDepositFixture);
      const me = await outsider.getAddress();
      const spender = await escrow.getAddress();
      await token.connect(outsider).approve(spender, 0n);
      const glm = await ethers.getContractAt("TestGLM", await token.getAddress());
      const sign = async (value: bigint) => {
        const { chainId } = await ethers.provider.getNetwork();
        const deadline = BigInt((await ethers.provider.getBlock("latest"))!.timestamp + 3600);
        const sig = Signature.from(
          await outsider.signTypedData(
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
            { owner: me, spender, value, nonce: await glm.getFunction("nonces")(me), deadline },
          ),
        );
        return { deadline, sig };
      };
      const { deadline, sig } = await sign(7n * E18);
      await escrow.connect(outsider).depositWithPermit(7n * E18, deadline, sig.v, sig.r, sig.s);
      expect(await escrow.balanceOf(me)).to.equal(7n * E18);
      // a front-runner submitted the permit first: the deposit still goes through on the allowance it set
      const second = await sign(2n * E18);
      await glm.getFunction("permit")(me, spender, 2n * E18, second.deadline, second.sig.v, second.sig.r, second.sig.s);
      await escrow
        .connect(outsider)
        .depositWithPermit(2n * E18, second.deadline, second.sig.v, second.sig.r, second.sig.s);
      expect(await escrow.balanceOf(me)).to.equal(9n * E18);
      // a replayed permit without allowance fails in the transfer
      await expect(
        escrow.connect(outsider).depositWithPermit(2n * E18, second.deadline, second.sig.v, second.sig.r, second.sig.s),
      ).to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance");
    });
  });

  describe("open", () => {
    it("locks the budget and each seat's stakes with their consent, and derives the id like src/chain", async () => {
      const { escrow, requestor, providers } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats, { jobs: 4 });
      const id = batchIdOf(batch);
      expect(await escrow.batchIdOf(bt(batch))).to.equal(id);
      await expect(openBatch(escrow, requestor, batch, seats))
        .to.emit(escrow, "BatchOpened")
        .withArgs(id, batch.requestor, 4n, 12n * PRICE2);
      expect(batchBudgetOf(batch)).to.equal(12n * PRICE2);
      expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT - 12n * PRICE2);
      for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT - 4n * STAKE2);
      expect(await escrow.batchState(bt(batch))).to.deep.equal([1n, 0n, 0n, ZERO]);
      await expect(openBatch(escrow, requestor, batch, seats))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2NonceUnavailable")
        .withArgs(batch.requestor, batch.nonce);
      expect(await escrow.MAX_PROVIDERS()).to.equal(12n);
    });

    it("rejects a caller that is not the requestor, and bad sizes, providers, quorum, price and deadlines", async () => {
      const { escrow, requestor, providers, outsider } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const ok = await makeBatch(requestor, seats);
      const accepts = await acceptsOf(escrow, ok, seats);
      const open = (o: Partial<typeof ok>) => escrow.connect(requestor).open(bt({ ...ok, ...o }), accepts);
      await expect(escrow.connect(outsider).open(bt(ok), accepts))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2Unauthorized")
        .withArgs(await outsider.getAddress());
      const many = Array.from({ length: 13 }, (_, i) => ethers.getAddress(hex32(i + 1).slice(-40)));
      for (const [o, k, n] of [
        [{ providers: [], quorum: 1 }, 0, 1],
        [{ providers: many, quorum: 7 }, 13, 1],
        [{ jobs: 0 }, 3, 0],
        [{ jobs: 86 }, 3, 86],
      ] as const) {
        await expect(open(o as Partial<typeof ok>))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InvalidSize")
          .withArgs(k, n);
      }
      const zero = ethers.ZeroAddress;
      await expect(open({ providers: [ok.providers[0]!, zero, ok.providers[2]!] }))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InvalidProvider")
        .withArgs(zero);
      await expect(open({ providers: [ok.providers[0]!, ok.providers[1]!, ok.providers[0]!] }))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InvalidProvider")
        .withArgs(ok.providers[0]!);
      for (const quorum of [1, 4]) {
        await expect(open({ quorum }))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InvalidQuorum")
          .withArgs(quorum, 3);
      }
      await expect(open({ price: 0n })).to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2ZeroPrice");
      const c = ok.commitDeadline;
      for (const d of [
        { commitDeadline: c - 101 }, // in the past
        { revealDeadline: c }, // no window
        { finalDeadline: c + 100 + 199 }, // less than two windows after the reveal deadline
      ]) {
        const b = { ...ok, ...d };
        await expect(open(d))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InvalidDeadlines")
          .withArgs(b.commitDeadline, b.revealDeadline, b.finalDeadline);
      }
      await expect(escrow.connect(requestor).open(bt(ok), accepts.slice(0, 4)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
        .withArgs(batchIdOf(ok));
    });

    it("needs each seat's own Accept for this batch, escrow and chain, and enough balance", async () => {
      const { escrow, requestor, providers, chainId } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats);
      const id = batchIdOf(batch);
      const good = await acceptsOf(escrow, batch, seats);
      const cases: [string, string[], number][] = [
        ["signed by another account", await acceptsOf(escrow, batch, [seats[0]!, providers[4]!, seats[2]!]), 1],
        ["for another batch", await acceptsOf(escrow, { ...batch, nonce: 2n }, seats), 0],
        ["on another chain", await acceptsOf(escrow, batch, seats, chainId + 1n), 0],
        ["malformed", [...good.slice(0, 2), ZERO, ZERO, ...good.slice(4)], 1],
      ];
      for (const [label, accepts, seat] of cases) {
        await expect(escrow.connect(requestor).open(bt(batch), accepts), label)
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
          .withArgs(id, batch.providers[seat]!);
      }
      // signed for another escrow (same chain): its domain differs
      const other = (await ethers.deployContract("AirqubeEscrowV2", [await escrow.token()])) as unknown as EscrowV2T;
      await expect(escrow.connect(requestor).open(bt(batch), await acceptsOf(other, batch, seats)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
        .withArgs(id, batch.providers[0]!);
      // the digest the contract checks is the EIP-712 digest ethers computes
      const domain = await domainOf(escrow);
      expect(await escrow.acceptDigest(id)).to.equal(
        ethers.TypedDataEncoder.hash(domain, ACCEPT_TYPES, { batchId: id }),
      );
      const rich = await makeBatch(requestor, seats, { price: DEPOSIT });
      await expect(escrow.connect(requestor).open(bt(rich), await acceptsOf(escrow, rich, seats)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InsufficientBalance")
        .withArgs(batch.requestor, DEPOSIT, 3n * DEPOSIT);
      const heavy = await makeBatch(requestor, seats, { stake: DEPOSIT + 1n });
      await expect(escrow.connect(requestor).open(bt(heavy), await acceptsOf(escrow, heavy, seats)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2InsufficientBalance")
        .withArgs(batch.providers[0]!, DEPOSIT, DEPOSIT + 1n);
      // a zero stake locks nothing
      const free = await makeBatch(requestor, seats, { stake: 0n });
      await openBatch(escrow, requestor, free, seats);
      expect(await escrow.balanceOf(batch.providers[0]!)).to.equal(DEPOSIT);
    });
  });

  describe("settle (fast path)", () => {
    it("pays every agreeing seat of every job in one transaction, with no token transfer", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats, { jobs: 3 });
      await openBatch(escrow, requestor, batch, seats);
      const st = await statementsOf(escrow, batch, seats, uniform(batch, [R, R, R]));
      const held = await token.balanceOf(await escrow.getAddress());
      // only the requestor takes the fast path: it holds the columns committed before any opening was shown
      await expect(escrow.connect(providers[0]!).settle(bt(batch), st.signatures, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2Unauthorized")
        .withArgs(batch.providers[0]!);
      const tx = escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings);
      await expect(tx).to.emit(escrow, "Settled").withArgs(st.id, 9n, 0n);
      await expect(tx).to.not.emit(token, "Transfer");
      for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT + 3n * PRICE2);
      expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT - 9n * PRICE2);
      expect(await token.balanceOf(await escrow.getAddress())).to.equal(held);
      expect((await escrow.batchState(bt(batch)))[0]).to.equal(3n);
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(st.id, 3n);
    });

    it("slashes a dissenter per job, shares its stake among the winners and gives the dust to the requestor", async () => {
      const { escrow, requestor, providers } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 5);
      const batch = await makeBatch(requestor, seats, { jobs: 2 }); // quorum 3: 4 of 5 outvote one dissent
      await openBatch(escrow, requestor, batch, seats);
      // job 0: seat 4 lies; job 1: all agree
      const st = await statementsOf(escrow, batch, seats, [
        [R, R, R, R, W],
        [R, R, R, R, R],
      ]);
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings))
        .to.emit(escrow, "Settled")
        .withArgs(st.id, 9n, STAKE2);
      const share = STAKE2 / 4n;
      const dust = STAKE2 - 4n * share;
      expect(dust).to.equal(1n);
      for (const i of [0, 1, 2, 3]) {
        expect(await escrow.balanceOf(batch.providers[i]!)).to.equal(DEPOSIT + 2n * PRICE2 + share);
      }
      expect(await escrow.balanceOf(batch.providers[4]!)).to.equal(DEPOSIT + PRICE2 - STAKE2);
      expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT - 9n * PRICE2 + dust);
    });

    it("one dissent among three is not outvoted (v1's rule): nobody paid, nobody slashed", async () => {
      const { escrow, requestor, providers } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats);
      await openBatch(escrow, requestor, batch, seats);
      const st = await statementsOf(escrow, batch, seats, [[R, R, W]]);
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings))
        .to.emit(escrow, "Settled")
        .withArgs(st.id, 0n, 0n);
      for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT);
    });

    it("without a winner pays nobody, returns every stake and refunds the whole budget", async () => {
      const { escrow, requestor, providers } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats);
      await openBatch(escrow, requestor, batch, seats);
      const st = await statementsOf(escrow, batch, seats, [[R, W, hex32(0xcccc)]]);
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings))
        .to.emit(escrow, "Settled")
        .withArgs(st.id, 0n, 0n);
      for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT);
      expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT);
    });

    it("refuses forged, tampered, replayed and cross-chain statements, missing openings and bad lengths", async () => {
      const { escrow, requestor, providers, chainId } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats, { jobs: 2 });
      const id = batchIdOf(batch);
      await openBatch(escrow, requestor, batch, seats);
      const roots = uniform(batch, [R, R, R]);
      const st = await statementsOf(escrow, batch, seats, roots);
      const seat1 = batch.providers[1]!;
      const badSig = (signatures: string[], openings = st.openings) =>
        expect(escrow.connect(requestor).settle(bt(batch), signatures, openings))
          .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
          .withArgs(id, seat1);
      // forged: seat 1's statement signed by an outsider
      const forged = await statementsOf(escrow, batch, [seats[0]!, providers[4]!, seats[2]!], roots);
      await badSig(forged.signatures);
      // tampered: seat 1's opening changed to another (self-consistent) root
      const tampered = await statementsOf(escrow, batch, seats, uniform(batch, [R, W, R]));
      await badSig(st.signatures, tampered.openings);
      // replayed from another batch of the same seats
      const other = { ...batch, nonce: 9n };
      await openBatch(escrow, requestor, other, seats);
      const replayed = await statementsOf(escrow, other, seats, roots);
      await expect(escrow.connect(requestor).settle(bt(batch), replayed.signatures, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
        .withArgs(id, batch.providers[0]!);
      // signed for another chain id
      const cross = await statementsOf(escrow, batch, seats, roots, chainId + 1n);
      await expect(escrow.connect(requestor).settle(bt(batch), cross.signatures, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadSignature")
        .withArgs(id, batch.providers[0]!);
      // a missing opening is not the fast path
      const missing = [...st.openings];
      missing[2 * 4] = ZERO; // job 1, seat 1
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, missing))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadOpening")
        .withArgs(id, 4);
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures.slice(2), st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
        .withArgs(id);
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings.slice(2)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2BadLength")
        .withArgs(id);
      // the statements of `other` still settle `other`; a never-opened batch cannot be settled
      await escrow.connect(requestor).settle(bt(other), replayed.signatures, replayed.openings);
      const never = { ...batch, nonce: 77n };
      await expect(escrow.connect(requestor).settle(bt(never), st.signatures, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(batchIdOf(never), 0n);
      await time.increaseTo(batch.finalDeadline + 1);
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooLate")
        .withArgs(id, batch.finalDeadline);
    });

    it("computes commitments and digests like src/chain", async () => {
      const { escrow, requestor, providers } = await loadFixture(v2Fixture);
      const batch = await makeBatch(requestor, providers.slice(0, 3));
      const id = batchIdOf(batch);
      const p = batch.providers[0]!;
      expect(await escrow.commitmentOf(id, 5, R, saltOf(5, 0), p)).to.equal(
        batchCommitmentOf(id, 5, R, saltOf(5, 0), p),
      );
      const column = [R, W];
      expect(await escrow.commitmentsDigest(id, column)).to.equal(
        ethers.TypedDataEncoder.hash(await domainOf(escrow), COMMITMENTS_TYPES, {
          batchId: id,
          commitments: columnHashOf(column),
        }),
      );
      expect(compactSignature((await providers[0]!.signMessage("x")) as string)).to.have.length(2);
      expect(await escrow.deploymentBlock()).to.be.greaterThan(0n);
    });
  });

  describe("release (unanimous path)", () => {
    it("pays every seat price and stake for every job on the requestor's word: no signature, no transfer, once", async () => {
      const { escrow, token, requestor, providers } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats, { jobs: 3 });
      const id = batchIdOf(batch);
      await openBatch(escrow, requestor, batch, seats);
      const held = await token.balanceOf(await escrow.getAddress());
      // only the payer releases: a seat cannot pay itself (nor anyone else) the whole budget
      await expect(escrow.connect(providers[0]!).release(bt(batch)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2Unauthorized")
        .withArgs(batch.providers[0]!);
      // another batch's parameters (here: a lower price) name another batch, which is not open
      await expect(escrow.connect(requestor).release(bt({ ...batch, price: 1n })))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(batchIdOf({ ...batch, price: 1n }), 0n);
      const tx = escrow.connect(requestor).release(bt(batch));
      await expect(tx).to.emit(escrow, "Settled").withArgs(id, 9n, 0n);
      await expect(tx).to.not.emit(token, "Transfer");
      for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT + 3n * PRICE2);
      expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT - 9n * PRICE2);
      expect(await token.balanceOf(await escrow.getAddress())).to.equal(held);
      expect((await escrow.batchState(bt(batch)))[0]).to.equal(3n);
      await expect(escrow.connect(requestor).release(bt(batch)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(id, 3n);
      const st = await statementsOf(escrow, batch, seats, uniform(batch, [R, R, R]));
      await expect(escrow.connect(requestor).settle(bt(batch), st.signatures, st.openings))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(id, 3n);
    });

    it("is refused under dispute (the dispute decides, silent seats are slashed) and after a reclaim", async () => {
      const { escrow, requestor, providers } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const disputed = await makeBatch(requestor, seats, { nonce: 1n });
      const late = await makeBatch(requestor, seats, { nonce: 2n });
      await openBatch(escrow, requestor, disputed, seats);
      await openBatch(escrow, requestor, late, seats);
      const st = await statementsOf(escrow, disputed, seats, [[R, R, R]]);
      await time.increaseTo(disputed.commitDeadline + 1);
      await escrow.connect(requestor).propose(bt(disputed), st.signatures, st.commitments);
      await expect(escrow.connect(requestor).release(bt(disputed)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(st.id, 2n);
      // seat 2 stays silent: the dispute slashes it, which a release would not have done
      await time.increase(2 * 100 + 1);
      const openings = [...st.openings.slice(0, 4), ZERO, ZERO];
      await escrow.finalize(bt(disputed), st.commitments, openings);
      expect(await escrow.balanceOf(disputed.providers[2]!)).to.equal(DEPOSIT - 2n * STAKE2);
      await time.increaseTo(late.finalDeadline + 1);
      await escrow.reclaim(bt(late));
      await expect(escrow.connect(requestor).release(bt(late)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(batchIdOf(late), 4n);
    });
  });

  describe("reclaim", () => {
    it("returns the budget and the stakes after the final deadline, not before, and only once", async () => {
      const { escrow, requestor, providers, outsider } = await loadFixture(v2Fixture);
      const seats = providers.slice(0, 3);
      const batch = await makeBatch(requestor, seats, { jobs: 2 });
      const id = batchIdOf(batch);
      await openBatch(escrow, requestor, batch, seats);
      await expect(escrow.connect(outsider).reclaim(bt(batch)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2TooEarly")
        .withArgs(id, batch.finalDeadline);
      await time.increaseTo(batch.finalDeadline + 1);
      await expect(escrow.connect(outsider).reclaim(bt(batch)))
        .to.emit(escrow, "Reclaimed")
        .withArgs(id, batch.requestor, 6n * PRICE2);
      expect(await escrow.balanceOf(batch.requestor)).to.equal(DEPOSIT);
      for (const p of batch.providers) expect(await escrow.balanceOf(p)).to.equal(DEPOSIT);
      await expect(escrow.reclaim(bt(batch)))
        .to.be.revertedWithCustomError(escrow, "AirqubeEscrowV2WrongStatus")
        .withArgs(id, 4n);
    });
  });
});
