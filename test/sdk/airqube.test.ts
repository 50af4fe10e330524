/**
 * The high-level API without a network: argument validation, connection errors, events, inputs as files and
 * bytes, no consensus, abort. The market is a small hand-written fake of the `ComputeMarket` port whose
 * providers "run" a qube by writing what the test tells them to.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { expect } from "chai";
import { Airqube, type AirqubeEvent, NoConsensusError, type QubeDescription, UserError } from "../../src/index.js";
import { buildOutputManifest, Identity, outputsRootOf, PeerError, TimeoutError } from "../../src/qube/index.js";
import type { ComputeMarket, Dispatch, ProviderCandidate, SealedQube } from "../../src/requestor/api.js";
import { sealQube } from "../../src/requestor/draft.js";
import { RequestorJournal } from "../../src/requestor/journal.js";
import { MemoryReputation } from "../../src/requestor/reputation.js";
import { Requestor } from "../../src/requestor/requestor.js";
import { tmp } from "../helpers/network.js";

const DIGEST = `sha256:${"ab".repeat(32)}`;
const base: QubeDescription = { image: "airqube/busybox:latest", imageDigest: DIGEST, command: ["true"] };

/** What one fake provider writes as `result` (from the qube's inputs), and how long it takes. */
interface FakeProvider {
  id: string;
  answer: (inputs: Map<string, Buffer>) => string;
  delayMs?: number;
  /** The reveal fails with this error instead of answering. */
  revealError?: () => Error;
}

class FakeMarket implements ComputeMarket {
  readonly name = "fake";
  closed = false;
  cancelled: string[] = [];
  /** Providers whose wait for a commitment the run's signal stopped. */
  stopped: string[] = [];
  constructor(private readonly providers: FakeProvider[]) {}

  async findProviders(): Promise<ProviderCandidate[]> {
    return this.providers.map((p) => ({ id: p.id, tiers: ["container"], price: 0n }));
  }

  async dispatch(
    candidate: ProviderCandidate,
    qube: SealedQube,
    options: { signal?: AbortSignal; onSent?: (p: string) => void; onStarted?: (p: string) => void } = {},
  ): Promise<Dispatch> {
    const provider = this.providers.find((p) => p.id === candidate.id)!;
    const inputs = new Map<string, Buffer>();
    for (const [path, source] of qube.inputs) inputs.set(path, await readFile(source));
    options.onSent?.(provider.id);
    options.onStarted?.(provider.id);
    const market = this;
    return {
      provider: candidate,
      async awaitCommitment({ signal } = {}) {
        try {
          await delay(provider.delayMs ?? 1, undefined, signal ? { signal } : {});
        } catch (error) {
          market.stopped.push(provider.id);
          throw error;
        }
        return `0x${"00".repeat(32)}`;
      },
      async reveal(outputDir) {
        if (provider.revealError) throw provider.revealError();
        const text = provider.answer(inputs);
        await mkdir(outputDir, { recursive: true });
        await writeFile(join(outputDir, "result"), text);
        const sha256 = createHash("sha256").update(text).digest("hex");
        const files = [{ path: "result", size: Buffer.byteLength(text), sha256 }];
        const manifest = buildOutputManifest(files, qube.spec.spec);
        return {
          provider: provider.id,
          outputsRoot: outputsRootOf(manifest),
          manifest,
          files,
          outputDir,
          exitCode: 0,
          stdout: `stdout of ${provider.id}`,
          stderr: "",
        };
      },
      abort() {},
      async cancel() {
        market.cancelled.push(provider.id);
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

const honest = (id: string, delayMs = 1): FakeProvider => ({
  id,
  delayMs,
  answer: (inputs) => [...inputs].map(([p, b]) => `${p}=${b.toString()}`).join(";"),
});

/**
 * Runs `work` with the system temp dir pointed at a fresh private directory (returned), so that what the code
 * under test stages there can be checked without seeing other processes' files.
 */
async function inPrivateTmp(work: () => Promise<void>): Promise<string> {
  const dir = tmp("aq-sdk-tmp-");
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  try {
    await work();
  } finally {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
  }
  return dir;
}

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string): Promise<UserError> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    expect(error, String(error)).to.have.property("code", code);
    return error as UserError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe("sdk: the Airqube high-level API", () => {
  describe("argument validation (before anything is sealed or sent)", () => {
    const aq = new Airqube({ market: new FakeMarket([]), dataDir: tmp("aq-sdk-") });
    before(() => aq.connect());
    after(() => aq.disconnect());

    const cases: [string, Partial<QubeDescription> & Record<string, unknown>, RegExp][] = [
      ["an empty command", { command: [] }, /command/],
      ["an input path escaping /input", { inputs: { "../etc/passwd": { data: "x" } } }, /inputs/],
      ["an absolute output path", { outputs: ["/output/x"] }, /outputs/],
      ["an environment name that is not a variable", { env: { "A B": "1" } }, /env/],
      ["a quorum above k", { redundancy: { k: 2, quorum: 3 } }, /quorum/],
      ["k = 0", { redundancy: 0 }, /redundancy/],
      ["a timeout under a second", { limits: { timeoutMs: 10 } }, /limits\.timeoutMs/],
      ["an unknown field", { imagee: "x" }, /imagee|Unrecognized/],
      ["a malformed digest", { imageDigest: "sha256:xyz" }, /imageDigest/],
      ["an input that is neither a file nor data", { inputs: { a: { url: "http://x" } as never } }, /inputs/],
    ];
    for (const [what, change, field] of cases)
      it(`refuses ${what} with QUBE_INVALID naming the field`, async () => {
        const error = await expectCode(aq.run({ ...base, ...change } as QubeDescription), "QUBE_INVALID");
        expect(`${error.message} ${error.details ?? ""}`).to.match(field);
      });

    it("refuses inline inputs beyond 64 MiB (files are streamed, bytes are held in memory)", async () => {
      const big = new Uint8Array(65 * 1024 * 1024);
      const error = await expectCode(aq.run({ ...base, inputs: { a: { data: big } } }), "QUBE_INVALID");
      expect(error.details).to.contain("{ file }");
    });

    it("refuses an input file that does not exist, and leaves no staged bytes behind", async () => {
      const staging = await inPrivateTmp(async () => {
        const error = await expectCode(
          aq.run({ ...base, inputs: { a: { data: "x" }, b: { file: "/nonexistent/file" } } }),
          "INPUT_UNREADABLE",
        );
        expect(error.details).to.contain("/nonexistent/file");
      });
      expect(await readdir(staging)).to.deep.equal([]);
    });
  });

  describe("connection", () => {
    it("refuses two markets at once, and payments on Golem", () => {
      expect(() => new Airqube({ bootstrap: ["/ip4/127.0.0.1/tcp/1"], golem: true }))
        .to.throw(UserError)
        .with.property("code", "MARKET_AMBIGUOUS");
      expect(() => new Airqube({ golem: true, payments: { rpcUrl: "http://127.0.0.1:1", escrow: "0x", keyFile: "k" } }))
        .to.throw(UserError)
        .with.property("code", "PAYMENTS_UNSUPPORTED");
    });

    it("run() before connect() is NOT_CONNECTED; connect() without a market is BOOTSTRAP_MISSING", async () => {
      const aq = new Airqube({ dataDir: tmp("aq-sdk-") });
      await expectCode(aq.run(base), "NOT_CONNECTED");
      await expectCode(aq.connect(), "BOOTSTRAP_MISSING");
    });

    it("devnet: true without a running devnet is DEVNET_NOT_RUNNING, naming where it looked", async () => {
      const home = tmp("aq-sdk-home-");
      const error = await expectCode(new Airqube({ devnet: { home } }).connect(), "DEVNET_NOT_RUNNING");
      expect(error.details).to.contain(home);
    });

    it("bad payment settings fail connect() before any market is reached", async () => {
      const market = new FakeMarket([]);
      const dataDir = tmp("aq-sdk-");
      await expectCode(
        new Airqube({
          market,
          dataDir,
          payments: { rpcUrl: "http://203.0.113.1:8545", escrow: `0x${"11".repeat(20)}`, privateKey: "11".repeat(32) },
        }).connect(),
        "RPC_URL_NOT_LOOPBACK",
      );
      await expectCode(
        new Airqube({
          market,
          dataDir,
          payments: { rpcUrl: "http://127.0.0.1:1", escrow: `0x${"11".repeat(20)}`, privateKey: "not a key" },
        }).connect(),
        "PAYMENT_KEY_INVALID",
      );
      await expectCode(
        new Airqube({ market, dataDir, payments: { rpcUrl: "http://127.0.0.1:1", escrow: "0x12" } }).connect(),
        "PAYMENT_CONFIG_INVALID",
      );
    });

    it("a second Airqube on the same data directory is refused (DATA_DIR_LOCKED)", async () => {
      const dataDir = tmp("aq-sdk-");
      const first = new Airqube({ market: new FakeMarket([]), dataDir });
      await first.connect();
      try {
        await expectCode(new Airqube({ market: new FakeMarket([]), dataDir }).connect(), "DATA_DIR_LOCKED");
      } finally {
        await first.disconnect();
      }
      // released on disconnect
      const again = new Airqube({ market: new FakeMarket([]), dataDir });
      await again.connect();
      await again.disconnect();
    });
  });

  describe("runs", () => {
    it("the Requestor drives only the ports it is given: an in-memory journal and reputation record the run", async () => {
      const dataDir = tmp("aq-ports-");
      const journal = new RequestorJournal(":memory:");
      const reputation = new MemoryReputation();
      const requestor = new Requestor({
        market: new FakeMarket([honest("p1"), honest("p2"), honest("p3")]),
        dataDir,
        journal,
        reputation,
      });
      try {
        const qube = await sealQube(
          { image: "airqube/busybox:latest", imageDigest: DIGEST, command: ["true"], outputs: ["result"] },
          Identity.fromSeed(Buffer.alloc(32, 9)),
        );
        const report = await requestor.run(qube, { outputDir: tmp("aq-ports-out-") });
        expect(report.status).to.equal("verified");
        expect(journal.list().map((q) => [q.qubeId, q.state])).to.deep.equal([[report.qubeId, "verified"]]);
        for (const p of ["p1", "p2", "p3"]) expect(reputation.get(p).consecutiveValid, p).to.equal(1);
        expect(await readdir(join(dataDir, "qubes")), "no staging left, not even the qube's directory").to.deep.equal(
          [],
        );
        expect(existsSync(join(dataDir, "journal.sqlite")), "no journal of its own").to.equal(false);
        expect(existsSync(join(dataDir, "reputation.sqlite")), "no reputation store of its own").to.equal(false);
      } finally {
        requestor.close();
      }
    });

    it("a market that fails to find providers: the run is journalled as failed and leaves no staging", async () => {
      const dataDir = tmp("aq-nofind-");
      const journal = new RequestorJournal(":memory:");
      const market = new FakeMarket([honest("p1")]);
      market.findProviders = async () => {
        throw new PeerError("NETWORK_DOWN", "no peer answered");
      };
      const requestor = new Requestor({ market, dataDir, journal, reputation: new MemoryReputation() });
      try {
        const qube = await sealQube(
          { image: "airqube/busybox:latest", imageDigest: DIGEST, command: ["true"], outputs: ["result"] },
          Identity.fromSeed(Buffer.alloc(32, 9)),
        );
        await expectCode(requestor.run(qube, { outputDir: tmp("aq-nofind-out-") }), "NETWORK_DOWN");
        expect(journal.list().map((q) => q.state)).to.deep.equal(["failed"]);
        expect(await readdir(join(dataDir, "qubes"))).to.deep.equal([]);
      } finally {
        requestor.close();
      }
    });

    it("a reveal lost in transport is not held against its provider; an invalid one is marked with evidence", async () => {
      const cases: { error: () => Error; marked: boolean }[] = [
        { error: () => new PeerError("STREAM_CLOSED", "The peer closed the stream early"), marked: false },
        { error: () => new TimeoutError("STREAM_TIMEOUT", "The peer did not answer in time"), marked: false },
        { error: () => new PeerError("OUTPUTS_MISMATCH", "not the signed root"), marked: true },
      ];
      for (const { error, marked } of cases) {
        const journal = new RequestorJournal(":memory:");
        const reputation = new MemoryReputation();
        const requestor = new Requestor({
          market: new FakeMarket([honest("p1"), { ...honest("x"), revealError: error }, honest("p2"), honest("p3")]),
          dataDir: tmp("aq-lost-"),
          journal,
          reputation,
        });
        const events: { type: string; provider?: string }[] = [];
        const what = error().message;
        try {
          const qube = await sealQube(
            {
              image: "airqube/busybox:latest",
              imageDigest: DIGEST,
              command: ["true"],
              outputs: ["result"],
              redundancy: { mode: "fixed", k: 3, quorum: 2 },
            },
            Identity.fromSeed(Buffer.alloc(32, 9)),
          );
          const report = await requestor.run(qube, {
            outputDir: tmp("aq-lost-out-"),
            // x runs in the first round; its failed reveal counts against consensus, so p3 breaks the tie
            prefer: ["p1", "x", "p2"],
            onProgress: (e) => events.push(e as { type: string; provider?: string }),
          });
          expect(report.status, what).to.equal("verified");
          expect([...report.agreeing].sort(), what).to.deep.equal(["p1", "p2", "p3"]);
          expect(
            report.failures.map((f) => f.provider),
            what,
          ).to.include("x");
          const markedNow = events.filter((e) => e.type === "providerMarked").map((e) => e.provider);
          expect(markedNow, what).to.deep.equal(marked ? ["x"] : []);
          expect(reputation.get("x").wrong, what).to.equal(marked ? 1 : 0);
          expect(reputation.isExcluded("x", new Date()), what).to.equal(marked);
          expect(
            journal.evidenceFor(report.qubeId).map((e) => e.provider),
            what,
          ).to.deep.equal(marked ? ["x"] : []);
        } finally {
          requestor.close();
        }
      }
    });

    it("runs on k providers, inputs as bytes and files, and returns the agreed outputs with evidence and events", async () => {
      const market = new FakeMarket([honest("p1"), honest("p2"), honest("p3")]);
      const aq = new Airqube({ market, dataDir: tmp("aq-sdk-") });
      await aq.connect();
      const file = join(tmp("aq-sdk-in-"), "b.txt");
      await writeFile(file, "from a file");
      const events: AirqubeEvent[] = [];
      const global: string[] = [];
      aq.events.on("event", (e) => global.push(`${e.type}:${e.qubeId?.slice(0, 8)}`));
      const outputDir = tmp("aq-sdk-out-");
      let result: Awaited<ReturnType<typeof aq.run>> | undefined;
      const staging = await inPrivateTmp(async () => {
        result = await aq.run(
          { ...base, inputs: { "a.txt": { data: "bytes" }, "dir/b.txt": { file } }, redundancy: 3, outputDir },
          { onEvent: (e) => events.push(e) },
        );
      });
      if (!result) throw new Error("no result");
      await aq.disconnect();
      expect(result.verified).to.equal(true);
      expect(result.ok).to.equal(true);
      expect(result.outputDir).to.equal(outputDir);
      expect(await result.readText("result")).to.equal("a.txt=bytes;dir/b.txt=from a file");
      expect(result.outputs.map((o) => o.path)).to.deep.equal(["result"]);
      expect(result.evidence.agreeing).to.have.length(3);
      expect(result.evidence.dissenting).to.deep.equal([]);
      expect(result.outcome).to.include({ kind: "exited", exitCode: 0 });
      expect(events[0]).to.deep.equal({ type: "qubeSealed", qubeId: result.qubeId });
      expect(events.map((e) => e.type)).to.include.members(["qubeSent", "qubeCommitted", "resultReceived", "decided"]);
      expect(global).to.have.length(events.length);
      expect(global[0]).to.equal(`qubeSealed:${result.qubeId.slice(0, 8)}`);
      await expectCode(result.read("nope"), "OUTPUT_UNKNOWN");
      expect(market.closed).to.equal(false); // a market the caller gave stays the caller's
      // no staged input bytes left behind
      expect(await readdir(staging)).to.deep.equal([]);
    });

    it("outvotes a dissenting provider and names it", async () => {
      const market = new FakeMarket([honest("p1"), { id: "liar", answer: () => "42" }, honest("p3"), honest("p4")]);
      const aq = new Airqube({ market, dataDir: tmp("aq-sdk-") });
      await aq.connect();
      const events: string[] = [];
      // the liar runs in the first round; the dissent brings in a tie-breaker (p4)
      const result = await aq.run(
        { ...base, redundancy: 3, inputs: { x: { data: "1" } } },
        { prefer: ["liar", "p1", "p3"], onEvent: (e) => events.push(e.type) },
      );
      await aq.disconnect();
      expect(result.evidence.dissenting).to.deep.equal(["liar"]);
      expect(result.evidence.agreeing.sort()).to.deep.equal(["p1", "p3", "p4"]);
      expect(events).to.include.members(["tieBreakerDispatched", "providerMarked"]);
      expect(await result.readText("result")).to.equal("x=1");
    });

    it("rejects with NoConsensusError (and removes its own output directory) when no quorum agrees", async () => {
      const market = new FakeMarket([
        { id: "a", answer: () => "1" },
        { id: "b", answer: () => "2" },
        { id: "c", answer: () => "3" },
      ]);
      const aq = new Airqube({ market, dataDir: tmp("aq-sdk-") });
      await aq.connect();
      const staging = await inPrivateTmp(async () => {
        try {
          await aq.run({ ...base, redundancy: { k: 3, quorum: 2 } });
          expect.fail("no consensus must reject");
        } catch (error) {
          expect(error).to.be.instanceOf(NoConsensusError);
          expect((error as NoConsensusError).report.answers).to.have.length(3);
        } finally {
          await aq.disconnect();
        }
      });
      expect(await readdir(staging)).to.deep.equal([]);
    });

    it("an abort stops the run, tells the providers, and throws the signal's reason", async () => {
      const market = new FakeMarket([honest("p1", 5000), honest("p2", 5000), honest("p3", 5000)]);
      const aq = new Airqube({ market, dataDir: tmp("aq-sdk-") });
      await aq.connect();
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(new Error("user pressed Ctrl-C")), 200);
      try {
        await aq.run({ ...base, redundancy: 3 }, { signal: controller.signal });
        expect.fail("an aborted run must reject");
      } catch (error) {
        expect(String(error)).to.contain("Ctrl-C");
      } finally {
        await aq.disconnect();
      }
      expect(Date.now() - started).to.be.below(4000);
      // none had committed: each wait for a commitment was stopped by the signal
      expect([...market.stopped, ...market.cancelled].sort()).to.deep.equal(["p1", "p2", "p3"]);
    });

    it("runMany settles each qube on its own, at most `concurrency` at a time", async () => {
      const market = new FakeMarket([honest("p1", 50), honest("p2", 50), honest("p3", 50)]);
      const aq = new Airqube({ market, dataDir: tmp("aq-sdk-") });
      await aq.connect();
      const results = await aq.runMany(
        [
          { ...base, inputs: { n: { data: "1" } } },
          { ...base, inputs: { n: { data: "2" } } },
          { ...base, redundancy: { k: 3, quorum: 3 }, inputs: { n: { data: "3" } } },
        ],
        { concurrency: 2 },
      );
      await aq.disconnect();
      expect(results.map((r) => r.status)).to.deep.equal(["fulfilled", "fulfilled", "fulfilled"]);
      const texts = await Promise.all(
        results.map((r) => (r.status === "fulfilled" ? r.value.readText("result") : Promise.resolve(""))),
      );
      expect(texts).to.deep.equal(["n=1", "n=2", "n=3"]);
      await expectCode(aq.runMany([base], { concurrency: 0 }), "QUBE_INVALID");
    });
  });
});
