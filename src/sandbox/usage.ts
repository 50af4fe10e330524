/**
 * Metered usage of one sandbox: CPU time and peak memory, read by the host from the kernel's own accounting,
 * never from inside the sandbox. The container tier reads the container's cgroup (v1: cpuacct.usage and
 * memory.max_usage_in_bytes; v2: cpu.stat and memory.peak); the micro-VM tier reads the QEMU process's
 * /proc/<pid>/stat and VmHWM. The counters are sampled while the sandbox runs and once more when its init has
 * sent its end frame (the cgroup disappears with the container): CPU time only grows and the memory figure
 * is a high-water mark, so the last good sample is the closest to the truth.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** CPU time and peak memory of one sandbox. */
export interface SandboxUsage {
  /** User plus system CPU time, milliseconds. */
  cpuMs: number;
  /** Peak memory charged to the sandbox (cgroup high-water mark, or the QEMU process's peak RSS), bytes. */
  maxMemoryBytes: number;
}

/** Where one sandbox's counters are read. */
export type UsageSource =
  | { kind: "cgroup1"; cpuacct: string; memory: string }
  | { kind: "cgroup2"; dir: string }
  | { kind: "process"; pid: number };

const CGROUP_ROOT = "/sys/fs/cgroup";
/** Clock ticks per second for /proc/<pid>/stat (USER_HZ is 100 on every Linux architecture Node runs on). */
const USER_HZ = 100;

/**
 * Finds the cgroup of a host process (e.g. a container's init, from `docker inspect` State.Pid), from
 * /proc/<pid>/cgroup: v1 when it lists cpuacct and memory hierarchies, v2 for the unified `0::` line.
 *
 * @example
 * const source = await cgroupOf(info.State.Pid); // { kind: "cgroup1", cpuacct: ".../docker/<id>", ... }
 */
export async function cgroupOf(pid: number, root = CGROUP_ROOT): Promise<UsageSource | undefined> {
  const text = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => "");
  let cpuacct: string | undefined;
  let memory: string | undefined;
  let unified: string | undefined;
  for (const line of text.split("\n")) {
    const match = /^\d+:([^:]*):(\/.*)$/.exec(line);
    if (!match) continue;
    const [, controllers, path] = match as unknown as [string, string, string];
    const list = controllers.split(",");
    if (controllers === "") unified = path;
    if (list.includes("cpuacct")) cpuacct = join(root, controllers, path);
    if (list.includes("memory")) memory = join(root, controllers, path);
  }
  if (cpuacct && memory) return { kind: "cgroup1", cpuacct, memory };
  if (unified !== undefined && !cpuacct && !memory) return { kind: "cgroup2", dir: join(root, unified) };
  return undefined;
}

/**
 * The cgroup Docker gives a container, from the engine's cgroup driver and version (`docker info`) and the
 * container's id: known before the container starts, so nothing races its exit.
 *
 * @example
 * dockerCgroup("c0ffee...", { CgroupDriver: "cgroupfs", CgroupVersion: "1" });
 * // { kind: "cgroup1", cpuacct: "/sys/fs/cgroup/cpuacct/docker/c0ffee...", memory: "/sys/fs/cgroup/memory/docker/c0ffee..." }
 */
export function dockerCgroup(
  containerId: string,
  engine: { CgroupDriver?: string; CgroupVersion?: string },
  root = CGROUP_ROOT,
): UsageSource | undefined {
  if (!/^[0-9a-f]{64}$/.test(containerId)) return undefined;
  const path =
    engine.CgroupDriver === "systemd"
      ? join("system.slice", `docker-${containerId}.scope`)
      : engine.CgroupDriver === "cgroupfs"
        ? join("docker", containerId)
        : undefined;
  if (!path) return undefined;
  if (engine.CgroupVersion === "2") return { kind: "cgroup2", dir: join(root, path) };
  return { kind: "cgroup1", cpuacct: join(root, "cpuacct", path), memory: join(root, "memory", path) };
}

async function readNumber(path: string): Promise<number | undefined> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (text === undefined || text.length > 64) return undefined;
  const value = Number(text.trim());
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** One reading of the counters, or undefined when they are gone (the sandbox ended) or unreadable. */
export async function readUsage(source: UsageSource): Promise<SandboxUsage | undefined> {
  if (source.kind === "cgroup1") {
    const [cpuNs, peak] = await Promise.all([
      readNumber(join(source.cpuacct, "cpuacct.usage")),
      readNumber(join(source.memory, "memory.max_usage_in_bytes")),
    ]);
    if (cpuNs === undefined || peak === undefined) return undefined;
    return { cpuMs: Math.round(cpuNs / 1e6), maxMemoryBytes: peak };
  }
  if (source.kind === "cgroup2") {
    const [stat, peak] = await Promise.all([
      readFile(join(source.dir, "cpu.stat"), "utf8").catch(() => undefined),
      readNumber(join(source.dir, "memory.peak")),
    ]);
    const usec = stat ? /^usage_usec (\d+)$/m.exec(stat)?.[1] : undefined;
    if (usec === undefined || peak === undefined) return undefined;
    return { cpuMs: Math.round(Number(usec) / 1000), maxMemoryBytes: peak };
  }
  const [stat, status] = await Promise.all([
    readFile(`/proc/${source.pid}/stat`, "utf8").catch(() => undefined),
    readFile(`/proc/${source.pid}/status`, "utf8").catch(() => undefined),
  ]);
  if (!stat || !status) return undefined;
  // fields after the command (which may hold spaces and parentheses): state is field 3, utime 14, stime 15
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (!Number.isFinite(ticks) || hwm === undefined) return undefined;
  return { cpuMs: Math.round((ticks * 1000) / USER_HZ), maxMemoryBytes: Number(hwm) * 1024 };
}

/**
 * Samples a sandbox's counters every `intervalMs` until `stop()`, which takes a last sample and returns the
 * largest figures seen (undefined when not one sample could be read).
 *
 * @example
 * const meter = UsageMeter.start(await cgroupOf(pid));
 * // ... the sandbox runs ...
 * const usage = await meter.stop(); // { cpuMs: 812, maxMemoryBytes: 41943040 }
 */
export class UsageMeter {
  private usage: SandboxUsage | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private pending: Promise<void> = Promise.resolve();
  private stopped = false;

  private baseline: number | undefined;

  private constructor(
    private source: UsageSource | undefined,
    intervalMs: number,
    private readonly sinceStart: boolean,
  ) {
    this.timer = setInterval(() => void this.sample(), intervalMs);
    this.timer.unref();
    void this.sample();
  }

  /**
   * Starts sampling `source` (nothing to sample when undefined). With `sinceStart`, CPU time counts from the
   * first sample (a preloaded VM's boot is not the qube's); peak memory is the process's high-water mark.
   */
  static start(
    source: UsageSource | undefined,
    options: { intervalMs?: number; sinceStart?: boolean } = {},
  ): UsageMeter {
    return new UsageMeter(source, options.intervalMs ?? 250, options.sinceStart ?? false);
  }

  /** Reads the counters now (e.g. when the sandbox reports its exit), after any reading under way. */
  sample(): Promise<void> {
    if (this.stopped) return this.pending;
    this.pending = this.pending.then(async () => {
      if (!this.source) return;
      const now = await readUsage(this.source);
      if (!now) return;
      if (this.sinceStart) this.baseline ??= now.cpuMs;
      this.usage = {
        cpuMs: Math.max(now.cpuMs - (this.baseline ?? 0), this.usage?.cpuMs ?? 0),
        maxMemoryBytes: Math.max(now.maxMemoryBytes, this.usage?.maxMemoryBytes ?? 0),
      };
    });
    return this.pending;
  }

  /** Reads from `source` from now on (when the first guess of where the counters are proved wrong). */
  use(source: UsageSource | undefined): void {
    this.source = source;
  }

  /** The figures so far, without stopping. */
  get current(): SandboxUsage | undefined {
    return this.usage;
  }

  /** Takes a last sample, stops sampling and returns the largest figures seen. */
  async stop(): Promise<SandboxUsage | undefined> {
    if (!this.stopped) {
      await this.sample();
      this.stopped = true;
      clearInterval(this.timer);
    }
    await this.pending;
    return this.usage;
  }
}
