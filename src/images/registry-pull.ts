/**
 * Pulling an image by digest from an allowlisted registry (Docker Registry HTTP API v2), without handing the
 * engine anything unchecked: the manifest (its digest is the one named), the config (its digest is the image
 * id the qube names) and every layer (digest and declared size) are fetched with byte bounds, written as a
 * `docker save` archive, and that archive goes through the same checks as a shipped one (layer count,
 * uncompressed bytes, file count, diff ids) before it is loaded. Tags are refused: only `name@sha256:...`.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { z } from "zod";
import { AirqubeError, PeerError, UserError } from "../qube/errors.js";
import { type ImageArchiveLimits, MAX_ARCHIVE_JSON_BYTES } from "./limits.js";

/** A reference by digest: `host[:port]/name@sha256:<64 hex>`. */
export interface DigestRef {
  host: string;
  name: string;
  digest: string;
}

const REF = /^([a-z0-9.-]+(?::[0-9]{1,5})?)\/([a-z0-9]+(?:[._/-][a-z0-9]+)*)@(sha256:[0-9a-f]{64})$/;

/**
 * Parses a pull reference. A tag (`name:tag`, or no digest) is refused: the bytes behind a tag can change.
 *
 * @example
 * parseDigestRef("127.0.0.1:5000/airqube/python@sha256:...") // { host: "127.0.0.1:5000", name: "airqube/python", digest }
 */
export function parseDigestRef(ref: string): DigestRef {
  const match = REF.exec(ref);
  if (!match) {
    if (/@sha256:/.test(ref) || !/\//.test(ref))
      throw new UserError("IMAGE_REF_INVALID", "The image reference is not host/name@sha256:<digest>", {
        details: ref,
      });
    throw new UserError("PULL_BY_TAG_REFUSED", "Images are pulled by digest only, never by tag", {
      details: `${ref}: name the manifest digest, e.g. host/name@sha256:...`,
    });
  }
  return { host: match[1]!, name: match[2]!, digest: match[3]! };
}

/** The registry base URL for `ref` when its host is on the allowlist (`http://127.0.0.1:5000` ...), else throws. */
export function allowedRegistry(ref: DigestRef, registries: readonly string[]): string {
  for (const registry of registries) {
    const url = new URL(registry);
    if (url.host === ref.host) return `${url.protocol}//${url.host}`;
  }
  throw new UserError("REGISTRY_NOT_ALLOWED", "The image's registry is not on this provider's allowlist", {
    details: `${ref.host} (allowed: ${registries.join(", ") || "none"})`,
  });
}

const descriptor = z.object({
  mediaType: z.string().max(256),
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
  size: z.int().nonnegative(),
});
const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().max(256).optional(),
  config: descriptor,
  layers: z.array(descriptor).min(1).max(4096),
});
const MANIFEST_TYPES = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
];

async function fetchChecked(
  url: string,
  digest: string,
  maxBytes: number,
  options: { signal?: AbortSignal; accept?: string },
): Promise<AsyncIterable<Buffer>> {
  let response: Response;
  try {
    response = await fetch(url, {
      ...(options.signal ? { signal: options.signal } : {}),
      headers: options.accept ? { accept: options.accept } : {},
      redirect: "error",
    });
  } catch (error) {
    throw new PeerError("REGISTRY_UNREACHABLE", "Could not reach the registry", {
      details: `${url}: ${(error as Error).message}`,
      cause: error,
    });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new PeerError("REGISTRY_REFUSED", "The registry did not serve the image", {
      details: `${url}: HTTP ${response.status}`,
    });
  }
  const length = Number(response.headers.get("content-length") ?? "0");
  if (length > maxBytes) {
    await response.body.cancel();
    throw new PeerError("IMAGE_ARCHIVE_TOO_LARGE", "The registry serves more than allowed", {
      details: `${url}: ${length} bytes`,
    });
  }
  const body = Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>);
  return (async function* () {
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBytes) {
        body.destroy();
        throw new PeerError("IMAGE_ARCHIVE_TOO_LARGE", "The registry serves more than allowed", {
          details: `${url}: over ${maxBytes} bytes`,
        });
      }
      hash.update(chunk);
      yield chunk;
    }
    if (`sha256:${hash.digest("hex")}` !== digest)
      throw new PeerError("IMAGE_DIGEST_MISMATCH", "The registry served other bytes than the digest names", {
        details: url,
      });
  })();
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/**
 * Fetches `ref` from its (allowlisted) registry into a `docker save` archive at `out`, checking every digest
 * and the declared sizes against `limits`; the config's digest must be `imageId`. Returns the archive digest
 * (the caller then runs the archive through `loadCheckedArchive`).
 *
 * @example
 * const archiveDigest = await pullToArchive("127.0.0.1:5000/x@sha256:...", imageId, ["http://127.0.0.1:5000"], limits, "/tmp/x.tar");
 */
export async function pullToArchive(
  reference: string,
  imageId: string,
  registries: readonly string[],
  limits: ImageArchiveLimits,
  out: string,
  options: { signal?: AbortSignal } = {},
): Promise<string> {
  const ref = parseDigestRef(reference);
  const base = `${allowedRegistry(ref, registries)}/v2/${ref.name}`;
  const manifestBytes = await collect(
    await fetchChecked(`${base}/manifests/${ref.digest}`, ref.digest, MAX_ARCHIVE_JSON_BYTES, {
      ...options,
      accept: MANIFEST_TYPES.join(", "),
    }),
  );
  let manifest: z.infer<typeof manifestSchema>;
  try {
    manifest = manifestSchema.parse(JSON.parse(manifestBytes.toString("utf8")));
  } catch (error) {
    throw new PeerError("IMAGE_MANIFEST_INVALID", "The registry's manifest is not a single-image manifest", {
      details: (error as Error).message.slice(0, 300),
      cause: error,
    });
  }
  if (manifest.config.digest !== imageId)
    throw new PeerError("IMAGE_DIGEST_MISMATCH", "The pulled image is not the one the qube names", {
      details: `${manifest.config.digest}, expected ${imageId}`,
    });
  if (manifest.layers.length > limits.maxLayers)
    throw new PeerError("IMAGE_TOO_MANY_LAYERS", "The image has too many layers", {
      details: `${manifest.layers.length}, at most ${limits.maxLayers}`,
    });
  const total = manifest.layers.reduce((sum, layer) => sum + layer.size, manifest.config.size);
  if (total > limits.maxArchiveBytes || manifest.config.size > MAX_ARCHIVE_JSON_BYTES)
    throw new PeerError("IMAGE_ARCHIVE_TOO_LARGE", "The image is larger than this provider accepts", {
      details: `${total} bytes, at most ${limits.maxArchiveBytes}`,
    });
  const config = await collect(
    await fetchChecked(
      `${base}/blobs/${manifest.config.digest}`,
      manifest.config.digest,
      manifest.config.size,
      options,
    ),
  );
  const pack = tar.pack();
  const hash = createHash("sha256");
  const written = pipeline(
    pack as unknown as Readable,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        yield chunk;
      }
    },
    createWriteStream(out, { flags: "wx", mode: 0o600 }),
  );
  written.catch(() => undefined);
  const common = { mtime: new Date(0), uid: 0, gid: 0, mode: 0o644 };
  try {
    const names: string[] = [];
    for (const layer of manifest.layers) {
      const hex = layer.digest.slice("sha256:".length);
      names.push(`${hex}/layer.tar`);
      pack.entry({ ...common, name: `${hex}/`, type: "directory", mode: 0o755 });
      const entry = pack.entry({ ...common, name: `${hex}/layer.tar`, size: layer.size });
      await pipeline(
        Readable.from(await fetchChecked(`${base}/blobs/${layer.digest}`, layer.digest, layer.size, options)),
        entry as unknown as NodeJS.WritableStream,
      );
    }
    const configName = `${imageId.slice("sha256:".length)}.json`;
    pack.entry({ ...common, name: configName }, config);
    pack.entry(
      { ...common, name: "manifest.json" },
      JSON.stringify([{ Config: configName, RepoTags: null, Layers: names }]),
    );
    pack.finalize();
    await written;
    return `sha256:${hash.digest("hex")}`;
  } catch (error) {
    pack.destroy();
    await written.catch(() => undefined);
    await rm(out, { force: true });
    if (error instanceof AirqubeError) throw error;
    throw new PeerError("IMAGE_PULL_FAILED", "Could not pull the image", {
      details: (error as Error).message,
      cause: error,
    });
  }
}
