/**
 * The two shell programs that run inside the Golem VM, executed for real with /bin/sh on this machine in a
 * temporary directory that plays the VM's output volume: the qube runs with its environment, stdout, stderr
 * and exit status are recorded, declared outputs (and only those) are packed, and the tar unpacks with the
 * safe unpacker into the same outputs root a direct hash gives.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import {
  packCommand,
  parsePackReport,
  type RemoteLayout,
  remoteLayout,
  runAndPackCommand,
  runCommand,
} from "../../src/golem/remote-script.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { unpackTar } from "../../src/sandbox/unpack.js";

const run = promisify(execFile);

/** Unpacks the pack step's tar of `layout` (outputs under `output`) into `dest`: its paths and the stage's name. */
async function unpackStaged(layout: RemoteLayout, output: string, dest: string) {
  const files = await unpackTar(
    createReadStream(layout.tar),
    dest,
    { maxFileBytes: 1 << 20, maxTotalBytes: 1 << 20, maxFiles: 10 },
    { stripPrefix: output.replace(/^\/+/, "") },
  );
  return { paths: files.map((f) => f.path), stage: layout.stage.slice(output.length + 1) };
}

describe("golem remote scripts (real /bin/sh)", () => {
  it("runs the qube, records its exit status and packs only the declared outputs", async () => {
    const root = await mkdtemp(join(tmpdir(), "airqube-golem-vm-"));
    const output = join(root, "output");
    await mkdir(output);
    const layout = remoteLayout(output, "0123456789abcdef0123456789abcdef");
    const qube = runCommand(
      layout,
      [
        "/bin/sh",
        "-c",
        'mkdir -p d && printf "%s" "$GREETING" > d/a; echo out; echo err >&2; echo x > undeclared; exit 3',
      ],
      { GREETING: "hello 'world' $(not run)" },
    );
    await run(qube.entryPoint, qube.args);
    const pack = packCommand(layout, ["d", "missing"], 2);
    const { stdout } = await run(pack.entryPoint, pack.args);
    const report = parsePackReport(stdout);
    const tarBytes = await readFile(layout.tar);
    expect(report.size).to.equal(tarBytes.length);
    expect(report.sha256).to.equal(createHash("sha256").update(tarBytes).digest("hex"));

    const dest = join(root, "unpacked");
    const { paths, stage } = await unpackStaged(layout, output, dest);
    expect(paths).to.deep.equal([`${stage}/err`, `${stage}/exit`, `${stage}/out`, "d/a"]);
    expect(await readFile(join(dest, "d/a"), "utf8")).to.equal("hello 'world' $(not run)");
    expect(await readFile(join(dest, stage, "exit"), "utf8")).to.equal("3\n");
    expect(await readFile(join(dest, stage, "out"), "utf8")).to.equal("ou");
    expect(await readFile(join(dest, stage, "err"), "utf8")).to.equal("er");
    await rm(root, { recursive: true, force: true });
  });

  it("in one process (Airqube's runtime: a fresh /output per process): the same files, none of the run's argv packed", async () => {
    const root = await mkdtemp(join(tmpdir(), "airqube-golem-runtime-"));
    try {
      const output = join(root, "output");
      await mkdir(output);
      const layout = remoteLayout(output, "fedcba9876543210fedcba9876543210");
      // the qube's argv names "undeclared", a file it writes: only declared outputs may be packed
      const both = runAndPackCommand(
        layout,
        ["/bin/sh", "-c", 'mkdir -p d && printf "%s" "$GREETING" > d/a; echo x > "$0"; echo out; exit 3', "undeclared"],
        { GREETING: "hi $(not run)" },
        ["d", "missing"],
        3,
      );
      const { stdout } = await run(both.entryPoint, both.args);
      const report = parsePackReport(stdout);
      expect(report.size).to.equal((await readFile(layout.tar)).length);
      const dest = join(root, "unpacked");
      const { paths, stage } = await unpackStaged(layout, output, dest);
      expect(paths).to.deep.equal([`${stage}/err`, `${stage}/exit`, `${stage}/out`, "d/a"]);
      expect(await readFile(join(dest, "d/a"), "utf8")).to.equal("hi $(not run)");
      expect(await readFile(join(dest, stage, "exit"), "utf8")).to.equal("3\n");
      expect(await readFile(join(dest, stage, "out"), "utf8")).to.equal("out");

      // a run step that cannot start (its output path is a file) fails the program with its own status
      await writeFile(join(root, "not-a-dir"), "");
      const gone = remoteLayout(join(root, "not-a-dir"), "00112233445566778899aabbccddeeff");
      const failed = runAndPackCommand(gone, ["/bin/true"], {}, ["d"], 3);
      const error = await run(failed.entryPoint, failed.args).then(
        () => undefined,
        (e: { code?: number }) => e,
      );
      expect(error?.code).to.equal(121);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("rejects a pack report that is missing or malformed", () => {
    expect(() => parsePackReport("hello")).to.throw(AirqubeError, /did not report/);
    expect(() => parsePackReport(undefined)).to.throw(AirqubeError);
    expect(parsePackReport("airqube-pack-size 10240\n")).to.deep.equal({ size: 10240 });
  });
});
