/**
 * Escrow v2 batches as plain data, and the pure hashing and EIP-712 typed data the v2 contract uses
 * (`contracts/AirqubeEscrowV2.sol`, design in `contracts/ESCROW-V2.md`), so that clients compute ids,
 * commitments and the statements providers sign without a round trip.
 */
import { AbiCoder, keccak256, Signature, solidityPacked, type TypedDataDomain } from "ethers";
import { z } from "zod";
import { UserError } from "../qube/errors.js";
import { address, bytes32, timestamp, uint } from "./job.js";

/** The parameters of a v2 batch (the contract's `Batch` struct); its id is their hash. */
export interface EscrowBatch {
  /** The account that opens the batch and pays from its escrow balance. */
  requestor: string;
  /** The requestor's batch number (uint40): above the last one of its ring slot `nonce % 256`. */
  nonce: bigint;
  /** `keccak256(abi.encodePacked(qubeIds))`, see {@link qubesRootOf}. */
  qubesRoot: string;
  /** How many jobs (qubes); `jobs * providers.length <= 256`. */
  jobs: number;
  /** The seats: distinct providers, 1 to 12, each running every job. */
  providers: string[];
  /** Paid per job to each provider of its quorum (token wei). */
  price: bigint;
  /** Bonded per job by each provider, locked from its escrow balance at open. */
  stake: bigint;
  /** Equal roots needed per job; `2 * quorum > providers.length`. */
  quorum: number;
  /** Unix seconds (block timestamps). */
  commitDeadline: number;
  revealDeadline: number;
  finalDeadline: number;
}

/** Schema of an {@link EscrowBatch} (shape and ranges; the contract checks the rules between fields). */
export const escrowBatchSchema = z
  .object({
    requestor: address,
    nonce: uint(40),
    qubesRoot: bytes32,
    jobs: z.number().int().min(1).max(256),
    providers: z.array(address).min(1).max(12),
    price: uint(96),
    stake: uint(96),
    quorum: z.number().int().min(1).max(12),
    commitDeadline: timestamp,
    revealDeadline: timestamp,
    finalDeadline: timestamp,
  })
  .refine((b) => b.jobs * b.providers.length <= 256, "jobs * providers must be at most 256");

/**
 * Checks a batch's shape and ranges.
 *
 * @throws UserError `ESCROW_BATCH_INVALID` with the first problem.
 */
export function parseEscrowBatch(batch: unknown): EscrowBatch {
  const parsed = escrowBatchSchema.safeParse(batch);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError("ESCROW_BATCH_INVALID", "The escrow batch is invalid", {
      details: `${issue?.path.join(".")}: ${issue?.message}`,
      cause: parsed.error,
    });
  }
  return parsed.data;
}

const BATCH_TUPLE = "tuple(address,uint40,bytes32,uint16,address[],uint96,uint96,uint8,uint40,uint40,uint40)";
const coder = AbiCoder.defaultAbiCoder();

/** The batch as the ABI tuple the contract takes. */
export function batchTuple(b: EscrowBatch): unknown[] {
  return [
    b.requestor,
    b.nonce,
    b.qubesRoot,
    b.jobs,
    b.providers,
    b.price,
    b.stake,
    b.quorum,
    b.commitDeadline,
    b.revealDeadline,
    b.finalDeadline,
  ];
}

/**
 * The batch's id, `keccak256(abi.encode(batch))`.
 *
 * @example
 * const id = batchIdOf(batch); // "0x…" (32 bytes)
 */
export function batchIdOf(b: EscrowBatch): string {
  return keccak256(coder.encode([BATCH_TUPLE], [batchTuple(b)]));
}

/** `keccak256(abi.encodePacked(qubeIds))`: the batch's `qubesRoot`. */
export function qubesRootOf(qubeIds: readonly string[]): string {
  return keccak256(solidityPacked(Array(qubeIds.length).fill("bytes32"), qubeIds));
}

/** The requestor's lock at open: `price * k * jobs`. */
export function batchBudgetOf(b: EscrowBatch): bigint {
  return b.price * BigInt(b.providers.length) * BigInt(b.jobs);
}

/**
 * A provider's commitment to job `job` of a batch: `keccak256(abi.encode(batchId, job, outputsRoot, salt,
 * provider))`.
 */
export function batchCommitmentOf(
  batchId: string,
  job: number,
  outputsRoot: string,
  salt: string,
  provider: string,
): string {
  return keccak256(
    coder.encode(["bytes32", "uint256", "bytes32", "bytes32", "address"], [batchId, job, outputsRoot, salt, provider]),
  );
}

/** The EIP-712 domain of an escrow v2 deployment (bound to the chain and the escrow's address). */
export function escrowV2Domain(chainId: bigint | number, escrow: string): TypedDataDomain {
  return { name: "AirqubeEscrowV2", version: "1", chainId, verifyingContract: escrow };
}

/** EIP-712 types of a provider's consent to a batch. */
export const ACCEPT_TYPES = { Accept: [{ name: "batchId", type: "bytes32" }] };

/**
 * EIP-712 types of a provider's consent to a follow-up batch (a tie-breaker or replacement round) in the group of
 * the qube's first batch, `leaderId`: its votes are then counted with the whole group's.
 */
export const FOLLOW_UP_TYPES = {
  FollowUp: [
    { name: "batchId", type: "bytes32" },
    { name: "leaderId", type: "bytes32" },
  ],
};

/** EIP-712 types of a provider's commitments (`commitments` hashes its column, see {@link columnHashOf}). */
export const COMMITMENTS_TYPES = {
  Commitments: [
    { name: "batchId", type: "bytes32" },
    { name: "commitments", type: "bytes32" },
  ],
};

/** `keccak256(abi.encodePacked(column))`: what a `Commitments` statement signs. */
export function columnHashOf(column: readonly string[]): string {
  return qubesRootOf(column);
}

/** A 65-byte signature as the compact (EIP-2098) pair `[r, vs]` the contract takes. */
export function compactSignature(signature: string): [string, string] {
  const s = Signature.from(signature);
  return [s.r, s.yParityAndS];
}
