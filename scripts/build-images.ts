/**
 * `npm run images`: builds Airqube's native helpers and local images without any registry.
 *  - images/build/airqube-init: the static init every container qube runs under (src/sandbox/native)
 *  - images/build/probe: the escape-suite probe program (src/probes/native), when its source exists
 *  - airqube/busybox:latest: busybox from Debian's busybox-static
 *  - airqube/probe:latest: the busybox image plus /airqube/probe
 * Image ids are content digests of a deterministic archive; they are recorded in images/build/digests.json.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Docker from "dockerode";
import { createImageArchive, type LayerEntry, loadImageArchive } from "../src/sandbox/images.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const build = join(root, "images", "build");
mkdirSync(build, { recursive: true });

function compile(output: string, sources: string[]): void {
  const args = ["-static", "-O2", "-Wall", "-Wextra", "-o", join(build, output), ...sources.map((s) => join(root, s))];
  execFileSync("gcc", args, { stdio: "inherit" });
  console.log(`built images/build/${output}`);
}

compile("airqube-init", ["src/sandbox/native/airqube-init.c", "src/sandbox/native/channel.c"]);
const probeSource = "src/probes/native/probe.c";
const haveProbe = existsSync(join(root, probeSource));
if (haveProbe) compile("probe", [probeSource]);

const busyboxPath = "/bin/busybox";
if (!existsSync(busyboxPath)) {
  console.error("busybox-static is missing: apt-get install busybox-static");
  process.exit(1);
}
const busybox = readFileSync(busyboxPath);
const applets = execFileSync(busyboxPath, ["--list-full"], { encoding: "utf8" })
  .split("\n")
  .filter((line) => line && line !== "bin/busybox");

function busyboxRootfs(): LayerEntry[] {
  const dirs = [
    "bin",
    "sbin",
    "usr",
    "usr/bin",
    "usr/sbin",
    "etc",
    "tmp",
    "scratch",
    "output",
    "input",
    "proc",
    "sys",
    "dev",
  ];
  const entries: LayerEntry[] = dirs.map((path) => ({
    type: "directory",
    path,
    mode: path === "tmp" ? 0o1777 : 0o755,
  }));
  entries.push({ type: "file", path: "bin/busybox", mode: 0o755, content: busybox });
  for (const applet of applets) entries.push({ type: "symlink", path: applet, target: "/bin/busybox" });
  entries.push({
    type: "file",
    path: "etc/passwd",
    mode: 0o644,
    content: Buffer.from("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/scratch:/bin/sh\n"),
  });
  entries.push({ type: "file", path: "etc/group", mode: 0o644, content: Buffer.from("root:x:0:\nnogroup:x:65534:\n") });
  return entries;
}

const docker = new Docker();
const digests: Record<string, string> = {};

async function buildImage(ref: string, entries: LayerEntry[], cmd: string[]): Promise<void> {
  const { archive, digest } = await createImageArchive(ref, entries, { Cmd: cmd });
  const loaded = await loadImageArchive(docker, archive, ref, { expectedDigest: digest });
  digests[ref] = loaded;
  writeFileSync(join(build, `${ref.replace(/[/:]/g, "_")}.tar`), archive);
  console.log(`${ref} ${loaded}`);
}

await buildImage("airqube/busybox:latest", busyboxRootfs(), ["sh"]);
if (haveProbe) {
  const probe = readFileSync(join(build, "probe"));
  await buildImage(
    "airqube/probe:latest",
    [
      ...busyboxRootfs(),
      { type: "directory", path: "airqube", mode: 0o755 },
      { type: "file", path: "airqube/probe", mode: 0o755, content: probe },
    ],
    ["/airqube/probe"],
  );
}
writeFileSync(join(build, "digests.json"), `${JSON.stringify(digests, null, 2)}\n`);
console.log("recorded images/build/digests.json");
