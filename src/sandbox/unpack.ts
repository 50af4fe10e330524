/**
 * The safe unpacker, in the manner of Qubes' qfile-unpacker: turns an untrusted tar stream into regular files
 * and directories under one destination, and nothing else. It rejects absolute paths, `..`, symlinks, hard
 * links, devices, FIFOs and duplicate names, and enforces per-file, total-byte, file-count and directory-count
 * (the same number) caps before a
 * byte is written. Everything is unpacked into a fresh staging directory first and moved into place only when
 * the whole archive was valid, so a rejected archive leaves nothing behind.
 */
import { createHash, randomBytes } from "node:crypto";
import { constants, type FileHandle, lstat, mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { PeerError, TimeoutError, UserError } from "../qube/errors.js";
import type { ArchiveLimits, SandboxOutput } from "./api.js";

/** Error codes of the unpacker, pinned by tests. */
export type UnpackErrorCode =
  | "ARCHIVE_BAD_PATH"
  | "ARCHIVE_BAD_TYPE"
  | "ARCHIVE_DUPLICATE"
  | "ARCHIVE_FILE_TOO_LARGE"
  | "ARCHIVE_TOO_LARGE"
  | "ARCHIVE_TOO_MANY_FILES"
  | "ARCHIVE_MALFORMED"
  | "ARCHIVE_CONFLICT";

const MAX_PATH_BYTES = 1024;
const MAX_DEPTH = 32;

function reject(code: UnpackErrorCode, message: string, details: string): PeerError {
  return new PeerError(code, message, { details });
}

/**
 * Checks one archive path and returns its `/`-separated relative form. Exported for tests and for the
 * network layer, which applies the same rule to manifest paths.
 */
export function safeRelativePath(raw: string): string {
  const name = raw.replace(/\/+$/, "");
  const shown = JSON.stringify(raw.slice(0, 200));
  if (name.length === 0) throw reject("ARCHIVE_BAD_PATH", "Archive entry has an empty name", shown);
  if (Buffer.byteLength(name) > MAX_PATH_BYTES)
    throw reject("ARCHIVE_BAD_PATH", "Archive entry name is too long", shown);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this rejects
  if (/[\u0000-\u001f\u007f\\]/.test(name))
    throw reject("ARCHIVE_BAD_PATH", "Archive entry name has control characters or backslashes", shown);
  if (name.startsWith("/")) throw reject("ARCHIVE_BAD_PATH", "Archive entry has an absolute path", shown);
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) throw reject("ARCHIVE_BAD_PATH", "Archive entry climbs out with '..'", shown);
  if (parts.length === 0) throw reject("ARCHIVE_BAD_PATH", "Archive entry has an empty name", shown);
  if (parts.length > MAX_DEPTH) throw reject("ARCHIVE_BAD_PATH", "Archive entry is nested too deep", shown);
  return parts.join("/");
}

/** Creates every directory of `relative` under `root`, refusing to pass through anything but real directories. */
async function ensureDirectory(root: string, relative: string): Promise<void> {
  let current = root;
  for (const part of relative.split("/").filter(Boolean)) {
    current = join(current, part);
    const info = await lstat(current).catch(() => undefined);
    if (info === undefined) await mkdir(current, { mode: 0o755 });
    else if (!info.isDirectory() || info.isSymbolicLink()) {
      throw reject("ARCHIVE_DUPLICATE", "Archive entry collides with a file", relative);
    }
  }
}

/** Options of {@link unpackTar}. */
export interface UnpackOptions {
  /** Aborts unpacking (TimeoutError `ABORTED`). */
  signal?: AbortSignal;
  /** Leading path (e.g. `output`) removed from every entry; entries outside it are rejected. */
  stripPrefix?: string;
}

/**
 * Unpacks an untrusted tar stream into `destination` and returns the files it wrote, sorted by path.
 * Nothing is written unless the whole archive is valid.
 *
 * @throws PeerError `ARCHIVE_BAD_PATH`, `ARCHIVE_DUPLICATE`, `ARCHIVE_TOO_MANY_FILES`, `ARCHIVE_TOO_LARGE`,
 * `ARCHIVE_BAD_TYPE`, `ARCHIVE_FILE_TOO_LARGE`, `ARCHIVE_MALFORMED`; UserError `ARCHIVE_CONFLICT` when
 * `destination` already holds a path the archive needs; TimeoutError `ABORTED`.
 *
 * @example
 * const files = await unpackTar(stream, "/tmp/out", { maxFileBytes: 1 << 20, maxTotalBytes: 8 << 20, maxFiles: 100 });
 */
export async function unpackTar(
  source: AsyncIterable<Uint8Array> | Readable,
  destination: string,
  limits: ArchiveLimits,
  options: UnpackOptions = {},
): Promise<SandboxOutput[]> {
  const target = resolve(destination);
  await mkdir(target, { recursive: true });
  const staging = join(target, `.airqube-staging-${randomBytes(6).toString("hex")}`);
  await mkdir(staging, { mode: 0o700 });
  try {
    const files = await extractInto(source, staging, limits, options);
    await moveIntoPlace(staging, target);
    return files;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

async function extractInto(
  source: AsyncIterable<Uint8Array> | Readable,
  staging: string,
  limits: ArchiveLimits,
  options: UnpackOptions,
): Promise<SandboxOutput[]> {
  const extract = tar.extract();
  const files: SandboxOutput[] = [];
  const seen = new Set<string>();
  let total = 0;
  let directories = 0;
  const feeding = (async () => {
    try {
      for await (const chunk of source) {
        if (extract.destroyed) break;
        if (!extract.write(chunk)) {
          // wait for room, or for the extractor to be torn down after a rejected entry
          await new Promise<void>((r) => {
            const done = () => {
              extract.off("drain", done);
              extract.off("close", done);
              r();
            };
            extract.once("drain", done);
            extract.once("close", done);
          });
        }
      }
      if (!extract.destroyed) (extract as unknown as NodeJS.WritableStream).end();
    } catch (error) {
      extract.destroy(error as Error);
    }
  })();
  try {
    for await (const entry of extract) {
      options.signal?.throwIfAborted();
      const header = entry.header;
      let name = safeRelativePath(header.name);
      if (options.stripPrefix) {
        if (name === options.stripPrefix) {
          entry.resume();
          continue;
        }
        if (!name.startsWith(`${options.stripPrefix}/`))
          throw reject("ARCHIVE_BAD_PATH", "Archive entry outside the declared outputs", name);
        name = name.slice(options.stripPrefix.length + 1);
      }
      if (seen.has(name)) throw reject("ARCHIVE_DUPLICATE", "Archive has the same path twice", name);
      seen.add(name);
      if (header.type === "directory") {
        if (++directories > limits.maxFiles)
          throw reject("ARCHIVE_TOO_MANY_FILES", "Archive has too many directories", `limit ${limits.maxFiles}`);
        await ensureDirectory(staging, name);
        entry.resume();
        continue;
      }
      if (header.type !== "file") {
        throw reject(
          "ARCHIVE_BAD_TYPE",
          `Archive entry is a ${header.type ?? "unknown type"}, only files and directories are accepted`,
          name,
        );
      }
      const size = header.size ?? 0;
      if (files.length + 1 > limits.maxFiles)
        throw reject("ARCHIVE_TOO_MANY_FILES", "Archive has too many files", `limit ${limits.maxFiles}`);
      if (size > limits.maxFileBytes)
        throw reject(
          "ARCHIVE_FILE_TOO_LARGE",
          "Archive file is over the per-file cap",
          `${name}: ${size} > ${limits.maxFileBytes} bytes`,
        );
      if (total + size > limits.maxTotalBytes)
        throw reject("ARCHIVE_TOO_LARGE", "Archive is over the total-byte cap", `limit ${limits.maxTotalBytes} bytes`);
      total += size;
      await ensureDirectory(staging, dirname(name) === "." ? "" : dirname(name));
      const hash = createHash("sha256");
      let handle: FileHandle | undefined;
      let written = 0;
      try {
        handle = await open(
          join(staging, name),
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o644,
        );
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          written += chunk.length;
          if (written > size) throw reject("ARCHIVE_MALFORMED", "Archive entry is longer than its header says", name);
          hash.update(chunk);
          await handle.write(chunk);
        }
      } finally {
        await handle?.close();
      }
      if (written !== size)
        throw reject("ARCHIVE_MALFORMED", "Archive entry is truncated", `${name}: ${written} of ${size} bytes`);
      files.push({ path: name, size, sha256: hash.digest("hex") });
    }
  } catch (error) {
    extract.destroy();
    if (error instanceof PeerError || error instanceof UserError) throw error;
    if (options.signal?.aborted) throw new TimeoutError("ABORTED", "Unpacking was aborted", { cause: error });
    throw reject("ARCHIVE_MALFORMED", "Archive is not a valid tar stream", String((error as Error)?.message ?? error));
  } finally {
    await feeding;
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Moves the staged tree into `target`, refusing to overwrite anything that exists. */
async function moveIntoPlace(staging: string, target: string): Promise<void> {
  const entries = await readdir(staging);
  for (const entry of entries) {
    const destination = join(target, entry);
    const exists = await lstat(destination).catch(() => undefined);
    if (exists)
      throw new UserError("ARCHIVE_CONFLICT", "The output directory already holds a path the outputs need", {
        details: destination,
      });
  }
  for (const entry of entries) await rename(join(staging, entry), join(target, entry));
}
