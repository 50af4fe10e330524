/**
 * Every flag of the micro-VM tier's QEMU command line, as data. `qemuArgs` is pure: the same inputs give the
 * same argv, and `test/sandbox/microvm-args.test.ts` pins it. The process-level confinement (unprivileged
 * uid/gid, own process group, private temp dir, minimal environment) is in `qemuSpawnPlan`, pure as well.
 */

export type Accel = "kvm" | "tcg";

export interface QemuArgsInput {
  accel: Accel;
  kernel: string;
  initrd: string;
  /** Guest RAM in MiB (the qube's memory limit plus the kernel's and the initramfs' share). */
  memoryMiB: number;
  /** vCPUs (the qube's CPU limit rounded up). */
  vcpus: number;
  /** Where the kernel console (ttyS0) goes: nowhere (default) or a file in the VM's private temp dir. */
  consoleLog?: string;
  /** The host TSC rate in kHz (see `kernelCmdline`). */
  tscKhz?: number;
}

/**
 * The kernel command line: quiet console on ttyS0, no reboot loops, no EDD probing. With `tscKhz` (the host's
 * TSC rate, which is what a TCG guest reads from rdtsc) the kernel skips TSC calibration against the PIT:
 * on a loaded host that calibration fails, and the jiffies fallback then waits for PIT interrupts that the
 * microvm machine never delivers, so the boot hangs.
 */
export function kernelCmdline(tscKhz?: number): string {
  const tsc = tscKhz && Number.isInteger(tscKhz) && tscKhz > 0 ? [`tsc_early_khz=${tscKhz}`, "tsc=reliable"] : [];
  return [KERNEL_CMDLINE, ...tsc].join(" ");
}

export const KERNEL_CMDLINE = [
  "console=ttyS0", // kernel messages on the UART only, never on the channel (a virtio-serial port)
  "quiet",
  "loglevel=3",
  "panic=-1", // a dying init reboots at once ...
  "reboot=t", // ... by triple fault, which -no-reboot turns into QEMU exiting
  "edd=off", // no BIOS disk probing (microvm has no BIOS disks)
  "8250.nr_uarts=1", // exactly the one UART the VM has (the console)
  "rdinit=/init", // our static init from the initramfs
  // No major LSM: the Debian kernel would enable AppArmor with no policy loaded, so the qube would run under the
  // label "unconfined" and nothing would confine it. The VM boundary, seccomp and no capabilities do.
  "lsm=landlock,lockdown,yama,bpf",
].join(" ");

/**
 * Returns the QEMU argv (without the binary) for one disposable micro-VM.
 *
 * @example
 * qemuArgs({ accel: "tcg", kernel: "/boot/vmlinuz", initrd: "/cache/x.cpio.gz", memoryMiB: 384, vcpus: 1 });
 */
export function qemuArgs(input: QemuArgsInput): string[] {
  return [
    // The minimal machine: no PCI, no firmware option ROMs; the one ISA UART for the console, an RTC for the clock.
    // ACPI on: its tables are how the guest finds the virtio-mmio transports (the Debian kernel has no
    // virtio_mmio.device= command-line support, so QEMU adds nothing to the command line: auto-kernel-cmdline=off).
    ...["-M", "microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=on,auto-kernel-cmdline=off"],
    // TCG (software emulation) or KVM; KVM gets the host CPU model, TCG the default qemu64.
    ...["-accel", input.accel],
    ...(input.accel === "kvm" ? ["-cpu", "host"] : []),
    ...["-m", `${input.memoryMiB}M`], // guest RAM cap
    ...["-smp", String(input.vcpus)], // vCPU cap
    "-nodefaults", // no default NIC, no VGA, no floppy/CD, no default monitor or serial
    "-no-user-config", // ignore any qemu config files on the host
    "-nographic", // no display
    "-no-reboot", // a guest reboot (panic, triple fault) ends QEMU
    // QEMU's own seccomp filter: no obsolete syscalls, no set*uid, no fork/exec, no priority/affinity changes.
    ...["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"],
    // ttyS0: the kernel console, discarded unless a log file in the private temp dir is asked for.
    ...["-serial", input.consoleLog ? `file:${input.consoleLog}` : "null"],
    // The framed channel, the only thing that crosses the VM boundary, on QEMU's stdin/stdout pipes: one
    // virtio-serial port (virtio-console over virtio-mmio; 32 KiB buffers per guest write, where the UART moved a
    // byte per exit). max_ports=2: port 0 (reserved for a console, unused) and ours; no emergency-write register.
    ...["-chardev", "stdio,id=channel,signal=off"],
    ...["-device", "virtio-serial-device,max_ports=2,emergency-write=off"],
    ...["-device", "virtserialport,chardev=channel,name=airqube.0,nr=1"],
    // No -netdev / -nic / -drive / -fsdev, no other -device: no network, no disk, no shared folder.
    ...["-kernel", input.kernel],
    ...["-initrd", input.initrd],
    ...["-append", kernelCmdline(input.tscKhz)],
  ];
}

/** The unprivileged identity QEMU runs as (nobody:nogroup), with the `kvm` group added only for KVM. */
export const QEMU_UID = 65534;
export const QEMU_GID = 65534;

export interface QemuSpawnPlan {
  /** The program to start: `setpriv`, which then execs QEMU (see `argv`). */
  command: string;
  /** Full argv after `command`: the setpriv options, `--`, the QEMU binary and its arguments. */
  argv: string[];
  uid: number;
  gid: number;
  /** A new session and process group, so that the host can kill QEMU and anything it left behind at once. */
  detached: true;
  /** The private temp dir: QEMU's cwd and TMPDIR, removed after the VM. */
  cwd: string;
  env: Record<string, string>;
}

/**
 * How to start the QEMU process: through util-linux `setpriv` (parent-death signal KILL, no_new_privs), as
 * nobody (or nobody with gid `kvm` when KVM must open /dev/kvm), in its own process group, with a minimal
 * environment and its private temp dir as cwd and TMPDIR.
 */
export function qemuSpawnPlan(input: {
  accel: Accel;
  privateDir: string;
  qemuBinary: string;
  qemuArgs: string[];
  kvmGid?: number;
  /** A uid of this VM's own (UidPool); default nobody. The same number is its gid unless KVM needs `kvm`. */
  uid?: number;
}): QemuSpawnPlan {
  return {
    command: "setpriv",
    argv: [
      "--pdeathsig", // QEMU dies with the agent that started it: a crashed host never leaks a VM ...
      "KILL",
      "--no-new-privs", // ... and nothing QEMU could exec may gain privileges
      "--",
      input.qemuBinary,
      ...input.qemuArgs,
    ],
    uid: input.uid ?? QEMU_UID,
    gid: input.accel === "kvm" && input.kvmGid !== undefined ? input.kvmGid : (input.uid ?? QEMU_GID),
    detached: true,
    cwd: input.privateDir,
    env: { PATH: "/usr/bin:/bin", TMPDIR: input.privateDir, HOME: input.privateDir },
  };
}

/** Guest RAM for a qube: its memory limit, plus 96 MiB for the kernel, plus twice the initramfs (image + unpacked). */
export function guestMemoryMiB(memoryBytes: number, rootfsBytes: number, initrdBytes: number): number {
  const mib = 1024 * 1024;
  return Math.ceil(memoryBytes / mib) + 96 + Math.ceil((rootfsBytes + initrdBytes) / mib);
}

/** Parses the host's TSC rate in kHz from /proc/cpuinfo text ("cpu MHz : 2300.000"); undefined if absent. */
export function tscKhzFromCpuinfo(cpuinfo: string): number | undefined {
  const match = /^cpu MHz\s*:\s*([0-9]+(?:\.[0-9]+)?)/m.exec(cpuinfo);
  if (!match) return undefined;
  const khz = Math.round(Number(match[1]) * 1000);
  return khz > 100_000 && khz < 20_000_000 ? khz : undefined;
}
