/**
 * The gvisor tier: the container tier's hardened container under gVisor's runtime (runsc, registered with the
 * engine by scripts/docker-engine.sh). One qube shows all of it at once: gVisor's own kernel answers, the
 * hardening holds inside it, scratch is the qube's, and usage is metered from the container's cgroup.
 */
import { expect } from "chai";
import Docker from "dockerode";
import { PROBES } from "../../src/probes/catalog.js";
import { runProbeSuite } from "../../src/probes/runner.js";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { BUSYBOX, ourContainers } from "../helpers/docker.js";

describe("ContainerSandbox, gvisor tier @docker @gvisor", function () {
  this.timeout(60_000);
  const docker = new Docker();

  before(async () => {
    const info = (await docker.info()) as { Runtimes?: Record<string, unknown> };
    expect(Object.keys(info.Runtimes ?? {}), "runsc registered (scripts/setup.sh installs it)").to.include("runsc");
  });

  after(async () => {
    expect(await ourContainers(docker), "no container may outlive its qube").to.deep.equal([]);
  });

  it("runs a qube under gVisor's kernel with the container tier's hardening, and meters it", async () => {
    const sandbox = new ContainerSandbox({ docker, tier: "gvisor" });
    const script = [
      "uname -r",
      "id -u; grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status",
      "stat -c '%n %u:%g %a' /scratch",
      "touch /x 2>/dev/null || echo root-read-only",
      "ls /sys/class/net",
    ].join("; ");
    const result = await sandbox.run({ image: BUSYBOX, command: ["sh", "-c", script] });
    const [kernel, uid] = result.stdout.split("\n");
    expect(result.tier).to.equal("gvisor");
    expect(result.exitCode, result.stderr).to.equal(0);
    const { release } = await import("node:os");
    expect(kernel, "gVisor's own kernel answers uname").to.not.equal(release());
    expect(uid).to.equal("65534");
    expect(result.stdout).to.match(/CapEff:\s+0000000000000000/);
    expect(result.stdout).to.match(/CapBnd:\s+0000000000000000/);
    expect(result.stdout).to.match(/Seccomp:\s+2/); // the container's profile, applied inside gVisor (--oci-seccomp)
    expect(result.stdout).to.contain("/scratch 65534:65534 1777\n");
    expect(result.stdout).to.contain("root-read-only\n");
    expect(result.stdout.trim().split("\n").at(-1), "no network interface but loopback").to.equal("lo");
    // the Sentry's own CPU and memory count: the whole sandbox is in the container's cgroup
    expect(result.usage?.cpuMs).to.be.above(0);
    expect(result.usage?.maxMemoryBytes).to.be.above(1024 * 1024);
  });

  it("passes the escape suite: no fail, no inconclusive; the fork bomb stops at the pids limit, the bombs judged on the host", async function () {
    this.timeout(300_000);
    const report = await runProbeSuite({ tier: "gvisor", docker });
    const notPassed = report.probes
      .filter((p) => p.verdict !== "pass")
      .map((p) => `${p.id} ${p.verdict}: ${p.evidence}`);
    expect(report.summary.fail, notPassed.join("\n")).to.equal(0);
    expect(report.summary.inconclusive, notPassed.join("\n")).to.equal(0);
    expect(report.summary.pass, notPassed.join("\n")).to.be.at.least(PROBES.length - 1); // row 21: no LSM on the host
    const row = (id: number) => report.probes[id - 1]!;
    expect(row(32).evidence, "the Sentry's RLIMIT_NPROC").to.match(
      /fork failed with EAGAIN after \d+ processes \(pids limit 64\)/,
    );
    expect(row(33).evidence).to.match(/OOM killer ended the whole sandbox|child was killed|mmap failed/);
    expect(row(35).evidence).to.include("host cgroup:");
    expect(row(36).evidence, "gVisor's own kernel").to.not.include("UNDECIDED");
  });
});
