/**
 * `deploy`: checks the task package (a `docker save` archive) before anything of it reaches the engine, loads
 * it, and records the image in `W/deploy.json`. The archive's own digest and the image id its manifest names
 * are read in one bounded pass; one of them must be in the runtime's accepted list; then the archive is checked
 * against itself (the config hashes to the image id, the layers to the config's diff ids, Airqube's archive
 * limits: src/images/load-archive.ts) and loaded, and the engine's image id is checked again.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type Docker from "dockerode";
import tar from "tar-stream";
import { z } from "zod";
import { DEFAULT_IMAGE_ARCHIVE_LIMITS, type ImageArchiveLimits, MAX_ARCHIVE_JSON_BYTES } from "../../images/limits.js";
import { ImageArchiveError, loadCheckedArchive } from "../../images/load-archive.js";
import { AirqubeError, PeerError, UserError } from "../../qube/errors.js";
import { type DeployState, type RuntimeConfig, writeDeployState } from "./state.js";

/** The volumes every deployed activity gets (exe-unit creates `W/<name>` and maps transfers to them). */
export const RUNTIME_VOLUMES = [
  { name: "vol-input", path: "/input" },
  { name: "vol-output", path: "/output" },
] as const;

/** The DeployResult JSON exe-unit reads from `deploy`'s stdout. */
export function deployResult(error?: string): {
  valid: { Ok: string } | { Err: string };
  vols: { name: string; path: string }[];
  startMode: "blocking";
} {
  return {
    valid: error === undefined ? { Ok: "" } : { Err: error },
    vols: RUNTIME_VOLUMES.map((v) => ({ ...v })),
    startMode: "blocking",
  };
}

const manifestSchema = z.array(z.object({ Config: z.string().max(256) })).length(1);

/**
 * Reads the archive once: its sha256 and the image id its manifest names (the config's file name: `<hex>.json`,
 * or `blobs/sha256/<hex>`). Nothing but manifest.json is kept in memory.
 */
async function archiveDigests(
  path: string,
  options: { signal?: AbortSignal },
): Promise<{ archiveDigest: string; claimedImageId: string | undefined }> {
  const hash = createHash("sha256");
  const file = createReadStream(path, {
    highWaterMark: 1 << 20,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  file.on("data", (chunk) => hash.update(chunk as Buffer));
  const extract = tar.extract();
  file.on("error", (error) => extract.destroy(error));
  file.pipe(extract);
  let manifest: Buffer | undefined;
  try {
    for await (const entry of extract) {
      if (entry.header.name === "manifest.json" && entry.header.type === "file") {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > MAX_ARCHIVE_JSON_BYTES)
            throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The task package's manifest is too large");
          chunks.push(chunk);
        }
        manifest = Buffer.concat(chunks);
      } else entry.resume();
    }
  } catch (error) {
    file.destroy();
    extract.destroy();
    if (error instanceof AirqubeError) throw error;
    throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The task package is not a valid tar archive", {
      details: (error as Error).message,
      cause: error,
    });
  }
  let claimedImageId: string | undefined;
  try {
    const parsed = manifestSchema.safeParse(JSON.parse(manifest?.toString("utf8") ?? "null"));
    const hex = parsed.success
      ? /^(?:blobs\/sha256\/)?([0-9a-f]{64})(?:\.json)?$/.exec(parsed.data[0]!.Config)?.[1]
      : "";
    claimedImageId = hex ? `sha256:${hex}` : undefined;
  } catch {
    claimedImageId = undefined;
  }
  return { archiveDigest: `sha256:${hash.digest("hex")}`, claimedImageId };
}

/** Options of {@link deployTaskPackage}. */
export interface DeployOptions {
  workdir: string;
  taskPackage: string | undefined;
  config: RuntimeConfig;
  docker: Docker;
  limits?: ImageArchiveLimits;
  signal?: AbortSignal;
  now?: () => Date;
}

/**
 * Checks, loads and records the task package; creates `W/vol-input` and `W/vol-output` if missing.
 *
 * @throws UserError `RUNTIME_TASK_PACKAGE_MISSING`, `RUNTIME_NO_IMAGES_ACCEPTED`; PeerError `RUNTIME_IMAGE_NOT_ACCEPTED`;
 * the archive checks' ImageArchiveError codes (`IMAGE_ARCHIVE_TOO_LARGE`, `IMAGE_DIGEST_MISMATCH`, ...); PlatformError
 * `IMAGE_LOAD_FAILED`.
 * @example
 * const state = await deployTaskPackage({ workdir, taskPackage, config, docker: new Docker() });
 */
export async function deployTaskPackage(options: DeployOptions): Promise<DeployState> {
  const { workdir, taskPackage, config } = options;
  const limits = options.limits ?? DEFAULT_IMAGE_ARCHIVE_LIMITS;
  const signal = options.signal ? { signal: options.signal } : {};
  if (!taskPackage)
    throw new UserError("RUNTIME_TASK_PACKAGE_MISSING", "deploy needs --task-package (a `docker save` archive)");
  const info = await stat(taskPackage).catch((error: unknown) => {
    throw new UserError("RUNTIME_TASK_PACKAGE_MISSING", "The task package cannot be read", {
      details: taskPackage,
      cause: error,
    });
  });
  if (!info.isFile())
    throw new UserError("RUNTIME_TASK_PACKAGE_MISSING", "The task package is not a file", { details: taskPackage });
  if (info.size > limits.maxArchiveBytes)
    throw new ImageArchiveError("IMAGE_ARCHIVE_TOO_LARGE", "The task package is larger than this runtime accepts", {
      details: `${info.size} bytes, at most ${limits.maxArchiveBytes}`,
    });
  if (config.images.length === 0)
    throw new UserError("RUNTIME_NO_IMAGES_ACCEPTED", "This runtime accepts no image yet", {
      details: "list image ids or archive digests in config.json `images` or AIRQUBE_RUNTIME_IMAGES",
    });
  const { archiveDigest, claimedImageId } = await archiveDigests(taskPackage, signal);
  const accepted =
    config.images.includes(archiveDigest) || (claimedImageId !== undefined && config.images.includes(claimedImageId));
  if (!accepted)
    throw new PeerError("RUNTIME_IMAGE_NOT_ACCEPTED", "The task package's image is not one this runtime accepts", {
      details: `archive ${archiveDigest}, image ${claimedImageId ?? "unnamed"}; accepted: ${config.images.join(", ")}`,
    });
  if (!claimedImageId)
    throw new ImageArchiveError("IMAGE_ARCHIVE_INVALID", "The task package's manifest names no image config");
  // the archive against itself: the config hashes to the id the manifest names, the layers to its diff ids
  const loaded = await loadCheckedArchive(
    options.docker,
    taskPackage,
    { imageId: claimedImageId, archiveDigest },
    limits,
    signal,
  );
  await mkdir(join(workdir, "vol-input"), { recursive: true });
  await mkdir(join(workdir, "vol-output"), { recursive: true });
  const state: DeployState = {
    imageId: loaded.imageId,
    archiveDigest: loaded.archiveDigest,
    tier: config.tier,
    deployedAt: (options.now ?? (() => new Date()))().toISOString(),
  };
  await writeDeployState(workdir, state);
  return state;
}
