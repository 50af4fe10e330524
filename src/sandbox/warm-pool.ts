/**
 * The container tier's warm pool (as Qubes preloads disposable VMs, and as `MicroVmSandbox` preloads VMs):
 * N hardened containers created and started ahead of need, each with its init blocked on stdin
 * (`--await-qube`). A qube takes one only when nothing fixed at create time differs: the image digest and the
 * cgroup and tmpfs limits (cpus, memory, pids, scratch); the host-side limits (wall time, log and output caps)
 * are the qube's own. A taken container leaves the pool for good: it serves one qube and is destroyed after,
 * and a replacement is created in the background.
 */
import { randomUUID } from "node:crypto";
import type Docker from "dockerode";
import { UserError } from "../qube/errors.js";
import type { ArchiveLimits, SandboxLimits } from "./api.js";
import { type HardenedContainerConfig, INIT_PATH } from "./hardening.js";
import { imageDigest } from "./images.js";
import type { UidPool } from "./uid-pool.js";

/** Options of `new ContainerSandbox({ warm })`. */
export interface WarmOptions {
  /** The image whose containers are kept waiting. */
  image: string;
  /** How many containers to keep waiting (0..64). */
  count: number;
  /** The limits warm containers are created with (default: the default limits); other qubes start cold. */
  limits?: Partial<SandboxLimits>;
}

/** Bounds of the qube frame; airqube-init.c checks the same ones. */
export const QUBE_FRAME_MAGIC = "AQQ1";
export const QUBE_FRAME_MAX = 256 * 1024;
const MAX_ARGS = 4096;
const MAX_ENV = 4096;
const MAX_OUTPUTS = 64;

/**
 * Encodes the one frame a warm container's init accepts: "AQQ1", u32 BE length, then u32 BE argc, envc and
 * outc and as many NUL-terminated strings. Returns undefined when the qube cannot be expressed in it (a NUL
 * byte, an empty command, a bound exceeded): such a qube starts cold, where Docker decides as before.
 *
 * @example
 * const frame = encodeQubeFrame(["echo", "hi"], ["LANG=C"], ["/output"]);
 */
export function encodeQubeFrame(argv: string[], env: string[], outputs: string[]): Buffer | undefined {
  if (argv.length < 1 || argv.length > MAX_ARGS || env.length > MAX_ENV || outputs.length > MAX_OUTPUTS)
    return undefined;
  if (argv[0] === "") return undefined;
  const strings = [...argv, ...env, ...outputs];
  if (strings.some((s) => s.includes("\0"))) return undefined;
  if (env.some((entry) => entry.indexOf("=") <= 0)) return undefined;
  const parts = strings.map((s) => Buffer.from(`${s}\0`, "utf8"));
  const length = 12 + parts.reduce((sum, part) => sum + part.length, 0);
  if (length > QUBE_FRAME_MAX) return undefined;
  const head = Buffer.alloc(20);
  head.write(QUBE_FRAME_MAGIC, 0, "latin1");
  head.writeUInt32BE(length, 4);
  head.writeUInt32BE(argv.length, 8);
  head.writeUInt32BE(env.length, 12);
  head.writeUInt32BE(outputs.length, 16);
  return Buffer.concat([head, ...parts]);
}

/** True when two limits give the same container (the fields fixed at create time). */
export function sameContainerLimits(a: SandboxLimits, b: SandboxLimits): boolean {
  return (
    a.cpus === b.cpus &&
    a.memoryBytes === b.memoryBytes &&
    a.pids === b.pids &&
    a.scratchBytes === b.scratchBytes &&
    initLimitsArgument(a.output) === initLimitsArgument(b.output) // the init checks them
  );
}

/**
 * The init's `-l` argument: the output caps it checks before it sends any archive byte (the host checks them
 * again while unpacking).
 */
export function initLimitsArgument(output: ArchiveLimits): string {
  return `${output.maxFiles}:${output.maxFileBytes}:${output.maxTotalBytes}`;
}

/**
 * Keeps `count` warm containers of one image and one set of limits. With a `UidPool`, each warm container runs as
 * a uid of its own, taken when it is created and handed over with the container (`handOver`), so a qube served
 * warm keeps the one-uid-per-sandbox rule; a uid goes back only once its container is surely removed.
 */
export class WarmPool {
  private readonly ready: Docker.Container[] = [];
  /** The uid each created container (ready or starting) holds, by container id. */
  private readonly uidOf = new Map<string, number>();
  private readonly starting = new Set<Promise<void>>();
  private digest: string | undefined;
  private failures = 0;
  private closed = false;
  private readonly digestResolved: Promise<void>;

  constructor(
    private readonly docker: Docker,
    private readonly options: WarmOptions,
    readonly limits: SandboxLimits,
    /** Builds one warm container's create options (warmContainerConfig, owner label, any weakening). */
    private readonly config: (runId: string, identity: { uid?: number }) => HardenedContainerConfig,
    /** Uids for the warm containers, one each (absent: the hardening's default user). */
    private readonly uids?: UidPool,
  ) {
    if (!Number.isInteger(options.count) || options.count < 0 || options.count > 64)
      throw new UserError("WARM_INVALID", "The warm pool holds between 0 and 64 containers", {
        details: String(options.count),
      });
    this.digestResolved = imageDigest(docker, options.image).then((digest) => {
      this.digest = digest;
      this.refill();
    });
    this.digestResolved.catch(() => undefined); // warm() reports it; runs go cold meanwhile
  }

  /** Resolves when the pool is full (or has given up after repeated failures); returns how many are ready. */
  async full(options: { signal?: AbortSignal } = {}): Promise<number> {
    await this.digestResolved;
    while (!this.closed && this.ready.length < this.options.count && this.failures < 3) {
      options.signal?.throwIfAborted();
      if (this.starting.size === 0) this.refill();
      await Promise.race([...this.starting, new Promise((r) => setTimeout(r, 50))]);
    }
    return this.ready.length;
  }

  /**
   * Takes a ready container for a qube of this digest and these limits, or undefined (the qube starts cold).
   * The container leaves the pool for good; a replacement starts in the background.
   */
  take(digest: string, limits: SandboxLimits): Docker.Container | undefined {
    if (this.closed || digest !== this.digest || !sameContainerLimits(limits, this.limits)) return undefined;
    const container = this.ready.shift();
    if (container) this.refill();
    return container;
  }

  /**
   * The uid of a container `take` gave out, which the caller now holds and releases once the container is removed
   * (undefined without a uid pool). The pool forgets it.
   */
  handOver(container: Docker.Container): number | undefined {
    const uid = this.uidOf.get(container.id);
    this.uidOf.delete(container.id);
    return uid;
  }

  /** Destroys every waiting container, and those still starting. */
  async close(): Promise<void> {
    this.closed = true;
    await this.digestResolved.catch(() => undefined);
    await Promise.allSettled([...this.starting]);
    await Promise.all(this.ready.splice(0).map((c) => this.destroy(c)));
  }

  /** Removes a container the pool still holds; its uid goes back only when the removal surely happened. */
  private async destroy(container: Docker.Container): Promise<void> {
    const removed = await container.remove({ force: true, v: true }).then(
      () => true,
      (error: { statusCode?: number }) => error?.statusCode === 404,
    );
    const uid = this.uidOf.get(container.id);
    this.uidOf.delete(container.id);
    if (removed && uid !== undefined) this.uids?.release(uid);
  }

  private refill(): void {
    while (
      !this.closed &&
      this.digest &&
      this.failures < 3 &&
      this.ready.length + this.starting.size < this.options.count
    ) {
      const starting: Promise<void> = this.create(this.digest)
        .then(
          (container) => {
            this.failures = 0;
            if (this.closed) return this.destroy(container);
            this.ready.push(container);
          },
          () => {
            this.failures++;
          },
        )
        .catch(() => undefined)
        .finally(() => {
          this.starting.delete(starting);
          if (this.failures > 0 && this.failures < 3) this.refill();
        });
      this.starting.add(starting);
    }
  }

  private async create(digest: string): Promise<Docker.Container> {
    const uid = this.uids?.acquire(); // UID_EXHAUSTED: this container is not made (the qube starts cold)
    let container: Docker.Container;
    try {
      container = await this.docker.createContainer({
        Image: digest, // the digest checked once, never a tag that could move
        Entrypoint: [INIT_PATH],
        Cmd: ["--await-qube", "-l", initLimitsArgument(this.limits.output)],
        Env: [], // the qube's environment comes in its frame
        ...this.config(randomUUID(), uid === undefined ? {} : { uid }),
      });
    } catch (error) {
      if (uid !== undefined) this.uids?.release(uid); // nothing was created
      throw error;
    }
    if (uid !== undefined) this.uidOf.set(container.id, uid);
    try {
      await container.start();
      return container;
    } catch (error) {
      await this.destroy(container);
      throw error;
    }
  }
}
