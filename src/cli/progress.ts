/**
 * Progress display of a qube run: a progress bar on a terminal, one JSON object per line with `--json`,
 * plain lines otherwise (logs, CI).
 */
import cliProgress from "cli-progress";
import type { RunEvent } from "../requestor/requestor.js";

const short = (peer: string) => `…${peer.slice(-8)}`;

function describe(event: RunEvent): string {
  switch (event.type) {
    case "offersFound":
      return `found ${event.count} offers, ${event.usable} usable`;
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
    case "resultReceived":
      return `${short(event.provider)} revealed ${event.outputsRoot.slice(0, 19)}…`;
    case "providerFailed":
      return `${short(event.provider)} failed: ${event.code}`;
    case "tieBreakerDispatched":
      return `${event.reason}: dispatching ${event.replicas} more`;
    case "providerMarked":
      return `${short(event.provider)} marked: its answer contradicts the verified one`;
    case "decided":
      return `decided: ${event.status}`;
    case "budgetLocked":
      return `budget ${event.budget} wei locked in escrow job ${event.jobId.slice(0, 10)}… for ${event.providers.length} providers (tx ${event.txHash.slice(0, 10)}…)`;
    case "paymentClosed":
      return `escrow job ${event.report.jobId.slice(0, 10)}… ${event.report.status}${event.report.settleTx ? ` (tx ${event.report.settleTx.slice(0, 10)}…)` : ""}${event.report.error ? `: ${event.report.error.code}` : ""}`;
  }
}

/** Returns an event handler and a function that ends the display. */
export function progressReporter(mode: { json: boolean; replicas: number }): {
  onProgress: (event: RunEvent) => void;
  stop: () => void;
} {
  if (mode.json) {
    return {
      onProgress: (event) =>
        process.stdout.write(`${JSON.stringify({ event: event.type, ...event, type: undefined })}\n`),
      stop: () => undefined,
    };
  }
  if (!process.stderr.isTTY) {
    return { onProgress: (event) => process.stderr.write(`airqube: ${describe(event)}\n`), stop: () => undefined };
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
  bar.start(mode.replicas * 2, 0, { status: "looking for offers" });
  let total = mode.replicas * 2;
  return {
    onProgress: (event) => {
      if (event.type === "tieBreakerDispatched") {
        total += event.replicas * 2;
        bar.setTotal(total);
      }
      if (event.type === "qubeCommitted" || event.type === "resultReceived")
        bar.increment(1, { status: describe(event) });
      else bar.update({ status: describe(event) });
    },
    stop: () => bar.stop(),
  };
}
