import { expect } from "chai";
import Docker from "dockerode";
import { ContainerSandbox } from "../../src/sandbox/container-sandbox.js";
import { UidPool } from "../../src/sandbox/uid-pool.js";
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
