/**
 * The container tier: one fresh, hardened Docker container per qube (dockerode), destroyed afterwards.
 * The qube runs under our static init, which sends stdout, stderr, the exit status and the declared outputs
 * over one framed channel; the host parses it as hostile input and unpacks outputs with the safe unpacker.
 */
import { randomUUID } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, posix, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as delay } from "node:timers/promises";
import Docker from "dockerode";
import { packageRoot } from "../package-root.js";
import { AirqubeError, PeerError, PlatformError, TimeoutError, UserError } from "../qube/errors.js";
import { DEFAULT_SANDBOX_LIMITS, type QubeRun, type Sandbox, type SandboxLimits, type SandboxResult } from "./api.js";
import { ChannelParser, channelSink } from "./channel.js";
import { DockerDemux } from "./docker-demux.js";
import {
  gvisorContainerConfig,
  type HardenedContainerConfig,
  hardenedContainerConfig,
  INIT_PATH,
  SANDBOX_LABEL,
  warmContainerConfig,
} from "./hardening.js";
import { imageDigest } from "./images.js";
import { UidPool, type UidRange } from "./uid-pool.js";
import { safeRelativePath, unpackTar } from "./unpack.js";
import { cgroupOf, dockerCgroup, UsageMeter } from "./usage.js";
import { encodeQubeFrame, initLimitsArgument, type WarmOptions, WarmPool } from "./warm-pool.js";

/** Where `npm run images` puts the static init (under the package's root, from src/ or dist/). */
export function defaultInitBinary(): string {
  return process.env.AIRQUBE_INIT_BINARY ?? join(packageRoot(), "images", "build", "airqube-init");
}

/** After the container exited, how long its attach stream may stay silent before the run fails. */
const STALL_MS = 15_000;
/** How long to wait for the container's exit after its init sent the end frame. */
const EXIT_GRACE_MS = 5_000;

/** Time the outputs may take to arrive after the wall-clock limit: 30 s plus the output cap at 8 MiB/s. */
export function transferAllowanceMs(limits: SandboxLimits): number {
  return 30_000 + Math.ceil(limits.output.maxTotalBytes / (8 * 1024 * 1024)) * 1000;
}

/** Largest archive the host accepts: the output cap plus header room for every file and directory. */
export function maxArchiveBytes(limits: SandboxLimits): number {
  return limits.output.maxTotalBytes + (2 * limits.output.maxFiles + 2) * 3 * 512 + 1024 * 1024;
}

/** Output paths a qube may declare: only its writable scratch space. */
const OUTPUT_ROOTS = ["/output", "/scratch", "/tmp"];

/** Options of a {@link ContainerSandbox}. */
export interface ContainerSandboxOptions {
  /** The Docker client; default one for the local engine (`DOCKER_HOST` or the default socket). */
  docker?: Docker;
  /** Path of the static init run as the container's PID 1; default {@link defaultInitBinary}. */
  initBinary?: string;
  /** For the escape suite only: removes one defence from the create options. Never set in production. */
  weaken?: (config: HardenedContainerConfig) => HardenedContainerConfig;
  /** Applied to the limits after defaults (the escape suite's `timeout:off` etc.). */
  weakenLimits?: (limits: SandboxLimits) => SandboxLimits;
  /**
   * Keep `count` containers of `image` created and started ahead of need (see warm-pool.ts). Qubes with inputs,
   * another image or other container limits start cold.
   */
  warm?: WarmOptions;
  /** `gvisor`: run every container under gVisor (runsc) with the same hardening; default `container` (runc). */
  tier?: "container" | "gvisor";
  /**
   * Run each container as a uid of its own from this range (none reused while its container exists); default:
   * every container as nobody (65534). Warm containers take theirs when created (the range must cover the pool
   * and the concurrent qubes together). Pass one `UidPool` to several sandboxes
   * (e.g. the container and micro-VM tiers) to share a range.
   */
  uids?: UidRange | UidPool;
  /**
   * Extra labels on every container (e.g. the Golem runtime's instance and owner, for its sweep). They never
   * replace the sandbox's own labels.
   */
  labels?: Record<string, string>;
}

/** What a sandbox has done so far (tests and the benchmark read it). */
export interface ContainerSandboxStats {
  coldRuns: number;
  warmRuns: number;
  /** Ids of every container that served a qube, in order: each appears once. */
  servedContainerIds: string[];
}

/** Checks the limits a caller passed and fills in the defaults. */
export function resolveLimits(partial: Partial<SandboxLimits> = {}): SandboxLimits {
  const limits: SandboxLimits = {
    ...DEFAULT_SANDBOX_LIMITS,
    ...partial,
    output: { ...DEFAULT_SANDBOX_LIMITS.output, ...partial.output },
  };
  const positive: [string, number][] = [
    ["cpus", limits.cpus],
    ["memoryBytes", limits.memoryBytes],
    ["pids", limits.pids],
    ["scratchBytes", limits.scratchBytes],
    ["wallTimeMs", limits.wallTimeMs],
    ["logBytes", limits.logBytes],
  ];
  for (const [name, value] of positive) {
    if (!Number.isFinite(value) || value <= 0)
      throw new UserError("LIMIT_INVALID", `Limit ${name} must be a positive number`, { details: String(value) });
  }
  if (limits.memoryBytes < 6 * 1024 * 1024)
    throw new UserError("LIMIT_INVALID", "Memory limit must be at least 6 MiB (Docker's floor)");
  if (!Number.isInteger(limits.pids) || limits.pids < 4)
    throw new UserError("LIMIT_INVALID", "Pids limit must be an integer of at least 4");
  return limits;
}

/** Validates declared output paths: absolute, normalised, inside the scratch space. */
export function checkOutputPaths(paths: string[]): string[] {
  if (paths.length > 64) throw new UserError("OUTPUT_PATH_INVALID", "At most 64 output paths may be declared");
  return paths.map((path) => {
    const normal = posix.normalize(path).replace(/\/+$/, "");
    if (!path.startsWith("/") || normal !== path.replace(/\/+$/, "") || path.includes("..")) {
      throw new UserError("OUTPUT_PATH_INVALID", "Output paths must be absolute and normalised", { details: path });
    }
    if (!OUTPUT_ROOTS.some((root) => normal === root || normal.startsWith(`${root}/`))) {
      throw new UserError("OUTPUT_PATH_INVALID", `Output paths must lie under ${OUTPUT_ROOTS.join(", ")}`, {
        details: path,
      });
    }
    return normal;
  });
}

/** Copies the inputs into a fresh private directory that is bind-mounted read-only at /input. */
async function stageInputs(qube: QubeRun): Promise<string | undefined> {
  if (!qube.inputs?.length && !qube.inputDir) return undefined;
  const dir = await mkdtemp(join(tmpdir(), "airqube-in-"));
  try {
    await chmod(dir, 0o755); // readable by the qube's unprivileged user, writable by nobody but us
    for (const input of qube.inputs ?? []) {
      const relative = safeRelativePath(input.path);
      await mkdir(dirname(join(dir, relative)), { recursive: true });
      await copyFile(input.source, join(dir, relative));
    }
    if (qube.inputDir) await copyTree(resolve(qube.inputDir), dir);
    await makeReadable(dir);
    return dir;
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    if (error instanceof AirqubeError) throw error;
    throw new UserError("INPUT_UNREADABLE", "Could not read the qube's inputs", {
      details: String(error),
      cause: error,
    });
  }
}

async function makeReadable(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      await chmod(path, 0o755);
      await makeReadable(path);
    } else await chmod(path, 0o444);
  }
}

async function copyTree(from: string, to: string): Promise<void> {
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    if (entry.isDirectory()) {
      await mkdir(join(to, entry.name), { recursive: true });
      await copyTree(source, join(to, entry.name));
    } else if (entry.isFile()) {
      await copyFile(source, join(to, entry.name));
    } else {
      throw new UserError("INPUT_UNSUPPORTED", "Inputs may hold only regular files and directories", {
        details: source,
      });
    }
  }
}

/**
 * Runs qubes in hardened Docker containers.
 *
 * @example
 * const sandbox = new ContainerSandbox();
 * const result = await sandbox.run({ image: "airqube/busybox:latest", command: ["echo", "hi"] });
 *
 * // with two containers kept warm for the busybox image and the default limits:
 * const warm = new ContainerSandbox({ warm: { image: "airqube/busybox:latest", count: 2 } });
 * await warm.warm();
 * await warm.run({ image: "airqube/busybox:latest", command: ["true"] });
 * await warm.close();
 */
export class ContainerSandbox implements Sandbox {
  readonly tier: "container" | "gvisor";
  readonly stats: ContainerSandboxStats = { coldRuns: 0, warmRuns: 0, servedContainerIds: [] };
  private readonly docker: Docker;
  private readonly initBinary: string;
  private readonly pool: WarmPool | undefined;
  private readonly uids: UidPool | undefined;

  constructor(private readonly options: ContainerSandboxOptions = {}) {
    this.docker = options.docker ?? new Docker();
    this.initBinary = options.initBinary ?? defaultInitBinary();
    this.tier = options.tier ?? "container";
    this.uids = options.uids instanceof UidPool ? options.uids : options.uids ? new UidPool(options.uids) : undefined;
    if (options.warm && options.warm.count > 0) {
      let limits = resolveLimits(options.warm.limits);
      if (options.weakenLimits) limits = options.weakenLimits(limits);
      this.pool = new WarmPool(
        this.docker,
        options.warm,
        limits,
        (runId, identity) => {
          let config = warmContainerConfig(limits, runId, { initBinary: this.initBinary }, identity);
          if (this.tier === "gvisor") config = gvisorContainerConfig(config);
          config.Labels = { ...options.labels, ...config.Labels, [`${SANDBOX_LABEL}.owner`]: String(process.pid) };
          if (options.weaken) config = options.weaken(structuredClone(config));
          return config;
        },
        this.uids, // each warm container has its uid from the start, handed over with it
      );
    }
  }

  private engine: Promise<{ CgroupDriver?: string; CgroupVersion?: string }> | undefined;

  /** The engine's cgroup driver and version (asked once; empty when the engine does not say). */
  private engineInfo(): Promise<{ CgroupDriver?: string; CgroupVersion?: string }> {
    this.engine ??= (this.docker.info() as Promise<{ CgroupDriver?: string; CgroupVersion?: string }>).catch(
      () => ({}),
    );
    return this.engine;
  }

  /** Resolves when the warm pool is full (at once without one); returns how many containers wait. */
  async warm(options: { signal?: AbortSignal } = {}): Promise<number> {
    return this.pool ? await this.pool.full(options) : 0;
  }

  async run(qube: QubeRun, options: { signal?: AbortSignal } = {}): Promise<SandboxResult> {
    const signal = options.signal;
    if (signal?.aborted) throw new TimeoutError("ABORTED", "The qube was aborted");
    let limits = resolveLimits(qube.limits);
    if (this.options.weakenLimits) limits = this.options.weakenLimits(limits);
    if (qube.command.length === 0) throw new UserError("COMMAND_MISSING", "A qube needs a command");
    const outputs = checkOutputPaths(qube.outputs ?? []);
    if (outputs.length > 0 && !qube.outputDir)
      throw new UserError("OUTPUT_DIR_MISSING", "Declared outputs need an output directory");
    await stat(this.initBinary).catch((error) => {
      throw new PlatformError("INIT_MISSING", "The Airqube init binary is missing", {
        details: `${this.initBinary}: build it with \`npm run images\``,
        cause: error,
      });
    });

    const digest = await imageDigest(this.docker, qube.image);
    if (qube.imageDigest && qube.imageDigest !== digest) {
      throw new UserError("IMAGE_DIGEST_MISMATCH", "The image is not the one the qube names", {
        details: `${qube.image} is ${digest}, the qube names ${qube.imageDigest}`,
      });
    }

    const env = Object.entries(qube.env ?? {}).map(([key, value]) => `${key}=${value}`);
    // A warm container has no /input bind: qubes with inputs start cold.
    const hasInputs = Boolean(qube.inputs?.length || qube.inputDir);
    const frame = this.pool && !hasInputs ? encodeQubeFrame(qube.command, env, outputs) : undefined;
    const warm = frame ? this.pool?.take(digest, limits) : undefined;
    const inputDir = warm ? undefined : await stageInputs(qube);
    let container = warm;
    let uid: number | undefined;
    try {
      if (container) {
        this.stats.warmRuns++;
        uid = this.pool?.handOver(container); // released below once the container is removed, as a cold one's
      } else {
        uid = this.uids?.acquire();
        let config = hardenedContainerConfig(
          limits,
          randomUUID(),
          { initBinary: this.initBinary, ...(inputDir ? { inputDir } : {}) },
          uid === undefined ? {} : { uid },
        );
        if (this.tier === "gvisor") config = gvisorContainerConfig(config);
        config.Labels = { ...this.options.labels, ...config.Labels, [`${SANDBOX_LABEL}.owner`]: String(process.pid) };
        if (this.options.weaken) config = this.options.weaken(structuredClone(config));
        container = await this.docker.createContainer({
          Image: digest, // run the digest we checked, never a tag that could move
          Entrypoint: [INIT_PATH],
          Cmd: [
            "-l",
            initLimitsArgument(limits.output),
            ...outputs.flatMap((path) => ["-o", path]),
            "--",
            ...qube.command,
          ],
          ...config,
          Env: [...env, ...(config.Env ?? [])],
        });
        this.stats.coldRuns++;
      }
      this.stats.servedContainerIds.push(container.id);
      return await this.execute(container, qube, limits, digest, outputs, signal, warm ? frame : undefined);
    } catch (error) {
      if (signal?.aborted && !(error instanceof AirqubeError && error.code === "ABORTED")) {
        throw new TimeoutError("ABORTED", "The qube was aborted", { cause: error });
      }
      if (error instanceof AirqubeError) throw error;
      throw new PlatformError("SANDBOX_FAILED", "The container sandbox failed", {
        details: String((error as Error)?.message ?? error),
        cause: error,
      });
    } finally {
      const removed = container
        ? await container.remove({ force: true, v: true }).then(
            () => true,
            (error: { statusCode?: number }) => error?.statusCode === 404,
          )
        : true;
      if (inputDir) await rm(inputDir, { recursive: true, force: true });
      // the uid goes back only when its container is surely gone (else it stays out of the range for good)
      if (uid !== undefined && removed) this.uids?.release(uid);
    }
  }

  private async execute(
    container: Docker.Container,
    qube: QubeRun,
    limits: SandboxLimits,
    digest: string,
    outputs: string[],
    signal: AbortSignal | undefined,
    /** For a warm container (already started, its init waiting): the qube frame to send instead of starting it. */
    frame?: Buffer,
  ): Promise<SandboxResult> {
    const parser = new ChannelParser({ logBytes: limits.logBytes, maxArchiveBytes: maxArchiveBytes(limits) });
    const unpacking =
      outputs.length > 0 && qube.outputDir
        ? unpackTar(parser.archive, qube.outputDir, limits.output, signal ? { signal } : {})
        : drain(parser.archive);
    unpacking.catch(() => undefined); // observed below

    const stream = (await container.attach({
      stream: true,
      stdout: true,
      stderr: true,
      ...(frame ? { stdin: true, hijack: true } : {}),
    })) as NodeJS.ReadWriteStream & { destroy: (error?: Error) => void };
    // Backpressure all the way: the engine's socket -> demux -> parser -> unpacker -> disk. The transfer is over
    // when the init's end frame arrives (or the stream ends without one, which the parser reports).
    const demux = new DockerDemux();
    let endFrame: () => void = () => undefined;
    const ended = new Promise<void>((resolveEnd) => {
      endFrame = resolveEnd;
    });
    // Metered from the host, from the container's own cgroup: sampled while it runs, and at once when its init
    // reports the exit and sends its end frame (the cgroup goes with the container).
    const meter = UsageMeter.start(dockerCgroup(container.id, await this.engineInfo()));
    const transfer = pipeline(
      stream as unknown as NodeJS.ReadableStream,
      demux,
      channelSink(
        parser,
        () => {
          void meter.sample();
          endFrame();
        },
        () => void meter.sample(),
      ),
    );
    const transferred = Promise.race([ended, transfer]).then(
      () => undefined,
      (error: unknown) => error,
    );

    const startedAt = new Date();
    const started = performance.now();
    if (frame) {
      // The init writes nothing before this frame arrives, so the attach above misses no byte of the channel.
      await new Promise<void>((resolveWrite, rejectWrite) =>
        stream.write(frame, (error) => (error ? rejectWrite(error) : resolveWrite())),
      );
    } else await container.start();
    const waited = container.wait();
    waited.catch(() => undefined);
    // The engine's cgroup path for this container is known from its id; when that guess reads nothing, the
    // container's init pid tells where its cgroup is (a daemon in another cgroup namespace, say).
    meter.sample().then(async () => {
      if (meter.current) return;
      const state = await container.inspect().catch(() => undefined);
      if (state?.State.Pid) meter.use(await cgroupOf(state.State.Pid));
    });

    // The wall clock bounds the qube's command; once it has exited (its exit frame arrived), the outputs get
    // their own deadline sized to the output cap, so large outputs near the deadline are not cut.
    const outcome = await new Promise<"done" | "timeout" | "abort" | "transfer-timeout" | "stalled">((settle) => {
      const timers: NodeJS.Timeout[] = [];
      const finish = (value: "done" | "timeout" | "abort" | "transfer-timeout" | "stalled") => {
        for (const timer of timers) clearTimeout(timer);
        clearInterval(watch);
        signal?.removeEventListener("abort", onAbort);
        settle(value);
      };
      const onAbort = () => finish("abort");
      if (signal?.aborted) return finish("abort");
      signal?.addEventListener("abort", onAbort, { once: true });
      transferred.then(() => finish("done"));
      // The wall clock runs from the start request, not from when the engine answered it: under load
      // `start()` can return a second after the qube's process began, and that second is the qube's too.
      timers.push(
        setTimeout(
          () => {
            if (!parser.exited) return finish("timeout");
            timers.push(setTimeout(() => finish("transfer-timeout"), transferAllowanceMs(limits)));
          },
          Math.max(0, started + limits.wallTimeMs - performance.now()),
        ),
      );
      // The engine ends the attach stream when the container exits; if it does not, do not wait forever.
      let exitedAt: number | undefined;
      waited.then(() => {
        exitedAt = performance.now();
      });
      const watch = setInterval(() => {
        const now = performance.now();
        if (exitedAt !== undefined && now - exitedAt > STALL_MS && now - demux.lastByteAt > STALL_MS) finish("stalled");
      }, 500);
    });
    const durationMs = Math.round(performance.now() - started);
    const endedAt = new Date();
    const usage = await meter.stop(); // before the container and its cgroup go
    const timedOut = outcome === "timeout";
    if (outcome !== "done") {
      await container.kill({ signal: "SIGKILL" }).catch(() => undefined);
      stream.destroy();
      await waited.catch(() => undefined);
    } else {
      await Promise.race([waited, delay(EXIT_GRACE_MS)]);
      stream.destroy(); // everything up to the end frame is in; a hijacked stream may not end by itself
    }
    const transferError = outcome === "done" ? await transferred : undefined;
    const channel = parser.end();
    // Settle the unpacker first: a rejected or cut archive must have removed its staging before anything is reported.
    const unpacked = await unpacking.then(
      (value) => ({ value, error: undefined }),
      (error: unknown) => ({ value: undefined, error }),
    );
    if (outcome === "abort") throw new TimeoutError("ABORTED", "The qube was aborted");
    if (outcome === "transfer-timeout")
      throw new TimeoutError("OUTPUT_TRANSFER_TIMEOUT", "The qube's outputs did not arrive in time", {
        details: `${transferAllowanceMs(limits)} ms after the wall-clock limit`,
      });
    if (outcome === "stalled")
      throw new PlatformError("SANDBOX_STREAM_STALLED", "The container exited but its output stream did not end", {
        details: `no byte for ${STALL_MS} ms`,
      });
    if (parser.error && !timedOut) throw parser.error;
    if (transferError !== undefined && !timedOut && !channel.complete)
      throw new PlatformError("SANDBOX_STREAM_FAILED", "The container's output stream failed", {
        details: String((transferError as Error)?.message ?? transferError),
        cause: transferError,
      });
    if (channel.outputFailure && !timedOut) throw channel.outputFailure;
    const info = await container.inspect();
    if (!channel.complete && !timedOut && !info.State.OOMKilled)
      throw new PeerError("CHANNEL_INCOMPLETE", "The sandbox's init stopped before it sent everything", {
        details: `container exit status ${info.State.ExitCode}`,
      });
    const complete = channel.complete && !timedOut;
    let files: SandboxResult["outputs"] = [];
    if (unpacked.error !== undefined) {
      if (complete || !(unpacked.error instanceof PeerError)) throw unpacked.error;
    } else files = unpacked.value ?? [];
    const exitCode =
      channel.exit?.kind === "exited"
        ? channel.exit.code
        : channel.exit?.kind === "signaled"
          ? 128 + channel.exit.signal
          : (info.State.ExitCode ?? -1);
    return {
      tier: this.tier,
      imageDigest: digest,
      exitCode: timedOut ? 137 : channel.exit?.kind === "exec-failed" ? 127 : exitCode,
      durationMs,
      stdout: channel.stdout,
      stderr:
        channel.warnings.length > 0 && channel.exit?.kind === "exec-failed"
          ? `${channel.stderr}${channel.warnings.join("\n")}\n`
          : channel.stderr,
      stdoutTruncated: channel.stdoutTruncated,
      stderrTruncated: channel.stderrTruncated,
      oomKilled: Boolean(info.State.OOMKilled),
      timedOut,
      outputs: complete ? files : [],
      startedAt: startedAt.toISOString(),
      endedAt: endedAt.toISOString(),
      ...(usage ? { usage } : {}),
    };
  }

  /** Destroys the warm pool's containers (those serving a qube are destroyed when it ends). */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  /**
   * Removes containers left by Airqube processes that are gone (a crashed agent). Containers of live
   * processes are left alone. Returns how many were removed.
   */
  static async sweep(docker: Docker = new Docker()): Promise<number> {
    const containers = await docker.listContainers({ all: true, filters: { label: [SANDBOX_LABEL] } });
    let removed = 0;
    for (const info of containers) {
      const owner = Number(info.Labels[`${SANDBOX_LABEL}.owner`]);
      // ours, or a live process's: not a leftover
      if (Number.isInteger(owner) && owner > 0 && (owner === process.pid || isAlive(owner))) continue;
      await docker
        .getContainer(info.Id)
        .remove({ force: true })
        .catch(() => undefined);
      removed++;
    }
    return removed;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function drain(stream: NodeJS.ReadableStream): Promise<[]> {
  for await (const _ of stream) {
    // outputs not requested: discard
  }
  return [];
}
