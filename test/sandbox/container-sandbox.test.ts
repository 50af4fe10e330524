import { mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { AirqubeError } from "../../src/qube/errors.js";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { imageDigest } from "../../src/sandbox/images.js";
import { BUSYBOX, ourContainers } from "../helpers/docker.js";

const MiB = 1024 * 1024;

describe("ContainerSandbox @docker", function () {
  this.timeout(60_000);
  const docker = new Docker();
  const sandbox = new ContainerSandbox({ docker });
  const sh = (script: string) => ["sh", "-c", script];
  const tmp = () => mkdtemp(join(tmpdir(), "aq-test-"));

  afterEach(async () => {
    expect(await ourContainers(docker), "no container may outlive its qube").to.deep.equal([]);
  });

  it("runs a qube and reports stdout, stderr, exit code and outputs", async () => {
    const out = await tmp();
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("echo hello; echo oops >&2; mkdir /output/d; printf abc > /output/d/x.txt; exit 7"),
      outputs: ["/output"],
      outputDir: out,
    });
    expect(result.exitCode).to.equal(7);
    expect(result.stdout).to.equal("hello\n");
    expect(result.stderr).to.equal("oops\n");
    expect(result.timedOut).to.equal(false);
    expect(result.outputs).to.deep.equal([
      { path: "output/d/x.txt", size: 3, sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
    ]);
    expect(await readFile(join(out, "output/d/x.txt"), "utf8")).to.equal("abc");
  });

  it("passes inputs read-only under /input", async () => {
    const input = await tmp();
    await writeFile(join(input, "in.txt"), "input-data");
    const result = await sandbox.run({
      image: BUSYBOX,
      inputDir: input,
      command: sh("cat /input/in.txt; echo x > /input/in.txt || echo refused"),
    });
    expect(result.stdout).to.match(/^input-data/);
    expect(result.stdout).to.contain("refused");
  });

  it("runs as nobody with no capabilities, no-new-privileges and a seccomp filter", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("id -u; grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status"),
    });
    expect(result.stdout).to.contain("65534\n");
    expect(result.stdout).to.match(/CapEff:\s+0000000000000000/);
    expect(result.stdout).to.match(/CapBnd:\s+0000000000000000/);
    expect(result.stdout).to.match(/NoNewPrivs:\s+1/);
    expect(result.stdout).to.match(/Seccomp:\s+2/);
  });

  it("gives the qube /scratch, /output and /tmp as its own, mode 1777 as declared (not the image directory's 0755)", async () => {
    const result = await sandbox.run({ image: BUSYBOX, command: sh("stat -c '%n %u:%g %a' /scratch /output /tmp") });
    expect(result.stdout).to.equal("/scratch 65534:65534 1777\n/output 65534:65534 1777\n/tmp 65534:65534 1777\n");
  });

  it("meters CPU time and peak memory from the container's cgroup", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      // about half a second of CPU, then 40 MiB on the scratch tmpfs (charged to the container's memory)
      command: sh("i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done; head -c 41943040 /dev/zero > /scratch/f; echo ok"),
    });
    expect(result.stdout).to.equal("ok\n");
    expect(result.usage, "usage metered").to.not.equal(undefined);
    expect(result.usage!.cpuMs).to.be.within(100, result.durationMs * 2);
    expect(result.usage!.maxMemoryBytes).to.be.within(40 * 1024 * 1024, 256 * 1024 * 1024);
  });

  it("has no network interface but loopback", async () => {
    const result = await sandbox.run({ image: BUSYBOX, command: sh("ls /sys/class/net") });
    expect(result.stdout.trim().split(/\s+/)).to.deep.equal(["lo"]);
  });

  it("keeps the root file system read-only", async () => {
    const result = await sandbox.run({ image: BUSYBOX, command: sh("touch /etc/x 2>&1; touch /bin/x 2>&1; echo ok") });
    expect(result.stdout.match(/Read-only file system/g)).to.have.length(2);
  });

  it("refuses namespace creation (seccomp and no capabilities; io_uring is pinned in hardening.test.ts)", async () => {
    const result = await sandbox.run({ image: BUSYBOX, command: sh("unshare -U true 2>&1; echo rc=$?") });
    expect(result.stdout).to.match(/Operation not permitted/);
  });

  it("stops a fork bomb at the pids limit", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh(
        "i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done 2>/dev/null; echo started; ls /proc | grep -c '^[0-9]'",
      ),
      limits: { pids: 16, wallTimeMs: 20_000 },
    });
    const count = Number(result.stdout.trim().split("\n").pop());
    expect(count).to.be.at.most(16);
  });

  it("OOM-kills a memory bomb", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("head -c 200000000 /dev/zero | tail"),
      limits: { memoryBytes: 32 * MiB, wallTimeMs: 20_000 },
    });
    expect(result.exitCode).to.equal(137);
    expect(result.oomKilled).to.equal(true);
  });

  it("kills a busy loop at the deadline", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("while :; do :; done"),
      limits: { wallTimeMs: 1500 },
    });
    expect(result.timedOut).to.equal(true);
    expect(result.exitCode).to.equal(137);
    expect(result.durationMs).to.be.within(1400, 6000);
  });

  it("stops a disk fill at the scratch cap", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("dd if=/dev/zero of=/scratch/fill bs=1M count=64 2>&1; stat -c %s /scratch/fill"),
      limits: { scratchBytes: 8 * MiB },
    });
    expect(result.stdout).to.match(/No space left on device/);
    expect(Number(result.stdout.trim().split("\n").pop())).to.be.at.most(8 * MiB);
  });

  it("truncates output beyond the log cap and says so", async () => {
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("head -c 100000 /dev/zero | tr '\\0' a"),
      limits: { logBytes: 1000 },
    });
    expect(result.stdout).to.have.length(1000);
    expect(result.stdoutTruncated).to.equal(true);
    expect(result.stderrTruncated).to.equal(false);
  });

  it("lets a second qube see nothing of the first", async () => {
    await sandbox.run({
      image: BUSYBOX,
      command: sh("echo secret > /scratch/left; echo secret > /tmp/left; echo secret > /output/left; (sleep 30 &)"),
    });
    const second = await sandbox.run({
      image: BUSYBOX,
      command: sh("ls -A /scratch /tmp /output; ps -o comm | grep -cx sleep"),
    });
    expect(second.stdout).not.to.contain("left");
    expect(second.stdout.trim().split("\n").pop()).to.equal("0");
  });

  it("leaves no container when aborted mid-run", async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 500);
    const error = await sandbox
      .run({ image: BUSYBOX, command: sh("sleep 30") }, { signal: controller.signal })
      .catch((e) => e);
    expect(error).to.be.instanceOf(AirqubeError);
    expect(error.code).to.equal("ABORTED");
  });

  it("refuses an image whose digest differs from the one the qube names", async () => {
    const wrong = `sha256:${"0".repeat(64)}`;
    const error = await sandbox.run({ image: BUSYBOX, imageDigest: wrong, command: ["true"] }).catch((e) => e);
    expect(error.code).to.equal("IMAGE_DIGEST_MISMATCH");
    const right = await imageDigest(docker, BUSYBOX);
    const ok = await sandbox.run({ image: BUSYBOX, imageDigest: right, command: ["true"] });
    expect(ok.imageDigest).to.equal(right);
  });

  it("refuses a symlink among the outputs and writes nothing", async () => {
    const out = await tmp();
    const error = await sandbox
      .run({
        image: BUSYBOX,
        command: sh("echo a > /output/a; ln -s /etc/passwd /output/link"),
        outputs: ["/output"],
        outputDir: out,
      })
      .catch((e) => e);
    expect(error.code).to.equal("OUTPUT_UNSUPPORTED_TYPE");
    expect(error.details).to.contain("/output/link");
    expect(await readdir(out)).to.deep.equal([]);
  });

  describe("outputs arrive whole, or not at all with a named reason", () => {
    it("a 4 MB output arrives intact every time (it was lost about every second run)", async () => {
      for (let round = 0; round < 8; round++) {
        const out = await tmp();
        const result = await sandbox.run({
          image: BUSYBOX,
          command: sh("head -c 4000000 /dev/zero > /output/a.bin"),
          outputs: ["/output"],
          outputDir: out,
        });
        expect(result.outputs.map((f) => [f.path, f.size])).to.deep.equal([["output/a.bin", 4_000_000]]);
        expect((await readFile(join(out, "output/a.bin"))).length).to.equal(4_000_000);
      }
    });

    it("keeps names longer than ustar's fields (pax), deep trees and files the qube made unreadable", async () => {
      const out = await tmp();
      const long = "n".repeat(150);
      const dirs = ["a".repeat(120), "b".repeat(120), "c".repeat(120)].join("/");
      const deep = Array.from({ length: 20 }, (_, i) => `d${i}`).join("/");
      const result = await sandbox.run({
        image: BUSYBOX,
        command: sh(
          `echo long > /output/${long}; mkdir -p /output/${dirs} /output/${deep}; echo x > /output/${dirs}/y; ` +
            `echo deep > /output/${deep}/f; echo secret > /output/m; chmod 000 /output/m; chmod 000 /output/d0/d1`,
        ),
        outputs: ["/output"],
        outputDir: out,
      });
      expect(result.outputs.map((f) => f.path)).to.have.members([
        `output/${long}`,
        `output/${dirs}/y`,
        `output/${deep}/f`,
        "output/m",
      ]);
      expect(await readFile(join(out, "output", deep, "f"), "utf8")).to.equal("deep\n");
      expect(await readFile(join(out, "output/m"), "utf8")).to.equal("secret\n");
    });

    it("refuses a name the host cannot keep as it is (backslash, newline, not UTF-8) by name, and writes nothing", async () => {
      // Before: the host's unpacker blamed the sandbox (ARCHIVE_BAD_PATH, a peer's fault) for the first two, and
      // a lone non-UTF-8 name arrived silently renamed to U+FFFD.
      for (const [name, shown] of [
        ["'a\\b'", "/output/a\\b"],
        ['"$(printf "a\\nb")"', "/output/a?b"],
        ['"$(printf "\\377x")"', "/output/\ufffdx"],
      ] as const) {
        const out = await tmp();
        const error = await sandbox
          .run({
            image: BUSYBOX,
            command: sh(`echo ok > /output/ok; echo x > /output/${name}`),
            outputs: ["/output"],
            outputDir: out,
          })
          .then(
            () => undefined,
            (e: AirqubeError) => e,
          );
        expect(error?.code, `${name}: ${String(error)}`).to.equal("OUTPUT_BAD_NAME");
        expect(error?.fault, name).to.equal("user");
        expect(error?.details, name).to.contain(shown);
        expect(await readdir(out), name).to.deep.equal([]);
      }
    });

    it("refuses a sparse file over the cap at once, by name, and writes nothing", async () => {
      const out = await tmp();
      const started = Date.now();
      const error = await sandbox
        .run({
          image: BUSYBOX,
          command: sh("echo a > /output/a; truncate -s 7G /output/x"),
          outputs: ["/output"],
          outputDir: out,
          limits: { wallTimeMs: 20_000 },
        })
        .catch((e) => e);
      expect(error.code).to.equal("OUTPUT_FILE_TOO_LARGE");
      expect(error.details).to.contain("/output/x");
      expect(Date.now() - started).to.be.below(10_000);
      expect(await readdir(out)).to.deep.equal([]);
    });

    it("gives OUTPUT_TOO_MANY_FILES and OUTPUT_TOO_LARGE, leaving nothing on disk", async () => {
      const out = await tmp();
      const many = await sandbox
        .run({
          image: BUSYBOX,
          command: sh("cd /output; i=0; while [ $i -lt 1200 ]; do : > f$i; i=$((i+1)); done"),
          outputs: ["/output"],
          outputDir: out,
        })
        .catch((e) => e);
      expect(many.code).to.equal("OUTPUT_TOO_MANY_FILES");
      const large = await sandbox
        .run({
          image: BUSYBOX,
          command: sh("head -c 3000000 /dev/zero > /output/a; head -c 3000000 /dev/zero > /output/b"),
          outputs: ["/output"],
          outputDir: out,
          limits: { output: { maxFiles: 10, maxFileBytes: 4 * MiB, maxTotalBytes: 5 * MiB } },
        })
        .catch((e) => e);
      expect(large.code).to.equal("OUTPUT_TOO_LARGE");
      expect(await readdir(out)).to.deep.equal([]);
    });

    it("host memory stays bounded while a 200 MiB output streams to disk", async function () {
      this.timeout(180_000);
      // docker-modem's demultiplexer ignored backpressure: a paused consumer let the whole channel pile up in
      // memory (2.3 GB seen for a 256 MiB cap). Now the process grows by a few buffers, not by the output.
      const out = await tmp();
      const big = 200 * MiB;
      const before = process.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 20);
      try {
        const result = await sandbox.run({
          image: BUSYBOX,
          command: sh(`head -c ${big} /dev/zero > /output/big`),
          outputs: ["/output"],
          outputDir: out,
          limits: {
            memoryBytes: 512 * MiB,
            scratchBytes: 256 * MiB,
            output: { maxFiles: 10, maxFileBytes: 256 * MiB, maxTotalBytes: 256 * MiB },
          },
        });
        expect(result.outputs[0]?.size).to.equal(big);
      } finally {
        clearInterval(sampler);
      }
      expect(peak - before, `rss grew by ${Math.round((peak - before) / MiB)} MiB`).to.be.below(96 * MiB);
    });

    it("1 000 sparse 60 MiB files under the 256 MiB cap: refused up front by name, host memory flat (issue 22's trial)", async () => {
      // The trial's reproduction: the host process reached 2.3 GB while these streamed. The init now checks
      // every apparent size before it sends a byte, and nothing piles up on the host meanwhile.
      const out = await tmp();
      const before = process.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 20);
      const started = Date.now();
      let error: AirqubeError | undefined;
      try {
        error = await sandbox
          .run({
            image: BUSYBOX,
            command: sh("cd /output && seq 1 1000 | xargs truncate -s 60M && ls | wc -l"),
            outputs: ["/output"],
            outputDir: out,
            limits: {
              wallTimeMs: 60_000,
              output: { maxFiles: 1000, maxFileBytes: 64 * MiB, maxTotalBytes: 256 * MiB },
            },
          })
          .then(
            () => undefined,
            (e: AirqubeError) => e,
          );
      } finally {
        clearInterval(sampler);
      }
      expect(error?.code, String(error)).to.equal("OUTPUT_TOO_LARGE");
      expect(error?.details).to.match(/\/output\/\d+/);
      expect(Date.now() - started, "refused long before the deadline").to.be.below(20_000);
      expect(peak - before, `rss grew by ${Math.round((peak - before) / MiB)} MiB`).to.be.below(64 * MiB);
      expect(await readdir(out)).to.deep.equal([]);
    });

    it("a background child writing to stdout does not keep a finished qube alive", async () => {
      const out = await tmp();
      const result = await sandbox.run({
        image: BUSYBOX,
        command: sh("(while true; do echo bg; sleep 0.05; done) & echo main > /output/r; echo done"),
        outputs: ["/output"],
        outputDir: out,
        limits: { wallTimeMs: 15_000 },
      });
      expect(result.timedOut).to.equal(false);
      expect(result.exitCode).to.equal(0);
      expect(result.durationMs).to.be.below(5_000);
      expect(result.outputs.map((f) => f.path)).to.deep.equal(["output/r"]);
    });
  });

  it("reports a command that cannot run", async () => {
    const result = await sandbox.run({ image: BUSYBOX, command: ["/no/such/binary"] });
    expect(result.exitCode).to.equal(127);
    expect(result.stderr).to.contain("No such file");
  });

  it("refuses an unknown image with a clear error", async () => {
    const error = await sandbox.run({ image: "airqube/missing:none", command: ["true"] }).catch((e) => e);
    expect(error.code).to.equal("IMAGE_NOT_FOUND");
  });

  it("sweeps containers left by a dead agent", async () => {
    const container = await docker.createContainer({
      Image: BUSYBOX,
      Cmd: ["true"],
      Labels: { "io.airqube.sandbox": "1", "io.airqube.sandbox.owner": "999999" },
    });
    const removed = await ContainerSandbox.sweep(docker);
    expect(removed).to.be.at.least(1);
    const error = await container.inspect().catch((e) => e);
    expect(error.statusCode).to.equal(404);
  });
});
