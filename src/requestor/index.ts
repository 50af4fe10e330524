/**
 * The requestor's lower-level pieces, for those who need more than `Airqube`: seal a qube (`sealQube`), run it
 * with the `Requestor` over any `ComputeMarket` (the embedded network's `Libp2pMarket`, or `airqube/golem`),
 * pay through `EscrowPayments`, and the pure round engine and quorum rules that decide what is trusted.
 *
 * @packageDocumentation
 */

export {
  type ConvertEvent,
  type ConvertPdfOptions,
  type ConvertPdfReport,
  convertPdf,
  PDF_IMAGE,
} from "../pdf/convert.js";
export type {
  ComputeMarket,
  Dispatch,
  DispatchEvents,
  EscrowSeat,
  ProviderAnswer,
  ProviderCandidate,
  SealedQube,
} from "./api.js";
export { type QubeRequest, sealQube, specLimitsFor } from "./draft.js";
export {
  distinctCount,
  distinctFrom,
  type EngineCandidate,
  type EngineCommand,
  type EngineEvent,
  type EngineFailure,
  type EngineOptions,
  type EngineOutcome,
  RoundEngine,
} from "./engine.js";
export { type JournalEscrowJob, type JournalQube, type QubeState, RequestorJournal } from "./journal.js";
export { Libp2pMarket, type Libp2pMarketOptions } from "./libp2p-market.js";
export { type OutcomeKind, outcomeOf, type QubeOutcome } from "./outcome.js";
export {
  closeJournalled,
  EscrowPayments,
  type EscrowPaymentsConfig,
  type LockRequest,
  type PaymentReport,
  type PaymentsPort,
} from "./payments.js";
export { planReplication, type ReplicationPlan } from "./policy.js";
export { decide, type QuorumDecision, type QuorumPolicy, type Vote } from "./quorum.js";
export { type RemoteProbeOptions, RemoteSandbox, runRemoteProbeSuite } from "./remote-probe.js";
export { MemoryReputation, type Reputation, type ReputationStore, SqliteReputation } from "./reputation.js";
export { Requestor, type RequestorOptions, type RunEvent, type RunOptions, type RunReport } from "./requestor.js";
