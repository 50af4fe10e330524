/**
 * Issues 17 and 22, fault tests on one devnet with a chain (deadlines shortened or chain time advanced): a real
 * `airqube run` SIGKILLed between lock and dispatch, between the decision and the settlement, and during the
 * settlement; a lock mined after the requestor's time-out; the chain going down mid-qube and coming back with
 * its state; two chosen providers killed mid-qube (issue 22: the first-round provider in the decided quorum is
 * paid). In every case no token is stuck: each escrow job ends settled, reclaimed or abandoned, the escrow holds
 * exactly what it owes, the sum of balances is conserved, and honest providers in the decided quorum are paid
 * and never slashed. Plus: `airqube journal` never marks the qube of a running requestor interrupted.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { expect } from "chai";
import { Contract, Interface } from "ethers";
import { airqubeEscrowAbi } from "../../src/chain/abi/airqube-escrow.js";
import { testGLMAbi } from "../../src/chain/abi/test-glm.js";
import { ChainError } from "../../src/chain/errors.js";
import { EscrowClient } from "../../src/chain/escrow-client.js";
import { type EscrowJob, jobIdOf } from "../../src/chain/job.js";
import { type EscrowJobJson, jobFromJson } from "../../src/chain/job-json.js";
import { createRpcProvider } from "../../src/chain/rpc.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { Identity } from "../../src/qube/index.js";
import { sealQube } from "../../src/requestor/draft.js";
import { RequestorJournal } from "../../src/requestor/journal.js";
import { Libp2pMarket } from "../../src/requestor/libp2p-market.js";
import { EscrowPayments, type PaymentReport } from "../../src/requestor/payments.js";
import { Requestor, type RunEvent, type RunReport } from "../../src/requestor/requestor.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";
import { type RpcProxy, startRpcProxy } from "../helpers/rpc-proxy.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const limits = { wallTimeMs: 5_000, memoryBytes: 64 << 20, scratchBytes: 16 << 20 };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const SLASHED = new Interface(airqubeEscrowAbi).getEvent("Slashed")!.topicHash;

/** Runs the CLI; `onLine` sees each stdout line (JSON with --json) and the child. */
function cli(args: string[], onLine?: (line: string, child: ChildProcess) => void) {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, AIRQUBE_LOG_LEVEL: "warn", AIRQUBE_RPC_URL: "", AIRQUBE_ESCROW: "" },
  });
  const lines: string[] = [];
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-8000);
  });
  createInterface({ input: child.stdout! }).on("line", (line) => {
    lines.push(line);
    onLine?.(line, child);
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; lines: string[]; stderr: string }>(
    (resolve) => child.once("close", (code, signal) => resolve({ code, signal, lines, stderr })),
  );
  return { child, done };
}

describe("payments: crashes and faults on a devnet with a chain @docker", function () {
  this.timeout(240_000);
  let devnet: Devnet;
  let watcher: EscrowClient;
  let glm: Contract;
  let rpc: ReturnType<typeof createRpcProvider>;
  let total = 0n;

  /** Every account the devnet's tokens can be at: the requestor, the providers, the escrow. */
  const accounts = () => [devnet.chain!.requestor.address, ...devnet.chain!.payouts];
  const tokenOf = async (a: string) => (await glm.getFunction("balanceOf")(a)) as bigint;
  /** The requestor's wealth: tokens in its wallet plus what the escrow owes it. */
  const requestorWealth = async () =>
    (await tokenOf(devnet.chain!.requestor.address)) + (await watcher.balanceOf(devnet.chain!.requestor.address));

  /** No token stuck: the escrow holds exactly what it owes (nothing locked in a job), and nothing vanished. */
  async function expectNothingStuck() {
    let owed = 0n;
    let sum = await tokenOf(devnet.chain!.escrow);
    for (const a of accounts()) {
      owed += await watcher.balanceOf(a);
      sum += await tokenOf(a);
    }
    expect(await tokenOf(devnet.chain!.escrow), "escrow holds only what it owes").to.equal(owed);
    expect(sum, "sum of balances conserved").to.equal(total);
  }

  /** Every escrow job of a journal ended (settled, reclaimed, or abandoned: never mined). */
  function journalJobs(dataDir: string) {
    const journal = new RequestorJournal(join(dataDir, "journal.sqlite"));
    try {
      return journal.escrowJobs().map((e) => ({ ...e, parsed: jobFromJson(e.job as EscrowJobJson) }));
    } finally {
      journal.close();
    }
  }

  /** Moves the chain's clock to `until` (unix seconds) at least. */
  async function advanceTo(until: number) {
    const latest = (await rpc.getBlock("latest"))!.timestamp;
    const now = Math.max(latest, Math.floor(Date.now() / 1000));
    if (until > now) await rpc.send("evm_increaseTime", [until - now + 1]);
    await rpc.send("evm_mine", []);
  }

  /** Credits of `job` to `account` on chain, and whether it was slashed in it. */
  async function paidIn(job: EscrowJob, account: string): Promise<bigint> {
    return (await watcher.credits(account)).filter((c) => c.jobId === jobIdOf(job)).reduce((s, c) => s + c.amount, 0n);
  }
  async function slashedIn(jobId: string): Promise<string[]> {
    const logs = await rpc.getLogs({
      address: devnet.chain!.escrow,
      fromBlock: 0,
      toBlock: "latest",
      topics: [SLASHED, jobId],
    });
    return logs.map((l) => `0x${l.topics[2]!.slice(26)}`.toLowerCase());
  }

  before(async () => {
    devnet = await Devnet.start({
      providers: Array.from({ length: 7 }, () => ({ behaviour: "honest" })),
      probeCache: PROBE_CACHE,
      chain: true,
      readyTimeoutMs: 180_000,
    });
    const chain = devnet.chain!;
    watcher = await EscrowClient.connect({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.requestor.privateKey,
      escrow: chain.escrow,
    });
    rpc = createRpcProvider(chain.rpcUrl, chain.chainId);
    glm = new Contract(chain.token, testGLMAbi, rpc);
    total = await tokenOf(chain.escrow);
    for (const a of accounts()) total += await tokenOf(a);
  });
  after(async () => {
    watcher?.close();
    rpc?.destroy();
    await devnet?.stop(3000);
  });

  // ----------------------------------------------------------------------------------------------------------
  // 1. a real `airqube run` SIGKILLed at three points; `airqube journal --settle` on the same data dir
  // ----------------------------------------------------------------------------------------------------------

  /** Starts `airqube run` paid through `proxy`, 3 providers, a 5 s qube. */
  function paidRun(proxy: RpcProxy, dataDir: string, text: string) {
    const chain = devnet.chain!;
    return cli([
      "run",
      "--json",
      "--bootstrap",
      devnet.bootstrap,
      "--rpc-url",
      proxy.url,
      "--escrow",
      chain.escrow,
      "--payment-key-file",
      chain.requestorKeyFile,
      "--data-dir",
      dataDir,
      "--output",
      tmp("aq-crash-out-"),
      "--redundancy",
      "3",
      "--timeout",
      "5s",
      "--image",
      "airqube/busybox:latest",
      "--",
      "sh",
      "-c",
      `echo ${text} > /output/result`,
    ]);
  }

  async function settleJournal(dataDir: string): Promise<PaymentReport[]> {
    const chain = devnet.chain!;
    const { done } = cli([
      "journal",
      "--settle",
      "--json",
      "--data-dir",
      dataDir,
      "--rpc-url",
      chain.rpcUrl,
      "--escrow",
      chain.escrow,
      "--payment-key-file",
      chain.requestorKeyFile,
    ]);
    const ended = await done;
    expect(ended.code, ended.stderr).to.equal(0);
    return JSON.parse(ended.lines.join("\n")) as PaymentReport[];
  }

  it("airqube run killed between lock and dispatch: journal --settle reclaims the budget", async () => {
    const before = await requestorWealth();
    const dataDir = tmp("aq-crash-lock-");
    let victim: ChildProcess | undefined;
    const proxy = await startRpcProxy(devnet.chain!.rpcUrl, {
      after: (tx) => {
        // the budget is locked (mined) and the run never hears of it: nothing is dispatched
        if (tx.name === "openJob") victim?.kill("SIGKILL");
      },
    });
    try {
      const run = paidRun(proxy, dataDir, `lock-${Date.now()}`);
      victim = run.child;
      const ended = await run.done;
      expect(ended.signal, ended.stderr).to.equal("SIGKILL");
      expect(proxy.sent.map((t) => t.name)).to.include("openJob");
      expect(ended.lines.some((l) => l.includes('"qubeSent"'))).to.equal(false);
    } finally {
      await proxy.close();
    }
    const [entry] = journalJobs(dataDir);
    expect(entry, "the job was journalled before its lock was sent").to.not.equal(undefined);
    expect(entry!.lockTx).to.equal(null);
    expect((await watcher.jobState(entry!.jobId)).status).to.equal("open");
    // before the commit deadline nothing may be reclaimed; after it, the budget comes back
    await advanceTo(entry!.parsed.commitDeadline + 1);
    const reports = await settleJournal(dataDir);
    expect(reports.map((r) => r.status)).to.deep.equal(["reclaimed"]);
    expect(journalJobs(dataDir).map((e) => e.state)).to.deep.equal(["reclaimed"]);
    expect(await requestorWealth()).to.equal(before);
    await expectNothingStuck();
  });

  /** The three providers of a settled one-job qube each got price + stake; none was slashed. */
  async function expectAllPaid(job: EscrowJob) {
    expect((await watcher.jobState(jobIdOf(job))).status).to.equal("settled");
    for (const p of job.providers) expect(await paidIn(job, p), p).to.equal(job.price + job.stake);
    expect(await slashedIn(jobIdOf(job))).to.deep.equal([]);
  }

  for (const when of ["before", "after"] as const) {
    const title =
      when === "before"
        ? "airqube run killed between the decision and the settlement: journal --settle pays the quorum"
        : "airqube run killed during the settlement (its tx sent and mined): journal --settle finds it settled";
    it(title, async () => {
      const before = await requestorWealth();
      const dataDir = tmp(`aq-crash-settle-${when}-`);
      let victim: ChildProcess | undefined;
      const isSettle = (name: string) => name === "settle" || name === "settleGroup";
      const proxy = await startRpcProxy(devnet.chain!.rpcUrl, {
        // before: the settlement is never sent; after: it is mined, the run never hears of it
        before: (tx) => {
          if (when === "before" && isSettle(tx.name)) {
            victim?.kill("SIGKILL");
            return "drop";
          }
          return "forward";
        },
        after: (tx) => {
          if (when === "after" && isSettle(tx.name)) victim?.kill("SIGKILL");
        },
      });
      try {
        const run = paidRun(proxy, dataDir, `settle-${when}-${Date.now()}`);
        victim = run.child;
        const ended = await run.done;
        expect(ended.signal, `${ended.stderr}\n${ended.lines.join("\n")}`).to.equal("SIGKILL");
        expect(ended.lines.some((l) => l.includes('"decided"'))).to.equal(true);
      } finally {
        await proxy.close();
      }
      const [entry, ...others] = journalJobs(dataDir);
      expect(others).to.deep.equal([]);
      expect(entry!.state).to.equal("open");
      expect(Object.keys(entry!.openings)).to.have.length(3);
      expect((await watcher.jobState(entry!.jobId)).status).to.equal(when === "before" ? "open" : "settled");
      const reports = await settleJournal(dataDir);
      expect(reports.map((r) => r.status)).to.deep.equal(["settled"]);
      expect(journalJobs(dataDir).map((e) => e.state)).to.deep.equal(["settled"]);
      await expectAllPaid(entry!.parsed);
      // the requestor paid exactly the three prices (its own refund is whatever the budget left)
      expect(await requestorWealth()).to.equal(before - 3n * entry!.parsed.price);
      await expectNothingStuck();
    });
  }

  // ----------------------------------------------------------------------------------------------------------
  // in-process requestors with shortened deadlines
  // ----------------------------------------------------------------------------------------------------------

  async function requestorWith(
    dataDir: string,
    rpcUrl: string,
    extra: { lockTimeoutMs?: number; marginS?: number } = {},
  ) {
    const chain = devnet.chain!;
    const identity = Identity.fromSeed(randomBytes(32));
    const market = await Libp2pMarket.connect({ identity, bootstrap: [devnet.bootstrap] });
    const payments = await EscrowPayments.connect({
      rpcUrl,
      privateKey: chain.requestor.privateKey,
      escrow: chain.escrow,
      marginS: 10,
      revealWindowS: 8,
      settleWindowS: 30,
      ...extra,
    });
    // every provider's offer (up to 150 s on a loaded machine; at once when they are all there)
    for (
      const until = Date.now() + 60_000;
      market.offers.list().length < devnet.providers.length && Date.now() < until;
    ) {
      await market.offers.queryConnected();
      await sleep(200);
    }
    const requestor = new Requestor({ market, dataDir, payments, commitGraceMs: 5_000, settleWaitMs: 60_000 });
    const seal = (command: string) =>
      sealQube(
        {
          image: "airqube/busybox:latest",
          command: ["sh", "-c", command],
          outputs: ["result"],
          limits,
          redundancy: { mode: "fixed", k: 3, quorum: 2 },
        },
        identity,
      );
    return {
      requestor,
      payments,
      seal,
      close: async () => {
        requestor.close();
        payments.dispose();
        await market.close();
      },
    };
  }

  /** Recovers until every journalled job ended, moving the chain's clock to each `notBefore` it is told. */
  async function recoverAll(client: { requestor: Requestor }): Promise<PaymentReport[]> {
    let reports: PaymentReport[] = [];
    for (let i = 0; i < 6; i++) {
      reports = await client.requestor.recoverPayments();
      const waiting = reports.filter((r) => r.status === "pending");
      if (waiting.length === 0) return reports;
      const notBefore = Math.max(...waiting.map((r) => r.notBefore ?? 0));
      if (notBefore > 0) await advanceTo(notBefore);
      else await sleep(2000);
    }
    return reports;
  }

  it("a lock mined after the requestor's time-out is journalled and recovery reclaims it", async () => {
    const before = await requestorWealth();
    const dataDir = tmp("aq-crash-late-");
    let forwarded: Promise<void> | undefined;
    const proxy = await startRpcProxy(devnet.chain!.rpcUrl, {
      before: (tx) => {
        if (tx.name !== "openJob") return "forward";
        // the lock reaches the chain only after the requestor gave up on it (lockTimeoutMs 3 s)
        const late = sleep(6_000);
        forwarded = late;
        return late.then(() => "forward" as const);
      },
    });
    const client = await requestorWith(dataDir, proxy.url, { lockTimeoutMs: 3_000 });
    try {
      let outcome: RunReport | unknown;
      try {
        outcome = await client.requestor.run(await client.seal(`echo late-${Date.now()} > /output/result`), {
          outputDir: tmp("aq-crash-out-"),
        });
      } catch (error) {
        outcome = error;
      }
      // the round could not lock: a chain error, nothing was dispatched
      expect(outcome).to.be.instanceOf(ChainError);
      expect((outcome as ChainError).code).to.equal("CHAIN_TIMEOUT");
      await forwarded;
      await sleep(1000);
      const jobs = journalJobs(dataDir);
      expect(jobs).to.have.length(1);
      expect((await watcher.jobState(jobs[0]!.jobId)).status, "mined after the time-out").to.equal("open");
      const reports = await recoverAll(client);
      expect(reports.map((r) => r.status)).to.deep.equal(["reclaimed"]);
      expect(journalJobs(dataDir).map((e) => e.state)).to.deep.equal(["reclaimed"]);
      expect(await requestorWealth()).to.equal(before);
      await expectNothingStuck();
    } finally {
      await client.close();
      await proxy.close();
    }
  });

  it("an RPC that refuses wide eth_getLogs ranges: a paid run settles through it, its reads narrowed from the deployment block", async () => {
    const MAX = 8;
    const chain = devnet.chain!;
    // more blocks since the deployment than the endpoint accepts in one read (evm_mine: after hardhat_mine's blocks,
    // a second apart, the job's lock reverted with AirqubeEscrowInvalidDeadlines here)
    const deployed = Number(await new Contract(chain.escrow, airqubeEscrowAbi, rpc).getFunction("deploymentBlock")());
    while ((await rpc.getBlockNumber()) - deployed < 4 * MAX) await rpc.send("evm_mine", []);
    const before = await requestorWealth();
    const dataDir = tmp("aq-crash-range-");
    const proxy = await startRpcProxy(chain.rpcUrl, { maxLogRange: MAX });
    // the default range (2 000 blocks): the client narrows it when the endpoint refuses
    const client = await requestorWith(dataDir, proxy.url);
    let job: EscrowJob;
    try {
      const report = await client.requestor.run(await client.seal(`echo range-${Date.now()} > /output/result`), {
        outputDir: tmp("aq-crash-out-"),
      });
      expect(report.status).to.equal("verified");
      expect(report.payments?.map((p) => p.status)).to.deep.equal(["settled"]);
      const [entry, ...others] = journalJobs(dataDir);
      expect(others).to.deep.equal([]);
      expect(entry!.state).to.equal("settled");
      job = entry!.parsed;
      const refused = proxy.logRanges.filter((r) => r.refused);
      const accepted = proxy.logRanges.filter((r) => !r.refused);
      expect(refused.length, "the endpoint refused the first, wide reads").to.be.greaterThan(0);
      expect(accepted.length).to.be.greaterThan(0);
      expect(Math.min(...proxy.logRanges.map((r) => r.from)), "reads start at the deployment block").to.equal(deployed);
      for (const r of accepted) expect(r.to - r.from + 1).to.be.at.most(MAX);
    } finally {
      await client.close();
      await proxy.close();
    }
    await expectAllPaid(job);
    expect(await requestorWealth()).to.equal(before - 3n * job.price);
    await expectNothingStuck();
  });

  it("the chain down mid-qube and back with its state: a chain error or a result, then nothing left open", async () => {
    const dataDir = tmp("aq-crash-down-");
    const client = await requestorWith(dataDir, devnet.chain!.rpcUrl);
    const chain = devnet.chain!;
    let back: Promise<void> | undefined;
    try {
      let outcome: RunReport | unknown;
      try {
        outcome = await client.requestor.run(await client.seal(`sleep 2; echo down-${Date.now()} > /output/result`), {
          outputDir: tmp("aq-crash-out-"),
          onProgress: (e: RunEvent) => {
            if (e.type === "budgetLocked" && !back) {
              // down for 8 s while the qube runs, then back on the same port with the same state
              back = chain.interrupt().then(() => sleep(8_000).then(() => chain.resume()));
            }
          },
        });
      } catch (error) {
        outcome = error;
      }
      await back;
      if (outcome instanceof Error) {
        expect(outcome, String(outcome)).to.be.instanceOf(ChainError);
      } else {
        expect((outcome as RunReport).status).to.equal("verified");
      }
      const reports = await recoverAll(client);
      const states = journalJobs(dataDir).map((e) => e.state);
      expect(states.length).to.be.greaterThan(0);
      for (const s of states) expect(s, JSON.stringify(reports)).to.be.oneOf(["settled", "reclaimed", "abandoned"]);
      // providers that committed while the chain was up are never slashed: none was asked to reveal and kept silent
      for (const e of journalJobs(dataDir)) expect(await slashedIn(e.jobId)).to.deep.equal([]);
      // let the keepers close their seats (nothing of theirs may stay bonded)
      await sleep(6_000);
      await expectNothingStuck();
    } finally {
      await back?.catch(() => undefined);
      await chain.resume();
      await client.close();
    }
  });

  // last: it kills two of the devnet's providers
  it("seven providers, k = 3, two chosen providers killed mid-qube: the first-round provider in the quorum is paid (issue 22)", async () => {
    const before = await requestorWealth();
    const dataDir = tmp("aq-crash-replace-");
    // The commit deadline is counted from the latest block's time. Earlier tests moved the chain's clock ahead
    // of ours and the devnet mines only on demand: a fresh block first, so "now" is not a stale block's. The
    // margin covers a container start on a loaded machine (the survivor must still commit in time).
    await rpc.send("evm_mine", []);
    const client = await requestorWith(dataDir, devnet.chain!.rpcUrl, { marginS: 30 });
    const killed = new Set<string>();
    const locks: string[][] = [];
    try {
      const result = await client.requestor.run(
        await client.seal(`sleep 3; echo replaced-${Date.now()} > /output/result`),
        {
          outputDir: tmp("aq-crash-out-"),
          onProgress: (e: RunEvent) => {
            if (e.type !== "budgetLocked") return;
            locks.push(e.providers);
            if (locks.length > 1) return;
            // two of the first round's three chosen providers die before running the qube
            for (const id of e.providers.slice(0, 2)) {
              const p = devnet.providers.find((x) => x.peerId === id)!;
              p.process.kill("SIGKILL");
              killed.add(id);
            }
          },
        },
      );
      expect(result.status).to.equal("verified");
      const survivor = locks[0]!.find((id) => !killed.has(id))!;
      expect(result.agreeing, JSON.stringify({ locks, failures: result.failures })).to.include(survivor);
      expect(result.agreeing).to.have.length(3);
      for (const id of killed) expect(result.agreeing).to.not.include(id);
      const reports = result.payments ?? [];
      expect(
        reports.map((r) => r.status),
        JSON.stringify(reports),
      ).to.deep.equal(reports.map(() => "settled"));
      expect(reports.length).to.be.greaterThan(1);
      const jobs = journalJobs(dataDir);
      expect(jobs.map((e) => e.state)).to.deep.equal(jobs.map(() => "settled"));
      const payoutOf = (id: string) => devnet.providers.find((x) => x.peerId === id)!.payout!;
      const leader = jobs[0]!.parsed;
      // the survivor of the first round is PAID (price + its stake back), not only its stake back
      expect(await paidIn(leader, payoutOf(survivor))).to.equal(leader.price + leader.stake);
      // the killed providers never committed: nothing bonded, nothing credited, nothing slashed
      for (const id of killed) {
        for (const e of jobs) expect(await paidIn(e.parsed, payoutOf(id))).to.equal(0n);
      }
      for (const e of jobs) expect(await slashedIn(e.jobId)).to.deep.equal([]);
      // every provider in the decided quorum paid its job's price; the requestor paid exactly that
      let prices = 0n;
      for (const id of result.agreeing) {
        const seat = jobs.find((e) => e.parsed.providers.some((p) => p.toLowerCase() === payoutOf(id).toLowerCase()))!;
        expect(await paidIn(seat.parsed, payoutOf(id)), id).to.equal(seat.parsed.price + seat.parsed.stake);
        prices += seat.parsed.price;
      }
      expect(await requestorWealth()).to.equal(before - prices);
      await expectNothingStuck();
    } finally {
      await client.close();
    }
  });
});

describe("airqube journal never marks a running requestor's qube interrupted", function () {
  this.timeout(60_000);

  const list = async (dataDir: string) => {
    const { done } = cli(["journal", "--json", "--data-dir", dataDir]);
    const ended = await done;
    expect(ended.code, ended.stderr).to.equal(0);
    return JSON.parse(ended.lines.join("\n")) as { qubeId: string; state: string }[];
  };

  it("lists without recovering while the data directory is held; recovers once it is free", async () => {
    const dataDir = tmp("aq-journal-held-");
    const market = {
      findProviders: async () => [],
      dispatch: async () => {
        throw new Error("unused");
      },
    };
    const requestor = new Requestor({ market: market as never, dataDir });
    const qubeId = `aq1${"cd".repeat(32)}`;
    requestor.journal.started(qubeId, {}, new Date());
    try {
      expect((await list(dataDir)).map((q) => q.state)).to.deep.equal(["dispatching"]);
      expect(requestor.journal.get(qubeId)!.state).to.equal("dispatching");
    } finally {
      requestor.close();
    }
    // its holder is gone: a qube left dispatching was interrupted
    expect((await list(dataDir)).map((q) => q.state)).to.deep.equal(["interrupted"]);
  });
});
