/**
 * End to end through the Airqube ExeUnit runtime: golem-js (unmodified) → the loopback yagna
 * (test/golem/http-yagna/) → three simulated providers whose exe-units drive `ya-runtime-airqube`
 * (bin/ya-runtime-airqube.js) as the real exe-unit does (test/golem/runtime/exe-unit.ts) → a fresh Airqube
 * sandbox per process. The unchanged Requestor asks for the `airqube` runtime and verifies k = 3.
 *
 * The providers' offers carry what the runtime's `offer-template` prints after its `test` passed (the escape
 * suite through the runtime's own sandbox, cached by the shared probe cache); the task package is a
 * `docker save` archive whose SHA3-224 is the demand's image hash; its image id is the qube's image digest, the one
 * the runtime accepts and offers.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import Docker from "dockerode";
import { pino } from "pino";
import { GolemMarket } from "../../../src/golem/golem-market.js";
import { RUNTIME_LABEL } from "../../../src/golem/runtime/sweep.js";
import { Requestor } from "../../../src/requestor/requestor.js";
import { PROBE_CACHE } from "../../helpers/network.js";
import { busyboxWithMarker } from "../../images/registry-fixture.js";
import { node, testQube } from "../helpers.js";
import { httpConfig } from "../http/fixtures.js";
import { costOf, type SimRuntime } from "../http-yagna/provider.js";
import { HttpYagna } from "../http-yagna/server.js";
import { ExeUnit } from "./exe-unit.js";

const RUNTIME = [process.execPath, join(import.meta.dirname, "..", "..", "..", "bin", "ya-runtime-airqube.js")];
const LIMITS = { wallTimeMs: 10_000, outputBytes: 1024 * 1024, outputFiles: 10 };

describe("Golem end to end through ya-runtime-airqube (golem-js → loopback yagna → runtime → sandbox) @docker", function () {
  this.timeout(120_000);
  const docker = new Docker();
  let root: string;
  let imageId: string | undefined;
  let yagna: HttpYagna | undefined;
  let market: GolemMarket | undefined;
  let runtimes: SimRuntime[];
  let hash: string;
  let archive: string;

  /**
   * One provider's runtime installation (its own home, so its own key), set up as ya-provider does before it
   * offers a runtime: `test` (the escape suite, through the shared probe cache), then `offer-template`.
   */
  async function installRuntime(name: string): Promise<SimRuntime> {
    const home = join(root, name);
    const workDir = join(home, "offer");
    await mkdir(workDir, { recursive: true });
    await writeFile(join(home, "config.json"), JSON.stringify({ images: [imageId] }));
    const env = {
      ...process.env,
      AIRQUBE_RUNTIME_HOME: home,
      AIRQUBE_RUNTIME_PROBE_CACHE: PROBE_CACHE,
      AIRQUBE_LOG_LEVEL: "warn",
    };
    const unit = new ExeUnit({ runtime: RUNTIME, workDir, env, timeoutMs: 110_000 });
    const tested = await unit.command(["test"]);
    expect(tested.code, tested.stderr).to.equal(0);
    const template = await unit.command(["offer-template"]);
    expect(template.code, template.stderr).to.equal(0);
    const { properties } = JSON.parse(template.stdout) as { properties: Record<string, unknown> };
    expect(properties["golem.runtime.name"]).to.equal("airqube");
    return { command: RUNTIME, env, properties };
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "aq-golem-runtime-e2e-"));
    const image = await busyboxWithMarker(docker, `runtime-e2e-${process.pid}-${Date.now()}`);
    imageId = image.imageId;
    archive = join(root, "task-package.tar");
    await writeFile(archive, image.archive);
    hash = createHash("sha3-224").update(image.archive).digest("hex");
    // the first run fills the probe cache (when this file runs alone), the other two read it
    runtimes = [await installRuntime("provider-1")];
    runtimes.push(...(await Promise.all([installRuntime("provider-2"), installRuntime("provider-3")])));
  });

  after(async () => {
    await market?.close();
    await yagna?.close();
    if (imageId)
      await docker
        .getImage(imageId)
        .remove({ force: true })
        .catch(() => undefined);
    await rm(root, { recursive: true, force: true });
    if (!process.env.AIRQUBE_TEST_PROBE_CACHE) await rm(PROBE_CACHE, { recursive: true, force: true });
  });

  it("verifies k = 3 with the unchanged Requestor, every run a RunProcess of the runtime", async () => {
    const providers = runtimes.map((runtime, i) => ({ id: node(i + 1), runtime }));
    yagna = await HttpYagna.start({
      providers,
      images: { [hash]: { docker: "unused:runtime-loads-the-task-package", volumes: [], archive } },
    });
    const stagingDir = await mkdtemp(join(root, "staging-"));
    market = await GolemMarket.connect(
      httpConfig(yagna, {
        runtime: { name: "airqube" },
        images: { [imageId!]: { hash, url: "http://127.0.0.1:1/task-package.tar" } },
      }),
      { stagingDir, ...(process.env.HY_DEBUG ? { logger: pino({ level: "debug" }, process.stderr) } : {}) },
    );
    const dataDir = await mkdtemp(join(root, "requestor-"));
    const requestor = new Requestor({ market, dataDir });
    try {
      const result = await requestor.run(await testQube({ limits: LIMITS, imageDigest: imageId! }), {
        outputDir: join(dataDir, "out"),
      });
      expect(result.status, JSON.stringify(result.failures)).to.equal("verified");
      expect(new Set(result.agreeing)).to.deep.equal(new Set([node(1), node(2), node(3)]));
      expect((await readFile(join(dataDir, "out", "result.txt"), "utf8")).trim()).to.equal("3");
    } finally {
      requestor.close();
    }
    // each provider ran the qube and packed its outputs in one process through the runtime (a fresh /output per
    // process), and billed the runtime's counters
    expect(yagna.ledger.runs.map((r) => r.argv[3])).to.deep.equal([
      "airqube-run-pack",
      "airqube-run-pack",
      "airqube-run-pack",
    ]);
    await market.close();
    market = undefined;
    const leaks = yagna.leaks();
    expect(leaks, "agreements, activities, allocations or services left open").to.deep.equal([]);
    expect(yagna.ledger.invoicesIssued).to.have.length(3);
    // what each provider billed: the runtime's cpu counter (the sandbox's own CPU time, metered by the host, not
    // the wall time) is above zero and below the activity's duration times the offer's cores (2)
    const billed = yagna.ledger.usageBilled;
    expect(new Set(billed.map((b) => b.provider))).to.deep.equal(new Set([node(1), node(2), node(3)]));
    for (const b of billed) {
      expect(b.cpuSec, JSON.stringify(b)).to.be.above(0);
      expect(b.cpuSec, JSON.stringify(b)).to.be.below(b.durationSec * 2);
    }
    for (const invoice of yagna.ledger.invoicesIssued) {
      const usage = billed.find((b) => b.agreementId === invoice.agreementId)!;
      const provider = providers.find((p) => p.id === usage.provider)!;
      expect(Number(invoice.amount)).to.be.closeTo(costOf(provider, usage), 1e-12);
    }
    // no sandbox left behind by the runtimes
    const left = await docker.listContainers({ all: true, filters: { label: [RUNTIME_LABEL] } });
    expect(left.filter((c) => c.ImageID === imageId)).to.deep.equal([]);
  });
});
