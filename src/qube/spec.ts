/**
 * Qube spec v1: everything a provider needs to run a qube and everything both sides sign.
 * The schema is strict (unknown fields are rejected), every number is a bounded safe integer, and every
 * list that is a set (inputs, outputs, normalised paths) must be sorted by UTF-8 path bytes with no
 * duplicates, so one qube has exactly one canonical encoding and one id. `createQubeSpec` fills defaults
 * and sorts for authors; `parseQubeSpec` accepts only the complete, normal form.
 */
import { z } from "zod";
import { canonicalBytes } from "./canonical.js";
import { type Source, sourceError } from "./fault.js";
import { comparePaths, isPathUnder } from "./paths.js";
import {
  boundedInt,
  digestSchema,
  isoTimeSchema,
  peerIdSchema,
  relativePathSchema,
  sha256HexSchema,
  tierSchema,
} from "./schemas.js";
import { validate } from "./validate.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Largest canonical encoding of a spec, in bytes. */
export const MAX_SPEC_BYTES = 1 * MiB;
/** Longest time between `now` and a spec's expiry that a parser with `now` accepts. */
export const MAX_EXPIRY_MS = 30 * 24 * 3600 * 1000;

/** Inclusive [min, max] of every limit. */
export const LIMIT_BOUNDS = {
  /** CPU in thousandths of a core (1000 = one core). */
  milliCpus: [100, 256_000],
  memoryBytes: [16 * MiB, 64 * GiB],
  pids: [8, 4096],
  /** Writable scratch disk. */
  scratchBytes: [1 * MiB, 1024 * GiB],
  wallTimeMs: [1000, 24 * 3600 * 1000],
  /** Total bytes of declared outputs the provider returns. */
  outputBytes: [0, 4 * GiB],
  /** Number of output files the provider returns. */
  outputFiles: [0, 100_000],
} as const satisfies Record<string, readonly [number, number]>;

/** Limits used by `createQubeSpec` when the draft leaves them out. */
export const DEFAULT_QUBE_LIMITS = {
  milliCpus: 1000,
  memoryBytes: 512 * MiB,
  pids: 64,
  scratchBytes: 1 * GiB,
  wallTimeMs: 10 * 60 * 1000,
  outputBytes: 256 * MiB,
  outputFiles: 1000,
} as const;

/** Largest input file a spec may declare (providers declare their own, smaller, total in offers). */
export const MAX_INPUT_FILE_BYTES = 16 * GiB;
/** Largest total of a spec's inputs. */
export const MAX_INPUT_TOTAL_BYTES = 64 * GiB;
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is exactly what we reject
const NO_NUL = /^[^\u0000]*$/;

const limitsSchema = z.strictObject(
  Object.fromEntries(Object.entries(LIMIT_BOUNDS).map(([k, [min, max]]) => [k, boundedInt(min, max)])) as {
    [K in keyof typeof LIMIT_BOUNDS]: z.ZodInt;
  },
);

const imageSchema = z.strictObject({
  /** Human reference, e.g. "airqube/busybox:1". Informative only: the digest is what is checked. */
  ref: z
    .string()
    .min(1)
    .max(512)
    .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces"),
  /** Docker image id ("sha256:..." of the image config) the provider must run. */
  digest: digestSchema,
  /** SHA-256 of the image archive (`docker save` tar) when the requestor ships the image itself. */
  archiveDigest: digestSchema.optional(),
});

const inputFileSchema = z.strictObject({
  path: relativePathSchema,
  size: boundedInt(0, MAX_INPUT_FILE_BYTES),
  sha256: sha256HexSchema,
});

const envNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, "must be an environment variable name")
  .refine((name) => name !== "__proto__", "is reserved");

const networkSchema = z.discriminatedUnion("mode", [
  /** No network interface at all (the default and, in v1, the only mode). */
  z.strictObject({ mode: z.literal("none") }),
]);

const normaliseSchema = z.strictObject({
  /** Output paths (equal to or below declared outputs) that make up the compared result. */
  include: z.array(relativePathSchema).max(256),
  stripTimestamps: z.boolean(),
  stripOwners: z.boolean(),
  stripModes: z.boolean(),
  /** "bitwise" (outputs roots must be equal) or the name of a declared fuzzy comparator. */
  comparator: z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, "must be a lower-case comparator name"),
});

const redundancySchema = z.discriminatedUnion("mode", [
  /** Run on exactly k providers; `quorum` equal outputs roots (a majority of k) win. */
  z.strictObject({ mode: z.literal("fixed"), k: boundedInt(1, 16), quorum: boundedInt(1, 16) }),
  /**
   * BOINC-style adaptive replication: a provider trusted after `trustAfter` consecutive valid results runs
   * the qube alone except for spot checks (`spotCheckPermille` / 1000); otherwise replicas are added until
   * `quorum` agree, up to `maxReplicas`.
   */
  z.strictObject({
    mode: z.literal("adaptive"),
    quorum: boundedInt(1, 16),
    maxReplicas: boundedInt(1, 32),
    trustAfter: boundedInt(1, 1000),
    spotCheckPermille: boundedInt(0, 1000),
  }),
]);

/** The strict schema of a complete qube spec v1. */
export const qubeSpecSchema = z
  .strictObject({
    version: z.literal(1),
    image: imageSchema,
    /** argv; the first element is the program. */
    command: z.array(z.string().max(4096).regex(NO_NUL, "must not contain NUL")).min(1).max(256),
    env: z.record(envNameSchema, z.string().max(4096).regex(NO_NUL, "must not contain NUL")),
    /** Files placed (read-only) in the qube's input directory, sorted by path. */
    inputs: z.array(inputFileSchema).max(1024),
    /** Declared outputs (files or directories) in the qube's output directory, sorted. */
    outputs: z.array(relativePathSchema).min(1).max(256),
    limits: limitsSchema,
    network: networkSchema,
    /** The sandbox tier required (a stronger tier also satisfies it). */
    tier: tierSchema,
    normalise: normaliseSchema,
    redundancy: redundancySchema,
    /** False for qubes whose outputs honest providers may disagree on: such a qube is never "verified". */
    deterministic: z.boolean(),
    expiresAt: isoTimeSchema,
    /** The requestor's libp2p peer id, which is its signing key. */
    requestor: peerIdSchema,
  })
  .superRefine((spec, ctx) => {
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if (Object.keys(spec.env).length > 128) issue(["env"], "at most 128 variables");
    if (spec.inputs.reduce((total, input) => total + input.size, 0) > MAX_INPUT_TOTAL_BYTES)
      issue(["inputs"], `at most ${MAX_INPUT_TOTAL_BYTES} bytes in all`);
    checkSortedPaths(
      spec.inputs.map((i) => i.path),
      ["inputs"],
      issue,
    );
    checkSortedPaths(spec.outputs, ["outputs"], issue);
    checkSortedPaths(spec.normalise.include, ["normalise", "include"], issue);
    spec.normalise.include.forEach((p, i) => {
      if (!spec.outputs.some((o) => isPathUnder(p, o))) {
        issue(["normalise", "include", i], "must be a declared output or lie below one");
      }
    });
    const r = spec.redundancy;
    if (r.mode === "fixed" && (r.quorum > r.k || 2 * r.quorum <= r.k)) {
      issue(["redundancy", "quorum"], "must be a majority of k (more than k/2, at most k)");
    }
    if (r.mode === "adaptive" && r.quorum > r.maxReplicas) {
      issue(["redundancy", "quorum"], "must be at most maxReplicas");
    }
  });

/** A complete, validated qube spec v1. */
export type QubeSpec = z.infer<typeof qubeSpecSchema>;
/** A spec's resource limits; each lies within its {@link LIMIT_BOUNDS}. */
export type QubeLimits = QubeSpec["limits"];
/** One input file a spec declares: relative path, size in bytes and SHA-256 (hex) of its content. */
export type QubeInput = QubeSpec["inputs"][number];
/** Which outputs make up the compared result, what metadata is stripped, and the comparator. */
export type NormaliseRules = QubeSpec["normalise"];
/** How many providers run a qube and how many must agree: `fixed` (k and a majority quorum) or `adaptive`. */
export type RedundancyPolicy = QubeSpec["redundancy"];
/** The qube's network access; in v1 only `{ mode: "none" }` (no network interface). */
export type NetworkPolicy = QubeSpec["network"];

/** Options of {@link parseQubeSpec} and {@link createQubeSpec}. */
export interface ParseSpecOptions {
  /** Who supplied the spec. Default "user". */
  source?: Source;
  /** If given, an expired spec (or one expiring more than 30 days after `now`) is rejected. */
  now?: Date;
}

/**
 * Validates a complete spec (plain JSON data). Throws `SPEC_INVALID` with the failing paths,
 * `SPEC_EXPIRED`, or `TOO_LARGE`.
 *
 * @example
 * const spec = parseQubeSpec(JSON.parse(text), { now: new Date() });
 */
export function parseQubeSpec(value: unknown, options: ParseSpecOptions = {}): QubeSpec {
  const source = options.source ?? "user";
  const spec = validate(qubeSpecSchema, value, { code: "SPEC_INVALID", what: "qube spec", source });
  checkSpecSize(canonicalBytes(spec, { source }), source);
  if (options.now !== undefined) checkExpiry(spec, options.now, source);
  return spec;
}

/** Throws `TOO_LARGE` when a spec's canonical bytes exceed `MAX_SPEC_BYTES`. */
export function checkSpecSize(canonical: Uint8Array, source: Source = "user"): void {
  if (canonical.byteLength > MAX_SPEC_BYTES) {
    throw sourceError(source, "TOO_LARGE", "The qube spec is too large", {
      details: `${canonical.byteLength} bytes, limit ${MAX_SPEC_BYTES}`,
    });
  }
}

/** Throws `SPEC_EXPIRED` when `now` is at or past the spec's expiry, `SPEC_INVALID` when it is too far ahead. */
export function checkExpiry(spec: QubeSpec, now: Date, source: Source = "user"): void {
  const expires = Date.parse(spec.expiresAt);
  if (now.getTime() >= expires) {
    throw sourceError(source, "SPEC_EXPIRED", "The qube spec has expired", { details: `expired at ${spec.expiresAt}` });
  }
  if (expires - now.getTime() > MAX_EXPIRY_MS) {
    throw sourceError(source, "SPEC_INVALID", "The qube spec is invalid", {
      details: `expiresAt: must be at most 30 days after ${now.toISOString()}`,
    });
  }
}

/** A spec as an author writes it: only image, command, outputs, expiry and requestor are required. */
export interface QubeSpecDraft {
  image: QubeSpec["image"];
  command: string[];
  env?: Record<string, string>;
  inputs?: QubeInput[];
  outputs: string[];
  limits?: Partial<QubeLimits>;
  network?: NetworkPolicy;
  tier?: QubeSpec["tier"];
  normalise?: Partial<NormaliseRules>;
  redundancy?: RedundancyPolicy;
  deterministic?: boolean;
  expiresAt: string | Date;
  requestor: string;
}

/**
 * Completes a draft with defaults (limits {@link DEFAULT_QUBE_LIMITS}, no network, container tier, timestamps, owners
 * and modes stripped, bitwise comparison of all outputs, fixed redundancy k=3 quorum 2, deterministic),
 * sorts the path lists, writes `expiresAt` in canonical form, then validates like `parseQubeSpec`.
 *
 * @example
 * const spec = createQubeSpec({ image, command: ["sh", "-c", "wc -l /in/a > /out/n"], outputs: ["n"],
 *   inputs: [{ path: "a", size: 3, sha256 }], expiresAt: new Date(now + 3600e3), requestor: me.peerId });
 */
export function createQubeSpec(draft: QubeSpecDraft, options: ParseSpecOptions = {}): QubeSpec {
  if (typeof draft !== "object" || draft === null || Array.isArray(draft)) {
    throw sourceError(options.source ?? "user", "SPEC_INVALID", "The qube spec is invalid", {
      details: "(root): must be an object",
    });
  }
  const outputs = sortedStrings(draft.outputs);
  const inputs = Array.isArray(draft.inputs)
    ? [...draft.inputs].sort((a, b) => comparePaths(String(a?.path), String(b?.path)))
    : (draft.inputs ?? []);
  const complete = {
    ...draft,
    version: 1,
    env: draft.env ?? {},
    inputs,
    outputs,
    limits: { ...DEFAULT_QUBE_LIMITS, ...draft.limits },
    network: draft.network ?? { mode: "none" },
    tier: draft.tier ?? "container",
    normalise: {
      include: outputs,
      stripTimestamps: true,
      stripOwners: true,
      stripModes: true,
      comparator: "bitwise",
      ...draft.normalise,
    },
    redundancy: draft.redundancy ?? { mode: "fixed", k: 3, quorum: 2 },
    deterministic: draft.deterministic ?? true,
    expiresAt: normaliseTime(draft.expiresAt),
  };
  complete.normalise.include = sortedStrings(complete.normalise.include);
  return parseQubeSpec(complete, options);
}

function sortedStrings(list: unknown): unknown {
  return Array.isArray(list) && list.every((p) => typeof p === "string") ? [...list].sort(comparePaths) : list;
}

function normaliseTime(value: unknown): unknown {
  const t = value instanceof Date ? value.getTime() : typeof value === "string" ? Date.parse(value) : Number.NaN;
  return Number.isFinite(t) ? new Date(t).toISOString() : value;
}

function checkSortedPaths(
  paths: string[],
  at: PropertyKey[],
  issue: (path: PropertyKey[], message: string) => void,
): void {
  for (let i = 1; i < paths.length; i++) {
    const order = comparePaths(paths[i - 1]!, paths[i]!);
    if (order === 0) issue([...at, i], "duplicate path");
    else if (order > 0) issue([...at, i], "paths must be sorted by UTF-8 bytes");
  }
  // No path may lie below another: a file cannot also be a directory, and nothing is declared twice.
  const set = new Set(paths);
  paths.forEach((path, i) => {
    const segments = path.split("/");
    for (let n = 1; n < segments.length; n++) {
      const parent = segments.slice(0, n).join("/");
      if (set.has(parent)) {
        issue([...at, i], `lies below ${JSON.stringify(parent)}`);
        break;
      }
    }
  });
}
