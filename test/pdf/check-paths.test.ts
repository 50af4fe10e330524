import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "chai";
import { checkConvertPaths } from "../../src/pdf/convert.js";
import { writeImagePdf } from "../../src/pdf/pdf-writer.js";
import { AirqubeError } from "../../src/qube/errors.js";
import { tmp } from "../helpers/network.js";
import { textPdf } from "./pdf-fixtures.js";

async function refusal(promise: Promise<unknown>): Promise<AirqubeError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).to.be.instanceOf(AirqubeError);
  return error as AirqubeError;
}

describe("convert-pdf: what is checked before anything is sent or paid for", () => {
  const dir = tmp("aq-convert-paths-");
  const pdf = join(dir, "ok.pdf");
  writeFileSync(pdf, textPdf({ pages: 1 }));

  it("a readable PDF and a writable output pass; junk before the header is allowed within 1 KiB", async () => {
    await checkConvertPaths(pdf, join(dir, "safe.pdf"));
    const junk = join(dir, "junk-first.pdf");
    writeFileSync(junk, Buffer.concat([Buffer.alloc(900, 0x41), textPdf({ pages: 1 })]));
    await checkConvertPaths(junk, join(dir, "safe.pdf"));
  });

  it("a missing input, a file that is not a PDF, an unwritable output: typed user errors", async () => {
    expect((await refusal(checkConvertPaths(join(dir, "missing.pdf"), join(dir, "o.pdf")))).code).to.equal(
      "PDF_UNREADABLE",
    );
    const random = join(dir, "random.pdf");
    writeFileSync(random, Buffer.alloc(5000, 0x25)); // '%' but never '%PDF-'
    const notPdf = await refusal(checkConvertPaths(random, join(dir, "o.pdf")));
    expect(notPdf.code).to.equal("PDF_UNRENDERABLE");
    expect(notPdf.details).to.include("nothing was sent");
    const late = join(dir, "late-header.pdf");
    writeFileSync(late, Buffer.concat([Buffer.alloc(1024, 0x41), textPdf({ pages: 1 })]));
    expect((await refusal(checkConvertPaths(late, join(dir, "o.pdf")))).code).to.equal("PDF_UNRENDERABLE");
    const noDir = await refusal(checkConvertPaths(pdf, join(dir, "no", "such", "o.pdf")));
    expect([noDir.fault, noDir.code]).to.deep.equal(["user", "OUTPUT_UNWRITABLE"]);
    mkdirSync(join(dir, "a-dir"));
    expect((await refusal(checkConvertPaths(pdf, join(dir, "a-dir")))).code).to.equal("OUTPUT_UNWRITABLE");
    if (process.getuid?.() !== 0) {
      // root writes anywhere: the mode is only a refusal for other users
      chmodSync(join(dir, "a-dir"), 0o500);
      expect((await refusal(checkConvertPaths(pdf, join(dir, "a-dir", "o.pdf")))).code).to.equal("OUTPUT_UNWRITABLE");
    }
  });

  it("the writer's own file-system failure is a typed platform error, not an internal one", async () => {
    const error = await refusal(
      writeImagePdf(
        join(dir, "gone", "safe.pdf"),
        (async function* () {
          yield { width: 1, height: 1, pixels: Buffer.alloc(3) };
        })(),
        { dpi: 72 },
      ),
    );
    expect([error.fault, error.code]).to.deep.equal(["platform", "OUTPUT_WRITE_FAILED"]);
    expect(error.details).to.include("ENOENT");
  });
});
