/**
 * The progress display of `airqube convert-pdf`. On a terminal: one line per provider step and one per page
 * (`  page 3/20: 827x1169 px checked, rebuilt from verified pixels`, in order), and a live status line while the
 * providers render (`rendering on 3 providers: 3 started, 1 committed, 12 s`) and send their pixels, redrawn in
 * place at most four times a second. Not on a terminal: the same lines, the status as a line every 10 s. With `--json`: every
 * event as a JSON line on stdout, as `airqube run --json` does (heartbeats at most one a second).
 *
 * Every text that comes from a provider (a failure's code and reason) goes through {@link printable}, so a
 * hostile provider cannot put escape sequences on the user's terminal or flood it; page numbers are printed
 * only when they are whole numbers in order within the page count, and dimensions only within the bitmap limits.
 */
import type { ConvertEvent } from "../pdf/convert.js";
import { DEFAULT_PAGE_LIMITS } from "../pdf/ppm.js";
import { printable } from "../qube/printable.js";
import type { RunEvent } from "../requestor/requestor.js";
import { describePayment, glm } from "./payment-report.js";
import { shortPeer } from "./progress.js";
import { formatBytes } from "./units.js";

/** Where the display writes (process.stdout / process.stderr, or a capture in tests). */
export interface TextSink {
  write(text: string): unknown;
}

/** Options of {@link convertProgress}. */
export interface ConvertProgressOptions {
  json: boolean;
  /** Whether `err` is a terminal (a status line redrawn in place). */
  tty: boolean;
  /** JSON lines go here (stdout). */
  out: TextSink;
  /** Human lines go here (stderr). */
  err: TextSink;
  /** Names of addresses in payment lines (the requestor's refund address). */
  names?: Map<string | undefined, string>;
  /** Width of the terminal: the status line is cut to fit, else a wrapped line could not be redrawn in place. */
  columns?: number;
  /** Clock in ms (tests); default performance.now. */
  now?: () => number;
}

/** Least time between two redraws of the status line on a terminal, and between two plain status lines. */
const TTY_STATUS_MS = 250;
const PLAIN_STATUS_MS = 10_000;
const JSON_HEARTBEAT_MS = 1000;
/** Clears the terminal's current line (carriage return, erase line). */
const CLEAR_LINE = "\r\u001b[2K";

const isCount = (n: unknown, max: number): n is number =>
  typeof n === "number" && Number.isSafeInteger(n) && n >= 0 && n <= max;

/** The status text of a heartbeat, or undefined when its figures are not plausible counts. */
export function heartbeatText(event: Extract<ConvertEvent, { type: "heartbeat" }>): string | undefined {
  const { sent, started, committed, revealed, failed, elapsedMs } = event;
  if (![sent, started, committed, revealed, failed].every((n) => isCount(n, 64))) return undefined;
  if (!isCount(elapsedMs, 1e9)) return undefined;
  const seconds = `${Math.floor(elapsedMs / 1000)} s`;
  const failures = failed > 0 ? `, ${failed} failed` : "";
  // bytes still arriving: a plausible count only (the page limits bound them), else not shown
  const bytes = event.receivingBytes;
  const arriving = isCount(bytes, 2 ** 50) && bytes > 0 ? ` (${formatBytes(bytes)} of pixels arriving)` : "";
  if (event.phase === "receiving")
    return `all committed; receiving the pixels: ${revealed}/${committed} providers sent theirs${arriving}${failures}, ${seconds}`;
  if (sent === 0) return `looking for providers, ${seconds}`;
  return `rendering on ${sent} provider${sent === 1 ? "" : "s"}: ${started} started, ${committed} committed${failures}, ${seconds}`;
}

/** The line of a run event, or undefined for the events the display does not print. */
function runLine(e: RunEvent, failed: ReadonlySet<string>): string | undefined {
  if (e.type === "qubeSent") return `  sent to ${shortPeer(e.provider)}`;
  if (e.type === "qubeCommitted") return `  ${shortPeer(e.provider)} rendered and committed`;
  if (e.type === "providerFailed")
    return `  ${shortPeer(e.provider)} failed: ${printable(e.code, 64)}: ${printable(e.details ?? e.message, 200)}`;
  if (e.type === "budgetLocked")
    return `  budget ${glm(e.budget)} locked in escrow for ${e.providers.length} providers (tx ${e.txHash})`;
  if (e.type === "providerMarked")
    return failed.has(e.provider)
      ? `  ${shortPeer(e.provider)} committed but did not reveal its pixels: marked`
      : `  ${shortPeer(e.provider)} returned different pixels: outvoted and marked`;
  return undefined;
}

/** The event as it is printed with `--json`: `{ event, ...fields }`, provider texts made printable. */
export function jsonEventOf(event: ConvertEvent): Record<string, unknown> {
  if (event.type !== "run") {
    const { type, ...rest } = event;
    return { event: type, ...rest };
  }
  const { type, ...rest } = event.event;
  if (event.event.type === "providerFailed") {
    const { code, message, details } = event.event;
    return {
      event: `run.${type}`,
      ...rest,
      code: printable(code, 64),
      message: printable(message, 200),
      ...(details !== undefined ? { details: printable(details, 1024) } : {}),
    };
  }
  return { event: `run.${type}`, ...rest };
}

/**
 * Returns the handler of a conversion's events and `stop`, which clears the status line (call it before the
 * result or an error is printed).
 *
 * @example
 * const view = convertProgress({ json: false, tty: process.stderr.isTTY, out: process.stdout, err: process.stderr });
 * try { await convertPdf(requestor, identity, input, output, { ...options, onProgress: view.onProgress }); }
 * finally { view.stop(); }
 */
export function convertProgress(options: ConvertProgressOptions): {
  onProgress: (event: ConvertEvent) => void;
  stop: () => void;
} {
  const now = options.now ?? (() => performance.now());
  const failed = new Set<string>();
  let lastStatus = Number.NEGATIVE_INFINITY;
  let statusShown = false;
  let nextPage = 1;
  let pageCount: number | undefined;
  const maxSide = DEFAULT_PAGE_LIMITS.maxSide;

  const line = (text: string) => {
    if (statusShown) options.err.write(CLEAR_LINE);
    statusShown = false;
    options.err.write(`${text}\n`);
  };
  /** A heartbeat is shown only when the last one is old enough: a flood of them prints almost nothing. */
  const due = (interval: number) => {
    const t = now();
    if (t - lastStatus < interval) return false;
    lastStatus = t;
    return true;
  };
  /** A page line only in order (1, 2, ... n) and within the announced count: anything else is dropped. */
  const pageLine = (event: Extract<ConvertEvent, { type: "page" }>): string | undefined => {
    if (pageCount === undefined || event.pages !== pageCount || event.page !== nextPage) return undefined;
    nextPage += 1;
    const dims =
      isCount(event.width, maxSide) && isCount(event.height, maxSide) ? `: ${event.width}x${event.height} px` : "";
    return `  page ${event.page}/${event.pages}${dims} checked, rebuilt from verified pixels`;
  };
  const rendered = (event: Extract<ConvertEvent, { type: "rendered" }>) => {
    if (!isCount(event.pages, 1e6) || !isCount(event.agreeing, 64)) return undefined;
    pageCount = event.pages;
    return `rendered ${event.pages} page${event.pages === 1 ? "" : "s"}; ${event.agreeing === 1 ? "1 provider agrees" : `${event.agreeing} providers agree`} bitwise`;
  };

  if (options.json)
    return {
      onProgress: (event) => {
        if (event.type === "heartbeat" && !due(JSON_HEARTBEAT_MS)) return;
        options.out.write(`${JSON.stringify(jsonEventOf(event))}\n`);
      },
      stop: () => undefined,
    };

  return {
    onProgress: (event) => {
      if (event.type === "heartbeat") {
        const text = heartbeatText(event);
        if (text === undefined || !due(options.tty ? TTY_STATUS_MS : PLAIN_STATUS_MS)) return;
        if (!options.tty) return void options.err.write(`airqube: ${text}\n`);
        const width = Math.max(20, (options.columns ?? 80) - 1);
        options.err.write(`${CLEAR_LINE}${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
        statusShown = true;
        return;
      }
      if (event.type === "run") {
        if (event.event.type === "paymentClosed")
          for (const text of describePayment(event.event.report, options.names ?? new Map())) line(text);
        if (event.event.type === "providerFailed") failed.add(event.event.provider);
        const text = runLine(event.event, failed);
        if (text !== undefined) line(text);
        return;
      }
      const text = event.type === "rendered" ? rendered(event) : pageLine(event);
      if (text !== undefined) line(text);
    },
    stop: () => {
      if (statusShown) options.err.write(CLEAR_LINE);
      statusShown = false;
    },
  };
}
