/**
 * Soak: real-sized outputs through both sandbox tiers, many runs at once, with a CPU hog beside them. Every
 * run generates its outputs deterministically inside the qube (from a seed, with busybox tools), and the host
 * computes what they must be on its own: every file's size and SHA-256, and every byte on disk, are compared.
 * Zero losses allowed. Then every output cap is broken once: each gives its own typed error and leaves nothing
 * in the output directory.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { AirqubeError } from "../../src/qube/errors.js";
import type { QubeRun, Sandbox, SandboxLimits, SandboxOutput, SandboxResult } from "../../src/sandbox/api.js";
import { DEFAULT_SANDBOX_LIMITS } from "../../src/sandbox/api.js";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { MicroVmSandbox } from "../../src/sandbox/microvm-sandbox.js";
import { BUSYBOX, ourContainers } from "../helpers/docker.js";

const MiB = 1024 * 1024;
const MAX_FILES = DEFAULT_SANDBOX_LIMITS.output.maxFiles;
/** Lines in the seeded block that big files repeat (`seq SEED SEED+BLOCK_LINES-1`, about 1 MB). */
const BLOCK_LINES = 120_000;
/** Container runs (200; fewer for a quick local look with AIRQUBE_SOAK_RUNS, never in CI). */
const CONTAINER_RUNS = Number(process.env.AIRQUBE_SOAK_RUNS ?? 200);
/** Micro-VM runs (20, or fewer with AIRQUBE_SOAK_VM_RUNS for a quick local look). */
const VM_RUNS = Number(process.env.AIRQUBE_SOAK_VM_RUNS ?? 20);

/** One run's outputs: big files made of the seeded block, small files of one seeded line each. */
interface Plan {
  seed: number;
  big: number[];
  small: number;
}

/** mulberry32: a small deterministic PRNG, so that a failing run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` plans with total sizes from 0 to `maxBytes` (log-uniform, with the two ends always present) and file
 * counts from 0 to the file limit (the limit itself always present).
 */
function makePlans(count: number, maxBytes: number, maxFiles: number, seed: number): Plan[] {
  const random = prng(seed);
  const plans: Plan[] = [];
  for (let k = 0; k < count; k++) {
    const s = 1000 + Math.floor(random() * 1_000_000);
    const edge = k % 25;
    let total: number;
    if (edge === 0) total = 0;
    else if (edge === 1) total = maxBytes;
    else total = Math.floor(2 ** (random() * Math.log2(maxBytes)));
    const bigCount = total === 0 ? (random() < 0.5 ? 0 : 1) : 1 + Math.floor(random() * 3);
    const big: number[] = [];
    let left = total;
    for (let j = 0; j < bigCount; j++) {
      const size = j === bigCount - 1 ? left : Math.floor(random() * left);
      big.push(size);
      left -= size;
    }
    let small: number;
    if (edge === 2 || edge === 13) small = maxFiles - big.length;
    else if (edge === 3) small = 0;
    else small = random() < 0.3 ? 0 : Math.floor(random() ** 2 * (maxFiles - big.length));
    plans.push({ seed: s, big, small });
  }
  return plans;
}

/** The shell script that writes a plan's outputs inside the qube. */
function script(plan: Plan): string {
  const lines = [
    "set -e",
    `seq ${plan.seed} ${plan.seed + BLOCK_LINES - 1} > /tmp/block`,
    "mkdir -p /output/n/e/s/t",
    ...plan.big.map((size, j) => `(while cat /tmp/block; do :; done) | head -c ${size} > /output/n/e/s/t/big${j}.bin`),
  ];
  if (plan.small > 0) {
    lines.push(
      "for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p /output/s$d; done",
      `i=0; while [ $i -lt ${plan.small} ]; do printf '%s:%s\\n' ${plan.seed} $i > /output/s$((i % 10))/f$i.txt; i=$((i + 1)); done`,
    );
  }
  return lines.join("\n");
}

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** What the qube must produce for a plan, computed on the host. */
function expected(plan: Plan): SandboxOutput[] {
  const lines: string[] = [];
  for (let n = plan.seed; n < plan.seed + BLOCK_LINES; n++) lines.push(`${n}\n`);
  const block = Buffer.from(lines.join(""));
  const files: SandboxOutput[] = plan.big.map((size, j) => {
    const hash = createHash("sha256");
    for (let done = 0; done < size; done += block.length)
      hash.update(block.subarray(0, Math.min(block.length, size - done)));
    return { path: `output/n/e/s/t/big${j}.bin`, size, sha256: hash.digest("hex") };
  });
  for (let i = 0; i < plan.small; i++) {
    const text = `${plan.seed}:${i}\n`;
    files.push({ path: `output/s${i % 10}/f${i}.txt`, size: text.length, sha256: sha256(text) });
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Every regular file under `dir`, relative and sorted. */
async function filesOnDisk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

/**
 * Runs `jobs` with at most `width` at a time. After a failure no new job starts; the jobs in flight are waited
 * for (so that no sandbox outlives the test), then the first failure is thrown.
 */
async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < jobs.length && !failure) {
      const index = next++;
      try {
        results[index] = await jobs[index]!();
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  if (failure) throw failure.error;
  return results;
}

/** A bounded busy loop on the host, one per core minus one, killed in `after`. */
function cpuHog(ms: number): ChildProcess {
  return spawn(process.execPath, ["-e", `const end = Date.now() + ${ms}; while (Date.now() < end) {}`], {
    stdio: "ignore",
  });
}

interface Soaked {
  runs: number;
  files: number;
  bytes: number;
  ms: number;
}

/** Runs every plan, checks every byte, and returns the totals. */
async function soak(sandbox: Sandbox, plans: Plan[], width: number, limits: Partial<SandboxLimits>): Promise<Soaked> {
  const started = performance.now();
  let files = 0;
  let bytes = 0;
  let done = 0;
  await pool(
    plans.map((plan) => async () => {
      const out = await mkdtemp(join(tmpdir(), "aq-soak-"));
      try {
        const want = expected(plan);
        let result: SandboxResult;
        try {
          result = await sandbox.run({
            image: BUSYBOX,
            command: ["sh", "-c", script(plan)],
            outputs: ["/output"],
            outputDir: out,
            limits,
          });
        } catch (error) {
          throw new Error(`seed ${plan.seed} (${plan.big.join("+")} bytes, ${plan.small} small) failed: ${error}`, {
            cause: error,
          });
        }
        const what = `seed ${plan.seed}: ${plan.big.join("+")} bytes, ${plan.small} small files`;
        const outcome = `timedOut ${result.timedOut}, oomKilled ${result.oomKilled}, ${result.durationMs} ms`;
        expect(result.exitCode, `${what}: ${outcome}: ${result.stderr}`).to.equal(0);
        expect(result.outputs, what).to.deep.equal(want);
        expect(await filesOnDisk(out), what).to.deep.equal(want.map((file) => file.path).sort());
        for (const file of want) {
          expect(await hashFile(join(out, file.path)), `${what}: ${file.path} on disk`).to.equal(file.sha256);
          bytes += file.size;
        }
        files += want.length;
        if (++done % 25 === 0)
          console.log(`      ${done}/${plans.length} runs checked (${Math.round(performance.now() - started)} ms)`);
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    }),
    width,
  );
  return { runs: plans.length, files, bytes, ms: Math.round(performance.now() - started) };
}

/** Runs a qube that must fail with `code`, and checks that nothing was left in its output directory. */
async function expectRefused(sandbox: Sandbox, qube: Omit<QubeRun, "image" | "outputDir">, code: string) {
  const out = await mkdtemp(join(tmpdir(), "aq-soak-refused-"));
  try {
    const started = performance.now();
    let error: unknown;
    try {
      await sandbox.run({ image: BUSYBOX, outputs: ["/output"], ...qube, outputDir: out });
    } catch (caught) {
      error = caught;
    }
    expect(error, `${code}: must be refused`).to.be.instanceOf(AirqubeError);
    expect((error as AirqubeError).code, String(error)).to.equal(code);
    expect(await readdir(out), `${code}: nothing may be left behind`).to.deep.equal([]);
    return { error: error as AirqubeError, ms: performance.now() - started };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** One qube per output cap, with the error it must give. */
const REFUSALS: { name: string; code: string; script: string; limits?: Partial<SandboxLimits> }[] = [
  {
    name: "10 000 files",
    code: "OUTPUT_TOO_MANY_FILES",
    script: "i=0; while [ $i -lt 10000 ]; do : > /output/f$i; i=$((i + 1)); done",
  },
  {
    name: "a file over the per-file cap",
    code: "OUTPUT_FILE_TOO_LARGE",
    script: "head -c 2097152 /dev/zero > /output/a; echo small > /output/b",
    limits: { output: { maxFiles: 1000, maxFileBytes: MiB, maxTotalBytes: 8 * MiB } },
  },
  {
    name: "files over the total cap",
    code: "OUTPUT_TOO_LARGE",
    script: "for f in a b c; do head -c 1048576 /dev/zero > /output/$f; done",
    limits: { output: { maxFiles: 1000, maxFileBytes: 2 * MiB, maxTotalBytes: 2 * MiB } },
  },
  {
    name: "a path over 1024 bytes",
    code: "OUTPUT_PATH_TOO_LONG",
    script: `d=/output; for i in 1 2 3 4 5 6; do d=$d/$(printf 'x%.0s' $(seq 1 200)); done; mkdir -p $d; echo x > $d/f`,
  },
  {
    name: "a tree 40 levels deep",
    code: "OUTPUT_TOO_DEEP",
    script: "d=/output; for i in $(seq 1 40); do d=$d/d; done; mkdir -p $d; echo x > $d/f",
  },
  {
    name: "a symlink",
    code: "OUTPUT_UNSUPPORTED_TYPE",
    script: "echo x > /output/a; ln -s /etc/passwd /output/link",
  },
  {
    name: "a name with a backslash",
    code: "OUTPUT_BAD_NAME",
    script: "echo x > /output/a; echo y > '/output/b\\c'",
  },
  {
    name: "a FIFO",
    code: "OUTPUT_UNSUPPORTED_TYPE",
    script: "echo x > /output/a; mkfifo /output/pipe",
  },
];

describe("sandbox soak: outputs of every size and count arrive intact under load @docker", function () {
  // about 2-3 minutes on an idle 2-core machine; the bound leaves room for a loaded one
  this.timeout(600_000);
  const docker = new Docker();
  const sandbox = new ContainerSandbox({ docker });
  let hog: ChildProcess | undefined;

  before(async () => {
    await docker.getImage(BUSYBOX).inspect(); // `npm run images` builds it
    hog = cpuHog(200_000);
  });

  after(async () => {
    hog?.kill("SIGKILL");
    await sandbox.close();
    expect(await ourContainers(docker), "no container may outlive its qube").to.deep.equal([]);
  });

  it("200 container runs, 0 to 64 MiB and 0 to 1000 files each, 4 at a time beside a CPU hog: zero losses", async () => {
    const plans = makePlans(CONTAINER_RUNS, 64 * MiB, MAX_FILES, 12);
    const limits: Partial<SandboxLimits> = {
      scratchBytes: 80 * MiB,
      memoryBytes: 256 * MiB,
      wallTimeMs: 120_000,
    };
    const totals = await soak(sandbox, plans, 4, limits);
    expect(totals.runs).to.equal(CONTAINER_RUNS);
    console.log(`      container soak: ${JSON.stringify(totals)}`);
  });

  for (const refusal of REFUSALS) {
    it(`refuses ${refusal.name} with ${refusal.code} and leaves nothing behind`, async () => {
      await expectRefused(
        sandbox,
        { command: ["sh", "-c", refusal.script], ...(refusal.limits ? { limits: refusal.limits } : {}) },
        refusal.code,
      );
    });
  }

  it("refuses a sparse 7 GiB file up front, long before the deadline", async () => {
    const { error, ms } = await expectRefused(
      sandbox,
      { command: ["sh", "-c", "truncate -s 7G /output/x"], limits: { wallTimeMs: 60_000 } },
      "OUTPUT_FILE_TOO_LARGE",
    );
    expect(error.details).to.contain("/output/x");
    expect(ms).to.be.below(20_000);
  });

  it("keeps a file the qube made unreadable (never skipped)", async () => {
    const out = await mkdtemp(join(tmpdir(), "aq-soak-"));
    try {
      const result = await sandbox.run({
        image: BUSYBOX,
        command: ["sh", "-c", "echo secret > /output/a; chmod 000 /output/a; echo w > /output/b; chmod 200 /output/b"],
        outputs: ["/output"],
        outputDir: out,
      });
      expect(result.outputs.map((file) => [file.path, file.size])).to.deep.equal([
        ["output/a", 7],
        ["output/b", 2],
      ]);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

describe("sandbox soak on the micro-VM tier @qemu @docker", function () {
  this.timeout(240_000);
  const docker = new Docker();
  let vms: MicroVmSandbox;
  let containers: ContainerSandbox;
  let hog: ChildProcess | undefined;

  before(async () => {
    await docker.getImage(BUSYBOX).inspect();
    vms = new MicroVmSandbox({ docker, accel: "tcg" });
    containers = new ContainerSandbox({ docker });
    hog = cpuHog(200_000);
  });

  after(async () => {
    hog?.kill("SIGKILL");
    await vms?.close();
    await containers?.close();
    for (const vm of vms?.stats.vms ?? []) {
      let alive = true;
      try {
        process.kill(vm.pid ?? -1, 0);
      } catch {
        alive = false;
      }
      expect(alive, `QEMU ${vm.pid} must be gone`).to.equal(false);
    }
  });

  it(`${VM_RUNS} micro-VM runs, 0 to 64 MiB and 0 to ${MAX_FILES} files each (the limits), 2 at a time beside a CPU hog: zero losses`, async () => {
    // The channel is a virtio-serial port (tens of MB/s under TCG): sizes go up to the per-file cap (64 MiB, in
    // one file for the edge run). Fewer runs than on the container tier: each boots a TCG guest (a few seconds).
    const plans = makePlans(VM_RUNS, 64 * MiB, MAX_FILES, 34);
    expect(Math.max(...plans.map((plan) => plan.big.reduce((sum, size) => sum + size, 0)))).to.equal(64 * MiB);
    const totals = await soak(vms, plans, 2, {
      wallTimeMs: 120_000,
      scratchBytes: 80 * MiB, // the outputs live in a tmpfs of this size
    });
    expect(totals.runs).to.equal(VM_RUNS);
    console.log(`      micro-VM soak: ${JSON.stringify(totals)}`);
  });

  it("gives the same outputs root as the container tier for the same qube (deep, long names, odd files)", async () => {
    const qube = [
      "d=/output; for i in $(seq 1 24); do d=$d/level$i; done; mkdir -p $d; echo deep > $d/f",
      "long=$(printf 'n%.0s' $(seq 1 200)); mkdir -p /output/$long/$long; echo long > /output/$long/$long/$long",
      "mkdir /output/empty; : > /output/zero; echo locked > /output/locked; chmod 000 /output/locked",
      "echo w > /output/writeonly; chmod 200 /output/writeonly; mkdir /output/shut; echo in > /output/shut/f; chmod 000 /output/shut",
      "(while :; do echo bg; sleep 0.1; done) & echo main", // a background writer must not keep either alive
    ].join("; ");
    const outs = [await mkdtemp(join(tmpdir(), "aq-soak-vm-")), await mkdtemp(join(tmpdir(), "aq-soak-ct-"))];
    try {
      const [vm, container] = await Promise.all(
        [vms, containers].map((sandbox, k) =>
          sandbox.run({ image: BUSYBOX, command: ["sh", "-c", qube], outputs: ["/output"], outputDir: outs[k]! }),
        ),
      );
      expect(vm!.exitCode).to.equal(0);
      expect(vm!.outputs.length).to.equal(6);
      expect(vm!.outputs).to.deep.equal(container!.outputs);
      const trees = await Promise.all(
        outs.map(async (dir) => (await readdir(dir, { recursive: true })).map(String).sort()),
      );
      expect(trees[0]).to.deep.equal(trees[1]);
      expect(trees[0]).to.include("output/empty");
    } finally {
      await Promise.all(outs.map((dir) => rm(dir, { recursive: true, force: true })));
    }
  });

  for (const refusal of REFUSALS) {
    it(`refuses ${refusal.name} with ${refusal.code} and leaves nothing behind`, async () => {
      await expectRefused(
        vms,
        { command: ["sh", "-c", refusal.script], ...(refusal.limits ? { limits: refusal.limits } : {}) },
        refusal.code,
      );
    });
  }

  it("refuses a sparse 7 GiB file up front, long before the deadline", async () => {
    const { ms } = await expectRefused(
      vms,
      { command: ["sh", "-c", "truncate -s 7G /output/x"], limits: { wallTimeMs: 60_000 } },
      "OUTPUT_FILE_TOO_LARGE",
    );
    expect(ms).to.be.below(40_000);
  });
});
