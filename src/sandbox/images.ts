/**
 * Local images without any registry: build a `docker save`-format archive from files (deterministic, so the
 * image id is a content digest that anyone building from the same files gets too), load archives into the
 * engine, and check that an image is exactly the one a qube names.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import type Docker from "dockerode";
import tar from "tar-stream";
import { PlatformError, UserError } from "../qube/errors.js";

/** One entry of an image's single layer. Paths are relative (`bin/busybox`). */
export type LayerEntry =
  | { type: "file"; path: string; mode: number; content: Buffer }
  | { type: "directory"; path: string; mode: number }
  | { type: "symlink"; path: string; target: string };

/** An image archive built by {@link createImageArchive}, ready for {@link loadImageArchive}. */
export interface ImageArchive {
  /** The `docker save` tarball. */
  archive: Buffer;
  /** The image id the engine will report: `sha256:` + hex of the config's digest. */
  digest: string;
}

const EPOCH = new Date(0);

async function packToBuffer(add: (pack: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  add(pack);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function addEntry(pack: tar.Pack, entry: LayerEntry): void {
  const common = { name: entry.path, mtime: EPOCH, uid: 0, gid: 0, uname: "", gname: "" };
  if (entry.type === "file") pack.entry({ ...common, type: "file", mode: entry.mode }, entry.content);
  else if (entry.type === "directory") pack.entry({ ...common, type: "directory", mode: entry.mode });
  else pack.entry({ ...common, type: "symlink", mode: 0o777, linkname: entry.target });
}

const sha256 = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex");

/**
 * Builds a single-layer image archive. Entries are sorted and all metadata is fixed, so the same files always
 * give the same digest.
 *
 * @example
 * const { archive, digest } = await createImageArchive("airqube/busybox:latest", entries, { Cmd: ["sh"] });
 */
export async function createImageArchive(
  ref: string,
  entries: LayerEntry[],
  config: { Cmd?: string[]; Env?: string[]; User?: string; WorkingDir?: string } = {},
): Promise<ImageArchive> {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const layer = await packToBuffer((pack) => {
    for (const entry of sorted) addEntry(pack, entry);
  });
  const layerDigest = sha256(layer);
  const configJson = JSON.stringify({
    architecture: "amd64",
    os: "linux",
    created: EPOCH.toISOString(),
    config: { Env: ["PATH=/bin:/usr/bin"], ...config },
    rootfs: { type: "layers", diff_ids: [`sha256:${layerDigest}`] },
    history: [{ created: EPOCH.toISOString(), created_by: "airqube createImageArchive" }],
  });
  const configDigest = sha256(configJson);
  const manifest = JSON.stringify([
    { Config: `${configDigest}.json`, RepoTags: [ref], Layers: [`${layerDigest}/layer.tar`] },
  ]);
  const archive = await packToBuffer((pack) => {
    const common = { mtime: EPOCH, uid: 0, gid: 0, mode: 0o644 };
    pack.entry({ ...common, name: `${configDigest}.json` }, configJson);
    pack.entry({ ...common, name: `${layerDigest}/`, type: "directory", mode: 0o755 });
    pack.entry({ ...common, name: `${layerDigest}/layer.tar` }, layer);
    pack.entry({ ...common, name: "manifest.json" }, manifest);
  });
  return { archive, digest: `sha256:${configDigest}` };
}

/** Reads the whole response of a Docker stream (load, build) and fails on an `error` line. */
async function drainDockerStream(stream: NodeJS.ReadableStream): Promise<string> {
  let text = "";
  for await (const chunk of stream as AsyncIterable<Buffer>) text += chunk.toString("utf8");
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const parsed = JSON.parse(line) as { error?: string };
      if (parsed.error)
        throw new PlatformError("IMAGE_LOAD_FAILED", "Docker refused the image archive", { details: parsed.error });
    } catch (error) {
      if (error instanceof PlatformError) throw error;
    }
  }
  return text;
}

/**
 * Loads a `docker save` archive (a file path or a buffer) into the engine. When `expectedDigest` is given, the
 * loaded image must have exactly that id, or it is removed again and the load is refused.
 */
export async function loadImageArchive(
  docker: Docker,
  source: string | Buffer,
  ref: string,
  options: { expectedDigest?: string; signal?: AbortSignal } = {},
): Promise<string> {
  options.signal?.throwIfAborted();
  const input = typeof source === "string" ? createReadStream(source) : Readable.from([source]);
  try {
    await drainDockerStream(await docker.loadImage(input, {}));
  } catch (error) {
    if (error instanceof PlatformError) throw error;
    throw new PlatformError("IMAGE_LOAD_FAILED", "Could not load the image archive", {
      cause: error,
      details: String(error),
    });
  }
  const digest = await imageDigest(docker, ref);
  if (options.expectedDigest && digest !== options.expectedDigest) {
    throw new UserError("IMAGE_DIGEST_MISMATCH", "The loaded image is not the one named", {
      details: `${ref} is ${digest}, expected ${options.expectedDigest}`,
    });
  }
  return digest;
}

/** Returns the engine's image id (`sha256:...`) of `ref`, or throws `IMAGE_NOT_FOUND`. */
export async function imageDigest(docker: Docker, ref: string): Promise<string> {
  try {
    const info = await docker.getImage(ref).inspect();
    return info.Id;
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 404) {
      throw new UserError("IMAGE_NOT_FOUND", `Image ${ref} is not available locally`, {
        details: "build the local images with `npm run images` or load an archive with `docker load`",
        cause: error,
      });
    }
    throw new PlatformError("DOCKER_UNAVAILABLE", "The Docker engine did not answer", {
      details: String(error),
      cause: error,
    });
  }
}
