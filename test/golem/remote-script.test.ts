/**
 * The two shell programs that run inside the Golem VM, executed for real with /bin/sh on this machine in a
 * temporary directory that plays the VM's output volume: the qube runs with its environment, stdout, stderr
 * and exit status are recorded, declared outputs (and only those) are packed, and the tar unpacks with the
 * safe unpacker into the same outputs root a direct hash gives.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { packCommand, parsePackReport, remoteLayout, runCommand } from "../../src/golem/remote-script.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { unpackTar } from "../../src/sandbox/unpack.js";

const run = promisify(execFile);

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

    const dest = await mkdtemp(join(tmpdir(), "airqube-golem-unpacked-"));
    const files = await unpackTar(
      createReadStream(layout.tar),
      dest,
      { maxFileBytes: 1 << 20, maxTotalBytes: 1 << 20, maxFiles: 10 },
      { stripPrefix: output.replace(/^\/+/, "") },
    );
    const stage = layout.stage.slice(output.length + 1);
    expect(files.map((f) => f.path)).to.deep.equal([`${stage}/err`, `${stage}/exit`, `${stage}/out`, "d/a"]);
    expect(await readFile(join(dest, "d/a"), "utf8")).to.equal("hello 'world' $(not run)");
    expect(await readFile(join(dest, stage, "exit"), "utf8")).to.equal("3\n");
    expect(await readFile(join(dest, stage, "out"), "utf8")).to.equal("ou");
    expect(await readFile(join(dest, stage, "err"), "utf8")).to.equal("er");
  });

  it("rejects a pack report that is missing or malformed", () => {
    expect(() => parsePackReport("hello")).to.throw(AirqubeError, /did not report/);
    expect(() => parsePackReport(undefined)).to.throw(AirqubeError);
    expect(parsePackReport("airqube-pack-size 10240\n")).to.deep.equal({ size: 10240 });
  });
});
