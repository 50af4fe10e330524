/** PDFs the tests make themselves: text pages, many pages, JavaScript and an embedded file, a malformed one. */

/** Assembles numbered objects into a PDF with a correct cross-reference table. */
function assemble(objects: string[], rootId = 1): Buffer {
  let out = "%PDF-1.7\n";
  const offsets: number[] = [];
  objects.forEach((body, i) => {
    offsets.push(Buffer.byteLength(out, "latin1"));
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, "latin1");
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) out += `${String(offset).padStart(10, "0")} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root ${rootId} 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, "latin1");
}

export interface TextPdfOptions {
  pages: number;
  /** Adds an OpenAction JavaScript and an embedded file holding `secret`. */
  active?: { secret: string };
}

/**
 * A PDF of `pages` A6 pages, each with a line of Helvetica text ("Page i") and a filled square at a
 * page-dependent place, so every page renders differently.
 */
export function textPdf(options: TextPdfOptions): Buffer {
  const objects: string[] = [];
  // 1 catalog, 2 pages, 3 font, then per page: page, contents; then the active parts
  const pageIds = Array.from({ length: options.pages }, (_, i) => 4 + 2 * i);
  const next = 4 + 2 * options.pages;
  const [jsId, fileId, specId] = [next, next + 1, next + 2];
  objects[0] = options.active
    ? `<< /Type /Catalog /Pages 2 0 R /OpenAction ${jsId} 0 R /Names << /EmbeddedFiles << /Names [(secret.txt) ${specId} 0 R] >> /JavaScript << /Names [(init) ${jsId} 0 R] >> >> >>`
    : "<< /Type /Catalog /Pages 2 0 R >>";
  objects[1] = `<< /Type /Pages /Kids [${pageIds.map((id) => `${id} 0 R`).join(" ")}] /Count ${options.pages} >>`;
  objects[2] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";
  pageIds.forEach((id, i) => {
    const content = `BT /F1 24 Tf 20 250 Td (Page ${i + 1}) Tj ET 0 0 1 rg ${20 + (i % 10) * 15} 40 40 40 re f`;
    objects[id - 1] =
      `<< /Type /Page /Parent 2 0 R /MediaBox [0 0 298 420] /Resources << /Font << /F1 3 0 R >> >> /Contents ${id + 1} 0 R >>`;
    objects[id] = `<< /Length ${content.length} >>\nstream\n${content}\nendstream`;
  });
  if (options.active) {
    objects[jsId - 1] = `<< /Type /Action /S /JavaScript /JS (app.alert\\('${options.active.secret}'\\);) >>`;
    const secret = options.active.secret;
    objects[fileId - 1] = `<< /Type /EmbeddedFile /Length ${secret.length} >>\nstream\n${secret}\nendstream`;
    objects[specId - 1] = `<< /Type /Filespec /F (secret.txt) /EF << /F ${fileId} 0 R >> >>`;
  }
  return assemble(objects);
}

/** Not a PDF that any renderer can open: a header, then garbage. */
export function malformedPdf(): Buffer {
  return Buffer.from("%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\nthis is not a pdf\n%%EOF\n", "latin1");
}
