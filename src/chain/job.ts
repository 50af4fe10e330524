/**
 * Escrow jobs as plain data, and the pure hashing the contract does (job id, commitment), so that clients
 * compute them without a round trip.
 */
import { AbiCoder, keccak256 } from "ethers";
import { z } from "zod";
import { UserError } from "../qube/errors.js";

/** The parameters of an escrow job (the contract's `Job` struct); its id is their hash. */
export interface EscrowJob {
  /** The account that opens the job and pays. */
  requestor: string;
  /** The qube id (32 bytes, 0x-hex). */
  qubeId: string;
  /** Distinguishes repeated jobs of the same qube (uint64). */
  nonce: bigint;
  /** The providers, distinct, 1 to 12; a provider's index is its seat. */
  providers: string[];
  /** Paid to each provider of the quorum, in token wei; the budget is `price * providers.length`. */
  price: bigint;
  /** Bonded by each provider with its commitment. */
  stake: bigint;
  /** Equal roots needed; `2 * quorum > providers.length`. */
  quorum: number;
  /** Unix seconds (block timestamps, inclusive). */
  commitDeadline: number;
  revealDeadline: number;
  finalDeadline: number;
}

/** One entry of the commitment chain (in commit order), with its opening or zeros. */
export interface Opening {
  index: number;
  commitment: string;
  outputsRoot: string;
  salt: string;
}

/** The zero bytes32, used for "not revealed". */
export const ZERO_BYTES32 = `0x${"00".repeat(32)}`;

const JOB_TUPLE = "tuple(address,bytes32,uint64,address[],uint96,uint96,uint8,uint40,uint40,uint40)";
const coder = AbiCoder.defaultAbiCoder();

/** Field schemas shared by the escrow's job (v1) and batch (v2) records. */
export const bytes32 = z.string().regex(/^0x[0-9a-fA-F]{64}$/, "expected 32 bytes of 0x-hex");
/** A 20-byte 0x-hex address. */
export const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, "expected a 20-byte 0x-hex address");
/** An unsigned integer of `bits` bits, as a bigint. */
export const uint = (bits: number) =>
  z
    .bigint()
    .nonnegative()
    .max((1n << BigInt(bits)) - 1n);
/** Unix seconds as the contract stores them (uint40). */
export const timestamp = z
  .number()
  .int()
  .nonnegative()
  .max(2 ** 40 - 1);

/** Schema of an {@link EscrowJob} (shape and ranges; the contract checks the rules between fields). */
export const escrowJobSchema = z.object({
  requestor: address,
  qubeId: bytes32,
  nonce: uint(64),
  providers: z.array(address).min(1).max(12),
  price: uint(96),
  stake: uint(96),
  quorum: z.number().int().min(1).max(12),
  commitDeadline: timestamp,
  revealDeadline: timestamp,
  finalDeadline: timestamp,
});

/**
 * Checks a job's shape and ranges.
 *
 * @throws UserError `ESCROW_JOB_INVALID` with the first problem.
 */
export function parseEscrowJob(job: unknown): EscrowJob {
  const parsed = escrowJobSchema.safeParse(job);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UserError("ESCROW_JOB_INVALID", "The escrow job is invalid", {
      details: `${issue?.path.join(".")}: ${issue?.message}`,
      cause: parsed.error,
    });
  }
  return parsed.data;
}

/** The job as the ABI tuple the contract takes. */
export function jobTuple(job: EscrowJob): unknown[] {
  return [
    job.requestor,
    job.qubeId,
    job.nonce,
    job.providers,
    job.price,
    job.stake,
    job.quorum,
    job.commitDeadline,
    job.revealDeadline,
    job.finalDeadline,
  ];
}

/**
 * The job's id, `keccak256(abi.encode(job))`, as the contract computes it.
 *
 * @example
 * const jobId = jobIdOf(job); // "0x…" (32 bytes)
 */
export function jobIdOf(job: EscrowJob): string {
  return keccak256(coder.encode([JOB_TUPLE], [jobTuple(job)]));
}

/** The budget the requestor locks: `price * providers.length`. */
export function budgetOf(job: EscrowJob): bigint {
  return job.price * BigInt(job.providers.length);
}

/**
 * A provider's commitment, `keccak256(abi.encode(jobId, outputsRoot, salt, provider))`.
 *
 * @example
 * const c = escrowCommitmentOf(jobIdOf(job), outputsRoot, salt, myAddress);
 */
export function escrowCommitmentOf(jobId: string, outputsRoot: string, salt: string, provider: string): string {
  return keccak256(coder.encode(["bytes32", "bytes32", "bytes32", "address"], [jobId, outputsRoot, salt, provider]));
}

/** The ABI tuple of an opening. */
export function openingTuple(o: Opening): unknown[] {
  return [o.index, o.commitment, o.outputsRoot, o.salt];
}
