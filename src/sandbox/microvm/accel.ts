/**
 * Choosing QEMU's accelerator. `kvm` and `tcg` are taken as given; `auto` boots a self-test guest (the kernel
 * and an initramfs holding only our init) under KVM with a short deadline and falls back to TCG when
 * /dev/kvm is missing or unusable, or when the guest does not say hello in time (Linux guests hang under
 * the nested KVM of some cloud machines). The answer is cached per kernel and init for the process.
 */

import { constants } from "node:fs";
import { access, chmod, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { AirqubeError, PlatformError } from "../../qube/errors.js";
import { buildCpio } from "./cpio.js";
import type { Accel } from "./qemu-args.js";
import { bootFilesHash, ensureCacheDir, initEntries, loadVmModules, type VmModule } from "./rootfs.js";
import { hostTscKhz, MicroVm } from "./vm.js";

export type AccelChoice = Accel | "auto";

export interface AccelDecision {
  accel: Accel;
  /** Why: "requested", "kvm self-test passed in N ms", or why KVM was rejected. */
  reason: string;
}

export interface SelfTestConfig {
  qemuBinary: string;
  kernel: string;
  initBinary: string;
  cacheDir: string;
  /** Deadline of the KVM self-test boot (a working KVM boots in ~0.2 s). */
  timeoutMs?: number;
}

const decisions = new Map<string, Promise<AccelDecision>>();

/** Returns the gid of the `kvm` group (the owner group of /dev/kvm), if any. */
export async function kvmGroup(): Promise<number | undefined> {
  const info = await stat("/dev/kvm").catch(() => undefined);
  return info?.gid;
}

/** Writes (once) the self-test initramfs: nothing but our init, the channel's modules and the mount points. */
export async function selfTestInitrd(
  initBinary: string,
  cacheDir: string,
  modules: readonly VmModule[],
): Promise<{ path: string; bytes: number }> {
  const init = await readFile(initBinary);
  const hash = bootFilesHash(init, modules);
  await ensureCacheDir(cacheDir);
  const path = join(cacheDir, `selftest-${hash}.cpio.gz`);
  const existing = await stat(path).catch(() => undefined);
  if (existing) return { path, bytes: existing.size };
  const data = gzipSync(buildCpio(initEntries(init, modules)));
  const partial = `${path}.${process.pid}.partial`;
  await writeFile(partial, data, { mode: 0o644 });
  await chmod(partial, 0o644);
  await rename(partial, path);
  return { path, bytes: data.length };
}

/**
 * Resolves `auto` to `kvm` or `tcg`.
 *
 * @example
 * const { accel, reason } = await resolveAccel("auto", config); // { accel: "tcg", reason: "kvm self-test: ..." }
 */
export function resolveAccel(
  choice: AccelChoice,
  config: SelfTestConfig,
  options: { signal?: AbortSignal } = {},
): Promise<AccelDecision> {
  if (choice !== "auto") return Promise.resolve({ accel: choice, reason: "requested" });
  const key = `${config.kernel}|${config.initBinary}|${config.qemuBinary}`;
  let decision = decisions.get(key);
  if (!decision) {
    decision = selfTest(config, options.signal);
    decisions.set(key, decision);
    decision.catch(() => decisions.delete(key));
  }
  return decision;
}

async function selfTest(config: SelfTestConfig, signal: AbortSignal | undefined): Promise<AccelDecision> {
  const timeoutMs = config.timeoutMs ?? 4000;
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    return { accel: "tcg", reason: "/dev/kvm is missing or not accessible" };
  }
  const kvmGid = await kvmGroup();
  const initrd = await selfTestInitrd(config.initBinary, config.cacheDir, await loadVmModules(config.kernel));
  const tscKhz = await hostTscKhz();
  const started = performance.now();
  try {
    const vm = await MicroVm.boot(
      {
        qemuBinary: config.qemuBinary,
        kernel: config.kernel,
        initrd: { ...initrd, rootfsBytes: initrd.bytes * 3 },
        accel: "kvm",
        memoryBytes: 32 * 1024 * 1024,
        vcpus: 1,
        bootTimeoutMs: timeoutMs,
        ...(kvmGid !== undefined ? { kvmGid } : {}),
        ...(tscKhz ? { tscKhz } : {}),
      },
      signal ? { signal } : {},
    );
    await vm.destroy();
    return { accel: "kvm", reason: `kvm self-test booted in ${Math.round(performance.now() - started)} ms` };
  } catch (error) {
    if (signal?.aborted) throw error;
    const why = error instanceof AirqubeError ? error.shortMessage : String(error);
    if (error instanceof PlatformError && error.code === "QEMU_SPAWN_FAILED") throw error;
    return { accel: "tcg", reason: `kvm self-test failed (${why}); using tcg` };
  }
}
