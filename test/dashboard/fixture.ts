/**
 * Data directories for the dashboard tests, written by the real classes (JobLedger, SeatStore,
 * RequestorJournal, SqliteReputation) as a provider and a requestor would: three providers ran one qube, two
 * agreed, the third lied and was outvoted, marked, and the evidence journalled.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type EscrowJob, jobIdOf } from "../../src/chain/job.js";
import { jobToJson } from "../../src/chain/job-json.js";
import { JobLedger } from "../../src/provider/ledger.js";
import { SeatStore } from "../../src/provider/payments.js";
import { RequestorJournal } from "../../src/requestor/journal.js";
import { SqliteReputation } from "../../src/requestor/reputation.js";

export const HONEST_A = "12D3KooWHonestProviderAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
export const HONEST_B = "12D3KooWHonestProviderBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
export const LIAR = "12D3KooWLyingProviderCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";
export const VERIFIED_QUBE = "aq1verifiedqube0000000000000000000000000000000000000001";
export const FAILED_QUBE = "aq1failedqube000000000000000000000000000000000000000002";
export const RUNNING_QUBE = "aq1runningqube00000000000000000000000000000000000000003";
export const GLM = 10n ** 18n;
/** A string a hostile provider could put in an error: the page must show it as text. */
export const HOSTILE_TEXT = "<img src=x onerror=\"document.title='pwned'\">";

export interface Fixture {
  root: string;
  providerDir: string;
  requestorDir: string;
  probeCache: string;
  home: string;
}

function job(qubeId: string, providers: string[], price: bigint, stake: bigint): EscrowJob {
  return {
    requestor: "0x00000000000000000000000000000000000000aa",
    qubeId: `0x${qubeId
      .slice(-64)
      .padStart(64, "0")
      .replace(/[^0-9a-f]/g, "0")}`,
    nonce: 1n,
    providers,
    price,
    stake,
    quorum: 2,
    commitDeadline: 2_000_000_000,
    revealDeadline: 2_000_000_100,
    finalDeadline: 2_000_000_200,
  };
}

/** Writes the provider and requestor directories under `root`; `at(n)` is the time of the n-th event. */
export function writeFixture(root: string): Fixture {
  const base = Date.parse("2026-11-29T10:00:00.000Z");
  const at = (minutes: number) => new Date(base + minutes * 60_000);
  const fixture: Fixture = {
    root,
    providerDir: join(root, "provider"),
    requestorDir: join(root, "requestor"),
    probeCache: join(root, "probe-cache"),
    home: join(root, "home"),
  };

  // the provider: two jobs revealed, one failed, one abandoned by a restart, one running, one committed
  const ledger = new JobLedger(join(fixture.providerDir, "ledger.sqlite"));
  ledger.accepted("job-1", VERIFIED_QUBE, "12D3KooWRequestor", (2n * GLM).toString(), at(0));
  ledger.transition("job-1", "committed", at(1), { outputsRoot: "sha256:aa" });
  ledger.metered("job-1", { cpuMs: 420, wallMs: 900, maxMemoryBytes: 8 * 1048576 }, at(1));
  ledger.transition("job-1", "revealed", at(2));
  ledger.accepted("job-2", "aq1other2", "12D3KooWRequestor", GLM.toString(), at(30));
  ledger.transition("job-2", "revealed", at(31));
  ledger.accepted("job-3", "aq1other3", "12D3KooWRequestor", GLM.toString(), at(60));
  ledger.transition("job-3", "failed", at(61), { errorCode: "SANDBOX_OOM", errorReason: HOSTILE_TEXT });
  ledger.accepted("job-4", "aq1other4", "12D3KooWRequestor", GLM.toString(), at(90));
  ledger.recover(at(95));
  ledger.accepted("job-5", "aq1other5", "12D3KooWRequestor", GLM.toString(), at(120));
  ledger.transition("job-5", "running", at(120));
  ledger.accepted("job-6", "aq1other6", "12D3KooWRequestor", GLM.toString(), at(121));
  ledger.transition("job-6", "committed", at(122), { outputsRoot: "sha256:bb" });
  // refused before admission: twice at capacity (asked, then proposed), once too cheap with a hostile reason
  const refusal = { requestor: "12D3KooWRequestor", qubeId: "aq1refused7" };
  ledger.refused({ ...refusal, stage: "query", code: "AT_CAPACITY", reason: "all 4 slots are busy" }, at(123));
  ledger.refused({ ...refusal, stage: "proposal", code: "AT_CAPACITY", reason: "all 4 slots are busy" }, at(124));
  ledger.refused({ ...refusal, stage: "query", code: "PRICE_TOO_LOW", reason: HOSTILE_TEXT }, at(125));
  ledger.close();

  const seats = new SeatStore(join(fixture.providerDir, "seats.sqlite"));
  const open = job("aa01", ["0x00000000000000000000000000000000000000b1"], GLM, GLM / 2n);
  const settled = job("aa02", ["0x00000000000000000000000000000000000000b1"], GLM, 3n * GLM);
  seats.add(open, { outputsRoot: `0x${"11".repeat(32)}`, salt: `0x${"22".repeat(32)}` }, at(122));
  seats.add(settled, { outputsRoot: `0x${"33".repeat(32)}`, salt: `0x${"44".repeat(32)}` }, at(2));
  seats.markClosed(jobIdOf(settled), "settled", at(3));
  seats.dispose();

  writeFileSync(
    join(fixture.providerDir, "status.json"),
    JSON.stringify({
      peerId: "12D3KooWThisProvider",
      addrs: ["/ip4/127.0.0.1/tcp/40001/p2p/12D3KooWThisProvider"],
      payout: "0x00000000000000000000000000000000000000b1",
      tiers: ["container"],
      running: 2,
      maxConcurrent: 4,
      draining: false,
      probes: {},
      price: { currency: "GLM", start: "1000000000000000", perSecond: "100000000000000" },
      offersSeen: [
        {
          provider: "12D3KooWOtherProvider",
          tiers: ["container", "microvm"],
          price: { currency: "GLM", start: "2000000000000000", perSecond: "100000000000000" },
          maxWallTimeMs: 600_000,
          available: 1,
          maxConcurrent: 2,
          issuedAt: at(121).toISOString(),
        },
        // malformed entries (a price that is not wei, a missing field) are left out, never shown
        { provider: "<img src=x>", tiers: ["container"], price: { currency: "GLM", start: "1e18", perSecond: "1" } },
        { provider: "12D3KooWHalf" },
      ],
      pid: process.pid,
      updatedAt: at(122).toISOString(),
    }),
  );
  mkdirSync(fixture.probeCache, { recursive: true });
  writeFileSync(
    join(fixture.probeCache, "probe-0123456789abcdef0123456789abcdef.json"),
    JSON.stringify({
      suite: "airqube-escape-suite",
      suiteVersion: "1.0.0+sha256:00",
      tier: "container",
      host: { kernel: "6.1.0", runtime: "docker", runtimeVersion: "20.10.24" },
      startedAt: at(-10).toISOString(),
      probes: [
        probe(1, "sysrq", "pass", "open(/proc/sysrq-trigger, O_WRONLY)=ENOENT"),
        probe(2, "core_pattern", "fail", "core_pattern writable"),
        probe(3, "kcore, kmsg", "inconclusive", "could not tell"),
      ],
      summary: { pass: 1, fail: 1, inconclusive: 1, skipped: 0 },
    }),
  );

  // the requestor: a verified qube with a liar outvoted, a qube that failed, one still dispatching
  const journal = new RequestorJournal(join(fixture.requestorDir, "journal.sqlite"));
  journal.started(VERIFIED_QUBE, { spec: "signed" }, at(0));
  for (const provider of [HONEST_A, HONEST_B, LIAR]) journal.dispatch(VERIFIED_QUBE, provider, "dispatched", at(0));
  for (const provider of [HONEST_A, HONEST_B, LIAR]) journal.dispatch(VERIFIED_QUBE, provider, "committed", at(1));
  const winner = { payload: { qubeId: VERIFIED_QUBE, outputsRoot: "sha256:aa" }, signature: "sig-a" };
  const lie = { payload: { qubeId: VERIFIED_QUBE, outputsRoot: "sha256:ff" }, signature: "sig-c" };
  journal.evidence(
    VERIFIED_QUBE,
    LIAR,
    { kind: "conflicting-statements", qubeId: VERIFIED_QUBE, accepted: winner, dissent: lie },
    at(2),
  );
  const escrow = job(
    "bb01",
    [
      "0x00000000000000000000000000000000000000c1",
      "0x00000000000000000000000000000000000000c2",
      "0x00000000000000000000000000000000000000c3",
    ],
    GLM,
    GLM / 10n,
  );
  journal.escrowOpened(VERIFIED_QUBE, "0xjob1", jobToJson(escrow), "0xlocktx", at(0));
  journal.escrowClosed("0xjob1", "settled", { settleTx: "0xsettletx" }, at(3));
  journal.finished(
    VERIFIED_QUBE,
    "verified",
    {
      qubeId: VERIFIED_QUBE,
      status: "verified",
      verified: true,
      outputsRoot: "sha256:aa",
      agreeing: [HONEST_A, HONEST_B],
      dissenting: [LIAR],
      answers: [HONEST_A, HONEST_B, LIAR].map((provider) => ({
        provider,
        outputsRoot: provider === LIAR ? "sha256:ff" : "sha256:aa",
      })),
      failures: [],
      outputs: [],
    },
    at(2),
  );
  journal.started(FAILED_QUBE, { spec: "signed" }, at(60));
  journal.dispatch(FAILED_QUBE, HONEST_A, "failed", at(61), { error: `PROVIDER_REFUSED: ${HOSTILE_TEXT}` });
  journal.finished(FAILED_QUBE, "failed", { code: "NO_PROVIDERS", message: "No provider accepted the qube" }, at(61));
  journal.started(RUNNING_QUBE, { spec: "signed" }, at(120));
  journal.dispatch(RUNNING_QUBE, HONEST_B, "dispatched", at(120));
  journal.close();

  const reputation = new SqliteReputation(join(fixture.requestorDir, "reputation.sqlite"));
  reputation.recordValid(HONEST_A);
  reputation.recordValid(HONEST_B);
  reputation.recordValid(HONEST_B);
  // marked for a day from now, so that it is still marked when the test reads it
  reputation.recordWrong(LIAR, new Date(), 24 * 3600_000);
  reputation.close();
  return fixture;
}

function probe(id: number, title: string, verdict: string, evidence: string) {
  return {
    id,
    title,
    category: "proc",
    severity: "critical",
    cves: [],
    defence: "d",
    verdict,
    evidence,
    durationMs: 1,
  };
}
