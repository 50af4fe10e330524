/**
 * The micro-VM tier: one disposable QEMU `microvm` per qube, with its own kernel (the Debian cloud kernel),
 * booted from an initramfs made of the qube's image plus our static init, no network device, no disk, and one
 * framed channel (a virtio-serial port) as the only thing crossing the VM boundary (src/sandbox/microvm/README
 * in TSDoc: inputs go in over that channel after the init's hello; stdout, stderr, the exit status and the
 * outputs archive come back over it and are parsed as hostile). Each VM serves exactly one qube and is destroyed.
 *
 * Preloading (as Qubes 4.3's preloaded disposables): with `preload`, N VMs of one image are kept booted and
 * waiting on their channel, so a matching qube starts without a boot; each is still used once and destroyed,
 * and a replacement boots in the background.
 */
import { readdir, stat } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import Docker from "dockerode";
import { packageRoot } from "../package-root.js";
import { AirqubeError, PlatformError, UserError } from "../qube/errors.js";
import type { QubeRun, Sandbox, SandboxLimits, SandboxResult } from "./api.js";
import { DEFAULT_SANDBOX_LIMITS } from "./api.js";
import { checkOutputPaths, resolveLimits } from "./container-sandbox.js";
import { imageDigest } from "./images.js";
import { type AccelChoice, type AccelDecision, kvmGroup, resolveAccel } from "./microvm/accel.js";
import type { VmInput, VmQube } from "./microvm/host-frames.js";
import { defaultCacheDir, loadVmModules, type PreparedInitrd, prepareInitrd, type VmModule } from "./microvm/rootfs.js";
import { hostTscKhz, MicroVm, type VmBootConfig, type VmServeResult } from "./microvm/vm.js";
import { UidPool, type UidRange } from "./uid-pool.js";
import { safeRelativePath } from "./unpack.js";

/** Where `npm run build:vm` puts the VM init. */
export function defaultVmInit(): string {
  return process.env.AIRQUBE_VM_INIT ?? join(packageRoot(), "images", "build", "vm-init");
}

/** The newest Debian cloud kernel in /boot (or `AIRQUBE_VM_KERNEL`). */
export async function defaultKernel(): Promise<string> {
  if (process.env.AIRQUBE_VM_KERNEL) return process.env.AIRQUBE_VM_KERNEL;
  const names = (await readdir("/boot").catch(() => [] as string[])).filter((name) => name.startsWith("vmlinuz-"));
  const pick =
    names
      .filter((name) => name.endsWith("-cloud-amd64"))
      .sort()
      .at(-1) ?? names.sort().at(-1);
  if (!pick)
    throw new PlatformError("VM_KERNEL_MISSING", "No kernel for the micro-VM tier", {
      details: "apt-get install linux-image-cloud-amd64, or set AIRQUBE_VM_KERNEL",
    });
  return join("/boot", pick);
}

/** Options of {@link MicroVmSandboxOptions.preload}: which VMs to keep booted ahead of need. */
export interface PreloadOptions {
  /** The image whose VMs are kept booted. */
  image: string;
  /** How many VMs to keep waiting. */
  count: number;
  /** Largest memory limit a preloaded VM can serve (default: the default limit). */
  memoryBytes?: number;
  /** vCPUs of preloaded VMs (default 1); qubes asking for another count boot cold. */
  cpus?: number;
}

/** Options of a {@link MicroVmSandbox}. */
export interface MicroVmSandboxOptions {
  /** The Docker client the images are read from; default one for the local engine. */
  docker?: Docker;
  /** `auto` (default) tries KVM with a self-test boot and falls back to TCG. */
  accel?: AccelChoice;
  /** The QEMU program; default `qemu-system-x86_64` on the `PATH`. */
  qemuBinary?: string;
  /** The guest kernel image; default {@link defaultKernel}. */
  kernel?: string;
  /** The guest's static init; default {@link defaultVmInit}. */
  initBinary?: string;
  /** Where converted images are cached (default: a root-owned dir in the system temp dir). */
  cacheDir?: string;
  /** Deadline for a VM to boot and say hello (default 60 s: TCG boots take ~2 s, more on a loaded host). */
  bootTimeoutMs?: number;
  /** How long past the qube's wall time the host waits before killing the VM itself (default 15 s). */
  graceMs?: number;
  /** Keep VMs of one image booted ahead of need; qubes of another image or other limits boot cold. */
  preload?: PreloadOptions;
  /** Keep each VM's kernel console in its private temp dir, for boot diagnostics (development only). */
  consoleLog?: boolean;
  /**
   * Run each QEMU as a uid of its own from this range, taken back once the VM is destroyed; default: every QEMU
   * as nobody. Not combined with `preload` yet. Pass one `UidPool` to several sandboxes to share a range.
   */
  uids?: UidRange | UidPool;
}

/** What a sandbox has done so far (tests and the benchmark read it). */
export interface MicroVmStats {
  booted: number;
  coldRuns: number;
  preloadedRuns: number;
  /** Ids of every VM that served a qube, in order: each appears once. */
  servedVmIds: string[];
  /** Per run, milliseconds from `run` being called to the qube's first stdout bytes (when it wrote any). */
  firstOutputMs: number[];
  /** Every VM booted: id, QEMU pid and private dir (to check that none outlives its qube). */
  vms: { id: string; pid: number | undefined; directory: string }[];
}

interface Pool {
  digest: string;
  initrd: PreparedInitrd;
  memoryBytes: number;
  vcpus: number;
  ready: MicroVm[];
  booting: Set<Promise<void>>;
  failures: number;
}

/**
 * Runs qubes in disposable QEMU micro-VMs.
 *
 * @example
 * const sandbox = new MicroVmSandbox({ preload: { image: "airqube/busybox:latest", count: 2 } });
 * const result = await sandbox.run({ image: "airqube/busybox:latest", command: ["uname", "-r"] });
 * await sandbox.close();
 */
export class MicroVmSandbox implements Sandbox {
  readonly tier = "microvm" as const;
  readonly stats: MicroVmStats = {
    booted: 0,
    coldRuns: 0,
    preloadedRuns: 0,
    servedVmIds: [],
    firstOutputMs: [],
    vms: [],
  };
  private readonly docker: Docker;
  private readonly initBinary: string;
  private readonly cacheDir: string;
  private readonly qemuBinary: string;
  private readonly uids: UidPool | undefined;
  private kernel: Promise<string>;
  /** The channel's kernel modules for `kernel`, read once. */
  private modules: Promise<VmModule[]> | undefined;
  private decision: Promise<AccelDecision> | undefined;
  private pool: Promise<Pool> | undefined;
  private closed = false;

  constructor(private readonly options: MicroVmSandboxOptions = {}) {
    this.docker = options.docker ?? new Docker();
    this.initBinary = options.initBinary ?? defaultVmInit();
    this.cacheDir = options.cacheDir ?? defaultCacheDir();
    this.qemuBinary = options.qemuBinary ?? "qemu-system-x86_64";
    this.kernel = options.kernel ? Promise.resolve(options.kernel) : defaultKernel();
    this.kernel.catch(() => undefined);
    if (options.uids && options.preload && options.preload.count > 0)
      throw new UserError("UIDS_WITH_PRELOAD", "A uid range and preloaded VMs cannot be combined yet");
    this.uids = options.uids instanceof UidPool ? options.uids : options.uids ? new UidPool(options.uids) : undefined;
    if (options.preload) {
      const preload = options.preload;
      if (!Number.isInteger(preload.count) || preload.count < 0 || preload.count > 64)
        throw new UserError("PRELOAD_INVALID", "Preload count must be an integer between 0 and 64");
      this.pool = this.startPool(preload);
      this.pool.catch(() => undefined);
    }
  }

  private vmModules(): Promise<VmModule[]> {
    this.modules ??= this.kernel.then((kernel) => loadVmModules(kernel));
    return this.modules;
  }

  /** Which accelerator this sandbox uses, and why (runs the KVM self-test once for `auto`). */
  accel(options: { signal?: AbortSignal } = {}): Promise<AccelDecision> {
    this.decision ??= this.kernel.then((kernel) =>
      resolveAccel(
        this.options.accel ?? "auto",
        { qemuBinary: this.qemuBinary, kernel, initBinary: this.initBinary, cacheDir: this.cacheDir },
        options,
      ),
    );
    return this.decision;
  }

  /** Resolves when the preload pool is full (or has given up after repeated boot failures). */
  async warm(options: { signal?: AbortSignal } = {}): Promise<number> {
    if (!this.pool) return 0;
    const pool = await this.pool;
    while (!this.closed && pool.ready.length < (this.options.preload?.count ?? 0) && pool.failures < 3) {
      options.signal?.throwIfAborted();
      if (pool.booting.size === 0) this.refill(pool);
      await Promise.race([...pool.booting, new Promise((r) => setTimeout(r, 50))]);
    }
    return pool.ready.length;
  }

  async run(qube: QubeRun, options: { signal?: AbortSignal } = {}): Promise<SandboxResult> {
    const requested = performance.now();
    const signal = options.signal;
    signal?.throwIfAborted();
    if (this.closed) throw new UserError("SANDBOX_CLOSED", "The micro-VM sandbox is closed");
    const limits = resolveLimits(qube.limits);
    if (qube.command.length === 0) throw new UserError("COMMAND_MISSING", "A qube needs a command");
    const outputs = checkOutputPaths(qube.outputs ?? []);
    if (outputs.length > 0 && !qube.outputDir)
      throw new UserError("OUTPUT_DIR_MISSING", "Declared outputs need an output directory");
    const vmQube: VmQube = {
      command: qube.command,
      env: qube.env ?? {},
      outputs,
      inputs: await listInputs(qube),
      limits,
    };
    const vcpus = Math.max(1, Math.ceil(limits.cpus));
    let vm = await this.takePreloaded(qube, limits, vcpus);
    let digest: string;
    let uid: number | undefined;
    if (vm) {
      digest = vm.digest;
      this.stats.preloadedRuns++;
    } else {
      const initrd = await prepareInitrd(
        this.docker,
        qube.image,
        {
          initBinary: this.initBinary,
          modules: await this.vmModules(),
          cacheDir: this.cacheDir,
          ...(qube.imageDigest ? { expectedDigest: qube.imageDigest } : {}),
        },
        signal ? { signal } : {},
      );
      digest = initrd.imageDigest;
      uid = this.uids?.acquire();
      try {
        vm = { vm: await this.boot(initrd, limits.memoryBytes, vcpus, signal, uid), digest };
      } catch (error) {
        if (uid !== undefined) this.uids?.release(uid); // a failed boot destroyed its VM
        throw error;
      }
      this.stats.coldRuns++;
    }
    this.stats.servedVmIds.push(vm.vm.id);
    let served: VmServeResult;
    try {
      served = await vm.vm.serve(
        vmQube,
        { graceMs: this.options.graceMs ?? 15_000, ...(qube.outputDir ? { outputDir: qube.outputDir } : {}) },
        signal ? { signal } : {},
      );
    } finally {
      // serve destroys the VM (QEMU's process group killed and reaped, its private dir wiped) before settling
      if (uid !== undefined) this.uids?.release(uid);
    }
    if (served.firstStdoutAt !== undefined) this.stats.firstOutputMs.push(served.firstStdoutAt - requested);
    return toRunResult(served, digest);
  }

  /** Destroys every preloaded VM (and those still booting). */
  async close(): Promise<void> {
    this.closed = true;
    if (!this.pool) return;
    const pool = await this.pool.catch(() => undefined);
    if (!pool) return;
    await Promise.allSettled([...pool.booting]);
    await Promise.all(pool.ready.splice(0).map((vm) => vm.destroy()));
  }

  private async bootConfig(
    initrd: PreparedInitrd,
    memoryBytes: number,
    vcpus: number,
    uid?: number,
  ): Promise<VmBootConfig> {
    const decision = await this.accel();
    const kvmGid = decision.accel === "kvm" ? await kvmGroup() : undefined;
    const tscKhz = await hostTscKhz();
    return {
      qemuBinary: this.qemuBinary,
      kernel: await this.kernel,
      initrd,
      accel: decision.accel,
      memoryBytes,
      vcpus,
      bootTimeoutMs: this.options.bootTimeoutMs ?? 60_000,
      ...(this.options.consoleLog ? { consoleLog: true } : {}),
      onSpawned: (vm) => this.stats.vms.push({ id: vm.id, pid: vm.pid, directory: vm.directory }),
      ...(kvmGid !== undefined ? { kvmGid } : {}),
      ...(tscKhz ? { tscKhz } : {}),
      ...(uid !== undefined ? { uid } : {}),
    };
  }

  private async boot(
    initrd: PreparedInitrd,
    memoryBytes: number,
    vcpus: number,
    signal: AbortSignal | undefined,
    uid?: number,
  ): Promise<MicroVm> {
    const vm = await MicroVm.boot(await this.bootConfig(initrd, memoryBytes, vcpus, uid), signal ? { signal } : {});
    this.stats.booted++;
    return vm;
  }

  private async startPool(preload: PreloadOptions): Promise<Pool> {
    const initrd = await prepareInitrd(this.docker, preload.image, {
      initBinary: this.initBinary,
      modules: await this.vmModules(),
      cacheDir: this.cacheDir,
    });
    const pool: Pool = {
      digest: initrd.imageDigest,
      initrd,
      memoryBytes: preload.memoryBytes ?? DEFAULT_SANDBOX_LIMITS.memoryBytes,
      vcpus: Math.max(1, Math.ceil(preload.cpus ?? 1)),
      ready: [],
      booting: new Set(),
      failures: 0,
    };
    this.refill(pool);
    return pool;
  }

  /** Boots VMs in the background until `count` are ready or booting. */
  private refill(pool: Pool): void {
    const target = this.options.preload?.count ?? 0;
    while (!this.closed && pool.failures < 3 && pool.ready.length + pool.booting.size < target) {
      const booting: Promise<void> = this.boot(pool.initrd, pool.memoryBytes, pool.vcpus, undefined)
        .then(async (vm) => {
          if (this.closed) await vm.destroy();
          else pool.ready.push(vm);
          pool.failures = 0;
        })
        .catch(() => {
          pool.failures++;
        })
        .finally(() => {
          pool.booting.delete(booting);
        });
      pool.booting.add(booting);
    }
  }

  /** Hands out a waiting VM when the qube fits it (same image digest, memory within, same vCPUs). */
  private async takePreloaded(
    qube: QubeRun,
    limits: SandboxLimits,
    vcpus: number,
  ): Promise<{ vm: MicroVm; digest: string } | undefined> {
    if (!this.pool) return undefined;
    const pool = await this.pool.catch(() => undefined);
    if (!pool || limits.memoryBytes > pool.memoryBytes || vcpus !== pool.vcpus) return undefined;
    if (qube.imageDigest ? qube.imageDigest !== pool.digest : qube.image !== this.options.preload?.image)
      return undefined;
    if (!qube.imageDigest) {
      // the tag may have moved since the pool booted: serve only the digest the pool was built from
      if ((await imageDigest(this.docker, qube.image)) !== pool.digest) return undefined;
    }
    let vm = pool.ready.shift();
    while (vm && (vm.used || vm.exitedAlready)) {
      await vm.destroy();
      vm = pool.ready.shift();
    }
    this.refill(pool);
    return vm ? { vm, digest: pool.digest } : undefined;
  }
}

/**
 * Lists the qube's inputs (named files and/or a whole directory) with safe relative paths and their sizes; they
 * are streamed to the VM from their files (`qubeFrames`), never read whole into memory.
 */
async function listInputs(qube: QubeRun): Promise<VmInput[]> {
  const inputs: VmInput[] = [];
  const regular = async (source: string, path: string): Promise<VmInput> => {
    const info = await stat(source);
    if (!info.isFile())
      throw new UserError("INPUT_UNSUPPORTED", "Inputs may hold only regular files and directories", {
        details: source,
      });
    return { path: safeRelativePath(path), source, size: info.size };
  };
  try {
    for (const input of qube.inputs ?? []) inputs.push(await regular(input.source, input.path));
    if (qube.inputDir) {
      const root = resolve(qube.inputDir);
      for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
        const full = join(entry.parentPath, entry.name);
        if (entry.isDirectory()) continue;
        if (!entry.isFile())
          throw new UserError("INPUT_UNSUPPORTED", "Inputs may hold only regular files and directories", {
            details: full,
          });
        inputs.push(await regular(full, relative(root, full)));
      }
    }
  } catch (error) {
    if (error instanceof AirqubeError) throw error;
    throw new UserError("INPUT_UNREADABLE", "Could not read the qube's inputs", {
      details: String(error),
      cause: error,
    });
  }
  return inputs;
}

const MARKERS = new Set(["timed-out", "oom-killed"]);

/** Maps what the VM reported to the tier-independent result. */
export function toRunResult(served: VmServeResult, imageDigest: string): SandboxResult {
  const { channel } = served;
  const timedOut = served.hostTimedOut || channel.warnings.includes("timed-out");
  const oomKilled = channel.warnings.includes("oom-killed");
  const warnings = channel.warnings.filter((warning) => !MARKERS.has(warning));
  const exit = channel.exit;
  const exitCode = timedOut
    ? 137
    : exit?.kind === "exited"
      ? exit.code
      : exit?.kind === "signaled"
        ? 128 + exit.signal
        : exit?.kind === "exec-failed"
          ? 127
          : -1;
  return {
    tier: "microvm",
    imageDigest,
    exitCode,
    durationMs: served.durationMs,
    stdout: channel.stdout,
    stderr:
      exit?.kind === "exec-failed" && warnings.length > 0
        ? `${channel.stderr}${warnings.join("\n")}\n`
        : channel.stderr,
    stdoutTruncated: channel.stdoutTruncated,
    stderrTruncated: channel.stderrTruncated,
    oomKilled,
    timedOut,
    outputs: served.files,
    startedAt: served.startedAt.toISOString(),
    endedAt: served.endedAt.toISOString(),
    ...(served.usage ? { usage: served.usage } : {}),
  };
}
