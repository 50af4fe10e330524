/**
 * Image → initramfs for the micro-VM tier. The qube's image is exported from Docker (`docker export` of a
 * created, never started container), turned into a newc cpio with our static init as `/init`, gzipped, and
 * cached under `<cacheDir>/<image digest>-<init hash>.cpio.gz`, so each image is converted once.
 *
 * The initramfs also carries, under `/.airqube/modules`, the kernel modules of the VM's channel (virtio_ring,
 * virtio, virtio_mmio, virtio_console), read from the booted kernel's /lib/modules tree (`loadVmModules`): the
 * Debian cloud kernel builds them as modules, and the init loads them before anything of the qube runs.
 *
 * What the conversion changes: device nodes, FIFOs and sockets are dropped (the init makes its own /dev);
 * set-uid and set-gid bits are cleared; hard links become copies; the paths the init owns (`init`,
 * `.airqube`, `dev`, `proc`, `sys`, `tmp`, `scratch`, `input`, `output`) are replaced by empty directories.
 */

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, lstat, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join, posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { promisify } from "node:util";
import { createGzip } from "node:zlib";
import type Docker from "dockerode";
import tar from "tar-stream";
import { AirqubeError, PlatformError, UserError } from "../../qube/errors.js";
import { imageDigest } from "../images.js";
import { type CpioEntry, CpioWriter } from "./cpio.js";

/** Top-level names the VM init owns; the image's versions are not copied. */
export const RESERVED_TOP = new Set(["init", ".airqube", "dev", "proc", "sys", "tmp", "scratch", "input", "output"]);

/** One kernel module for the initramfs, uncompressed (`name` without `.ko`, as vm-port.h loads it). */
export interface VmModule {
  name: string;
  data: Buffer;
}

/** The channel's modules in load order, by their path under /lib/modules/<release> (without `.ko`). */
export const VM_MODULES = [
  "kernel/drivers/virtio/virtio_ring",
  "kernel/drivers/virtio/virtio",
  "kernel/drivers/virtio/virtio_mmio",
  "kernel/drivers/char/virtio_console",
] as const;

/** The kernel release of a Debian kernel image path (`/boot/vmlinuz-6.1.0-57-cloud-amd64` -> `6.1.0-57-cloud-amd64`). */
export function kernelRelease(kernel: string): string | undefined {
  const match = /^vmlinuz-(.+)$/.exec(basename(kernel));
  return match?.[1];
}

const run = promisify(execFile);

/**
 * Reads the channel's modules for the kernel that the VM boots, from `AIRQUBE_VM_MODULES` or
 * /lib/modules/<release> (`.ko`, or `.ko.xz` / `.ko.zst` decompressed with xz / zstd). A module the kernel has
 * built in (listed in modules.builtin) is skipped; one that is neither there nor built in is an error, as is a
 * kernel whose release cannot be told from its file name.
 *
 * @example
 * const modules = await loadVmModules("/boot/vmlinuz-6.1.0-57-cloud-amd64"); // [{ name: "virtio_ring", ... }, ...]
 */
export async function loadVmModules(kernel: string, modulesDir = process.env.AIRQUBE_VM_MODULES): Promise<VmModule[]> {
  const release = kernelRelease(kernel);
  const dir = modulesDir ?? (release ? join("/lib/modules", release) : undefined);
  if (!dir)
    throw new PlatformError("VM_MODULES_MISSING", "Cannot tell which kernel modules go with the micro-VM kernel", {
      details: `${kernel}: name it vmlinuz-<release>, or set AIRQUBE_VM_MODULES to its /lib/modules/<release>`,
    });
  const builtin = await readFile(join(dir, "modules.builtin"), "utf8").catch(() => "");
  const modules: VmModule[] = [];
  for (const path of VM_MODULES) {
    const name = basename(path);
    const data = await readModule(join(dir, path));
    if (data) modules.push({ name, data });
    else if (!builtin.split("\n").includes(`${path}.ko`))
      throw new PlatformError("VM_MODULES_MISSING", "A kernel module of the micro-VM channel is missing", {
        details: `${join(dir, path)}.ko{,.xz,.zst}: install the kernel's modules (linux-image-cloud-amd64)`,
      });
  }
  return modules;
}

async function readModule(base: string): Promise<Buffer | undefined> {
  const plain = await readFile(`${base}.ko`).catch(() => undefined);
  if (plain) return plain;
  for (const [suffix, tool] of [
    [".ko.xz", "xz"],
    [".ko.zst", "zstd"],
  ] as const) {
    if (!(await stat(`${base}${suffix}`).catch(() => undefined))) continue;
    try {
      const { stdout } = await run(tool, ["-dc", `${base}${suffix}`], {
        encoding: "buffer",
        maxBuffer: 64 * 1024 * 1024,
      });
      return stdout;
    } catch (error) {
      throw new PlatformError("VM_MODULES_MISSING", `Could not decompress a kernel module with ${tool}`, {
        details: `${base}${suffix}: ${String((error as Error)?.message ?? error)}`,
        cause: error,
      });
    }
  }
  return undefined;
}

/** A short hash of the init and the modules: part of every cached initramfs's name. */
export function bootFilesHash(init: Buffer, modules: readonly VmModule[]): string {
  const hash = createHash("sha256").update(init);
  for (const module of modules) hash.update(module.name).update("\0").update(module.data);
  return hash.digest("hex").slice(0, 16);
}

/** The entries every micro-VM initramfs starts with: the init, the channel's modules and the mount points. */
export function initEntries(init: Buffer, modules: readonly VmModule[]): CpioEntry[] {
  return [
    { type: "file", path: "init", mode: 0o755, data: init },
    { type: "directory", path: ".airqube", mode: 0o700 },
    { type: "directory", path: ".airqube/modules", mode: 0o700 },
    ...modules.map(
      (module): CpioEntry => ({
        type: "file",
        path: `.airqube/modules/${module.name}.ko`,
        mode: 0o400,
        data: module.data,
      }),
    ),
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
  config: { initBinary: string; modules: readonly VmModule[]; cacheDir?: string; expectedDigest?: string },
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
  const initHash = bootFilesHash(init, config.modules);
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
    const rootfsBytes = await convert(exportPath, partial, init, config.modules, options.signal);
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
async function convert(
  exportPath: string,
  output: string,
  init: Buffer,
  modules: readonly VmModule[],
  signal?: AbortSignal,
): Promise<number> {
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
  for (const entry of initEntries(init, modules)) await writer.add(entry);
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
