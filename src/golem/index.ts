/**
 * The Golem backend: run qubes on providers rented from the Golem network through golem-js and yagna, with
 * Airqube's redundancy and verification on top. See `GolemMarket` and `loadGolemConfig`.
 *
 * @packageDocumentation
 */
export {
  DEFAULT_GOLEM_CONFIG,
  DEFAULT_REPUTATION_URL,
  GOLEM_RUNTIMES,
  type GolemConfig,
  type GolemFileConfig,
  type GolemFlags,
  type GolemImage,
  type GolemReputationConfig,
  golemFileConfigSchema,
  golemReputationSchema,
  isLoopbackHost,
  loadGolemConfig,
  PAYMENT_NETWORKS,
} from "./config.js";
export { GOLEM_COMMITMENT_DOMAIN, GolemDispatch, golemCommitmentOf } from "./golem-dispatch.js";
export { GolemMarket, type GolemMarketOptions } from "./golem-market.js";
export {
  candidateFromOffer,
  golemImageFor,
  type OfferVerdict,
  offerVerdict,
  orderFor,
  paymentPlatform,
  type RuntimeEvidence,
  rentHoursFor,
  runtimeEvidence,
  workloadResources,
} from "./order.js";
export {
  type GolemProbeOptions,
  type GolemRuntimeEvidenceOptions,
  GolemSandbox,
  golemRuntimeEvidence,
  PROBE_PROGRAM,
  runGolemProbe,
} from "./probe.js";
export { REPUTATION_MAX_BYTES, ReputationFilter, type ReputationVerdict } from "./reputation.js";
