import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { expect } from "chai";
import { convertPdf } from "../../src/pdf/convert.js";
import { writeImagePdf } from "../../src/pdf/pdf-writer.js";
import type { ProviderAgent } from "../../src/provider/agent.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { connectRequestor, startAgents, tmp } from "../helpers/network.js";
import { malformedPdf, textPdf } from "./pdf-fixtures.js";

const BIN = join(import.meta.dirname, "..", "..", "bin", "airqube.js");

/** Page count and producer-visible structure of a PDF, as poppler (inside the airqube/pdf image) reads it. */
async function pdfinfo(file: string): Promise<string> {
  const dir = join(file, "..");
  const { stdout } = await promisify(execFile)("docker", [
    "run",
    "--rm",
    "--network",
    "none",
    "--read-only",
    "--cap-drop",
    "ALL",
    "-v",
    `${dir}:/in:ro`,
    "airqube/pdf:latest",
    "sh",
    "-c",
    `pdfinfo /in/${file.slice(dir.length + 1)}; pdfdetach -list /in/${file.slice(dir.length + 1)}`,
  ]);
  return stdout;
}

describe("convert-pdf: an untrusted PDF rebuilt from pixels that k providers agree on @docker", function () {
  this.timeout(180_000);
  let agents: ProviderAgent[];
  let bootstrap: string;
  let client: Awaited<ReturnType<typeof connectRequestor>>;
  const dir = tmp("aq-convert-");

  before(async () => {
    // the last provider changes its answer: with k = 3 it dissents, and the tie-breaker (the fourth provider)
    // makes the qualified majority (quorum + one per dissent) that outvotes it
    // (it also asks 1000 GLM a qube, so that a run with --max-price 100 GLM never lands on it)
    const liar = { currency: "GLM", start: `1${"0".repeat(21)}`, perSecond: "0" };
    ({ agents, bootstrap } = await startAgents(4, (i) =>
      i === 3 ? { behaviour: "lie", devnet: true, price: liar } : {},
    ));
    client = await connectRequestor(bootstrap);
    // the liar must be among the known offers before the first run prefers it
    for (let i = 0; i < 100 && !agents.every((a) => client.market.offerOf(a.identity.peerId)); i++) {
      await client.market.offers.queryConnected({});
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(agents.every((a) => client.market.offerOf(a.identity.peerId))).to.equal(true);
  });
  after(async () => {
    await client?.close();
    for (const agent of agents ?? []) await agent.stop({ drainMs: 2000 });
  });

  it("k = 3 with a lying provider: the liar is outvoted, scripts and embedded files are gone", async () => {
    const input = join(dir, "active.pdf");
    writeFileSync(input, textPdf({ pages: 3, active: { secret: "TOPSECRET-4242" } }));
    const inputInfo = await pdfinfo(input);
    expect(inputInfo).to.match(/JavaScript:\s+yes/);
    expect(inputInfo).to.include("secret.txt");
    const output = join(dir, "safe.pdf");
    const events: string[] = [];
    const pages: string[] = [];
    const report = await convertPdf(client.requestor, client.identity, input, output, {
      redundancy: 3,
      dpi: 40,
      workDir: join(dir, "work-1"),
      prefer: [agents[3]!.identity.peerId],
      heartbeatMs: 50,
      onProgress: (e) => {
        events.push(e.type === "run" ? e.event.type : `${e.type}`);
        if (e.type === "page") pages.push(`${e.page}/${e.pages} ${e.width}x${e.height}`);
      },
    });
    expect(report.pages).to.equal(3);
    expect(report.agreeing).to.have.length(3);
    expect(report.dissenting).to.deep.equal([agents[3]!.identity.peerId]);
    // one page event per page, in order, after the agreed rendering; heartbeats while the providers worked
    expect(pages).to.deep.equal(["1/3 166x234", "2/3 166x234", "3/3 166x234"]);
    expect(events.indexOf("rendered")).to.be.below(events.indexOf("page"));
    expect(events.slice(0, events.indexOf("decided"))).to.include("heartbeat");
    expect(events).to.include("providerMarked");
    const pdf = readFileSync(output).toString("latin1");
    for (const banned of ["/JavaScript", "/JS", "/EmbeddedFile", "/OpenAction", "/Names", "TOPSECRET", "/Font"])
      expect(pdf, banned).to.not.include(banned);
    const info = await pdfinfo(output);
    expect(info).to.match(/Pages:\s+3\n/);
    expect(info).to.match(/JavaScript:\s+no/);
    expect(info).to.match(/0 embedded files/);
    expect(existsSync(join(dir, "work-1"))).to.equal(false);
  });

  // runs after the first test, whose requestor marked the liar: k = 1 then never lands on it
  it("many pages (k = 1), and a PDF that cannot be rendered fails clearly, writing nothing", async () => {
    const input = join(dir, "long.pdf");
    writeFileSync(input, textPdf({ pages: 24 }));
    const started = Date.now();
    const output = join(dir, "long-safe.pdf");
    const report = await convertPdf(client.requestor, client.identity, input, output, {
      redundancy: 1,
      dpi: 30,
      workDir: join(dir, "work-2"),
    });
    const ms = Date.now() - started;
    expect(report.pages).to.equal(24);
    expect(await pdfinfo(output)).to.match(/Pages:\s+24\n/);
    console.log(`      24 pages at k = 1 in ${ms} ms (${((24 * 1000) / ms).toFixed(1)} pages/s)`);

    // a PDF whose page is an image (a colour gradient, written by our own image writer): rendered, same size
    const pictured = join(dir, "image.pdf");
    const [w, h] = [200, 100];
    const pixels = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) pixels.set([i % w, Math.floor(i / w) * 2, 128], i * 3);
    await writeImagePdf(
      pictured,
      (async function* () {
        yield { width: w, height: h, pixels };
      })(),
      { dpi: 50 },
    );
    const picturedSafe = join(dir, "image-safe.pdf");
    const imageReport = await convertPdf(client.requestor, client.identity, pictured, picturedSafe, {
      redundancy: 1,
      dpi: 50,
      workDir: join(dir, "work-5"),
    });
    expect(imageReport.pages).to.equal(1);
    expect(await pdfinfo(picturedSafe)).to.match(/Page size:\s+288 x 144 pts/);

    const bad = join(dir, "bad.pdf");
    writeFileSync(bad, malformedPdf());
    const refused = join(dir, "bad-safe.pdf");
    const error = await convertPdf(client.requestor, client.identity, bad, refused, {
      redundancy: 1,
      workDir: join(dir, "work-3"),
    }).catch((e: unknown) => e);
    expect(error).to.be.instanceOf(AirqubeError);
    expect((error as AirqubeError).code).to.equal("PDF_UNRENDERABLE");
    expect((error as AirqubeError).details).to.match(/xref|trailer|Syntax/i);
    expect(existsSync(refused)).to.equal(false);
    expect(readdirSync(dir).filter((name) => name.includes("partial"))).to.deep.equal([]);
  });

  it("the command line, with --json and as a user reads it; a PDF over --max-pages is refused clearly", async () => {
    const input = join(dir, "cli.pdf");
    writeFileSync(input, textPdf({ pages: 2 }));
    const output = join(dir, "cli-safe.pdf");
    const four = join(dir, "cli-four.pdf");
    writeFileSync(four, textPdf({ pages: 4 }));
    // two requestors at once (each its own home and data directory): the second start overlaps the first
    const env = () => ({ ...process.env, AIRQUBE_LOG_LEVEL: "warn", AIRQUBE_HOME: tmp("aq-convert-home-") });
    const common = ["convert-pdf", "--bootstrap", bootstrap, "--dpi", "30", "--no-ship"];
    const started = Date.now();
    const [json, plain] = await Promise.all([
      promisify(execFile)(process.execPath, [BIN, ...common, "--redundancy", "3", "--json", input, output], {
        env: env(),
      }),
      // stderr not a terminal: plain lines; k = 1 on an honest provider (the liar's price is over --max-price)
      promisify(execFile)(
        process.execPath,
        [
          BIN,
          ...common,
          "--redundancy",
          "1",
          "--max-price",
          `1${"0".repeat(20)}`,
          four,
          join(dir, "cli-four-safe.pdf"),
        ],
        { env: env() },
      ),
    ]);
    console.log(`      two command lines at once (k = 3 --json, k = 1 plain) in ${Date.now() - started} ms`);
    const lines = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { event?: string; page?: number; pages?: number; agreeing?: string[] });
    expect(lines.filter((l) => l.event === "page").map((l) => l.page)).to.deep.equal([1, 2]);
    const result = lines.at(-1)!;
    expect(result).to.include({ event: "result", pages: 2 });
    expect(existsSync(output)).to.equal(true);
    // as a user reads it: one line per page, in order, page/total
    const pageLines = plain.stderr.split("\n").filter((line) => /^ {2}page \d+\/\d+/.test(line));
    expect(pageLines.map((line) => /page (\d+\/\d+)/.exec(line)![1])).to.deep.equal(["1/4", "2/4", "3/4", "4/4"]);
    expect(plain.stderr).to.include("rendered 4 pages; 1 provider agrees bitwise");
    expect(plain.stdout).to.match(/^SAFE: .*cli-four-safe\.pdf \(4 pages, /);

    // over --max-pages: refused with its own code, nothing written (through the library: one CLI start is enough)
    const tooLong = join(dir, "long-refused.pdf");
    const refused = await convertPdf(client.requestor, client.identity, input, tooLong, {
      redundancy: 1,
      maxPages: 1,
      workDir: join(dir, "work-4"),
    }).catch((e: unknown) => e);
    expect((refused as AirqubeError).code).to.equal("PDF_TOO_MANY_PAGES");
    expect(existsSync(tooLong)).to.equal(false);
  });
});
