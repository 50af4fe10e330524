/**
 * Chain bindings: the escrow client, deployment, the embedded local chain and the pure job hashing.
 *
 * @packageDocumentation
 */
export { type Deployment, deployEscrow, fundAccounts } from "./deploy.js";
export { ChainError, type ChainErrorCode } from "./errors.js";
export {
  type Credit,
  DEFAULT_LOG_RANGE_BLOCKS,
  EscrowClient,
  type EscrowClientConfig,
  type EscrowJobState,
  followUpNonce,
  type JobGroup,
  type OwnOpening,
  type TxResult,
} from "./escrow-client.js";
export {
  type BatchOpening,
  deployEscrowV2,
  type EscrowBatchState,
  EscrowV2Client,
  type EscrowV2ClientConfig,
} from "./escrow-v2-client.js";
export {
  budgetOf,
  type EscrowJob,
  escrowCommitmentOf,
  escrowJobSchema,
  jobIdOf,
  type Opening,
  parseEscrowJob,
  ZERO_BYTES32,
} from "./job.js";
export {
  LOCAL_CHAIN_MNEMONIC,
  type LocalAccount,
  type LocalChain,
  type LocalChainOptions,
  localAccounts,
  startLocalChain,
} from "./local-chain.js";
export { type CallOptions, createRpcProvider, DEFAULT_CHAIN_TIMEOUT_MS, decodeRevert, fetchChainId } from "./rpc.js";
