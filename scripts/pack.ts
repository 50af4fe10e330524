/**
 * `npm pack` of a copy of the repository's sources, so that `prepack` (which rebuilds dist/) never touches the
 * dist/ that running CLI processes (tests, a devnet) import from. Used by the packaging test and bench:import.
 * When the repository's dist/ is fresh (`npm run build` ran after the last change to anything it is built
 * from, as CI's set-up does), the copy takes that dist/ and packs without `prepack`: the same files, without a
 * second compilation (about two minutes on a loaded 2-core machine).
 */
import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, rm, stat, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const ROOT = join(import.meta.dirname, "..");
/** What `prepack` needs to build the package, and what `files` ships. */
const SOURCES = ["package.json", "README.md", "tsconfig.json", "tsconfig.build.json", "bin", "src", "contracts"];

export interface Packed {
  /** The tarball's file name inside the destination directory. */
  filename: string;
  /** Bytes of the tarball. */
  size: number;
  /** Bytes of its contents. */
  unpackedSize: number;
  files: { path: string }[];
}

/** Packs the package into `destination` and returns npm's description of the tarball. */
export async function packCopy(destination: string): Promise<Packed> {
  const stage = await mkdtemp(join(tmpdir(), "airqube-pack-"));
  try {
    for (const entry of SOURCES) await cp(join(ROOT, entry), join(stage, entry), { recursive: true });
    await symlink(join(ROOT, "node_modules"), join(stage, "node_modules"));
    const prebuilt = await distIsFresh();
    if (prebuilt) await cp(join(ROOT, "dist"), join(stage, "dist"), { recursive: true });
    const args = ["pack", "--json", "--pack-destination", destination, ...(prebuilt ? ["--ignore-scripts"] : [])];
    const { stdout } = await promisify(execFile)("npm", args, { cwd: stage, maxBuffer: 64 * 1024 * 1024 });
    return (JSON.parse(stdout.slice(stdout.indexOf("["))) as Packed[])[0]!;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** The newest modification time of a file under `path` (or of `path` itself), in ms. */
async function newest(path: string): Promise<number> {
  const info = await stat(path);
  if (!info.isDirectory()) return info.mtimeMs;
  let latest = info.mtimeMs; // a deleted source changes its directory
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    const full = join(entry.parentPath, entry.name);
    latest = Math.max(latest, (await stat(full)).mtimeMs);
  }
  return latest;
}

/** Whether dist/ was built after the last change to anything `npm run build` reads. */
async function distIsFresh(): Promise<boolean> {
  let built: number;
  try {
    built = (await stat(join(ROOT, "dist", ".build-stamp"))).mtimeMs;
  } catch {
    return false;
  }
  const inputs = ["src", "tsconfig.json", "tsconfig.build.json", "package.json"];
  for (const input of inputs) if ((await newest(join(ROOT, input))) > built) return false;
  return true;
}
