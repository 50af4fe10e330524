/**
 * `npm run images:debian`: builds Airqube's Debian images from Debian's own packages, reproducibly.
 *  - airqube/python:latest  python3 (with its standard library)
 *  - airqube/pdf:latest     poppler-utils (pdftoppm), for `airqube convert-pdf`
 * Each rootfs comes from `mmdebstrap --variant=essential` with a fixed SOURCE_DATE_EPOCH (default 1700000000),
 * then becomes a single-layer `docker save` archive with fixed metadata (src/images/build-archive.ts), so the
 * same Debian packages give the same archive digest and image id on any machine. The ids, digests and
 * package versions are recorded in images/build/debian-images.json; the archives stay in images/build/.
 * Flags: `--only python|pdf`, `--if-missing` (skip an image the engine already has under its recorded id).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { writeImageArchive } from "../src/images/build-archive.js";
import { loadCheckedArchive } from "../src/images/load-archive.js";

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

for (const image of IMAGES.filter((i) => !only || i.name === only)) {
  const ref = `airqube/${image.name}:latest`;
  const previous = record[ref] as { imageId?: string } | undefined;
  if (ifMissing && (await hasImage(ref, previous?.imageId))) {
    console.log(`${ref} ${previous?.imageId} (already built)`);
    continue;
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
  const archive = join(build, `airqube_${image.name}.tar`);
  const built = await writeImageArchive(archive, rootfs, {
    created: new Date(epoch * 1000),
    config: { Cmd: image.cmd, WorkingDir: "/scratch" },
  });
  rmSync(rootfs);
  await loadCheckedArchive(docker, archive, { imageId: built.imageId, archiveDigest: built.archiveDigest });
  const [repo, tag] = ref.split(":") as [string, string];
  await docker.getImage(built.imageId).tag({ repo, tag });
  const seconds = (Date.now() - started) / 1000;
  record[ref] = { ...built, sourceDateEpoch: epoch, suite, packages, buildSeconds: seconds };
  console.log(`${ref} ${built.imageId} archive ${built.archiveDigest} (${built.archiveBytes} bytes, ${seconds} s)`);
}
writeFileSync(recordFile, `${JSON.stringify(record, null, 2)}\n`);
console.log(`recorded ${recordFile}`);
