import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import type { ShippableImage } from "../../src/images/ship.js";
import type { ProviderAgent } from "../../src/provider/agent.js";
import { sealQube } from "../../src/requestor/draft.js";
import { connectRequestor, startAgents, tmp } from "../helpers/network.js";

const ROOT = join(import.meta.dirname, "..", "..");
const PYTHON = "airqube/python:latest";

/** The archive `npm run images:debian` left in images/build/ (no tags, fixed metadata): shipped as is. */
function pythonArchive(): ShippableImage {
  const record = JSON.parse(readFileSync(join(ROOT, "images", "build", "debian-images.json"), "utf8")) as Record<
    string,
    { imageId: string; archiveDigest: string; archiveBytes: number }
  >;
  const built = record[PYTHON];
  if (!built) throw new Error("run `npm run images:debian` first");
  return { ...built, path: join(ROOT, "images", "build", "airqube_python.tar") };
}

describe("images: shipping an image to providers that lack it @docker", function () {
  this.timeout(240_000);
  const docker = new Docker();
  let agents: ProviderAgent[];
  let client: Awaited<ReturnType<typeof connectRequestor>>;
  let image: ShippableImage;
  const present = (id: string) =>
    docker
      .getImage(id)
      .inspect()
      .then((info) => info.Id === id)
      .catch(() => false);

  before(async () => {
    image = pythonArchive();
    // no provider has the image: remove it from the (shared) engine; put it back (and its tag) afterwards
    await docker
      .getImage(image.imageId)
      .remove({ force: true })
      .catch(() => undefined);
    expect(await present(image.imageId)).to.equal(false);
    const started = await startAgents(3);
    agents = started.agents;
    client = await connectRequestor(started.bootstrap);
  });
  after(async () => {
    await client?.close();
    for (const agent of agents ?? []) await agent.stop({ drainMs: 2000 });
    if (!(await present(image.imageId))) {
      const { loadCheckedArchive } = await import("../../src/images/load-archive.js");
      await loadCheckedArchive(docker, image.path, image);
    }
    await docker.getImage(image.imageId).tag({ repo: "airqube/python", tag: "latest" });
  });

  const pythonQube = (code: string) =>
    sealQube(
      {
        image: PYTHON,
        imageArchive: image,
        command: ["python3", "-c", code],
        outputs: ["result"],
        limits: { wallTimeMs: 60_000, memoryBytes: 128 << 20, scratchBytes: 16 << 20 },
        redundancy: { mode: "fixed", k: 3, quorum: 2 },
      },
      client.identity,
    );

  it("a Python qube with k = 3: each provider receives the sealed archive, checks and loads it, and they agree", async () => {
    const qube = await pythonQube(
      "import hashlib; open('/output/result','w').write(hashlib.sha256(b'airqube').hexdigest())",
    );
    expect(qube.spec.spec.image).to.deep.equal({
      ref: PYTHON,
      digest: image.imageId,
      archiveDigest: image.archiveDigest,
    });
    const outputDir = tmp("aq-ship-out-");
    const started = Date.now();
    const report = await client.requestor.run(qube, { outputDir });
    console.log(`      k = 3, ${image.archiveBytes} byte archive shipped to 3 providers: ${Date.now() - started} ms`);
    expect(report.status).to.equal("verified");
    expect(report.agreeing).to.have.length(3);
    expect(readFileSync(join(outputDir, "result"), "utf8")).to.equal(
      createHash("sha256").update("airqube").digest("hex"),
    );
    expect(agents.map((a) => a.images.installed)).to.deep.equal([1, 1, 1]);
    for (const agent of agents) expect(agent.images.entries()).to.deep.equal([image.imageId]);
    expect(await present(image.imageId)).to.equal(true);
  });

  it("providers that have the image receive nothing", async () => {
    const qube = await pythonQube("open('/output/result','w').write('again')");
    const report = await client.requestor.run(qube, { outputDir: tmp("aq-ship-out-") });
    expect(report.status).to.equal("verified");
    expect(agents.map((a) => a.images.installed)).to.deep.equal([1, 1, 1]);
  });

  it("bytes that are not the named archive are refused by every provider; nothing is loaded", async () => {
    const forged = join(tmp("aq-ship-forged-"), "forged.tar");
    writeFileSync(forged, Buffer.alloc(4096, 1));
    const qube = await sealQube(
      {
        image: "airqube/never:latest",
        imageArchive: {
          path: forged,
          imageId: `sha256:${"ab".repeat(32)}`,
          archiveDigest: `sha256:${"cd".repeat(32)}`,
        },
        command: ["true"],
        outputs: ["result"],
        redundancy: { mode: "fixed", k: 1, quorum: 1 },
      },
      client.identity,
    );
    const report = await client.requestor.run(qube, { outputDir: tmp("aq-ship-out-") }).catch((e: unknown) => e);
    const failures = (report as { failures?: { details?: string; code: string }[] }).failures ?? [];
    const text = JSON.stringify(report instanceof Error ? { message: report.message } : failures);
    expect(text).to.match(/SEAL_DIGEST_MISMATCH|digest/i);
    expect(agents.map((a) => a.images.installed)).to.deep.equal([1, 1, 1]);
    expect(await present(`sha256:${"ab".repeat(32)}`)).to.equal(false);
  });
});
