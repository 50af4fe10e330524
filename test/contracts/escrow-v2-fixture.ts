/**
 * Fixture and helpers of the escrow v2 contract tests (`test/contracts/escrow-v2*.test.ts`).
 */
import type { ContractTransactionResponse, Signer } from "ethers";
import {
  ACCEPT_TYPES,
  batchCommitmentOf,
  batchIdOf,
  batchTuple,
  COMMITMENTS_TYPES,
  compactSignature,
  type EscrowBatch,
  escrowV2Domain,
  FOLLOW_UP_TYPES,
  qubesRootOf,
} from "../../src/chain/escrow-v2-batch.js";
import { E18, ethers, hex32, now, type TokenT } from "./helpers.js";

type Tx = Promise<ContractTransactionResponse>;

export const PRICE2 = 10n * E18;
export const STAKE2 = 3n * E18 + 1n; // odd: shares of slashed stakes leave dust
export const DEPOSIT = 500n * E18;
export const R = hex32(0xaaaa);
export const W = hex32(0xbbbb);
export const ZERO = hex32(0);

/** The v2 escrow's functions, typed for the tests. */
export interface EscrowV2T {
  getAddress(): Promise<string>;
  connect(s: Signer): EscrowV2T;
  interface: import("ethers").Interface;
  deposit(amount: bigint): Tx;
  depositWithPermit(amount: bigint, deadline: bigint, v: number, r: string, s: string): Tx;
  withdraw(amount: bigint): Tx;
  open(batch: unknown[], accepts: string[]): Tx;
  openFollowUp(batch: unknown[], accepts: string[], leader: unknown[]): Tx;
  settleGroup(batches: unknown[][], signatures: string[][], openings: string[][]): Tx;
  finalizeGroup(batches: unknown[][], commitments: string[][], openings: string[][]): Tx;
  batchGroup(batch: unknown[]): Promise<[boolean, boolean, bigint]>;
  followUpDigest(id: string, leaderId: string): Promise<string>;
  settle(batch: unknown[], signatures: string[], openings: string[]): Tx;
  release(batch: unknown[]): Tx;
  propose(batch: unknown[], signatures: string[], commitments: string[]): Tx;
  addCommitments(batch: unknown[], commitments: string[], seat: number, sig: string[], column: string[]): Tx;
  proveEquivocation(batch: unknown[], seat: number, columnHashes: string[], signatures: string[]): Tx;
  reveal(batch: unknown[], commitments: string[], openings: string[]): Tx;
  finalize(batch: unknown[], commitments: string[], openings: string[]): Tx;
  reclaim(batch: unknown[]): Tx;
  balanceOf(a: string): Promise<bigint>;
  batchState(batch: unknown[]): Promise<[bigint, bigint, bigint, string]>;
  batchIdOf(batch: unknown[]): Promise<string>;
  commitmentOf(id: string, job: number, root: string, salt: string, provider: string): Promise<string>;
  acceptDigest(id: string): Promise<string>;
  commitmentsDigest(id: string, column: string[]): Promise<string>;
  token(): Promise<string>;
  deploymentBlock(): Promise<bigint>;
  MAX_PROVIDERS(): Promise<bigint>;
  MAX_FOLLOW_UP_SEATS(): Promise<bigint>;
}

/** Deploys a token (TestGLM by default) and the v2 escrow; every account deposits {@link DEPOSIT}. */
export async function deployV2(tokenName = "TestGLM", depositAll = true) {
  const [deployer, requestor, p0, p1, p2, p3, p4, outsider] = await ethers.getSigners();
  const token = (await ethers.deployContract(tokenName)) as unknown as TokenT;
  const escrow = (await ethers.deployContract("AirqubeEscrowV2", [await token.getAddress()])) as unknown as EscrowV2T;
  const providers = [p0!, p1!, p2!, p3!, p4!];
  for (const s of [requestor!, ...providers, outsider!]) {
    await token.mint(await s.getAddress(), 1_000n * E18);
    await token.connect(s).approve(await escrow.getAddress(), ethers.MaxUint256);
    if (depositAll) await escrow.connect(s).deposit(DEPOSIT);
  }
  const { chainId } = await ethers.provider.getNetwork();
  return { deployer: deployer!, requestor: requestor!, providers, outsider: outsider!, token, escrow, chainId };
}

export async function v2Fixture() {
  return deployV2("TestGLM");
}

/** A batch of `jobs` qubes on `seats`; deadlines 100/200/500 s ahead (window 100 s). */
export async function makeBatch(
  requestor: Signer,
  seats: Signer[],
  overrides: Partial<EscrowBatch> = {},
): Promise<EscrowBatch> {
  const t = await now();
  const jobs = overrides.jobs ?? 1;
  const k = overrides.providers?.length ?? seats.length;
  return {
    requestor: await requestor.getAddress(),
    nonce: 1n,
    qubesRoot: qubesRootOf(Array.from({ length: jobs }, (_, j) => hex32(0xc0be00 + j))),
    jobs,
    providers: await Promise.all(seats.map((p) => p.getAddress())),
    price: PRICE2,
    stake: STAKE2,
    quorum: Math.floor(k / 2) + 1,
    commitDeadline: t + 100,
    revealDeadline: t + 200,
    finalDeadline: t + 500,
    ...overrides,
  };
}

export const bt = batchTuple;

/** The escrow's EIP-712 domain on this chain (or on another chain / escrow, for forged statements). */
export async function domainOf(escrow: EscrowV2T, chainId?: bigint) {
  return escrowV2Domain(chainId ?? (await ethers.provider.getNetwork()).chainId, await escrow.getAddress());
}

/** Every seat's `Accept` signature, flattened `[r0, vs0, r1, vs1, …]`. */
export async function acceptsOf(escrow: EscrowV2T, batch: EscrowBatch, seats: Signer[], chainId?: bigint) {
  const domain = await domainOf(escrow, chainId);
  const out: string[] = [];
  for (const s of seats) {
    out.push(...compactSignature(await s.signTypedData(domain, ACCEPT_TYPES, { batchId: batchIdOf(batch) })));
  }
  return out;
}

/** Every seat's `FollowUp` signature (consent to join `leader`'s group), flattened `[r0, vs0, …]`. */
export async function followUpAcceptsOf(escrow: EscrowV2T, batch: EscrowBatch, leader: EscrowBatch, seats: Signer[]) {
  const domain = await domainOf(escrow);
  const out: string[] = [];
  const value = { batchId: batchIdOf(batch), leaderId: batchIdOf(leader) };
  for (const s of seats) out.push(...compactSignature(await s.signTypedData(domain, FOLLOW_UP_TYPES, value)));
  return out;
}

/** Opens `batch` as a follow-up of `leader` with every seat's consent. */
export async function openFollowUpBatch(
  escrow: EscrowV2T,
  requestor: Signer,
  batch: EscrowBatch,
  leader: EscrowBatch,
  seats: Signer[],
) {
  return escrow
    .connect(requestor)
    .openFollowUp(bt(batch), await followUpAcceptsOf(escrow, batch, leader, seats), bt(leader));
}

export function saltOf(job: number, seat: number): string {
  return hex32(0x5a170000n + BigInt(job * 16 + seat));
}

/**
 * The statements of a batch: `roots[job][seat]` is the seat's root for the job (undefined = the seat did not
 * commit to that job). Returns the job-major commitments, the openings `[root, salt]` per position and each
 * seat's `Commitments` signature (zeros for a seat that committed to nothing).
 */
export async function statementsOf(
  escrow: EscrowV2T,
  batch: EscrowBatch,
  seats: Signer[],
  roots: (string | undefined)[][],
  chainId?: bigint,
) {
  const id = batchIdOf(batch);
  const k = batch.providers.length;
  const commitments: string[] = [];
  const openings: string[] = [];
  for (let j = 0; j < batch.jobs; j++) {
    for (let s = 0; s < k; s++) {
      const root = roots[j]![s];
      if (root === undefined) {
        commitments.push(ZERO);
        openings.push(ZERO, ZERO);
      } else {
        commitments.push(batchCommitmentOf(id, j, root, saltOf(j, s), batch.providers[s]!));
        openings.push(root, saltOf(j, s));
      }
    }
  }
  const domain = await domainOf(escrow, chainId);
  const signatures: string[] = [];
  const columns: string[][] = [];
  for (let s = 0; s < k; s++) {
    const column = Array.from({ length: batch.jobs }, (_, j) => commitments[j * k + s]!);
    columns.push(column);
    if (column.every((c) => c === ZERO)) {
      signatures.push(ZERO, ZERO);
      continue;
    }
    const value = { batchId: id, commitments: qubesRootOf(column) };
    signatures.push(...compactSignature(await seats[s]!.signTypedData(domain, COMMITMENTS_TYPES, value)));
  }
  return { id, commitments, openings, signatures, columns };
}

/** Same roots for every job: `perSeat[seat]`. */
export function uniform(batch: EscrowBatch, perSeat: (string | undefined)[]): (string | undefined)[][] {
  return Array.from({ length: batch.jobs }, () => perSeat);
}

/** Opens the batch with every seat's consent. */
export async function openBatch(escrow: EscrowV2T, requestor: Signer, batch: EscrowBatch, seats: Signer[]) {
  return escrow.connect(requestor).open(bt(batch), await acceptsOf(escrow, batch, seats));
}

/** What the escrow owes: every account's balance plus the locks of open and proposed batches. */
export async function owedV2(escrow: EscrowV2T, accounts: string[], batches: EscrowBatch[]): Promise<bigint> {
  let sum = 0n;
  for (const a of accounts) sum += await escrow.balanceOf(a);
  for (const b of batches) {
    const [status] = await escrow.batchState(batchTuple(b));
    if (status === 1n || status === 2n) {
      sum += (b.price + b.stake) * BigInt(b.providers.length) * BigInt(b.jobs);
    }
  }
  return sum;
}
