/** Default locations: everything under AIRQUBE_HOME (default ~/.airqube). */
import { homedir } from "node:os";
import { join } from "node:path";
import { UserError } from "../qube/errors.js";
import { relativePathProblem } from "../qube/paths.js";

export function airqubeHome(): string {
  return process.env.AIRQUBE_HOME ?? join(homedir(), ".airqube");
}

export const defaultProviderDir = (): string => join(airqubeHome(), "provider");
export const defaultRequestorDir = (): string => join(airqubeHome(), "requestor");
export const defaultProbeCache = (): string => join(airqubeHome(), "probe-cache");

/**
 * Checks `--out` values, for `run` and `sandbox run` alike: relative paths under /output (one meaning, one
 * error, `OUT_INVALID`, everywhere).
 */
export function declaredOutputs(out: string[], output: string | undefined): string[] {
  if (out.length > 0 && !output)
    throw new UserError("OUTPUT_DIR_MISSING", "--out needs --output", {
      details: "pass --output DIR: /output/PATH lands at DIR/PATH",
    });
  for (const path of out) {
    const problem = relativePathProblem(path);
    if (problem !== undefined)
      throw new UserError("OUT_INVALID", "--out is a path under /output", {
        details: `"${path}": ${problem}; e.g. --out result.txt for /output/result.txt`,
      });
  }
  return out;
}
