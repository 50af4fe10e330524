/**
 * The provider agent: earn by running qubes in hardened, disposable sandboxes after the escape suite vetted
 * each tier. `ProviderAgent.start` joins the embedded network, publishes signed offers and serves qubes;
 * `JobLedger` and `ProviderPayments` keep its books.
 *
 * @example
 * import { ProviderAgent, escapeSuiteGate } from "airqube/provider";
 * import { ContainerSandbox } from "airqube/sandbox";
 *
 * @packageDocumentation
 */

export { type AddressPolicy, type AddressScope, addressScope, mayAnnounce, mayDial } from "../net/addresses.js";
export {
  type BootstrapPeer,
  type BootstrapPeerOptions,
  startBootstrapPeer,
} from "../net/bootstrap-peer.js";
export { type AdmissionInput, checkAdmission, minimumPrice, type Refusal } from "./admission.js";
export {
  type ProbeGate,
  type ProbeGateResult,
  ProviderAgent,
  type ProviderDeps,
  type ProviderStatus,
} from "./agent.js";
export {
  DEFAULT_MAX_INPUT_BYTES,
  defaultResources,
  loadProviderConfig,
  type ProviderConfig,
  type ProviderResources,
  providerConfigSchema,
} from "./config.js";
export { JobLedger, type JobRow, type JobState, type JobUsage, type LedgerSummary } from "./ledger.js";
export {
  type ProviderChainConfig,
  ProviderPayments,
  readChainFile,
  type SeatReport,
  SeatStore,
  settleSeats,
  writeChainFile,
} from "./payments.js";
export { escapeSuiteGate, summaryOf } from "./probe-gate.js";
