import { spawn } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { cgroupOf, dockerCgroup, readUsage, UsageMeter } from "../../src/sandbox/usage.js";

describe("sandbox usage metering", () => {
  it("reads a process's CPU time and peak RSS from /proc, and nothing once it is gone", async () => {
    const child = spawn(process.execPath, [
      "-e",
      "const b = Buffer.alloc(64 << 20, 1); let x = 0; for (let i = 0; i < 3e8; i++) x += i; setTimeout(() => {}, 5000)",
    ]);
    try {
      const meter = UsageMeter.start({ kind: "process", pid: child.pid! }, { intervalMs: 50 });
      // until the child has used 200 ms of CPU and its 64 MiB (on a loaded machine that takes longer than on
      // an idle one: a fixed wait made this test fail under load), at most 20 s
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const seen = await readUsage({ kind: "process", pid: child.pid! });
        if (seen && seen.cpuMs >= 200 && seen.maxMemoryBytes >= 64 << 20) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const usage = await meter.stop();
      expect(usage!.cpuMs).to.be.at.least(200);
      expect(usage!.maxMemoryBytes).to.be.at.least(64 << 20);
    } finally {
      child.kill("SIGKILL");
      await new Promise((resolve) => child.once("exit", resolve));
    }
    expect(await readUsage({ kind: "process", pid: child.pid! })).to.equal(undefined);
    expect(await UsageMeter.start(undefined).stop()).to.equal(undefined);
  });

  it("knows where the engine puts a container's cgroup, by driver and version, and refuses a malformed id", () => {
    const id = "ab".repeat(32);
    expect(dockerCgroup(id, { CgroupDriver: "cgroupfs", CgroupVersion: "1" })).to.deep.equal({
      kind: "cgroup1",
      cpuacct: `/sys/fs/cgroup/cpuacct/docker/${id}`,
      memory: `/sys/fs/cgroup/memory/docker/${id}`,
    });
    expect(dockerCgroup(id, { CgroupDriver: "systemd", CgroupVersion: "2" })).to.deep.equal({
      kind: "cgroup2",
      dir: `/sys/fs/cgroup/system.slice/docker-${id}.scope`,
    });
    expect(dockerCgroup("../../etc", { CgroupDriver: "cgroupfs", CgroupVersion: "1" })).to.equal(undefined);
    expect(dockerCgroup(id, {})).to.equal(undefined);
  });

  it("finds a process's v1 cgroup (cpuacct and memory) or its v2 one, and reads their counters", async () => {
    const root = await mkdtemp(join(tmpdir(), "aq-cgroup-"));
    const source = await cgroupOf(process.pid, root);
    expect(source?.kind).to.be.oneOf(["cgroup1", "cgroup2"]);
    if (source?.kind === "cgroup1") {
      expect(source.cpuacct.startsWith(join(root, "cpuacct")) || source.cpuacct.includes("cpuacct")).to.equal(true);
      await mkdir(source.cpuacct, { recursive: true });
      await mkdir(source.memory, { recursive: true });
      await writeFile(join(source.cpuacct, "cpuacct.usage"), "1500000000\n");
      await writeFile(join(source.memory, "memory.max_usage_in_bytes"), "41943040\n");
    }
    const dir = join(root, "v2");
    await mkdir(dir);
    await writeFile(join(dir, "cpu.stat"), "usage_usec 250000\nuser_usec 200000\n");
    await writeFile(join(dir, "memory.peak"), "1048576\n");
    expect(await readUsage({ kind: "cgroup2", dir })).to.deep.equal({ cpuMs: 250, maxMemoryBytes: 1048576 });
    if (source?.kind === "cgroup1")
      expect(await readUsage(source)).to.deep.equal({ cpuMs: 1500, maxMemoryBytes: 41943040 });
    await writeFile(join(dir, "memory.peak"), "garbage\n");
    expect(await readUsage({ kind: "cgroup2", dir })).to.equal(undefined);
  });
});
