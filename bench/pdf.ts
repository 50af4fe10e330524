/**
 * `npm run bench:pdf -- --json [--pages N] [--dpi D] [--runs R]`: converts a generated N-page PDF (default 20)
 * three ways, interleaved R times (default 3), and prints the medians
 * { pages, dpi, runs, localMs, k1Ms, k3Ms, k3Ratio, pagesPerSecondK3, samples }:
 *  - local: the same rendering script in a local ContainerSandbox, then the same PDF rebuild (src/pdf);
 *  - k1 / k3: `convertPdf` on three in-process providers (real libp2p on loopback, real Docker), k = 1 and 3.
 * The providers already have airqube/pdf (nothing is shipped): this measures the conversion, not the image.
 * On a shared machine one sample of each varies by 2x; the medians of interleaved runs are what to compare.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Docker from "dockerode";
import { convertPdf, PDF_IMAGE, renderScript } from "../src/pdf/convert.js";
import { writeImagePdf } from "../src/pdf/pdf-writer.js";
import { readPpm } from "../src/pdf/ppm.js";
import { ProviderAgent } from "../src/provider/agent.js";
import { loadProviderConfig } from "../src/provider/config.js";
import { escapeSuiteGate } from "../src/provider/probe-gate.js";
import { Identity } from "../src/qube/index.js";
import { Libp2pMarket } from "../src/requestor/libp2p-market.js";
import { Requestor } from "../src/requestor/requestor.js";
import { ContainerSandbox } from "../src/sandbox/container-sandbox.js";
import { textPdf } from "../test/pdf/pdf-fixtures.js";
import { argValue, median, round, wantsJson } from "./stats.js";

const pages = argValue("--pages", 20);
const dpi = argValue("--dpi", 100);
const runs = argValue("--runs", 3);
const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));
const probeCache = join(tmpdir(), "airqube-bench-probe-cache");
const dir = tmp("aq-bench-pdf-");
const input = join(dir, "input.pdf");
writeFileSync(input, textPdf({ pages }));

const agents: ProviderAgent[] = [];
let bootstrap = "";
for (let i = 0; i < 3; i++) {
  const config = loadProviderConfig(undefined, {
    dataDir: tmp("aq-bench-provider-"),
    bootstrap: bootstrap ? [bootstrap] : [],
    probeCache,
  });
  const agent = new ProviderAgent(config, { probe: escapeSuiteGate({ cacheDir: probeCache }) });
  const status = await agent.start();
  if (i === 0) bootstrap = status.addrs[0]!;
  agents.push(agent);
}
const identity = Identity.fromSeed(randomBytes(32));
const market = await Libp2pMarket.connect({ identity, bootstrap: [bootstrap] });
const requestor = new Requestor({ market, dataDir: tmp("aq-bench-req-") });

async function local(): Promise<number> {
  const sandbox = new ContainerSandbox();
  const started = performance.now();
  const raw = tmp("aq-bench-local-");
  const inputs = tmp("aq-bench-local-in-");
  writeFileSync(join(inputs, "untrusted.pdf"), textPdf({ pages }));
  const digest = (await new Docker().getImage(PDF_IMAGE).inspect()).Id;
  const result = await sandbox.run({
    image: digest,
    imageDigest: digest,
    command: ["sh", "-c", renderScript(dpi, 200)],
    env: { HOME: "/scratch", XDG_CACHE_HOME: "/scratch" },
    inputDir: inputs,
    outputs: ["/output/pages"],
    outputDir: raw,
    limits: {
      memoryBytes: 512 << 20,
      wallTimeMs: 120_000,
      output: { maxFileBytes: 64 << 20, maxTotalBytes: 1 << 30, maxFiles: 1000 },
    },
  });
  if (result.exitCode !== 0) throw new Error(`local rendering failed: ${result.stderr}`);
  const pagesDir = join(raw, "output", "pages");
  const files = readdirSync(pagesDir).sort((a, b) => Number(a.slice(2, -4)) - Number(b.slice(2, -4)));
  await writeImagePdf(
    join(dir, "local.pdf"),
    (async function* () {
      for (const file of files) yield await readPpm(join(pagesDir, file));
    })(),
    { dpi },
  );
  await sandbox.close();
  return performance.now() - started;
}

async function remote(k: number): Promise<number> {
  const started = performance.now();
  const report = await convertPdf(requestor, identity, input, join(dir, `k${k}.pdf`), {
    redundancy: k,
    dpi,
    workDir: join(dir, `work-${k}-${Date.now()}`),
  });
  if (report.pages !== pages) throw new Error(`expected ${pages} pages, got ${report.pages}`);
  return performance.now() - started;
}

try {
  const samples = { localMs: [] as number[], k1Ms: [] as number[], k3Ms: [] as number[] };
  for (let i = 0; i < runs; i++) {
    samples.localMs.push(round(await local(), 0));
    samples.k1Ms.push(round(await remote(1), 0));
    samples.k3Ms.push(round(await remote(3), 0));
  }
  const [localMs, k1Ms, k3Ms] = [median(samples.localMs), median(samples.k1Ms), median(samples.k3Ms)];
  const result = {
    pages,
    dpi,
    runs,
    localMs: round(localMs, 0),
    k1Ms: round(k1Ms, 0),
    k3Ms: round(k3Ms, 0),
    k3Ratio: round(k3Ms / localMs),
    pagesPerSecondK3: round((pages * 1000) / k3Ms),
    samples,
  };
  if (wantsJson) console.log(JSON.stringify(result));
  else console.log(result);
} finally {
  requestor.close();
  await market.close();
  for (const agent of agents) await agent.stop({ drainMs: 2000 });
}
process.exit(0);
