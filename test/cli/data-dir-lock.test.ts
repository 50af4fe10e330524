/**
 * One process per data directory, as the CLI sees it: a command on a directory another process holds is
 * refused with DATA_DIR_LOCKED at once, before it dials the chain or the network. The chain RPC and the
 * bootstrap peer are one loopback server that counts connections and never answers: a command that took the
 * lock only after connecting would show up there (and hang on it) instead of failing at once.
 */
import { execFile, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { expect } from "chai";
import { type EscrowJob, jobIdOf } from "../../src/chain/job.js";
import { jobToJson } from "../../src/chain/job-json.js";
import { UserError } from "../../src/qube/errors.js";
import { RequestorJournal } from "../../src/requestor/journal.js";
import { Airqube } from "../../src/sdk/airqube.js";
import { type DirLock, LOCK_FILE, lockDataDir } from "../../src/store/dir-lock.js";
import { tmp } from "../helpers/network.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");
// a well-formed peer id (test/vectors/identity.json): nobody has it, nothing may dial it
const PEER = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5";
const ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function airqube(args: string[], home: string): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      // a devnet profile of this machine must not fill in flags; --json makes errors one JSON line on stdout
      { timeout: 60_000, env: { ...process.env, AIRQUBE_HOME: home, AIRQUBE_LOG_LEVEL: "warn" } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr, ms: Math.round(performance.now() - started) });
      },
    );
  });
}

/** The code of the last stdout line's `{ error }` (`--json`), if any. */
function errorCode(outcome: Outcome): string | undefined {
  try {
    return (JSON.parse(outcome.stdout.trim().split("\n").at(-1) ?? "") as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

describe("cli: a data directory another process holds", function () {
  this.timeout(90_000);
  let server: Server;
  let port: number;
  const sockets = new Set<Socket>();
  let connections = 0;
  let home: string;
  let keyFile: string;

  before(async () => {
    server = createServer((socket) => {
      connections++;
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
    home = tmp("aq-lock-home-");
    keyFile = join(home, "payer.key");
    writeFileSync(keyFile, `0x${"11".repeat(32)}\n`, { mode: 0o600 });
  });

  after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it("run, provider start and convert-pdf refuse it with DATA_DIR_LOCKED before any connection", async () => {
    const bootstrap = `/ip4/127.0.0.1/tcp/${port}/p2p/${PEER}`;
    const rpcUrl = `http://127.0.0.1:${port}`;
    const paid = ["--rpc-url", rpcUrl, "--escrow", ESCROW, "--payment-key-file", keyFile];
    const requestorDir = tmp("aq-lock-req-");
    const providerDir = tmp("aq-lock-prov-");
    // held by this process (the real lock), which is another process to the commands below
    const locks: DirLock[] = [lockDataDir(requestorDir, "test holder"), lockDataDir(providerDir, "test holder")];
    try {
      const pdf = join(home, "in.pdf");
      writeFileSync(pdf, "%PDF-1.4\n%%EOF\n");
      const [run, provider, convert] = await Promise.all([
        airqube(
          [
            "run",
            "--json",
            "--bootstrap",
            bootstrap,
            ...paid,
            "--data-dir",
            requestorDir,
            "--image",
            "airqube/busybox:latest",
            "--output",
            tmp("aq-lock-out-"),
            "--",
            "true",
          ],
          home,
        ),
        airqube(
          [
            "provider",
            "start",
            "--json",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            bootstrap,
            "--rpc-url",
            rpcUrl,
            "--escrow",
            ESCROW,
            "--data-dir",
            providerDir,
            "--probe-cache",
            tmp("aq-lock-probes-"),
          ],
          home,
        ),
        airqube(
          [
            "convert-pdf",
            pdf,
            join(home, "out.pdf"),
            "--json",
            "--bootstrap",
            bootstrap,
            ...paid,
            "--data-dir",
            requestorDir,
          ],
          home,
        ),
      ]);
      for (const [name, outcome] of Object.entries({ run, provider, convert })) {
        expect(errorCode(outcome), `${name}: ${outcome.stdout} ${outcome.stderr}`).to.equal("DATA_DIR_LOCKED");
        expect(outcome.code, name).to.equal(125);
        expect(outcome.stdout, name).to.contain(String(process.pid));
      }
      // nothing dialled the chain or the bootstrap peer: the lock came first
      expect(connections).to.equal(0);
      // the whole command, node and CLI start-up included (tsx transpiles the sources when dist/ is stale:
      // 2-11 s on a loaded machine); a late lock hung here on the server until the 60 s kill
      for (const outcome of [run, provider, convert]) expect(outcome.ms).to.be.below(30_000);
      console.log(
        `      refused in ${run.ms} / ${provider.ms} / ${convert.ms} ms (run / provider start / convert-pdf)`,
      );
    } finally {
      for (const lock of locks) lock.release();
    }
  });
  it("the SDK's connect refuses it before dialling the chain or the bootstrap peer", async () => {
    const dataDir = tmp("aq-lock-sdk-");
    // the holder: a live process whose pid is in the lock file, as the real lock writes it
    const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    try {
      writeFileSync(join(dataDir, LOCK_FILE), JSON.stringify({ pid: holder.pid, role: "airqube run" }));
      const aq = new Airqube({
        dataDir,
        bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${PEER}`],
        payments: { rpcUrl: `http://127.0.0.1:${port}`, escrow: ESCROW, keyFile },
      });
      const before = connections;
      const started = performance.now();
      const error = await aq.connect().then(
        () => undefined,
        (e: unknown) => e,
      );
      const ms = performance.now() - started;
      expect(error).to.be.instanceOf(UserError);
      expect((error as UserError).code).to.equal("DATA_DIR_LOCKED");
      expect((error as UserError).message).to.contain(String(holder.pid));
      expect(connections - before).to.equal(0);
      expect(ms).to.be.below(2000);
      await aq.disconnect();
      // its own lock file is untouched: the holder still holds the directory
      expect(JSON.parse(readFileSync(join(dataDir, LOCK_FILE), "utf8")).pid).to.equal(holder.pid);
    } finally {
      holder.kill("SIGKILL");
    }
  });

  it("journal --settle with nothing pending says so (--json: an empty list) without dialling the chain", async () => {
    // two data directories: the two commands run at once, and one process per data directory
    const [plainDir, jsonDir] = [tmp("aq-lock-settle-"), tmp("aq-lock-settle-")];
    const settle = (dataDir: string) => [
      "journal",
      "--settle",
      "--data-dir",
      dataDir,
      "--rpc-url",
      `http://127.0.0.1:${port}`,
    ];
    const paid = ["--escrow", ESCROW, "--payment-key-file", keyFile];
    const before = connections;
    const [plain, json] = await Promise.all([
      airqube([...settle(plainDir), ...paid], home),
      airqube([...settle(jsonDir), ...paid, "--json"], home),
    ]);
    expect(plain.code, plain.stderr).to.equal(0);
    expect(plain.stdout).to.equal(`nothing to settle: no escrow v1 job pending in ${plainDir}\n`);
    expect(plain.stderr).to.equal("");
    expect(json.code, json.stderr).to.equal(0);
    expect(JSON.parse(json.stdout)).to.deep.equal([]);
    expect(connections - before).to.equal(0);
  });

  it("journal --settle settles only the jobs of the escrow version it is given, and names the others", async () => {
    // a journal with one pending v1 job (its id is the hash of its parameters) and nothing of v2, and the reverse
    const job = (qube: string): EscrowJob => ({
      requestor: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
      qubeId: `0x${qube.repeat(64)}`,
      nonce: 1n,
      providers: ["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"],
      price: 10n,
      stake: 1n,
      quorum: 1,
      commitDeadline: 2_000_000_000,
      revealDeadline: 2_000_000_100,
      finalDeadline: 2_000_000_200,
    });
    const [v1Dir, v2Dir] = [tmp("aq-settle-v1-"), tmp("aq-settle-v2-")];
    const write = (dir: string, entry: EscrowJob, jobId: string) => {
      const journal = new RequestorJournal(join(dir, "journal.sqlite"));
      journal.escrowOpened(entry.qubeId.slice(2), jobId, jobToJson(entry), null, new Date());
      journal.close();
    };
    write(v1Dir, job("a"), jobIdOf(job("a")));
    write(v2Dir, job("b"), `0x${"c".repeat(64)}`); // a v2 batch is journalled under the batch's id
    const settle = (dataDir: string, version: string, rpcPort = port) => [
      "journal",
      "--settle",
      "--data-dir",
      dataDir,
      "--rpc-url",
      `http://127.0.0.1:${rpcPort}`,
      "--escrow",
      ESCROW,
      "--payment-key-file",
      keyFile,
      "--escrow-version",
      version,
    ];
    const before = connections;
    const [v1AsV2, v2AsV1] = await Promise.all([
      airqube(settle(v1Dir, "v2"), home),
      airqube(settle(v2Dir, "v1"), home),
    ]);
    expect(v1AsV2.code, v1AsV2.stderr).to.equal(0);
    expect(v1AsV2.stdout).to.equal(`nothing to settle: no escrow v2 job pending in ${v1Dir}\n`);
    expect(v1AsV2.stderr).to.contain("1 escrow job(s) of escrow v1 left pending: settle them with --escrow-version v1");
    expect(v2AsV1.code, v2AsV1.stderr).to.equal(0);
    expect(v2AsV1.stdout).to.equal(`nothing to settle: no escrow v1 job pending in ${v2Dir}\n`);
    expect(v2AsV1.stderr).to.contain("1 escrow job(s) of escrow v2 left pending: settle them with --escrow-version v2");
    expect(connections - before, "no chain is dialled for the other version's jobs").to.equal(0);
    // the job of the version asked for is taken to the chain: here a port nobody listens on, so the command
    // fails at once, saying the chain is unreachable
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const closedPort = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));
    const asked = await airqube([...settle(v1Dir, "v1", closedPort), "--json"], home);
    expect(asked.stderr).not.to.contain("left pending: settle them");
    expect(asked.code, asked.stdout + asked.stderr).to.not.equal(0);
    expect(asked.stdout + asked.stderr).to.match(/CHAIN_/);
  });
});
