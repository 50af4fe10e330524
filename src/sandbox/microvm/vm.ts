/**
 * One disposable micro-VM: a QEMU process, confined (unprivileged uid, own process group, private temp dir,
 * seccomp), that boots the qube's initramfs, says hello on its channel, serves exactly one qube, and is
 * destroyed. `MicroVm.boot` returns once the init said hello (that is what a preloaded VM is); `serve` sends
 * the qube, parses the hostile channel, unpacks the outputs, and always destroys the VM before it settles.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { chmod, chown, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AirqubeError, InternalError, PeerError, PlatformError, TimeoutError, UserError } from "../../qube/errors.js";
import type { SandboxOutput } from "../api.js";
import { ChannelParser, type ChannelResult, FRAME_MAX, HELLO } from "../channel.js";
import { unpackTar } from "../unpack.js";
import { type SandboxUsage, UsageMeter } from "../usage.js";
import { qubeFrames, type VmQube } from "./host-frames.js";
import {
  type Accel,
  guestMemoryMiB,
  QEMU_GID,
  QEMU_UID,
  qemuArgs,
  qemuSpawnPlan,
  tscKhzFromCpuinfo,
} from "./qemu-args.js";

const HELLO_FRAME = Buffer.concat([Buffer.from([0x48, 0, 0, 0, HELLO.length]), Buffer.from(HELLO, "latin1")]);
const STDERR_TAIL = 4096;

/** The host's TSC rate, read once from /proc/cpuinfo. */
let tscKhzCache: Promise<number | undefined> | undefined;
export function hostTscKhz(): Promise<number | undefined> {
  tscKhzCache ??= readFile("/proc/cpuinfo", "utf8").then(tscKhzFromCpuinfo, () => undefined);
  return tscKhzCache;
}

export interface VmBootConfig {
  qemuBinary: string;
  kernel: string;
  initrd: { path: string; bytes: number; rootfsBytes: number };
  accel: Accel;
  /** The largest memory limit a qube of this VM may ask for. */
  memoryBytes: number;
  vcpus: number;
  bootTimeoutMs: number;
  /** Keep the kernel console in the private temp dir (development only); its tail goes into boot errors. */
  consoleLog?: boolean;
  /** Group id that may open /dev/kvm (for accel kvm). */
  kvmGid?: number;
  /** Host TSC rate in kHz, passed to the guest kernel (see `kernelCmdline`). */
  tscKhz?: number;
  /** Called as soon as QEMU is started (before the boot completes), to observe every VM. */
  onSpawned?: (vm: MicroVm) => void;
  /** Run QEMU as this uid (and gid) of its own; default nobody (QEMU_UID). */
  uid?: number;
}

export interface VmServeResult {
  channel: ChannelResult;
  files: SandboxOutput[];
  /** The host killed the VM at wall time + grace (the init's own deadline did not end the qube in time). */
  hostTimedOut: boolean;
  startedAt: Date;
  endedAt: Date;
  durationMs: number;
  /** Milliseconds from `serve` to the first stdout frame, when there was one. */
  firstStdoutMs?: number;
  /** `performance.now()` when the first stdout frame arrived. */
  firstStdoutAt?: number;
  /** The QEMU process's CPU time during the serve and its peak RSS, when /proc could be read. */
  usage?: SandboxUsage;
}

/**
 * Reassembles whole frames from the channel stream, whose chunks are cut anywhere (a few bytes to 64 KiB): the
 * parser then gets every frame in one piece, once, so the cost is linear in the bytes (feeding the parser the
 * raw chunks made it re-concatenate its partial frame on every chunk: quadratic, ~50 KiB/s for 16 MiB).
 * It holds at most one frame (5 + FRAME_MAX bytes); a header announcing more is handed to the parser as is,
 * which rejects it. It also notes the frame types the host reacts to (stdout, exit, end).
 */
export class FrameAssembler {
  private readonly header = Buffer.alloc(5);
  private headerLength = 0;
  private body: Buffer | undefined;
  private bodyLength = 0;
  private broken = false;
  sawStdout = false;
  sawExit = false;
  sawEnd = false;

  constructor(private readonly emit: (bytes: Buffer) => void) {}

  push(chunk: Buffer): void {
    if (this.broken) {
      this.emit(chunk);
      return;
    }
    let offset = 0;
    while (offset < chunk.length) {
      if (this.body === undefined) {
        const take = Math.min(5 - this.headerLength, chunk.length - offset);
        chunk.copy(this.header, this.headerLength, offset, offset + take);
        this.headerLength += take;
        offset += take;
        if (this.headerLength < 5) return;
        const length = this.header.readUInt32BE(1);
        this.headerLength = 0;
        if (length > FRAME_MAX) {
          this.broken = true; // the parser fails on this header: pass everything through from here
          this.emit(Buffer.concat([this.header, chunk.subarray(offset)]));
          return;
        }
        this.body = Buffer.allocUnsafe(5 + length);
        this.header.copy(this.body, 0);
        this.bodyLength = 5;
      }
      const take = Math.min(this.body.length - this.bodyLength, chunk.length - offset);
      chunk.copy(this.body, this.bodyLength, offset, offset + take);
      this.bodyLength += take;
      offset += take;
      if (this.bodyLength === this.body.length) {
        const whole = this.body;
        this.body = undefined;
        const type = whole[0];
        if (type === 0x4f) this.sawStdout = true;
        else if (type === 0x58) this.sawExit = true;
        else if (type === 0x5a && whole.length === 5) this.sawEnd = true;
        this.emit(whole);
      }
    }
  }

  /** The bytes of an unfinished frame, if the stream stopped inside one (the parser then reports it). */
  rest(): Buffer {
    if (this.body) return this.body.subarray(0, this.bodyLength);
    return Buffer.from(this.header.subarray(0, this.headerLength));
  }
}

/**
 * A booted, waiting micro-VM.
 *
 * @example
 * const vm = await MicroVm.boot(config);
 * const result = await vm.serve(qube, { graceMs: 10_000 }); // the VM is gone afterwards
 */
export class MicroVm {
  readonly id = randomUUID();
  private served = false;
  private destroyed: Promise<void> | undefined;
  private exitedFlag = false;
  private stderrTail = "";
  private early: Buffer[] = [];
  private sink: ((chunk: Buffer) => void) | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    private readonly privateDir: string,
    readonly bootedAt: number,
  ) {
    this.exited = new Promise((resolve) => {
      child.once("close", () => {
        this.exitedFlag = true;
        resolve();
      });
    });
    child.stderr?.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL);
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      if (this.sink) this.sink(chunk);
      else this.early.push(chunk);
    });
    child.stdin?.on("error", () => undefined); // EPIPE when the VM is gone: seen through `exited`
  }

  /** QEMU's process id (also its process group id). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The VM's private temp dir (removed by `destroy`). */
  get directory(): string {
    return this.privateDir;
  }

  /** True once QEMU has exited. */
  get exitedAlready(): boolean {
    return this.exitedFlag;
  }

  /** True when this VM has been handed its one qube. */
  get used(): boolean {
    return this.served;
  }

  /** Boots a VM and waits for its init's hello; destroys it on failure. */
  static async boot(config: VmBootConfig, options: { signal?: AbortSignal } = {}): Promise<MicroVm> {
    options.signal?.throwIfAborted();
    const privateDir = await mkdtemp(join(tmpdir(), "airqube-vm-"));
    await chown(privateDir, config.uid ?? QEMU_UID, config.uid ?? QEMU_GID);
    await chmod(privateDir, 0o700);
    const consoleLog = config.consoleLog ? join(privateDir, "console.log") : undefined;
    const tscKhz = config.tscKhz ?? (await hostTscKhz());
    const args = qemuArgs({
      accel: config.accel,
      kernel: config.kernel,
      initrd: config.initrd.path,
      memoryMiB: guestMemoryMiB(config.memoryBytes, config.initrd.rootfsBytes, config.initrd.bytes),
      vcpus: config.vcpus,
      ...(consoleLog ? { consoleLog } : {}),
      ...(tscKhz ? { tscKhz } : {}),
    });
    const plan = qemuSpawnPlan({
      accel: config.accel,
      privateDir,
      qemuBinary: config.qemuBinary,
      qemuArgs: args,
      ...(config.kvmGid !== undefined ? { kvmGid: config.kvmGid } : {}),
      ...(config.uid !== undefined ? { uid: config.uid } : {}),
    });
    let child: ChildProcess;
    try {
      const { command, argv, ...spawnOptions } = plan;
      child = spawn(command, argv, { ...spawnOptions, stdio: ["pipe", "pipe", "pipe"] });
    } catch (error) {
      await rm(privateDir, { recursive: true, force: true });
      throw new PlatformError("QEMU_SPAWN_FAILED", "Could not start QEMU", { details: String(error), cause: error });
    }
    const vm = new MicroVm(child, privateDir, performance.now());
    config.onSpawned?.(vm);
    const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));
    try {
      await vm.awaitHello(config.bootTimeoutMs, spawnError, options.signal, consoleLog);
      return vm;
    } catch (error) {
      await vm.destroy();
      throw error;
    }
  }

  private async awaitHello(
    timeoutMs: number,
    spawnError: Promise<Error>,
    signal: AbortSignal | undefined,
    consoleLog: string | undefined,
  ): Promise<void> {
    let settle: (value: "hello" | "garbage") => void = () => undefined;
    const hello = new Promise<"hello" | "garbage">((resolve) => {
      settle = resolve;
    });
    const check = (): void => {
      const bytes = Buffer.concat(this.early);
      const prefix = bytes.subarray(0, HELLO_FRAME.length);
      if (!prefix.equals(HELLO_FRAME.subarray(0, prefix.length))) settle("garbage");
      else if (bytes.length >= HELLO_FRAME.length) settle("hello");
    };
    this.sink = (chunk) => {
      this.early.push(chunk);
      check();
    };
    check();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const outcome = await Promise.race([
        hello,
        this.exited.then(() => "exited" as const),
        spawnError.then((error) => error),
        new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), timeoutMs);
        }),
        new Promise<"abort">((resolve) => {
          onAbort = () => resolve("abort");
          signal?.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
      if (outcome === "hello") return;
      const console = consoleLog ? (await readFile(consoleLog, "utf8").catch(() => "")).slice(-2048) : "";
      const details = [this.stderrTail.trim(), console.trim()].filter(Boolean).join("\n") || undefined;
      if (outcome === "abort") throw new TimeoutError("ABORTED", "The VM boot was aborted");
      if (outcome === "timeout")
        throw new TimeoutError(
          "VM_BOOT_TIMEOUT",
          `The VM did not boot within ${timeoutMs} ms`,
          details ? { details } : {},
        );
      if (outcome === "garbage") throw new PeerError("CHANNEL_INVALID", "The VM did not start with the init hello");
      if (outcome instanceof Error)
        throw new PlatformError("QEMU_SPAWN_FAILED", "Could not start QEMU", {
          details: outcome.message,
          cause: outcome,
        });
      throw new PlatformError("VM_BOOT_FAILED", "QEMU exited before the VM booted", details ? { details } : {});
    } finally {
      this.sink = undefined;
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Sends the VM its one qube and collects the result. Always destroys the VM before settling. Rejects with
   * `VM_REUSED` when called twice, `CHANNEL_INVALID` / `ARCHIVE_*` / `VM_CHANNEL_STALLED` (PeerError) when the
   * VM sends anything malformed or stops sending its outputs, `OUTPUT_*` (UserError) when the qube's outputs
   * break a cap or a rule (nothing is written then), `ABORTED` on abort. `graceMs` is added to the qube's wall
   * time before the host kills the VM itself; once the exit report arrived, `idleTimeoutMs` (default 30 s) is
   * the longest the VM may go without sending a byte while its outputs come over the channel.
   */
  async serve(
    qube: VmQube,
    run: { outputDir?: string; graceMs: number; unpackTimeoutMs?: number; idleTimeoutMs?: number },
    options: { signal?: AbortSignal } = {},
  ): Promise<VmServeResult> {
    if (this.served) throw new InternalError("VM_REUSED", "A micro-VM may serve only one qube");
    this.served = true;
    try {
      return await this.serveOnce(qube, run, options.signal);
    } finally {
      await this.destroy();
    }
  }

  private async serveOnce(
    qube: VmQube,
    run: { outputDir?: string; graceMs: number; unpackTimeoutMs?: number; idleTimeoutMs?: number },
    signal: AbortSignal | undefined,
  ): Promise<VmServeResult> {
    signal?.throwIfAborted();
    if (this.exitedFlag) throw new PlatformError("VM_GONE", "The preloaded VM exited before it got its qube");
    const { limits } = qube;
    const parser = new ChannelParser({
      logBytes: limits.logBytes,
      maxArchiveBytes: limits.output.maxTotalBytes + 1024 * 1024 + limits.output.maxFiles * 1024,
    });
    const unpacking: Promise<SandboxOutput[]> =
      qube.outputs.length > 0 && run.outputDir
        ? unpackTar(parser.archive, run.outputDir, limits.output, signal ? { signal } : {})
        : drain(parser.archive);
    unpacking.catch(() => undefined); // observed below

    const startedAt = new Date();
    const started = performance.now();
    const meter = UsageMeter.start(this.child.pid ? { kind: "process", pid: this.child.pid } : undefined, {
      sinceStart: true,
    });
    let firstStdoutAt: number | undefined;
    let settle: (outcome: Outcome) => void = () => undefined;
    const settledOutcome = new Promise<Outcome>((resolve) => {
      settle = resolve;
    });
    // Until the exit report the qube's wall time (plus grace) bounds the VM. After it only the outputs are still
    // coming, bounded in bytes by the output caps the init checked up front: then the VM must keep them flowing
    // (no idle gap over `idleTimeoutMs`, the host's own pauses for backpressure excluded), however long a large
    // archive takes over the channel. Counting the transfer against the wall time lost large outputs.
    const idleMs = run.idleTimeoutMs ?? 30_000;
    const stuckMs = run.unpackTimeoutMs ?? 120_000;
    let pausedSince: number | undefined;
    const assembler = new FrameAssembler((bytes) => parser.push(bytes));
    const onTimer = (): void => {
      if (!assembler.sawExit) settle("timeout");
      else if (pausedSince === undefined) settle("stalled");
      // the host itself is behind (the unpacker waits on the disk): not the VM's fault, up to a point
      else if (performance.now() - pausedSince > stuckMs) settle("unpack-stuck");
      else timer.refresh();
    };
    let timer = setTimeout(onTimer, limits.wallTimeMs + run.graceMs);
    const stdout = this.child.stdout;
    const resume = (): void => {
      pausedSince = undefined;
      if (assembler.sawExit) timer.refresh();
      stdout?.resume();
    };
    const feed = (chunk: Buffer): void => {
      const hadExit = assembler.sawExit;
      assembler.push(chunk);
      if (firstStdoutAt === undefined && assembler.sawStdout) firstStdoutAt = performance.now();
      if (assembler.sawExit && !hadExit) {
        clearTimeout(timer);
        timer = setTimeout(onTimer, idleMs);
      } else if (assembler.sawExit) timer.refresh();
      if (parser.error || assembler.sawEnd) settle("done");
      else if (parser.backpressured && pausedSince === undefined) {
        // Every buffer between the VM and the disk stays bounded: QEMU blocks on its full stdout, the guest's
        // virtio ring fills, and the init waits in write() until the unpacker has written what it holds.
        pausedSince = performance.now();
        stdout?.pause();
        parser.archive.once("drain", resume);
      }
    };
    const early = Buffer.concat(this.early);
    this.early = [];
    this.sink = feed;
    feed(early);
    // A rejected archive (the unpacker stops reading) ends the run at once instead of stalling the VM.
    unpacking.then(
      () => undefined,
      () => settle("unpack-failed"),
    );

    let onAbort: (() => void) | undefined;
    let outcome: Outcome;
    // the qube goes in as the guest takes it: inputs are read from their files a frame at a time
    let sendError: AirqubeError | undefined;
    const sendFailed = this.sendQube(qube, signal).then(
      () => new Promise<never>(() => undefined),
      (error: unknown) => {
        sendError =
          error instanceof AirqubeError
            ? error
            : new UserError("INPUT_UNREADABLE", "Could not send the qube's inputs to the VM", {
                details: String(error),
                cause: error,
              });
        return "input-failed" as const;
      },
    );
    try {
      outcome = await Promise.race([
        settledOutcome,
        sendFailed,
        this.exited.then(() => "exited" as const),
        new Promise<"abort">((resolve) => {
          onAbort = () => resolve("abort");
          if (signal?.aborted) onAbort();
          signal?.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
    const usage = await meter.stop(); // while QEMU is still there to read
    // The result is complete (or will never be): the VM goes now, whatever it is doing.
    await this.destroy();
    this.sink = undefined;
    parser.archive.off("drain", resume);
    const durationMs = Math.round(performance.now() - started);
    const endedAt = new Date();
    const hostTimedOut = outcome === "timeout";
    const fatal = async (error: AirqubeError): Promise<never> => {
      parser.archive.destroy();
      await settled(unpacking, 5000); // the unpacker removes its staging dir: nothing stays behind
      throw error;
    };
    if (outcome === "abort") return fatal(new TimeoutError("ABORTED", "The qube was aborted"));
    if (outcome === "input-failed" && sendError) return fatal(sendError);
    if (outcome === "stalled")
      return fatal(
        new PeerError("VM_CHANNEL_STALLED", "The VM stopped sending its outputs", {
          details: `no byte for ${idleMs} ms after the exit report`,
        }),
      );
    if (outcome === "unpack-failed") {
      await settled(unpacking, 5000);
      const error = await unpacking.then(
        () => undefined,
        (caught: unknown) => caught,
      );
      parser.archive.destroy();
      if (error instanceof AirqubeError) throw error;
      throw new InternalError("UNPACK_FAILED", "Unpacking the outputs failed", { cause: error });
    }
    if (outcome === "unpack-stuck")
      return fatal(new InternalError("UNPACK_STUCK", "Unpacking the outputs did not keep up"));
    const earlier = parser.error;
    parser.push(assembler.rest());
    const channel = parser.end();
    // A VM killed at the host deadline may stop inside a frame; anything malformed before that is fatal.
    if (earlier) return fatal(earlier);
    if (parser.error && !hostTimedOut) return fatal(parser.error);
    if (!channel.complete && !hostTimedOut) {
      const details = this.stderrTail.trim();
      return fatal(
        new PeerError("VM_CHANNEL_INCOMPLETE", "The VM ended without finishing its report", details ? { details } : {}),
      );
    }
    // the init refused to send the outputs (a cap or a rule broken, named in the details): typed, nothing written
    if (channel.outputFailure) return fatal(channel.outputFailure);
    let files: SandboxOutput[] = [];
    if (hostTimedOut) {
      // killed at the host deadline: the archive (if any) is incomplete and nothing of it is kept
      parser.archive.destroy();
      await settled(unpacking, 5000);
      return { channel, files, hostTimedOut, startedAt, endedAt, durationMs, ...(usage ? { usage } : {}) };
    }
    // The whole archive is in the unpacker's hands now; bound the wait all the same.
    let unpackTimer: NodeJS.Timeout | undefined;
    files = await Promise.race([
      unpacking,
      new Promise<never>((_, reject) => {
        unpackTimer = setTimeout(
          () => reject(new InternalError("UNPACK_STUCK", "Unpacking the outputs did not finish")),
          run.unpackTimeoutMs ?? 120_000,
        );
      }),
    ]).finally(() => clearTimeout(unpackTimer));
    return {
      channel,
      files,
      hostTimedOut,
      startedAt,
      endedAt,
      durationMs,
      ...(firstStdoutAt !== undefined ? { firstStdoutAt, firstStdoutMs: firstStdoutAt - started } : {}),
      ...(usage ? { usage } : {}),
    };
  }

  /** Kills QEMU's whole process group, waits for it to exit, and wipes the private temp dir. Idempotent. */
  /**
   * Writes the qube to the VM's channel as frames, waiting for the channel to drain after each write, so that
   * only about one frame of input is in host memory at a time. Ends quietly when the VM goes away or the run is
   * aborted (the run's outcome says why); throws when an input cannot be read or changed size.
   */
  private async sendQube(qube: VmQube, signal: AbortSignal | undefined): Promise<void> {
    const stdin = this.child.stdin;
    if (!stdin) return;
    const gone = () => stdin.destroyed || stdin.writableEnded || signal?.aborted === true;
    for await (const chunk of qubeFrames(qube)) {
      if (gone()) return;
      if (!stdin.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            stdin.off("drain", done);
            stdin.off("close", done);
            stdin.off("error", done);
            resolve();
          };
          stdin.on("drain", done);
          stdin.on("close", done);
          stdin.on("error", done);
        });
      }
    }
  }

  destroy(): Promise<void> {
    this.destroyed ??= (async () => {
      const pid = this.child.pid;
      if (pid !== undefined && !this.exitedFlag) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          try {
            this.child.kill("SIGKILL");
          } catch {
            // already gone
          }
        }
      }
      if (pid !== undefined) await this.exited;
      this.child.stdin?.destroy();
      await rm(this.privateDir, { recursive: true, force: true });
    })();
    return this.destroyed;
  }
}

/** Waits for a promise to settle, at most `ms`. */
async function settled(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise.then(
      () => undefined,
      () => undefined,
    ),
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

async function drain(stream: NodeJS.ReadableStream): Promise<SandboxOutput[]> {
  for await (const _ of stream) {
    // outputs not requested: discard
  }
  return [];
}

/** How a served qube's wait ended. */
type Outcome = "done" | "exited" | "timeout" | "stalled" | "unpack-failed" | "unpack-stuck" | "abort" | "input-failed";
