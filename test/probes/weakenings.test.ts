import { expect } from "chai";
import {
  composeWeakenings,
  ineffectiveWeakenings,
  listWeakenings,
  MUTATION_WEAKENINGS,
  weakening,
} from "../../src/probes/weakenings.js";
import { DEFAULT_SANDBOX_LIMITS } from "../../src/sandbox/api.js";
import { hardenedContainerConfig } from "../../src/sandbox/hardening.js";

const base = () => hardenedContainerConfig(DEFAULT_SANDBOX_LIMITS, "run-1", { initBinary: "/init" });

describe("weakenings", () => {
  it("lists at least the weakenings the issue names", () => {
    const names = listWeakenings().map((w) => w.name);
    for (const name of [
      "cap:<NAME>",
      "seccomp:unconfined",
      "no-new-privileges:off",
      "readonly-root:off",
      "pids-limit:off",
      "memory-limit:off",
      "disk-limit:off",
      "timeout:off",
      "user:root",
      "proc:unmasked",
      "network:host",
      "mount:docker-socket",
    ])
      expect(names).to.include(name);
    for (const w of listWeakenings()) expect(w.description.length).to.be.greaterThan(10);
  });

  it("each is pure: changes the options or limits, never its input", () => {
    for (const name of MUTATION_WEAKENINGS) {
      const w = weakening(name);
      const config = base();
      const before = JSON.stringify(config);
      const changedConfig = w.config ? JSON.stringify(w.config(config)) !== before : false;
      const changedLimits = w.limits
        ? w.limits(DEFAULT_SANDBOX_LIMITS).wallTimeMs !== DEFAULT_SANDBOX_LIMITS.wallTimeMs
        : false;
      expect(JSON.stringify(config), `${name} mutated its input`).to.equal(before);
      expect(changedConfig || changedLimits, `${name} changes nothing`).to.equal(true);
      if (w.config) expect(JSON.stringify(w.config(base()))).to.equal(JSON.stringify(w.config(base())));
    }
  });

  it("removes exactly the named defence", () => {
    const c = base();
    expect(weakening("cap:NET_RAW").config!(c).HostConfig.CapAdd).to.deep.equal(["NET_RAW"]);
    const seccomp = weakening("seccomp:unconfined").config!(c).HostConfig.SecurityOpt;
    expect(seccomp).to.deep.equal(["no-new-privileges:true", "seccomp=unconfined"]);
    const nnp = weakening("no-new-privileges:off").config!(c).HostConfig.SecurityOpt;
    expect(nnp.some((o) => o.startsWith("no-new-privileges"))).to.equal(false);
    expect(nnp.some((o) => o.startsWith("seccomp="))).to.equal(true);
    const net = weakening("network:host").config!(c);
    expect([net.HostConfig.NetworkMode, net.NetworkDisabled]).to.deep.equal(["host", false]);
    const disk = weakening("disk-limit:off").config!(c).HostConfig.Tmpfs;
    for (const options of Object.values(disk)) expect(options).not.to.include("size=");
    expect(weakening("user:root").config!(c).User).to.equal("0:0");
    expect(weakening("timeout:off").limits!(DEFAULT_SANDBOX_LIMITS).wallTimeMs).to.equal(600_000);
  });

  it("suite v2: passes devices in, adds a group, binds the host's / read-only, plants a fake secret", () => {
    const c = base();
    expect(weakening("device:fuse").config!(c).HostConfig.Devices).to.deep.equal([
      { PathOnHost: "/dev/fuse", PathInContainer: "/dev/fuse", CgroupPermissions: "rwm" },
    ]);
    expect((weakening("group:disk").config!(c).HostConfig as unknown as { GroupAdd: string[] }).GroupAdd).to.deep.equal(
      ["6"],
    );
    expect(weakening("mount:host-root-ro").config!(c).HostConfig.Binds.at(-1)).to.equal("/:/host:ro");
    expect(weakening("env:secret").config!(c).Env).to.deep.equal([
      "AWS_SECRET_ACCESS_KEY=airqube-probe-canary-not-a-real-key",
    ]);
    expect(MUTATION_WEAKENINGS).to.include.members([
      "device:userfaultfd",
      "group:disk",
      "mount:host-root-ro",
      "env:secret",
    ]);
    expect(MUTATION_WEAKENINGS).not.to.include("device:kvm"); // no /dev/kvm on the suite's machines
  });

  it("says what shows each weakening took effect, from the probe's facts", () => {
    const observe = (facts: Record<string, string>, deadlineKilled?: boolean) => ({
      facts: new Map(Object.entries(facts)),
      hostNamespaces: new Map([["net", "4026531833"]]),
      limits: { memoryBytes: 128 << 20, scratchBytes: 32 << 20 },
      deadlineKilled,
    });
    // CAP_SYS_RESOURCE is bit 24, CAP_NET_RAW bit 13
    expect(ineffectiveWeakenings(["cap:SYS_RESOURCE"], observe({ capbnd: "0" }))).to.deep.equal([
      { name: "cap:SYS_RESOURCE", shows: "CapBnd holds CAP_SYS_RESOURCE" },
    ]);
    expect(ineffectiveWeakenings(["cap:SYS_RESOURCE", "cap:NET_RAW"], observe({ capbnd: "1002000" }))).to.deep.equal(
      [],
    );
    expect(ineffectiveWeakenings(["cap:NET_RAW"], observe({ capbnd: "zz" }))).to.have.length(1);
    expect(ineffectiveWeakenings(["network:host"], observe({ ns_net: "4026531833" }))).to.deep.equal([]);
    expect(ineffectiveWeakenings(["network:host"], observe({ ns_net: "4026532000" }))).to.have.length(1);
    expect(ineffectiveWeakenings(["memory-limit:off"], observe({ mem: "9223372036854771712" }))).to.deep.equal([]);
    expect(ineffectiveWeakenings(["memory-limit:off"], observe({ mem: "134217728" }))).to.have.length(1);
    expect(ineffectiveWeakenings(["timeout:off"], observe({}, true))).to.have.length(1);
    expect(ineffectiveWeakenings(["timeout:off"], observe({}, false))).to.deep.equal([]);
    expect(ineffectiveWeakenings(["device:tun", "env:secret"], observe({ chardevs: "1", secrets: "0" }))).to.deep.equal(
      [{ name: "env:secret", shows: "a secret-looking variable" }],
    );
    for (const name of MUTATION_WEAKENINGS)
      expect(ineffectiveWeakenings([name], observe({})), `${name} shows nothing without facts`).to.have.length(1);
    // pids-limit:off: pids.max on runc; under gVisor (no pids cgroup in sight) the RLIMIT_NPROC that carries it
    expect(ineffectiveWeakenings(["pids-limit:off"], observe({ pids: "max", nproc: "unlimited" }))).to.deep.equal([]);
    expect(ineffectiveWeakenings(["pids-limit:off"], observe({ pids: "none", nproc: "unlimited" }))).to.deep.equal([]);
    expect(ineffectiveWeakenings(["pids-limit:off"], observe({ pids: "none", nproc: "64" }))).to.have.length(1);
    expect(ineffectiveWeakenings(["pids-limit:off"], observe({ pids: "64", nproc: "unlimited" }))).to.have.length(1);
  });

  it("removes the gvisor tier's RLIMIT_NPROC with the pids limit", async () => {
    const { gvisorContainerConfig } = await import("../../src/sandbox/hardening.js");
    const weakened = weakening("pids-limit:off").config!(gvisorContainerConfig(base()));
    expect(weakened.HostConfig.PidsLimit).to.equal(-1);
    expect(weakened.HostConfig.Ulimits.map((u) => u.Name)).to.deep.equal(["nofile", "core"]);
  });

  it("refuses unknown names and capabilities with a UserError", () => {
    expect(() => weakening("cap:ROOT")).to.throw(/Unknown capability/);
    expect(() => weakening("privileged")).to.throw(/Unknown weakening/);
  });

  it("composes several weakenings in order", () => {
    const { names, weaken, weakenLimits } = composeWeakenings(["cap:SYS_ADMIN", "user:root", "timeout:off"]);
    expect(names).to.deep.equal(["cap:SYS_ADMIN", "user:root", "timeout:off"]);
    const c = weaken!(base());
    expect([c.User, c.HostConfig.CapAdd]).to.deep.equal(["0:0", ["SYS_ADMIN"]]);
    expect(weakenLimits!(DEFAULT_SANDBOX_LIMITS).wallTimeMs).to.equal(600_000);
    expect(composeWeakenings([]).weaken).to.equal(undefined);
  });
});
