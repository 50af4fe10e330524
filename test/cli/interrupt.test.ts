import { type ChildProcess, execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { expect } from "chai";
import { INTERRUPTED_EXIT, INTERRUPTED_LINE } from "../../src/cli/interrupt.js";
import { Devnet } from "../../src/devnet/devnet.js";
import { JobLedger } from "../../src/provider/ledger.js";
import { SANDBOX_LABEL } from "../../src/sandbox/hardening.js";
import { PROBE_CACHE, tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
const CLEAN_ENV = ["AIRQUBE_RPC_URL", "AIRQUBE_ESCROW", "AIRQUBE_PAYMENT_KEY_FILE", "AIRQUBE_BOOTSTRAP"];
const baseEnv = () => ({
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !CLEAN_ENV.includes(k))),
  AIRQUBE_LOG_LEVEL: "warn",
  // no profile of a devnet someone else started on this machine
  AIRQUBE_HOME: tmp("aq-int-home-"),
});

/** Containers of one provider process (the sandbox labels each container with its owner's pid). */
async function containersOf(pid: number): Promise<string[]> {
  const { stdout } = await promisify(execFile)("docker", [
    "ps",
    "-aq",
    "--filter",
    `label=${SANDBOX_LABEL}.owner=${pid}`,
  ]);
  return stdout.split("\n").filter(Boolean);
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("cli: Ctrl-C during airqube run @docker", function () {
  this.timeout(300_000);
  let devnet: Devnet;
  let payFlags: string[];

  before(async () => {
    // one seat per provider: a second run is admitted only if the interrupted qube freed its seat
    devnet = await Devnet.start({
      providers: [{ maxConcurrent: 1 }, { maxConcurrent: 1 }, { maxConcurrent: 1 }],
      chain: true,
      probeCache: PROBE_CACHE,
      // a busy machine starts agents slowly
      readyTimeoutMs: 180_000,
    });
    const chain = devnet.chain!;
    payFlags = ["--rpc-url", chain.rpcUrl, "--escrow", chain.escrow, "--payment-key-file", chain.requestorKeyFile];
  });
  after(async () => {
    await devnet?.stop(3000);
  });

  const runArgs = (dataDir: string, command: string) => [
    BIN,
    "run",
    "--json",
    "--bootstrap",
    devnet.bootstrap,
    "--data-dir",
    dataDir,
    ...payFlags,
    "--image",
    "airqube/busybox:latest",
    "--output",
    tmp("aq-int-out-"),
    "--timeout",
    "60s",
    "--memory",
    "64m",
    "--",
    "sh",
    "-c",
    command,
  ];

  it("tells the providers to stop, journals the qube as interrupted, exits 130 with one line, and frees the seats", async () => {
    const dataDir = tmp("aq-int-req-");
    const env = baseEnv();
    const child: ChildProcess = spawn(process.execPath, runArgs(dataDir, "sleep 30; echo late > /output/result"), {
      stdio: ["ignore", "pipe", "pipe"],
      env,
    });
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const started = new Set<string>();
    const allStarted = new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (!line.startsWith("{")) return;
        const event = JSON.parse(line) as { event?: string; provider?: string };
        if (event.event === "qubeStarted" && event.provider) started.add(event.provider);
        if (started.size === 3) resolve();
      });
      exited.then((code) => reject(new Error(`run exited (${code}) before the qubes started: ${stderr}`)));
    });
    try {
      await allStarted;
      // every provider runs the qube in a container now
      for (const p of devnet.providers)
        await until("the qube's container", 10_000, async () =>
          (await containersOf(p.process.pid!)).length === 1 ? true : undefined,
        );
      const interruptedAt = Date.now();
      child.kill("SIGINT");
      const code = await exited;
      const exitMs = Date.now() - interruptedAt;
      expect(code, stderr).to.equal(INTERRUPTED_EXIT);
      const lines = stderr.trim().split("\n");
      expect(lines.at(-1)).to.equal(INTERRUPTED_LINE);
      expect(stderr).not.to.contain("Unexpected error");
      expect(stderr).not.to.contain("[INTERNAL]");
      expect(exitMs).to.be.lessThan(10_000);

      // every provider destroyed its container within a few seconds (the qube would have slept 30 s)
      for (const p of devnet.providers)
        await until("the containers to go", 10_000, async () =>
          (await containersOf(p.process.pid!)).length === 0 ? true : undefined,
        );
      const goneMs = Date.now() - interruptedAt;
      console.log(`      interrupted run exited in ${exitMs} ms; all containers gone after ${goneMs} ms`);

      // the journal says interrupted, not failed
      const journal = await promisify(execFile)(process.execPath, [BIN, "journal", "--json", "--data-dir", dataDir], {
        env,
      });
      const [qube] = JSON.parse(journal.stdout) as { state: string }[];
      expect(qube!.state).to.equal("interrupted");

      // each provider's ledger records the job as cancelled (not committed)
      for (const p of devnet.providers) {
        const ledger = new JobLedger(join(p.dataDir, "ledger.sqlite"));
        try {
          const [job] = ledger.recent(1);
          expect(job!.state).to.equal("failed");
          expect(job!.errorCode).to.equal("QUBE_CANCELLED");
        } finally {
          ledger.close();
        }
      }
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }

    // the seats are free: a second run (one seat per provider) is admitted by all three and verified
    const second = await promisify(execFile)(process.execPath, runArgs(dataDir, "echo again > /output/result"), {
      env,
      timeout: 240_000,
    }).catch((error: { code: number; stdout: string; stderr: string }) => error);
    const result = second.stdout
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { event?: string; status?: string; agreeing?: string[] })
      .find((l) => l.event === "result");
    expect(result?.status, second.stderr).to.equal("verified");
    expect(result!.agreeing).to.have.length(3);
  });
});
