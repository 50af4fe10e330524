/**
 * ya-runtime-airqube driven exactly as exe-unit drives it (test/golem/runtime/exe-unit.ts: the command line with
 * exe-unit's global flags, ya-runtime-api frames over the pipes of `start`), against real Docker.
 */

import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { verifyRuntimeOffer } from "../../../src/golem/runtime/offer.js";
import { varint } from "../../../src/golem/runtime/protocol.js";
import { RUNTIME_LABEL, RUNTIME_OWNER_LABEL } from "../../../src/golem/runtime/sweep.js";
import { PROBE_CACHE } from "../../helpers/network.js";
import { busyboxWithMarker } from "../../images/registry-fixture.js";
import { ExeUnit, type RuntimeSession } from "./exe-unit.js";

const RUNTIME = [process.execPath, join(import.meta.dirname, "..", "..", "..", "bin", "ya-runtime-airqube.js")];

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

/** A RunProcess with the given work dir and argv (exe-unit's own `run` always sends an empty work dir). */
async function runIn(session: RuntimeSession, bin: string, args: string[], workDir: string) {
  return session.request({ run: { bin, args: [bin.split("/").pop() ?? bin, ...args], workDir } });
}

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

  const unit = (taskPackage?: string) =>
    new ExeUnit({
      runtime: RUNTIME,
      workDir: workdir,
      ...(taskPackage ? { taskPackage } : {}),
      cpuCores: 1,
      memGib: 0.25,
      storageGib: 0.5,
      env: { ...process.env, ...env },
      timeoutMs: 30_000,
    });

  after(async () => {
    for (const image of [good?.imageId, other?.imageId])
      if (image)
        await docker
          .getImage(image)
          .remove({ force: true })
          .catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    // run alone (not by scripts/test.sh, which shares and removes one cache): the cache this file made
    if (!process.env.AIRQUBE_TEST_PROBE_CACHE) await rm(PROBE_CACHE, { recursive: true, force: true });
  });

  it("deploy refuses a task package whose digest is not accepted, and loads nothing", async () => {
    const { result, outcome } = await unit(other.package).deploy();
    expect(outcome.code).to.equal(1);
    if (!("Err" in result.valid)) throw new Error("deploy accepted an image not in the list");
    expect(result.valid.Err).to.match(/^RUNTIME_IMAGE_NOT_ACCEPTED: /);
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
    const { result, outcome } = await unit(good.package).deploy();
    expect(outcome.code, outcome.stderr).to.equal(0);
    expect(result).to.deep.equal({
      valid: { Ok: "" },
      vols: [
        { name: "vol-input", path: "/input" },
        { name: "vol-output", path: "/output" },
      ],
      startMode: "blocking",
    });
    expect(JSON.parse(await readFile(join(workdir, "deploy.json"), "utf8")).imageId).to.equal(good.imageId);
    expect((await docker.getImage(good.imageId).inspect()).Id).to.equal(good.imageId);
    // command mode: one process, its output and exit code
    const run = await unit().command(["run", "--entrypoint", "/bin/sh", "--", "-c", "cat /marker; echo; exit 3"]);
    expect(run.code, run.stderr).to.equal(3);
    expect(run.stdout).to.match(/^runtime-good-/); // the deployed image's own file
  });

  it("service mode: a run reads /input and its outputs land in vol-output; paths outside the volumes are refused", async () => {
    const exe = unit();
    exe.vols = [
      { name: "vol-input", path: "/input" },
      { name: "vol-output", path: "/output" },
    ];
    await writeFile(exe.hostPath("container:/input/in.txt"), "from the requestor\n");
    const session = await exe.start();
    try {
      const { pid } = await session.run("/bin/sh", [
        "-c",
        "cp /input/in.txt /output/copy.txt && mkdir /output/d && echo ok > /output/d/x && echo done",
      ]);
      const done = await session.waitProcess(pid);
      expect(done.returnCode, done.stderr.toString()).to.equal(0);
      expect(done.stdout.toString()).to.equal("done\n");
      expect(await readFile(exe.hostPath("/output/copy.txt"), "utf8")).to.equal("from the requestor\n");
      expect(await readFile(exe.hostPath("/output/d/x"), "utf8")).to.equal("ok\n");
      expect(session.counters.get("golem.usage.duration_sec")).to.be.greaterThan(0);
      expect(session.counters.has("golem.usage.cpu_sec")).to.equal(true);

      // the sandbox's /input is read-only, and a working directory is honoured
      const ro = await runIn(session, "/bin/sh", ["-c", "pwd; touch /input/x"], "/output");
      if (!("run" in ro)) throw new Error(`refused: ${JSON.stringify(ro)}`);
      const roDone = await session.waitProcess(ro.run.pid);
      expect(roDone.returnCode).to.not.equal(0);
      expect(roDone.stdout.toString()).to.equal("/output\n");

      for (const [bin, args, workDir] of [
        ["/bin/cat", [exe.hostPath("/input/in.txt")], ""],
        ["/bin/../bin/sh", [], ""],
        ["bin/sh", [], ""],
        ["/bin/cat", ["/input/../etc/passwd"], ""],
        ["/bin/ls", [], "/input/.."],
        ["/bin/ls", [], workdir],
      ] as const) {
        const refused = await runIn(session, bin, [...args], workDir);
        if (!("error" in refused)) throw new Error(`not refused: ${bin} ${args.join(" ")} in ${workDir}`);
        expect(refused.error.code).to.equal("BAD_REQUEST");
        expect(refused.error.context?.code).to.equal("RUNTIME_PATH_OUTSIDE_VOLUMES");
      }
      expect(await session.shutdown()).to.have.property("shutdown");
      expect((await session.waitExit()).code).to.equal(0);
    } finally {
      await session.dispose();
    }
  });

  it("kill ends a running process and its sandbox; shutdown with processes running leaves no container", async () => {
    const session = await unit().start();
    try {
      const pids: number[] = [];
      for (let i = 0; i < 2; i++) pids.push((await session.run("/bin/sleep", ["30"])).pid);
      await until(async () => (await containersOf(session.child.pid)).length === 2);
      expect(await session.kill(pids[0]!)).to.have.property("kill");
      expect((await session.waitProcess(pids[0]!)).returnCode).to.equal(137);
      // a killed sandbox reports no usage of its own: its wall time is counted
      expect(session.counters.get("golem.usage.duration_sec")).to.be.greaterThan(0);
      expect(await containersOf(session.child.pid)).to.have.length(1);
      expect(await session.kill(999)).to.have.nested.property("error.code", "NOT_FOUND");

      const started = Date.now();
      expect(await session.shutdown()).to.have.property("shutdown");
      expect(Date.now() - started).to.be.lessThan(20_000);
      for (const pid of pids.slice(1)) expect((await session.waitProcess(pid)).returnCode).to.equal(137);
      expect((await session.waitExit()).code).to.equal(0);
      expect(await containersOf(session.child.pid)).to.deep.equal([]);
    } finally {
      await session.dispose();
    }
  });

  it("a malformed or oversized frame stops the runtime (exit 2) after destroying its sandboxes", async () => {
    for (const [frame, code, running] of [
      [Buffer.concat([varint(4), Buffer.from([0xff, 0xff, 0xff, 0xff])]), "RUNTIME_FRAME_MALFORMED", false],
      [Buffer.from(varint((1 << 20) + 1)), "RUNTIME_FRAME_TOO_LARGE", true],
    ] as const) {
      const session = await unit().start();
      try {
        if (running) {
          await session.run("/bin/sleep", ["30"]);
          await until(async () => (await containersOf(session.child.pid)).length === 1);
        }
        session.sendRaw(frame);
        expect((await session.waitExit()).code).to.equal(2);
        expect(session.stderrText()).to.include(code);
        expect(await containersOf(session.child.pid)).to.deep.equal([]);
      } finally {
        await session.dispose();
      }
    }
  });

  it("a runtime killed with SIGKILL mid-run leaves nothing once the next one starts", async () => {
    const killed = await unit().start();
    const pid = killed.child.pid;
    try {
      await runIn(killed, "/bin/sleep", ["30"], "/input");
      await until(async () => (await containersOf(pid)).length === 1);
    } finally {
      await killed.dispose(); // SIGKILL to the runtime's process group, as exe-unit does
    }
    expect(await containersOf(pid)).to.have.length(1); // what the sweep is for
    expect(await readdir(join(home, "instances"))).to.have.length(1);
    const leftTmp = (await readdir(tmpdir())).filter((f) => f.startsWith(`airqube-golem-runtime-${pid}-`));
    expect(leftTmp).to.have.length(1); // its staged inputs

    // and a runtime's temp dir whose home is gone since (no record): any start clears it
    let dead = 4_190_000;
    while (existsSync(`/proc/${dead}`)) dead++;
    const orphan = join(tmpdir(), `airqube-golem-runtime-${dead}-${"0".repeat(16)}`);
    await mkdir(orphan);

    const next = await unit().start();
    try {
      expect(existsSync(orphan)).to.equal(false);
      expect(await containersOf(pid)).to.deep.equal([]);
      const all = await docker.listContainers({ all: true, filters: { label: [RUNTIME_LABEL] } });
      expect(all.filter((c) => c.Labels[RUNTIME_OWNER_LABEL] === String(pid))).to.deep.equal([]);
      expect((await readdir(join(home, "instances"))).filter((f) => f.startsWith(`${pid}-`))).to.deep.equal([]);
      expect((await readdir(tmpdir())).filter((f) => f.startsWith(`airqube-golem-runtime-${pid}-`))).to.deep.equal([]);
      expect((await readdir(workdir)).filter((f) => f.startsWith(".airqube-staging-"))).to.deep.equal([]);
      expect(await next.shutdown()).to.have.property("shutdown");
      expect((await next.waitExit()).code).to.equal(0);
      expect(await readdir(join(home, "instances"))).to.deep.equal([]);
    } finally {
      await next.dispose();
    }
  });

  it("test runs the escape suite in the runtime's sandbox: 0 fail, 0 inconclusive; offer-template publishes it signed", async function () {
    this.timeout(600_000);
    const exe = unit();
    const untested = await exe.command(["offer-template"]);
    expect(untested.code).to.equal(1);
    expect(untested.stderr).to.include("RUNTIME_NOT_TESTED");
    const result = await exe.command(["test"], { signal: AbortSignal.timeout(540_000) });
    expect(result.code, result.stderr).to.equal(0);
    const summary = JSON.parse(result.stdout);
    expect(summary).to.include({ tier: "container", fail: 0, inconclusive: 0 });
    expect(summary.pass).to.be.greaterThan(30);
    expect(summary.reportHash).to.match(/^sha256:[0-9a-f]{64}$/);
    const offer = await exe.command(["offer-template"]);
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

describe("Golem runtime ya-runtime-airqube on the micro-VM tier @qemu @docker", function () {
  this.timeout(180_000);
  let root: string;
  let workdir: string;
  let env: Record<string, string>;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "aq-golem-runtime-vm-"));
    const home = join(root, "home");
    workdir = join(root, "work");
    await mkdir(home);
    await mkdir(join(workdir, "vol-input"), { recursive: true });
    await writeFile(join(home, "config.json"), JSON.stringify({ tier: "microvm", limits: { wallTimeMs: 60_000 } }));
    // deploy is the container tier's test above: here the engine's busybox image, recorded as deploy would
    const imageId = (await docker.getImage("airqube/busybox:latest").inspect()).Id;
    await writeFile(
      join(workdir, "deploy.json"),
      JSON.stringify({ imageId, archiveDigest: imageId, tier: "microvm", deployedAt: new Date().toISOString() }),
    );
    env = { AIRQUBE_RUNTIME_HOME: home, AIRQUBE_LOG_LEVEL: "warn" };
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** QEMUs working under a runtime instance's temp dir (each VM's private dir is made there). */
  async function qemusOf(pid: number | undefined): Promise<number[]> {
    const found: number[] = [];
    for (const entry of await readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => "");
      if (cwd.startsWith(join(tmpdir(), `airqube-golem-runtime-${pid}-`))) found.push(Number(entry));
    }
    return found;
  }

  it("runs a process in a micro-VM with the volumes, and a killed runtime's VM is gone after the next start", async () => {
    const unit = new ExeUnit({
      runtime: RUNTIME,
      workDir: workdir,
      env: { ...process.env, ...env },
      timeoutMs: 120_000,
    });
    unit.vols = [
      { name: "vol-input", path: "/input" },
      { name: "vol-output", path: "/output" },
    ];
    await writeFile(unit.hostPath("/input/in.txt"), "into the VM\n");
    const session = await unit.start();
    try {
      const { pid } = await session.run("/bin/sh", ["-c", "cat /input/in.txt > /output/o; uname -r"]);
      const done = await session.waitProcess(pid);
      expect(done.returnCode, done.stderr.toString()).to.equal(0);
      expect(done.stdout.toString().trim()).to.not.equal(release()); // the guest's kernel, not the host's
      expect(await readFile(unit.hostPath("/output/o"), "utf8")).to.equal("into the VM\n");
      await session.run("/bin/sleep", ["60"]);
      await until(async () => (await qemusOf(session.child.pid)).length === 1, 60_000);
    } finally {
      // SIGKILL to the runtime alone, mid-run (not its process group: its QEMU is not killed with it)
      if (session.child.pid) process.kill(session.child.pid, "SIGKILL");
      await session.exited;
      await session.dispose();
    }
    const killed = session.child.pid;
    const next = await unit.start();
    try {
      expect(await qemusOf(killed)).to.deep.equal([]);
      expect((await readdir(tmpdir())).filter((f) => f.startsWith(`airqube-golem-runtime-${killed}-`))).to.deep.equal(
        [],
      );
      expect(await next.shutdown()).to.have.property("shutdown");
      expect((await next.waitExit()).code).to.equal(0);
    } finally {
      await next.dispose();
    }
  });
});
