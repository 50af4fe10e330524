/**
 * Progress display of a qube run: a progress bar on a terminal, one JSON object per line with `--json`,
 * plain lines otherwise (logs, CI). The count is of providers that answered (revealed) out of the k the run
 * asks for (plus tie-breakers), in both the bar and the plain lines.
 */
import cliProgress from "cli-progress";
import { ADMISSION_REFUSED } from "../net/exchange/errors.js";
import { printable } from "../qube/printable.js";
import type { RunEvent } from "../requestor/requestor.js";
import { glm } from "./payment-report.js";
import { formatBytes } from "./units.js";

/** A peer id as `12D3…abcd` (its first and last four characters). */
export const shortPeer = (peer: string) => (peer.length > 12 ? `${peer.slice(0, 4)}…${peer.slice(-4)}` : peer);

/** One line for a provider that refused or failed: `  12D3…abcd refused: IMAGE_UNAVAILABLE: …`. */
export function describeFailure(raw: { provider: string; code: string; message: string; details?: string }): string {
  // codes, messages and details can come from the provider: no escape sequence of theirs reaches the terminal
  const f = {
    provider: raw.provider,
    code: printable(raw.code, 64),
    message: printable(raw.message, 200),
    ...(raw.details !== undefined ? { details: printable(raw.details, 300) } : {}),
  };
  if (f.code === "PROPOSAL_REJECTED") return `  ${shortPeer(f.provider)} refused: ${f.details ?? f.message}`;
  if (raw.message === ADMISSION_REFUSED)
    return `  ${shortPeer(f.provider)} refused: ${f.code}: ${f.details ?? f.message}`;
  const details = f.details && !f.message.endsWith(f.details) ? `: ${f.details}` : "";
  return `  ${shortPeer(f.provider)} failed: ${f.message}${details} [${f.code}]`;
}

/** Least time between two plain lines of one provider's received bytes, ms. */
const PLAIN_BYTES_MS = 10_000;

const short = (peer: string) => `…${peer.slice(-8)}`;

function describe(event: RunEvent): string {
  switch (event.type) {
    case "offersFound":
      return `found ${event.count} offers, ${event.usable} usable`;
    case "fewerProviders":
      return `warning: only ${event.available} distinct provider${event.available === 1 ? "" : "s"} available for a redundancy of ${event.wanted}; running on ${event.available} (--allow-fewer)`;
    case "agreementSigned":
      return `agreement signed with ${short(event.provider)}`;
    case "qubeSent":
      return `qube and sealed inputs sent to ${short(event.provider)}`;
    case "qubeStarted":
      return `${short(event.provider)} started the qube`;
    case "qubeCommitted":
      return `${short(event.provider)} committed to a result`;
    case "revealRequested":
      return `all commitments in: asking ${event.providers.length} providers to reveal`;
    case "outputsReceiving":
      return `receiving the outputs of ${short(event.provider)}: ${formatBytes(event.bytes)} so far`;
    case "resultReceived":
      return `${short(event.provider)} revealed ${event.outputsRoot.slice(0, 19)}…`;
    case "providerFailed":
      // the same words as the summary: a refusal is a refusal, not a failure
      return describeFailure(event).trim();
    case "tieBreakerDispatched":
      return `${event.reason}: dispatching ${event.replicas} more`;
    case "providerMarked":
      return event.reason === "dissent"
        ? `${short(event.provider)} marked: its answer contradicts the verified one`
        : `${short(event.provider)} marked: it committed but gave no valid reveal`;
    case "decided":
      return `decided: ${event.status}`;
    case "budgetLocked":
      return `budget ${glm(event.budget)} locked in escrow job ${event.jobId.slice(0, 10)}… for ${event.providers.length} providers (tx ${event.txHash.slice(0, 10)}…)`;
    case "paymentClosed":
      return `escrow job ${event.report.jobId.slice(0, 10)}… ${event.report.status}${event.report.settleTx ? ` (tx ${event.report.settleTx.slice(0, 10)}…)` : ""}${event.report.error ? `: ${event.report.error.code}` : ""}`;
  }
}

/** The bytes of outputs arriving from each provider still sending them, summed for a live status line. */
export class OutputsArriving {
  private readonly bytes = new Map<string, number>();

  /** Updates the sums; returns the status line for an `outputsReceiving` event, undefined for any other. */
  observe(event: RunEvent): string | undefined {
    if (event.type === "resultReceived" || event.type === "providerFailed") this.bytes.delete(event.provider);
    if (event.type !== "outputsReceiving") return undefined;
    this.bytes.set(event.provider, event.bytes);
    const total = [...this.bytes.values()].reduce((sum, n) => sum + n, 0);
    const n = this.bytes.size;
    return `receiving the outputs: ${formatBytes(total)} so far from ${n} provider${n === 1 ? "" : "s"}`;
  }
}

/**
 * Counts providers that answered out of those the run waits for: k at first, the number available when the
 * run goes on with fewer (`--allow-fewer`), plus every tie-breaker replica.
 */
export class AnswerCounter {
  answered = 0;
  constructor(public total: number) {}

  /** Updates the count; returns true when the event is an answer. */
  observe(event: RunEvent): boolean {
    if (event.type === "fewerProviders") this.total = event.available;
    if (event.type === "tieBreakerDispatched") this.total += event.replicas;
    if (event.type !== "resultReceived") return false;
    this.answered += 1;
    return true;
  }

  toString(): string {
    return `${this.answered}/${this.total}`;
  }
}

/**
 * The plain (not a terminal) progress line of an event: `airqube: …`, with the answer count on answers; a
 * provider's refusal or failure is its summary line (`  12D3…abcd refused: …`), printed once, as it happens.
 */
export function plainProgressLine(event: RunEvent, counter: AnswerCounter): string {
  const answer = counter.observe(event);
  if (event.type === "providerFailed") return describeFailure(event);
  return `airqube: ${answer ? `[${counter} answered] ` : ""}${describe(event)}`;
}

/**
 * Returns an event handler, a function that ends the display, and whether the display already printed each
 * provider's refusal or failure as a line of its own (plain mode), so the command does not print them twice.
 */
export function progressReporter(mode: { json: boolean; replicas: number }): {
  onProgress: (event: RunEvent) => void;
  stop: () => void;
  listsFailures: boolean;
} {
  if (mode.json) {
    return {
      onProgress: (event) =>
        process.stdout.write(`${JSON.stringify({ event: event.type, ...event, type: undefined })}\n`),
      stop: () => undefined,
      listsFailures: false,
    };
  }
  const counter = new AnswerCounter(mode.replicas);
  if (!process.stderr.isTTY) {
    // a log is not a live display: the bytes received by each provider once every 10 s at most
    const lastBytesLine = new Map<string, number>();
    return {
      onProgress: (event) => {
        if (event.type === "outputsReceiving") {
          const now = performance.now();
          if (now - (lastBytesLine.get(event.provider) ?? -Infinity) < PLAIN_BYTES_MS) return;
          lastBytesLine.set(event.provider, now);
        }
        process.stderr.write(`${plainProgressLine(event, counter)}\n`);
      },
      stop: () => undefined,
      listsFailures: true,
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: " {bar} {value}/{total} providers answered | {status}",
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(counter.total, 0, { status: "looking for offers" });
  const arriving = new OutputsArriving();
  return {
    onProgress: (event) => {
      const answer = counter.observe(event);
      if (event.type === "fewerProviders") process.stderr.write(`\nairqube: ${describe(event)}\n`);
      bar.setTotal(counter.total);
      // while outputs arrive, the status sums them over the providers still sending
      const status = arriving.observe(event) ?? describe(event);
      if (answer) bar.update(counter.answered, { status });
      else bar.update({ status });
    },
    stop: () => bar.stop(),
    listsFailures: false,
  };
}
