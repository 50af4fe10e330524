import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { expect } from "chai";
import { writeImagePdf } from "../../src/pdf/pdf-writer.js";
import { parsePpmHeader, type RgbPage, readPpm } from "../../src/pdf/ppm.js";
import { PeerError } from "../../src/qube/errors.js";
import { tmp } from "../helpers/network.js";

const ppm = (width: number, height: number, fill = 7) =>
  Buffer.concat([Buffer.from(`P6\n${width} ${height}\n255\n`), Buffer.alloc(width * height * 3, fill)]);

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(PeerError);
    return (error as PeerError).code;
  }
  throw new Error("expected a refusal");
}

describe("pdf: page bitmaps are read strictly", () => {
  it("reads pdftoppm's binary PPM and refuses anything else before reading pixels", async () => {
    const dir = tmp("aq-ppm-");
    const at = (name: string, data: Buffer) => {
      writeFileSync(join(dir, name), data);
      return join(dir, name);
    };
    const page = await readPpm(at("ok.ppm", ppm(3, 2, 9)));
    expect(page).to.deep.include({ width: 3, height: 2 });
    expect(page.pixels.equals(Buffer.alloc(18, 9))).to.equal(true);
    expect(await code(readPpm(at("trailing.ppm", Buffer.concat([ppm(3, 2), Buffer.from("x")]))))).to.equal(
      "PAGE_INVALID",
    );
    expect(await code(readPpm(at("short.ppm", ppm(3, 2).subarray(0, 20))))).to.equal("PAGE_INVALID");
    expect(await code(readPpm(at("comment.ppm", Buffer.from("P6\n# hi\n1 1\n255\nabc"))))).to.equal("PAGE_INVALID");
    expect(await code(readPpm(at("ascii.ppm", Buffer.from("P3\n1 1\n255\n1 2 3\n"))))).to.equal("PAGE_INVALID");
    expect(await code(readPpm(at("deep.ppm", Buffer.from("P6\n1 1\n65535\nabcdef"))))).to.equal("PAGE_INVALID");
    // a header claiming a huge page is refused from the header alone (the file is tiny)
    expect(await code(readPpm(at("huge.ppm", Buffer.from("P6\n99999 99999\n255\n"))))).to.equal("PAGE_TOO_LARGE");
    expect(() => parsePpmHeader(Buffer.from("P6\n9000 9000\n255\n"))).to.throw(PeerError, /larger than allowed/);
  });
});

describe("pdf: the trusted PDF writer", () => {
  it("writes one image XObject per page with a correct cross-reference table", async () => {
    const dir = tmp("aq-pdfw-");
    const out = join(dir, "safe.pdf");
    const pages: RgbPage[] = [
      { width: 4, height: 3, pixels: Buffer.alloc(36, 200) },
      { width: 2, height: 2, pixels: Buffer.alloc(12, 10) },
    ];
    const seen: number[] = [];
    const count = await writeImagePdf(
      out,
      (async function* () {
        yield* pages;
      })(),
      { dpi: 72, onPage: (i) => seen.push(i) },
    );
    expect(count).to.equal(2);
    expect(seen).to.deep.equal([1, 2]);
    const pdf = readFileSync(out);
    const text = pdf.toString("latin1");
    expect(text.startsWith("%PDF-1.4\n")).to.equal(true);
    expect(text.match(/\/Type \/Page /g)).to.have.length(2);
    expect(text.match(/\/Subtype \/Image/g)).to.have.length(2);
    expect(text).to.include("/MediaBox [0 0 4 3]");
    // every xref offset points at its object
    const startxref = Number(/startxref\n(\d+)\n%%EOF\n$/.exec(text)![1]);
    const rows = text
      .slice(startxref)
      .split("\n")
      .slice(3, 3 + 8);
    rows.forEach((row, i) => {
      const offset = Number(row.slice(0, 10));
      expect(text.slice(offset, offset + 10)).to.match(new RegExp(`^${i + 1} 0 obj`));
    });
    // the first image's stream inflates to its pixels
    const header = text.indexOf("/Width 4");
    const start = text.indexOf("stream\n", header) + 7;
    const length = Number(/\/Length (\d+)/.exec(text.slice(header))![1]);
    expect(inflateSync(pdf.subarray(start, start + length)).equals(pages[0]!.pixels)).to.equal(true);
    expect(readdirSync(dir)).to.deep.equal(["safe.pdf"]);
  });

  it("leaves no file at all when a page fails midway", async () => {
    const dir = tmp("aq-pdfw-");
    const out = join(dir, "safe.pdf");
    const failing = (async function* () {
      yield { width: 1, height: 1, pixels: Buffer.alloc(3) };
      throw new PeerError("PAGE_INVALID", "bad page");
    })();
    expect(await code(writeImagePdf(out, failing, { dpi: 72 }))).to.equal("PAGE_INVALID");
    expect(existsSync(out)).to.equal(false);
    expect(readdirSync(dir)).to.deep.equal([]);
  });
});
