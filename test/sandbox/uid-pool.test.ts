import { spawn } from "node:child_process";
import { once } from "node:events";
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { UidPool } from "../../src/sandbox/uid-pool.js";
import { sweepUid, type UidSweepReport } from "../../src/sandbox/uid-sweep.js";
import { BUSYBOX, ourContainers } from "../helpers/docker.js";

describe("UidPool", () => {
  it("hands out each uid of the range once, and again only after release, last released last", () => {
    const pool = new UidPool({ first: 300_000, count: 3 });
    expect([pool.acquire(), pool.acquire()]).to.deep.equal([300_000, 300_001]);
    pool.release(300_000);
    pool.release(300_000); // twice: ignored
    pool.release(123); // not held: ignored
    expect([pool.acquire(), pool.acquire()]).to.deep.equal([300_002, 300_000]);
    expect(() => pool.acquire()).to.throw(/Every uid of the sandbox range is in use/);
    expect(pool.inUse).to.equal(3);
  });

  it("with a sweep: a released uid comes back only once swept clean; an unclean or failed sweep keeps it out", async () => {
    const gates = new Map<number, (report: UidSweepReport) => void>();
    const fails = new Set<number>();
    const pool = new UidPool(
      { first: 300_000, count: 3 },
      {
        sweep: (uid) =>
          fails.has(uid)
            ? Promise.reject(new Error("EACCES"))
            : new Promise<UidSweepReport>((resolve) => gates.set(uid, resolve)),
      },
    );
    const [a, b, c] = [pool.acquire(), pool.acquire(), pool.acquire()];
    pool.release(a);
    expect(() => pool.acquire(), "not before its sweep ended").to.throw(/1 being swept/);
    gates.get(a)!({ uid: a, killed: 1, removed: 2, complete: true });
    await pool.settled();
    expect(pool.acquire()).to.equal(a);
    pool.release(b);
    gates.get(b)!({ uid: b, killed: 0, removed: 0, complete: false });
    fails.add(c);
    pool.release(c);
    await pool.settled();
    expect(pool.outOfService.sort()).to.deep.equal([b, c]);
    expect(() => pool.acquire()).to.throw(/2 out of service/);
  });

  it("sweepUid kills the uid's processes and removes what it owns, nothing else, following no link", async function () {
    if (process.getuid?.() !== 0) this.skip(); // chown and setuid need root
    const uid = 300_123;
    const root = mkdtempSync(join(tmpdir(), "aq-sweep-"));
    const outside = mkdtempSync(join(tmpdir(), "aq-sweep-outside-"));
    try {
      const own = (path: string, owner = uid) => chownSync(path, owner, owner);
      writeFileSync(join(root, "planted"), "x");
      own(join(root, "planted"));
      mkdirSync(join(root, "tenant-dir/deep"), { recursive: true });
      writeFileSync(join(root, "tenant-dir/deep/f"), "x");
      own(join(root, "tenant-dir"));
      mkdirSync(join(root, "shared"));
      writeFileSync(join(root, "shared/theirs"), "x");
      own(join(root, "shared/theirs"));
      writeFileSync(join(root, "shared/others"), "kept");
      own(join(root, "shared/others"), uid + 1);
      writeFileSync(join(outside, "target"), "kept");
      symlinkSync(join(outside, "target"), join(root, "link"));
      chownSync(join(root, "link"), uid, uid); // chown follows links: the target is now the uid's too
      const { lchownSync } = await import("node:fs");
      chownSync(join(outside, "target"), 0, 0);
      lchownSync(join(root, "link"), uid, uid);
      const daemon = spawn("sleep", ["60"], { uid, gid: uid, stdio: "ignore" });
      await once(daemon, "spawn");
      const exited = once(daemon, "exit");
      const report = await sweepUid(uid, { roots: [root] });
      const [, signal] = await exited;
      expect(signal).to.equal("SIGKILL");
      expect(report).to.deep.include({ uid, complete: true });
      expect(report.killed).to.equal(1);
      expect(report.removed).to.equal(4); // planted, tenant-dir (with what is in it), shared/theirs, link
      expect(existsSync(join(root, "planted"))).to.equal(false);
      expect(existsSync(join(root, "tenant-dir"))).to.equal(false);
      expect(existsSync(join(root, "shared/theirs"))).to.equal(false);
      expect(existsSync(join(root, "shared/others")), "another uid's file stays").to.equal(true);
      expect(existsSync(join(outside, "target")), "a link is removed, never followed").to.equal(true);
      // bounded: a walk cut short says so
      writeFileSync(join(root, "shared/x"), "x");
      expect((await sweepUid(uid, { roots: [root], maxEntries: 1 })).complete).to.equal(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it("refuses ranges among the system's users, over nobody, or out of bounds", () => {
    for (const range of [
      { first: 0, count: 10 },
      { first: 999, count: 1 },
      { first: 65_530, count: 10 },
      { first: 2 ** 31 - 2, count: 2 },
      { first: 300_000, count: 0 },
      { first: 300_000.5, count: 1 },
    ])
      expect(() => new UidPool(range), JSON.stringify(range)).to.throw(/uid range/);
  });
});

describe("ContainerSandbox with a uid per sandbox @docker", function () {
  this.timeout(60_000);
  const docker = new Docker();

  after(async () => {
    expect(await ourContainers(docker), "no container may outlive its qube").to.deep.equal([]);
  });

  it("runs concurrent qubes as distinct uids of the range, scratch theirs, and refuses one more than the range", async () => {
    const sandbox = new ContainerSandbox({ docker, uids: { first: 300_000, count: 2 } });
    const qube = {
      image: BUSYBOX,
      command: ["sh", "-c", "id -u; id -g; stat -c '%u:%g %a' /scratch; sleep 1"],
    };
    const runs = [sandbox.run(qube), sandbox.run(qube), sandbox.run(qube)];
    const settled = await Promise.allSettled(runs);
    const ok = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value.stdout.split("\n")] : []));
    const refused = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as { code: string }] : []));
    expect(refused.map((e) => e.code)).to.deep.equal(["UID_EXHAUSTED"]);
    const uids = ok.map((lines) => lines[0]).sort();
    expect(uids).to.deep.equal(["300000", "300001"]);
    for (const [uid, gid, scratch] of ok) {
      expect(gid).to.equal(uid);
      expect(scratch).to.equal(`${uid}:${uid} 1777`);
    }
    // both uids are back once their containers are gone
    const again = await Promise.all([sandbox.run(qube), sandbox.run(qube)]);
    expect(again.map((r) => r.stdout.split("\n")[0]).sort()).to.deep.equal(["300000", "300001"]);
  });

  it("gives each warm container a uid of its own from the start, kept by the qube it serves, back once removed", async () => {
    const uids = new UidPool({ first: 301_000, count: 4 });
    const sandbox = new ContainerSandbox({ docker, uids, warm: { image: BUSYBOX, count: 2 } });
    try {
      expect(await sandbox.warm()).to.equal(2);
      expect(uids.inUse, "the two waiting containers hold theirs").to.equal(2);
      const qube = { image: BUSYBOX, command: ["sh", "-c", "id -u; id -g; stat -c '%u:%g %a' /scratch; sleep 1"] };
      const served = await Promise.all([sandbox.run(qube), sandbox.run(qube)]);
      expect(sandbox.stats.warmRuns, "both served warm").to.equal(2);
      const seen = served.map((r) => r.stdout.split("\n"));
      const own = seen.map(([uid]) => uid);
      expect(new Set(own).size, "two qubes, two uids").to.equal(2);
      for (const [uid, gid, scratch] of seen) {
        expect(Number(uid)).to.be.within(301_000, 301_003);
        expect(gid).to.equal(uid);
        expect(scratch).to.equal(`${uid}:${uid} 1777`);
      }
      await sandbox.warm(); // the replacements took the other two; the served ones' came back after removal
      expect(uids.inUse).to.equal(2);
    } finally {
      await sandbox.close();
    }
    expect(uids.inUse, "every uid back once the pool is closed").to.equal(0);
  });
});
