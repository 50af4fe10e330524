/**
 * `airqube provider earnings` and `provider settle` through escrow v2, as an operator runs them, on a real local
 * chain (EDR over HTTP on 127.0.0.1): the data directory of an agent paid through v2 (its `chain-v2.json`,
 * `payout.key` and `seats-v2.sqlite`) is recognised without flags; settle runs the keeper's pass (wait before
 * the reveal deadline, then propose, reveal and finalize when the requestor vanished); earnings shows the balance
 * and the settled seats, and withdraws.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import type { JsonRpcProvider } from "ethers";
import { batchIdOf } from "../../src/chain/escrow-v2-batch.js";
import { EscrowV2Client } from "../../src/chain/escrow-v2-client.js";
import { batchOfJob, wireOfJob } from "../../src/chain/escrow-v2-wire.js";
import type { EscrowJob } from "../../src/chain/job.js";
import type { LocalChain } from "../../src/chain/local-chain.js";
import { writeChainFile } from "../../src/provider/payments.js";
import { ProviderPaymentsV2 } from "../../src/provider/payments-v2.js";
import { advance, E18, startV2Chain, type V2Chain } from "../chain/v2-chain.js";
import { tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const hex32 = () => `0x${randomBytes(32).toString("hex")}`;

/** One CLI call: exit code, stdout parsed as JSON when it is, stderr. */
async function airqube(args: string[]): Promise<{ code: number; json: unknown; stdout: string; stderr: string }> {
  const result = await promisify(execFile)(process.execPath, [BIN, ...args], {
    timeout: 60_000,
    env: { ...process.env, AIRQUBE_LOG_LEVEL: "warn", AIRQUBE_ESCROW_VERSION: "" },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
  let json: unknown;
  try {
    json = JSON.parse(result.stdout);
  } catch {}
  return { ...result, json };
}

describe("cli: provider earnings and provider settle through escrow v2 (real EDR chain)", function () {
  this.timeout(180_000);
  let fixture: V2Chain;
  let chain: LocalChain;
  let rpc: JsonRpcProvider;
  let requestor: EscrowV2Client;
  let escrow: string;
  const dataDir = tmp("aq-provider-v2-cli-");

  before(async () => {
    fixture = await startV2Chain(3);
    ({ chain, rpc, escrow } = fixture);
    requestor = await EscrowV2Client.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[1]!.privateKey,
      escrow,
    });
    await requestor.deposit(100n * E18);
    // what a v2 agent leaves in its data directory: its payout key, chain-v2.json, a seat it committed to
    writeFileSync(join(dataDir, "payout.key"), `${chain.accounts[2]!.privateKey}\n`, { mode: 0o600 });
    writeChainFile(dataDir, { rpcUrl: chain.rpcUrl, escrow }, 2);
  });

  after(async () => {
    requestor?.close();
    await fixture?.stop();
  });

  it("recognises the v2 agent's data directory, waits, then settles a batch the requestor abandoned, and withdraws", async () => {
    const seat = await ProviderPaymentsV2.connect(
      { rpcUrl: chain.rpcUrl, escrow, maxStake: String(10n * E18), stakeDeposit: String(20n * E18) },
      chain.accounts[2]!.privateKey,
      { dataDir },
    );
    const now = (await rpc.getBlock("latest"))!.timestamp;
    const qube = `aq1${randomBytes(32).toString("hex")}`;
    const job: EscrowJob = {
      requestor: requestor.address,
      qubeId: `0x${qube.slice(3)}`,
      nonce: BigInt(now) * 256n,
      providers: [seat.client.address],
      price: 2n * E18,
      stake: E18,
      quorum: 1,
      commitDeadline: now + 100,
      revealDeadline: now + 130,
      finalDeadline: now + 400,
    };
    const wire = wireOfJob(job, chain.chainId, escrow);
    const batch = batchOfJob(job);
    const batchId = batchIdOf(batch);
    try {
      expect(await seat.ensureStake()).to.equal(20n * E18);
      const verdict = await seat.accept({
        batch: wire,
        qubeId: qube,
        price: job.price,
        wallTimeMs: 10_000,
        now: new Date(now * 1000),
      });
      if (!verdict.ok) throw new Error(JSON.stringify(verdict));
      await requestor.open(batch, [verdict.signature]);
      const terms = { escrowJob: batchId, price: job.price.toString() } as never;
      const checked = await seat.check({
        batch: wire,
        terms,
        qubeId: qube,
        wallTimeMs: 10_000,
        now: new Date(now * 1000),
      });
      expect(checked.ok).to.equal(true);
      await seat.commit(batch, { outputsRoot: hex32(), salt: hex32() });
    } finally {
      await seat.close();
    }

    // the balance is the standing stake less the batch's lock; one seat, open
    const before = await airqube(["provider", "earnings", "--data-dir", dataDir, "--json"]);
    expect(before.code, before.stderr).to.equal(0);
    expect(before.json).to.deep.include({ escrow, escrowVersion: 2, balanceWei: String(19n * E18) });
    expect((before.json as { seats: unknown }).seats).to.deep.equal({ total: 1, open: 1, settled: 0 });

    // before the reveal deadline there is nothing to do yet: the seat waits, and says until when
    const early = await airqube(["provider", "settle", "--data-dir", dataDir, "--json"]);
    expect(early.code, early.stderr).to.equal(0);
    const [waiting] = early.json as { jobId: string; action: string; notBefore?: number }[];
    expect(waiting).to.deep.include({ jobId: batchId, action: "wait" });
    expect(waiting!.notBefore).to.be.a("number");

    // the requestor vanished: past the reveal deadline each `provider settle` takes the next step
    await advance(rpc, 131);
    const actions: string[] = [];
    for (let round = 0; round < 12 && !actions.includes("finalized"); round++) {
      const step = await airqube(["provider", "settle", "--data-dir", dataDir, "--json"]);
      expect(step.code, step.stdout + step.stderr).to.equal(0);
      for (const r of step.json as { action: string }[]) actions.push(r.action);
      await advance(rpc, 31);
    }
    expect(actions).to.include.members(["proposed", "revealed", "finalized"]);
    expect(actions).not.to.include("error");

    // paid: stake back and the price; the seat is settled; the human report says so; then withdrawn
    const human = await airqube(["provider", "earnings", "--data-dir", dataDir]);
    expect(human.stdout).to.contain("(escrow v2 ");
    expect(human.stdout).to.contain("seats: 1 (0 open, 1 settled on chain)");
    const withdrawn = await airqube(["provider", "earnings", "--data-dir", dataDir, "--withdraw", "--json"]);
    expect(withdrawn.code, withdrawn.stderr).to.equal(0);
    expect(withdrawn.json).to.deep.include({ balanceWei: "0" });
    expect((withdrawn.json as { withdrawal: { amountWei: string } }).withdrawal.amountWei).to.equal(String(22n * E18));
    expect(await requestor.balance()).to.equal(98n * E18);
  });

  it("refuses --force with v2, and names the missing chain file when told v1", async () => {
    const [force, v1] = await Promise.all([
      airqube(["provider", "settle", "--data-dir", dataDir, "--force", "--json"]),
      airqube(["provider", "earnings", "--data-dir", dataDir, "--escrow-version", "v1", "--json"]),
    ]);
    expect(force.code).to.not.equal(0);
    expect(force.stdout + force.stderr).to.contain("FLAG_UNSUPPORTED");
    expect(v1.code).to.not.equal(0);
    expect(v1.stdout + v1.stderr).to.contain("CHAIN_UNCONFIGURED");
  });
});
