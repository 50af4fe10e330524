/**
 * The provider's cache of shipped images: content-addressed (by image id, checked against the archive
 * digest), bounded in size, least recently used first out, and shared by concurrent qubes: one qube
 * receives an image while others that need it wait for that install instead of receiving it again, and an
 * image in use by a running qube is never evicted. Only images this cache loaded are ever removed; images the
 * operator loaded are left alone. Archives are deleted once loaded: the engine holds the image.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { type FileHandle, open, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type Docker from "dockerode";
import { z } from "zod";
import { AirqubeError, PeerError, PlatformError } from "../qube/errors.js";
import type { ProviderImagesConfig } from "./limits.js";
import { type ExpectedImage, type InspectedImageArchive, loadCheckedArchive } from "./load-archive.js";
import { allowedRegistry, parseDigestRef, pullToArchive } from "./registry-pull.js";

/** What a provider does about a qube's image. */
export type ImagePlan =
  | { kind: "present" }
  /** Another qube is receiving it now: wait for that install. */
  | { kind: "wait" }
  /** The requestor must ship it. */
  | { kind: "ship" }
  /** Pull it by digest from an allowlisted registry (the spec's `ref` is `host/name@sha256:...`). */
  | { kind: "pull"; ref: string }
  | { kind: "unavailable"; reason: string };

/** A reference whose first component is a registry host: `localhost/`, `a.b/`, `host:port/`. */
const REGISTRY_HOST = /^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+)(:[0-9]{1,5})?\/|^[a-z0-9.-]+:[0-9]{1,5}\//;

const indexSchema = z.record(
  z.string(),
  z.strictObject({ archiveDigest: z.string(), bytes: z.int().nonnegative(), lastUsedMs: z.number() }),
);
type Index = z.infer<typeof indexSchema>;

/**
 * The provider's image cache (see the file comment).
 *
 * @example
 * const cache = new ImageCache(join(dataDir, "images"), new Docker(), providerImagesConfigSchema.parse({}));
 */
export class ImageCache {
  private readonly installing = new Map<string, Promise<InspectedImageArchive>>();
  private readonly inUse = new Map<string, number>();
  private index: Index;
  private readonly indexFile: string;
  private readonly tmp: string;
  /** Archives received and loaded since start (a provider that had the image receives nothing). */
  installed = 0;

  constructor(
    readonly dir: string,
    private readonly docker: Docker,
    readonly config: ProviderImagesConfig,
    private readonly now: () => number = Date.now,
  ) {
    this.tmp = join(dir, "tmp");
    mkdirSync(this.tmp, { recursive: true });
    this.indexFile = join(dir, "index.json");
    let index: Index = {};
    try {
      index = indexSchema.parse(JSON.parse(readFileSync(this.indexFile, "utf8")));
    } catch {
      // no index yet, or a broken one: start empty (images loaded before are then the operator's)
    }
    this.index = index;
  }

  /** Removes leftovers of interrupted installs. */
  async sweep(): Promise<void> {
    await rm(this.tmp, { recursive: true, force: true });
    mkdirSync(this.tmp, { recursive: true });
  }

  /** Whether the engine has the image with exactly this id. */
  async present(imageId: string): Promise<boolean> {
    try {
      return (await this.docker.getImage(imageId).inspect()).Id === imageId;
    } catch {
      return false;
    }
  }

  /** What to do about `image` (the spec's): run it, wait for an install, ask for the archive, or refuse. */
  async plan(image: { ref?: string; digest: string; archiveDigest?: string | undefined }): Promise<ImagePlan> {
    if (this.installing.has(image.digest)) return { kind: "wait" };
    if (await this.present(image.digest)) return { kind: "present" };
    let pullRefusal: string | undefined;
    // a reference that names a registry host (Docker's convention: a dot, a port or localhost before the first
    // slash) asks for a pull: by digest, from a registry on the allowlist, or refused saying which it is not
    if (image.ref && REGISTRY_HOST.test(image.ref)) {
      try {
        allowedRegistry(parseDigestRef(image.ref), this.config.registries);
        return { kind: "pull", ref: image.ref };
      } catch (error) {
        const { message, details } = error as AirqubeError;
        pullRefusal = `${message}${details ? ` (${details})` : ""}`;
      }
    }
    if (!image.archiveDigest)
      return {
        kind: "unavailable",
        reason: pullRefusal ?? `image ${image.digest} is not available on this provider`,
      };
    if (!this.config.acceptShipped)
      return {
        kind: "unavailable",
        reason: `image ${image.digest} is not here and this provider takes no shipped images`,
      };
    return { kind: "ship" };
  }

  /** Waits for an install of `imageId` in progress (resolves at once when there is none). */
  async waitFor(imageId: string): Promise<void> {
    const pending = this.installing.get(imageId);
    if (!pending) return;
    try {
      await pending;
    } catch (error) {
      throw new PeerError("IMAGE_UNAVAILABLE", "The image could not be installed for another qube", {
        details: (error as AirqubeError).code ?? String(error),
        cause: error,
      });
    }
  }

  /**
   * Writes a shipped archive (already opened and bounded by the exchange) to a private file, checks it
   * ({@link loadCheckedArchive}: limits, archive digest, image id, layers), loads it, records it and evicts
   * what is over the size cap. Nothing of a refused archive stays on disk or in the engine.
   */
  async install(
    expected: ExpectedImage,
    source: AsyncIterable<Uint8Array>,
    options: { signal?: AbortSignal } = {},
  ): Promise<InspectedImageArchive> {
    if (this.installing.has(expected.imageId))
      throw new PeerError("IMAGE_INSTALLING", "The image is already being received for another qube");
    const work = this.receiveAndLoad(expected, source, options);
    this.installing.set(expected.imageId, work);
    work.catch(() => undefined);
    try {
      return await work;
    } finally {
      this.installing.delete(expected.imageId);
    }
  }

  /**
   * Pulls `image.ref` by digest from its allowlisted registry (src/images/registry-pull.ts) and loads it after
   * the same checks as a shipped archive. Concurrent qubes needing it wait for this pull.
   */
  async pull(image: { ref: string; digest: string }, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.installing.has(image.digest)) return this.waitFor(image.digest);
    const file = join(this.tmp, `${randomUUID()}.tar`);
    const work = (async () => {
      try {
        const archiveDigest = await pullToArchive(
          image.ref,
          image.digest,
          this.config.registries,
          this.config,
          file,
          options,
        );
        return await this.loadFile({ imageId: image.digest, archiveDigest }, file, options);
      } finally {
        await rm(file, { force: true });
      }
    })();
    this.installing.set(image.digest, work);
    work.catch(() => undefined);
    try {
      await work;
    } finally {
      this.installing.delete(image.digest);
    }
  }

  private async loadFile(
    expected: ExpectedImage,
    file: string,
    options: { signal?: AbortSignal },
  ): Promise<InspectedImageArchive> {
    const inspected = await loadCheckedArchive(this.docker, file, expected, this.config, options);
    this.index[expected.imageId] = {
      archiveDigest: expected.archiveDigest,
      bytes: inspected.archiveBytes,
      lastUsedMs: this.now(),
    };
    this.installed += 1;
    await this.evict(expected.imageId);
    await this.saveIndex();
    return inspected;
  }

  private async receiveAndLoad(
    expected: ExpectedImage,
    source: AsyncIterable<Uint8Array>,
    options: { signal?: AbortSignal },
  ): Promise<InspectedImageArchive> {
    const file = join(this.tmp, `${randomUUID()}.tar`);
    let handle: FileHandle | undefined;
    try {
      handle = await open(file, "wx", 0o600);
      let size = 0;
      for await (const piece of source) {
        size += piece.byteLength;
        if (size > this.config.maxArchiveBytes)
          throw new PeerError("IMAGE_ARCHIVE_TOO_LARGE", "The image archive is larger than this provider accepts", {
            details: `over ${this.config.maxArchiveBytes} bytes`,
          });
        await handle.write(piece);
      }
      await handle.close();
      handle = undefined;
      return await this.loadFile(expected, file, options);
    } catch (error) {
      if (error instanceof AirqubeError) throw error;
      throw new PlatformError("IMAGE_CACHE_FAILED", "Could not store the shipped image", {
        details: (error as Error).message,
        cause: error,
      });
    } finally {
      await handle?.close().catch(() => undefined);
      await rm(file, { force: true });
    }
  }

  /** Marks an image in use by a running qube (never evicted meanwhile); returns the release function. */
  acquire(imageId: string): () => void {
    this.inUse.set(imageId, (this.inUse.get(imageId) ?? 0) + 1);
    const entry = this.index[imageId];
    if (entry) entry.lastUsedMs = this.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.inUse.get(imageId) ?? 1) - 1;
      if (left <= 0) this.inUse.delete(imageId);
      else this.inUse.set(imageId, left);
    };
  }

  /** Bytes held by images this cache loaded. */
  usedBytes(): number {
    return Object.values(this.index).reduce((sum, entry) => sum + entry.bytes, 0);
  }

  /** Image ids this cache loaded, least recently used first. */
  entries(): string[] {
    return Object.entries(this.index)
      .sort((a, b) => a[1].lastUsedMs - b[1].lastUsedMs)
      .map(([id]) => id);
  }

  /** Removes least recently used images not in use (nor `keep`) until the cache is within its cap. */
  async evict(keep?: string): Promise<string[]> {
    const evicted: string[] = [];
    for (const imageId of this.entries()) {
      if (this.usedBytes() <= this.config.cacheBytes) break;
      if (imageId === keep || this.inUse.has(imageId) || this.installing.has(imageId)) continue;
      try {
        await this.docker.getImage(imageId).remove({ force: false, noprune: false });
      } catch (error) {
        // a container still uses it (or it is gone already): keep it recorded unless it is gone
        if ((error as { statusCode?: number }).statusCode !== 404) continue;
      }
      delete this.index[imageId];
      evicted.push(imageId);
    }
    if (evicted.length > 0) await this.saveIndex();
    return evicted;
  }

  private async saveIndex(): Promise<void> {
    const partial = `${this.indexFile}.${randomUUID()}`;
    await writeFile(partial, `${JSON.stringify(this.index)}\n`);
    await rename(partial, this.indexFile);
  }
}
