/** Debian's chromium, headless, for the dashboard's browser tests (puppeteer-core; scripts/setup.sh installs it). */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

export const CHROMIUM = process.env.AIRQUBE_CHROMIUM ?? "/usr/bin/chromium";
/** Where screenshots go, for people to look at (git-ignored). */
export const ARTIFACTS = join(process.cwd(), "test-artifacts");

/** Launches chromium headless; only loopback resolves, so no request could leave the machine. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM))
    throw new Error(`chromium is missing (${CHROMIUM}): run scripts/setup.sh, or set AIRQUBE_CHROMIUM`);
  mkdirSync(ARTIFACTS, { recursive: true });
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      // root in CI: chromium's own sandbox needs user namespaces it cannot have here (the test browser only)
      "--no-sandbox",
      // nothing but loopback resolves, so a request to any other host could not even leave the machine
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "--disable-gpu",
      "--disable-dev-shm-usage",
    ],
  });
}

/** What a uPlot chart of the page holds and drew (see src/dashboard/static/charts.js). */
export interface ChartReading {
  /** The figure's `data-points`: how many x values. */
  points: number;
  /** The first column of the chart's table of numbers: one label per x value. */
  labels: string[];
  /** The table's numbers by series key (null: no value). */
  table: Record<string, (number | null)[]>;
  /** The uPlot instance's series labels, x first, in drawing order (empty without a chart). */
  series: string[];
  /** The uPlot instance's data arrays, x first (stacked series at the top of their stack). */
  plotted: (number | null)[][];
  /** The canvas's size in pixels. */
  canvas: { width: number; height: number };
  /** Pixels of the canvas painted in exactly each series' colour, by series label. */
  painted: Record<string, number>;
  /** CSS pixels from the plot's left edge to the first bar's centre, and from the last bar's centre to its right edge. */
  margins: [number, number];
}

// the browser's side below is typed by the little it uses (this project compiles without the DOM library)
interface Plotted {
  data: (number | null)[][];
  series: { label?: string; fill?: (u: Plotted, i: number) => string }[];
  valToPos(value: number, scale: string): number;
}
interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}
interface Node {
  textContent: string | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): Node | null;
  querySelectorAll(selector: string): ArrayLike<Node> & Iterable<Node>;
  scrollIntoView(options: { block: string }): void;
  getBoundingClientRect(): Box;
}
interface Canvas extends Node {
  width: number;
  height: number;
  getContext(
    kind: "2d",
  ): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } | null;
}
interface Figure extends Node {
  uplot?: Plotted;
}
interface Violation {
  effectiveDirective: string;
  blockedURI: string;
  sourceFile: string;
  lineNumber: number;
}
interface Document {
  querySelectorAll(selector: string): Iterable<Node>;
  addEventListener(type: string, listener: (event: Violation) => void): void;
}
/** The page's global object (in functions run in the page: they cannot see this module's variables). */
interface Window {
  document: Document;
  cspViolations?: string[];
}

/** Reads the chart `selector` (a figure.chart): its uPlot instance, its canvas's pixels, its table of numbers. */
export function readChart(page: Page, selector: string): Promise<ChartReading> {
  return page.$eval(selector, (element) => {
    const figure = element as unknown as Figure;
    const uplot = figure.uplot;
    const canvas = figure.querySelector("canvas") as Canvas | null;
    const rows = [...figure.querySelectorAll(".chart-data tbody tr")];
    const table: Record<string, (number | null)[]> = {};
    for (const row of rows)
      for (const td of row.querySelectorAll("td[data-series]")) {
        const key = td.getAttribute("data-series") ?? "";
        const value = td.getAttribute("data-value");
        table[key] = [...(table[key] ?? []), value === null ? null : Number(value)];
      }
    const painted: Record<string, number> = {};
    const margins: [number, number] = [0, 0];
    const over = figure.querySelector(".u-over");
    if (uplot && over) {
      const xs = uplot.data[0]!;
      margins[0] = uplot.valToPos(xs[0]!, "x");
      margins[1] = over.getBoundingClientRect().width - uplot.valToPos(xs[xs.length - 1]!, "x");
    }
    if (uplot && canvas) {
      const pixels = canvas.getContext("2d")?.getImageData(0, 0, canvas.width, canvas.height).data ?? [];
      uplot.series.forEach((s, i) => {
        if (i === 0 || !s.fill) return;
        const hex = s.fill(uplot, i);
        const rgb = [1, 3, 5].map((at) => Number.parseInt(hex.slice(at, at + 2), 16));
        let count = 0;
        for (let p = 0; p < pixels.length; p += 4)
          if (pixels[p] === rgb[0] && pixels[p + 1] === rgb[1] && pixels[p + 2] === rgb[2] && pixels[p + 3] === 255)
            count++;
        painted[s.label ?? String(i)] = count;
      });
    }
    return {
      points: Number(figure.getAttribute("data-points")),
      labels: rows.map((row) => row.querySelector("td")?.textContent ?? ""),
      table,
      series: uplot ? uplot.series.map((s) => s.label ?? "") : [],
      plotted: uplot ? uplot.data.map((values) => [...values]) : [],
      canvas: { width: canvas?.width ?? 0, height: canvas?.height ?? 0 },
      painted,
      margins,
    };
  });
}

/** Watches the page for Content-Security-Policy violations (`securitypolicyviolation` events), from its first script on. */
export async function watchCsp(page: Page): Promise<() => Promise<string[]>> {
  await page.evaluateOnNewDocument(() => {
    const seen: string[] = [];
    const window = globalThis as unknown as Window;
    window.cspViolations = seen;
    window.document.addEventListener("securitypolicyviolation", (event) =>
      seen.push(
        `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} (${event.sourceFile}:${event.lineNumber})`,
      ),
    );
  });
  return () => page.evaluate(() => [...((globalThis as unknown as Window).cspViolations ?? [])]);
}

/**
 * Moves the mouse over the bar at `index` of the chart `selector`, as a person would, and returns its legend
 * then (series label → the value shown).
 */
export async function hoverBar(page: Page, selector: string, index: number): Promise<Record<string, string>> {
  // a poll that brings new data draws the chart anew, without the cursor: then the mouse moves again
  for (let attempt = 1; ; attempt++) {
    const at = await page.$eval(
      selector,
      (element, i) => {
        const figure = element as unknown as Figure;
        const over = figure.querySelector(".u-over");
        if (!figure.uplot || !over) throw new Error("no uPlot chart here");
        over.scrollIntoView({ block: "center" });
        const box = over.getBoundingClientRect();
        return { x: box.left + figure.uplot.valToPos(figure.uplot.data[0]![i]!, "x"), y: box.top + box.height - 2 };
      },
      index,
    );
    await page.mouse.move(at.x, at.y);
    try {
      const legend = await page.waitForFunction(
        (rows) => {
          const found = [...(globalThis as unknown as Window).document.querySelectorAll(rows)];
          if (found.length === 0 || found.some((row) => row.textContent?.includes("hover a bar"))) return undefined;
          return Object.fromEntries(
            found.map((row) => [
              row.querySelector(".u-label")?.textContent ?? "",
              row.querySelector(".u-value")?.textContent ?? "",
            ]),
          );
        },
        { timeout: 3_000 },
        `${selector} .u-legend tr.u-series`,
      );
      return (await legend.jsonValue()) as Record<string, string>;
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}
