import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { expect } from "chai";
import {
  type DevnetProfile,
  devnetProfilePath,
  devnetProfileSchema,
  profileFill,
  readDevnetProfile,
  removeDevnetProfile,
  writeDevnetProfile,
} from "../../src/devnet/profile.js";
import { Identity } from "../../src/qube/index.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const CLEAN_ENV = [
  "AIRQUBE_RPC_URL",
  "AIRQUBE_ESCROW",
  "AIRQUBE_PAYMENT_KEY_FILE",
  "AIRQUBE_BOOTSTRAP",
  "AIRQUBE_HOME",
];

/** The environment of a fresh shell: no AIRQUBE_* settings except those given. */
const shellEnv = (extra: Record<string, string>) => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !CLEAN_ENV.includes(k))),
  AIRQUBE_LOG_LEVEL: "warn",
  ...extra,
});

async function airqube(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      timeout: 280_000,
      env: shellEnv(env),
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const lastJson = (stdout: string) =>
  JSON.parse(
    stdout
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .at(-1)!,
  ) as Record<string, unknown>;

/** The README's quick flow, word for word: a qube whose output is checked. */
const quickRun = (output: string) => [
  "run",
  "--json",
  "--image",
  "airqube/busybox:latest",
  "--output",
  output,
  "--out",
  "result.txt",
  "--",
  "sh",
  "-c",
  "echo 42 > /output/result.txt",
];

interface Ready {
  event: "ready";
  bootstrap: string;
  profile: string;
  env: Record<string, string>;
  providers: { peerId: string }[];
  chain: { requestorKeyFile: string };
}

describe("devnet: `airqube devnet up` and the README flows on a paid devnet @docker", function () {
  this.timeout(600_000);
  const home = tmp("aq-profile-home-");
  let up: ChildProcess;
  let ready: Ready;
  let upStderr = "";

  before(async () => {
    // the escape suite's report, if this test run already has it (the devnet reruns the suite otherwise)
    if (existsSync(PROBE_CACHE)) await cp(PROBE_CACHE, join(home, "probe-cache"), { recursive: true });
    up = spawn(process.execPath, [BIN, "devnet", "up", "--json", "--providers", "3", "--ready-timeout", "180s"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: shellEnv({ AIRQUBE_HOME: home }),
    });
    up.stderr!.on("data", (chunk: Buffer) => {
      upStderr = (upStderr + chunk.toString()).slice(-4000);
    });
    ready = await new Promise<Ready>((resolve, reject) => {
      createInterface({ input: up.stdout! }).once("line", (line) => {
        const first = JSON.parse(line) as Ready;
        if (first.event === "ready") resolve(first);
        else reject(new Error(`devnet up did not start: ${line}\n${upStderr}`));
      });
      up.once("exit", (code) => reject(new Error(`devnet up exited ${code}: ${upStderr}`)));
    });
  });
  after(async () => {
    if (up && up.exitCode === null) {
      up.kill("SIGKILL");
    }
  });

  it("writes a profile naming the bootstrap, chain, escrow and key file (never the key) and prints every variable", async () => {
    expect(ready.profile).to.equal(devnetProfilePath(home));
    const text = await readFile(ready.profile, "utf8");
    const profile = devnetProfileSchema.parse(JSON.parse(text));
    expect(profile.bootstrap).to.equal(ready.bootstrap);
    expect(profile.chain!.paymentKeyFile).to.equal(ready.chain.requestorKeyFile);
    const key = (await readFile(ready.chain.requestorKeyFile, "utf8")).trim().replace(/^0x/, "");
    expect(text.toLowerCase()).not.to.contain(key.toLowerCase());
    expect(Object.keys(ready.env).sort()).to.deep.equal([
      "AIRQUBE_BOOTSTRAP",
      "AIRQUBE_ESCROW",
      "AIRQUBE_PAYMENT_KEY_FILE",
      "AIRQUBE_RPC_URL",
    ]);
  });

  it("`run` with nothing but the profile pays, is verified, and `journal` and `offers` find it too", async () => {
    const output = tmp("aq-profile-out-");
    const run = await airqube(quickRun(output), { AIRQUBE_HOME: home });
    expect(run.code, run.stderr).to.equal(0);
    const result = lastJson(run.stdout) as { status: string; payments: { status: string }[] };
    expect(result.status).to.equal("verified");
    expect(result.payments.map((p) => p.status)).to.deep.equal(["settled"]);
    expect((await readFile(join(output, "result.txt"), "utf8")).trim()).to.equal("42");

    const journal = await airqube(["journal", "--json"], { AIRQUBE_HOME: home });
    expect(journal.code, journal.stderr).to.equal(0);
    const [qube] = JSON.parse(journal.stdout) as { state: string; escrowJobs: { state: string }[] }[];
    expect(qube!.state).to.equal("verified");
    expect(qube!.escrowJobs.map((j) => j.state)).to.deep.equal(["settled"]);

    const offers = await airqube(["offers", "--json"], { AIRQUBE_HOME: home });
    expect(offers.code, offers.stderr).to.equal(0);
    const { offers: list } = JSON.parse(offers.stdout) as { offers: { provider: string }[] };
    expect(list.map((o) => o.provider).sort()).to.deep.equal(ready.providers.map((p) => p.peerId).sort());
  });

  it("`run` with only the variables `devnet up` printed (no profile) pays and is verified", async () => {
    const run = await airqube(quickRun(tmp("aq-profile-out-")), {
      ...ready.env,
      AIRQUBE_HOME: tmp("aq-profile-other-home-"),
    });
    expect(run.code, run.stderr).to.equal(0);
    const result = lastJson(run.stdout) as { status: string; payments: { status: string }[] };
    expect(result.status).to.equal("verified");
    expect(result.payments.map((p) => p.status)).to.deep.equal(["settled"]);
  });

  it("`probe --provider` on the paid devnet pays for its qubes and passes", async () => {
    const provider = ready.providers[0]!.peerId;
    const probe = await airqube(["probe", "--provider", provider, "--json"], { AIRQUBE_HOME: home });
    expect(probe.code, probe.stderr).to.equal(0);
    const report = JSON.parse(probe.stdout) as {
      provider: string;
      summary: { fail: number; inconclusive: number };
      payments: { status: string }[];
    };
    expect(report.provider).to.equal(provider);
    expect(report.summary).to.include({ fail: 0, inconclusive: 0 });
    expect(report.payments.length).to.be.greaterThan(0);
    for (const payment of report.payments) expect(payment.status).to.equal("settled");
  });

  it("`probe --provider` with an id that is not on the network, or not an id: one error line", async () => {
    // a well-formed peer id of nobody on this devnet
    const nobody = Identity.fromSeed(randomBytes(32)).peerId;
    const unknown = await airqube(["probe", "--provider", nobody], { AIRQUBE_HOME: home });
    expect(unknown.code).to.equal(125);
    expect(unknown.stdout).to.equal("");
    const lines = unknown.stderr.trim().split("\n");
    // one error line (besides saying where the settings came from): no report, no inconclusive rows
    expect(lines.filter((l) => /\[[A-Z_]+\]$/.test(l))).to.have.length(1);
    expect(unknown.stderr).not.to.contain("inconclusive");
    expect(lines.at(-1)).to.match(/^airqube: No provider with this id is on the network: .*\[PROVIDER_UNKNOWN\]$/);
    expect(lines.at(-1)).to.contain(nobody);

    const garbage = await airqube(["probe", "--provider", "not-a-peer"], { AIRQUBE_HOME: home });
    expect(garbage.code).to.equal(125);
    expect(garbage.stderr.trim().split("\n").at(-1)).to.match(/\[PROVIDER_ID_INVALID\]$/);
  });

  it("stopping the devnet removes its profile; `run` then asks for a bootstrap again", async () => {
    expect(up.exitCode, "devnet up is still running").to.equal(null);
    const exited = new Promise<number | null>((resolve) => up.once("exit", (code) => resolve(code)));
    up.kill("SIGINT");
    expect(await exited).to.equal(0);
    expect(existsSync(devnetProfilePath(home))).to.equal(false);
    const run = await airqube(quickRun(tmp("aq-profile-out-")), { AIRQUBE_HOME: home });
    expect(run.code).to.equal(125);
    expect(run.stderr).to.contain("[BOOTSTRAP_MISSING]");
  });
});

describe("devnet profile: flags > environment > profile", () => {
  const profile: DevnetProfile = {
    version: 1,
    pid: process.pid,
    dir: "/tmp/devnet",
    bootstrap: "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWx",
    dataDir: "/tmp/devnet/requestor",
    chain: {
      rpcUrl: "http://127.0.0.1:8545",
      chainId: 31337,
      escrow: `0x${"11".repeat(20)}`,
      token: `0x${"22".repeat(20)}`,
      paymentKeyFile: "/tmp/devnet/requestor.key",
    },
  };
  const all = new Set(["bootstrap", "rpcUrl", "escrow", "paymentKeyFile", "dataDir", "json"]);
  const fill = (given: string[], env: Record<string, string> = {}, p = profile) =>
    profileFill(p, { given: new Set(given), has: all, env });

  it("fills what nothing else gives", () => {
    expect(fill([])).to.deep.equal({
      bootstrap: [profile.bootstrap],
      rpcUrl: profile.chain!.rpcUrl,
      escrow: profile.chain!.escrow,
      paymentKeyFile: profile.chain!.paymentKeyFile,
      dataDir: profile.dataDir,
    });
  });

  it("a flag or a variable wins, and a half-given payment set is never completed from the profile", () => {
    expect(fill(["bootstrap"])).not.to.have.property("bootstrap");
    expect(fill([], { AIRQUBE_BOOTSTRAP: "/ip4/127.0.0.1/tcp/1" })).not.to.have.property("bootstrap");
    for (const given of [["rpcUrl"], ["escrow"], ["paymentKeyFile"]])
      expect(fill(given)).to.deep.equal({ bootstrap: [profile.bootstrap], dataDir: profile.dataDir });
    for (const name of ["AIRQUBE_RPC_URL", "AIRQUBE_ESCROW", "AIRQUBE_PAYMENT_KEY_FILE"])
      expect(fill([], { [name]: "x" })).not.to.have.property("rpcUrl");
    expect(fill(["dataDir"])).not.to.have.property("dataDir");
    const { chain: _, ...unpaid } = profile;
    expect(fill([], {}, unpaid)).to.deep.equal({ bootstrap: [profile.bootstrap], dataDir: profile.dataDir });
  });

  it("a profile of a devnet that is gone is ignored, an invalid one is an error, and only its writer removes it", async () => {
    const home = tmp("aq-profile-unit-");
    expect(readDevnetProfile(home)).to.equal(undefined);
    await writeDevnetProfile(home, profile);
    expect(readDevnetProfile(home)).to.deep.equal(profile);
    await removeDevnetProfile(home, process.pid + 1);
    expect(readDevnetProfile(home)).to.deep.equal(profile);
    // a pid that is not running (pids are below 2^22 on Linux)
    await writeDevnetProfile(home, { ...profile, pid: 2 ** 22 + 7 });
    expect(readDevnetProfile(home)).to.equal(undefined);
    await writeFile(devnetProfilePath(home), '{"version":1,"pid":"x"}');
    expect(() => readDevnetProfile(home))
      .to.throw()
      .with.property("code", "DEVNET_PROFILE_INVALID");
    await writeDevnetProfile(home, profile);
    await removeDevnetProfile(home, process.pid);
    expect(existsSync(devnetProfilePath(home))).to.equal(false);
  });
});
