import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "chai";
import { Devnet } from "../../src/devnet/devnet.js";
import { JobLedger } from "../../src/provider/ledger.js";
import type { RunEvent } from "../../src/requestor/requestor.js";
import { connectRequestor, PROBE_CACHE, tmp } from "../helpers/network.js";

describe("devnet: provider processes on 127.0.0.1 @docker", function () {
  this.timeout(180_000);
  let devnet: Devnet | undefined;
  afterEach(async () => {
    await devnet?.stop(3000);
    devnet = undefined;
  });

  it("replaces a provider killed with SIGKILL mid-qube, and the qube completes", async () => {
    devnet = await Devnet.start({ providers: 4, probeCache: PROBE_CACHE });
    const client = await connectRequestor(devnet.bootstrap);
    try {
      const qube = await client.seal({
        command: ["sh", "-c", "sleep 2; echo done > /output/result"],
        redundancy: { mode: "fixed", k: 3, quorum: 2 },
      });
      let killed: string | undefined;
      const events: RunEvent[] = [];
      const result = await client.requestor.run(qube, {
        outputDir: tmp("aq-out-"),
        onProgress: (event) => {
          events.push(event);
          if (event.type === "qubeStarted" && !killed) {
            killed = event.provider;
            devnet!.providers.find((p) => p.peerId === killed)!.process.kill("SIGKILL");
          }
        },
      });
      expect(result.status).to.equal("verified");
      expect(result.agreeing).to.have.length(3);
      expect(result.agreeing).not.to.include(killed);
      expect(result.failures.map((f) => f.provider)).to.deep.equal([killed]);
      expect(events.filter((e) => e.type === "qubeSent")).to.have.length(4);
    } finally {
      await client.close();
    }
  });

  it("drains a running qube on SIGTERM, then exits, and its ledger records the job", async () => {
    devnet = await Devnet.start({ providers: 1, probeCache: PROBE_CACHE });
    const client = await connectRequestor(devnet.bootstrap);
    const provider = devnet.providers[0]!;
    try {
      const qube = await client.seal({
        command: ["sh", "-c", "sleep 2; echo drained > /output/result"],
        redundancy: { mode: "fixed", k: 1, quorum: 1 },
      });
      const outputDir = tmp("aq-out-");
      const exited = new Promise<number | null>((resolve) => provider.process.once("exit", (code) => resolve(code)));
      const result = await client.requestor.run(qube, {
        outputDir,
        onProgress: (event) => {
          if (event.type === "qubeStarted") provider.process.kill("SIGTERM");
        },
      });
      expect(result.status).to.equal("verified");
      expect((await readFile(join(outputDir, "result"), "utf8")).trim()).to.equal("drained");
      expect(await exited).to.equal(0);
      const ledger = new JobLedger(join(provider.dataDir, "ledger.sqlite"));
      expect(ledger.summary().byState).to.deep.equal({ revealed: 1 });
      ledger.close();
    } finally {
      await client.close();
    }
  });
});
