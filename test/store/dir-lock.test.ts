import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { expect } from "chai";
import { UserError } from "../../src/qube/errors.js";
import { LOCK_FILE, lockDataDir } from "../../src/store/dir-lock.js";

describe("store: one process per data directory", () => {
  const dir = () => mkdtempSync(join(tmpdir(), "aq-lock-"));

  it("writes the holder's pid, is re-entrant in one process, and removes the file on the last release", () => {
    const d = dir();
    const a = lockDataDir(d, "requestor");
    const held = JSON.parse(readFileSync(join(d, LOCK_FILE), "utf8")) as { pid: number; role: string };
    expect(held).to.include({ pid: process.pid, role: "requestor" });
    const b = lockDataDir(d, "requestor");
    a.release();
    expect(existsSync(join(d, LOCK_FILE))).to.equal(true);
    b.release();
    expect(existsSync(join(d, LOCK_FILE))).to.equal(false);
  });

  it("is one lock however the directory is spelt (relative or absolute): a second take never replaces the file", () => {
    const d = dir();
    const a = lockDataDir(d, "airqube run");
    const b = lockDataDir(relative(process.cwd(), d), "airqube requestor");
    a.release();
    // still held by b: the file is there, with the first holder's content
    expect(JSON.parse(readFileSync(join(d, LOCK_FILE), "utf8"))).to.include({ pid: process.pid, role: "airqube run" });
    b.release();
    expect(existsSync(join(d, LOCK_FILE))).to.equal(false);
  });

  it("refuses a directory held by another live process, naming its pid", async () => {
    const d = dir();
    const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 30000)"], { stdio: "ignore" });
    try {
      writeFileSync(join(d, LOCK_FILE), JSON.stringify({ pid: child.pid, role: "airqube provider agent" }));
      let caught: unknown;
      try {
        lockDataDir(d, "requestor");
      } catch (error) {
        caught = error;
      }
      expect(caught).to.be.instanceOf(UserError);
      expect((caught as UserError).code).to.equal("DATA_DIR_LOCKED");
      expect((caught as UserError).message).to.include(String(child.pid));
      expect((caught as UserError).details).to.include("airqube provider agent");
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("recovers a stale lock (its holder is gone) and an unreadable one", async () => {
    const d = dir();
    const child = spawn(process.execPath, ["-e", "0"], { stdio: "ignore" });
    await new Promise((r) => child.on("exit", r));
    writeFileSync(join(d, LOCK_FILE), JSON.stringify({ pid: child.pid, role: "requestor" }));
    const lock = lockDataDir(d, "requestor");
    expect(JSON.parse(readFileSync(join(d, LOCK_FILE), "utf8")).pid).to.equal(process.pid);
    lock.release();
    writeFileSync(join(d, LOCK_FILE), "not json");
    lockDataDir(d, "requestor").release();
    expect(existsSync(join(d, LOCK_FILE))).to.equal(false);
  });
  it("two processes fighting for one directory never both hold it (the file is never seen empty or half written)", async () => {
    const d = dir();
    const fighter = `
      import { readFileSync } from "node:fs";
      import { join } from "node:path";
      import { lockDataDir } from ${JSON.stringify(join(import.meta.dirname, "..", "..", "src", "store", "dir-lock.ts"))};
      const d = process.argv[1];
      const until = Date.now() + 3000;
      let held = 0, stolen = 0;
      while (Date.now() < until) {
        let lock;
        try { lock = lockDataDir(d, "fighter"); } catch (e) { if (e.code === "DATA_DIR_LOCKED") continue; throw e; }
        held++;
        // while it holds the lock, the file must stay its own
        for (let i = 0; i < 20; i++) {
          let mine = false;
          try { mine = JSON.parse(readFileSync(join(d, "airqube.lock"), "utf8")).pid === process.pid; } catch {}
          if (!mine) { stolen++; break; }
        }
        lock.release();
      }
      process.stdout.write(JSON.stringify({ held, stolen }));
    `;
    const fight = () =>
      new Promise<{ held: number; stolen: number }>((resolve, reject) => {
        const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", fighter, d]);
        let out = "";
        let err = "";
        child.stdout.on("data", (c: Buffer) => (out += c.toString()));
        child.stderr.on("data", (c: Buffer) => (err += c.toString()));
        child.on("close", () => {
          try {
            resolve(JSON.parse(out) as { held: number; stolen: number });
          } catch {
            reject(new Error(`fighter failed: ${err.slice(-2000)}`));
          }
        });
      });
    const results = await Promise.all([fight(), fight()]);
    for (const r of results) expect(r.held, "each got the lock at times").to.be.greaterThan(0);
    expect(results.map((r) => r.stolen)).to.deep.equal([0, 0]);
    expect(existsSync(join(d, LOCK_FILE))).to.equal(false);
    expect(readdirSync(d), "no temporary file or takeover turn left").to.deep.equal([]);
  }).timeout(60_000);
});
