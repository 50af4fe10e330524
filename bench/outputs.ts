/**
 * `npm run bench:outputs -- [--json] [--runs N] [--sizes 1m,64m,1g,10000f]`: how fast declared outputs leave
 * a container qube (init's walker and pax writer, the framed channel, the host parser, the safe unpacker onto
 * disk), against a raw `docker cp` of the same data out of a stopped container, in the same run.
 *
 * Per size, interleaved `--runs` times (default 3), medians kept:
 *  - with: ContainerSandbox.run of a qube that writes the data to /output, declared as output;
 *  - without: the same qube with no declared output (same generation, no transfer);
 *  - raw: `docker run` (untimed) writing the same data into the container's own layer, then `docker cp` of it
 *    from the stopped container into a fresh host directory (timed).
 * `ms` = median(with) - median(without): the cost of moving the outputs. `rawCopyMs` is docker cp's.
 * Prints `{ sizes: [{ label, bytes, files, ms, mbPerS, rawCopyMs, rawCopyMbPerS, ratioToDockerCp }],
 * rawCopyMbPerS }` (the top-level rawCopyMbPerS is the largest single file's). Goal: ratio >= 0.5 for large files.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SandboxLimits } from "../src/sandbox/api.js";
import { ContainerSandbox } from "../src/sandbox/container-sandbox.js";
import { argValue, median, round, wantsJson } from "./stats.js";

const MiB = 1024 * 1024;
const image = "airqube/busybox:latest";
const runs = argValue("--runs", 3);
const log = (text: string) => {
  if (!wantsJson) process.stderr.write(`${text}\n`);
};

interface Case {
  label: string;
  bytes: number;
  files: number;
  /** Shell that writes the data under $D. */
  script: string;
}

const single = (label: string, bytes: number): Case => ({
  label,
  bytes,
  files: 1,
  script: `head -c ${bytes} /dev/zero > $D/a.bin`,
});
const ALL: Record<string, Case> = {
  "1m": single("1 MiB", MiB),
  "64m": single("64 MiB", 64 * MiB),
  "1g": single("1 GiB", 1024 * MiB),
  "10000f": {
    label: "10 000 files of 1 KiB",
    bytes: 10_000 * 1024,
    files: 10_000,
    script: [
      "s=$(head -c 1024 /dev/zero | tr '\\0' a)",
      "for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p $D/d$d; done",
      `i=0; while [ $i -lt 10000 ]; do printf '%s' "$s" > $D/d$((i % 10))/f$i; i=$((i + 1)); done`,
    ].join("; "),
  },
};
const chosen = (
  process.argv.includes("--sizes") ? process.argv[process.argv.indexOf("--sizes") + 1]! : "1m,64m,1g,10000f"
)
  .split(",")
  .map((key) => {
    const found = ALL[key];
    if (!found) throw new Error(`bench: unknown size ${key} (one of ${Object.keys(ALL).join(", ")})`);
    return found;
  });

/** Limits big enough for the case: the tmpfs holding the data counts against the qube's memory. */
function limitsFor(c: Case): Partial<SandboxLimits> {
  const room = c.bytes + c.files * 4096 + 64 * MiB;
  return {
    scratchBytes: room,
    memoryBytes: room + 256 * MiB,
    wallTimeMs: 300_000,
    output: { maxFiles: c.files, maxFileBytes: Math.max(c.bytes, MiB), maxTotalBytes: c.bytes + MiB },
  };
}

const sandbox = new ContainerSandbox();

async function timedRun(c: Case, withOutputs: boolean): Promise<number> {
  const out = await mkdtemp(join(tmpdir(), "aq-bench-out-"));
  try {
    const started = performance.now();
    const result = await sandbox.run({
      image,
      command: ["sh", "-c", `D=/output; ${c.script}`],
      limits: limitsFor(c),
      ...(withOutputs ? { outputs: ["/output"], outputDir: out } : {}),
    });
    const ms = performance.now() - started;
    if (result.exitCode !== 0) throw new Error(`bench: qube failed (${result.exitCode}): ${result.stderr}`);
    if (withOutputs) {
      const bytes = result.outputs.reduce((sum, file) => sum + file.size, 0);
      if (result.outputs.length !== c.files || bytes !== c.bytes)
        throw new Error(`bench: ${c.label}: got ${result.outputs.length} files, ${bytes} bytes`);
    }
    return ms;
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** docker cp of the same data out of a stopped container (the data in its own layer), timed. */
async function rawCopy(c: Case): Promise<number> {
  const name = `aq-bench-cp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const dest = await mkdtemp(join(tmpdir(), "aq-bench-cp-"));
  try {
    execFileSync("docker", [
      "run",
      "--name",
      name,
      "--network",
      "none",
      image,
      "sh",
      "-c",
      `D=/data; mkdir $D; ${c.script}`,
    ]);
    const started = performance.now();
    execFileSync("docker", ["cp", `${name}:/data`, dest]);
    return performance.now() - started;
  } finally {
    execFileSync("docker", ["rm", "-f", name], { stdio: "ignore" });
    await rm(dest, { recursive: true, force: true });
  }
}

const mbPerS = (bytes: number, ms: number) => round(bytes / MiB / (Math.max(ms, 1) / 1000));
const sizes = [];
try {
  await timedRun(ALL["1m"]!, true); // warm-up, not counted
  for (const c of chosen) {
    const withMs: number[] = [];
    const withoutMs: number[] = [];
    const rawMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      withMs.push(await timedRun(c, true));
      withoutMs.push(await timedRun(c, false));
      rawMs.push(await rawCopy(c));
      log(`${c.label}: run ${i + 1}/${runs}`);
    }
    const ms = Math.max(1, median(withMs) - median(withoutMs));
    const rawCopyMs = median(rawMs);
    sizes.push({
      label: c.label,
      bytes: c.bytes,
      files: c.files,
      ms: round(ms),
      mbPerS: mbPerS(c.bytes, ms),
      totalMs: round(median(withMs)),
      rawCopyMs: round(rawCopyMs),
      rawCopyMbPerS: mbPerS(c.bytes, rawCopyMs),
      ratioToDockerCp: round(mbPerS(c.bytes, ms) / mbPerS(c.bytes, rawCopyMs), 3),
    });
  }
} finally {
  await sandbox.close();
}
const largest = sizes.filter((s) => s.files === 1).sort((a, b) => b.bytes - a.bytes)[0];
console.log(JSON.stringify({ runs, sizes, rawCopyMbPerS: largest?.rawCopyMbPerS ?? null }));
