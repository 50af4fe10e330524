import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { ImageCache } from "../../src/images/image-cache.js";
import { providerImagesConfigSchema } from "../../src/images/limits.js";
import { loadCheckedArchive } from "../../src/images/load-archive.js";
import { parseDigestRef } from "../../src/images/registry-pull.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { tmp } from "../helpers/network.js";
import { imageArchive, layerTar } from "./archive-fixtures.js";

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

describe("images: pulling by digest from an allowlisted registry (Debian's docker-registry on 127.0.0.1) @docker", function () {
  this.timeout(60_000);
  const docker = new Docker();
  let registry: ChildProcess;
  let host: string;
  let fixture: Awaited<ReturnType<typeof imageArchive>>;
  let manifestDigest: string;

  before(async () => {
    const port = await freePort();
    host = `127.0.0.1:${port}`;
    const dir = tmp("aq-registry-");
    const config = join(dir, "config.yml");
    writeFileSync(
      config,
      `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: ${host}\n`,
    );
    registry = spawn("docker-registry", ["serve", config], { stdio: "ignore" });
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`http://${host}/v2/`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // an image only the registry has: pushed, then removed from the engine
    fixture = await imageArchive([await layerTar(3)]);
    const file = join(dir, "fixture.tar");
    writeFileSync(file, fixture.archive);
    await loadCheckedArchive(docker, file, fixture);
    const tagged = `${host}/aq/fixture`;
    await docker.getImage(fixture.imageId).tag({ repo: tagged, tag: "t" });
    const stream = await docker.getImage(`${tagged}:t`).push({ authconfig: { serveraddress: host } });
    const lines: string[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) lines.push(chunk.toString());
    const digest = /"Digest":"(sha256:[0-9a-f]{64})"/.exec(lines.join(""))?.[1];
    expect(digest, lines.join("")).to.be.a("string");
    manifestDigest = digest!;
    await docker.getImage(fixture.imageId).remove({ force: true });
  });
  after(async () => {
    registry?.kill("SIGTERM");
    await docker
      .getImage(fixture?.imageId ?? "none")
      .remove({ force: true })
      .catch(() => undefined);
  });

  const config = () => providerImagesConfigSchema.parse({ registries: [`http://${host}`] });

  it("pulls name@sha256 from the allowlisted registry, checks it like a shipped archive, and loads it", async () => {
    const cache = new ImageCache(tmp("aq-pull-cache-"), docker, config());
    const ref = `${host}/aq/fixture@${manifestDigest}`;
    expect(await cache.plan({ ref, digest: fixture.imageId })).to.deep.equal({ kind: "pull", ref });
    // a manifest whose config is not the image the qube names is refused, nothing loaded
    const wrong = `sha256:${"1".repeat(64)}`;
    const error = await cache.pull({ ref, digest: wrong }).catch((e: unknown) => e);
    expect((error as AirqubeError).code).to.equal("IMAGE_DIGEST_MISMATCH");
    expect(cache.installed).to.equal(0);
    await cache.pull({ ref, digest: fixture.imageId });
    expect(cache.installed).to.equal(1);
    expect((await cache.plan({ ref, digest: fixture.imageId })).kind).to.equal("present");
  });

  it("refuses a tag and a registry that is not on the allowlist", async () => {
    expect(() => parseDigestRef(`${host}/aq/fixture:t`)).to.throw(AirqubeError, /by digest only/);
    const cache = new ImageCache(tmp("aq-pull-cache-"), docker, config());
    const absent = `sha256:${"2".repeat(64)}`;
    const byTag = await cache.plan({ ref: `${host}/aq/fixture:t`, digest: absent });
    expect(byTag).to.deep.include({ kind: "unavailable" });
    expect((byTag as { reason: string }).reason).to.match(/by digest only/);
    const elsewhere = await cache.plan({ ref: `127.0.0.2:5000/aq/fixture@${manifestDigest}`, digest: absent });
    expect((elsewhere as { reason: string }).reason).to.match(/not on this provider's allowlist/);
  });
});
