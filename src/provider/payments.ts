/**
 * The provider's side of paying on agreement: before admitting a paid qube it checks that the proposal's
 * escrow job is the one the agreement names, that this provider holds a seat in it, and that the job is open
 * on chain (its budget locked: `openJob` pulls the budget in the same transaction); at commit time it bonds
 * its stake and commits on chain with the salt of its off-chain commitment.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ChainError } from "../chain/errors.js";
import { EscrowClient, type OwnOpening } from "../chain/escrow-client.js";
import { type EscrowJob, jobIdOf } from "../chain/job.js";
import { jobFromJson } from "../chain/job-json.js";
import { qubeIdToBytes32 } from "../chain/qube-ids.js";
import type { CallOptions } from "../chain/rpc.js";
import type { AgreementTerms } from "../net/agreement.js";
import type { EscrowJobWire } from "../net/exchange/messages.js";
import { UserError } from "../qube/errors.js";
import type { Refusal } from "./admission.js";

/** Where a provider is paid: the chain's RPC endpoint and the escrow contract. */
export interface ProviderChainConfig {
  rpcUrl: string;
  escrow: string;
  /** Largest stake this provider bonds for one qube, wei (decimal string). */
  maxStake: string;
}

/** Least time a provider needs between admission and the commit deadline beyond the qube's wall time. */
const COMMIT_MARGIN_MS = 5_000;

const chainFileSchema = z.strictObject({
  rpcUrl: z.string().min(1).max(2048),
  escrow: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
});

/** Writes `chain.json` (RPC URL and escrow; no key) in a data directory, for `airqube provider earnings`. */
export function writeChainFile(dataDir: string, chain: { rpcUrl: string; escrow: string }): void {
  writeFileSync(join(dataDir, "chain.json"), `${JSON.stringify({ rpcUrl: chain.rpcUrl, escrow: chain.escrow })}\n`, {
    mode: 0o600,
  });
}

/** Reads `chain.json` from a data directory, if a paid agent ran there. */
export function readChainFile(dataDir: string): { rpcUrl: string; escrow: string } | undefined {
  const path = join(dataDir, "chain.json");
  if (!existsSync(path)) return undefined;
  try {
    return chainFileSchema.parse(JSON.parse(readFileSync(path, "utf8")));
  } catch (error) {
    throw new UserError("CONFIG_INVALID", "The chain file of the data directory is invalid", {
      details: path,
      cause: error,
    });
  }
}

/**
 * Checks escrow jobs at admission and commits on chain, for one provider account.
 *
 * @example
 * const payments = await ProviderPayments.connect(config.chain, wallet.privateKey);
 * const verdict = await payments.check({ escrow, terms, qubeId, wallTimeMs, now });
 */
export class ProviderPayments {
  private constructor(
    readonly client: EscrowClient,
    private readonly maxStake: bigint,
  ) {}

  /**
   * Connects the payout account to the escrow.
   *
   * @throws ChainError `CHAIN_UNREACHABLE` or `CHAIN_INVALID_RESPONSE` (no escrow at that address).
   */
  static async connect(
    chain: ProviderChainConfig,
    privateKey: string,
    options: CallOptions = {},
  ): Promise<ProviderPayments> {
    const client = await EscrowClient.connect({ rpcUrl: chain.rpcUrl, escrow: chain.escrow, privateKey }, options);
    return new ProviderPayments(client, BigInt(chain.maxStake));
  }

  /**
   * Decides whether a paid proposal may be admitted: the job must be the agreement's, name this qube and this
   * provider, pay at least the agreed price, leave time to commit, ask a stake within bounds, and be open on
   * chain. Returns the job, or a refusal with a stable code and a reason the requestor can act on.
   */
  async check(
    input: { escrow?: EscrowJobWire; terms: AgreementTerms; qubeId: string; wallTimeMs: number; now: Date },
    options: CallOptions = {},
  ): Promise<{ ok: true; job: EscrowJob } | ({ ok: false } & Refusal)> {
    const refuse = (code: string, reason: string) => ({ ok: false as const, code, reason });
    const { escrow, terms } = input;
    const me = this.client.address.toLowerCase();
    if (!escrow || !terms.escrowJob) {
      return refuse(
        "ESCROW_REQUIRED",
        `this provider works paid only: lock the budget in escrow ${this.client.escrowAddress} on chain ${this.client.chainId} and name the job in the agreement`,
      );
    }
    if (
      escrow.chainId !== this.client.chainId ||
      escrow.escrow.toLowerCase() !== this.client.escrowAddress.toLowerCase()
    )
      return refuse(
        "ESCROW_MISMATCH",
        `the job is on escrow ${escrow.escrow} (chain ${escrow.chainId}); this provider is paid through ${this.client.escrowAddress} (chain ${this.client.chainId})`,
      );
    let job: EscrowJob;
    try {
      job = jobFromJson(escrow);
    } catch (error) {
      return refuse("ESCROW_INVALID", `the escrow job is malformed: ${(error as Error).message}`);
    }
    const jobId = jobIdOf(job);
    if (jobId !== terms.escrowJob.toLowerCase())
      return refuse("ESCROW_MISMATCH", `the escrow job hashes to ${jobId}, the agreement names ${terms.escrowJob}`);
    if (job.qubeId !== qubeIdToBytes32(input.qubeId))
      return refuse("ESCROW_MISMATCH", "the escrow job is for another qube");
    const seat = job.providers.findIndex((p) => p.toLowerCase() === me);
    if (seat < 0)
      return refuse("ESCROW_MISMATCH", `this provider's payout address ${this.client.address} has no seat in the job`);
    if (job.price < BigInt(terms.price))
      return refuse("ESCROW_MISMATCH", `the job pays ${job.price} wei, the agreement says ${terms.price} wei`);
    if (job.stake > this.maxStake)
      return refuse(
        "STAKE_TOO_HIGH",
        `the job asks a stake of ${job.stake} wei, this provider bonds at most ${this.maxStake} wei`,
      );
    if (job.commitDeadline * 1000 < input.now.getTime() + input.wallTimeMs + COMMIT_MARGIN_MS)
      return refuse("ESCROW_DEADLINE", "the job's commit deadline leaves no time to run the qube and commit");
    try {
      const state = await this.client.jobState(jobId, options);
      if (state.status !== "open")
        return refuse(
          "ESCROW_NOT_OPEN",
          `escrow job ${jobId} is ${state.status === "none" ? "not opened" : state.status} on chain: its budget is not locked`,
        );
      if (state.committed.includes(seat))
        return refuse("ESCROW_NOT_OPEN", `seat ${seat} of job ${jobId} has already committed`);
      if (job.stake > 0n && (await this.client.tokenBalanceOf(this.client.address, options)) < job.stake)
        return refuse("STAKE_UNAVAILABLE", `this provider cannot bond the stake of ${job.stake} wei`);
    } catch (error) {
      const code = error instanceof ChainError ? error.code : "CHAIN_INVALID_RESPONSE";
      return refuse("ESCROW_UNVERIFIABLE", `could not check the escrow job on chain (${code})`);
    }
    return { ok: true, job };
  }

  /** Bonds the stake and commits `own` (outputs root and salt as bytes32) on chain. */
  async commit(
    job: EscrowJob,
    own: OwnOpening,
    options: CallOptions = {},
  ): Promise<{ hash: string; commitment: string }> {
    const { hash, commitment } = await this.client.commit(job, own, options);
    return { hash, commitment };
  }

  close(): void {
    this.client.close();
  }
}
