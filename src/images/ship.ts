/**
 * The requestor's side of shipping an image: turn an image of the local engine (`docker save`) or an archive
 * file into the archive that travels, with no tags and fixed metadata (so a provider can refuse any archive
 * that names repositories, and the same image gives the same archive digest), and keep it in a cache keyed
 * by image id, so that the next qube with the same image costs nothing.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type Docker from "dockerode";
import tar from "tar-stream";
import { z } from "zod";
import { AirqubeError, PlatformError, UserError } from "../qube/errors.js";
import { sha256DigestSchema } from "./limits.js";

/** An image ready to ship: the spec pins `imageId` and `archiveDigest`; `path` is the archive file. */
export interface ShippableImage {
  imageId: string;
  archiveDigest: string;
  archiveBytes: number;
  path: string;
}

const manifestSchema = z.array(z.object({ Config: z.string(), Layers: z.array(z.string()) }).passthrough()).length(1);
const EPOCH = new Date(0);

/**
 * Rewrites a `docker save` archive stream into `out`: the same entries in the same order, `manifest.json`
 * without `RepoTags`, no `repositories` file, owners and times zeroed. Refuses OCI-layout archives and links.
 */
export async function normaliseImageArchive(
  source: NodeJS.ReadableStream,
  out: string,
  options: { signal?: AbortSignal } = {},
): Promise<ShippableImage> {
  const extract = tar.extract();
  const pack = tar.pack();
  const partial = `${out}.partial`;
  const hash = createHash("sha256");
  let archiveBytes = 0;
  const written = pipeline(
    pack as unknown as Readable,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        archiveBytes += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(partial),
    options.signal ? { signal: options.signal } : {},
  );
  written.catch(() => undefined);
  let imageId: string | undefined;
  try {
    (source as Readable).on("error", (error) => extract.destroy(error));
    source.pipe(extract as unknown as NodeJS.WritableStream);
    for await (const entry of extract) {
      const { name, type, size } = entry.header;
      const common = { name, mtime: EPOCH, uid: 0, gid: 0, uname: "", gname: "" };
      if (name === "oci-layout" || name === "index.json" || name.startsWith("blobs/"))
        throw new UserError("IMAGE_ARCHIVE_UNSUPPORTED", "OCI-layout image archives are not supported yet", {
          details: "save the image with Docker's classic `docker save` format",
        });
      if (type === "directory") {
        pack.entry({ ...common, type: "directory", mode: 0o755 });
        entry.resume();
      } else if (type !== "file") {
        throw new UserError("IMAGE_ARCHIVE_UNSUPPORTED", "The image archive holds links", { details: name });
      } else if (name === "repositories") {
        entry.resume();
      } else if (name === "manifest.json") {
        const chunks: Buffer[] = [];
        for await (const chunk of entry) chunks.push(chunk as Buffer);
        const manifest = manifestSchema.parse(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        const [image] = manifest;
        imageId = `sha256:${image!.Config.replace(/\.json$/, "")}`;
        pack.entry({ ...common, mode: 0o644 }, JSON.stringify([{ ...image, RepoTags: null }]));
      } else {
        const target = pack.entry({ ...common, mode: 0o644, size: size ?? 0 });
        await pipeline(entry as unknown as Readable, target as unknown as NodeJS.WritableStream);
      }
    }
    pack.finalize();
    await written;
    if (!imageId || !sha256DigestSchema.safeParse(imageId).success)
      throw new UserError("IMAGE_ARCHIVE_UNSUPPORTED", "The image archive names no image config");
    await rename(partial, out);
    return { imageId, archiveDigest: `sha256:${hash.digest("hex")}`, archiveBytes, path: out };
  } catch (error) {
    pack.destroy();
    extract.destroy();
    await rm(partial, { force: true });
    if (error instanceof AirqubeError) throw error;
    throw new UserError("IMAGE_ARCHIVE_UNREADABLE", "Could not read the image archive", {
      details: (error as Error).message,
      cause: error,
    });
  }
}

const recordSchema = z.strictObject({
  imageId: sha256DigestSchema,
  archiveDigest: sha256DigestSchema,
  archiveBytes: z.int().nonnegative(),
});

/**
 * The archive to ship for `ref` of the local engine, from `cacheDir` when already made.
 *
 * @example
 * const image = await shippableFromEngine(new Docker(), "airqube/pdf:latest", "~/.airqube/shipped");
 */
export async function shippableFromEngine(
  docker: Docker,
  ref: string,
  cacheDir: string,
  options: { signal?: AbortSignal } = {},
): Promise<ShippableImage> {
  let imageId: string;
  try {
    imageId = (await docker.getImage(ref).inspect()).Id;
  } catch (error) {
    throw new UserError("IMAGE_NOT_FOUND", `Image ${ref} is not available locally`, {
      details: "build it (npm run images:debian) or give --image-archive",
      cause: error,
    });
  }
  await mkdir(cacheDir, { recursive: true });
  const base = join(cacheDir, imageId.replace("sha256:", ""));
  const cached = await readFile(`${base}.json`, "utf8")
    .then((text) => recordSchema.parse(JSON.parse(text)))
    .catch(() => undefined);
  if (
    cached &&
    cached.imageId === imageId &&
    (await stat(`${base}.tar`).catch(() => undefined))?.size === cached.archiveBytes
  )
    return { ...cached, path: `${base}.tar` };
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.getImage(imageId).get();
  } catch (error) {
    throw new PlatformError("IMAGE_SAVE_FAILED", "Docker could not save the image", {
      details: (error as Error).message,
      cause: error,
    });
  }
  const shippable = await normaliseImageArchive(stream, `${base}.tar`, options);
  if (shippable.imageId !== imageId)
    throw new PlatformError("IMAGE_SAVE_FAILED", "Docker saved another image than the one asked", {
      details: `${shippable.imageId}, expected ${imageId}`,
    });
  const { path: _path, ...record } = shippable;
  await writeFile(`${base}.json`, `${JSON.stringify(record)}\n`);
  return shippable;
}

/** The archive to ship from an archive file (`--image-archive`), normalised into `cacheDir`. */
export async function shippableFromFile(
  file: string,
  cacheDir: string,
  options: { signal?: AbortSignal } = {},
): Promise<ShippableImage> {
  await mkdir(cacheDir, { recursive: true });
  const info = await stat(file).catch(() => undefined);
  if (!info?.isFile())
    throw new UserError("IMAGE_ARCHIVE_UNREADABLE", "The image archive does not exist", { details: file });
  const temp = join(cacheDir, `import-${process.pid}-${Date.now()}.tar`);
  const shippable = await normaliseImageArchive(createReadStream(file), temp, options);
  const base = join(cacheDir, shippable.imageId.replace("sha256:", ""));
  await rename(temp, `${base}.tar`);
  const { path: _path, ...record } = shippable;
  await writeFile(`${base}.json`, `${JSON.stringify(record)}\n`);
  return { ...shippable, path: `${base}.tar` };
}
