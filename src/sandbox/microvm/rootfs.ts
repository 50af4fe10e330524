/**
 * Image → initramfs for the micro-VM tier. The qube's image is exported from Docker (`docker export` of a
 * created, never started container), turned into a newc cpio with our static init as `/init`, gzipped, and
 * cached under `<cacheDir>/<image digest>-<init hash>.cpio.gz`, so each image is converted once.
 *
 * What the conversion changes: device nodes, FIFOs and sockets are dropped (the init makes its own /dev);
 * set-uid and set-gid bits are cleared; hard links become copies; the paths the init owns (`init`,
 * `.airqube`, `dev`, `proc`, `sys`, `tmp`, `scratch`, `input`, `output`) are replaced by empty directories.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, lstat, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import type Docker from "dockerode";
import tar from "tar-stream";
import { AirqubeError, PlatformError, UserError } from "../../qube/errors.js";
import { imageDigest } from "../images.js";
import { type CpioEntry, CpioWriter } from "./cpio.js";

/** Top-level names the VM init owns; the image's versions are not copied. */
export const RESERVED_TOP = new Set(["init", ".airqube", "dev", "proc", "sys", "tmp", "scratch", "input", "output"]);

/** The entries every micro-VM initramfs starts with: the init and the mount points it uses. */
export function initEntries(init: Buffer): CpioEntry[] {
  return [
    { type: "file", path: "init", mode: 0o755, data: init },
    { type: "directory", path: ".airqube", mode: 0o700 },
    ...["dev", "proc", "sys", "scratch", "input", "output"].map(
      (path): CpioEntry => ({ type: "directory", path, mode: 0o755 }),
    ),
    { type: "directory", path: "tmp", mode: 0o1777 },
  ];
}

/** The default cache: a root-owned directory in the system temp dir, readable by the unprivileged QEMU. */
export function defaultCacheDir(): string {
  return process.env.AIRQUBE_VM_CACHE ?? join(tmpdir(), `airqube-vm-cache-${process.getuid?.() ?? 0}`);
}

/** Creates the cache directory, refusing one that is a symlink or belongs to someone else. */
export async function ensureCacheDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const info = await lstat(dir);
  if (!info.isDirectory() || (process.getuid && info.uid !== process.getuid())) {
    throw new PlatformError("VM_CACHE_UNSAFE", "The micro-VM cache directory is not ours", { details: dir });
  }
  await chmod(dir, 0o755);
}

/** Normalises an archive path from `docker export`; undefined for the root or anything that climbs out. */
function cleanPath(name: string): string | undefined {
  const normal = posix.normalize(`/${name}`).replace(/\/+$/, "");
  if (normal === "" || normal === "/" || normal.includes("\0")) return undefined;
  return normal.slice(1);
}

function reserved(path: string): boolean {
  return RESERVED_TOP.has(path.split("/")[0] ?? "");
}

export interface PreparedInitrd {
  /** Absolute path of the cached `.cpio.gz`. */
  path: string;
  /** The image's content digest (`sha256:...`). */
  imageDigest: string;
  /** Size of the cached file in bytes. */
  bytes: number;
  /** Uncompressed size of the root file system (sizes the VM's memory). */
  rootfsBytes: number;
}

/**
 * Returns the cached initramfs for an image, converting it on first use.
 *
 * @example
 * const initrd = await prepareInitrd(docker, "airqube/busybox:latest", { initBinary: "images/build/vm-init" });
 */
export async function prepareInitrd(
  docker: Docker,
  image: string,
  config: { initBinary: string; cacheDir?: string; expectedDigest?: string },
  options: { signal?: AbortSignal } = {},
): Promise<PreparedInitrd> {
  options.signal?.throwIfAborted();
  const cacheDir = config.cacheDir ?? defaultCacheDir();
  const init = await readFile(config.initBinary).catch((error) => {
    throw new PlatformError("VM_INIT_MISSING", "The micro-VM init binary is missing", {
      details: `${config.initBinary}: build it with \`npm run build:vm\``,
      cause: error,
    });
  });
  const digest = await imageDigest(docker, image);
  if (config.expectedDigest && config.expectedDigest !== digest) {
    throw new UserError("IMAGE_DIGEST_MISMATCH", "The image is not the one the qube names", {
      details: `${image} is ${digest}, the qube names ${config.expectedDigest}`,
    });
  }
  const initHash = createHash("sha256").update(init).digest("hex").slice(0, 16);
  await ensureCacheDir(cacheDir);
  const path = join(cacheDir, `${digest.replace(/^sha256:/, "")}-${initHash}.cpio.gz`);
  const sizePath = `${path}.size`;
  const cached = await stat(path).catch(() => undefined);
  if (cached) {
    const rootfsBytes = Number(await readFile(sizePath, "utf8").catch(() => "0")) || cached.size * 4;
    return { path, imageDigest: digest, bytes: cached.size, rootfsBytes };
  }

  const stamp = randomBytes(6).toString("hex");
  const exportPath = join(cacheDir, `.export-${stamp}.tar`);
  const partial = join(cacheDir, `.partial-${stamp}.cpio.gz`);
  let container: Docker.Container | undefined;
  try {
    container = await docker.createContainer({
      Image: digest,
      Entrypoint: ["/.airqube-never-run"],
      NetworkDisabled: true,
      HostConfig: { NetworkMode: "none" },
    });
    await pipeline(await container.export(), createWriteStream(exportPath, { mode: 0o600 }), {
      signal: options.signal ?? AbortSignal.timeout(300_000),
    });
    const rootfsBytes = await convert(exportPath, partial, init, options.signal);
    await chmod(partial, 0o644);
    await rename(partial, path);
    await writeFile(sizePath, String(rootfsBytes), { mode: 0o644 });
    return { path, imageDigest: digest, bytes: (await stat(path)).size, rootfsBytes };
  } catch (error) {
    if (error instanceof AirqubeError) throw error;
    throw new PlatformError("VM_IMAGE_CONVERT_FAILED", "Could not turn the image into a VM initramfs", {
      details: String((error as Error)?.message ?? error),
      cause: error,
    });
  } finally {
    if (container) await container.remove({ force: true }).catch(() => undefined);
    await rm(exportPath, { force: true });
    await rm(partial, { force: true });
  }
}

async function* entriesOf(exportPath: string): AsyncGenerator<{ header: tar.Header; data: Buffer }> {
  const extract = tar.extract();
  const feeding = pipeline(createReadStream(exportPath), extract).catch((error) => extract.destroy(error));
  for await (const entry of extract) {
    const parts: Buffer[] = [];
    for await (const chunk of entry as AsyncIterable<Buffer>) parts.push(chunk);
    yield { header: entry.header, data: Buffer.concat(parts) };
  }
  await feeding;
}

/** Two passes over the exported tar: first find hard-link targets, then write the cpio. Returns rootfs bytes. */
async function convert(exportPath: string, output: string, init: Buffer, signal?: AbortSignal): Promise<number> {
  const linkTargets = new Set<string>();
  for await (const { header } of entriesOf(exportPath)) {
    if (header.type === "link" && header.linkname) {
      const target = cleanPath(header.linkname);
      if (target) linkTargets.add(target);
    }
  }
  const gzip = createGzip({ level: 6 });
  const sink = createWriteStream(output, { mode: 0o600 });
  const done = pipeline(gzip, sink);
  const writer = new CpioWriter(gzip);
  let rootfsBytes = init.length;
  for (const entry of initEntries(init)) await writer.add(entry);
  const kept = new Map<string, { data: Buffer; mode: number; uid: number; gid: number }>();
  for await (const { header, data } of entriesOf(exportPath)) {
    signal?.throwIfAborted();
    const path = cleanPath(header.name);
    if (!path || reserved(path)) continue;
    const mode = (header.mode ?? 0o644) & 0o1777; // no set-uid / set-gid bits inside the VM
    const owner = { uid: header.uid ?? 0, gid: header.gid ?? 0 };
    if (header.type === "file" || header.type === "contiguous-file") {
      if (linkTargets.has(path)) kept.set(path, { data, mode, ...owner });
      rootfsBytes += data.length;
      await writer.add({ type: "file", path, mode, data, ...owner });
    } else if (header.type === "directory") {
      await writer.add({ type: "directory", path, mode, ...owner });
    } else if (header.type === "symlink" && header.linkname !== undefined) {
      await writer.add({ type: "symlink", path, target: header.linkname, ...owner });
    } else if (header.type === "link" && header.linkname) {
      const target = kept.get(cleanPath(header.linkname) ?? "");
      if (target) {
        rootfsBytes += target.data.length;
        await writer.add({ type: "file", path, ...target });
      }
    }
    // devices, FIFOs and anything else are dropped
  }
  await writer.finish();
  await done;
  return rootfsBytes;
}
