/**
 * Soak on the micro-VM tier (the container tier's is soak.test.ts, with which it runs side by side): real-sized
 * outputs, two VMs at a time beside a CPU hog, every byte compared; the same outputs root as the container tier
 * for the same qube; every cap broken once with its own typed error and nothing left behind.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { MicroVmSandbox } from "../../src/sandbox/microvm-sandbox.js";
import { BUSYBOX } from "../helpers/docker.js";
import { cpuHog, expectRefused, MAX_FILES, MiB, makePlans, REFUSALS, soak, VM_RUNS } from "./soak-fixtures.js";

describe("sandbox soak on the micro-VM tier @qemu @docker", function () {
  // 14 runs take about 2 minutes on an idle 2-core machine (20 took 3 to 4 beside the container soak, and one
  // CI run on a loaded machine went past 4): the bound leaves room for a loaded one
  this.timeout(600_000);
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
