/**
 * What the package costs a user: its size packed and installed, and how long `import("airqube")` takes.
 * Packs the package (`npm pack`, which builds it), installs the tarball into an empty project (from npm's
 * cache where it can), then times, in fresh Node processes, `import("airqube")` (the SDK entry, which must stay
 * lazy), `import("airqube/requestor")` (the whole requestor stack: libp2p, ethers, SQLite) and, as the
 * baseline measured in the same run, `import("node:fs")`. Each figure is the median of `--rounds` processes.
 * `importRatio` = importMs / requestorImportMs: how much of the full stack the SDK entry loads up front.
 * `--json` prints only the JSON line.
 *
 * Usage: npm run bench:import -- [--json] [--rounds 7]
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { packCopy } from "../scripts/pack.js";
import { median } from "./stats.js";

const run = promisify(execFile);
const args = process.argv.slice(2);
const jsonOnly = args.includes("--json");
const roundsAt = args.indexOf("--rounds");
const rounds = roundsAt >= 0 ? Number(args[roundsAt + 1]) : 7;
const say = (line: string) => {
  if (!jsonOnly) process.stderr.write(`${line}\n`);
};

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  return total;
}

/** Milliseconds one fresh process spends in `await import(specifier)`. */
async function importMs(project: string, specifier: string): Promise<number> {
  const script = `const t = performance.now(); await import(${JSON.stringify(specifier)}); process.stdout.write(String(performance.now() - t));`;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: project });
  return Number(stdout);
}

const project = await mkdtemp(join(tmpdir(), "airqube-bench-import-"));
try {
  say("packing (builds dist/) ...");
  const packed = await packCopy(project);
  await writeFile(
    join(project, "package.json"),
    JSON.stringify({ private: true, type: "module", dependencies: { airqube: `file:./${packed.filename}` } }),
  );
  say("installing the tarball into an empty project ...");
  await run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts", "--loglevel=error"], {
    cwd: project,
    maxBuffer: 64 * 1024 * 1024,
  });
  const packageBytes = await treeBytes(join(project, "node_modules", "airqube"));
  const installedBytes = await treeBytes(join(project, "node_modules"));
  const samples = { baseline: [] as number[], sdk: [] as number[], requestor: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    samples.baseline.push(await importMs(project, "node:fs"));
    samples.sdk.push(await importMs(project, "airqube"));
    samples.requestor.push(await importMs(project, "airqube/requestor"));
  }
  const result = {
    packedBytes: packed.size,
    /** The package itself once installed. */
    packageBytes,
    /** The package with every dependency it installs. */
    installedBytes,
    importMs: Math.round(median(samples.sdk) * 10) / 10,
    requestorImportMs: Math.round(median(samples.requestor) * 10) / 10,
    baselineMs: Math.round(median(samples.baseline) * 10) / 10,
    importRatio: Math.round((median(samples.sdk) / median(samples.requestor)) * 1000) / 1000,
    rounds,
  };
  say(
    `packed ${(result.packedBytes / 1e6).toFixed(2)} MB, installed ${(result.packageBytes / 1e6).toFixed(2)} MB (with dependencies ${(result.installedBytes / 1e6).toFixed(1)} MB); import("airqube") ${result.importMs} ms, import("airqube/requestor") ${result.requestorImportMs} ms, import("node:fs") ${result.baselineMs} ms`,
  );
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await rm(project, { recursive: true, force: true });
}
