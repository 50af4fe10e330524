import { createHash } from "node:crypto";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { expect } from "chai";
import Docker from "dockerode";
import { ImageCache } from "../../src/images/image-cache.js";
import { DEFAULT_IMAGE_ARCHIVE_LIMITS, providerImagesConfigSchema } from "../../src/images/limits.js";
import { ImageArchiveError, inspectImageArchive, loadCheckedArchive } from "../../src/images/load-archive.js";
import { normaliseImageArchive, shippableFromEngine } from "../../src/images/ship.js";
import { tmp } from "../helpers/network.js";
import { imageArchive, layerTar } from "./archive-fixtures.js";

const limits = { ...DEFAULT_IMAGE_ARCHIVE_LIMITS, maxUncompressedBytes: 8 << 20, maxLayers: 4, maxFiles: 100 };
const write = (archive: Buffer) => {
  const path = join(tmp("aq-img-"), "a.tar");
  writeFileSync(path, archive);
  return path;
};

async function refusal(promise: Promise<unknown>): Promise<ImageArchiveError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(ImageArchiveError);
    return error as ImageArchiveError;
  }
  throw new Error("expected a refusal");
}

describe("images: checking an untrusted image archive before loading", () => {
  it("accepts an honest archive and reports its size, layers and files", async () => {
    const fixture = await imageArchive([await layerTar(3), await layerTar(2)]);
    const inspected = await inspectImageArchive(write(fixture.archive), fixture, limits);
    expect(inspected).to.include({
      imageId: fixture.imageId,
      layers: 2,
      files: 5,
      archiveBytes: fixture.archive.length,
    });
  });

  it("refuses a wrong archive digest and a wrong image id", async () => {
    const fixture = await imageArchive([await layerTar()]);
    const path = write(fixture.archive);
    const other = `sha256:${"0".repeat(64)}`;
    expect((await refusal(inspectImageArchive(path, { ...fixture, archiveDigest: other }, limits))).code).to.equal(
      "IMAGE_ARCHIVE_DIGEST_MISMATCH",
    );
    expect((await refusal(inspectImageArchive(path, { ...fixture, imageId: other }, limits))).code).to.equal(
      "IMAGE_DIGEST_MISMATCH",
    );
  });

  it("refuses a truncated archive, an oversized one, too many layers, too many files, and tags", async () => {
    const fixture = await imageArchive([await layerTar(4)]);
    const cut = fixture.archive.subarray(0, 1500);
    const truncated = await refusal(
      inspectImageArchive(
        write(cut),
        { ...fixture, archiveDigest: `sha256:${createHash("sha256").update(cut).digest("hex")}` },
        limits,
      ),
    );
    expect(truncated.code).to.be.oneOf(["IMAGE_ARCHIVE_TRUNCATED", "IMAGE_LAYER_INVALID"]);
    const oversized = await refusal(
      inspectImageArchive(write(fixture.archive), fixture, { ...limits, maxArchiveBytes: 1024 }),
    );
    expect(oversized.code).to.equal("IMAGE_ARCHIVE_TOO_LARGE");
    const many = await imageArchive(await Promise.all([1, 2, 3, 4, 5].map(() => layerTar(1))));
    expect((await refusal(inspectImageArchive(write(many.archive), many, limits))).code).to.equal(
      "IMAGE_TOO_MANY_LAYERS",
    );
    const crowded = await imageArchive([await layerTar(150)]);
    expect((await refusal(inspectImageArchive(write(crowded.archive), crowded, limits))).code).to.equal(
      "IMAGE_TOO_MANY_FILES",
    );
    const tagged = await imageArchive([await layerTar()], { tags: ["airqube/busybox:latest"] });
    expect((await refusal(inspectImageArchive(write(tagged.archive), tagged, limits))).code).to.equal(
      "IMAGE_ARCHIVE_TAGGED",
    );
  });

  it("stops inflating a decompression bomb at the uncompressed limit", async () => {
    const bomb = await imageArchive([await layerTar(2, Buffer.alloc(32 << 20))], { gzipLayers: true });
    expect(bomb.archive.length).to.be.below(1 << 20);
    const started = Date.now();
    const error = await refusal(inspectImageArchive(write(bomb.archive), bomb, limits));
    expect(error.code).to.equal("IMAGE_TOO_LARGE_UNCOMPRESSED");
    expect(Date.now() - started).to.be.below(5000);
    // the same gzip layer under a budget that fits is accepted, diff id checked on the inflated bytes
    const small = await imageArchive([await layerTar(3)], { gzipLayers: true });
    expect((await inspectImageArchive(write(small.archive), small, limits)).layers).to.equal(1);
  });

  it("normalises a tagged archive for shipping: no tags, same image id", async () => {
    const tagged = await imageArchive([await layerTar()], { tags: ["someone/else:latest"] });
    const out = join(tmp("aq-img-"), "n.tar");
    const shipped = await normaliseImageArchive(Readable.from([tagged.archive]), out);
    expect(shipped.imageId).to.equal(tagged.imageId);
    const again = await normaliseImageArchive(Readable.from([tagged.archive]), `${out}.2`);
    expect(again.archiveDigest).to.equal(shipped.archiveDigest);
    const inspected = await inspectImageArchive(out, shipped, limits);
    expect(inspected.imageId).to.equal(tagged.imageId);
  });
});

describe("images: the provider's cache of shipped images @docker", function () {
  this.timeout(60_000);
  const docker = new Docker();
  const loaded: string[] = [];
  after(async () => {
    for (const id of loaded)
      await docker
        .getImage(id)
        .remove({ force: true })
        .catch(() => undefined);
  });
  const present = async (id: string) =>
    docker
      .getImage(id)
      .inspect()
      .then(() => true)
      .catch(() => false);
  const config = (cacheBytes: number) =>
    providerImagesConfigSchema.parse({ cacheBytes, maxUncompressedBytes: 8 << 20, maxLayers: 4, maxFiles: 100 });

  it("installs a shipped archive, leaves nothing of hostile ones, and evicts the least recently used", async () => {
    const dir = tmp("aq-cache-");
    const cache = new ImageCache(dir, docker, config(1 << 20));
    const a = await imageArchive([await layerTar()]);
    const b = await imageArchive([await layerTar()]);
    loaded.push(a.imageId, b.imageId);
    expect(await cache.plan({ digest: a.imageId, archiveDigest: a.archiveDigest })).to.deep.equal({ kind: "ship" });
    expect((await cache.plan({ digest: a.imageId })).kind).to.equal("unavailable");

    // hostile: bytes that are not the named archive (digest), and a bomb: refused, nothing left anywhere
    const bomb = await imageArchive([await layerTar(2, Buffer.alloc(16 << 20))], { gzipLayers: true });
    loaded.push(bomb.imageId);
    for (const [expected, bytes, code] of [
      [a, b.archive, "IMAGE_ARCHIVE_DIGEST_MISMATCH"],
      [bomb, bomb.archive, "IMAGE_TOO_LARGE_UNCOMPRESSED"],
    ] as const) {
      const error = await cache.install(expected, Readable.from([bytes])).catch((e: unknown) => e);
      expect((error as ImageArchiveError).code).to.equal(code);
      expect(await present(expected.imageId)).to.equal(false);
    }
    expect(readdirSync(join(dir, "tmp"))).to.deep.equal([]);
    expect(cache.entries()).to.deep.equal([]);

    await cache.install(a, Readable.from([a.archive]));
    expect(await present(a.imageId)).to.equal(true);
    expect((await cache.plan({ digest: a.imageId, archiveDigest: a.archiveDigest })).kind).to.equal("present");
    // in use: not evicted even over the cap; released: the least recently used goes first
    const release = cache.acquire(a.imageId);
    const small = new ImageCache(dir, docker, config(1 << 20));
    expect(small.entries()).to.deep.equal([a.imageId]);
    await cache.install(b, Readable.from([b.archive]));
    expect(cache.entries()).to.deep.equal([a.imageId, b.imageId]);
    const tight = new ImageCache(dir, docker, { ...config(1 << 20), cacheBytes: b.archive.length });
    expect(await tight.evict()).to.deep.equal([a.imageId]);
    expect(await present(a.imageId)).to.equal(false);
    expect(await present(b.imageId)).to.equal(true);
    release();
    expect(readdirSync(join(dir, "tmp"))).to.deep.equal([]);
  });

  it("makes the archive to ship from the local engine (docker save, tags dropped), once per image", async () => {
    const fixture = await imageArchive([await layerTar()]);
    loaded.push(fixture.imageId);
    await loadCheckedArchive(docker, write(fixture.archive), fixture);
    await docker.getImage(fixture.imageId).tag({ repo: "airqube/ship-test", tag: "latest" });
    const cacheDir = tmp("aq-ship-cache-");
    const shipped = await shippableFromEngine(docker, "airqube/ship-test:latest", cacheDir);
    expect(shipped.imageId).to.equal(fixture.imageId);
    // what a provider would check: no tags, the named image id and archive digest
    expect((await inspectImageArchive(shipped.path, shipped, limits)).imageId).to.equal(fixture.imageId);
    const again = await shippableFromEngine(docker, "airqube/ship-test:latest", cacheDir);
    expect(again).to.deep.equal(shipped);
    await docker.getImage("airqube/ship-test:latest").remove({ force: true });
  });

  it("concurrent qubes share one install: the others wait for it instead of receiving the image again", async () => {
    const cache = new ImageCache(tmp("aq-cache-"), docker, config(64 << 20));
    const image = await imageArchive([await layerTar(20)]);
    loaded.push(image.imageId);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // the shipped bytes arrive slowly: meanwhile another qube asks for the same image
    const slow = (async function* () {
      await gate;
      yield image.archive;
    })();
    const first = cache.install(image, slow);
    expect(await cache.plan({ digest: image.imageId, archiveDigest: image.archiveDigest })).to.deep.equal({
      kind: "wait",
    });
    const second = await cache.install(image, Readable.from([image.archive])).catch((e: unknown) => e);
    expect((second as ImageArchiveError).code).to.equal("IMAGE_INSTALLING");
    const waiting = cache.waitFor(image.imageId);
    release();
    await first;
    await waiting;
    expect(cache.installed).to.equal(1);
    expect((await cache.plan({ digest: image.imageId })).kind).to.equal("present");
  });
});
