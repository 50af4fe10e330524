/**
 * Gas of one escrow job from open to withdrawal, for k = 1, 3 and 5 providers, on the embedded Hardhat (EDR)
 * chain.
 *
 * `npm run bench:gas -- --json` prints
 * `{ jobs: [{ k, steps: { open, commit, reveal, settle, withdraw }, totalGas, transferGas, overheadGas, ... }] }`.
 *
 * - Every provider agrees (the quorum is everyone); reveals travel in the settle transaction (the fast path),
 *   so `steps.reveal` is 0; `alternatives` gives the path where every provider reveals on chain itself.
 * - Accounts are returning ones (each ran a job before, as a provider or requestor does in steady state) and the
 *   escrow holds other funds; `firstJob` gives the first run for that k, where some accounts (all for k = 1)
 *   had never used the escrow (a fresh balance slot costs about 17 000 gas more per account).
 * - `transferGas` is what the ERC-20 transfers themselves cost: for every `transferFrom` (budget, stakes) and
 *   `transfer` (withdrawals) the job makes, the gas of a plain transaction doing only that transfer, measured in
 *   the same run between accounts that hold tokens already. It includes the 21 000 base cost of those plain
 *   transactions, since paying with a bare transfer would need a transaction too. `overheadGas = totalGas -
 *   transferGas` is what the escrow adds.
 */
import { Contract, ContractFactory, type JsonRpcProvider, MaxUint256, Signature, Wallet } from "ethers";
import { airqubeEscrowV2Abi, airqubeEscrowV2Bytecode } from "../src/chain/abi/airqube-escrow-v2.js";
import { testGLMAbi } from "../src/chain/abi/test-glm.js";
import { deployEscrow, fundAccounts } from "../src/chain/deploy.js";
import { EscrowClient, type OwnOpening } from "../src/chain/escrow-client.js";
import {
  ACCEPT_TYPES,
  batchCommitmentOf,
  batchIdOf,
  batchTuple,
  COMMITMENTS_TYPES,
  columnHashOf,
  compactSignature,
  type EscrowBatch,
  escrowV2Domain,
  FOLLOW_UP_TYPES,
  qubesRootOf,
} from "../src/chain/escrow-v2-batch.js";
import type { EscrowJob } from "../src/chain/job.js";
import { startLocalChain } from "../src/chain/local-chain.js";
import { createRpcProvider } from "../src/chain/rpc.js";

const E18 = 10n ** 18n;
const PRICE = 10n * E18;
const STAKE = 2n * E18;

interface Steps {
  /** The exact approvals (one before the open, one before each commit), since issue 17 never unlimited. */
  approve: number;
  open: number;
  commit: number;
  reveal: number;
  settle: number;
  withdraw: number;
}

function hex32(n: number): string {
  return `0x${n.toString(16).padStart(64, "0")}`;
}

async function main(): Promise<void> {
  const json = process.argv.includes("--json");
  const chain = await startLocalChain({ accounts: 8 });
  try {
    const provider = createRpcProvider(chain.rpcUrl, chain.chainId);
    const deployer = new Wallet(chain.accounts[0]!.privateKey, provider);
    const { token, escrow } = await deployEscrow(deployer);
    await fundAccounts(
      deployer,
      token,
      chain.accounts.map((a) => a.address),
      1_000_000n * E18,
    );
    // The escrow holds other jobs' funds in steady state: give it some, so no transfer fills an empty balance.
    const glm = new Contract(token, testGLMAbi, deployer);
    await (await glm.getFunction("transfer")(escrow, 1n)).wait();

    const clients = await Promise.all(
      chain.accounts
        .slice(1)
        .map((a) => EscrowClient.connect({ rpcUrl: chain.rpcUrl, privateKey: a.privateKey, escrow })),
    );
    // The client approves exact amounts before each open and commit (issue 17): these unlimited approvals are
    // overwritten; the approval transactions are counted in `steps.approve` from the measured baseline.
    for (const a of chain.accounts.slice(1)) {
      const w = new Wallet(a.privateKey, provider);
      await (await new Contract(token, testGLMAbi, w).getFunction("approve")(escrow, MaxUint256)).wait();
    }

    const baseline = await measureBaselines(
      provider,
      chain.accounts.map((a) => a.privateKey),
      token,
    );
    const requestor = clients[0]!;
    let nonce = 0n;

    const runJob = async (k: number, onchainReveal: boolean): Promise<Steps> => {
      const providers = clients.slice(1, 1 + k);
      const now = (await provider.getBlock("latest"))!.timestamp;
      const job: EscrowJob = {
        requestor: requestor.address,
        qubeId: hex32(0xaa),
        nonce: nonce++,
        providers: providers.map((p) => p.address),
        price: PRICE,
        stake: STAKE,
        quorum: Math.floor(k / 2) + 1,
        commitDeadline: now + 600,
        revealDeadline: now + 1200,
        finalDeadline: now + 1800,
      };
      const steps: Steps = {
        approve: (1 + k) * baseline.approve,
        open: 0,
        commit: 0,
        reveal: 0,
        settle: 0,
        withdraw: 0,
      };
      steps.open = Number((await requestor.openJob(job)).gasUsed);
      const reveals = new Map<string, OwnOpening>();
      for (const [i, p] of providers.entries()) {
        const own = { outputsRoot: hex32(0x1234), salt: hex32(1000 + i) };
        reveals.set(p.address, own);
        steps.commit += Number((await p.commit(job, own)).gasUsed);
      }
      if (onchainReveal) {
        for (const p of providers) {
          steps.reveal += Number((await p.reveal(job, new Map([[p.address, reveals.get(p.address)!]]))).gasUsed);
        }
        steps.settle = Number((await requestor.settle(job, new Map())).gasUsed);
      } else {
        steps.settle = Number((await requestor.settle(job, reveals)).gasUsed);
      }
      for (const p of providers) steps.withdraw += Number((await p.withdraw()).gasUsed);
      return steps;
    };

    const summarise = (k: number, steps: Steps) => {
      const totalGas = steps.approve + steps.open + steps.commit + steps.reveal + steps.settle + steps.withdraw;
      // One transferFrom for the budget, one per stake; one transfer per withdrawing provider (no refund here).
      const transferGas = (1 + k) * baseline.transferFrom + k * baseline.transfer;
      const overheadGas = totalGas - transferGas;
      return {
        k,
        steps,
        totalGas,
        transferGas,
        overheadGas,
        perPayee: {
          overheadGas: Math.round(overheadGas / k),
          settleAndWithdrawGas: Math.round((steps.settle + steps.withdraw) / k),
        },
      };
    };

    const jobs: (ReturnType<typeof summarise> & { firstJob: ReturnType<typeof summarise> })[] = [];
    const alternatives = [];
    for (const k of [1, 3, 5]) {
      const first = await runJob(k, false);
      const steady = await runJob(k, false);
      const onchain = await runJob(k, true);
      jobs.push({ ...summarise(k, steady), firstJob: summarise(k, first) });
      alternatives.push({ path: "onchain-reveal", ...summarise(k, onchain) });
    }
    const v2 = await measureV2(
      provider,
      chain.chainId,
      chain.accounts.map((a) => a.privateKey),
      token,
    );
    const perQube = v2.rows.map((r) => ({
      ...r,
      v1GasPerQube: jobs.find((j) => j.k === r.k)!.totalGas,
    }));
    const at = (k: number, batch: number, mode = "standalone") =>
      perQube.find((r) => r.k === k && r.batch === batch && r.mode === mode)!.gasPerQube;
    const report = {
      chain: "hardhat-edr (in-process), cancun",
      baseline,
      jobs,
      alternatives,
      goal: { k: 3, overheadGasMax: 150_000, met: (jobs.find((j) => j.k === 3)?.overheadGas ?? Infinity) <= 150_000 },
      perQube,
      v2Amortised: v2.amortised,
      v2BreakdownK3Batch1: v2.breakdownK3Batch1,
      v2GroupK3TieBreaker: v2.groupK3TieBreaker,
      v2Goals: {
        k3batch1: { gasPerQube: at(3, 1), max: 150_000, met: at(3, 1) <= 150_000 },
        k3batch1Checked: { gasPerQube: at(3, 1, "checked"), max: 150_000, met: at(3, 1, "checked") <= 150_000 },
        k3batch1Pipelined: { gasPerQube: at(3, 1, "pipelined"), max: 150_000, met: at(3, 1, "pipelined") <= 150_000 },
        k3batch50: { gasPerQube: at(3, 50), max: 40_000, met: at(3, 50) <= 40_000 },
      },
    };
    for (const c of clients) c.close();
    provider.destroy();
    if (json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      for (const j of jobs) {
        console.log(
          `k=${j.k}: total ${j.totalGas}, transfers ${j.transferGas}, overhead ${j.overheadGas} (${j.perPayee.overheadGas}/payee)`,
          j.steps,
        );
      }
      console.log("baseline", baseline, "goal", report.goal);
      for (const r of perQube) {
        console.log(
          `v2 k=${r.k} batch=${r.batch} ${r.mode}: ${r.gasPerQube} gas/qube (amortised ${r.amortisedPerQube}); v1 ${r.v1GasPerQube}`,
        );
      }
      console.log("v2 amortised", report.v2Amortised, "goals", report.v2Goals);
      console.log("v2 group: k = 3 with a dissenter + a k = 1 tie-breaker", report.v2GroupK3TieBreaker);
    }
  } finally {
    await chain.stop();
  }
}

/** Qubes over which deposits, stake top-ups and withdrawals are amortised. */
const AMORTISED_OVER = 100;

/**
 * Escrow v2 (contracts/AirqubeEscrowV2.sol) in steady state: a batch of `batch` qubes on k providers, opened and
 * settled by the requestor (the fast path: every provider agrees). `gasPerQube = (open + settle) / batch +
 * amortisedPerQube`, where `amortisedPerQube` spreads over {@link AMORTISED_OVER} qubes one requestor deposit
 * (with permit) and, per provider, one stake deposit (with permit) and one withdrawal of its earnings. A warm-up
 * batch first, so the accounts are returning ones.
 */
async function measureV2(provider: JsonRpcProvider, chainId: number, keys: string[], token: string) {
  const deployer = new Wallet(keys[0]!, provider);
  const escrowContract = await new ContractFactory(airqubeEscrowV2Abi, airqubeEscrowV2Bytecode, deployer).deploy(token);
  await escrowContract.waitForDeployment();
  const escrow = await escrowContract.getAddress();
  const wallets = keys.slice(1).map((k) => new Wallet(k, provider));
  const requestor = wallets[0]!;
  const seats = wallets.slice(1, 6);
  const at = (w: Wallet) => new Contract(escrow, airqubeEscrowV2Abi, w);
  const glm = (w: Wallet) => new Contract(token, testGLMAbi, w);
  const domain = escrowV2Domain(chainId, escrow);
  const gas = async (p: Promise<{ wait(): Promise<{ gasUsed: bigint } | null> }>) =>
    Number((await (await p).wait())!.gasUsed);

  const depositWithPermit = async (w: Wallet, amount: bigint) => {
    const deadline = BigInt((await provider.getBlock("latest"))!.timestamp + 3600);
    const nonce = (await glm(w).getFunction("nonces")(w.address)) as bigint;
    const sig = Signature.from(
      await w.signTypedData(
        { name: "Test Golem Network Token", version: "1", chainId, verifyingContract: token },
        {
          Permit: [
            { name: "owner", type: "address" },
            { name: "spender", type: "address" },
            { name: "value", type: "uint256" },
            { name: "nonce", type: "uint256" },
            { name: "deadline", type: "uint256" },
          ],
        },
        { owner: w.address, spender: escrow, value: amount, nonce, deadline },
      ),
    );
    return gas(at(w).getFunction("depositWithPermit")(amount, deadline, sig.v, sig.r, sig.s));
  };
  // first deposits (fresh balance slots), then the measured steady-state top-ups
  await depositWithPermit(requestor, 500_000n * E18);
  for (const s of seats) await depositWithPermit(s, 10_000n * E18);
  const deposit = await depositWithPermit(requestor, 1_000n * E18);
  const stakeDeposit = await depositWithPermit(seats[0]!, 1_000n * E18);

  // Steady state: a requestor's ring slot (nonce % 256) held an earlier, closed batch; all batches here use slot 0.
  let nonce = 0n;
  /**
   * A batch of `jobs` qubes on `k` seats (from seat `first`) in ring slot `slot`, its statements (every seat
   * agreeing but `dissenter`, if given) and calls; with `leader`, a follow-up of it (seats sign `FollowUp`).
   */
  const prepare = async (
    k: number,
    jobs: number,
    group: { first?: number; slot?: bigint; dissenter?: number; leader?: EscrowBatch } = {},
  ) => {
    const now = (await provider.getBlock("latest"))!.timestamp;
    const providers = seats.slice(group.first ?? 0, (group.first ?? 0) + k);
    const batch: EscrowBatch = {
      requestor: requestor.address,
      nonce: 256n * nonce++ + (group.slot ?? 0n),
      qubesRoot: qubesRootOf(Array.from({ length: jobs }, (_, j) => hex32(0xc0be00 + j))),
      jobs,
      providers: providers.map((p) => p.address),
      price: PRICE,
      stake: STAKE,
      quorum: Math.floor(k / 2) + 1,
      commitDeadline: now + 600,
      revealDeadline: now + 1200,
      finalDeadline: now + 3000,
    };
    const id = batchIdOf(batch);
    const accepts: string[] = [];
    for (const p of providers) {
      const signature = group.leader
        ? await p.signTypedData(domain, FOLLOW_UP_TYPES, { batchId: id, leaderId: batchIdOf(group.leader) })
        : await p.signTypedData(domain, ACCEPT_TYPES, { batchId: id });
      accepts.push(...compactSignature(signature));
    }
    const openings: string[] = [];
    const columns: string[][] = providers.map(() => []);
    for (let j = 0; j < jobs; j++) {
      for (const [s, p] of providers.entries()) {
        const salt = hex32(0x5a170000 + j * 16 + s);
        const root = hex32(s === group.dissenter ? 0x5678 : 0x1234);
        openings.push(root, salt);
        columns[s]!.push(batchCommitmentOf(id, j, root, salt, p.address));
      }
    }
    const signatures: string[] = [];
    for (const [s, p] of providers.entries()) {
      const value = { batchId: id, commitments: columnHashOf(columns[s]!) };
      signatures.push(...compactSignature(await p.signTypedData(domain, COMMITMENTS_TYPES, value)));
    }
    const iface = at(requestor).interface;
    return {
      batch,
      signatures,
      openings,
      open: () =>
        group.leader
          ? at(requestor).getFunction("openFollowUp")(batchTuple(batch), accepts, batchTuple(group.leader))
          : at(requestor).getFunction("open")(batchTuple(batch), accepts),
      settle: () => at(requestor).getFunction("settle")(batchTuple(batch), signatures, openings),
      release: () => at(requestor).getFunction("release")(batchTuple(batch)),
      openData: iface.encodeFunctionData("open", [batchTuple(batch), accepts]),
      releaseData: iface.encodeFunctionData("release", [batchTuple(batch)]),
    };
  };
  const hashOf = async (p: Promise<{ hash: string; wait(): Promise<unknown> }>) => {
    const tx = await p;
    await tx.wait();
    return tx.hash;
  };
  /** Opens a batch and settles it: `release` (everyone agreed) or `settle` (signatures and openings checked). */
  const runBatch = async (k: number, jobs: number, checked: boolean) => {
    process.stderr.write(`v2 k=${k} batch=${jobs}${checked ? " checked" : ""}\n`);
    const b = await prepare(k, jobs);
    const openTx = await hashOf(b.open());
    const settleTx = await hashOf(checked ? b.settle() : b.release());
    // tracing is slow on big batches: the breakdown is taken for k = 3, batch 1 only
    const measure = async (hash: string) =>
      k === 3 && jobs === 1
        ? gasBreakdown(provider, hash)
        : { gasUsed: Number((await provider.getTransactionReceipt(hash))!.gasUsed) };
    return { open: await measure(openTx), settle: await measure(settleTx) };
  };
  /** A stream of batches: each transaction releases the previous batch and opens the next (multicall). */
  const runPipelined = async (k: number, jobs: number) => {
    const b = [await prepare(k, jobs), await prepare(k, jobs), await prepare(k, jobs)];
    await gas(b[0]!.open());
    await gas(at(requestor).getFunction("multicall")([b[0]!.releaseData, b[1]!.openData]));
    const steady = await gas(at(requestor).getFunction("multicall")([b[1]!.releaseData, b[2]!.openData]));
    await gas(b[2]!.release());
    return steady;
  };
  /**
   * A k = 3 qube with one dissenter and a k = 1 tie-breaker (seat 3) in its group, settled with `settleGroup`:
   * the leader in ring slot 0, the follow-up in slot 1; the second run is the steady state.
   */
  const runGroup = async () => {
    const leader = await prepare(3, 1, { dissenter: 2 });
    const open = await gas(leader.open());
    const tie = await prepare(1, 1, { first: 3, slot: 1n, leader: leader.batch });
    const openFollowUp = await gas(tie.open());
    const settleGroup = await gas(
      at(requestor).getFunction("settleGroup")(
        [batchTuple(leader.batch), batchTuple(tie.batch)],
        [leader.signatures, tie.signatures],
        [leader.openings, tie.openings],
      ),
    );
    return { open, openFollowUp, settleGroup, total: open + openFollowUp + settleGroup };
  };
  await runBatch(5, 1, true); // warm-up: every account returning
  await runGroup(); // warm-up of the group's slots (the follow-up's ring slot, the tie-breaker's balance)
  const group = await runGroup();
  const withdraw = await gas(at(seats[0]!).getFunction("withdraw")(PRICE));
  const rows = [];
  const breakdowns: Record<string, { open: GasBreakdown; settle: GasBreakdown }> = {};
  for (const k of [1, 3, 5]) {
    const amortisedPerQube = Math.round((deposit + k * (stakeDeposit + withdraw)) / AMORTISED_OVER);
    for (const [mode, checked] of [
      ["standalone", false],
      ["checked", true],
    ] as const) {
      for (const batch of [1, 50]) {
        const r = await runBatch(k, batch, checked);
        if (k === 3 && batch === 1) breakdowns[mode] = r as { open: GasBreakdown; settle: GasBreakdown };
        rows.push({
          k,
          batch,
          mode,
          gasPerQube: Math.round((r.open.gasUsed + r.settle.gasUsed) / batch) + amortisedPerQube,
          open: r.open.gasUsed,
          settle: r.settle.gasUsed,
          amortisedPerQube,
        });
      }
    }
    for (const batch of [1, 50]) {
      const settleAndOpen = await runPipelined(k, batch);
      rows.push({
        k,
        batch,
        mode: "pipelined",
        gasPerQube: Math.round(settleAndOpen / batch) + amortisedPerQube,
        settleAndOpen,
        amortisedPerQube,
      });
    }
  }
  return {
    rows,
    amortised: { over: AMORTISED_OVER, requestorDeposit: deposit, providerStakeDeposit: stakeDeposit, withdraw },
    breakdownK3Batch1: breakdowns,
    groupK3TieBreaker: group,
  };
}

/** Where a transaction's gas goes, by opcode group (from `debug_traceTransaction`). */
interface GasBreakdown {
  gasUsed: number;
  /** The 21 000 of every transaction. */
  base: number;
  /** 4 gas per zero byte and 16 per other byte of the transaction's data. */
  calldata: number;
  calldataBytes: number;
  /** SSTORE: what they cost, how many, and the refunds (for clearing slots) they earn. */
  sstore: number;
  sstores: number;
  refund: number;
  sload: number;
  /** STATICCALLs to the ecrecover precompile (address 1), with their access cost. */
  ecrecover: number;
  ecrecovers: number;
  keccak: number;
  /** LOG0..LOG4. */
  events: number;
  /** Every other opcode: stack, memory, calldata copies, jumps, the token call... */
  other: number;
}

/**
 * Splits a mined transaction's gas by opcode group. A step's cost is the drop of the gas counter to the next
 * step at the same depth (so a call's cost includes what its callee spent, and a precompile's cost is exact).
 */
async function gasBreakdown(provider: JsonRpcProvider, hash: string): Promise<GasBreakdown> {
  const [tx, receipt, trace] = await Promise.all([
    provider.getTransaction(hash),
    provider.getTransactionReceipt(hash),
    provider.send("debug_traceTransaction", [hash, { disableMemory: true, disableStorage: true }]) as Promise<{
      structLogs: { op: string; gas: number; depth: number; stack?: string[] }[];
    }>,
  ]);
  const data = Buffer.from(tx!.data.slice(2), "hex");
  const zeros = data.filter((b) => b === 0).length;
  const out: GasBreakdown = {
    gasUsed: Number(receipt!.gasUsed),
    base: 21_000,
    calldata: 4 * zeros + 16 * (data.length - zeros),
    calldataBytes: data.length,
    sstore: 0,
    sstores: 0,
    refund: 0,
    sload: 0,
    ecrecover: 0,
    ecrecovers: 0,
    keccak: 0,
    events: 0,
    other: 0,
  };
  const logs = trace.structLogs;
  let executed = 0;
  for (let i = 0; i < logs.length; i++) {
    const step = logs[i]!;
    if (step.depth !== 1) continue; // the escrow's own frame; calls (the token's) are counted whole at depth 1
    let next: (typeof logs)[number] | undefined;
    for (let j = i + 1; j < logs.length; j++) {
      if (logs[j]!.depth === 1) {
        next = logs[j];
        break;
      }
    }
    const cost = next === undefined ? 0 : step.gas - next.gas;
    executed += cost;
    const op = step.op;
    if (op === "SSTORE") {
      out.sstore += cost;
      out.sstores++;
    } else if (op === "SLOAD") out.sload += cost;
    else if (op === "KECCAK256" || op === "SHA3") out.keccak += cost;
    else if (op.startsWith("LOG")) out.events += cost;
    else if (op === "STATICCALL" && step.stack !== undefined && BigInt(step.stack[step.stack.length - 2]!) === 1n) {
      out.ecrecover += cost;
      out.ecrecovers++;
    } else out.other += cost;
  }
  // The last step (STOP/RETURN) costs 0 and has no successor; the refund closes the sum.
  out.refund = out.base + out.calldata + executed - out.gasUsed;
  return out;
}

/** Gas of plain transfer and transferFrom transactions between accounts that already hold tokens. */
async function measureBaselines(
  provider: JsonRpcProvider,
  keys: string[],
  token: string,
): Promise<{ transfer: number; transferFrom: number; approve: number }> {
  const [a, b, c] = keys.slice(5, 8).map((k) => new Wallet(k, provider)) as [Wallet, Wallet, Wallet];
  const ta = new Contract(token, testGLMAbi, a);
  const tc = new Contract(token, testGLMAbi, c);
  await (await ta.getFunction("approve")(c.address, MaxUint256)).wait();
  const t1 = await (await ta.getFunction("transfer")(b.address, 5n * E18)).wait();
  const t2 = await (await tc.getFunction("transferFrom")(a.address, b.address, 5n * E18)).wait();
  // an exact approval from zero, as the client sends before each open and commit
  const tb = new Contract(token, testGLMAbi, b);
  const t3 = await (await tb.getFunction("approve")(c.address, 5n * E18)).wait();
  return { transfer: Number(t1!.gasUsed), transferFrom: Number(t2!.gasUsed), approve: Number(t3!.gasUsed) };
}

await main();
