/** How the CLI prints escrow jobs: who got paid what, in which transactions (`airqube run`, `demo`, `journal`). */
import { formatUnits } from "ethers";
import type { PaymentReport } from "../requestor/payments.js";

/** Wei as GLM (18 decimals): human output shows GLM, `--json` keeps wei. */
export const glm = (wei: string | bigint): string => `${formatUnits(wei, 18)} GLM`;

/**
 * Lines saying who got paid what in one escrow job; `names` maps lower-case accounts to readable names.
 *
 * @example
 * for (const line of describePayment(report, new Map([[payout.toLowerCase(), peerId]]))) console.log(line);
 */
export function describePayment(report: PaymentReport, names: ReadonlyMap<string | undefined, string>): string[] {
  const name = (account: string) => names.get(account.toLowerCase()) ?? account;
  const terms = `(price ${glm(report.price)}, stake ${glm(report.stake)} per provider)`;
  // the head line says what happened to the money: only a settled job paid anyone
  if (report.status === "abandoned")
    return [
      `NOT LOCKED: escrow job ${report.jobId}`,
      `  its lock transaction ${report.lockTx ?? "?"} was never mined and no longer can be: nothing was locked`,
    ];
  const seats = new Set(report.providers.map((p) => p.toLowerCase()));
  const paid = report.credits.some((c) => seats.has(c.account.toLowerCase()));
  const head =
    report.status === "settled"
      ? paid
        ? `PAID on agreement: escrow job ${report.jobId}`
        : `REFUNDED: escrow job ${report.jobId} settled with no provider paid`
      : report.status === "reclaimed"
        ? `REFUNDED: escrow job ${report.jobId} reclaimed (no agreement paid for)`
        : `STILL LOCKED: escrow job ${report.jobId}`;
  const lines = [head, `  budget ${glm(report.budget)} locked in tx ${report.lockTx ?? "?"} ${terms}`];
  if (report.status === "pending") {
    const when =
      report.notBefore !== undefined ? `allowed from ${new Date(report.notBefore * 1000).toISOString()}` : "pending";
    lines.push(
      `  not settled yet (${report.error ? `${report.error.code}: ${report.error.message}` : when}); the next paid \`airqube run\` with this data directory settles or reclaims it`,
    );
    return lines;
  }
  lines.push(
    `  ${report.status}${report.settleTx ? ` in tx ${report.settleTx}` : " on chain before (no transaction of ours)"}`,
  );
  for (const c of report.credits) lines.push(`    ${name(c.account)} credited ${glm(c.amount)}`);
  for (const s of report.slashed) lines.push(`    ${name(s.account)} lost its stake of ${glm(s.amount)}`);
  return lines;
}
