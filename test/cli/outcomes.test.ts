/**
 * `airqube run` tells the truth: the qube's outcome and exit status (like `docker run`), every provider's
 * reason, and no silently ignored input. One unpaid devnet of three providers serves every test.
 */
import { execFile } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { Devnet } from "../../src/devnet/devnet.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const CLEAN_ENV = [
  "AIRQUBE_RPC_URL",
  "AIRQUBE_ESCROW",
  "AIRQUBE_PAYMENT_KEY_FILE",
  "AIRQUBE_BOOTSTRAP",
  "AIRQUBE_DEBUG",
];

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a child process (never a TTY: progress comes as plain lines on stderr). */
async function airqube(args: string[], env: Record<string, string> = {}): Promise<Out> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !CLEAN_ENV.includes(k)));
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      timeout: 120_000,
      env: { ...base, AIRQUBE_LOG_LEVEL: "warn", ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("cli: honest outcomes of airqube run @docker", function () {
  this.timeout(240_000);
  let devnet: Devnet;
  /** `airqube run` on the devnet, unpaid, with a fresh data and output directory. */
  let runOn: (args: string[], command: string[], env?: Record<string, string>) => Promise<Out & { output: string }>;

  before(async () => {
    devnet = await Devnet.start({ providers: 3, probeCache: PROBE_CACHE, readyTimeoutMs: 180_000 });
    runOn = async (args, command, env = {}) => {
      const output = tmp("aq-outcome-out-");
      const result = await airqube(
        [
          "run",
          "--bootstrap",
          devnet.bootstrap,
          "--data-dir",
          tmp("aq-outcome-req-"),
          "--image",
          "airqube/busybox:latest",
          "--output",
          output,
          "--memory",
          "64m",
          ...args,
          "--",
          ...command,
        ],
        env,
      );
      return { ...result, output };
    };
  });
  after(async () => {
    await devnet?.stop(3000);
  });

  let exit3: Promise<Out & { output: string }> | undefined;
  const runExit3 = () => {
    exit3 ??= runOn(["--out", "result"], ["sh", "-c", "echo 42 > /output/result; echo boom-on-stderr >&2; exit 3"]);
    return exit3;
  };

  it("exit 3: VERIFIED by 3/3 providers, the status shown with the stderr tail, and the CLI exits 3", async () => {
    const { code, stdout, stderr } = await runExit3();
    expect(code, stderr).to.equal(3);
    const lines = stdout.split("\n");
    expect(lines[0]).to.equal("VERIFIED by 3/3 providers: the qube exited with status 3");
    const tail = lines.indexOf("  stderr (unverified, last lines):");
    expect(tail, stdout).to.be.greaterThan(0);
    expect(lines[tail + 1]).to.equal("    boom-on-stderr");
  });

  it("counts k providers answering in the progress lines (3/3, not 6/6)", async () => {
    const { stderr } = await runExit3();
    const counts = [...stderr.matchAll(/\[(\d+)\/(\d+) answered\]/g)].map((m) => `${m[1]}/${m[2]}`);
    expect(counts).to.deep.equal(["1/3", "2/3", "3/3"]);
    expect(stderr).not.to.contain("6/6");
  });

  it("puts the outcome in --json too, with the exit status", async () => {
    const { code, stdout } = await runOn(["--json"], ["sh", "-c", "echo x > /output/result; exit 7"]);
    expect(code).to.equal(7);
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
    expect(result).to.deep.include({ event: "result", status: "verified", exitStatus: 7 });
    expect(result.outcome).to.deep.include({ kind: "exited", exitCode: 7, missingOutputs: [] });
  });

  it("says how many bytes of each provider's outputs have arrived, while they arrive (--json)", async () => {
    const size = 16 * 1024 * 1024;
    const { code, stdout, stderr } = await runOn(
      ["--json"],
      ["sh", "-c", `head -c ${size} /dev/zero > /output/result`],
    );
    expect(code, stderr).to.equal(0);
    const events = stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { event: string; provider?: string; bytes?: number });
    const received = new Map<string, number[]>();
    for (const e of events.filter((e) => e.event === "outputsReceiving"))
      received.set(e.provider!, [...(received.get(e.provider!) ?? []), e.bytes!]);
    const answered = events.filter((e) => e.event === "resultReceived").map((e) => e.provider!);
    expect([...received.keys()].sort()).to.deep.equal([...answered].sort());
    for (const [provider, counts] of received) {
      // the archive's bytes, growing, never more than the output and its tar headers
      expect(
        counts.every((n, i) => n > 0 && (i === 0 || n > counts[i - 1]!)),
        provider,
      ).to.equal(true);
      expect(counts.at(-1)!, provider).to.be.at.most(size + 64 * 1024);
      // the event comes before that provider's answer
      const firstBytes = events.findIndex((e) => e.event === "outputsReceiving" && e.provider === provider);
      const answer = events.findIndex((e) => e.event === "resultReceived" && e.provider === provider);
      expect(firstBytes, provider).to.be.below(answer);
    }
  });

  it("a command that does not exist: exit 127, said so", async () => {
    const { code, stdout, stderr } = await runOn([], ["no-such-command-here"]);
    expect(code, stderr).to.equal(127);
    expect(stdout).to.contain("VERIFIED by 3/3 providers: the qube exited with status 127 (command not found)");
    expect(stdout).to.contain("no-such-command-here");
  });

  it("a qube killed at its --timeout: exit 124, said so", async () => {
    const { code, stdout, stderr } = await runOn(["--timeout", "2s"], ["sleep", "30"]);
    expect(code, stderr).to.equal(124);
    expect(stdout.split("\n")[0]).to.match(/^VERIFIED by 3\/3 providers: the qube was killed at its 2 s time-out/);
  });

  it("a declared --out the qube never wrote: named, and the run fails with 123", async () => {
    const { code, stdout, output } = await runOn(
      ["--out", "a.txt", "--out", "b.txt"],
      ["sh", "-c", "echo a > /output/a.txt"],
    );
    expect(code).to.equal(123);
    expect(stdout.split("\n")[0]).to.equal(
      "VERIFIED by 3/3 providers: the qube exited with status 0; declared output b.txt never written",
    );
    expect(stdout).to.contain("  declared output never written: b.txt");
    expect(await readFile(join(output, "a.txt"), "utf8")).to.equal("a\n");
  });

  it("outputs over the file limit: the providers agree on OUTPUT_TOO_MANY_FILES (no replacement, nothing delivered), exit 123", async () => {
    const { code, stdout, stderr, output } = await runOn(
      ["--json"],
      ["sh", "-c", "mkdir /output/result; i=0; while [ $i -le 1000 ]; do : > /output/result/f$i; i=$((i+1)); done"],
    );
    expect(code, stderr).to.equal(123);
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
      status: string;
      agreeing: string[];
      failures: unknown[];
      outputs: unknown[];
      outcome: Record<string, unknown>;
    };
    expect(result.status).to.equal("verified");
    expect(result.agreeing).to.have.length(3);
    expect(result.failures, "no provider failed or was replaced").to.deep.equal([]);
    expect(result.outputs).to.deep.equal([]);
    expect(result.outcome).to.deep.include({
      kind: "outputs-refused",
      outputRefusal: "OUTPUT_TOO_MANY_FILES",
      missingOutputs: [],
    });
    expect(await readdir(output)).to.deep.equal([]);
    // and in the human form, one head line saying why
    const human = await runOn(
      [],
      ["sh", "-c", "mkdir /output/result; i=0; while [ $i -le 1000 ]; do : > /output/result/f$i; i=$((i+1)); done"],
    );
    expect(human.code).to.equal(123);
    expect(human.stdout.split("\n")[0]).to.equal(
      "VERIFIED by 3/3 providers: the qube's outputs were refused, none delivered: OUTPUT_TOO_MANY_FILES (hold more files or directories than the limit)",
    );
  });

  it("--redundancy above the providers found: NOT_ENOUGH_PROVIDERS, nothing dispatched", async () => {
    const { code, stdout, stderr } = await runOn(["--redundancy", "5"], ["sh", "-c", "echo 1 > /output/result"]);
    expect(code).to.equal(125);
    expect(stderr).to.contain("[NOT_ENOUGH_PROVIDERS]");
    expect(stderr).to.contain("Found 3 usable distinct providers for a redundancy of 5");
    expect(stderr).to.contain("--allow-fewer");
    expect(stderr).not.to.contain("sent to");
    expect(stdout).to.equal("");
  });

  it("--redundancy 5 --allow-fewer: runs on the 3 there are, with a warning line", async () => {
    const { code, stdout, stderr } = await runOn(
      ["--redundancy", "5", "--allow-fewer"],
      ["sh", "-c", "echo 1 > /output/result"],
    );
    expect(code, stderr).to.equal(0);
    expect(stderr).to.contain(
      "airqube: warning: only 3 distinct providers available for a redundancy of 5; running on 3 (--allow-fewer)",
    );
    expect(stderr).to.contain("[3/3 answered]");
    // the head line says that fewer providers answered than were asked for (issue 13)
    expect(stdout.split("\n")[0]).to.equal(
      "VERIFIED by 3/3 providers (only 3 of the 5 providers asked for answered): the qube exited with status 0",
    );
  });

  it("every provider's refusal reason reaches the normal output, and the error carries them", async () => {
    const digest = `sha256:${"0".repeat(64)}`;
    const { code, stderr } = await runOn(["--image-digest", digest], ["true"]);
    expect(code).to.equal(125);
    const refusals = stderr.split("\n").filter((l) => / {2}12D3…\w{4} refused: IMAGE_UNAVAILABLE: /.test(l));
    expect(refusals, stderr).to.have.length(3);
    const error = stderr.split("\n").find((l) => l.startsWith("airqube: No provider could run the qube"))!;
    expect(error).to.contain("[NO_PROVIDER]");
    for (const p of devnet.providers) expect(error).to.contain(`${p.peerId}: PROPOSAL_REJECTED: IMAGE_UNAVAILABLE`);
    const debug = await runOn(["--image-digest", digest], ["true"], { AIRQUBE_DEBUG: "1" });
    expect(debug.stderr).to.contain("caused by [PROPOSAL_REJECTED]");
  });

  it("AIRQUBE_LOG_LEVEL is honoured by requestor commands (and an unknown level is an error)", async () => {
    const info = await runOn([], ["sh", "-c", "echo 1 > /output/result"], { AIRQUBE_LOG_LEVEL: "info" });
    expect(info.code, info.stderr).to.equal(0);
    const logs = info.stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { name: string; msg: string });
    expect(logs.some((l) => l.name === "requestor" && l.msg === "done")).to.equal(true);
    const offers = await airqube(["offers", "--bootstrap", devnet.bootstrap, "--data-dir", tmp("aq-outcome-req-")], {
      AIRQUBE_LOG_LEVEL: "info",
    });
    expect(offers.stderr).to.contain('"msg":"offers gathered"');
    const bad = await runOn([], ["true"], { AIRQUBE_LOG_LEVEL: "loud" });
    expect(bad.code).to.equal(125);
    expect(bad.stderr).to.contain("[LOG_LEVEL_INVALID]");
  });

  it("shows amounts in GLM: offers and provider status (one earnings figure, wei only in --json)", async () => {
    const offers = await airqube(["offers", "--bootstrap", devnet.bootstrap, "--data-dir", tmp("aq-outcome-req-")]);
    expect(offers.code, offers.stderr).to.equal(0);
    const lines = offers.stdout.trim().split("\n");
    expect(lines).to.have.length(3);
    for (const line of lines) {
      expect(line).to.match(/ price \d+(\.\d+)? GLM \+ \d+(\.\d+)? GLM\/s /);
      expect(line).not.to.contain("wei");
    }
    const status = await airqube(["provider", "status", "--data-dir", devnet.providers[0]!.dataDir]);
    expect(status.code, status.stderr).to.equal(0);
    expect(status.stdout).to.contain(
      "  credited by the escrow: 0.0 GLM over 0 credits (prices paid plus stakes returned) (unpaid provider: no chain configured)",
    );
    expect(status.stdout).not.to.contain("wei");
    const json = JSON.parse(
      (await airqube(["provider", "status", "--json", "--data-dir", devnet.providers[0]!.dataDir])).stdout,
    ) as { earnedWei: string };
    expect(json.earnedWei).to.equal("0");
  });
});

describe("cli: no silently ignored --config", function () {
  this.timeout(60_000);
  const qube = ["--image", "airqube/busybox:latest", "--output", "/nonexistent-out", "--", "true"];

  it("run: a missing, garbage or unknown-key config file is an error, whatever the backend", async () => {
    const dir = tmp("aq-outcome-cfg-");
    const base = ["run", "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/x", "--data-dir", tmp("aq-outcome-req-")];
    const missing = await airqube([...base, "--config", join(dir, "missing.json"), ...qube]);
    expect(missing.code).to.equal(125);
    expect(missing.stderr).to.contain("[CONFIG_UNREADABLE]");
    expect(missing.stderr).to.contain("missing.json: ENOENT");
    await writeFile(join(dir, "garbage.json"), "{ not json");
    const garbage = await airqube([...base, "--config", join(dir, "garbage.json"), ...qube]);
    expect(garbage.code).to.equal(125);
    expect(garbage.stderr).to.contain("The config file is not valid JSON");
    expect(garbage.stderr).to.contain("[CONFIG_INVALID]");
    await writeFile(join(dir, "unknown.json"), JSON.stringify({ golme: {} }));
    const unknown = await airqube([...base, "--config", join(dir, "unknown.json"), ...qube]);
    expect(unknown.code).to.equal(125);
    expect(unknown.stderr).to.contain("[CONFIG_INVALID]");
    expect(unknown.stderr).to.contain("golme");
  });

  it("probe and offers: a missing or garbage config file is an error too", async () => {
    const dir = tmp("aq-outcome-cfg-");
    await writeFile(join(dir, "garbage.json"), "{ not json");
    const offers = ["offers", "--bootstrap", "/ip4/127.0.0.1/tcp/1/p2p/x", "--data-dir", tmp("aq-outcome-req-")];
    for (const args of [["probe"], offers]) {
      const missing = await airqube([...args, "--config", join(dir, "missing.json")]);
      expect(missing.code, args[0]).to.equal(125);
      expect(missing.stderr.trim().split("\n").at(-1)).to.match(/missing\.json: ENOENT \[CONFIG_UNREADABLE\]$/);
      const garbage = await airqube([...args, "--config", join(dir, "garbage.json")]);
      expect(garbage.code, args[0]).to.equal(125);
      expect(garbage.stderr).to.contain("[CONFIG_INVALID]");
    }
  });

  it("provider start: a missing or invalid config file is an error", async () => {
    const dir = tmp("aq-outcome-cfg-");
    const missing = await airqube(["provider", "start", "--data-dir", dir, "--config", join(dir, "missing.json")]);
    expect(missing.code).to.equal(125);
    expect(missing.stderr).to.contain("[CONFIG_UNREADABLE]");
    await writeFile(join(dir, "bad.json"), JSON.stringify({ maxConcurrent: "lots" }));
    const bad = await airqube(["provider", "start", "--data-dir", dir, "--config", join(dir, "bad.json")]);
    expect(bad.code).to.equal(125);
    expect(bad.stderr).to.contain("[CONFIG_INVALID]");
  });
});
