import { expect } from "chai";
import { DEFAULT_SANDBOX_LIMITS } from "../../src/sandbox/api.js";
import {
  GVISOR_RUNTIME,
  gvisorContainerConfig,
  hardenedContainerConfig,
  INIT_PATH,
  MASKED_PATHS,
  READONLY_PATHS,
} from "../../src/sandbox/hardening.js";
import { ALLOWED_SYSCALLS, DENIED_SYSCALLS, seccompProfile } from "../../src/sandbox/seccomp.js";

describe("container hardening", () => {
  const config = hardenedContainerConfig(DEFAULT_SANDBOX_LIMITS, "run-1", {
    initBinary: "/opt/init",
    inputDir: "/tmp/in",
  });
  const host = config.HostConfig;

  it("gives the gvisor tier every flag of the container tier, gVisor's runtime, pids room for the Sentry and the qube's count as RLIMIT_NPROC", () => {
    const gvisor = gvisorContainerConfig(config);
    const { Runtime, PidsLimit, Ulimits, ...rest } = gvisor.HostConfig;
    expect(Runtime).to.equal(GVISOR_RUNTIME);
    expect(GVISOR_RUNTIME).to.equal("runsc");
    expect(PidsLimit, "the Sentry's threads and a ptrace stub per task").to.equal(64 + 8 * 64);
    // gVisor does not apply the pids cgroup to its tasks: the Sentry enforces the qube's count as an rlimit
    expect(Ulimits).to.deep.equal([...config.HostConfig.Ulimits, { Name: "nproc", Soft: 64, Hard: 64 }]);
    expect({
      ...gvisor,
      HostConfig: { ...rest, PidsLimit: config.HostConfig.PidsLimit, Ulimits: config.HostConfig.Ulimits },
    }).to.deep.equal(config);
    expect(config.HostConfig.Runtime).to.equal(undefined); // the input is not touched
    const unlimited = gvisorContainerConfig({ ...config, HostConfig: { ...config.HostConfig, PidsLimit: -1 } });
    expect(unlimited.HostConfig.PidsLimit, "no limit stays no limit").to.equal(-1);
    expect(unlimited.HostConfig.Ulimits.map((u) => u.Name)).to.not.include("nproc");
  });

  it("runs a sandbox as a uid of its own when given one: user, group and scratch owner", () => {
    const own = hardenedContainerConfig(DEFAULT_SANDBOX_LIMITS, "run-2", { initBinary: "/opt/init" }, { uid: 300_001 });
    expect(own.User).to.equal("300001:300001");
    for (const options of Object.values(own.HostConfig.Tmpfs)) expect(options).to.match(/,uid=300001,gid=300001$/);
    const { User: _u, HostConfig: h1, Labels: _l1, ...rest1 } = own;
    const { User: _v, HostConfig: h2, Labels: _l2, ...rest2 } = config;
    expect(rest1).to.deep.equal(rest2);
    expect({ ...h1, Tmpfs: {}, Binds: [] }).to.deep.equal({ ...h2, Tmpfs: {}, Binds: [] });
  });

  it("pins every flag", () => {
    expect(config.User).to.equal("65534:65534");
    expect(config.NetworkDisabled).to.equal(true);
    expect(host.NetworkMode).to.equal("none");
    expect(host.ReadonlyRootfs).to.equal(true);
    expect(host.CapDrop).to.deep.equal(["ALL"]);
    expect(host.CapAdd).to.deep.equal([]);
    expect(host.Privileged).to.equal(false);
    expect(host.SecurityOpt[0]).to.equal("no-new-privileges:true");
    expect(host.SecurityOpt[1]).to.equal(`seccomp=${JSON.stringify(seccompProfile())}`);
    expect(host.PidsLimit).to.equal(64);
    expect(host.Memory).to.equal(256 * 1024 * 1024);
    expect(host.MemorySwap).to.equal(host.Memory);
    expect(host.NanoCpus).to.equal(1e9);
    expect(host.Ulimits).to.deep.equal([
      { Name: "nofile", Soft: 1024, Hard: 1024 },
      { Name: "core", Soft: 0, Hard: 0 },
    ]);
    const scratch = "rw,noexec,nosuid,nodev,size=67108864,mode=1777,uid=65534,gid=65534";
    expect(host.Tmpfs).to.deep.equal({ "/scratch": scratch, "/output": scratch, "/tmp": scratch });
    expect(host.MaskedPaths).to.deep.equal(MASKED_PATHS);
    expect(host.MaskedPaths).to.include("/proc/kcore");
    expect(host.ReadonlyPaths).to.deep.equal(READONLY_PATHS);
    expect(host.ReadonlyPaths).to.include.members(["/proc/sys", "/proc/sysrq-trigger"]);
    expect(host.IpcMode).to.equal("private");
    expect(host.CgroupnsMode).to.equal("private");
    expect(host.Binds).to.deep.equal([`/opt/init:${INIT_PATH}:ro`, "/tmp/in:/input:ro"]);
    expect(host.Devices).to.deep.equal([]);
    expect(config.Labels["io.airqube.sandbox.run"]).to.equal("run-1");
  });

  it("is pure", () => {
    const again = hardenedContainerConfig(DEFAULT_SANDBOX_LIMITS, "run-1", {
      initBinary: "/opt/init",
      inputDir: "/tmp/in",
    });
    expect(again).to.deep.equal(config);
  });

  it("denies io_uring, mount, namespaces, modules, keyrings, bpf, ptrace and the rest of PROBES.md row 7-16", () => {
    for (const name of [
      "io_uring_setup",
      "io_uring_enter",
      "io_uring_register",
      "mount",
      "setns",
      "unshare",
      "pivot_root",
      "init_module",
      "finit_module",
      "add_key",
      "keyctl",
      "bpf",
      "perf_event_open",
      "userfaultfd",
      "ptrace",
      "process_vm_readv",
      "open_by_handle_at",
      "syslog",
    ]) {
      expect(DENIED_SYSCALLS, name).to.include(name);
    }
    for (const name of DENIED_SYSCALLS) expect(ALLOWED_SYSCALLS, name).not.to.include(name);
    const profile = seccompProfile();
    expect(profile.defaultAction).to.equal("SCMP_ACT_ERRNO");
    const allowedAnywhere = profile.syscalls.filter((r) => r.action === "SCMP_ACT_ALLOW").flatMap((r) => r.names);
    for (const name of DENIED_SYSCALLS) expect(allowedAnywhere, name).not.to.include(name);
  });

  it("allows clone only without namespace flags", () => {
    const clone = seccompProfile().syscalls.find((r) => r.names.includes("clone"));
    expect(clone?.args).to.deep.equal([{ index: 0, value: 0x7e020000, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }]);
  });
});
