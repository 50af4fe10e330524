import { connect } from "node:net";
import { expect } from "chai";
import type Docker from "dockerode";
import { HARNESS_ROWS, PROBES } from "../../src/probes/catalog.js";
import { exitStatus } from "../../src/probes/report.js";
import { runProbeSuite, syscallAllowlist } from "../../src/probes/runner.js";
import { composeWeakenings } from "../../src/probes/weakenings.js";
import type { QubeRun, Sandbox, SandboxResult } from "../../src/sandbox/api.js";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { ALLOWED_SYSCALLS } from "../../src/sandbox/seccomp.js";

/** A fake sandbox: answers each phase with canned stdout (a small hand-written port implementation). */
class FakeSandbox implements Sandbox {
  readonly tier = "container" as const;
  readonly runs: QubeRun[] = [];
  constructor(
    private readonly answer: (phase: string, qube: QubeRun) => Promise<Partial<SandboxResult>> | Partial<SandboxResult>,
  ) {}
  async run(qube: QubeRun): Promise<SandboxResult> {
    this.runs.push(qube);
    const phase = qube.command[2]!;
    return {
      tier: "container",
      imageDigest: "sha256:fake",
      exitCode: 0,
      durationMs: 10,
      stdout: "",
      stderr: "",
      stdoutTruncated: false,
      stderrTruncated: false,
      oomKilled: false,
      timedOut: false,
      outputs: [],
      startedAt: "",
      endedAt: "",
      ...(await this.answer(phase, qube)),
    };
  }
  async close(): Promise<void> {}
}

const line = (id: number, verdict: string, extra: Record<string, unknown> = {}) =>
  `${JSON.stringify({ id, verdict, evidence: `row ${id}`, ms: 1, ...extra })}\n`;
const allPass = () =>
  PROBES.map((p) => p.id)
    .filter((id) => id !== 37 && !HARNESS_ROWS.includes(id))
    .map((id) => line(id, id === 21 || id === 36 ? "skipped" : "pass"))
    .join("");
const honest = (phase: string): Partial<SandboxResult> =>
  phase === "main"
    ? { stdout: allPass() }
    : phase === "plant"
      ? { stdout: line(37, "pass", { phase: "plant" }) }
      : phase === "check"
        ? { stdout: line(37, "pass", { phase: "check" }) }
        : { timedOut: true, exitCode: 137, durationMs: 1600 };
/** Debian 12's engine stack, as `docker version` reports it (row 42 judges these versions). */
const docker = {
  version: async () => ({
    Version: "fake",
    Components: [
      { Name: "Engine", Version: "20.10.24+dfsg1" },
      { Name: "containerd", Version: "1.6.20~ds1", Details: { GitCommit: "1.6.20~ds1-1+deb12u3" } },
      { Name: "runc", Version: "1.1.5+ds1", Details: { GitCommit: "1.1.5+ds1-1+deb12u1" } },
    ],
  }),
  info: async () => ({ SecurityOptions: [] }),
} as unknown as Docker;

describe("probe runner (fake sandbox)", () => {
  it("builds the report from the four phases and tells the probe the unweakened expectations", async () => {
    const sandbox = new FakeSandbox(honest);
    const report = await runProbeSuite({ docker, sandboxFactory: () => sandbox });
    expect(report.summary).to.deep.equal({ pass: PROBES.length - 2, fail: 0, inconclusive: 0, skipped: 2 });
    expect(report.suiteVersion).to.equal("1.0.0+sha256:fake");
    expect(sandbox.runs.map((r) => r.command.join(" "))).to.deep.equal([
      "/airqube/probe --phase main",
      "/airqube/probe --phase plant",
      "/airqube/probe --phase check",
      "/airqube/probe --phase deadline",
    ]);
    const env = sandbox.runs[0]!.env!;
    expect(env.AIRQUBE_PROBE_PIDS).to.equal("64");
    expect(Number(env.AIRQUBE_PROBE_CANARY_PORT)).to.be.greaterThan(0);
    expect(sandbox.runs[3]!.env!.AIRQUBE_PROBE_DEADLINE_MS).to.equal("1500");
    expect(sandbox.runs[0]!.env!.AIRQUBE_PROBE_NONCE).to.equal(sandbox.runs[2]!.env!.AIRQUBE_PROBE_NONCE);
  });

  it("turns missing, duplicated and garbage verdicts into inconclusive, never pass", async () => {
    const sandbox = new FakeSandbox((phase) => {
      if (phase !== "main") return honest(phase);
      const lines = allPass()
        .split("\n")
        .filter((l) => !l.includes('"id":5,'));
      return { stdout: `${lines.join("\n")}${line(7, "fail")}garbage\n${"x".repeat(10_000)}\n`, exitCode: 139 };
    });
    const report = await runProbeSuite({ docker, sandboxFactory: () => sandbox });
    expect(report.probes[4]!.verdict).to.equal("inconclusive");
    expect(report.probes[4]!.evidence).to.match(/no verdict \(exit 139, 2 invalid lines dropped/);
    expect(report.probes[6]!.verdict).to.equal("inconclusive");
    expect(report.probes[6]!.evidence).to.include("several verdicts");
    expect(exitStatus(report)).to.equal(2);
  });

  it("fails row 35 when the spinning qube outlives its deadline, and row 37 when planting failed but residue showed", async () => {
    const sandbox = new FakeSandbox((phase) => {
      if (phase === "deadline") return { stdout: line(35, "fail", { phase: "deadline" }) };
      if (phase === "plant") return { stdout: line(37, "inconclusive", { phase: "plant" }) };
      if (phase === "check") return { stdout: line(37, "fail", { phase: "check" }) };
      return honest(phase);
    });
    const report = await runProbeSuite({ docker, sandboxFactory: () => sandbox });
    expect(report.probes[34]!.verdict).to.equal("fail");
    expect(report.probes[36]!.verdict).to.equal("fail");
    expect(exitStatus(report)).to.equal(1);
  });

  it("fails row 30 on the canary's own count even when the probe claims pass", async () => {
    const sandbox = new FakeSandbox(async (phase, qube) => {
      if (phase === "main") {
        const port = Number(qube.env!.AIRQUBE_PROBE_CANARY_PORT);
        await new Promise<void>((resolve) =>
          connect({ host: "127.0.0.1", port }).on("close", resolve).on("error", resolve).resume(),
        );
      }
      return honest(phase);
    });
    const report = await runProbeSuite({ docker, sandboxFactory: () => sandbox });
    expect(report.probes[29]!.verdict).to.equal("fail");
    expect(report.probes[29]!.evidence).to.include("canary accepted 1 connection");
  });

  it("marks every row inconclusive when the sandbox itself fails (all but row 42, judged on the host)", async () => {
    const sandbox = new FakeSandbox(() => {
      throw new Error("docker went away");
    });
    const report = await runProbeSuite({ docker, sandboxFactory: () => sandbox });
    expect(report.summary.inconclusive).to.equal(PROBES.length - 1);
    expect(report.probes[41]!.verdict).to.equal("pass");
    expect(report.probes[0]!.evidence).to.include("the sandbox failed");
  });

  it("judges row 42 from the engine's versions: fails an unpatched runc, is skipped for a remote engine", async () => {
    const old = {
      version: async () => ({
        Components: [
          { Name: "Engine", Version: "20.10.24" },
          { Name: "containerd", Version: "1.6.20" },
          { Name: "runc", Version: "1.1.11" },
        ],
      }),
      info: async () => ({ SecurityOptions: [] }),
    } as unknown as Docker;
    const report = await runProbeSuite({ docker: old, sandboxFactory: () => new FakeSandbox(honest) });
    expect(report.probes[41]!.verdict).to.equal("fail");
    expect(report.probes[41]!.evidence).to.include("runc 1.1.11 has CVE-2024-21626");
    const remote = await runProbeSuite({
      docker: old,
      localEngine: false,
      sandboxFactory: () => new FakeSandbox(honest),
    });
    expect(remote.probes[41]!.verdict).to.equal("skipped");
    expect(remote.probes[41]!.evidence).to.include("remote provider");
  });
});

describe("probe runner: the gvisor tier's rows 33 and 35 from the host (fake sandbox)", () => {
  const MiB = 1024 * 1024;
  const gvisorPhases =
    (memory: Partial<SandboxResult>, cpuMs: number, spin: string = line(35, "pass", { phase: "cpu", ms: 2000 })) =>
    (phase: string): Partial<SandboxResult> => {
      if (phase === "memory")
        return { ...memory, stdout: `${line(32, "pass", { phase: "memory" })}${memory.stdout ?? ""}` };
      if (phase === "cpu") return { stdout: spin, usage: { cpuMs, maxMemoryBytes: 40 * MiB } };
      const honestPhase = honest(phase);
      return phase === "plant" || phase === "check"
        ? { ...honestPhase, usage: { cpuMs: phase === "plant" ? 650 : 700, maxMemoryBytes: 20 * MiB } }
        : honestPhase;
    };
  const killed = (peak: number): Partial<SandboxResult> => ({
    exitCode: 137,
    oomKilled: true,
    usage: { cpuMs: 900, maxMemoryBytes: peak },
  });

  it("runs the memory bomb and the CPU spin as phases of their own, and passes a sandbox killed at its limit and throttled", async () => {
    const sandbox = new FakeSandbox(gvisorPhases(killed(128 * MiB), 1700));
    const report = await runProbeSuite({ tier: "gvisor", docker, sandboxFactory: () => sandbox });
    expect(sandbox.runs.map((r) => r.command.slice(1).join(" "))).to.deep.equal(
      ["main", "plant", "check", "deadline", "memory", "cpu"].map((phase) => `--phase ${phase}`),
    );
    expect(report.probes[32]!.verdict, report.probes[32]!.evidence).to.equal("pass");
    expect(report.probes[32]!.evidence).to.include("OOM killer ended the whole sandbox");
    expect(report.probes[31]!.evidence, "the fork bomb's line from the memory phase").to.equal("row 32");
    expect(report.probes[34]!.verdict, report.probes[34]!.evidence).to.equal("pass");
    expect(report.probes[34]!.evidence).to.include("host cgroup: 0.53 CPUs over a 2000 ms spin");
    expect(exitStatus(report)).to.equal(0);
  });

  it("fails row 35 when the host saw more CPU than the quota, and row 33 above the limit or on the probe's fail", async () => {
    const unthrottled = new FakeSandbox(gvisorPhases(killed(200 * MiB), 4650));
    const report = await runProbeSuite({ tier: "gvisor", docker, sandboxFactory: () => unthrottled });
    expect(report.probes[34]!.verdict).to.equal("fail");
    expect(report.probes[34]!.evidence).to.include("not throttled: host cgroup: 2.00 CPUs");
    expect(report.probes[32]!.verdict).to.equal("fail");
    const untouched = line(33, "fail", { phase: "memory" }); // the child touched twice the limit and exited
    const bomb = new FakeSandbox(gvisorPhases({ stdout: untouched }, 1700));
    expect((await runProbeSuite({ tier: "gvisor", docker, sandboxFactory: () => bomb })).probes[32]!.verdict).to.equal(
      "fail",
    );
  });

  it("is inconclusive without the host's figures (no usage, no spin, no OOM kill)", async () => {
    const blind = new FakeSandbox(gvisorPhases({ exitCode: 1 }, 1700, ""));
    const report = await runProbeSuite({ tier: "gvisor", docker, sandboxFactory: () => blind });
    expect(report.probes[32]!.verdict).to.equal("inconclusive");
    expect(report.probes[34]!.verdict).to.equal("inconclusive");
    expect(report.probes[34]!.evidence).to.include("no spin or no host CPU time");
  });
});

describe("probe runner: the weakening self-check (fake sandbox)", () => {
  const withFacts = (facts: string) => (phase: string) =>
    phase === "main" ? { stdout: `${allPass()}${JSON.stringify({ facts })}\n` } : honest(phase);

  it("fails a weakened run whose weakening did not change the sandbox, naming what it looked for", async () => {
    const sandbox = new FakeSandbox(withFacts("capbnd=0;capeff=0;seccomp=2;uid=65534;groups=65534"));
    const run = runProbeSuite({ docker, weakenings: ["cap:SYS_RESOURCE"], sandboxFactory: () => sandbox });
    const error = await run.then(
      () => undefined,
      (e: unknown) => e as { code: string; details: string },
    );
    expect(error?.code).to.equal("WEAKENING_INEFFECTIVE");
    expect(error?.details).to.include("cap:SYS_RESOURCE (looked for: CapBnd holds CAP_SYS_RESOURCE)");
  });

  it("weakens the container and gvisor tiers only (the micro-VM has no container config to weaken)", async () => {
    const refused = await runProbeSuite({
      tier: "microvm",
      docker,
      weakenings: ["seccomp:unconfined"],
      sandboxFactory: () => new FakeSandbox(honest),
    }).then(
      () => undefined,
      (e: unknown) => e as { code: string },
    );
    expect(refused?.code).to.equal("WEAKENING_UNSUPPORTED");
    let hooked = false;
    const error = await runProbeSuite({
      tier: "gvisor",
      docker,
      weakenings: ["seccomp:unconfined"],
      sandboxFactory: (_tier, hooks) => {
        hooked = hooks.weaken !== undefined;
        return new FakeSandbox(honest);
      },
    }).then(
      () => undefined,
      (e: unknown) => e as { code: string },
    );
    expect(hooked, "the gvisor sandbox gets the weakening").to.equal(true);
    expect(error?.code, "and its self-check still applies").to.equal("WEAKENING_INEFFECTIVE");
  });

  it("fails it too when the probe printed no facts (the sandbox never ran the weakened qube)", async () => {
    const sandbox = new FakeSandbox(honest);
    const error = await runProbeSuite({ docker, weakenings: ["group:disk"], sandboxFactory: () => sandbox }).then(
      () => undefined,
      (e: unknown) => e as { code: string; details: string },
    );
    expect(error?.code).to.equal("WEAKENING_INEFFECTIVE");
    expect(error?.details).to.include("the probe printed no facts");
  });

  it("accepts the run when every weakening shows (CapBnd bit 13 for NET_RAW, gid 6, the spinning qube not killed)", async () => {
    const facts = "capbnd=2000;seccomp=2;uid=65534;groups=65534,6;sockets=0";
    const sandbox = new FakeSandbox((phase) =>
      phase === "deadline" ? { stdout: line(35, "fail", { phase: "deadline" }) } : withFacts(facts)(phase),
    );
    const report = await runProbeSuite({
      docker,
      weakenings: ["cap:NET_RAW", "group:disk", "timeout:off"],
      sandboxFactory: () => sandbox,
    });
    expect(report.suite).to.include("weakened: cap:NET_RAW, group:disk, timeout:off");
    const noTimeout = new FakeSandbox(withFacts(facts)); // the deadline qube was killed: timeout:off did nothing
    const error = await runProbeSuite({ docker, weakenings: ["timeout:off"], sandboxFactory: () => noTimeout }).then(
      () => undefined,
      (e: unknown) => e as { details: string },
    );
    expect(error?.details).to.include("timeout:off");
  });
});

describe("probe program, row 43: the syscall sweep @docker", function () {
  this.timeout(60_000);
  const sweep = async (sandbox: ContainerSandbox, env: Record<string, string>) => {
    const result = await sandbox.run({
      image: "airqube/probe:latest",
      command: ["/airqube/probe", "--only", "43"],
      env: { AIRQUBE_PROBE_TIER: "container", ...env },
    });
    return JSON.parse(result.stdout.trim()) as { verdict: string; evidence: string };
  };

  it("passes the hardened container: every call outside the allowlist refused before the kernel", async () => {
    const row = await sweep(new ContainerSandbox(), { AIRQUBE_PROBE_SYSCALLS: syscallAllowlist() });
    expect(row.verdict, row.evidence).to.equal("pass");
    const [, swept, reached] = /\((\d+) calls.*?: (\d+) reached the kernel/.exec(row.evidence) ?? [];
    expect(Number(swept)).to.be.at.least(350);
    expect(Number(reached))
      .to.be.at.least(200)
      .and.below(ALLOWED_SYSCALLS.length + 3);
  });

  it("fails without the seccomp filter, naming the calls that reached the kernel; inconclusive without an allowlist", async () => {
    const { weaken } = composeWeakenings(["seccomp:unconfined"]);
    const row = await sweep(new ContainerSandbox({ ...(weaken ? { weaken } : {}) }), {
      AIRQUBE_PROBE_SYSCALLS: syscallAllowlist(),
    });
    expect(row.verdict).to.equal("fail");
    expect(row.evidence).to.match(/system calls outside the allowlist reached the kernel: .*mount\(165\)=EFAULT/);
    expect((await sweep(new ContainerSandbox(), {})).verdict).to.equal("inconclusive");
  });
});

describe("probe program, row 36 @docker", function () {
  this.timeout(60_000);
  const sandbox = new ContainerSandbox();
  const run = async (env: Record<string, string>) => {
    const result = await sandbox.run({
      image: "airqube/probe:latest",
      command: ["/airqube/probe", "--only", "36"],
      env: { AIRQUBE_PROBE_TIER: "microvm", ...env },
    });
    return JSON.parse(result.stdout.trim()) as { verdict: string; evidence: string };
  };

  it("fails when a sandbox claiming the VM tier shares the host's kernel (same boot id)", async () => {
    const { readFile } = await import("node:fs/promises");
    const bootId = (await readFile("/proc/sys/kernel/random/boot_id", "utf8")).trim();
    expect((await run({ AIRQUBE_PROBE_HOST_BOOT_ID: bootId })).verdict).to.equal("fail");
  });

  it("passes when the boot id differs, and is inconclusive without the host's identity", async () => {
    expect((await run({ AIRQUBE_PROBE_HOST_BOOT_ID: "00000000-0000-0000-0000-000000000000" })).verdict).to.equal(
      "pass",
    );
    expect((await run({})).verdict).to.equal("inconclusive");
  });
});

describe("probe runner, row 37: host uids across tenants (fake sandbox)", () => {
  const identity = (uid: number) => `uid ${uid}, euid ${uid}, /scratch owned by ${uid}; planted 6 of 6 markers`;
  /** Plant and check qubes as the given uids; the check phase records the uid the harness told it. */
  const tenants = (plantUid: number, checkUid: number, told: string[]) =>
    new FakeSandbox((phase, qube) => {
      if (phase === "plant") return { stdout: line(37, "pass", { phase, evidence: identity(plantUid) }) };
      if (phase === "check") {
        told.push(qube.env?.AIRQUBE_PROBE_PEER_UID ?? "");
        return { stdout: line(37, "pass", { phase, evidence: identity(checkUid) }) };
      }
      return honest(phase);
    });

  it("passes distinct uids under a pool, telling the check qube the plant qube's uid", async () => {
    const told: string[] = [];
    const report = await runProbeSuite({
      docker,
      uids: { first: 200_000, count: 4 },
      sandboxFactory: () => tenants(200_000, 200_001, told),
    });
    expect(report.probes[36]!.verdict).to.equal("pass");
    expect(report.probes[36]!.evidence).to.include("uids: distinct tenants: plant ran as uid 200000");
    expect(told).to.deep.equal(["200000"]);
  });

  it("fails a uid shared by consecutive tenants under a pool; without a pool it is evidence only", async () => {
    const pooled = await runProbeSuite({
      docker,
      uids: { first: 200_000, count: 1 },
      sandboxFactory: () => tenants(200_000, 200_000, []),
    });
    expect(pooled.probes[36]!.verdict).to.equal("fail");
    expect(pooled.probes[36]!.evidence).to.include("share a host uid although a uid pool is configured");
    const nobody = await runProbeSuite({ docker, sandboxFactory: () => tenants(65534, 65534, []) });
    expect(nobody.probes[36]!.verdict).to.equal("pass");
    expect(nobody.probes[36]!.evidence).to.include("tenants share a host uid (no uid pool configured");
  });

  it("is inconclusive under a pool when a phase does not report its uid", async () => {
    const report = await runProbeSuite({
      docker,
      uids: { first: 200_000, count: 4 },
      sandboxFactory: () => new FakeSandbox(honest),
    });
    expect(report.probes[36]!.verdict).to.equal("inconclusive");
    expect(report.probes[36]!.evidence).to.include("did not report its uid");
  });
});

describe("probe runner, row 37: host uids across tenants @docker", function () {
  this.timeout(90_000);
  /** The real sandbox runs row 37's plant and check qubes; the other phases are not run (their rows are not judged here). */
  const residueOnly = (inner: ContainerSandbox, runs: QubeRun[]): Sandbox => ({
    tier: "container",
    run: async (qube, options) => {
      const phase = qube.command[2]!;
      if (phase !== "plant" && phase !== "check") return new FakeSandbox(() => ({ exitCode: 1 })).run(qube);
      runs.push(qube);
      return inner.run(qube, options);
    },
    close: () => inner.close(),
  });

  it("runs the check qube as another uid of the pool, with nothing of the plant qube's uid in its reach", async () => {
    const runs: QubeRun[] = [];
    const uids = { first: 231_000, count: 2 };
    const report = await runProbeSuite({
      docker,
      uids,
      sandboxFactory: () => residueOnly(new ContainerSandbox({ uids }), runs),
    });
    const row = report.probes[36]!;
    expect(row.verdict, row.evidence).to.equal("pass");
    expect(row.evidence).to.match(/^plant: uid 231000, euid 231000, \/scratch owned by 231000; /);
    expect(row.evidence).to.include("check: uid 231001, euid 231001, /scratch owned by 231001");
    expect(row.evidence).to.match(/nothing of the earlier qube's uid 231000 in reach \(\d+ processes, \d+ entries/);
    expect(row.evidence).to.include("uids: distinct tenants");
    expect(runs[1]!.env!.AIRQUBE_PROBE_PEER_UID).to.equal("231000");
  });

  it("fails a pool of one uid, reused by the next tenant", async () => {
    const uids = { first: 231_010, count: 1 };
    const report = await runProbeSuite({
      docker,
      uids,
      sandboxFactory: () => residueOnly(new ContainerSandbox({ uids }), []),
    });
    const row = report.probes[36]!;
    expect(row.verdict, row.evidence).to.equal("fail");
    expect(row.evidence).to.include("runs as the earlier qube's uid 231010: tenants share a host uid");
    expect(row.evidence).to.include("consecutive tenants share a host uid although a uid pool is configured");
  });

  it("fails the check qube that can see a process of the earlier uid (pid:host), naming what kill(pid, 0) did", async () => {
    const { spawn } = await import("node:child_process");
    const earlier = spawn("sleep", ["30"], { uid: 231_020, gid: 231_020, stdio: "ignore" });
    const { weaken } = composeWeakenings(["pid:host"]);
    const sandbox = new ContainerSandbox({ ...(weaken ? { weaken } : {}) });
    try {
      const result = await sandbox.run({
        image: "airqube/probe:latest",
        command: ["/airqube/probe", "--phase", "check"],
        env: { AIRQUBE_PROBE_TIER: "container", AIRQUBE_PROBE_NONCE: "r37", AIRQUBE_PROBE_PEER_UID: "231020" },
      });
      const row = JSON.parse(result.stdout.trim()) as { verdict: string; evidence: string };
      expect(row.verdict).to.equal("fail");
      expect(row.evidence).to.match(
        new RegExp(`pid ${earlier.pid} \\(sleep\\) runs as the earlier qube's uid 231020 and kill\\(pid, 0\\) \\w+`),
      );
    } finally {
      earlier.kill();
      await sandbox.close();
    }
  });
});
