/**
 * Turns what a user asks for (an image, a command, an input directory, output paths, limits, redundancy)
 * into a signed, sealed qube: inputs are hashed, the image digest is looked up when not given, the spec is
 * completed, signed and verified like a provider would verify it.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import Docker from "dockerode";
import {
  createQubeSpec,
  type Identity,
  type QubeSpecDraft,
  type RedundancyPolicy,
  signQubeSpec,
  type Tier,
  UserError,
  verifySignedQubeSpec,
} from "../qube/index.js";
import type { SandboxLimits } from "../sandbox/api.js";
import { imageDigest } from "../sandbox/images.js";
import type { SealedQube } from "./api.js";

/** What {@link sealQube} turns into a signed qube: the user's request before the spec is completed. */
export interface QubeRequest {
  /** Image reference, e.g. `"airqube/busybox:latest"`. */
  image: string;
  /** Docker image id (`"sha256:..."`) to pin; looked up in the local Docker when neither this nor `imageArchive` is given. */
  imageDigest?: string;
  /** Ship the image: the archive file, its digest and the image id (src/images/ship.ts); pins both digests. */
  imageArchive?: { path: string; imageId: string; archiveDigest: string };
  /** argv; the first element is the program. */
  command: string[];
  /** Environment variables of the qube. */
  env?: Record<string, string>;
  /** A directory whose regular files (recursively) become the inputs, under their relative paths. */
  inputDir?: string;
  /** Single input files (spec path → host file), alone or next to `inputDir`; a path may not be given twice. */
  inputFiles?: { path: string; source: string }[];
  /** Declared output paths, relative to the qube's output directory. */
  outputs: string[];
  /** Sandbox tier required; default `"container"`. */
  tier?: Tier;
  /** Resource limits; those not given take the spec defaults. */
  limits?: QubeSpecDraft["limits"];
  /** Default fixed, k = 3, quorum 2. */
  redundancy?: RedundancyPolicy;
  /** False when honest providers may produce different outputs (such a qube is never verified); default true. */
  deterministic?: boolean;
  /** Lifetime of the spec; default one hour. */
  ttlMs?: number;
}

/**
 * The spec limits that express a sandbox-level request (what a `Sandbox` caller such as the escape suite
 * asks for), raised to the spec's minimums where needed; limits not given keep the spec defaults.
 */
export function specLimitsFor(limits: Partial<SandboxLimits>): NonNullable<QubeSpecDraft["limits"]> {
  return {
    ...(limits.wallTimeMs ? { wallTimeMs: Math.max(1000, limits.wallTimeMs) } : {}),
    ...(limits.memoryBytes ? { memoryBytes: limits.memoryBytes } : {}),
    ...(limits.pids ? { pids: Math.max(8, limits.pids) } : {}),
    ...(limits.scratchBytes ? { scratchBytes: limits.scratchBytes } : {}),
    ...(limits.cpus ? { milliCpus: Math.max(100, Math.round(limits.cpus * 1000)) } : {}),
  };
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(root, path)));
    else if (entry.isFile()) out.push(path);
    else
      throw new UserError("INPUT_UNSUPPORTED", "Inputs may hold only regular files and directories", { details: path });
  }
  return out;
}

/**
 * Builds, signs and verifies a qube: hashes the inputs, looks up the image id in Docker when not given,
 * completes and signs the spec. Throws UserError `INPUT_UNREADABLE`, `INPUT_DUPLICATE`, `INPUT_UNSUPPORTED`
 * or `SPEC_INVALID`, `IMAGE_NOT_FOUND` when the image is not in Docker, PlatformError `DOCKER_UNAVAILABLE`.
 *
 * @example
 * const qube = await sealQube({ image: "airqube/busybox:latest", command: ["sh", "-c", "echo hi > /output/r"], outputs: ["r"] }, me);
 */
export async function sealQube(
  request: QubeRequest,
  identity: Identity,
  options: { now?: Date; docker?: Docker } = {},
): Promise<SealedQube> {
  const now = options.now ?? new Date();
  const digest =
    request.imageArchive?.imageId ??
    request.imageDigest ??
    (await imageDigest(options.docker ?? new Docker(), request.image));
  const inputs = new Map<string, string>();
  const described: NonNullable<QubeSpecDraft["inputs"]> = [];
  if (request.inputDir) {
    const info = await stat(request.inputDir).catch(() => undefined);
    if (!info?.isDirectory())
      throw new UserError("INPUT_UNREADABLE", "The input directory does not exist", { details: request.inputDir });
    for (const file of await listFiles(request.inputDir)) {
      const path = relative(request.inputDir, file).split(sep).join("/");
      inputs.set(path, file);
      described.push({ path, size: (await stat(file)).size, sha256: await sha256File(file) });
    }
  }
  for (const file of request.inputFiles ?? []) {
    if (inputs.has(file.path))
      throw new UserError("INPUT_DUPLICATE", "An input path is given twice", { details: file.path });
    const info = await stat(file.source).catch(() => undefined);
    if (!info?.isFile())
      throw new UserError("INPUT_UNREADABLE", "An input file does not exist or is not a regular file", {
        details: `${file.path}: ${file.source}`,
      });
    inputs.set(file.path, file.source);
    described.push({ path: file.path, size: info.size, sha256: await sha256File(file.source) });
  }
  const spec = createQubeSpec({
    image: {
      ref: request.image,
      digest,
      ...(request.imageArchive ? { archiveDigest: request.imageArchive.archiveDigest } : {}),
    },
    command: request.command,
    env: request.env ?? {},
    inputs: described,
    outputs: request.outputs,
    ...(request.tier ? { tier: request.tier } : {}),
    ...(request.limits ? { limits: request.limits } : {}),
    ...(request.redundancy ? { redundancy: request.redundancy } : {}),
    deterministic: request.deterministic ?? true,
    expiresAt: new Date(now.getTime() + (request.ttlMs ?? 3600_000)),
    requestor: identity.peerId,
  });
  return {
    spec: verifySignedQubeSpec(signQubeSpec(spec, identity), { now, source: "user" }),
    inputs,
    ...(request.imageArchive ? { imageArchive: request.imageArchive.path } : {}),
  };
}
