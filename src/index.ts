/**
 * Airqube: offload disposable workloads ("qubes") to untrusted providers and trust only what a quorum of
 * independent providers agrees on.
 *
 * This entry point is the requestor SDK ({@link Airqube}), the sealed qube format, the errors and the events.
 * It loads nothing heavy: libp2p, ethers, SQLite and the Golem client are imported when `connect()` needs
 * them. Lower-level pieces live behind subpaths: `airqube/requestor` (the round engine, markets, payments),
 * `airqube/provider`, `airqube/sandbox`, `airqube/probes`, `airqube/chain`, `airqube/golem`, `airqube/devnet`.
 *
 * @example
 * import { Airqube } from "airqube";
 * const aq = new Airqube({ devnet: true });
 * await aq.connect();
 * const result = await aq.run({ image: "airqube/busybox:latest", command: ["sh", "-c", "echo 42 > /output/result"] });
 * console.log(result.verified, await result.readText("result"));
 * await aq.disconnect();
 *
 * @packageDocumentation
 */
export * from "./qube/index.js";
export type { ComputeMarket, Dispatch, ProviderAnswer, ProviderCandidate, SealedQube } from "./requestor/api.js";
export type { OutcomeKind, QubeOutcome } from "./requestor/outcome.js";
export type { PaymentReport } from "./requestor/payments.js";
export type { RunEvent, RunReport } from "./requestor/requestor.js";
export {
  Airqube,
  type AirqubeEvent,
  type AirqubeEvents,
  type AirqubeOptions,
  type InputSource,
  NoConsensusError,
  type PaymentOptions,
  type QubeDescription,
  type QubeResult,
  type QubeRunOptions,
  type ResultFile,
  redundancyPolicy,
  validateDescription,
} from "./sdk/airqube.js";
