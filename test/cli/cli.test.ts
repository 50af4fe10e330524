import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { tmp } from "../helpers/network.js";

const run = promisify(execFile);
const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");

async function airqube(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("cli: airqube", function () {
  this.timeout(180_000);

  it("prints help listing every command", async () => {
    const { code, stdout } = await airqube(["--help"]);
    expect(code).to.equal(0);
    for (const command of ["sandbox", "probe", "provider", "run", "offers", "journal", "devnet", "demo"])
      expect(stdout).to.contain(command);
  });

  it("rejects a bad flag value with a clear message and exit status 2", async () => {
    const { code, stderr } = await airqube(["sandbox", "run", "--image", "x", "--memory", "12q", "--", "true"]);
    expect(code).to.equal(2);
    expect(stderr).to.contain('"12q" is not a size');
  });

  describe("sandbox run @docker", () => {
    it("prints the result as JSON and exits with the qube's status", async () => {
      const out = tmp("aq-cli-out-");
      const { code, stdout } = await airqube([
        "sandbox",
        "run",
        "--image",
        "airqube/busybox:latest",
        "--output",
        out,
        "--json",
        "--",
        "sh",
        "-c",
        "echo hi; echo 42 > /output/a; exit 3",
      ]);
      expect(code).to.equal(3);
      const result = JSON.parse(stdout);
      expect(result).to.include({
        exitCode: 3,
        stdout: "hi\n",
        stdoutTruncated: false,
        stderrTruncated: false,
        oomKilled: false,
        timedOut: false,
      });
      // /output/a lands at OUT/a, as `airqube run --out a` places it
      expect(result.outputs).to.deep.equal([
        { path: "a", size: 3, sha256: "084c799cd551dd1d8d5c5f9a5d593b2e931f5e36122ee5c793c1d08a19839cc0" },
      ]);
      expect(result.exitStatus).to.equal(3);
      expect(await readFile(join(out, "a"), "utf8")).to.equal("42\n");
    });

    it("--out means a path under /output, as in airqube run; a missing one is named and exits 123", async () => {
      const out = tmp("aq-cli-out-");
      const { code, stderr } = await airqube([
        "sandbox",
        "run",
        "--image",
        "airqube/busybox:latest",
        "--output",
        out,
        "--out",
        "a.txt",
        "--out",
        "b.txt",
        "--",
        "sh",
        "-c",
        "echo a > /output/a.txt",
      ]);
      expect(code).to.equal(123);
      expect(stderr).to.contain("airqube: declared output never written: b.txt");
      expect(await readFile(join(out, "a.txt"), "utf8")).to.equal("a\n");
      const absolute = await airqube([
        "sandbox",
        "run",
        "--image",
        "airqube/busybox:latest",
        "--output",
        out,
        "--out",
        "/output/a.txt",
        "--",
        "true",
      ]);
      expect(absolute.code).to.equal(125);
      expect(absolute.stderr).to.contain("[OUT_INVALID]");
      expect(absolute.stderr).to.contain("--out result.txt for /output/result.txt");
    });

    it("a qube killed at its --timeout exits 124 and says so", async () => {
      const { code, stderr } = await airqube([
        "sandbox",
        "run",
        "--image",
        "airqube/busybox:latest",
        "--timeout",
        "1s",
        "--",
        "sleep",
        "20",
      ]);
      expect(code).to.equal(124);
      expect(stderr).to.contain("airqube: the qube was killed at its 1 s time-out (exit status 124)");
    });

    it("too many output files: OUTPUT_TOO_MANY_FILES, the qube's outcome (exit 123, as run), and nothing on disk (not even the --output it made)", async () => {
      const output = join(tmp("aq-cli-many-"), "out");
      const { code, stderr } = await airqube([
        "sandbox",
        "run",
        "--image",
        "airqube/busybox:latest",
        "--output",
        output,
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -le 1000 ]; do : > /output/f$i; i=$((i+1)); done",
      ]);
      expect(code, stderr).to.equal(123);
      const lines = stderr.trim().split("\n");
      expect(
        lines.some((l) => /\[OUTPUT_TOO_MANY_FILES\]$/.test(l)),
        stderr,
      ).to.equal(true);
      expect(lines.at(-1)).to.equal(
        "airqube: the qube's outputs were refused, none delivered: OUTPUT_TOO_MANY_FILES (hold more files or directories than the limit) (exit status 123)",
      );
      expect(existsSync(output), "the output directory").to.equal(false);
    });

    it("exits 125 with a one-line explanation when the sandbox fails", async () => {
      const { code, stderr } = await airqube(["sandbox", "run", "--image", "airqube/none:missing", "--", "true"]);
      expect(code).to.equal(125);
      expect(stderr.trim().split("\n")).to.have.length(1);
      expect(stderr).to.contain("[IMAGE_NOT_FOUND]");
    });
  });

  it("run without a bootstrap peer says how to get one", async () => {
    const { code, stderr } = await airqube([
      "run",
      "--image",
      "airqube/busybox:latest",
      "--output",
      tmp("aq-cli-"),
      "--data-dir",
      tmp("aq-cli-req-"),
      "--",
      "true",
    ]);
    expect(code).to.equal(125);
    expect(stderr).to.contain("BOOTSTRAP_MISSING");
  });

  it("run: --out means what it means in sandbox run, and an absolute path is the same OUT_INVALID line", async () => {
    const { code, stderr } = await airqube([
      "run",
      "--bootstrap",
      "/ip4/127.0.0.1/tcp/1/p2p/x",
      "--image",
      "airqube/busybox:latest",
      "--output",
      tmp("aq-cli-"),
      "--data-dir",
      tmp("aq-cli-req-"),
      "--out",
      "/output/a.txt",
      "--",
      "true",
    ]);
    expect(code).to.equal(125);
    expect(stderr.trim().split("\n").at(-1)).to.equal(
      'airqube: --out is a path under /output: "/output/a.txt": is absolute; e.g. --out result.txt for /output/result.txt [OUT_INVALID]',
    );
  });

  it("provider status on an empty data directory explains itself", async () => {
    const { code, stderr } = await airqube(["provider", "status", "--data-dir", tmp("aq-cli-prov-")]);
    expect(code).to.equal(125);
    expect(stderr).to.contain("PROVIDER_UNKNOWN");
  });
});
