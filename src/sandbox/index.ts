/**
 * The sandbox port and its tiers: run one qube in a fresh, hardened, disposable sandbox (`ContainerSandbox`:
 * a hardened Docker container; `MicroVmSandbox`: a QEMU micro-VM) and destroy it afterwards.
 *
 * @example
 * import { ContainerSandbox } from "airqube/sandbox";
 * const sandbox = new ContainerSandbox();
 * const result = await sandbox.run({ image: "airqube/busybox:latest", command: ["echo", "hi"] });
 * await sandbox.close();
 *
 * @packageDocumentation
 */
export {
  type ArchiveLimits,
  DEFAULT_SANDBOX_LIMITS,
  type QubeRun,
  type Sandbox,
  type SandboxInput,
  type SandboxLimits,
  type SandboxOutput,
  type SandboxResult,
  type SandboxUsage,
  type Tier,
} from "./api.js";
export {
  ContainerSandbox,
  type ContainerSandboxOptions,
  type ContainerSandboxStats,
  defaultInitBinary,
} from "./container-sandbox.js";
export { hardenedContainerConfig, SANDBOX_LABEL, SANDBOX_USER } from "./hardening.js";
export { createImageArchive, type ImageArchive, imageDigest, type LayerEntry, loadImageArchive } from "./images.js";
export {
  defaultKernel,
  defaultVmInit,
  MicroVmSandbox,
  type MicroVmSandboxOptions,
  type MicroVmStats,
} from "./microvm-sandbox.js";
export { seccompProfile } from "./seccomp.js";
export { MIN_SANDBOX_UID, UidPool, type UidRange } from "./uid-pool.js";
export { type UnpackOptions, unpackTar } from "./unpack.js";
