/** Bounds on an image archive that a provider receives or pulls, checked before anything reaches the engine. */
import { z } from "zod";

export interface ImageArchiveLimits {
  /** Largest archive file (the `docker save` tarball as shipped). */
  maxArchiveBytes: number;
  /** Most layers in the image. */
  maxLayers: number;
  /** Largest sum of the layers' uncompressed tar bytes (a gzip layer is inflated under this budget). */
  maxUncompressedBytes: number;
  /** Most entries (files, directories, links) over all layers. */
  maxFiles: number;
}

export const DEFAULT_IMAGE_ARCHIVE_LIMITS: ImageArchiveLimits = {
  maxArchiveBytes: 1024 * 1024 * 1024,
  maxLayers: 32,
  maxUncompressedBytes: 4 * 1024 * 1024 * 1024,
  maxFiles: 200_000,
};

/** Largest JSON document (manifest, config) inside an archive. */
export const MAX_ARCHIVE_JSON_BYTES = 1024 * 1024;

/** `sha256:` and 64 lower-case hex digits. */
export const sha256DigestSchema = z.string().regex(/^sha256:[0-9a-f]{64}$/, "must be sha256:<64 hex>");

/** The provider's image settings (part of its configuration). */
export const providerImagesConfigSchema = z.strictObject({
  /** Whether requestors may ship images (`image.archiveDigest`) to this provider. */
  acceptShipped: z.boolean().default(true),
  maxArchiveBytes: z
    .int()
    .min(1024 * 1024)
    .max(2 ** 40)
    .default(DEFAULT_IMAGE_ARCHIVE_LIMITS.maxArchiveBytes),
  maxLayers: z.int().min(1).max(256).default(DEFAULT_IMAGE_ARCHIVE_LIMITS.maxLayers),
  maxUncompressedBytes: z
    .int()
    .min(1024 * 1024)
    .max(2 ** 42)
    .default(DEFAULT_IMAGE_ARCHIVE_LIMITS.maxUncompressedBytes),
  maxFiles: z.int().min(1).max(10_000_000).default(DEFAULT_IMAGE_ARCHIVE_LIMITS.maxFiles),
  /**
   * Registries this provider pulls from, by digest only (`http://127.0.0.1:5000`, `https://registry.example`):
   * a spec whose `image.ref` is `host/name@sha256:...` on one of them is pulled when the image is missing.
   */
  registries: z
    .array(z.url({ protocol: /^https?$/ }).max(256))
    .max(16)
    .default([]),
  /** Size cap of the cache of shipped archives (least recently used entries not in use are evicted). */
  cacheBytes: z
    .int()
    .min(1024 * 1024)
    .max(2 ** 44)
    .default(8 * 1024 * 1024 * 1024),
});
export type ProviderImagesConfig = z.infer<typeof providerImagesConfigSchema>;
