/**
 * Shared fixture and helpers of the contract tests (run by `hardhat test mocha`, see hardhat.config.ts).
 */
import type {} from "@nomicfoundation/hardhat-toolbox-mocha-ethers";
import type { ContractTransactionResponse, Signer } from "ethers";
import { network } from "hardhat";
import {
  budgetOf,
  type EscrowJob,
  escrowCommitmentOf,
  jobIdOf,
  jobTuple,
  type Opening,
  ZERO_BYTES32,
} from "../../src/chain/job.js";

export const connection = await network.create();
export const { ethers, networkHelpers } = connection;

export const E18 = 10n ** 18n;
export const PRICE = 10n * E18;
export const STAKE = 3n * E18 + 1n; // odd, so that shares of slashed stakes leave dust

type Tx = Promise<ContractTransactionResponse>;

/** The escrow's functions, typed for the tests. */
export interface EscrowT {
  getAddress(): Promise<string>;
  connect(s: Signer): EscrowT;
  interface: import("ethers").Interface;
  openJob(job: unknown[]): Tx;
  openFollowUp(job: unknown[], leader: unknown[]): Tx;
  requestReveal(job: unknown[]): Tx;
  settleGroup(jobs: unknown[][], openings: unknown[][][]): Tx;
  jobGroup(id: string): Promise<[boolean, bigint, bigint]>;
  deploymentBlock(): Promise<bigint>;
  commit(job: unknown[], index: number | bigint, commitment: string): Tx;
  reveal(job: unknown[], openings: unknown[][]): Tx;
  settle(job: unknown[], openings: unknown[][]): Tx;
  reclaim(job: unknown[]): Tx;
  withdraw(): Tx;
  balanceOf(a: string): Promise<bigint>;
  jobState(id: string): Promise<[bigint, bigint, bigint, bigint]>;
  jobIdOf(job: unknown[]): Promise<string>;
  commitmentOf(jobId: string, root: string, salt: string, provider: string): Promise<string>;
  token(): Promise<string>;
  MAX_PROVIDERS(): Promise<bigint>;
}

export interface TokenT {
  getAddress(): Promise<string>;
  connect(s: Signer): TokenT;
  interface: import("ethers").Interface;
  mint(to: string, amount: bigint): Tx;
  approve(spender: string, amount: bigint): Tx;
  transfer(to: string, amount: bigint): Tx;
  balanceOf(a: string): Promise<bigint>;
  decimals(): Promise<bigint>;
  arm(target: string, payload: string, bubble: boolean): Tx;
  attempts(): Promise<bigint>;
  successes(): Promise<bigint>;
  lastError(): Promise<string>;
}

export function hex32(n: number | bigint): string {
  return `0x${BigInt(n).toString(16).padStart(64, "0")}`;
}

/** Deploys a token (TestGLM by default) and the escrow; funds and approves requestor and providers. */
export async function deploy(tokenName = "TestGLM") {
  const [deployer, requestor, p0, p1, p2, p3, p4, outsider] = await ethers.getSigners();
  const token = (await ethers.deployContract(tokenName)) as unknown as TokenT;
  const escrow = (await ethers.deployContract("AirqubeEscrow", [await token.getAddress()])) as unknown as EscrowT;
  const providers = [p0!, p1!, p2!, p3!, p4!];
  for (const s of [requestor!, ...providers, outsider!]) {
    await token.mint(await s.getAddress(), 1_000n * E18);
    await token.connect(s).approve(await escrow.getAddress(), ethers.MaxUint256);
  }
  return { deployer: deployer!, requestor: requestor!, providers, outsider: outsider!, token, escrow };
}

export async function deployEscrowFixture() {
  return deploy("TestGLM");
}

export async function now(): Promise<number> {
  return (await ethers.provider.getBlock("latest"))!.timestamp;
}

/** A job for `k` of the fixture's providers, deadlines 100/200/300 s ahead. */
export async function makeJob(
  requestor: Signer,
  providers: Signer[],
  overrides: Partial<EscrowJob> = {},
): Promise<EscrowJob> {
  const t = await now();
  const k = overrides.providers?.length ?? providers.length;
  return {
    requestor: await requestor.getAddress(),
    qubeId: hex32(0xc0be),
    nonce: 1n,
    providers: await Promise.all(providers.map((p) => p.getAddress())),
    price: PRICE,
    stake: STAKE,
    quorum: Math.floor(k / 2) + 1,
    commitDeadline: t + 100,
    revealDeadline: t + 200,
    finalDeadline: t + 300,
    ...overrides,
  };
}

export function t(job: EscrowJob): unknown[] {
  return jobTuple(job);
}

/** A provider's opening for `root` (salt derived from the seat). */
export function own(job: EscrowJob, index: number, root: string): Opening {
  const salt = hex32(0x5a17n + BigInt(index));
  return {
    index,
    commitment: escrowCommitmentOf(jobIdOf(job), root, salt, job.providers[index]!),
    outputsRoot: root,
    salt,
  };
}

export function hidden(o: Opening): Opening {
  return { ...o, outputsRoot: ZERO_BYTES32, salt: ZERO_BYTES32 };
}

export function tuples(openings: Opening[]): unknown[][] {
  return openings.map((o) => [o.index, o.commitment, o.outputsRoot, o.salt]);
}

/** Opens `job` and commits the given openings in order; returns them. */
export async function openAndCommit(
  escrow: EscrowT,
  requestor: Signer,
  providers: Signer[],
  job: EscrowJob,
  openings: Opening[],
): Promise<Opening[]> {
  await escrow.connect(requestor).openJob(t(job));
  for (const o of openings) await escrow.connect(providers[o.index]!).commit(t(job), o.index, o.commitment);
  return openings;
}

export { budgetOf, escrowCommitmentOf as commitmentOf, jobIdOf, ZERO_BYTES32 };
