import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { PlatformError } from "../../src/qube/errors.js";
import { DEFAULT_SANDBOX_LIMITS } from "../../src/sandbox/api.js";
import { buildCpio, encodeCpioRecord } from "../../src/sandbox/microvm/cpio.js";
import { encodeQubeHead, frame, qubeFrames, type VmQube } from "../../src/sandbox/microvm/host-frames.js";
import {
  guestMemoryMiB,
  KERNEL_CMDLINE,
  qemuArgs,
  qemuSpawnPlan,
  tscKhzFromCpuinfo,
} from "../../src/sandbox/microvm/qemu-args.js";
import { bootFilesHash, initEntries, kernelRelease, loadVmModules } from "../../src/sandbox/microvm/rootfs.js";
import { toRunResult } from "../../src/sandbox/microvm-sandbox.js";
import { tmp } from "../helpers/network.js";

describe("micro-VM hardening as data", () => {
  it("pins the QEMU argv", () => {
    const args = qemuArgs({ accel: "tcg", kernel: "/boot/k", initrd: "/c/i.cpio.gz", memoryMiB: 384, vcpus: 1 });
    expect(args).to.deep.equal([
      "-M",
      "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on,auto-kernel-cmdline=off",
      "-accel",
      "tcg",
      "-m",
      "384M",
      "-smp",
      "1",
      "-nodefaults",
      "-no-user-config",
      "-nographic",
      "-no-reboot",
      "-sandbox",
      "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
      "-serial",
      "null",
      "-chardev",
      "stdio,id=channel,signal=off",
      "-device",
      "virtio-serial-device,max_ports=2,emergency-write=off",
      "-device",
      "virtserialport,chardev=channel,name=airqube.0,nr=1",
      "-kernel",
      "/boot/k",
      "-initrd",
      "/c/i.cpio.gz",
      "-append",
      "console=ttyS0 quiet loglevel=3 panic=-1 reboot=t edd=off 8250.nr_uarts=1 rdinit=/init lsm=landlock,lockdown,yama,bpf",
    ]);
    expect(KERNEL_CMDLINE, "no major LSM that would label the qube unconfined").to.not.match(/apparmor|selinux/);
    expect(KERNEL_CMDLINE).to.not.match(/ip=|nfsroot|init=\/bin/);
  });

  it("never gives a VM a network, disk or shared-folder device", () => {
    const args = qemuArgs({ accel: "kvm", kernel: "k", initrd: "i", memoryMiB: 128, vcpus: 2 }).join(" ");
    expect(args).to.not.match(/-net|-nic|-drive|-fsdev|virtfs|virtio-net|-hda|-cdrom|user,/);
    expect(args).to.contain("-accel kvm -cpu host");
  });

  it("gives the VM exactly one device beyond the console: the channel's virtio-serial port", () => {
    const args = qemuArgs({ accel: "tcg", kernel: "k", initrd: "i", memoryMiB: 128, vcpus: 1 });
    const devices = args.flatMap((arg, index) => (args[index - 1] === "-device" ? [arg] : []));
    expect(devices).to.deep.equal([
      "virtio-serial-device,max_ports=2,emergency-write=off",
      "virtserialport,chardev=channel,name=airqube.0,nr=1",
    ]);
    const chardevs = args.flatMap((arg, index) => (args[index - 1] === "-chardev" ? [arg] : []));
    expect(chardevs).to.deep.equal(["stdio,id=channel,signal=off"]);
    expect(args[args.indexOf("-serial") + 1]).to.equal("null");
  });

  it("passes the host TSC rate so that a loaded host cannot hang the guest's calibration", () => {
    const args = qemuArgs({ accel: "tcg", kernel: "k", initrd: "i", memoryMiB: 128, vcpus: 1, tscKhz: 2_300_000 });
    expect(args.at(-1)).to.match(/ tsc_early_khz=2300000 tsc=reliable$/);
    expect(tscKhzFromCpuinfo("processor\t: 0\ncpu MHz\t\t: 2300.000\n")).to.equal(2_300_000);
    expect(tscKhzFromCpuinfo("no rate here")).to.equal(undefined);
  });

  it("keeps the console in the private dir only when asked", () => {
    const args = qemuArgs({ accel: "tcg", kernel: "k", initrd: "i", memoryMiB: 128, vcpus: 1, consoleLog: "/p/c.log" });
    expect(args).to.include("file:/p/c.log");
  });

  it("runs QEMU as nobody in its own process group with a private temp dir", () => {
    const plan = qemuSpawnPlan({
      accel: "tcg",
      privateDir: "/tmp/airqube-vm-x",
      qemuBinary: "qemu-system-x86_64",
      qemuArgs: ["-M", "microvm"],
      kvmGid: 108,
    });
    expect(plan).to.deep.equal({
      command: "setpriv",
      argv: ["--pdeathsig", "KILL", "--no-new-privs", "--", "qemu-system-x86_64", "-M", "microvm"],
      uid: 65534,
      gid: 65534,
      detached: true,
      cwd: "/tmp/airqube-vm-x",
      env: { PATH: "/usr/bin:/bin", TMPDIR: "/tmp/airqube-vm-x", HOME: "/tmp/airqube-vm-x" },
    });
    expect(qemuSpawnPlan({ accel: "kvm", privateDir: "/p", qemuBinary: "q", qemuArgs: [], kvmGid: 108 }).gid).to.equal(
      108,
    );
    // a uid of the VM's own (UidPool): as uid and gid, except the kvm group where KVM needs it
    const own = { privateDir: "/p", qemuBinary: "q", qemuArgs: [], kvmGid: 108, uid: 310_000 };
    expect(qemuSpawnPlan({ ...own, accel: "tcg" })).to.include({ uid: 310_000, gid: 310_000 });
    expect(qemuSpawnPlan({ ...own, accel: "kvm" })).to.include({ uid: 310_000, gid: 108 });
  });

  it("sizes guest memory from the limit and the initramfs", () => {
    expect(guestMemoryMiB(256 * 1024 * 1024, 2 * 1024 * 1024, 1024 * 1024)).to.equal(256 + 96 + 3);
  });
});

describe("micro-VM host frames", () => {
  const encodeQube = async (qube: VmQube) => {
    const parts: Buffer[] = [];
    for await (const part of qubeFrames(qube)) parts.push(part);
    return Buffer.concat(parts);
  };
  const inputFile = (bytes: Buffer) => {
    const path = join(tmp("aq-vm-frames-"), "input");
    writeFileSync(path, bytes);
    return path;
  };

  it("encodes a qube as L, A, V, P, F, D..., G, streaming each input from its file a frame at a time", async () => {
    const data = Buffer.alloc(70_000, 1);
    data[69_999] = 7;
    const bytes = await encodeQube({
      command: ["echo", "hi"],
      env: { A: "1" },
      outputs: ["/output"],
      inputs: [{ path: "x/y.txt", source: inputFile(data), size: data.length }],
      limits: DEFAULT_SANDBOX_LIMITS,
    });
    const types: string[] = [];
    const payloads: Buffer[] = [];
    for (let offset = 0; offset < bytes.length; ) {
      types.push(String.fromCharCode(bytes[offset]!));
      const length = bytes.readUInt32BE(offset + 1);
      if (bytes[offset] === 0x44) payloads.push(bytes.subarray(offset + 5, offset + 5 + length));
      offset += 5 + length;
    }
    expect(types).to.deep.equal(["L", "A", "A", "V", "P", "F", "D", "D", "G"]);
    expect(Buffer.concat(payloads).equals(data)).to.equal(true);
    // the input budget the guest enforces comes from the declared sizes
    expect(bytes.readBigUInt64BE(5 + 64)).to.equal(BigInt(70_000 + 4096));
    expect(bytes.readUInt32BE(1)).to.equal(80);
    expect(bytes.readBigUInt64BE(5)).to.equal(BigInt(DEFAULT_SANDBOX_LIMITS.wallTimeMs));
    // the last limit is the CPU share in thousandths of a CPU, for the qube's cpu.max
    expect(bytes.readBigUInt64BE(5 + 72)).to.equal(BigInt(Math.ceil(DEFAULT_SANDBOX_LIMITS.cpus * 1000)));
    const half = encodeQubeHead({
      command: ["x"],
      env: {},
      outputs: [],
      inputs: [],
      limits: { ...DEFAULT_SANDBOX_LIMITS, cpus: 0.5 },
    });
    expect(half.readBigUInt64BE(5 + 72)).to.equal(500n);
  });

  it("an input that changed size since it was checked fails the run (INPUT_CHANGED), never sends more", async () => {
    const source = inputFile(Buffer.alloc(1000, 2));
    const qube = (size: number): VmQube => ({
      command: ["true"],
      env: {},
      outputs: [],
      inputs: [{ path: "a", source, size }],
      limits: DEFAULT_SANDBOX_LIMITS,
    });
    // declared 2000, the file holds 1000 (it shrank)
    const error = await encodeQube(qube(2000)).then(
      () => undefined,
      (caught: unknown) => caught as { code?: string },
    );
    expect(error?.code).to.equal("INPUT_CHANGED");
    // declared 500, the file holds 1000 (it grew): exactly 500 bytes go
    const bytes = await encodeQube(qube(500));
    expect(bytes.length).to.equal(encodeQubeHead(qube(500)).length + 5 + 1 + 5 + 500 + 5);
  });

  it("refuses NUL bytes, bad env names and oversized fields", () => {
    const base = { env: {}, outputs: [], inputs: [], limits: DEFAULT_SANDBOX_LIMITS };
    expect(() => encodeQubeHead({ ...base, command: ["a\0b"] })).to.throw(/NUL/);
    expect(() => encodeQubeHead({ ...base, command: ["x"], env: { "A=B": "1" } })).to.throw(/environment name/);
    expect(() => frame("A", Buffer.alloc(65537))).to.throw(/64 KiB/);
  });
});

describe("micro-VM initramfs (newc cpio)", () => {
  it("encodes a record with 4-byte padding", () => {
    const record = encodeCpioRecord(1, "a", 0o100644, Buffer.from("xyz"));
    expect(record.subarray(0, 6).toString()).to.equal("070701");
    expect(record.length % 4).to.equal(0);
    expect(record.toString("latin1")).to.contain("a\0");
  });

  it("ends with the trailer", () => {
    const archive = buildCpio([{ type: "directory", path: "d", mode: 0o755 }]);
    expect(archive.toString("latin1")).to.contain("TRAILER!!!\0");
  });
});

describe("micro-VM result mapping", () => {
  const base = {
    files: [],
    hostTimedOut: false,
    startedAt: new Date(0),
    endedAt: new Date(1000),
    durationMs: 1000,
  };
  const channel = {
    stdout: "",
    stderr: "",
    stdoutTruncated: false,
    stderrTruncated: false,
    warnings: [] as string[],
    complete: true,
  };

  it("maps the init's markers to timedOut / oomKilled and exit 137", () => {
    const r = toRunResult(
      { ...base, channel: { ...channel, exit: { kind: "signaled", signal: 9 }, warnings: ["oom-killed"] } },
      "sha256:x",
    );
    expect([r.exitCode, r.oomKilled, r.timedOut]).to.deep.equal([137, true, false]);
    const t = toRunResult(
      { ...base, channel: { ...channel, exit: { kind: "signaled", signal: 9 }, warnings: ["timed-out"] } },
      "sha256:x",
    );
    expect([t.exitCode, t.timedOut, t.tier]).to.deep.equal([137, true, "microvm"]);
  });

  it("reports exec failures as 127 with the warning on stderr", () => {
    const r = toRunResult(
      { ...base, channel: { ...channel, exit: { kind: "exec-failed", errno: 2 }, warnings: ["cannot run x"] } },
      "sha256:x",
    );
    expect(r.exitCode).to.equal(127);
    expect(r.stderr).to.equal("cannot run x\n");
  });
});

describe("micro-VM channel modules", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "aq-vm-modules-"));
    await mkdir(join(dir, "kernel/drivers/virtio"), { recursive: true });
    await mkdir(join(dir, "kernel/drivers/char"), { recursive: true });
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("reads the kernel release from a Debian kernel's file name", () => {
    expect(kernelRelease("/boot/vmlinuz-6.1.0-57-cloud-amd64")).to.equal("6.1.0-57-cloud-amd64");
    expect(kernelRelease("/somewhere/bzImage")).to.equal(undefined);
  });

  it("loads plain and xz-compressed modules in dependency order and skips built-in ones", async () => {
    await writeFile(join(dir, "kernel/drivers/virtio/virtio_ring.ko"), "ring");
    execFileSync("sh", ["-c", `printf mmio | xz > ${join(dir, "kernel/drivers/virtio/virtio_mmio.ko.xz")}`]);
    await writeFile(join(dir, "kernel/drivers/char/virtio_console.ko"), "console");
    await writeFile(join(dir, "modules.builtin"), "kernel/drivers/virtio/virtio.ko\n");
    const modules = await loadVmModules("/boot/whatever", dir);
    expect(modules.map((m) => [m.name, m.data.toString()])).to.deep.equal([
      ["virtio_ring", "ring"],
      ["virtio_mmio", "mmio"],
      ["virtio_console", "console"],
    ]);
    const entries = initEntries(Buffer.from("init"), modules);
    const module = entries.find((entry) => entry.path === ".airqube/modules/virtio_console.ko");
    expect(module).to.include({ type: "file", mode: 0o400 });
    expect(bootFilesHash(Buffer.from("init"), modules)).to.not.equal(bootFilesHash(Buffer.from("init"), []));
  });

  it("refuses a kernel whose channel modules are neither present nor built in", async () => {
    await writeFile(join(dir, "kernel/drivers/virtio/virtio_ring.ko"), "ring");
    const error = await loadVmModules("/boot/vmlinuz-x", dir).catch((caught: unknown) => caught);
    expect(error).to.be.instanceOf(PlatformError);
    expect((error as PlatformError).code).to.equal("VM_MODULES_MISSING");
    const unnamed = await loadVmModules("/boot/bzImage", undefined).catch((caught: unknown) => caught);
    expect((unnamed as PlatformError).code).to.equal("VM_MODULES_MISSING");
  });
});
