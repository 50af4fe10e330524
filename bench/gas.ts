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
import { Contract, type JsonRpcProvider, MaxUint256, Wallet } from "ethers";
import { testGLMAbi } from "../src/chain/abi/test-glm.js";
import { deployEscrow, fundAccounts } from "../src/chain/deploy.js";
import { EscrowClient, type OwnOpening } from "../src/chain/escrow-client.js";
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

    const jobs = [];
    const alternatives = [];
    for (const k of [1, 3, 5]) {
      const first = await runJob(k, false);
      const steady = await runJob(k, false);
      const onchain = await runJob(k, true);
      jobs.push({ ...summarise(k, steady), firstJob: summarise(k, first) });
      alternatives.push({ path: "onchain-reveal", ...summarise(k, onchain) });
    }
    const report = {
      chain: "hardhat-edr (in-process), cancun",
      baseline,
      jobs,
      alternatives,
      goal: { k: 3, overheadGasMax: 150_000, met: (jobs.find((j) => j.k === 3)?.overheadGas ?? Infinity) <= 150_000 },
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
    }
  } finally {
    await chain.stop();
  }
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
