/**
 * Output normalisation: the deterministic manifest of a qube's outputs, and its root.
 *
 * The sandbox layer lists the regular files it collected from the declared outputs (path relative to the
 * output directory, size, SHA-256, and optionally mode, mtime and owner). `buildOutputManifest` checks
 * them against the spec (declared paths, file and byte limits), keeps the files under
 * `normalise.include`, drops the metadata the spec strips, and sorts by UTF-8 path bytes. Honest
 * providers of a deterministic qube therefore produce byte-identical manifests, and
 *
 *   outputs root = "sha256:" + hex(SHA-256(JCS(manifest)))
 *
 * is what commitments, reveals and result statements carry. Only regular files appear (directories are
 * implied by paths; empty directories are not part of the result).
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { canonicalBytes, parseJsonBytes } from "./canonical.js";
import { type Source, sourceError } from "./fault.js";
import { comparePaths, isPathUnder } from "./paths.js";
import { boundedInt, relativePathSchema, sha256HexSchema } from "./schemas.js";
import { LIMIT_BOUNDS, type QubeSpec } from "./spec.js";
import { validate } from "./validate.js";

/** Default byte limit of an encoded manifest. */
export const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;

const UINT32 = 2 ** 32 - 1;

/** One collected output file, as the sandbox layer reports it (untrusted: validated). */
export const outputFileSchema = z.strictObject({
  path: relativePathSchema,
  size: boundedInt(0, LIMIT_BOUNDS.outputBytes[1]),
  sha256: sha256HexSchema,
  /** Permission bits (0..0o7777). */
  mode: boundedInt(0, 0o7777).optional(),
  /** Modification time, integer milliseconds since the epoch. */
  mtimeMs: z.int().optional(),
  uid: boundedInt(0, UINT32).optional(),
  gid: boundedInt(0, UINT32).optional(),
});
/** One file of an output manifest, as validated by {@link outputFileSchema}. */
export type ManifestEntry = z.infer<typeof outputFileSchema>;

/** The manifest v1: sorted files with the metadata the spec keeps. */
export const outputManifestSchema = z
  .strictObject({
    version: z.literal(1),
    files: z.array(outputFileSchema).max(LIMIT_BOUNDS.outputFiles[1]),
  })
  .superRefine((m, ctx) => {
    for (let i = 1; i < m.files.length; i++) {
      if (comparePaths(m.files[i - 1]!.path, m.files[i]!.path) >= 0) {
        ctx.addIssue({ code: "custom", path: ["files", i, "path"], message: "paths must be sorted and unique" });
        return;
      }
    }
  });
/** An output manifest, as validated by {@link outputManifestSchema}; its root is {@link outputsRootOf}. */
export type OutputManifest = z.infer<typeof outputManifestSchema>;

/**
 * Builds the normalised manifest of collected outputs under a spec's rules. Throws PeerError
 * `OUTPUT_INVALID` (bad record, duplicate, a path both file and directory, metadata missing that the
 * spec keeps), `OUTPUT_UNDECLARED` (a file outside the declared outputs) or `OUTPUT_LIMIT`.
 *
 * @example
 * const manifest = buildOutputManifest(collected, spec);
 * const root = outputsRootOf(manifest);
 */
export function buildOutputManifest(
  files: readonly unknown[],
  spec: Pick<QubeSpec, "outputs" | "normalise" | "limits">,
  options: { source?: Source } = {},
): OutputManifest {
  const source = options.source ?? "peer";
  const fail = (code: string, message: string, details: string) => sourceError(source, code, message, { details });
  if (!Array.isArray(files)) throw fail("OUTPUT_INVALID", "Outputs must be a list", "not an array");
  if (files.length > spec.limits.outputFiles) {
    throw fail("OUTPUT_LIMIT", "Too many output files", `${files.length}, limit ${spec.limits.outputFiles}`);
  }
  const records = validate(z.array(outputFileSchema), files, { code: "OUTPUT_INVALID", what: "output list", source });
  let total = 0;
  const seen = new Set<string>();
  for (const file of records) {
    if (!spec.outputs.some((o) => isPathUnder(file.path, o))) {
      throw fail("OUTPUT_UNDECLARED", "An output file is not under a declared output", JSON.stringify(file.path));
    }
    if (seen.has(file.path)) throw fail("OUTPUT_INVALID", "Duplicate output file", JSON.stringify(file.path));
    seen.add(file.path);
    total += file.size;
  }
  if (total > spec.limits.outputBytes) {
    throw fail("OUTPUT_LIMIT", "Outputs are larger than allowed", `${total} bytes, limit ${spec.limits.outputBytes}`);
  }
  for (const path of seen) {
    const segments = path.split("/");
    for (let n = 1; n < segments.length; n++) {
      const parent = segments.slice(0, n).join("/");
      if (seen.has(parent))
        throw fail("OUTPUT_INVALID", "A path is both a file and a directory", JSON.stringify(parent));
    }
  }
  const rules = spec.normalise;
  const kept = records
    .filter((f) => rules.include.some((p) => isPathUnder(f.path, p)))
    .map((f) => {
      const entry: ManifestEntry = { path: f.path, size: f.size, sha256: f.sha256 };
      if (!rules.stripModes) entry.mode = required(f.mode, "mode", f.path, fail);
      if (!rules.stripTimestamps) entry.mtimeMs = required(f.mtimeMs, "mtimeMs", f.path, fail);
      if (!rules.stripOwners) {
        entry.uid = required(f.uid, "uid", f.path, fail);
        entry.gid = required(f.gid, "gid", f.path, fail);
      }
      return entry;
    })
    .sort((a, b) => comparePaths(a.path, b.path));
  return { version: 1, files: kept };
}

/**
 * The outputs root of a manifest: "sha256:" + hex(SHA-256(JCS(manifest))).
 *
 * @example
 * outputsRootOf({ version: 1, files: [] }); // "sha256:..." of '{"files":[],"version":1}'
 */
export function outputsRootOf(manifest: OutputManifest): string {
  return `sha256:${createHash("sha256").update(canonicalBytes(manifest)).digest("hex")}`;
}

/** The canonical bytes of a manifest (what the root hashes). */
export function encodeOutputManifest(manifest: OutputManifest): Uint8Array {
  return canonicalBytes(manifest);
}

/**
 * Decodes manifest bytes (byte limit first) and, with `expectedRoot`, checks they hash to it.
 * Throws `TOO_LARGE`, `JSON_INVALID`, `MANIFEST_INVALID`, `OUTPUTS_ROOT_MISMATCH`.
 *
 * @example
 * const manifest = decodeOutputManifest(bytes, { expectedRoot: statement.outputsRoot });
 */
export function decodeOutputManifest(
  bytes: Uint8Array,
  options: { maxBytes?: number; expectedRoot?: string; source?: Source } = {},
): OutputManifest {
  const source = options.source ?? "peer";
  const value = parseJsonBytes(bytes, {
    maxBytes: options.maxBytes ?? MAX_MANIFEST_BYTES,
    what: "outputs manifest",
    source,
  });
  const manifest = validate(outputManifestSchema, value, {
    code: "MANIFEST_INVALID",
    what: "outputs manifest",
    source,
  });
  if (options.expectedRoot !== undefined) {
    const root = outputsRootOf(manifest);
    if (root !== options.expectedRoot) {
      throw sourceError(source, "OUTPUTS_ROOT_MISMATCH", "The outputs manifest does not match its root", {
        details: `expected ${options.expectedRoot}, got ${root}`,
      });
    }
  }
  return manifest;
}

function required<T>(
  value: T | undefined,
  field: string,
  path: string,
  fail: (code: string, message: string, details: string) => Error,
): T {
  if (value === undefined) {
    throw fail("OUTPUT_INVALID", `The spec keeps ${field} but an output file has none`, JSON.stringify(path));
  }
  return value;
}
