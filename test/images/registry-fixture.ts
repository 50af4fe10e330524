/**
 * Fixtures shared by the image tests: Debian's `docker-registry` on 127.0.0.1 (a registry providers may pull
 * from), pushing an image to it by digest, and small runnable images (airqube/busybox's layers plus a layer
 * with a marker file of our own, so each fixture is a new image id that no provider has yet).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type Docker from "dockerode";
import tar from "tar-stream";
import { loadCheckedArchive } from "../../src/images/load-archive.js";
import { tmp } from "../helpers/network.js";
import { type FixtureArchive, imageArchive } from "./archive-fixtures.js";

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });

/** A running loopback registry: `host` is `127.0.0.1:PORT`, `url` is what a provider's allowlist names. */
export interface LoopbackRegistry {
  host: string;
  url: string;
  stop(): void;
}

/** Starts Debian's docker-registry on a free loopback port and waits until it answers. */
export async function startRegistry(): Promise<LoopbackRegistry> {
  const host = `127.0.0.1:${await freePort()}`;
  const dir = tmp("aq-registry-");
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: ${host}\n`,
  );
  const registry: ChildProcess = spawn("docker-registry", ["serve", config], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://${host}/v2/`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) break;
    if (i === 99) throw new Error(`docker-registry did not answer on ${host}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { host, url: `http://${host}`, stop: () => registry.kill("SIGTERM") };
}

/**
 * Loads `fixture`, pushes it to `registry` as `name`, and removes it from the engine again (only the registry
 * has it then). Returns the manifest digest, the one a pull names: `host/name@sha256:...`.
 */
export async function pushToRegistry(
  docker: Docker,
  registry: LoopbackRegistry,
  fixture: FixtureArchive,
  name: string,
): Promise<string> {
  const file = join(tmp("aq-push-"), "fixture.tar");
  writeFileSync(file, fixture.archive);
  await loadCheckedArchive(docker, file, fixture);
  const tagged = `${registry.host}/${name}`;
  await docker.getImage(fixture.imageId).tag({ repo: tagged, tag: "t" });
  const stream = await docker.getImage(`${tagged}:t`).push({ authconfig: { serveraddress: registry.host } });
  const lines: string[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) lines.push(chunk.toString());
  const digest = /"Digest":"(sha256:[0-9a-f]{64})"/.exec(lines.join(""))?.[1];
  if (!digest) throw new Error(`push gave no digest: ${lines.join("")}`);
  await docker.getImage(fixture.imageId).remove({ force: true });
  return digest;
}

/** The layers of a local image, in order, as plain tar bytes (from `docker save`). */
async function savedLayers(docker: Docker, ref: string): Promise<Buffer[]> {
  const extract = tar.extract();
  const files = new Map<string, Buffer>();
  (await docker.getImage(ref).get()).pipe(extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    if (entry.header.type === "file") files.set(entry.header.name, Buffer.concat(chunks));
  }
  const [manifest] = JSON.parse(files.get("manifest.json")!.toString("utf8")) as { Layers: string[] }[];
  return manifest!.Layers.map((name) => files.get(name)!);
}

/** A layer holding `/marker` with `text` (and nothing else). */
async function markerLayer(text: string): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  pack.entry({ name: "marker", mode: 0o644, mtime: new Date(0) }, text);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A runnable image no engine has yet: airqube/busybox plus `/marker` holding `marker` (make it unique). */
export async function busyboxWithMarker(docker: Docker, marker: string): Promise<FixtureArchive> {
  return imageArchive([...(await savedLayers(docker, "airqube/busybox:latest")), await markerLayer(marker)], {
    cmd: ["sh"],
  });
}
