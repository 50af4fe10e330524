/** Builds small `docker save` archives for tests: honest ones and hostile ones (tags, layers, bombs). */
import { createHash, randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";

async function pack(entries: { name: string; data?: Buffer; type?: "directory" }[]): Promise<Buffer> {
  const p = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of p) chunks.push(chunk as Buffer);
  })();
  for (const entry of entries) {
    if (entry.type === "directory") p.entry({ name: entry.name, type: "directory", mode: 0o755, mtime: new Date(0) });
    else p.entry({ name: entry.name, mode: 0o755, mtime: new Date(0) }, entry.data ?? Buffer.alloc(0));
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** A layer tar with `files` small files (one of them random, so every fixture is a new image). */
export async function layerTar(files = 2, fill?: Buffer): Promise<Buffer> {
  const entries: { name: string; data: Buffer }[] = [{ name: "marker", data: randomBytes(16) }];
  for (let i = 1; i < files; i++) entries.push({ name: `f${i}`, data: fill ?? Buffer.from(`file ${i}\n`) });
  return pack(entries);
}

export interface FixtureArchive {
  archive: Buffer;
  imageId: string;
  archiveDigest: string;
}

/**
 * A docker-save archive of the given layers (plain tar bytes; `gzipLayers` stores them gzip-compressed, as
 * Docker accepts), optionally tagged. The config's diff ids are the uncompressed digests.
 */
export async function imageArchive(
  layers: Buffer[],
  options: { tags?: string[]; gzipLayers?: boolean; cmd?: string[] } = {},
): Promise<FixtureArchive> {
  const diffIds = layers.map((layer) => `sha256:${sha(layer)}`);
  const config = JSON.stringify({
    architecture: "amd64",
    os: "linux",
    created: new Date(0).toISOString(),
    config: { Cmd: options.cmd ?? ["/marker"] },
    rootfs: { type: "layers", diff_ids: diffIds },
  });
  const configHex = sha(config);
  const stored = layers.map((layer) => (options.gzipLayers ? gzipSync(layer) : layer));
  const names = stored.map((layer) => `${sha(layer)}/layer.tar`);
  const manifest = JSON.stringify([{ Config: `${configHex}.json`, RepoTags: options.tags ?? null, Layers: names }]);
  const archive = await pack([
    ...stored.flatMap((layer, i) => [
      { name: `${names[i]!.split("/")[0]}/`, type: "directory" as const },
      { name: names[i]!, data: layer },
    ]),
    { name: `${configHex}.json`, data: Buffer.from(config) },
    { name: "manifest.json", data: Buffer.from(manifest) },
  ]);
  return { archive, imageId: `sha256:${configHex}`, archiveDigest: `sha256:${sha(archive)}` };
}
