/**
 * Shared fixtures of the output soak (soak.test.ts: container tier; soak-microvm.test.ts: micro-VM tier):
 * deterministic plans of outputs, the script that writes them inside the qube, what the host expects, a CPU
 * hog, a bounded pool, and the cap-breaking cases.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { expect } from "chai";
import { AirqubeError } from "../../src/qube/errors.js";
import { seededRandom } from "../../src/requestor/simulate.js";
import type { QubeRun, Sandbox, SandboxLimits, SandboxOutput, SandboxResult } from "../../src/sandbox/api.js";
import { DEFAULT_SANDBOX_LIMITS } from "../../src/sandbox/api.js";
import { BUSYBOX } from "../helpers/docker.js";

export const MiB = 1024 * 1024;
export const MAX_FILES = DEFAULT_SANDBOX_LIMITS.output.maxFiles;
/** Lines in the seeded block that big files repeat (`seq SEED SEED+BLOCK_LINES-1`, about 1 MB). */
export const BLOCK_LINES = 120_000;
/** Container runs (200; fewer for a quick local look with AIRQUBE_SOAK_RUNS, never in CI). */
export const CONTAINER_RUNS = Number(process.env.AIRQUBE_SOAK_RUNS ?? 200);
/**
 * Micro-VM runs: 14 (the issue allows fewer than 200 on a slow tier: each boots a TCG guest), which still holds
 * every edge plan of `makePlans` (no output, 64 MiB in one file, the file limit twice, no small file); fewer
 * with AIRQUBE_SOAK_VM_RUNS for a quick local look.
 */
export const VM_RUNS = Number(process.env.AIRQUBE_SOAK_VM_RUNS ?? 14);

/** One run's outputs: big files made of the seeded block, small files of one seeded line each. */
export interface Plan {
  seed: number;
  big: number[];
  small: number;
}

/**
 * `count` plans with total sizes from 0 to `maxBytes` (log-uniform, with the two ends always present) and file
 * counts from 0 to the file limit (the limit itself always present).
 */
export function makePlans(count: number, maxBytes: number, maxFiles: number, seed: number): Plan[] {
  // mulberry32 (seeded), so that a failing run can be replayed from its seed
  const random = seededRandom(seed);
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
export function script(plan: Plan): string {
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

export const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** What the qube must produce for a plan, computed on the host. */
export function expected(plan: Plan): SandboxOutput[] {
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

export async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Every regular file under `dir`, relative and sorted. */
export async function filesOnDisk(dir: string): Promise<string[]> {
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
export async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
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
export function cpuHog(ms: number): ChildProcess {
  return spawn(process.execPath, ["-e", `const end = Date.now() + ${ms}; while (Date.now() < end) {}`], {
    stdio: "ignore",
  });
}

export interface Soaked {
  runs: number;
  files: number;
  bytes: number;
  ms: number;
}

/** Runs every plan, checks every byte, and returns the totals. */
export async function soak(
  sandbox: Sandbox,
  plans: Plan[],
  width: number,
  limits: Partial<SandboxLimits>,
): Promise<Soaked> {
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
export async function expectRefused(sandbox: Sandbox, qube: Omit<QubeRun, "image" | "outputDir">, code: string) {
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
export const REFUSALS: { name: string; code: string; script: string; limits?: Partial<SandboxLimits> }[] = [
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
