/**
 * `npm run images:debian`: builds Airqube's Debian images from Debian's own packages, reproducibly.
 *  - airqube/python:latest  python3 (with its standard library)
 *  - airqube/pdf:latest     poppler-utils (pdftoppm), for `airqube convert-pdf`
 * Each rootfs comes from `mmdebstrap --variant=essential` with a fixed SOURCE_DATE_EPOCH (default 1700000000),
 * then becomes a single-layer `docker save` archive with fixed metadata (src/images/build-archive.ts), so the
 * same Debian packages give the same archive digest and image id on any machine. The ids, digests and
 * package versions are recorded in images/build/debian-images.json; the archives stay in images/build/.
 * Flags: `--only python|pdf`, `--if-missing` (skip an image the engine already has under its recorded id),
 * `--no-cache`.
 *
 * Build cache: each built archive and its record are kept in AIRQUBE_IMAGE_CACHE_DIR (default
 * ~/.cache/airqube/debian-images), keyed by this script's text and the image's recipe (packages, suite, mirror,
 * epoch). A fresh checkout on the same machine loads the cached archive (its digest and the engine's image id
 * checked, as for any shipped image) instead of running mmdebstrap again. An entry older than
 * AIRQUBE_IMAGE_CACHE_DAYS (default 7; 0 turns the cache off) is rebuilt, so Debian's security updates reach
 * the images within a week.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { writeImageArchive } from "../src/images/build-archive.js";
import { inspectImageArchive, loadCheckedArchive } from "../src/images/load-archive.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const build = join(root, "images", "build");
mkdirSync(build, { recursive: true });
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? "1700000000");
const suite = process.env.AIRQUBE_DEBIAN_SUITE ?? "bookworm";
const mirror = process.env.AIRQUBE_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";

interface DebianImage {
  name: string;
  packages: string[];
  cmd: string[];
}
const IMAGES: DebianImage[] = [
  // python3, not python3-minimal: the minimal one lacks most of the standard library (json, for one)
  { name: "python", packages: ["python3"], cmd: ["python3"] },
  { name: "pdf", packages: ["poppler-utils"], cmd: ["pdftoppm", "-v"] },
];

const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const ifMissing = args.includes("--if-missing");
const cacheDays = Number(process.env.AIRQUBE_IMAGE_CACHE_DAYS ?? "7");
if (!Number.isFinite(cacheDays) || cacheDays < 0) {
  console.error(
    `AIRQUBE_IMAGE_CACHE_DAYS must be a number of days (0 turns the cache off), not "${process.env.AIRQUBE_IMAGE_CACHE_DAYS}"`,
  );
  process.exit(2);
}
const cacheDir =
  args.includes("--no-cache") || cacheDays === 0
    ? undefined
    : (process.env.AIRQUBE_IMAGE_CACHE_DIR ??
      join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "airqube", "debian-images"));
const scriptText = readFileSync(fileURLToPath(import.meta.url));
const recordFile = join(build, "debian-images.json");
const record: Record<string, unknown> = existsSync(recordFile) ? JSON.parse(readFileSync(recordFile, "utf8")) : {};
const docker = new Docker();

async function hasImage(ref: string, id: unknown): Promise<boolean> {
  try {
    return (await docker.getImage(ref).inspect()).Id === id;
  } catch {
    return false;
  }
}

/** The cache entry of an image's recipe: its directory, and its record when it is there and young enough. */
function cacheEntry(image: DebianImage): { dir: string; record?: CachedRecord } | undefined {
  if (!cacheDir) return undefined;
  const key = createHash("sha256")
    .update(scriptText)
    .update(JSON.stringify({ image, epoch, suite, mirror }))
    .digest("hex")
    .slice(0, 24);
  const dir = join(cacheDir, `${image.name}-${key}`);
  try {
    const cached = JSON.parse(readFileSync(join(dir, "record.json"), "utf8")) as CachedRecord;
    const ageDays = (Date.now() - Date.parse(cached.builtAt)) / 86_400_000;
    if (!(ageDays >= 0 && ageDays < cacheDays)) return { dir };
    if (statSync(join(dir, "archive.tar")).size !== cached.archiveBytes) return { dir };
    return { dir, record: cached };
  } catch {
    return { dir };
  }
}

interface CachedRecord {
  imageId: string;
  archiveDigest: string;
  archiveBytes: number;
  builtAt: string;
  [key: string]: unknown;
}

for (const image of IMAGES.filter((i) => !only || i.name === only)) {
  const ref = `airqube/${image.name}:latest`;
  const [repo, tag] = ref.split(":") as [string, string];
  const archive = join(build, `airqube_${image.name}.tar`);
  const previous = record[ref] as { imageId?: string } | undefined;
  if (ifMissing && existsSync(archive) && (await hasImage(ref, previous?.imageId))) {
    console.log(`${ref} ${previous?.imageId} (already built)`);
    continue;
  }
  const entry = cacheEntry(image);
  if (entry?.record) {
    const cached = entry.record;
    const expected = { imageId: cached.imageId, archiveDigest: cached.archiveDigest };
    try {
      // checked like any shipped archive (digest, then the engine's image id): a damaged entry is rebuilt
      copyFileSync(join(entry.dir, "archive.tar"), archive);
      if (await hasImage(ref, cached.imageId)) await inspectImageArchive(archive, expected);
      else {
        await loadCheckedArchive(docker, archive, expected);
        await docker.getImage(cached.imageId).tag({ repo, tag });
      }
      record[ref] = cached;
      console.log(
        `${ref} ${cached.imageId} archive ${cached.archiveDigest} (from the build cache, built ${cached.builtAt})`,
      );
      continue;
    } catch (error) {
      console.error(
        `${ref}: the cached archive in ${entry.dir} failed its check, rebuilding: ${(error as Error).message}`,
      );
      rmSync(entry.dir, { recursive: true, force: true });
      rmSync(archive, { force: true });
    }
  }
  const started = Date.now();
  const rootfs = join(build, `debian-${image.name}.rootfs.tar`);
  const packagesFile = join(build, `debian-${image.name}.packages`);
  const result = spawnSync(
    "mmdebstrap",
    [
      "--mode=root",
      "--variant=essential",
      // merged /usr through mmdebstrap's own hook (usr-is-merged) rather than the usrmerge package, which
      // would pull in the whole of perl (about 55 MB of the image)
      "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
      `--include=${image.packages.join(",")}`,
      "--dpkgopt=path-exclude=/usr/share/doc/*",
      "--dpkgopt=path-exclude=/usr/share/man/*",
      "--dpkgopt=path-exclude=/usr/share/locale/*",
      // the mount points of a qube, owned by root, so that a read-only root file system still has them
      '--customize-hook=mkdir -p "$1/scratch" "$1/output" "$1/input"',
      // the package versions, recorded beside the image ids (hooks run on the host: $1 is the rootfs)
      `--customize-hook=chroot "$1" dpkg-query -W -f='\${Package} \${Version}\\n' > "${packagesFile}"`,
      "--format=tar",
      suite,
      rootfs,
      mirror,
    ],
    { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) }, encoding: "utf8", maxBuffer: 64 << 20 },
  );
  if (result.status !== 0) {
    console.error(result.stderr);
    console.error(`mmdebstrap failed for ${ref} (is it installed? apt-get install mmdebstrap)`);
    process.exit(1);
  }
  const packages = readFileSync(packagesFile, "utf8")
    .split("\n")
    .filter((line) => /^[a-z0-9][a-z0-9+.-]* \S+$/.test(line))
    .sort();
  const built = await writeImageArchive(archive, rootfs, {
    created: new Date(epoch * 1000),
    config: { Cmd: image.cmd, WorkingDir: "/scratch" },
  });
  rmSync(rootfs);
  await loadCheckedArchive(docker, archive, { imageId: built.imageId, archiveDigest: built.archiveDigest });
  await docker.getImage(built.imageId).tag({ repo, tag });
  const seconds = (Date.now() - started) / 1000;
  record[ref] = {
    ...built,
    sourceDateEpoch: epoch,
    suite,
    packages,
    buildSeconds: seconds,
    builtAt: new Date().toISOString(),
  };
  if (entry) {
    // written beside, then renamed: a cache entry is whole or absent
    const partial = `${entry.dir}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    copyFileSync(archive, join(partial, "archive.tar"));
    writeFileSync(join(partial, "record.json"), `${JSON.stringify(record[ref], null, 2)}\n`);
    rmSync(entry.dir, { recursive: true, force: true });
    renameSync(partial, entry.dir);
  }
  console.log(`${ref} ${built.imageId} archive ${built.archiveDigest} (${built.archiveBytes} bytes, ${seconds} s)`);
}
writeFileSync(recordFile, `${JSON.stringify(record, null, 2)}\n`);
console.log(`recorded ${recordFile}`);
