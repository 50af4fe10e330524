/**
 * Writes a `docker save`-format archive from a root file system tarball (for instance mmdebstrap's output),
 * streaming, with every piece of metadata fixed: the same rootfs tarball always gives the same archive bytes,
 * the same archive digest and the same image id. No tags are written (see {@link normaliseImageArchive}).
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { PlatformError } from "../qube/errors.js";

/** The image config fields a built image may set. */
export interface ImageRuntimeConfig {
  Cmd?: string[];
  Env?: string[];
  WorkingDir?: string;
}

/** The ids of an archive {@link writeImageArchive} wrote. */
export interface BuiltImageArchive {
  /** The image id the engine will report: `sha256:` + hex digest of the config. */
  imageId: string;
  /** `sha256:` + hex digest of the archive file. */
  archiveDigest: string;
  archiveBytes: number;
}

async function sha256OfFile(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, ...(signal ? { signal } : {}) }))
    hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * Builds a single-layer image archive at `out` from the rootfs tarball `layerPath`; `created` is the fixed
 * build date (use `SOURCE_DATE_EPOCH`). The file appears only when complete (written beside it, then renamed).
 *
 * @example
 * const { imageId } = await writeImageArchive("/tmp/python.tar", "/tmp/rootfs.tar", { created: new Date(0), config: { Cmd: ["python3"] } });
 */
export async function writeImageArchive(
  out: string,
  layerPath: string,
  params: { created: Date; config?: ImageRuntimeConfig },
  options: { signal?: AbortSignal } = {},
): Promise<BuiltImageArchive> {
  const layerSize = (await stat(layerPath)).size;
  const layerDigest = await sha256OfFile(layerPath, options.signal);
  const created = params.created.toISOString();
  const config = JSON.stringify({
    architecture: "amd64",
    os: "linux",
    created,
    config: { Env: ["PATH=/usr/local/bin:/usr/bin:/bin"], ...params.config },
    rootfs: { type: "layers", diff_ids: [`sha256:${layerDigest}`] },
    history: [{ created, created_by: "airqube writeImageArchive" }],
  });
  const configDigest = createHash("sha256").update(config).digest("hex");
  const manifest = JSON.stringify([
    { Config: `${configDigest}.json`, RepoTags: null, Layers: [`${layerDigest}/layer.tar`] },
  ]);
  const common = { mtime: params.created, uid: 0, gid: 0, uname: "", gname: "", mode: 0o644 };
  const pack = tar.pack();
  const partial = `${out}.partial`;
  const written = pipeline(pack, createWriteStream(partial), options.signal ? { signal: options.signal } : {});
  try {
    pack.entry({ ...common, name: `${configDigest}.json` }, config);
    pack.entry({ ...common, name: `${layerDigest}/`, type: "directory", mode: 0o755 });
    const entry = pack.entry({ ...common, name: `${layerDigest}/layer.tar`, size: layerSize });
    await pipeline(createReadStream(layerPath, { highWaterMark: 1 << 20 }), entry);
    pack.entry({ ...common, name: "manifest.json" }, manifest);
    pack.finalize();
    await written;
    const archiveDigest = `sha256:${await sha256OfFile(partial, options.signal)}`;
    const archiveBytes = (await stat(partial)).size;
    await rename(partial, out);
    return { imageId: `sha256:${configDigest}`, archiveDigest, archiveBytes };
  } catch (error) {
    pack.destroy();
    await written.catch(() => undefined);
    await rm(partial, { force: true });
    throw new PlatformError("IMAGE_BUILD_FAILED", "Could not write the image archive", {
      details: `${out}: ${(error as Error).message}`,
      cause: error,
    });
  }
}
