/**
 * Where Airqube's own package lives on disk, whether it runs from its sources (`src/`), from its compiled
 * copy (`dist/`) or from `node_modules/airqube`: the nearest directory above this module whose package.json
 * names `airqube`. Built images (`images/build/`), the contracts' Hardhat project and `bin/airqube.js` are
 * found from there.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

/** The package's root directory (holding its package.json). */
export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 8; up++) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === "airqube") {
          cached = dir;
          return dir;
        }
      } catch {
        // an unreadable package.json on the way up is not ours
      }
    }
    dir = dirname(dir);
  }
  // unreachable in a real install: the module is always inside the package
  cached = join(dirname(fileURLToPath(import.meta.url)), "..");
  return cached;
}

/** The package's version, from its package.json. */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version?: unknown };
  return typeof manifest.version === "string" ? manifest.version : "0.0.0";
}
