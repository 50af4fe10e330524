/**
 * Paths a RunProcess may name. The process runs in a fresh sandbox that sees only its image, /input (vol-input,
 * read-only) and its scratch space (/output, /scratch, /tmp); a path that climbs (`..`) or names the provider's
 * host directories (the activity's work dir, the runtime's home) is refused before anything runs.
 */
import { posix } from "node:path";
import { UserError } from "../../qube/errors.js";

/** A path of a RunProcess outside what the sandbox offers. */
export class RuntimePathError extends UserError {
  constructor(shortMessage: string, details: string) {
    super("RUNTIME_PATH_OUTSIDE_VOLUMES", shortMessage, { details: details.slice(0, 300) });
  }
}

/** Most arguments of one process, and longest argument. */
export const MAX_ARGS = 1024;
export const MAX_ARG_BYTES = 64 * 1024;

function climbs(path: string): boolean {
  return path.split("/").includes("..");
}

function underHost(path: string, hostRoots: readonly string[]): boolean {
  return hostRoots.some((root) => root !== "/" && (path === root || path.startsWith(`${root}/`)));
}

function checkAbsolute(what: string, path: string, hostRoots: readonly string[]): string {
  if (path.includes("\0")) throw new RuntimePathError(`The process's ${what} holds a NUL byte`, what);
  if (!path.startsWith("/") || posix.normalize(path) !== path.replace(/(.)\/+$/, "$1") || climbs(path))
    throw new RuntimePathError(`The process's ${what} must be an absolute, normalised path without ..`, path);
  if (underHost(path, hostRoots))
    throw new RuntimePathError(`The process's ${what} names a host path outside the volumes`, path);
  return path;
}

/**
 * Checks a RunProcess's `bin`, `workDir` and arguments. `hostRoots`: host directories no path may name (the
 * work dir, the runtime's home). An argument is refused when it is path-like (starts with `/`, `./` or `../`)
 * and climbs, or names a host root.
 *
 * @throws RuntimePathError (UserError `RUNTIME_PATH_OUTSIDE_VOLUMES`)
 * @example
 * checkProcessPaths({ bin: "/bin/sh", args: ["-c", "ls /input"], workDir: "/output" }, ["/var/lib/golem/work/x"]);
 */
export function checkProcessPaths(
  process: { bin: string; args: readonly string[]; workDir: string },
  hostRoots: readonly string[],
): void {
  checkAbsolute("program", process.bin, hostRoots);
  if (process.workDir !== "") checkAbsolute("working directory", process.workDir, hostRoots);
  if (process.args.length > MAX_ARGS)
    throw new UserError("RUNTIME_ARGS_INVALID", "The process has too many arguments", {
      details: `${process.args.length}, at most ${MAX_ARGS}`,
    });
  for (const arg of process.args) {
    if (Buffer.byteLength(arg) > MAX_ARG_BYTES || arg.includes("\0"))
      throw new UserError("RUNTIME_ARGS_INVALID", "A process argument is too long or holds a NUL byte");
    const pathLike = arg.startsWith("/") || arg.startsWith("./") || arg.startsWith("../") || arg === "..";
    if (pathLike && climbs(arg)) throw new RuntimePathError("A process argument climbs out of its directory", arg);
    if (underHost(arg, hostRoots) || hostRoots.some((root) => arg.includes(`${root}/`)))
      throw new RuntimePathError("A process argument names a host path outside the volumes", arg);
  }
}
