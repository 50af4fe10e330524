/**
 * A minimal PDF writer of our own, for rebuilding a document from pixels: one page per bitmap, each page one
 * RGB image XObject (8 bits per component, FlateDecode through node:zlib) drawn over the whole page, nothing
 * else: no fonts, no scripts, no annotations, no metadata. The file is written beside its destination and
 * renamed into place only when complete, so a failure never leaves a partial output file.
 */
import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { deflate } from "node:zlib";
import { AirqubeError, PlatformError } from "../qube/errors.js";
import type { RgbPage } from "./ppm.js";

const deflateAsync = promisify(deflate);

/** Page size in points for a bitmap rendered at `dpi` (2 decimals). */
const points = (pixels: number, dpi: number) => (Math.round((pixels * 7200) / dpi) / 100).toString();

/**
 * Writes `pages` (read one at a time, e.g. from files) as a PDF at `out`. Resolves with the page count.
 *
 * @example
 * await writeImagePdf("safe.pdf", pagesOf(files), { dpi: 100 });
 */
export async function writeImagePdf(
  out: string,
  pages: AsyncIterable<RgbPage>,
  options: { dpi: number; signal?: AbortSignal; onPage?: (index: number) => void },
): Promise<number> {
  const partial = join(dirname(out), `.${randomBytes(6).toString("hex")}.pdf.partial`);
  let file: FileHandle | undefined;
  try {
    file = await open(partial, "wx", 0o644);
    const offsets: number[] = [];
    let position = 0;
    const write = async (data: string | Buffer) => {
      const bytes = typeof data === "string" ? Buffer.from(data, "latin1") : data;
      await file!.write(bytes);
      position += bytes.length;
    };
    /** Objects 1 (catalog) and 2 (pages) are written last; page i uses objects 3+3i .. 5+3i. */
    const object = async (id: number, body: string | Buffer[]) => {
      offsets[id] = position;
      await write(`${id} 0 obj\n`);
      if (typeof body === "string") await write(body);
      else for (const part of body) await write(part);
      await write("\nendobj\n");
    };
    await write("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n");
    const kids: string[] = [];
    let index = 0;
    for await (const page of pages) {
      options.signal?.throwIfAborted();
      const [pageId, contentId, imageId] = [3 + 3 * index, 4 + 3 * index, 5 + 3 * index];
      const w = points(page.width, options.dpi);
      const h = points(page.height, options.dpi);
      const data = await deflateAsync(page.pixels);
      await object(imageId, [
        Buffer.from(
          `<< /Type /XObject /Subtype /Image /Width ${page.width} /Height ${page.height} /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /Length ${data.length} >>\nstream\n`,
          "latin1",
        ),
        data,
        Buffer.from("\nendstream", "latin1"),
      ]);
      const content = `q ${w} 0 0 ${h} 0 0 cm /Im0 Do Q`;
      await object(contentId, `<< /Length ${content.length} >>\nstream\n${content}\nendstream`);
      await object(
        pageId,
        `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 ${w} ${h}] /Resources << /XObject << /Im0 ${imageId} 0 R >> >> /Contents ${contentId} 0 R >>`,
      );
      kids.push(`${pageId} 0 R`);
      index += 1;
      options.onPage?.(index);
    }
    if (index === 0) throw new PlatformError("PDF_EMPTY", "There is no page to write");
    await object(1, "<< /Type /Catalog /Pages 2 0 R >>");
    await object(2, `<< /Type /Pages /Kids [${kids.join(" ")}] /Count ${index} >>`);
    const xref = position;
    const count = 3 + 3 * index;
    let table = `xref\n0 ${count}\n0000000000 65535 f \n`;
    for (let id = 1; id < count; id++) table += `${String(offsets[id]).padStart(10, "0")} 00000 n \n`;
    await write(`${table}trailer\n<< /Size ${count} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`);
    await file.sync();
    await file.close();
    file = undefined;
    await rename(partial, out);
    return index;
  } catch (error) {
    await file?.close().catch(() => undefined);
    await rm(partial, { force: true });
    if (error instanceof AirqubeError || options.signal?.aborted) throw error;
    // the file system refused (no such directory, no space, read-only ...)
    const code = (error as NodeJS.ErrnoException).code ?? "unknown";
    throw new PlatformError("OUTPUT_WRITE_FAILED", "The safe PDF could not be written", {
      details: `${out}: ${code}`,
      cause: error,
    });
  }
}
