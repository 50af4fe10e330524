import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { AirqubeError } from "../../src/qube/errors.js";
import type { QubeRun, SandboxResult } from "../../src/sandbox/api.js";
import { ContainerSandbox, defaultInitBinary } from "../../src/sandbox/container-sandbox.js";
import { SANDBOX_LABEL } from "../../src/sandbox/hardening.js";
import { encodeQubeFrame, QUBE_FRAME_MAX } from "../../src/sandbox/warm-pool.js";
import { BUSYBOX, ourContainers } from "../helpers/docker.js";

const MiB = 1024 * 1024;
const sh = (script: string) => ["sh", "-c", script];
const tmp = () => mkdtemp(join(tmpdir(), "aq-warm-"));

/** What a run reports, minus its timing. */
/** A result without what varies from run to run: timings and metered usage (only whether it was metered). */
function comparable(result: SandboxResult) {
  const { durationMs: _d, startedAt: _s, endedAt: _e, usage, ...rest } = result;
  return { ...rest, metered: usage !== undefined && usage.maxMemoryBytes > 0 };
}

describe("qube frame encoding", () => {
  it("encodes argv, environment and outputs as the init expects", () => {
    const frame = encodeQubeFrame(["echo", "hi"], ["A=1"], ["/output"]);
    expect(frame?.subarray(0, 4).toString("latin1")).to.equal("AQQ1");
    expect(frame?.readUInt32BE(4)).to.equal((frame?.length ?? 0) - 8);
    expect(frame?.subarray(20).toString("latin1")).to.equal("echo\0hi\0A=1\0/output\0");
  });

  it("refuses what the frame cannot carry, so that the qube starts cold", () => {
    expect(encodeQubeFrame(["echo", "a\0b"], [], [])).to.equal(undefined);
    expect(encodeQubeFrame([""], [], [])).to.equal(undefined);
    expect(encodeQubeFrame([], [], [])).to.equal(undefined);
    expect(encodeQubeFrame(["true"], ["=x"], [])).to.equal(undefined);
    expect(encodeQubeFrame(["echo", "x".repeat(QUBE_FRAME_MAX)], [], [])).to.equal(undefined);
  });

  it("is validated strictly by the init (--await-qube), which runs a valid one as the cold form would", () => {
    const init = (input: Buffer) => spawnSync(defaultInitBinary(), ["--await-qube"], { input });
    const good = encodeQubeFrame(["sh", "-c", "echo $AQ_X; exit 3"], ["AQ_X=y"], []) ?? Buffer.alloc(0);
    const ran = init(good);
    expect(ran.status).to.equal(3);
    expect(ran.stdout.toString("latin1")).to.contain("O\0\0\0\x02y\n");
    const header = (length: number) =>
      Buffer.from([0x41, 0x51, 0x51, 0x31, ...[24, 16, 8, 0].map((s) => (length >>> s) & 255)]);
    const refusals: [Buffer, string][] = [
      [Buffer.alloc(0), "stdin closed before the qube frame"],
      [Buffer.concat([Buffer.from("XXXX"), good.subarray(4)]), "bad qube frame magic"],
      [header(QUBE_FRAME_MAX + 1), "qube frame length out of bounds"],
      [good.subarray(0, good.length - 1), "qube frame truncated"],
      [Buffer.concat([header(good.length - 7), good.subarray(8), Buffer.from("x")]), "trailing bytes"],
      [Buffer.concat([header(good.length - 8), Buffer.from([0, 0, 0, 0]), good.subarray(12)]), "counts out of bounds"],
    ];
    for (const [input, message] of refusals) {
      const refused = init(input);
      expect(refused.status, message).to.equal(125);
      expect(refused.stdout.toString("latin1"), message).to.contain(message);
    }
  });
});

describe("ContainerSandbox warm pool @docker", function () {
  this.timeout(60_000);
  const docker = new Docker();
  let sandboxes: ContainerSandbox[] = [];
  const warmSandbox = (count = 1, limits?: QubeRun["limits"]) => {
    const sandbox = new ContainerSandbox({ docker, warm: { image: BUSYBOX, count, ...(limits ? { limits } : {}) } });
    sandboxes.push(sandbox);
    return sandbox;
  };

  afterEach(async () => {
    await Promise.all(sandboxes.map((s) => s.close()));
    sandboxes = [];
    expect(await ourContainers(docker), "close() leaves no container").to.deep.equal([]);
  });

  it("keeps containers started and labelled, their init waiting", async () => {
    const sandbox = warmSandbox(2);
    expect(await sandbox.warm()).to.equal(2);
    const list = await docker.listContainers({ filters: { label: [`${SANDBOX_LABEL}.warm=1`] } });
    const ours = list.filter((c) => c.Labels[`${SANDBOX_LABEL}.owner`] === String(process.pid));
    expect(ours).to.have.length(2);
    for (const c of ours) expect(c.State).to.equal("running");
  });

  it("runs a warm qube and reports it as a cold one", async () => {
    const qube = async (): Promise<QubeRun> => ({
      image: BUSYBOX,
      command: sh(
        'echo "hello $GREETING"; echo oops >&2; id -u; mkdir /output/d; printf abc > /output/d/x.txt; exit 7',
      ),
      env: { GREETING: "warm world" },
      outputs: ["/output"],
      outputDir: await tmp(),
    });
    const warm = warmSandbox();
    await warm.warm();
    const warmQube = await qube();
    const warmResult = await warm.run(warmQube);
    expect(warm.stats).to.include({ warmRuns: 1, coldRuns: 0 });
    const cold = new ContainerSandbox({ docker });
    const coldResult = await cold.run(await qube());
    expect(comparable(warmResult)).to.deep.equal(comparable(coldResult));
    expect(comparable(warmResult).metered, "a warm qube is metered too").to.equal(true);
    expect(warmResult.stdout).to.equal("hello warm world\n65534\n");
    expect(warmResult.exitCode).to.equal(7);
    expect(await readFile(join(warmQube.outputDir ?? "", "output/d/x.txt"), "utf8")).to.equal("abc");
  });

  it("confines a warm qube as a cold one (user, capabilities, seccomp, network, read-only root)", async () => {
    const warm = warmSandbox();
    await warm.warm();
    const script =
      "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; ls /sys/class/net; touch /x 2>/dev/null || echo ro; ls /input 2>&1 | head -1";
    const warmResult = await warm.run({ image: BUSYBOX, command: sh(script) });
    const coldResult = await new ContainerSandbox({ docker }).run({ image: BUSYBOX, command: sh(script) });
    expect(warm.stats.warmRuns).to.equal(1);
    expect(warmResult.stdout).to.equal(coldResult.stdout);
    expect(warmResult.stdout).to.match(/CapEff:\s+0000000000000000/);
    expect(warmResult.stdout).to.match(/Seccomp:\s+2/);
  });

  it("never lets a warm container serve two qubes", async () => {
    const sandbox = warmSandbox(1);
    await sandbox.warm();
    const first = await sandbox.run({ image: BUSYBOX, command: ["hostname"] });
    await sandbox.warm(); // the replacement
    const second = await sandbox.run({ image: BUSYBOX, command: ["hostname"] });
    expect(sandbox.stats.warmRuns).to.equal(2);
    const [a, b] = sandbox.stats.servedContainerIds;
    expect(a).to.not.equal(b);
    expect(a?.startsWith(first.stdout.trim())).to.equal(true);
    expect(b?.startsWith(second.stdout.trim())).to.equal(true);
    const gone = await docker
      .getContainer(a ?? "")
      .inspect()
      .then(() => false)
      .catch((error: { statusCode?: number }) => error.statusCode === 404);
    expect(gone, "the container that served a qube is destroyed").to.equal(true);
  });

  it("starts cold on other limits, another image or inputs, and keeps the warm container", async () => {
    const sandbox = warmSandbox(1, { memoryBytes: 64 * MiB });
    await sandbox.warm();
    await sandbox.run({ image: BUSYBOX, command: ["true"] }); // default memory
    await sandbox.run({ image: BUSYBOX, command: ["true"], limits: { memoryBytes: 64 * MiB, pids: 32 } });
    await sandbox.run({ image: "airqube/probe:latest", command: ["true"], limits: { memoryBytes: 64 * MiB } });
    const input = await tmp();
    await writeFile(join(input, "in.txt"), "data");
    const withInput = await sandbox.run({
      image: BUSYBOX,
      inputDir: input,
      command: ["cat", "/input/in.txt"],
      limits: { memoryBytes: 64 * MiB },
    });
    expect(withInput.stdout).to.equal("data");
    expect(sandbox.stats).to.include({ coldRuns: 4, warmRuns: 0 });
    // host-side limits (wall time, log cap) are the qube's own: a warm container still serves it
    const result = await sandbox.run({
      image: BUSYBOX,
      command: sh("cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"),
      limits: { memoryBytes: 64 * MiB, wallTimeMs: 5000 },
    });
    expect(sandbox.stats.warmRuns).to.equal(1);
    expect(Number(result.stdout.trim())).to.equal(64 * MiB);
  });

  it("destroys a warm container on time-out and on abort", async () => {
    const sandbox = warmSandbox(1);
    await sandbox.warm();
    const timedOut = await sandbox.run({
      image: BUSYBOX,
      command: sh("while :; do :; done"),
      limits: { wallTimeMs: 1000 },
    });
    expect(timedOut.timedOut).to.equal(true);
    await sandbox.warm();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 500);
    const error = await sandbox
      .run({ image: BUSYBOX, command: ["sleep", "30"] }, { signal: controller.signal })
      .catch((e: unknown) => e);
    expect(error).to.be.instanceOf(AirqubeError);
    expect((error as AirqubeError).code).to.equal("ABORTED");
    expect(sandbox.stats.warmRuns).to.equal(2);
    for (const id of sandbox.stats.servedContainerIds) {
      const exists = await docker
        .getContainer(id)
        .inspect()
        .then(() => true)
        .catch(() => false);
      expect(exists).to.equal(false);
    }
  });

  it("close() leaves no container, even while the pool is still filling", async () => {
    const filling = warmSandbox(3);
    await filling.close();
    expect(await ourContainers(docker)).to.deep.equal([]);
    const full = warmSandbox(2);
    await full.warm();
    await full.run({ image: BUSYBOX, command: ["true"] });
    await full.close();
    expect(await ourContainers(docker)).to.deep.equal([]);
    expect(full.stats.warmRuns).to.equal(1);
  });
});
