import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { access, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { PROBES } from "../../src/probes/catalog.js";
import { PROBE_IMAGE, runProbeSuite } from "../../src/probes/runner.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { DEFAULT_SANDBOX_LIMITS } from "../../src/sandbox/api.js";
import { kvmGroup, resolveAccel } from "../../src/sandbox/microvm/accel.js";
import { loadVmModules, prepareInitrd } from "../../src/sandbox/microvm/rootfs.js";
import { FrameAssembler, MicroVm } from "../../src/sandbox/microvm/vm.js";
import { defaultKernel, MicroVmSandbox } from "../../src/sandbox/microvm-sandbox.js";
import { BUSYBOX } from "../helpers/docker.js";

const MiB = 1024 * 1024;
const root = join(import.meta.dirname, "..", "..");
const sh = (script: string) => ["sh", "-c", script];
const tmp = () => mkdtemp(join(tmpdir(), "aq-vm-test-"));

function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Every VM a sandbox started must be gone: no QEMU process, no private temp dir. */
async function expectAllDestroyed(sandbox: MicroVmSandbox): Promise<void> {
  for (const vm of sandbox.stats.vms) {
    expect(isAlive(vm.pid), `QEMU ${vm.pid} must be gone`).to.equal(false);
    expect(await exists(vm.directory), `${vm.directory} must be wiped`).to.equal(false);
  }
}

describe("MicroVmSandbox @qemu @docker", function () {
  this.timeout(120_000);
  const docker = new Docker();
  let sandbox: MicroVmSandbox;
  let evilInit: string;

  before(async () => {
    execFileSync("bash", [join(root, "scripts", "build-vm.sh")], { stdio: "ignore" });
    const dir = await tmp();
    evilInit = join(dir, "evil-vm-init");
    const cc = (() => {
      try {
        execFileSync("musl-gcc", ["--version"], { stdio: "ignore" });
        return "musl-gcc";
      } catch {
        return "gcc";
      }
    })();
    execFileSync(cc, [
      "-static",
      "-Os",
      "-o",
      evilInit,
      join(root, "test/sandbox/fixtures/evil-vm-init.c"),
      join(root, "src/sandbox/native/channel.c"),
    ]);
    await docker.getImage(BUSYBOX).inspect(); // `npm run images` builds it
    sandbox = new MicroVmSandbox({ docker, accel: "tcg" });
  });

  after(async () => {
    await sandbox?.close();
  });

  afterEach(async () => {
    if (sandbox) await expectAllDestroyed(sandbox);
  });

  it("streams a 48 MiB input to the guest from its file: every byte arrives, host memory stays flat", async () => {
    const input = await tmp();
    const data = randomBytes(48 * 1024 * 1024);
    await writeFile(join(input, "big.bin"), data);
    const expected = createHash("sha256").update(data).digest("hex");
    global.gc?.();
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    try {
      const result = await sandbox.run({
        image: BUSYBOX,
        inputDir: input,
        command: sh("sha256sum /input/big.bin | cut -d' ' -f1"),
        limits: { ...DEFAULT_SANDBOX_LIMITS, memoryBytes: 256 * 1024 * 1024, scratchBytes: 128 * 1024 * 1024 },
      });
      expect(result.exitCode, result.stderr).to.equal(0);
      expect(result.stdout.trim()).to.equal(expected);
    } finally {
      clearInterval(sampler);
    }
    // the old tier read every input into one host buffer (48 MiB and more); streaming holds about a frame
    console.log(`      48 MiB input streamed: host RSS grew by ${((peak - before) / 2 ** 20).toFixed(1)} MiB`);
    expect(peak - before, `host RSS grew by ${Math.round((peak - before) / 2 ** 20)} MiB`).to.be.below(
      40 * 1024 * 1024,
    );
  });

  it("runs a qube in its own kernel and returns stdout, stderr, exit code, inputs and outputs", async () => {
    const input = await tmp();
    await writeFile(join(input, "in.txt"), "input-data");
    const out = await tmp();
    const result = await sandbox.run({
      image: BUSYBOX,
      inputDir: input,
      env: { GREETING: "hello" },
      command: sh(
        [
          'echo "$GREETING"; echo oops >&2; id -u; uname -r',
          "cat /input/in.txt; echo; (echo x > /input/in.txt) 2>/dev/null || echo input-read-only",
          "(touch /etc/x) 2>/dev/null || echo root-read-only",
          "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status",
          "stat -c '%n %u:%g %a' /scratch /output /tmp",
          "ls /sys/class/net",
          "mkdir /output/d; printf abc > /output/d/x.txt; exit 7",
        ].join("; "),
      ),
      outputs: ["/output"],
      outputDir: out,
    });
    expect(result.tier).to.equal("microvm");
    expect(result.exitCode).to.equal(7);
    expect(result.stderr).to.equal("oops\n");
    const lines = result.stdout.split("\n");
    expect(lines.slice(0, 2)).to.deep.equal(["hello", "65534"]);
    expect(lines[2]).to.match(/cloud-amd64$/);
    expect(result.stdout).to.contain("input-data\ninput-read-only\nroot-read-only\n");
    expect(result.stdout).to.match(/CapEff:\s+0000000000000000/);
    expect(result.stdout).to.match(/CapBnd:\s+0000000000000000/);
    expect(result.stdout).to.match(/NoNewPrivs:\s+1/);
    expect(result.stdout, "scratch owned by the qube, mode as declared").to.contain(
      "/scratch 65534:65534 1777\n/output 65534:65534 1777\n/tmp 65534:65534 1777\n",
    );
    expect(result.stdout.trim().split("\n").at(-1), "no network interface but loopback").to.equal("lo");
    // metered from the host: the QEMU process's CPU time while it served the qube, and its peak RSS
    expect(result.usage?.cpuMs).to.be.within(1, result.durationMs * 4);
    expect(result.usage?.maxMemoryBytes).to.be.above(64 * 1024 * 1024);
    expect(result.outputs).to.deep.equal([
      { path: "output/d/x.txt", size: 3, sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    ]);
    expect(await readFile(join(out, "output/d/x.txt"), "utf8")).to.equal("abc");
    expect(result.imageDigest).to.match(/^sha256:[0-9a-f]{64}$/);
  });

  it("gives the guest one virtio device, the channel port, and no module loading once the init is done", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh(
        [
          "for d in /sys/bus/virtio/devices/*; do cat $d/device; done",
          "cat /sys/class/virtio-ports/*/name",
          "cat /proc/sys/kernel/modules_disabled",
          "ls /dev | tr '\\n' ' '; echo",
          "ls /sys/class/tty | grep -c '^ttyS'",
        ].join("; "),
      ),
    });
    expect(result.exitCode, result.stderr).to.equal(0);
    // 0x0003: virtio console; the only port is ours; no further module may be loaded (the qube could not anyway)
    expect(result.stdout.split("\n").slice(0, 3)).to.deep.equal(["0x0003", "airqube.0", "1"]);
    const dev = result.stdout.split("\n")[3]!.trim().split(" ");
    expect(
      dev.some((name) => /^(vport|hvc|tty|vd|sd)/.test(name)),
      `no channel or disk node in /dev: ${dev}`,
    ).to.equal(false);
    expect(result.stdout.split("\n")[4], "one UART: the console").to.equal("1");
  });

  it("OOM-kills a memory bomb at the memory limit", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
      limits: { memoryBytes: 32 * MiB },
    });
    expect(result.oomKilled).to.equal(true);
    expect(result.exitCode).to.equal(137);
    expect(result.stderr).to.not.contain("records out");
  });

  it("kills a qube at its deadline", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("echo start; sleep 100"),
      limits: { wallTimeMs: 1500 },
    });
    expect(result.timedOut).to.equal(true);
    expect(result.exitCode).to.equal(137);
    expect(result.stdout).to.equal("start\n");
    expect(result.durationMs).to.be.below(10_000);
  });

  it("stops a fork bomb at the pids limit and a disk fill at the scratch cap", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh(
        "dd if=/dev/zero of=/scratch/f bs=1M count=64 2>/dev/null || echo disk-capped; for i in $(seq 1 30); do sleep 5 & done; echo spawned",
      ),
      limits: { pids: 12, scratchBytes: 8 * MiB },
    });
    expect(result.stdout, JSON.stringify(result)).to.contain("disk-capped");
    expect(result.stderr, "the pids cap refused forks").to.match(/fork|Resource temporarily unavailable/i);
  });

  it("lets a second qube see nothing of the first (a fresh kernel each time)", async () => {
    const first = await sandbox.run({
      image: BUSYBOX,
      command: sh(
        "echo secret > /scratch/s; echo secret > /tmp/s; echo secret > /output/s; cat /proc/sys/kernel/random/boot_id",
      ),
    });
    const second = await sandbox.run({
      image: BUSYBOX,
      command: sh("ls -A /scratch /tmp /output; cat /proc/sys/kernel/random/boot_id"),
    });
    expect(second.stdout).to.not.contain("s\n/");
    expect(second.stdout.split("\n").filter((line) => line === "s")).to.deep.equal([]);
    expect(second.stdout.trim().split("\n").at(-1)).to.not.equal(first.stdout.trim());
  });

  it("runs each QEMU as a uid of its own from a range", async () => {
    const own = new MicroVmSandbox({ docker, accel: "tcg", uids: { first: 310_000, count: 1 } });
    try {
      const running = own.run({ image: BUSYBOX, command: ["sh", "-c", "sleep 2; echo ok"] });
      let status = "";
      for (let i = 0; i < 600 && !status; i++) {
        const pid = own.stats.vms[0]?.pid;
        if (pid) status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
        if (!status) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(status).to.match(/^Uid:\s+310000\s+310000\s+310000\s+310000$/m);
      expect(status).to.match(/^Gid:\s+310000\s+310000\s+310000\s+310000$/m);
      expect((await running).stdout).to.equal("ok\n");
      await expectAllDestroyed(own);
    } finally {
      await own.close();
    }
  });

  it("refuses a symlink among the outputs and writes nothing", async () => {
    const out = await tmp();
    let error: unknown;
    try {
      await sandbox.run({
        image: BUSYBOX,
        command: sh("ln -s /etc/passwd /output/link; echo x > /output/a"),
        outputs: ["/output"],
        outputDir: out,
      });
    } catch (caught) {
      error = caught;
    }
    expect(error).to.be.instanceOf(AirqubeError);
    // refused by the init's walker before any archive byte is sent, with the file named
    expect((error as AirqubeError).code, String(error)).to.equal("OUTPUT_UNSUPPORTED_TYPE");
    expect((error as AirqubeError).details).to.contain("/output/link");
    expect(await readdir(out)).to.deep.equal([]);
  });

  it("leaves no QEMU process and no temp dir when aborted mid-run", async () => {
    const controller = new AbortController();
    const before = sandbox.stats.vms.length;
    const running = sandbox.run({ image: BUSYBOX, command: sh("sleep 60") }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 3000);
    let error: unknown;
    try {
      await running;
    } catch (caught) {
      error = caught;
    }
    expect((error as AirqubeError).code).to.equal("ABORTED");
    expect(sandbox.stats.vms.length).to.equal(before + 1);
  });

  it("refuses an image whose digest differs from the one the qube names", async () => {
    let error: unknown;
    try {
      await sandbox.run({ image: BUSYBOX, imageDigest: `sha256:${"0".repeat(64)}`, command: ["true"] });
    } catch (caught) {
      error = caught;
    }
    expect((error as AirqubeError).code).to.equal("IMAGE_DIGEST_MISMATCH");
  });

  describe("a hostile guest (a VM whose init is compromised)", () => {
    let evil: MicroVmSandbox;
    before(() => {
      evil = new MicroVmSandbox({ docker, accel: "tcg", initBinary: evilInit, graceMs: 2000 });
    });
    after(async () => {
      await evil.close();
      await expectAllDestroyed(evil);
    });

    const cases: [string, string][] = [
      ["garbage", "CHANNEL_INVALID"],
      ["oversized", "CHANNEL_INVALID"],
      ["dotdot", "ARCHIVE_BAD_PATH"],
      ["absolute", "ARCHIVE_BAD_PATH"],
      ["truncated", "CHANNEL_INVALID"],
    ];
    for (const [mode, code] of cases) {
      it(`refuses ${mode} on the channel with ${code} and writes nothing`, async () => {
        const out = await tmp();
        let error: unknown;
        try {
          await evil.run({ image: BUSYBOX, command: [mode], outputs: ["/output"], outputDir: out });
        } catch (caught) {
          error = caught;
        }
        expect(error, mode).to.be.instanceOf(AirqubeError);
        expect((error as AirqubeError).code).to.equal(code);
        expect((error as AirqubeError).fault).to.equal("peer");
        expect(await readdir(out)).to.deep.equal([]);
        expect(await exists(join(out, "..", "escaped.txt"))).to.equal(false);
        expect(await exists("/tmp/airqube-escaped.txt")).to.equal(false);
      });
    }

    it("caps a guest that floods stdout and never ends, and kills it at the deadline", async () => {
      const result = await evil.run({
        image: BUSYBOX,
        command: ["flood"],
        limits: { wallTimeMs: 1000, logBytes: 4096 },
      });
      expect(result.timedOut).to.equal(true);
      expect(result.stdoutTruncated).to.equal(true);
      expect(result.stdout.length).to.equal(4096);
    });
  });

  describe("preloading", () => {
    it("serves qubes from booted VMs, each VM exactly once", async () => {
      const pooled = new MicroVmSandbox({ docker, accel: "tcg", preload: { image: BUSYBOX, count: 1 } });
      try {
        expect(await pooled.warm()).to.equal(1);
        const boot = sh("cat /proc/sys/kernel/random/boot_id; echo x > /scratch/mark; ls /scratch");
        const a = await pooled.run({ image: BUSYBOX, command: boot });
        expect(pooled.stats.preloadedRuns).to.equal(1);
        await pooled.warm(); // the replacement booted in the background
        const b = await pooled.run({ image: BUSYBOX, command: boot });
        expect(pooled.stats.preloadedRuns).to.equal(2);
        expect(a.stdout.split("\n")[0]).to.not.equal(b.stdout.split("\n")[0]);
        expect(b.stdout.split("\n").slice(1)).to.deep.equal(["mark", ""]);
        const ids = pooled.stats.servedVmIds;
        expect(new Set(ids).size, "no VM served two qubes").to.equal(ids.length);
        // a qube that does not fit the pool (more memory) boots cold
        await pooled.run({
          image: BUSYBOX,
          command: ["true"],
          limits: { memoryBytes: DEFAULT_SANDBOX_LIMITS.memoryBytes * 2 },
        });
        expect(pooled.stats.coldRuns).to.equal(1);
      } finally {
        await pooled.close();
      }
      await expectAllDestroyed(pooled);
    });

    it("refuses to hand a VM a second qube", async () => {
      const kernel = (await readdir("/boot")).find(
        (name) => name.endsWith("-cloud-amd64") && name.startsWith("vmlinuz"),
      );
      const initrd = await prepareInitrd(docker, BUSYBOX, {
        initBinary: join(root, "images/build/vm-init"),
        modules: await loadVmModules(await defaultKernel()),
      });
      const vm = await MicroVm.boot({
        qemuBinary: "qemu-system-x86_64",
        kernel: join("/boot", kernel!),
        initrd,
        accel: "tcg",
        memoryBytes: DEFAULT_SANDBOX_LIMITS.memoryBytes,
        vcpus: 1,
        bootTimeoutMs: 60_000,
      });
      const qube = { command: ["true"], env: {}, outputs: [], inputs: [], limits: DEFAULT_SANDBOX_LIMITS };
      const first = await vm.serve(qube, { graceMs: 5000 });
      expect(first.channel.exit).to.deep.equal({ kind: "exited", code: 0 });
      expect(vm.exitedAlready, "destroyed after its qube").to.equal(true);
      let error: unknown;
      try {
        await vm.serve(qube, { graceMs: 5000 });
      } catch (caught) {
        error = caught;
      }
      expect((error as AirqubeError).code).to.equal("VM_REUSED");
    });
  });

  it("auto accel boots a KVM self-test and falls back to TCG when KVM hangs or is missing", async function () {
    this.timeout(30_000);
    const kernel = (await readdir("/boot")).find((name) => name.endsWith("-cloud-amd64") && name.startsWith("vmlinuz"));
    const decision = await resolveAccel("auto", {
      qemuBinary: "qemu-system-x86_64",
      kernel: join("/boot", kernel!),
      initBinary: join(root, "images/build/vm-init"),
      cacheDir: join(tmpdir(), `airqube-vm-cache-${process.getuid?.() ?? 0}`),
      timeoutMs: 4000,
    });
    expect(["kvm", "tcg"]).to.include(decision.accel);
    expect(decision.reason).to.be.a("string").and.not.equal("requested");
    if ((await kvmGroup()) === undefined) expect(decision.accel).to.equal("tcg");
    console.log(`      accel auto: ${decision.accel} (${decision.reason})`);
  });
});

describe("the escape suite on the micro-VM tier @qemu @docker", function () {
  this.timeout(300_000);

  before(async () => {
    execFileSync("bash", [join(root, "scripts", "build-vm.sh")], { stdio: "ignore" });
    await new Docker().getImage(PROBE_IMAGE).inspect(); // `npm run images` builds it
  });

  it("passes every probe, kernel identity included, with no fail and no inconclusive", async () => {
    const report = await runProbeSuite({ tier: "microvm" });
    const notPassed = report.probes
      .filter((p) => p.verdict !== "pass")
      .map((p) => `${p.id} ${p.verdict}: ${p.evidence}`);
    expect(report.summary.fail, notPassed.join("\n")).to.equal(0);
    expect(report.summary.inconclusive, notPassed.join("\n")).to.equal(0);
    expect(report.summary.pass, notPassed.join("\n")).to.equal(PROBES.length - 2);
    expect(report.probes.find((p) => p.id === 36)?.verdict, "a kernel of its own").to.equal("pass");
    // the rows not passed: the guest boots with no AppArmor/SELinux, and says so
    const lsm = report.probes.find((p) => p.id === 21);
    expect(lsm?.verdict).to.equal("skipped");
    expect(lsm?.evidence).to.match(/no AppArmor\/SELinux/);
    // and row 42: the engine and runc only unpack images here, QEMU runs the qube
    const cves = report.probes.find((p) => p.id === 42);
    expect(cves?.verdict).to.equal("skipped");
    expect(cves?.evidence).to.match(/tier microvm/);
  });
});

describe("FrameAssembler (the micro-VM channel's frame reassembly)", () => {
  const frameOf = (type: string, body: Buffer) => {
    const header = Buffer.alloc(5);
    header.write(type, 0, "latin1");
    header.writeUInt32BE(body.length, 1);
    return Buffer.concat([header, body]);
  };

  it("hands every frame over whole and once, however the serial stream was cut", () => {
    const frames = [
      frameOf("H", Buffer.from("airqube-init/1")),
      frameOf("O", Buffer.from("out")),
      frameOf("X", Buffer.from([0, 0, 0, 0, 0])),
      ...Array.from({ length: 5 }, (_, k) => frameOf("T", Buffer.alloc(65536 - k * 7000, k + 1))),
      frameOf("Z", Buffer.alloc(0)),
    ];
    const stream = Buffer.concat(frames);
    for (const cut of [1, 3, 5, 16, 4096, 65541, stream.length]) {
      const got: Buffer[] = [];
      const assembler = new FrameAssembler((bytes) => got.push(Buffer.from(bytes)));
      for (let offset = 0; offset < stream.length; offset += cut) assembler.push(stream.subarray(offset, offset + cut));
      expect(
        got.map((b) => b.toString("hex")),
        `chunks of ${cut}`,
      ).to.deep.equal(frames.map((b) => b.toString("hex")));
      expect(assembler.sawStdout && assembler.sawExit && assembler.sawEnd).to.equal(true);
      expect(assembler.rest().length).to.equal(0);
    }
  });

  it("keeps an unfinished frame for the parser to reject, and passes an oversized header through", () => {
    const got: Buffer[] = [];
    const assembler = new FrameAssembler((bytes) => got.push(Buffer.from(bytes)));
    assembler.push(frameOf("T", Buffer.alloc(100)).subarray(0, 60));
    expect(got).to.deep.equal([]);
    expect(assembler.rest().length).to.equal(60);
    const oversized = Buffer.from([0x54, 0, 1, 0, 1, 9, 9]);
    const other = new FrameAssembler((bytes) => got.push(Buffer.from(bytes)));
    other.push(oversized);
    other.push(Buffer.from([7]));
    expect(Buffer.concat(got).toString("hex")).to.equal(Buffer.concat([oversized, Buffer.from([7])]).toString("hex"));
  });
});
