/**
 * Soak: real-sized outputs through both sandbox tiers, many runs at once, with a CPU hog beside them. Every
 * run generates its outputs deterministically inside the qube (from a seed, with busybox tools), and the host
 * computes what they must be on its own: every file's size and SHA-256, and every byte on disk, are compared.
 * Zero losses allowed. Then every output cap is broken once: each gives its own typed error and leaves nothing
 * in the output directory.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import type { SandboxLimits } from "../../src/sandbox/api.js";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { BUSYBOX, ourContainers } from "../helpers/docker.js";
import { CONTAINER_RUNS, cpuHog, expectRefused, MAX_FILES, MiB, makePlans, REFUSALS, soak } from "./soak-fixtures.js";

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
