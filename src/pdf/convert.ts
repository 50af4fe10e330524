/**
 * Converting an untrusted PDF into a safe one, Qubes' `qvm-convert-pdf` with the disposable VM on the
 * network: a qube of the `airqube/pdf` image renders every page to a plain RGB bitmap (poppler's pdftoppm),
 * k providers must return bitwise the same bitmaps (the quorum over outputs), and the requestor rebuilds a PDF
 * from those pixels with its own small writer. Nothing of the original file's structure (scripts, embedded
 * files, fonts, forms, metadata) survives; the bitmaps are checked strictly before they are parsed.
 */
import { constants } from "node:fs";
import { access, open, readdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ShippableImage } from "../images/ship.js";
import { PeerError, UserError } from "../qube/errors.js";
import type { Identity, Tier } from "../qube/index.js";
import { printable } from "../qube/printable.js";
import type { ProviderCandidate } from "../requestor/api.js";
import { sealQube } from "../requestor/draft.js";
import type { PaymentReport } from "../requestor/payments.js";
import type { Requestor, RunEvent, RunReport } from "../requestor/requestor.js";
import { writeImagePdf } from "./pdf-writer.js";
import { DEFAULT_PAGE_LIMITS, type PageLimits, type RgbPage, readPpm } from "./ppm.js";

/** The renderer image (`npm run images:debian`): poppler-utils on Debian. */
export const PDF_IMAGE = "airqube/pdf:latest";
/** Exit codes of the rendering script. */
const UNRENDERABLE_EXIT = 3;
const TOO_MANY_PAGES_EXIT = 4;
/** Largest scratch space (the tmpfs the pages are written to) asked for: what providers offer by default. */
const MAX_SCRATCH_BYTES = 1024 * 1024 * 1024;
/** Largest PDF accepted as input. */
export const MAX_PDF_BYTES = 256 * 1024 * 1024;

/** How {@link convertPdf} renders, where it runs and what it reports. */
export interface ConvertPdfOptions {
  /** Rendering resolution, dots per inch (default 100). */
  dpi?: number;
  /** Most pages (default 200); a longer document is refused. */
  maxPages?: number;
  redundancy?: number;
  tier?: Tier;
  wallTimeMs?: number;
  memoryBytes?: number;
  /** Ship the `airqube/pdf` image to providers that lack it. */
  image?: ShippableImage;
  /** Reference of the image (default airqube/pdf:latest); its id is looked up locally unless shipped. */
  imageRef?: string;
  pageLimits?: PageLimits;
  /** Providers to try first (see the requestor's `prefer`). */
  prefer?: string[];
  /** Extra filter on candidates (a price cap ...; see the requestor's `filter`). */
  filter?: (candidate: ProviderCandidate) => boolean;
  /** Where the verified bitmaps are staged (removed afterwards). */
  workDir: string;
  signal?: AbortSignal;
  /**
   * Called with each step: the run's events, a heartbeat every `heartbeatMs` while the providers render and
   * send their pixels, the agreed rendering, then each page as it is checked and rebuilt.
   */
  onProgress?: (event: ConvertEvent) => void;
  /** Interval of the `heartbeat` events (default 1000 ms). */
  heartbeatMs?: number;
}

/**
 * Progress of a conversion: the run's own events; a heartbeat while the providers work (`rendering` until
 * every commitment is in, then `receiving` their pixels), counted from the run's events, since the qube sends
 * nothing while it renders; the agreed rendering; then each page, in order, once its bitmap passed the checks
 * (dimensions, exact size) and its page was written to the rebuilt PDF.
 */
export type ConvertEvent =
  | { type: "run"; event: RunEvent }
  | {
      type: "heartbeat";
      phase: "rendering" | "receiving";
      elapsedMs: number;
      /** Providers the qube was sent to, that started it, committed to a result, revealed it, failed. */
      sent: number;
      started: number;
      committed: number;
      revealed: number;
      failed: number;
      /** Bytes of pixels received so far from the providers still sending theirs (while receiving). */
      receivingBytes?: number;
    }
  | { type: "rendered"; pages: number; agreeing: number }
  | { type: "page"; page: number; pages: number; width: number; height: number };

/** Counts the run's events into the heartbeat's figures. */
function heartbeatOf(started: number): {
  observe: (event: RunEvent) => void;
  beat: (now: number) => Extract<ConvertEvent, { type: "heartbeat" }>;
} {
  const sets = {
    sent: new Set<string>(),
    started: new Set<string>(),
    committed: new Set<string>(),
    revealed: new Set<string>(),
    failed: new Set<string>(),
  };
  let phase: "rendering" | "receiving" = "rendering";
  /** Bytes received so far of each provider whose outputs are arriving (dropped once they are in). */
  const receiving = new Map<string, number>();
  return {
    observe: (event) => {
      if (event.type === "outputsReceiving") receiving.set(event.provider, event.bytes);
      if (event.type === "resultReceived" || event.type === "providerFailed") receiving.delete(event.provider);
      if (event.type === "qubeSent") sets.sent.add(event.provider);
      if (event.type === "qubeStarted") sets.started.add(event.provider);
      if (event.type === "qubeCommitted") sets.committed.add(event.provider);
      if (event.type === "resultReceived") sets.revealed.add(event.provider);
      if (event.type === "providerFailed") sets.failed.add(event.provider);
      if (event.type === "revealRequested") phase = "receiving";
      // a tie-breaker renders again
      if (event.type === "tieBreakerDispatched") phase = "rendering";
    },
    beat: (now) => ({
      type: "heartbeat",
      phase,
      elapsedMs: Math.max(0, Math.round(now - started)),
      sent: sets.sent.size,
      started: sets.started.size,
      committed: sets.committed.size,
      revealed: sets.revealed.size,
      failed: sets.failed.size,
      ...(phase === "receiving" && receiving.size > 0
        ? { receivingBytes: [...receiving.values()].reduce((sum, n) => sum + n, 0) }
        : {}),
    }),
  };
}

/** What {@link convertPdf} wrote and who agreed on it. */
export interface ConvertPdfReport {
  pages: number;
  qubeId: string;
  outputsRoot: string;
  agreeing: string[];
  dissenting: string[];
  bytes: number;
  /** With a paying requestor: the escrow job of the rendering and its settlement. */
  payments?: PaymentReport[];
}

/** The script the qube runs: page count first (refusing too many), then one PPM per page. */
export function renderScript(dpi: number, maxPages: number): string {
  return [
    "set -u",
    `pages=$(pdfinfo /input/untrusted.pdf 2>/scratch/err | sed -n 's/^Pages:[[:space:]]*//p')`,
    `if [ -z "$pages" ]; then head -c 2000 /scratch/err >&2; exit ${UNRENDERABLE_EXIT}; fi`,
    `if [ "$pages" -gt ${maxPages} ]; then echo "$pages pages" >&2; exit ${TOO_MANY_PAGES_EXIT}; fi`,
    "mkdir -p /output/pages",
    `pdftoppm -r ${dpi} /input/untrusted.pdf /output/pages/p 2>/scratch/err || { head -c 2000 /scratch/err >&2; exit ${UNRENDERABLE_EXIT}; }`,
  ].join("\n");
}

/** Where a PDF's header may start: readers accept up to 1 KiB of junk before `%PDF-`. */
const HEADER_WINDOW = 1024;

/**
 * Checks what can be checked here before anything is sent or paid for: the input is a readable file of at
 * most {@link MAX_PDF_BYTES} with a `%PDF-` header in its first KiB (nothing else is read or parsed here), and
 * the output's directory exists and is writable (the output itself is not a directory).
 *
 * @throws UserError PDF_UNREADABLE, PDF_TOO_LARGE, PDF_UNRENDERABLE, OUTPUT_UNWRITABLE.
 * @example
 * await checkConvertPaths("untrusted.pdf", "safe.pdf");
 */
export async function checkConvertPaths(input: string, output: string): Promise<void> {
  const info = await stat(input).catch(() => undefined);
  if (!info?.isFile()) throw new UserError("PDF_UNREADABLE", "The PDF to convert does not exist", { details: input });
  if (info.size > MAX_PDF_BYTES)
    throw new UserError("PDF_TOO_LARGE", "The PDF is too large to convert", {
      details: `${info.size} bytes, at most ${MAX_PDF_BYTES}`,
    });
  const head = Buffer.alloc(HEADER_WINDOW);
  let bytesRead = 0;
  try {
    const file = await open(input, "r");
    try {
      ({ bytesRead } = await file.read(head, 0, HEADER_WINDOW, 0));
    } finally {
      await file.close();
    }
  } catch (error) {
    throw new UserError("PDF_UNREADABLE", "The PDF to convert cannot be read", { details: input, cause: error });
  }
  if (!head.subarray(0, bytesRead).includes("%PDF-"))
    throw new UserError("PDF_UNRENDERABLE", "The PDF could not be rendered: it is damaged or not a PDF", {
      details: `${input} has no PDF header (%PDF-) in its first ${HEADER_WINDOW} bytes; nothing was sent`,
    });
  const target = await stat(output).catch(() => undefined);
  if (target?.isDirectory())
    throw new UserError("OUTPUT_UNWRITABLE", "The output is a directory", {
      details: `${output}: name the PDF to write`,
    });
  try {
    await access(dirname(output), constants.W_OK);
  } catch (error) {
    throw new UserError("OUTPUT_UNWRITABLE", "The output's directory does not exist or is not writable", {
      details: dirname(output),
      cause: error,
    });
  }
}

/** The verified page files, in page order: exactly p-1 .. p-n (pdftoppm's names), nothing else. */
async function pageFiles(dir: string, maxPages: number): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  if (names.length === 0) throw new PeerError("PDF_NO_PAGES", "The rendering returned no page");
  if (names.length > maxPages)
    throw new PeerError("PDF_TOO_MANY_PAGES", "The rendering returned more pages than allowed", {
      details: `${names.length} > ${maxPages}`,
    });
  const numbered = names.map((name) => {
    const match = /^p-([0-9]{1,6})\.ppm$/.exec(name);
    if (!match) throw new PeerError("PAGE_INVALID", "The rendering returned an unexpected file", { details: name });
    return { name, page: Number(match[1]) };
  });
  numbered.sort((a, b) => a.page - b.page);
  numbered.forEach(({ page, name }, i) => {
    if (page !== i + 1)
      throw new PeerError("PAGE_INVALID", "The rendered pages are not numbered 1..n", { details: name });
  });
  return numbered.map(({ name }) => join(dir, name));
}

/**
 * Renders `input` in disposable qubes on `redundancy` providers, checks that a quorum returned the same
 * pixels, and writes the rebuilt PDF to `output` (atomically; nothing is written on failure).
 *
 * @throws UserError PDF_UNRENDERABLE, PDF_TOO_MANY_PAGES, PDF_TOO_LARGE, OUTPUT_UNWRITABLE (see
 *   {@link checkConvertPaths}); PeerError PDF_NO_CONSENSUS, PAGE_*.
 * @example
 * await convertPdf(requestor, identity, "untrusted.pdf", "safe.pdf", { redundancy: 3, workDir, image });
 */
export async function convertPdf(
  requestor: Requestor,
  identity: Identity,
  input: string,
  output: string,
  options: ConvertPdfOptions,
): Promise<ConvertPdfReport> {
  const dpi = options.dpi ?? 100;
  const maxPages = options.maxPages ?? 200;
  const limits = options.pageLimits ?? DEFAULT_PAGE_LIMITS;
  await checkConvertPaths(input, output);
  const k = options.redundancy ?? 3;
  // output budget: pages up to 17 inches a side at this resolution, and never over the bitmap limits
  const side = Math.min(limits.maxSide, Math.ceil(17 * dpi));
  const pageBytes = Math.min(limits.maxPixels, side * side) * 3 + 32;
  const qube = await sealQube(
    {
      image: options.image ? PDF_IMAGE : (options.imageRef ?? PDF_IMAGE),
      ...(options.image ? { imageArchive: options.image } : {}),
      command: ["sh", "-c", renderScript(dpi, maxPages)],
      env: { HOME: "/scratch", XDG_CACHE_HOME: "/scratch" },
      inputFiles: [{ path: "untrusted.pdf", source: input }],
      outputs: ["pages"],
      ...(options.tier ? { tier: options.tier } : {}),
      limits: {
        wallTimeMs: options.wallTimeMs ?? 120_000,
        memoryBytes: options.memoryBytes ?? 512 * 1024 * 1024,
        // /output is a tmpfs of this size: it must hold every page, or pdftoppm (which ignores write errors)
        // leaves a truncated bitmap; the pages are charged to the memory limit, which then stops it clearly
        scratchBytes: Math.min(MAX_SCRATCH_BYTES, Math.max(64 * 1024 * 1024, pageBytes * maxPages)),
        outputBytes: Math.min(4 * 1024 ** 3, pageBytes * maxPages),
        outputFiles: maxPages,
      },
      redundancy: { mode: "fixed", k, quorum: Math.floor(k / 2) + 1 },
    },
    identity,
  );
  const heartbeat = heartbeatOf(performance.now());
  const timer = options.onProgress
    ? setInterval(() => options.onProgress?.(heartbeat.beat(performance.now())), options.heartbeatMs ?? 1000)
    : undefined;
  timer?.unref();
  try {
    let report: RunReport;
    try {
      report = await requestor.run(qube, {
        outputDir: options.workDir,
        ...(options.prefer ? { prefer: options.prefer } : {}),
        ...(options.filter ? { filter: options.filter } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        onProgress: (event) => {
          heartbeat.observe(event);
          options.onProgress?.({ type: "run", event });
        },
      });
    } finally {
      clearInterval(timer);
    }
    if (report.status !== "verified" || !report.outcome || !report.outputsRoot)
      throw new PeerError("PDF_NO_CONSENSUS", "The providers did not agree on the rendered pages", {
        details: report.reason ?? report.failures.map((f) => `${f.code}: ${f.details ?? f.message}`).join("; "),
      });
    const { outcome } = report;
    if (outcome.kind !== "exited" || outcome.exitCode !== 0) {
      if (outcome.exitCode === TOO_MANY_PAGES_EXIT)
        throw new UserError("PDF_TOO_MANY_PAGES", "The PDF has more pages than allowed", {
          details: `${printable(outcome.stderrTail.trim(), 100)}; at most ${maxPages} (--max-pages)`,
        });
      if (outcome.kind === "oom")
        throw new UserError("PDF_RENDER_OOM", "Rendering the PDF needs more memory than the qube was given", {
          details: `the rendered pages are held in memory until they are sent: lower --dpi or --max-pages, or raise --memory (${Math.round((options.memoryBytes ?? 512 * 1024 * 1024) / 1024 / 1024)} MiB now)`,
        });
      if (outcome.kind === "timeout")
        throw new UserError("PDF_RENDER_TIMEOUT", "Rendering the PDF took longer than allowed", {
          details: `raise --timeout (${Math.round((options.wallTimeMs ?? 120_000) / 1000)} s now) or lower --dpi`,
        });
      throw new UserError("PDF_UNRENDERABLE", "The PDF could not be rendered: it is damaged or not a PDF", {
        // the renderer's stderr quotes the untrusted PDF: printable only
        details: outcome.kind === "exited" ? printable(outcome.stderrTail.trim(), 500) : `the renderer ${outcome.kind}`,
      });
    }
    const files = await pageFiles(join(options.workDir, "pages"), maxPages);
    options.onProgress?.({ type: "rendered", pages: files.length, agreeing: report.agreeing.length });
    // the page being written: checked by readPpm before it is yielded, reported once it is in the PDF
    let current = { width: 0, height: 0 };
    const pages = await writeImagePdf(
      output,
      (async function* (): AsyncGenerator<RgbPage> {
        for (const file of files) {
          const page = await readPpm(file, limits);
          current = { width: page.width, height: page.height };
          yield page;
        }
      })(),
      {
        dpi,
        ...(options.signal ? { signal: options.signal } : {}),
        onPage: (page) => options.onProgress?.({ type: "page", page, pages: files.length, ...current }),
      },
    );
    return {
      pages,
      qubeId: report.qubeId,
      outputsRoot: report.outputsRoot,
      agreeing: report.agreeing,
      dissenting: report.dissenting,
      bytes: (await stat(output)).size,
      ...(report.payments ? { payments: report.payments } : {}),
    };
  } finally {
    await rm(options.workDir, { recursive: true, force: true });
  }
}
