/**
 * `npm run bench:sandbox -- --json [--runs N]`: a trivial qube (`true`) through ContainerSandbox against
 * `docker run --rm` with the same hardening flags, interleaved in one run, so the ratio is measured on the
 * same machine under the same load. A third arm runs the same qube through a ContainerSandbox with a warm pool
 * of one container (created and started ahead of need, its init waiting for the qube on stdin); the pool is
 * refilled between runs, outside the timed section, so warmMedianMs is request -> `true` done (time to first
 * instruction plus exit, report and removal) when a warm container is ready.
 * When the engine has gVisor's runtime (runsc), a fourth and fifth arm run the gvisor tier and raw
 * `docker run --runtime runsc` with the same flags (the gvisor tier's pids room included): gvisorMs and
 * gvisorRatio (gVisor cold / raw runsc), gvisorRawMs.
 * Prints { runs, airqubeMedianMs, rawDockerMedianMs, ratio, warmMedianMs, warmRatio, gvisorMs, gvisorRawMs, gvisorRatio }.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_SANDBOX_LIMITS } from "../src/sandbox/api.js";
import { ContainerSandbox } from "../src/sandbox/container-sandbox.js";
import { GVISOR_BASE_PIDS, GVISOR_PIDS_PER_TASK, GVISOR_RUNTIME } from "../src/sandbox/hardening.js";
import { seccompProfile } from "../src/sandbox/seccomp.js";
import { argValue, median, round, wantsJson } from "./stats.js";

const runs = argValue("--runs", 20);
const image = "airqube/busybox:latest";
const profile = join(mkdtempSync(join(tmpdir(), "aq-bench-")), "seccomp.json");
writeFileSync(profile, JSON.stringify(seccompProfile()));
const limits = DEFAULT_SANDBOX_LIMITS;
const scratch = `rw,noexec,nosuid,nodev,size=${limits.scratchBytes},mode=1777,uid=65534,gid=65534`;
// The same flags hardenedContainerConfig sets, spelled as docker run options.
const rawArgs = [
  "run",
  "--rm",
  "--network",
  "none",
  "--read-only",
  "--cap-drop",
  "ALL",
  "--security-opt",
  "no-new-privileges:true",
  "--security-opt",
  `seccomp=${profile}`,
  "--pids-limit",
  String(limits.pids),
  "--memory",
  String(limits.memoryBytes),
  "--memory-swap",
  String(limits.memoryBytes),
  "--cpus",
  String(limits.cpus),
  "--ulimit",
  "nofile=1024:1024",
  "--ulimit",
  "core=0:0",
  "--tmpfs",
  `/scratch:${scratch}`,
  "--tmpfs",
  `/output:${scratch}`,
  "--tmpfs",
  `/tmp:${scratch}`,
  "--ipc",
  "private",
  "--cgroupns",
  "private",
  "--log-driver",
  "none",
  "--user",
  "65534:65534",
  image,
  "true",
];
// The gvisor tier's flags: the same, under runsc, with the host pids room gvisorContainerConfig gives the Sentry
// and the qube's own count as RLIMIT_NPROC.
const gvisorPids = GVISOR_BASE_PIDS + GVISOR_PIDS_PER_TASK * limits.pids;
const rawGvisorArgs = rawArgs.flatMap((arg, i) =>
  arg === "run" && i === 0
    ? ["run", "--runtime", GVISOR_RUNTIME, "--ulimit", `nproc=${limits.pids}:${limits.pids}`]
    : rawArgs[i - 1] === "--pids-limit"
      ? [String(gvisorPids)]
      : [arg],
);
const info = JSON.parse(execFileSync("docker", ["info", "--format", "{{json .Runtimes}}"], { encoding: "utf8" }));
const haveGvisor = Object.keys(info ?? {}).includes(GVISOR_RUNTIME);

const sandbox = new ContainerSandbox();
const gvisorSandbox = new ContainerSandbox({ tier: "gvisor" });
const gvisor: number[] = [];
const rawGvisor: number[] = [];
const warmSandbox = new ContainerSandbox({ warm: { image, count: 1 } });
const ours: number[] = [];
const raw: number[] = [];
const warm: number[] = [];
// one warm-up of each, not counted
await sandbox.run({ image, command: ["true"] });
execFileSync("docker", rawArgs);
await warmSandbox.warm();
await warmSandbox.run({ image, command: ["true"] });
if (haveGvisor) {
  await gvisorSandbox.run({ image, command: ["true"] });
  execFileSync("docker", rawGvisorArgs);
}
for (let i = 0; i < runs; i++) {
  await warmSandbox.warm(); // the replacement of the last run's container, untimed
  const w = performance.now();
  await warmSandbox.run({ image, command: ["true"] });
  warm.push(performance.now() - w);
  let t = performance.now();
  await sandbox.run({ image, command: ["true"] });
  ours.push(performance.now() - t);
  t = performance.now();
  execFileSync("docker", rawArgs);
  raw.push(performance.now() - t);
  if (haveGvisor) {
    t = performance.now();
    await gvisorSandbox.run({ image, command: ["true"] });
    gvisor.push(performance.now() - t);
    t = performance.now();
    execFileSync("docker", rawGvisorArgs);
    rawGvisor.push(performance.now() - t);
  }
  if (!wantsJson) process.stderr.write(`\r${i + 1}/${runs}`);
}
await warmSandbox.close();
if (warmSandbox.stats.coldRuns > 0) throw new Error("bench: a warm-arm run started cold");
const result = {
  runs,
  airqubeMedianMs: round(median(ours)),
  rawDockerMedianMs: round(median(raw)),
  ratio: round(median(ours) / median(raw), 3),
  warmMedianMs: round(median(warm)),
  warmRatio: round(median(warm) / median(raw), 3),
  ...(haveGvisor
    ? {
        gvisorMs: round(median(gvisor)),
        gvisorRawMs: round(median(rawGvisor)),
        gvisorRatio: round(median(gvisor) / median(rawGvisor), 3),
      }
    : { gvisorMs: null, gvisorRawMs: null, gvisorRatio: null, gvisorNote: "runsc is not registered with the engine" }),
};
if (!wantsJson) process.stderr.write("\n");
console.log(JSON.stringify(result));
