import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
});
