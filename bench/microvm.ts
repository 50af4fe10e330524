/**
 * `npm run bench:microvm -- [--json] [--runs N] [--accel auto|kvm|tcg]`
 *
 * Interleaves, in one run:
 *  - cold: a trivial qube (`echo hi`) through `MicroVmSandbox.run` (boot, hello, qube, report, destroy);
 *  - raw: `qemu-system-x86_64` booting the same kernel with a minimal busybox initramfs whose /init runs the
 *    same command and powers off (the ENVIRONMENT.md command line, same TSC parameters), spawn to exit;
 * then, with a preload pool of one VM, the time from `run` being called to the qube's first stdout bytes.
 * Prints `{ coldMedianMs, rawQemuMedianMs, coldRatio, preloadedMedianMs, accel, ... }`.
 *
 * `npm run bench:microvm -- --throughput [--json] [--accel ...]` measures the channel instead: one qube writes
 * 64 MiB in one file, one 256 MiB in four files (the default per-file and total output caps), and the host
 * times each run (`ms`), the part after the qube's "written" line (`transferMs`: archive, virtio ring, pipe,
 * parser, unpacker, SHA-256), and checks every byte (the files are a repeated pattern the host recomputes).
 * `guestCopyMbPerS` is the guest's own pipe copy rate (`dd` of /dev/zero through a pipe), the ceiling that TCG
 * sets; `emptyRunMs` is a run of `true` (boot, qube, report, destroy). `--sizes 1x64,4x64` (files x MiB) picks
 * the outputs. Prints `{ sizes: [{ bytes, files, ms, transferMs, mbPerS, transferMbPerS }], emptyRunMs,
 * guestCopyMbPerS }`.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { AccelChoice } from "../src/sandbox/microvm/accel.js";
import { buildCpio } from "../src/sandbox/microvm/cpio.js";
import { kernelCmdline } from "../src/sandbox/microvm/qemu-args.js";
import { hostTscKhz } from "../src/sandbox/microvm/vm.js";
import { defaultKernel, MicroVmSandbox } from "../src/sandbox/microvm-sandbox.js";

const argv = process.argv.slice(2);
const json = argv.includes("--json");
const flag = (name: string): string | undefined => {
  const index = argv.indexOf(name);
  return index >= 0 ? argv[index + 1] : undefined;
};
const runs = Number(flag("--runs") ?? 5);
const accelChoice = (flag("--accel") ?? "auto") as AccelChoice;
const IMAGE = "airqube/busybox:latest";
const log = (text: string) => {
  if (!json) process.stderr.write(`${text}\n`);
};

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function rawInitrd(dir: string): Promise<string> {
  const busybox = readFileSync("/bin/busybox");
  const script = "#!/bin/busybox sh\n/bin/busybox echo hi\n/bin/busybox poweroff -f\n";
  const path = join(dir, "raw.cpio.gz");
  await writeFile(
    path,
    gzipSync(
      buildCpio([
        { type: "directory", path: "bin", mode: 0o755 },
        { type: "file", path: "bin/busybox", mode: 0o755, data: busybox },
        { type: "file", path: "init", mode: 0o755, data: Buffer.from(script) },
      ]),
    ),
  );
  return path;
}

function rawBoot(kernel: string, initrd: string, accel: string, tscKhz: number | undefined): Promise<number> {
  const started = performance.now();
  const child = spawn(
    "qemu-system-x86_64",
    [
      ...["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on", "-accel", accel, "-m", "256"],
      ...["-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot"],
      ...["-kernel", kernel, "-initrd", initrd, "-append", kernelCmdline(tscKhz)],
    ],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  let out = "";
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("close", () => {
      clearTimeout(timer);
      if (!out.includes("hi")) reject(new Error(`raw boot did not run the command: ${out.slice(-300)}`));
      else resolve(performance.now() - started);
    });
  });
}

const MiB = 1024 * 1024;

/** The content of output file `index`: 4 KiB blocks of one byte value (cheap to make under TCG, easy to check). */
function expectedSha(index: number, bytes: number): string {
  const block = Buffer.alloc(bytes, 65 + index);
  return createHash("sha256").update(block).digest("hex");
}

/** `--sizes 1x64,4x64`: files x MiB each (whole MiB). */
const plan = (flag("--sizes") ?? "1x64,4x64").split(",").map((item) => {
  const [files, mib] = item.split("x").map(Number);
  if (!Number.isInteger(files) || !Number.isInteger(mib) || files! < 1 || mib! < 1)
    throw new Error(`--sizes wants FILESxMIB,...: ${item}`);
  return [files!, mib! * MiB] as const;
});

async function throughput(): Promise<void> {
  const sandbox = new MicroVmSandbox({ accel: accelChoice });
  const decision = await sandbox.accel();
  log(`accel: ${decision.accel} (${decision.reason})`);
  const limits = {
    memoryBytes: 640 * MiB, // tmpfs pages of /output are charged to the qube's cgroup
    scratchBytes: 300 * MiB,
    wallTimeMs: 600_000,
  };
  const sizes: {
    bytes: number;
    files: number;
    ms: number;
    transferMs: number;
    mbPerS: number;
    transferMbPerS: number;
  }[] = [];
  try {
    // warm-up (image conversion), the fixed cost of a run (boot, qube, report, destroy), and the guest's own
    // pipe copy rate (what the init's archive path does before the virtio ring)
    await sandbox.run({ image: IMAGE, command: ["true"], limits });
    const emptyStarted = performance.now();
    await sandbox.run({ image: IMAGE, command: ["true"], limits });
    const emptyRunMs = Math.round(performance.now() - emptyStarted);
    const copy = await sandbox.run({
      image: IMAGE,
      command: [
        "sh",
        "-c",
        "read s _ < /proc/uptime; dd if=/dev/zero bs=64k count=4096 2>/dev/null | cat > /dev/null; read e _ < /proc/uptime; echo $s $e",
      ],
      limits,
    });
    const [from, to] = copy.stdout.trim().split(" ").map(Number);
    const copySeconds = (to ?? 0) - (from ?? 0);
    const guestCopyMbPerS = copySeconds > 0 ? Number((256 / copySeconds).toFixed(1)) : undefined;
    log(`empty run: ${emptyRunMs} ms, guest pipe copy: ${guestCopyMbPerS} MB/s`);
    for (const [files, each] of plan) {
      const dir = await mkdtemp(join(tmpdir(), "airqube-bench-out-"));
      try {
        const make = Array.from(
          { length: files },
          (_, i) =>
            `printf '%4096s' '' | tr ' ' '\\${(65 + i).toString(8)}' > /scratch/b && ` +
            `i=0; while [ $i -lt ${each / 4096 / 256} ]; do cat /scratch/b; i=$((i+1)); done > /scratch/c && ` +
            `i=0; while [ $i -lt 256 ]; do cat /scratch/c; i=$((i+1)); done > /output/f${i}.bin && rm /scratch/c`,
        ).join(" && ");
        const started = performance.now();
        const result = await sandbox.run({
          image: IMAGE,
          command: ["sh", "-c", `${make} && echo written`],
          outputs: ["/output"],
          outputDir: dir,
          limits,
        });
        const ms = performance.now() - started;
        const firstOutput = sandbox.stats.firstOutputMs.at(-1) ?? 0;
        if (result.exitCode !== 0 || result.stdout !== "written\n")
          throw new Error(`throughput run failed: ${JSON.stringify({ ...result, outputs: result.outputs.length })}`);
        for (let i = 0; i < files; i++) {
          const file = result.outputs.find((output) => output.path === `output/f${i}.bin`);
          if (!file || file.size !== each || file.sha256 !== expectedSha(i, each))
            throw new Error(`output f${i}.bin is not intact: ${JSON.stringify(file)}`);
        }
        const bytes = files * each;
        const transferMs = ms - firstOutput;
        sizes.push({
          bytes,
          files,
          ms: Math.round(ms),
          transferMs: Math.round(transferMs),
          mbPerS: Number((bytes / MiB / (ms / 1000)).toFixed(1)),
          transferMbPerS: Number((bytes / MiB / (transferMs / 1000)).toFixed(1)),
        });
        log(`${files} x ${each / MiB} MiB: ${JSON.stringify(sizes.at(-1))}`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
    const report = { sizes, emptyRunMs, guestCopyMbPerS, accel: decision.accel, accelReason: decision.reason };
    process.stdout.write(`${JSON.stringify(report, null, json ? 0 : 2)}\n`);
  } finally {
    await sandbox.close();
  }
}

if (argv.includes("--throughput")) {
  await throughput();
  process.exit(0);
}

const kernel = await defaultKernel();
const dir = await mkdtemp(join(tmpdir(), "airqube-bench-"));
const cold = new MicroVmSandbox({ accel: accelChoice });
const decision = await cold.accel();
log(`accel: ${decision.accel} (${decision.reason})`);
const tscKhz = await hostTscKhz();
try {
  const raw = await rawInitrd(dir);
  const qube = { image: IMAGE, command: ["echo", "hi"] };
  // warm-up (image conversion, page cache), not measured
  await cold.run(qube);
  await rawBoot(kernel, raw, decision.accel, tscKhz);
  const coldMs: number[] = [];
  const rawMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await rawBoot(kernel, raw, decision.accel, tscKhz);
    rawMs.push(r);
    const started = performance.now();
    const result = await cold.run(qube);
    if (result.stdout !== "hi\n") throw new Error(`cold run failed: ${JSON.stringify(result)}`);
    coldMs.push(performance.now() - started);
    log(`run ${i + 1}: raw ${r.toFixed(0)} ms, cold ${coldMs.at(-1)!.toFixed(0)} ms`);
  }

  const pooled = new MicroVmSandbox({ accel: decision.accel, preload: { image: IMAGE, count: 1 } });
  try {
    for (let i = 0; i < runs; i++) {
      await pooled.warm();
      const result = await pooled.run(qube);
      if (result.stdout !== "hi\n") throw new Error(`preloaded run failed: ${JSON.stringify(result)}`);
      log(`preloaded ${i + 1}: first output after ${pooled.stats.firstOutputMs.at(-1)!.toFixed(1)} ms`);
    }
    const preloadedRuns = pooled.stats.preloadedRuns;
    const coldMedianMs = Math.round(median(coldMs));
    const rawQemuMedianMs = Math.round(median(rawMs));
    const report = {
      coldMedianMs,
      rawQemuMedianMs,
      coldRatio: Number((coldMedianMs / rawQemuMedianMs).toFixed(3)),
      preloadedMedianMs: Number(median(pooled.stats.firstOutputMs).toFixed(1)),
      accel: decision.accel,
      accelReason: decision.reason,
      runs,
      preloadedRuns,
      goals: { coldRatio: 1.15, preloadedMs: 100 },
    };
    process.stdout.write(`${JSON.stringify(json ? report : report, null, json ? 0 : 2)}\n`);
  } finally {
    await pooled.close();
  }
} finally {
  await cold.close();
  await rm(dir, { recursive: true, force: true });
}
