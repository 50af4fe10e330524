/**
 * The exe-unit emulation against a toy runtime (fixtures/toy-runtime.ts, no sandbox): the command line in
 * exe-unit's order, DeployResult parsing and volume directories, path mapping, Hello, run{pid}, output and
 * return codes from ProcessStatus events, counters, Kill, Shutdown, raw bad frames, and dispose.
 */
import type { ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import {
  encodeResponse,
  lengthPrefixed,
  MAX_RESPONSE_FRAME_BYTES,
  varint,
} from "../../../src/golem/runtime/protocol.js";
import { PeerError, UserError } from "../../../src/qube/errors.js";
import { ExeUnit, parseDeployResult, RuntimeSession } from "./exe-unit.js";

const TOY = path.join(import.meta.dirname, "fixtures", "toy-runtime.ts");
/** tsx's loader by absolute URL: the runtime's working directory is the activity's, outside the repository. */
const TSX = pathToFileURL(
  path.join(import.meta.dirname, "..", "..", "..", "node_modules", "tsx", "dist", "loader.mjs"),
).href;

describe("golem runtime: exe-unit emulation (toy runtime)", () => {
  let workDir: string;
  let unit: ExeUnit;

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), "aq-exe-unit-"));
    unit = new ExeUnit({
      runtime: [process.execPath, "--import", TSX, TOY],
      workDir,
      taskPackage: "/nonexistent/image.tar",
      cpuCores: 2.7,
      memGib: 0.5,
      timeoutMs: 20_000,
    });
  });
  after(async () => {
    await rm(workDir, { recursive: true, force: true });
  });

  it("passes the global flags in exe-unit's order and parses deploy like exe-unit", async () => {
    expect(unit.globalArgs()).to.deep.equal([
      "--workdir",
      workDir,
      "--task-package",
      "/nonexistent/image.tar",
      "--cpu-cores",
      "2",
      "--mem-gib",
      "0.5",
    ]);
    const { result, outcome } = await unit.deploy();
    expect(outcome.code).to.equal(0);
    expect(result.startMode).to.equal("blocking");
    expect((await readdir(workDir)).sort()).to.deep.equal(["vol-input", "vol-output"]);
    expect(unit.hostPath("container:/input/a/b.txt")).to.equal(path.join(workDir, "vol-input", "a", "b.txt"));
    expect(unit.hostPath("/output")).to.equal(path.join(workDir, "vol-output"));
    expect(() => unit.hostPath("/etc/passwd")).to.throw(UserError);
    expect(() => unit.hostPath("/input/../etc")).to.throw(UserError);
    expect(() => unit.hostPath("/inputx/y")).to.throw(UserError);
    expect(parseDeployResult("")).to.deep.equal({ valid: { Ok: "" }, vols: [], startMode: "empty" });
    expect(() => parseDeployResult("no json")).to.throw(PeerError);
    expect(() => parseDeployResult('{"valid":{"Maybe":""}}')).to.throw(PeerError);
  });

  it("drives start: Hello, run{pid}, ProcessStatus output and codes, counters, Kill, Shutdown", async () => {
    await using session = await unit.start();
    const { pid } = await session.run("/bin/sh", ["-c", "printf hi; pwd; exit 3"]);
    const done = await session.waitProcess(pid);
    expect(done.returnCode).to.equal(3);
    expect(done.stdout.toString()).to.equal(`hi${path.join(workDir, "vol-output")}\n`);
    const sleeper = await session.run("/bin/sleep", ["30"]);
    expect(sleeper.pid).to.equal(pid + 1);
    expect("kill" in (await session.kill(sleeper.pid))).to.equal(true);
    expect((await session.waitProcess(sleeper.pid)).returnCode).to.equal(137);
    const counter = await session.waitFor(() => {
      const value = session.counters.get("golem.usage.duration_sec");
      return value === sleeper.pid ? value : undefined;
    }, "the sleeper's counter");
    expect(counter).to.equal(sleeper.pid);
    const missing = await session.kill(99);
    expect("error" in missing && missing.error.code).to.equal("NOT_FOUND");
    expect("shutdown" in (await session.shutdown())).to.equal(true);
    expect((await session.waitExit()).code).to.equal(0);
  });

  it("sends raw bad frames, reports the runtime's exit, and kills a live runtime on dispose", async () => {
    const [bad, live] = await Promise.all([unit.start(), unit.start()]);
    try {
      bad.sendRaw(lengthPrefixed(Uint8Array.of(0x0f)));
      expect((await bad.waitExit()).code).to.equal(2);
      expect(bad.stderrText()).to.match(/bad frame/);
      await bad.run("/bin/true").then(
        () => expect.fail("a request to an exited runtime succeeded"),
        (error: Error) => expect(error.message).to.match(/exited before/),
      );
    } finally {
      await bad.dispose();
      await live.dispose();
    }
    expect((await live.exited).signal).to.equal("SIGKILL");
  });

  it("reads the runtime's stdout as exe-unit's codec does: a frame shorter than 4 bytes waits for more", async () => {
    const stdout = new PassThrough();
    const child = Object.assign(new EventEmitter(), {
      stdout,
      stderr: new PassThrough(),
      stdin: new PassThrough(),
      exitCode: null,
      signalCode: null,
      pid: undefined,
    }) as unknown as ChildProcess;
    const session = new RuntimeSession(child, 5_000);
    // Response{shutdown} with id 0 and event false left out: 2 payload bytes, a 3-byte frame
    stdout.write(Uint8Array.of(2, 0x62, 0));
    await new Promise((r) => setImmediate(r));
    expect(session.responses).to.deep.equal([]);
    stdout.write(encodeResponse({ id: 2, hello: { version: "0.1.0" } }));
    await session.waitFor(() => (session.responses.length === 2 ? true : undefined), "both frames");
    expect(session.responses.map((r) => ("shutdown" in r ? "shutdown" : "hello" in r ? "hello" : "?"))).to.deep.equal([
      "shutdown",
      "hello",
    ]);
    // an oversized prefix is refused at once
    stdout.write(Buffer.from(varint(MAX_RESPONSE_FRAME_BYTES + 1)));
    await new Promise((r) => setImmediate(r));
    expect(session.protocolError?.code).to.equal("RUNTIME_FRAME_TOO_LARGE");
  });
});
