/**
 * Checking an untrusted `docker save` archive before it reaches the engine, then loading it.
 *
 * {@link inspectImageArchive} streams the archive once, holding one piece at a time: archive size, entry
 * types and names, layer count, every layer's uncompressed size (gzip layers are inflated under the same
 * budget, so a decompression bomb stops at the limit) and entry count, no tags; then the archive digest,
 * the image id (the config's digest) and every layer's diff id against the config. Only an archive that
 * passes is given to `docker load` ({@link loadCheckedArchive}), and the loaded id is checked again.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import type Docker from "dockerode";
import tar from "tar-stream";
import { z } from "zod";
import { AirqubeError, PeerError, PlatformError } from "../qube/errors.js";
import { DEFAULT_IMAGE_ARCHIVE_LIMITS, type ImageArchiveLimits, MAX_ARCHIVE_JSON_BYTES } from "./limits.js";

/** What an archive must be. */
export interface ExpectedImage {
  /** The image id (`sha256:` + the config's digest). */
  imageId: string;
  /** `sha256:` + digest of the archive file. */
  archiveDigest: string;
}

/** What {@link inspectImageArchive} found in an archive that passed. */
export interface InspectedImageArchive {
  imageId: string;
  archiveDigest: string;
  archiveBytes: number;
  layers: number;
  uncompressedBytes: number;
  files: number;
}

/** A hostile or broken archive: the code says which check failed. */
export class ImageArchiveError extends PeerError {}

const manifestSchema = z
  .array(
    z.object({
      Config: z.string().max(256),
      RepoTags: z.union([z.null(), z.array(z.string().max(256)).max(64)]).optional(),
      Layers: z.array(z.string().max(256)).min(1).max(4096),
    }),
  )
  .length(1);
const configSchema = z.object({
  rootfs: z.object({ type: z.literal("layers"), diff_ids: z.array(z.string()).max(4096) }),
});

const NAME = /^[0-9a-zA-Z._-]{1,128}(\/[0-9a-zA-Z._-]{1,128})?\/?$/;

async function readBounded(entry: AsyncIterable<Buffer>, max: number, name: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of entry) {
    size += chunk.length;
    if (size > max)
      throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "An image archive holds an oversized metadata file", {
        details: name,
      });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Yields the first chunk again, then the rest, so that a stream's magic bytes can be looked at. */
async function* withFirst(first: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield first;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield next.value;
  }
}

interface Budget {
  uncompressedBytes: number;
  files: number;
  limits: ImageArchiveLimits;
}

/** Reads one layer: inflates it when gzip, hashes the uncompressed tar, counts its bytes and entries. */
async function scanLayer(entry: AsyncIterable<Buffer>, budget: Budget, name: string): Promise<string> {
  const iterator = entry[Symbol.asyncIterator]();
  const first = await iterator.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : first.value;
  let source: AsyncIterable<Buffer> = withFirst(head, iterator);
  let gunzip: ReturnType<typeof createGunzip> | undefined;
  if (head[0] === 0x1f && head[1] === 0x8b) {
    gunzip = createGunzip();
    const input = Readable.from(source);
    input.on("error", (error) => gunzip?.destroy(error));
    input.pipe(gunzip);
    source = gunzip;
  } else if (
    head.length >= 4 &&
    (head.readUInt32BE(0) === 0x28b52ffd ||
      head.readUInt32BE(0) === 0xfd377a58 ||
      head.subarray(0, 3).toString() === "BZh")
  ) {
    throw new ImageArchiveError("IMAGE_LAYER_UNSUPPORTED", "An image layer is compressed in a format not accepted", {
      details: `${name}: only plain tar and gzip layers are accepted`,
    });
  }
  const hash = createHash("sha256");
  const limits = budget.limits;
  const counting = Readable.from(
    (async function* () {
      for await (const chunk of source) {
        budget.uncompressedBytes += chunk.length;
        if (budget.uncompressedBytes > limits.maxUncompressedBytes)
          throw new ImageArchiveError(
            "IMAGE_TOO_LARGE_UNCOMPRESSED",
            "The image's layers are too large once unpacked",
            {
              details: `over ${limits.maxUncompressedBytes} bytes (${name})`,
            },
          );
        hash.update(chunk);
        yield chunk;
      }
    })(),
  );
  const inner = tar.extract();
  counting.on("error", (error) => inner.destroy(error));
  counting.pipe(inner as unknown as NodeJS.WritableStream);
  try {
    for await (const file of inner) {
      budget.files += 1;
      if (budget.files > limits.maxFiles)
        throw new ImageArchiveError("IMAGE_TOO_MANY_FILES", "The image holds too many files", {
          details: `over ${limits.maxFiles}`,
        });
      file.resume();
    }
  } catch (error) {
    counting.destroy();
    gunzip?.destroy();
    inner.destroy();
    if (error instanceof AirqubeError) throw error;
    throw new ImageArchiveError("IMAGE_LAYER_INVALID", "An image layer is not a valid tar archive", {
      details: `${name}: ${(error as Error).message}`,
      cause: error,
    });
  }
  return `sha256:${hash.digest("hex")}`;
}

/**
 * Checks an untrusted archive file against what the qube names and the provider's limits, without loading it.
 *
 * @throws ImageArchiveError with code IMAGE_ARCHIVE_TOO_LARGE, IMAGE_ARCHIVE_INVALID, IMAGE_ARCHIVE_TRUNCATED,
 * IMAGE_TOO_MANY_LAYERS, IMAGE_TOO_LARGE_UNCOMPRESSED, IMAGE_TOO_MANY_FILES, IMAGE_LAYER_INVALID,
 * IMAGE_LAYER_UNSUPPORTED, IMAGE_ARCHIVE_TAGGED, IMAGE_ARCHIVE_DIGEST_MISMATCH or IMAGE_DIGEST_MISMATCH.
 * @example
 * await inspectImageArchive("/cache/x.tar", { imageId, archiveDigest }, DEFAULT_IMAGE_ARCHIVE_LIMITS);
 */
export async function inspectImageArchive(
  path: string,
  expected: ExpectedImage,
  limits: ImageArchiveLimits = DEFAULT_IMAGE_ARCHIVE_LIMITS,
  options: { signal?: AbortSignal } = {},
): Promise<InspectedImageArchive> {
  const archiveBytes = (await stat(path)).size;
  if (archiveBytes > limits.maxArchiveBytes)
    throw new ImageArchiveError("IMAGE_ARCHIVE_TOO_LARGE", "The image archive is larger than this provider accepts", {
      details: `${archiveBytes} bytes, at most ${limits.maxArchiveBytes}`,
    });
  const archiveHash = createHash("sha256");
  const file = createReadStream(path, {
    highWaterMark: 1 << 20,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  file.on("data", (chunk) => archiveHash.update(chunk as Buffer));
  const extract = tar.extract();
  file.on("error", (error) => extract.destroy(error));
  file.pipe(extract);
  const budget: Budget = { uncompressedBytes: 0, files: 0, limits };
  const jsons = new Map<string, Buffer>();
  const layers = new Map<string, string>();
  let entries = 0;
  try {
    for await (const entry of extract) {
      const { name, type } = entry.header;
      entries += 1;
      if (entries > limits.maxLayers * 4 + 16)
        throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The image archive has too many entries");
      if (!NAME.test(name) || name.includes(".."))
        throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The image archive has an unexpected entry", {
          details: name.slice(0, 200),
        });
      if (type === "directory") {
        entry.resume();
        continue;
      }
      if (type !== "file")
        throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The image archive may hold only files and directories", {
          details: `${name.slice(0, 200)} is a ${type}`,
        });
      if (name === "repositories")
        throw new ImageArchiveError("IMAGE_ARCHIVE_TAGGED", "The image archive carries tags", {
          details: "shipped archives must not name repositories (they could replace a provider's images)",
        });
      if (name.endsWith("/layer.tar") || name.endsWith(".tar.gz")) {
        if (layers.size >= limits.maxLayers)
          throw new ImageArchiveError("IMAGE_TOO_MANY_LAYERS", "The image has too many layers", {
            details: `more than ${limits.maxLayers}`,
          });
        layers.set(name, await scanLayer(entry as AsyncIterable<Buffer>, budget, name));
      } else {
        jsons.set(name, await readBounded(entry as AsyncIterable<Buffer>, MAX_ARCHIVE_JSON_BYTES, name));
      }
    }
  } catch (error) {
    extract.destroy();
    file.destroy();
    if (error instanceof AirqubeError) throw error;
    const message = (error as Error).message;
    throw new ImageArchiveError(
      /unexpected end/i.test(message) ? "IMAGE_ARCHIVE_TRUNCATED" : "IMAGE_ARCHIVE_INVALID",
      /unexpected end/i.test(message)
        ? "The image archive is truncated"
        : "The image archive is not a valid tar archive",
      { details: message, cause: error },
    );
  }
  const archiveDigest = `sha256:${archiveHash.digest("hex")}`;
  if (archiveDigest !== expected.archiveDigest)
    throw new ImageArchiveError("IMAGE_ARCHIVE_DIGEST_MISMATCH", "The image archive is not the one the qube names", {
      details: `${archiveDigest}, expected ${expected.archiveDigest}`,
    });
  const manifest = parseJson(manifestSchema, jsons.get("manifest.json"), "manifest.json");
  const [image] = manifest;
  if (!image) throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The image archive names no image");
  if (image.RepoTags && image.RepoTags.length > 0)
    throw new ImageArchiveError("IMAGE_ARCHIVE_TAGGED", "The image archive carries tags");
  if (image.Layers.length > limits.maxLayers)
    throw new ImageArchiveError("IMAGE_TOO_MANY_LAYERS", "The image has too many layers", {
      details: `${image.Layers.length}, at most ${limits.maxLayers}`,
    });
  const configBytes = jsons.get(image.Config);
  const imageId = `sha256:${createHash("sha256")
    .update(configBytes ?? "")
    .digest("hex")}`;
  if (!configBytes || imageId !== expected.imageId)
    throw new ImageArchiveError("IMAGE_DIGEST_MISMATCH", "The image in the archive is not the one the qube names", {
      details: `${configBytes ? imageId : "no config"}, expected ${expected.imageId}`,
    });
  const config = parseJson(configSchema, configBytes, image.Config);
  const diffIds = image.Layers.map((layer) => layers.get(layer));
  if (
    diffIds.some((id) => id === undefined) ||
    diffIds.length !== config.rootfs.diff_ids.length ||
    diffIds.some((id, i) => id !== config.rootfs.diff_ids[i])
  )
    throw new ImageArchiveError("IMAGE_LAYER_MISMATCH", "The image's layers are not the ones its config names");
  return {
    imageId,
    archiveDigest,
    archiveBytes,
    layers: image.Layers.length,
    uncompressedBytes: budget.uncompressedBytes,
    files: budget.files,
  };
}

function parseJson<T>(schema: z.ZodType<T>, bytes: Buffer | undefined, name: string): T {
  if (!bytes) throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The image archive lacks a file", { details: name });
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The image archive holds invalid JSON", {
      details: name,
      cause: error,
    });
  }
  const result = schema.safeParse(value);
  if (!result.success)
    throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The image archive's metadata is malformed", {
      details: `${name}: ${result.error.issues[0]?.path.join(".")} ${result.error.issues[0]?.message}`,
    });
  return result.data;
}

async function removeImage(docker: Docker, id: string): Promise<void> {
  await docker
    .getImage(id)
    .remove({ force: true })
    .catch(() => undefined);
}

/**
 * Inspects the archive ({@link inspectImageArchive}), loads it, and checks the engine's image id. On any
 * failure after the load started, the image is removed again: nothing is left in the engine.
 *
 * @example
 * await loadCheckedArchive(new Docker(), "/cache/x.tar", { imageId, archiveDigest });
 */
export async function loadCheckedArchive(
  docker: Docker,
  path: string,
  expected: ExpectedImage,
  limits: ImageArchiveLimits = DEFAULT_IMAGE_ARCHIVE_LIMITS,
  options: { signal?: AbortSignal } = {},
): Promise<InspectedImageArchive> {
  const inspected = await inspectImageArchive(path, expected, limits, options);
  try {
    const response = await docker.loadImage(createReadStream(path), { quiet: true });
    let text = "";
    for await (const chunk of response as AsyncIterable<Buffer>) {
      if (text.length < 65536) text += chunk.toString("utf8");
    }
    const failed = text.split("\n").find((line) => line.includes('"error"'));
    if (failed) throw new PlatformError("IMAGE_LOAD_FAILED", "Docker refused the image archive", { details: failed });
    const info = await docker.getImage(expected.imageId).inspect();
    if (info.Id !== expected.imageId)
      throw new ImageArchiveError("IMAGE_DIGEST_MISMATCH", "The loaded image is not the one the qube names", {
        details: `${info.Id}, expected ${expected.imageId}`,
      });
  } catch (error) {
    await removeImage(docker, expected.imageId);
    if (error instanceof AirqubeError) throw error;
    throw new PlatformError("IMAGE_LOAD_FAILED", "Could not load the image archive", {
      details: (error as Error).message,
      cause: error,
    });
  }
  return inspected;
}
