/**
 * `npm pack` of a copy of the repository's sources, so that `prepack` (which rebuilds dist/) never touches the
 * dist/ that running CLI processes (tests, a devnet) import from. Used by the packaging test and bench:import.
 */
import { execFile } from "node:child_process";
import { cp, mkdtemp, rm, symlink } from "node:fs/promises";
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
    const { stdout } = await promisify(execFile)("npm", ["pack", "--json", "--pack-destination", destination], {
      cwd: stage,
      maxBuffer: 64 * 1024 * 1024,
    });
    return (JSON.parse(stdout.slice(stdout.indexOf("["))) as Packed[])[0]!;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
