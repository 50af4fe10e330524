/**
 * ya-runtime-airqube driven as exe-unit drives it: the command line (`deploy`, `test`, `offer-template`) and
 * ya-runtime-api frames over the pipes of `start`, against real Docker.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { verifyRuntimeOffer } from "../../../src/golem/runtime/offer.js";
import {
  encodeRequest,
  FrameDecoder,
  type RuntimeRequest,
  type RuntimeResponse,
  varint,
} from "../../../src/golem/runtime/protocol.js";
import { RUNTIME_LABEL, RUNTIME_OWNER_LABEL } from "../../../src/golem/runtime/sweep.js";
import { PROBE_CACHE } from "../../helpers/network.js";
import { busyboxWithMarker } from "../../images/registry-fixture.js";

const BIN = join(import.meta.dirname, "..", "..", "..", "bin", "ya-runtime-airqube.js");

/** One runtime process: its command line, and (for `start`) frames in and out. */
class Runtime {
  readonly child: ChildProcessWithoutNullStreams;
  readonly responses: RuntimeResponse[] = [];
  stdout = Buffer.alloc(0);
  stderr = "";
  readonly exited: Promise<number | null>;
  private readonly decoder = new FrameDecoder<RuntimeResponse>("response");
  private waiters: (() => void)[] = [];
  private nextId = 1;

  constructor(args: string[], env: Record<string, string>, frames: boolean) {
    this.child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    this.child.stdout.on("data", (chunk: Buffer) => {
      if (frames) this.responses.push(...this.decoder.push(chunk));
      else this.stdout = Buffer.concat([this.stdout, chunk]);
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.child.stderr.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  send(request: Omit<RuntimeRequest, "id">): number {
    const id = this.nextId++;
    this.child.stdin.write(encodeRequest({ id, ...request } as RuntimeRequest));
    return id;
  }

  /** The first response matching, waiting up to `ms`. */
  async next(match: (r: RuntimeResponse) => boolean, ms = 20_000): Promise<RuntimeResponse> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.responses.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching response; stderr: ${this.stderr}`);
      await new Promise<void>((wake) => {
        this.waiters.push(wake);
        setTimeout(wake, 200);
      });
    }
  }

  reply(id: number) {
    return this.next((r) => !r.event && r.id === id);
  }

  status(pid: number) {
    return this.next(
      (r) => r.event === true && "processStatus" in r && r.processStatus.pid === pid && !r.processStatus.running,
    );
  }
}

async function command(args: string[], env: Record<string, string>) {
  const runtime = new Runtime(args, env, false);
  runtime.child.stdin.end();
  const code = await runtime.exited;
  return { code, stdout: runtime.stdout.toString(), stderr: runtime.stderr };
}

const docker = new Docker();
async function containersOf(pid: number | undefined): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${RUNTIME_OWNER_LABEL}=${pid}`] } });
  return list.map((c) => c.Id);
}
async function until(check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 100));
  }
}

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString();

describe("Golem runtime ya-runtime-airqube @docker", function () {
  this.timeout(120_000);
  let root: string;
  let home: string;
  let workdir: string;
  let env: Record<string, string>;
  let good: { imageId: string; package: string };
  let other: { imageId: string; package: string };

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "aq-golem-runtime-"));
    home = join(root, "home");
    workdir = join(root, "work");
    await mkdir(home);
    await mkdir(workdir);
    const archives = await Promise.all([
      busyboxWithMarker(docker, `runtime-good-${process.pid}-${Date.now()}`),
      busyboxWithMarker(docker, `runtime-other-${process.pid}-${Date.now()}`),
    ]);
    good = { imageId: archives[0].imageId, package: join(root, "good.tar") };
    other = { imageId: archives[1].imageId, package: join(root, "other.tar") };
    await writeFile(good.package, archives[0].archive);
    await writeFile(other.package, archives[1].archive);
    await writeFile(
      join(home, "config.json"),
      JSON.stringify({ images: [good.imageId], limits: { wallTimeMs: 60_000 } }),
    );
    env = { AIRQUBE_RUNTIME_HOME: home, AIRQUBE_RUNTIME_PROBE_CACHE: PROBE_CACHE, AIRQUBE_LOG_LEVEL: "warn" };
  });

  after(async () => {
    for (const image of [good?.imageId, other?.imageId])
      if (image)
        await docker
          .getImage(image)
          .remove({ force: true })
          .catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  it("deploy refuses a task package whose digest is not accepted, and loads nothing", async () => {
    const result = await command(["--workdir", workdir, "--task-package", other.package, "deploy"], env);
    expect(result.code).to.equal(1);
    const deploy = JSON.parse(result.stdout);
    expect(deploy.valid.Err).to.match(/^RUNTIME_IMAGE_NOT_ACCEPTED: /);
    expect(deploy.startMode).to.equal("blocking");
    const loaded = await docker
      .getImage(other.imageId)
      .inspect()
      .then(
        () => true,
        () => false,
      );
    expect(loaded).to.equal(false);
    expect(existsSync(join(workdir, "deploy.json"))).to.equal(false);
  });

  it("deploy checks and loads an accepted task package", async () => {
    const result = await command(["--workdir", workdir, "--task-package", good.package, "deploy"], env);
    expect(result.code, result.stderr).to.equal(0);
    expect(JSON.parse(result.stdout)).to.deep.equal({
      valid: { Ok: "" },
      vols: [
        { name: "vol-input", path: "/input" },
        { name: "vol-output", path: "/output" },
      ],
      startMode: "blocking",
    });
    expect(JSON.parse(await readFile(join(workdir, "deploy.json"), "utf8")).imageId).to.equal(good.imageId);
    expect((await docker.getImage(good.imageId).inspect()).Id).to.equal(good.imageId);
  });

  it("service mode: a run reads /input and its outputs land in vol-output; paths outside the volumes are refused", async () => {
    await writeFile(join(workdir, "vol-input", "in.txt"), "from the requestor\n");
    const runtime = new Runtime(["--workdir", workdir, "start"], env, true);
    try {
      const hello = await runtime.reply(runtime.send({ hello: { version: "0.1.0" } }));
      expect(hello).to.have.property("hello");
      const id = runtime.send({
        run: {
          bin: "/bin/sh",
          args: ["-c", "cp /input/in.txt /output/copy.txt && mkdir /output/d && echo ok > /output/d/x && echo done"],
          workDir: "",
        },
      });
      const reply = await runtime.reply(id);
      if (!("run" in reply)) throw new Error(`no pid: ${JSON.stringify(reply)}`);
      const status = await runtime.status(reply.run.pid);
      if (!("processStatus" in status)) throw new Error("no status");
      expect(status.processStatus.returnCode, text(status.processStatus.stderr)).to.equal(0);
      expect(text(status.processStatus.stdout)).to.equal("done\n");
      expect(await readFile(join(workdir, "vol-output", "copy.txt"), "utf8")).to.equal("from the requestor\n");
      expect(await readFile(join(workdir, "vol-output", "d", "x"), "utf8")).to.equal("ok\n");
      const counters = await runtime.next(
        (r) =>
          r.event === true &&
          "runtimeStatus" in r &&
          "counter" in r.runtimeStatus &&
          r.runtimeStatus.counter.name === "golem.usage.duration_sec",
      );
      if (!("runtimeStatus" in counters) || !("counter" in counters.runtimeStatus)) throw new Error("no counter");
      expect(counters.runtimeStatus.counter.value).to.be.greaterThan(0);

      // the sandbox's /input is read-only, and the working directory is honoured
      const ro = await runtime.reply(
        runtime.send({ run: { bin: "/bin/sh", args: ["-c", "pwd; touch /input/x"], workDir: "/output" } }),
      );
      if (!("run" in ro)) throw new Error("no pid");
      const roStatus = await runtime.status(ro.run.pid);
      if (!("processStatus" in roStatus)) throw new Error("no status");
      expect(roStatus.processStatus.returnCode).to.not.equal(0);
      expect(text(roStatus.processStatus.stdout)).to.equal("/output\n");

      for (const run of [
        { bin: "/bin/cat", args: [join(workdir, "vol-input", "in.txt")], workDir: "" },
        { bin: "/bin/../bin/sh", args: [], workDir: "" },
        { bin: "bin/sh", args: [], workDir: "" },
        { bin: "/bin/cat", args: ["/input/../etc/passwd"], workDir: "" },
        { bin: "/bin/ls", args: [], workDir: "/input/.." },
        { bin: "/bin/ls", args: [], workDir: workdir },
      ]) {
        const refused = await runtime.reply(runtime.send({ run }));
        if (!("error" in refused)) throw new Error(`not refused: ${JSON.stringify(run)}`);
        expect(refused.error.code).to.equal("BAD_REQUEST");
        expect(refused.error.context?.code).to.equal("RUNTIME_PATH_OUTSIDE_VOLUMES");
      }
      const down = await runtime.reply(runtime.send({ shutdown: {} }));
      expect(down).to.have.property("shutdown");
      expect(await runtime.exited).to.equal(0);
    } finally {
      runtime.child.kill("SIGKILL");
    }
  });

  it("kill ends a running process and its sandbox; shutdown with processes running leaves no container", async () => {
    const runtime = new Runtime(["--workdir", workdir, "start"], env, true);
    try {
      const pids: number[] = [];
      for (let i = 0; i < 3; i++) {
        const reply = await runtime.reply(runtime.send({ run: { bin: "/bin/sleep", args: ["30"], workDir: "" } }));
        if (!("run" in reply)) throw new Error("no pid");
        pids.push(reply.run.pid);
      }
      await until(async () => (await containersOf(runtime.child.pid)).length === 3);
      const killed = await runtime.reply(runtime.send({ kill: { pid: pids[0]!, signal: 9 } }));
      expect(killed).to.have.property("kill");
      const status = await runtime.status(pids[0]!);
      if (!("processStatus" in status)) throw new Error("no status");
      expect(status.processStatus.returnCode).to.equal(137);
      expect(await containersOf(runtime.child.pid)).to.have.length(2);
      const unknown = await runtime.reply(runtime.send({ kill: { pid: 999, signal: 9 } }));
      expect(unknown).to.have.nested.property("error.code", "NOT_FOUND");

      const started = Date.now();
      const down = await runtime.reply(runtime.send({ shutdown: {} }));
      expect(down).to.have.property("shutdown");
      expect(Date.now() - started).to.be.lessThan(20_000);
      for (const pid of pids.slice(1)) await runtime.status(pid);
      expect(await runtime.exited).to.equal(0);
      expect(await containersOf(runtime.child.pid)).to.deep.equal([]);
    } finally {
      runtime.child.kill("SIGKILL");
    }
  });

  it("a malformed or oversized frame stops the runtime (exit 2) after destroying its sandboxes", async () => {
    for (const [frame, code] of [
      [Buffer.concat([varint(4), Buffer.from([0xff, 0xff, 0xff, 0xff])]), "RUNTIME_FRAME_MALFORMED"],
      [Buffer.from(varint((1 << 20) + 1)), "RUNTIME_FRAME_TOO_LARGE"],
    ] as const) {
      const runtime = new Runtime(["--workdir", workdir, "start"], env, true);
      try {
        const reply = await runtime.reply(runtime.send({ run: { bin: "/bin/sleep", args: ["30"], workDir: "" } }));
        expect(reply).to.have.property("run");
        await until(async () => (await containersOf(runtime.child.pid)).length === 1);
        runtime.child.stdin.write(frame);
        expect(await runtime.exited).to.equal(2);
        expect(runtime.stderr).to.include(code);
        expect(await containersOf(runtime.child.pid)).to.deep.equal([]);
      } finally {
        runtime.child.kill("SIGKILL");
      }
    }
  });

  it("a runtime killed with SIGKILL mid-run leaves nothing once the next one starts", async () => {
    const runtime = new Runtime(["--workdir", workdir, "start"], env, true);
    const reply = await runtime.reply(runtime.send({ run: { bin: "/bin/sleep", args: ["30"], workDir: "/input" } }));
    expect(reply).to.have.property("run");
    const pid = runtime.child.pid;
    await until(async () => (await containersOf(pid)).length === 1);
    runtime.child.kill("SIGKILL");
    await runtime.exited;
    expect(await containersOf(pid)).to.have.length(1); // what the sweep is for
    expect(await readdir(join(home, "instances"))).to.have.length(1);

    const next = new Runtime(["--workdir", workdir, "start"], env, true);
    try {
      await next.reply(next.send({ hello: { version: "0.1.0" } }));
      expect(await containersOf(pid)).to.deep.equal([]);
      const all = await docker.listContainers({ all: true, filters: { label: [RUNTIME_LABEL] } });
      expect(all.filter((c) => c.Labels[RUNTIME_OWNER_LABEL] === String(pid))).to.deep.equal([]);
      expect((await readdir(join(home, "instances"))).filter((f) => f.startsWith(`${pid}-`))).to.deep.equal([]);
      expect((await readdir(join(home, "tmp"))).filter((f) => f.startsWith(`${pid}-`))).to.deep.equal([]);
      expect((await readdir(workdir)).filter((f) => f.startsWith(".airqube-staging-"))).to.deep.equal([]);
      await next.reply(next.send({ shutdown: {} }));
      expect(await next.exited).to.equal(0);
      expect(await readdir(join(home, "instances"))).to.deep.equal([]);
    } finally {
      next.child.kill("SIGKILL");
    }
  });

  it("test runs the escape suite in the runtime's sandbox: 0 fail, 0 inconclusive; offer-template publishes it signed", async function () {
    this.timeout(600_000);
    const untested = await command(["offer-template"], env);
    expect(untested.code).to.equal(1);
    expect(untested.stderr).to.include("RUNTIME_NOT_TESTED");
    const result = await command(["test"], env);
    expect(result.code, result.stderr).to.equal(0);
    const summary = JSON.parse(result.stdout);
    expect(summary).to.include({ tier: "container", fail: 0, inconclusive: 0 });
    expect(summary.pass).to.be.greaterThan(30);
    expect(summary.reportHash).to.match(/^sha256:[0-9a-f]{64}$/);
    const offer = await command(["offer-template"], env);
    expect(offer.code, offer.stderr).to.equal(0);
    const { constraints, properties } = JSON.parse(offer.stdout);
    expect(constraints).to.equal("");
    expect(properties).to.include({
      "golem.runtime.name": "airqube",
      "airqube.runtime.tiers": "container",
      "airqube.runtime.images": good.imageId,
    });
    const verdict = verifyRuntimeOffer(properties, { now: new Date() });
    if (!verdict.ok) throw new Error(`offer refused: ${verdict.reason}`);
    expect(verdict.summary).to.include({ tier: "container", fail: 0, inconclusive: 0, reportHash: summary.reportHash });
  });
});
