/** The Golem runtime's rules without Docker: process paths, config and flags, uid block leases. */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import type Docker from "dockerode";
import tar from "tar-stream";
import { deployTaskPackage } from "../../../src/golem/runtime/deploy.js";
import { checkProcessPaths, RuntimePathError } from "../../../src/golem/runtime/paths.js";
import { sandboxCommand } from "../../../src/golem/runtime/sandbox-run.js";
import { loadRuntimeConfig, processLimits } from "../../../src/golem/runtime/state.js";
import { leaseUidBlock, UID_BLOCK } from "../../../src/golem/runtime/uid-lease.js";
import { AirqubeError } from "../../../src/qube/errors.js";
import { imageArchive, layerTar } from "../../images/archive-fixtures.js";

const WORK = "/var/lib/golem/work/activity-1";
const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

/** A docker-save archive whose manifest names a config file `<claimed>.json` that does not hash to it. */
async function lyingArchive(claimed: string): Promise<Buffer> {
  const layer = await layerTar();
  const config = JSON.stringify({ rootfs: { type: "layers", diff_ids: [`sha256:${sha(layer)}`] } });
  const manifest = JSON.stringify([{ Config: `${claimed}.json`, RepoTags: null, Layers: [`${sha(layer)}/layer.tar`] }]);
  const p = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of p) chunks.push(chunk as Buffer);
  })();
  p.entry({ name: `${sha(layer)}/`, type: "directory", mode: 0o755 });
  p.entry({ name: `${sha(layer)}/layer.tar`, mode: 0o644 }, layer);
  p.entry({ name: `${claimed}.json`, mode: 0o644 }, config);
  p.entry({ name: "manifest.json", mode: 0o644 }, manifest);
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** An engine that must never be reached: every refusal happens before the load. */
const noEngine = new Proxy({} as Docker, {
  get: (_target, name) => () => {
    throw new Error(`the engine was called (${String(name)})`);
  },
});
const code = (run: () => unknown): string | undefined => {
  try {
    run();
    return undefined;
  } catch (error) {
    return error instanceof AirqubeError ? error.code : "untyped";
  }
};

describe("Golem runtime rules", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "aq-runtime-rules-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("accepts image and volume paths, refuses climbing and host paths with a typed error", () => {
    const ok = (bin: string, args: string[], workDir = "") =>
      code(() => checkProcessPaths({ bin, args, workDir }, [WORK]));
    expect(ok("/bin/sh", ["sh", "-c", "cd .. && ls ../x"])).to.equal(undefined); // shell text is the image's business
    expect(ok("/usr/local/bin/app", ["app", "/input/a.txt", "--out=/output/b"], "/output")).to.equal(undefined);
    for (const [bin, args, workDir] of [
      ["/bin/../bin/sh", [], ""],
      ["sh", [], ""],
      ["/bin//sh", [], ""],
      ["/bin/cat", ["cat", "/input/../etc/shadow"], ""],
      ["/bin/cat", ["cat", "../../x"], ""],
      ["/bin/cat", ["cat", `${WORK}/vol-input/a`], ""],
      ["/bin/cat", ["cat", `--file=${WORK}/vol-output/b`], ""],
      [`${WORK}/vol-input/evil`, [], ""],
      ["/bin/ls", [], "/input/.."],
      ["/bin/ls", [], "output"],
      ["/bin/ls", [], WORK],
    ] as const) {
      expect(ok(bin, [...args], workDir), `${bin} ${args.join(" ")} in ${workDir}`).to.equal(
        "RUNTIME_PATH_OUTSIDE_VOLUMES",
      );
    }
    expect(() => checkProcessPaths({ bin: "/bin/x\0", args: [], workDir: "" }, [WORK])).to.throw(RuntimePathError);
    expect(ok("/bin/echo", Array(1025).fill("a"))).to.equal("RUNTIME_ARGS_INVALID");
  });

  it("runs bin with argv[1..], through sh only for another working directory", () => {
    expect(sandboxCommand({ bin: "/bin/echo", args: ["echo", "a b"], workDir: "" })).to.deep.equal([
      "/bin/echo",
      "a b",
    ]);
    expect(sandboxCommand({ bin: "/bin/echo", args: [], workDir: "" })).to.deep.equal(["/bin/echo"]);
    expect(sandboxCommand({ bin: "/bin/echo", args: ["echo", "$HOME"], workDir: "/input" })).to.deep.equal([
      "/bin/sh",
      "-c",
      'cd "$0" && exec "$@"',
      "/input",
      "/bin/echo",
      "$HOME",
    ]);
  });

  it("reads accepted images from the config file and AIRQUBE_RUNTIME_IMAGES; refuses bad ones", async () => {
    const a = `sha256:${"a".repeat(64)}`;
    const b = `sha256:${"b".repeat(64)}`;
    expect((await loadRuntimeConfig(dir, {})).images).to.deep.equal([]);
    await writeFile(join(dir, "config.json"), JSON.stringify({ images: [a], tier: "gvisor" }));
    const config = await loadRuntimeConfig(dir, { AIRQUBE_RUNTIME_IMAGES: ` ${b},${a} ` });
    expect(config).to.include({ tier: "gvisor" });
    expect(config.images).to.deep.equal([a, b]);
    const refused = async (env: Record<string, string>) =>
      loadRuntimeConfig(dir, env).then(
        () => "accepted",
        (error: AirqubeError) => error.code,
      );
    expect(await refused({ AIRQUBE_RUNTIME_IMAGES: "sha256:abc" })).to.equal("RUNTIME_CONFIG_INVALID");
    await writeFile(join(dir, "config.json"), JSON.stringify({ images: ["latest"] }));
    expect(await refused({})).to.equal("RUNTIME_CONFIG_INVALID");
    await writeFile(join(dir, "config.json"), JSON.stringify({ imagez: [] }));
    expect(await refused({})).to.equal("RUNTIME_CONFIG_INVALID");
    await writeFile(join(dir, "config.json"), "{");
    expect(await refused({})).to.equal("RUNTIME_CONFIG_INVALID");
  });

  it("maps exe-unit's resource flags to sandbox limits and refuses bad ones", async () => {
    const config = await loadRuntimeConfig(dir, {});
    const limits = processLimits({ cpuCores: "2", memGib: "0.5", storageGib: "1" }, config);
    expect(limits).to.include({ cpus: 2, memoryBytes: 512 * 1024 * 1024, wallTimeMs: 600_000 });
    expect(limits.output?.maxTotalBytes).to.equal(1024 * 1024 * 1024);
    expect(limits.scratchBytes).to.equal(1024 * 1024 * 1024); // /output is a tmpfs: it must hold the outputs
    for (const flags of [{ cpuCores: "0" }, { memGib: "-1" }, { storageGib: "lots" }, { cpuCores: "1e9" }])
      expect(code(() => processLimits(flags, config))).to.equal("RUNTIME_FLAG_INVALID");
  });

  it("deploy refuses before the engine: a missing package, no accepted image, a digest not accepted, a manifest that lies, tags", async () => {
    const config = await loadRuntimeConfig(dir, {});
    const refused = (taskPackage: string | undefined, images: string[]) =>
      deployTaskPackage({ workdir: dir, taskPackage, config: { ...config, images }, docker: noEngine }).then(
        () => "deployed",
        (error: AirqubeError) => error.code,
      );
    const honest = await imageArchive([await layerTar()]);
    const pkg = join(dir, "pkg.tar");
    await writeFile(pkg, honest.archive);
    expect(await refused(undefined, [honest.imageId])).to.equal("RUNTIME_TASK_PACKAGE_MISSING");
    expect(await refused(join(dir, "nope.tar"), [honest.imageId])).to.equal("RUNTIME_TASK_PACKAGE_MISSING");
    expect(await refused(pkg, [])).to.equal("RUNTIME_NO_IMAGES_ACCEPTED");
    expect(await refused(pkg, [`sha256:${"0".repeat(64)}`])).to.equal("RUNTIME_IMAGE_NOT_ACCEPTED");
    // accepted by the id its manifest claims, but the config is another: the archive does not match itself
    const accepted = sha("the accepted image's config");
    await writeFile(pkg, await lyingArchive(accepted));
    expect(await refused(pkg, [`sha256:${accepted}`])).to.equal("IMAGE_DIGEST_MISMATCH");
    // accepted by its archive digest, but it carries tags (it could replace a provider's image)
    const tagged = await imageArchive([await layerTar()], { tags: ["airqube/busybox:latest"] });
    await writeFile(pkg, tagged.archive);
    expect(await refused(pkg, [tagged.archiveDigest])).to.equal("IMAGE_ARCHIVE_TAGGED");
    await writeFile(pkg, "not a tar archive at all, but long enough to be read as one".repeat(20));
    expect(await refused(pkg, [honest.imageId])).to.equal("IMAGE_ARCHIVE_INVALID");
  });

  it("leases uid blocks exclusively; a gone owner's block is swept before it is taken, an unclean one is not", async () => {
    const range = { first: 500_000, count: 2 * UID_BLOCK };
    const swept: number[] = [];
    const clean = async (uid: number) => {
      swept.push(uid);
      return { uid, killed: 0, removed: 0, complete: true };
    };
    const first = await leaseUidBlock(dir, range, "a".repeat(16), { sweep: clean });
    const second = await leaseUidBlock(dir, range, "b".repeat(16), { sweep: clean });
    expect([first.block, second.block]).to.deep.equal([0, 1]);
    expect(first.pool.range).to.deep.equal({ first: 500_000, count: UID_BLOCK });
    expect(second.pool.acquire()).to.equal(500_000 + UID_BLOCK);
    expect(swept).to.deep.equal([]); // fresh blocks: nothing to sweep
    const none = await leaseUidBlock(dir, range, "c".repeat(16), { sweep: clean }).catch((e: AirqubeError) => e.code);
    expect(none).to.equal("RUNTIME_NO_UIDS");

    // block 0's owner dies (a record of a pid that is not running)
    const file = join(dir, "uid-leases", `${range.first}-0.json`);
    await writeFile(file, JSON.stringify({ pid: 2 ** 22 + 1, startTime: "1", instance: "d".repeat(16) }));
    const unclean = await leaseUidBlock(dir, range, "e".repeat(16), {
      sweep: async (uid) => ({ uid, killed: 1, removed: 0, complete: uid !== 500_003 }),
    }).catch((e: AirqubeError) => e.code);
    expect(unclean).to.equal("RUNTIME_NO_UIDS"); // a uid of it did not sweep clean: out of service
    const taken = await leaseUidBlock(dir, range, "f".repeat(16), { sweep: clean });
    expect(taken.block).to.equal(0);
    expect(swept).to.deep.equal(Array.from({ length: UID_BLOCK }, (_, i) => 500_000 + i));
    expect(JSON.parse(await readFile(file, "utf8")).instance).to.equal("f".repeat(16));
    await taken.release();
    await second.release();
    expect(await leaseUidBlock(dir, range, "g".repeat(16), { sweep: clean }).then((l) => l.block)).to.equal(0);
  });
});
