import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { expect } from "chai";
import Docker from "dockerode";
import { ImageCache } from "../../src/images/image-cache.js";
import { providerImagesConfigSchema } from "../../src/images/limits.js";
import { MicroVmSandbox } from "../../src/sandbox/microvm-sandbox.js";
import { tmp } from "../helpers/network.js";
import type { FixtureArchive } from "./archive-fixtures.js";
import { busyboxWithMarker, type LoopbackRegistry, pushToRegistry, startRegistry } from "./registry-fixture.js";

const root = join(import.meta.dirname, "..", "..");

/**
 * The micro-VM tier runs shipped and pulled images like the container tier: the provider's image cache checks
 * and loads them, and the agent hands the sandbox the image id (src/provider/agent.ts), which the micro-VM
 * tier turns into an initramfs cached under that same id. One VM run per case (TCG here: slow).
 */
describe("images: shipped and pulled images on the micro-VM tier @qemu @docker", function () {
  this.timeout(180_000);
  const docker = new Docker();
  const stamp = `${process.pid}-${Date.now()}`;
  let registry: LoopbackRegistry;
  let sandbox: MicroVmSandbox;
  let cache: ImageCache;
  let vmCache: string;
  const fixtures: FixtureArchive[] = [];

  before(async () => {
    execFileSync("bash", [join(root, "scripts", "build-vm.sh")], { stdio: "ignore" });
    registry = await startRegistry();
    cache = new ImageCache(
      tmp("aq-vm-images-"),
      docker,
      providerImagesConfigSchema.parse({ registries: [registry.url] }),
    );
    vmCache = tmp("aq-vm-initrd-");
    sandbox = new MicroVmSandbox({ docker, accel: "tcg", cacheDir: vmCache });
  });
  after(async () => {
    await sandbox?.close();
    registry?.stop();
    for (const fixture of fixtures)
      await docker
        .getImage(fixture.imageId)
        .remove({ force: true })
        .catch(() => undefined);
  });

  /** Runs `cat /marker` in a VM of `imageId`, as the agent does (image and imageDigest both the id). */
  async function runInVm(imageId: string): Promise<string> {
    const t0 = Date.now();
    const result = await sandbox.run({
      image: imageId,
      imageDigest: imageId,
      command: ["cat", "/marker"],
      limits: { wallTimeMs: 60_000, memoryBytes: 128 * 1024 * 1024 },
    });
    console.log(`      one micro-VM run (initramfs made from the image, TCG boot): ${Date.now() - t0} ms`);
    expect(result.tier).to.equal("microvm");
    expect(result.exitCode, result.stderr).to.equal(0);
    // the initramfs cache is keyed by the same image id the spec names
    const hex = imageId.slice("sha256:".length);
    expect(
      readdirSync(vmCache).filter((name) => name.startsWith(`${hex}-`) && name.endsWith(".cpio.gz")),
    ).to.have.length(1);
    return result.stdout;
  }

  it("a shipped image: checked and loaded by the image cache, then run in a micro-VM", async () => {
    const marker = `shipped ${stamp}`;
    const fixture = await busyboxWithMarker(docker, marker);
    fixtures.push(fixture);
    const image = { ref: "airqube/shipped:latest", digest: fixture.imageId, archiveDigest: fixture.archiveDigest };
    expect(await cache.plan(image)).to.deep.equal({ kind: "ship" });
    await cache.install(
      { imageId: fixture.imageId, archiveDigest: fixture.archiveDigest },
      Readable.from([fixture.archive]),
    );
    expect(await cache.plan(image)).to.deep.equal({ kind: "present" });
    expect(await runInVm(fixture.imageId)).to.equal(marker);
  });

  it("a pulled image: fetched by digest from the allowlisted loopback registry, then run in a micro-VM", async () => {
    const marker = `pulled ${stamp}`;
    const fixture = await busyboxWithMarker(docker, marker);
    fixtures.push(fixture);
    const ref = `${registry.host}/aq/vm@${await pushToRegistry(docker, registry, fixture, "aq/vm")}`;
    const plan = await cache.plan({ ref, digest: fixture.imageId });
    expect(plan).to.deep.equal({ kind: "pull", ref });
    await cache.pull({ ref, digest: fixture.imageId });
    expect(await runInVm(fixture.imageId)).to.equal(marker);
  });
});
