/**
 * `EscrowClient`: typed access to the AirqubeEscrow contract for one account (a requestor or a provider).
 */
import {
  Contract,
  type ContractTransactionResponse,
  type EventLog,
  type JsonRpcProvider,
  type Log,
  type TransactionReceipt,
  Wallet,
} from "ethers";
import { z } from "zod";
import { airqubeEscrowAbi } from "./abi/airqube-escrow.js";
import { testGLMAbi } from "./abi/test-glm.js";
import { ChainError } from "./errors.js";
import {
  budgetOf,
  type EscrowJob,
  escrowCommitmentOf,
  jobIdOf,
  jobTuple,
  type Opening,
  openingTuple,
  parseEscrowJob,
  ZERO_BYTES32,
} from "./job.js";
import { type LogRange, queryLogPages } from "./log-pages.js";
import { type CallOptions, createRpcProvider, fetchChainId, runChainCall } from "./rpc.js";

/** What a transaction did. */
export interface TxResult {
  hash: string;
  blockNumber: number;
  gasUsed: bigint;
}

/** A job's on-chain state. */
export interface EscrowJobState {
  status: "none" | "open" | "settled" | "reclaimed";
  /** Seats (provider indexes) that committed, and that revealed on chain. */
  committed: number[];
  revealed: number[];
}

/** A job's group (see the contract's `openFollowUp`) and its on-chain reveal request. */
export interface JobGroup {
  /** The job is a follow-up (replacement or tie-breaker) of a leader. */
  followUp: boolean;
  /** How many follow-ups the job leads. */
  followUps: number;
  /** When the requestor asked for reveals on chain (unix seconds), or 0. */
  revealRequestedAt: number;
}

/** A provider's own opening, kept secret until the reveal. */
export interface OwnOpening {
  outputsRoot: string;
  salt: string;
}

/** A credit to an account's withdrawable balance (from the `Credited` events). */
export interface Credit {
  jobId: string;
  amount: bigint;
  blockNumber: number;
  txHash: string;
}

/** One withdrawal from the escrow to an account's wallet (a `Withdrawn` event). */
export interface Withdrawal {
  amount: bigint;
  blockNumber: number;
  txHash: string;
}

/** How the client reaches the chain. */
export interface EscrowClientConfig {
  /** JSON-RPC endpoint, e.g. the devnet's `http://127.0.0.1:8545` or a Polygon RPC. */
  rpcUrl: string;
  /** The account's key (0x-hex). Never logged. */
  privateKey: string;
  /** The escrow contract's address. */
  escrow: string;
  /** Polling interval for receipts, in milliseconds (default 250). */
  pollingIntervalMs?: number;
  /**
   * Widest block range of one `eth_getLogs` request (default {@link DEFAULT_LOG_RANGE_BLOCKS}): event reads
   * start at the escrow's deployment block and page through ranges of this size, which public RPCs accept.
   */
  logRangeBlocks?: number;
}

/** Default widest block range of one `eth_getLogs` request. */
export const DEFAULT_LOG_RANGE_BLOCKS = 2_000;

const STATUSES = ["none", "open", "settled", "reclaimed"] as const;
const hex32 = z.string().regex(/^0x[0-9a-fA-F]{64}$/);
const committedLog = z.object({ commitment: hex32, provider: z.string() });
const revealedLog = z.object({ provider: z.string(), outputsRoot: hex32, salt: hex32 });
const jobStateAnswer = z.tuple([z.bigint().max(3n), z.bigint(), z.bigint(), z.bigint()]);
const jobGroupAnswer = z.tuple([z.boolean(), z.bigint().max(31n), z.bigint().max((1n << 40n) - 1n)]);
const jobArgs = z.tuple([
  z.string(),
  hex32,
  z.bigint(),
  z.array(z.string()),
  z.bigint(),
  z.bigint(),
  z.bigint(),
  z.bigint(),
  z.bigint(),
  z.bigint(),
]);

/**
 * Typed access to the escrow for one account. Every method takes `{ signal, timeoutMs }` last; failures are
 * {@link ChainError}s (`CHAIN_REVERTED` with the decoded custom error, `CHAIN_UNREACHABLE`, `CHAIN_TIMEOUT`).
 * Transactions of one client are sent one at a time (nonces stay in order).
 *
 * @example
 * const requestor = await EscrowClient.connect({ rpcUrl, privateKey, escrow });
 * const { jobId } = await requestor.openJob(job);
 * // providers: await provider.commit(job, outputsRoot, salt)
 * await requestor.settle(job, openingsFromProviders);
 * await provider.withdraw();
 */
export class EscrowClient {
  readonly address: string;
  readonly escrowAddress: string;
  readonly tokenAddress: string;
  readonly chainId: number;
  /** The block the escrow was deployed in: event reads start there. */
  readonly deploymentBlock: number;
  readonly #logRange: LogRange;
  readonly #provider: JsonRpcProvider;
  readonly #escrow: Contract;
  readonly #token: Contract;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    provider: JsonRpcProvider,
    wallet: Wallet,
    escrow: string,
    token: string,
    chainId: number,
    deploymentBlock: number,
    logRange: number,
  ) {
    this.deploymentBlock = deploymentBlock;
    this.#logRange = { blocks: logRange };
    this.#provider = provider;
    this.address = wallet.address;
    this.escrowAddress = escrow;
    this.tokenAddress = token;
    this.chainId = chainId;
    this.#escrow = new Contract(escrow, airqubeEscrowAbi, wallet);
    this.#token = new Contract(token, testGLMAbi, wallet);
  }

  /**
   * Connects to the chain, checks that the escrow is deployed there and reads its token.
   *
   * @throws ChainError `CHAIN_UNREACHABLE` when the RPC endpoint does not answer, `CHAIN_INVALID_RESPONSE`
   * when no contract is deployed at `escrow`.
   */
  static async connect(config: EscrowClientConfig, options: CallOptions = {}): Promise<EscrowClient> {
    const chainId = await fetchChainId(config.rpcUrl, options);
    const provider = createRpcProvider(config.rpcUrl, chainId, config.pollingIntervalMs);
    const wallet = new Wallet(config.privateKey, provider);
    return runChainCall(
      "connect to the escrow",
      async () => {
        const code = await provider.getCode(config.escrow);
        if (code === "0x") {
          throw new ChainError("CHAIN_INVALID_RESPONSE", "No escrow contract at the configured address", {
            details: `${config.escrow} on chain ${chainId}`,
          });
        }
        const contract = new Contract(config.escrow, airqubeEscrowAbi, provider);
        const token = z.string().parse(await contract.getFunction("token")());
        const deployedAt = z
          .bigint()
          .nonnegative()
          .parse(await contract.getFunction("deploymentBlock")());
        const range = config.logRangeBlocks ?? DEFAULT_LOG_RANGE_BLOCKS;
        if (!Number.isInteger(range) || range < 1 || range > 1_000_000) {
          throw new ChainError("CHAIN_INVALID_RESPONSE", "The log range must be 1 to 1 000 000 blocks", {
            details: String(range),
          });
        }
        return new EscrowClient(provider, wallet, config.escrow, token, chainId, Number(deployedAt), range);
      },
      options,
    );
  }

  /** Stops polling and releases the connection. */
  close(): void {
    this.#provider.destroy();
  }

  /**
   * Opens a job and locks its budget; approves the escrow for the token first if needed. The caller must be
   * `job.requestor`.
   */
  async openJob(job: EscrowJob, options: CallOptions = {}): Promise<TxResult & { jobId: string }> {
    const checked = parseEscrowJob(job);
    const result = await this.#send(
      "open the job",
      async () => {
        await this.#ensureAllowance(budgetOf(checked));
        return this.#escrow.getFunction("openJob")(jobTuple(checked));
      },
      options,
    );
    return { ...result, jobId: jobIdOf(checked) };
  }

  /**
   * Opens a follow-up job (replacement or tie-breaker) in the group of `leader`, the qube's first job, and
   * locks its budget. `job.nonce` must be {@link followUpNonce}`(jobIdOf(leader))`.
   */
  async openFollowUp(
    job: EscrowJob,
    leader: EscrowJob,
    options: CallOptions = {},
  ): Promise<TxResult & { jobId: string }> {
    const checked = parseEscrowJob(job);
    const lead = parseEscrowJob(leader);
    const result = await this.#send(
      "open the follow-up job",
      async () => {
        await this.#ensureAllowance(budgetOf(checked));
        return this.#escrow.getFunction("openFollowUp")(jobTuple(checked), jobTuple(lead));
      },
      options,
    );
    return { ...result, jobId: jobIdOf(checked) };
  }

  /** Asks the job's providers to reveal on chain (the requestor only); starts their full reveal window. */
  async requestReveal(job: EscrowJob, options: CallOptions = {}): Promise<TxResult> {
    const checked = parseEscrowJob(job);
    return this.#send(
      "request reveals",
      async () => this.#escrow.getFunction("requestReveal")(jobTuple(checked)),
      options,
    );
  }

  /**
   * Bonds the stake and commits to `outputsRoot` with `salt` (32 random bytes the provider keeps until the
   * reveal). The caller must be one of `job.providers`.
   */
  async commit(job: EscrowJob, own: OwnOpening, options: CallOptions = {}): Promise<TxResult & { commitment: string }> {
    const checked = parseEscrowJob(job);
    const index = this.#seat(checked);
    const commitment = escrowCommitmentOf(jobIdOf(checked), own.outputsRoot, own.salt, this.address);
    const result = await this.#send(
      "commit",
      async () => {
        await this.#ensureAllowance(checked.stake);
        return this.#escrow.getFunction("commit")(jobTuple(checked), index, commitment);
      },
      options,
    );
    return { ...result, commitment };
  }

  /**
   * Records openings on chain (a provider's own, so that a late settlement must count it). `reveals` maps a
   * provider address to its opening; the commitment chain is read from the `Committed` events.
   */
  async reveal(job: EscrowJob, reveals: ReadonlyMap<string, OwnOpening>, options: CallOptions = {}): Promise<TxResult> {
    const checked = parseEscrowJob(job);
    const openings = await this.openings(checked, reveals, options);
    return this.#send(
      "reveal",
      async () => this.#escrow.getFunction("reveal")(jobTuple(checked), openings.map(openingTuple)),
      options,
    );
  }

  /**
   * Settles the job with the openings the caller knows (`reveals`: provider address → opening); openings
   * revealed on chain are added from the `Revealed` events.
   */
  async settle(job: EscrowJob, reveals: ReadonlyMap<string, OwnOpening>, options: CallOptions = {}): Promise<TxResult> {
    const checked = parseEscrowJob(job);
    const openings = await this.openings(checked, reveals, options);
    return this.#send(
      "settle",
      async () => this.#escrow.getFunction("settle")(jobTuple(checked), openings.map(openingTuple)),
      options,
    );
  }

  /**
   * Settles a qube's group (the leader first, then its follow-ups) with the openings the caller knows (provider
   * address → opening); openings revealed on chain are added from the `Revealed` events.
   */
  async settleGroup(
    jobs: EscrowJob[],
    reveals: ReadonlyMap<string, OwnOpening>,
    options: CallOptions = {},
  ): Promise<TxResult> {
    const checked = jobs.map((j) => parseEscrowJob(j));
    const openings: Opening[][] = [];
    for (const job of checked) openings.push(await this.openings(job, reveals, options));
    return this.#send(
      "settle the group",
      async () =>
        this.#escrow.getFunction("settleGroup")(
          checked.map(jobTuple),
          openings.map((o) => o.map(openingTuple)),
        ),
      options,
    );
  }

  /** Reclaims an unsettled job after its final deadline (or its commit deadline when nobody committed). */
  async reclaim(job: EscrowJob, options: CallOptions = {}): Promise<TxResult> {
    const checked = parseEscrowJob(job);
    return this.#send("reclaim", async () => this.#escrow.getFunction("reclaim")(jobTuple(checked)), options);
  }

  /** Withdraws the caller's whole escrow balance to its account. */
  async withdraw(options: CallOptions = {}): Promise<TxResult & { amount: bigint }> {
    const amount = await this.balanceOf(this.address, options);
    const result = await this.#send("withdraw", async () => this.#escrow.getFunction("withdraw")(), options);
    return { ...result, amount };
  }

  /** What `account` (default: this client's) can withdraw from the escrow. */
  async balanceOf(account: string = this.address, options: CallOptions = {}): Promise<bigint> {
    return this.#read("read an escrow balance", () => this.#escrow.getFunction("balanceOf")(account), options);
  }

  /** The token balance of `account` (default: this client's) in its wallet. */
  async tokenBalanceOf(account: string = this.address, options: CallOptions = {}): Promise<bigint> {
    return this.#read("read a token balance", () => this.#token.getFunction("balanceOf")(account), options);
  }

  /** A job's status and the seats that committed and revealed. */
  async jobState(jobId: string, options: CallOptions = {}): Promise<EscrowJobState> {
    const raw = await runChainCall(
      "read a job's state",
      async () => jobStateAnswer.parse([...(await this.#escrow.getFunction("jobState")(jobId))]),
      options,
    );
    return {
      status: STATUSES[Number(raw[0])] ?? "none",
      committed: seats(raw[1]),
      revealed: seats(raw[2]),
    };
  }

  /** A job's group and its on-chain reveal request. */
  async jobGroup(jobId: string, options: CallOptions = {}): Promise<JobGroup> {
    const raw = await runChainCall(
      "read a job's group",
      async () => jobGroupAnswer.parse([...(await this.#escrow.getFunction("jobGroup")(jobId))]),
      options,
    );
    return { followUp: raw[0], followUps: Number(raw[1]), revealRequestedAt: Number(raw[2]) };
  }

  /**
   * The group a job belongs to, leader first, from the `FollowUpOpened` events: the job alone when it leads
   * no follow-up.
   *
   * @throws ChainError `CHAIN_INVALID_RESPONSE` when the events do not match the chain state.
   */
  async groupOf(job: EscrowJob, options: CallOptions = {}): Promise<EscrowJob[]> {
    const jobId = jobIdOf(job);
    const group = await this.jobGroup(jobId, options);
    let leader = job;
    if (group.followUp) {
      const [opened] = await this.#queryLogs(this.#escrow.filters.FollowUpOpened!(null, jobId), options);
      if (!opened) throw new ChainError("CHAIN_INVALID_RESPONSE", "A follow-up job has no FollowUpOpened event");
      leader = jobFromArgs(eventArgs(opened).leader);
    }
    const leaderId = jobIdOf(leader);
    const logs = await this.#queryLogs(this.#escrow.filters.FollowUpOpened!(leaderId), options);
    const followUps = logs.map((log) => jobFromArgs(eventArgs(log).job));
    if (leaderId !== jobId) {
      const { followUps: count } = await this.jobGroup(leaderId, options);
      if (count !== followUps.length) {
        throw new ChainError("CHAIN_INVALID_RESPONSE", "The group's events do not match its leader");
      }
    } else if (group.followUps !== followUps.length) {
      throw new ChainError("CHAIN_INVALID_RESPONSE", "The group's events do not match its leader");
    }
    return [leader, ...followUps];
  }

  /** The latest block's timestamp (the contract's clock), unix seconds. */
  async chainTime(options: CallOptions = {}): Promise<number> {
    const block = await runChainCall("read the latest block", () => this.#provider.getBlock("latest"), options);
    return block?.timestamp ?? 0;
  }

  /**
   * The job's commitment chain in commit order, filled with the given openings and those revealed on chain.
   *
   * @throws ChainError `CHAIN_INVALID_RESPONSE` when the events do not match the chain state.
   */
  async openings(
    job: EscrowJob,
    reveals: ReadonlyMap<string, OwnOpening> = new Map(),
    options: CallOptions = {},
  ): Promise<Opening[]> {
    const jobId = jobIdOf(job);
    const known = new Map([...reveals].map(([k, v]) => [k.toLowerCase(), v]));
    return runChainCall(
      "read the job's commitments",
      async () => {
        const committed = await this.#queryLogs(this.#escrow.filters.Committed!(jobId), options);
        const revealed = await this.#queryLogs(this.#escrow.filters.Revealed!(jobId), options);
        for (const log of revealed) {
          const r = revealedLog.parse(eventArgs(log));
          known.set(r.provider.toLowerCase(), { outputsRoot: r.outputsRoot, salt: r.salt });
        }
        const result = committed.map((log) => {
          const c = committedLog.parse(eventArgs(log));
          const own = known.get(c.provider.toLowerCase());
          const index = job.providers.findIndex((p) => p.toLowerCase() === c.provider.toLowerCase());
          if (index < 0) throw new ChainError("CHAIN_INVALID_RESPONSE", "A commitment came from a non-provider");
          const valid = own && escrowCommitmentOf(jobId, own.outputsRoot, own.salt, c.provider) === c.commitment;
          return {
            index,
            commitment: c.commitment,
            outputsRoot: valid ? own.outputsRoot : ZERO_BYTES32,
            salt: valid ? own.salt : ZERO_BYTES32,
          };
        });
        return result;
      },
      options,
    );
  }

  /** Every credit to `account` (default: this client's) from the `Credited` events: its earnings and refunds. */
  async credits(account: string = this.address, options: CallOptions = {}): Promise<Credit[]> {
    return runChainCall(
      "read credits",
      async () => {
        const logs = await this.#queryLogs(this.#escrow.filters.Credited!(null, account), options);
        return logs.map((log) => {
          const a = z.object({ jobId: hex32, amount: z.bigint() }).parse(eventArgs(log));
          return { jobId: a.jobId, amount: a.amount, blockNumber: log.blockNumber, txHash: log.transactionHash };
        });
      },
      options,
    );
  }

  /** Every withdrawal by `account` (default: this client's) from the `Withdrawn` events, read in pages. */
  async withdrawals(account: string = this.address, options: CallOptions = {}): Promise<Withdrawal[]> {
    return runChainCall(
      "read withdrawals",
      async () => {
        const logs = await this.#queryLogs(this.#escrow.filters.Withdrawn!(account), options);
        return logs.map((log) => {
          const a = z.object({ amount: z.bigint() }).parse(eventArgs(log));
          return { amount: a.amount, blockNumber: log.blockNumber, txHash: log.transactionHash };
        });
      },
      options,
    );
  }

  #seat(job: EscrowJob): number {
    const index = job.providers.findIndex((p) => p.toLowerCase() === this.address.toLowerCase());
    if (index < 0) {
      throw new ChainError("CHAIN_REVERTED", "This account is not a provider of the job", {
        details: `${this.address} is not in job.providers`,
      });
    }
    return index;
  }

  /**
   * Sets the escrow's allowance to exactly `amount` (never an unlimited approval): the transaction that
   * follows consumes it whole.
   */
  async #ensureAllowance(amount: bigint): Promise<void> {
    if (amount === 0n) return;
    const allowance = (await this.#token.getFunction("allowance")(this.address, this.escrowAddress)) as bigint;
    if (allowance === amount) return;
    const tx = (await this.#token.getFunction("approve")(this.escrowAddress, amount)) as ContractTransactionResponse;
    await tx.wait();
  }

  /**
   * Event logs matching `filter`, from the escrow's deployment block to the latest, in ranges of at most
   * `logRangeBlocks` blocks, narrowed for good when the endpoint refuses one ({@link queryLogPages}).
   */
  async #queryLogs(filter: Parameters<Contract["queryFilter"]>[0], options: CallOptions): Promise<(EventLog | Log)[]> {
    return queryLogPages(this.#escrow, this.#provider, filter, this.deploymentBlock, this.#logRange, options);
  }

  async #read<T>(label: string, fn: () => Promise<unknown>, options: CallOptions): Promise<T> {
    return runChainCall(label, async () => (await fn()) as T, options);
  }

  /** Sends one transaction after the previous one of this client, and waits for its receipt. */
  async #send(label: string, fn: () => Promise<ContractTransactionResponse>, options: CallOptions): Promise<TxResult> {
    const run = async (): Promise<TxResult> =>
      runChainCall(
        label,
        async () => {
          const tx = await fn();
          const receipt = (await tx.wait()) as TransactionReceipt;
          return { hash: receipt.hash, blockNumber: receipt.blockNumber, gasUsed: receipt.gasUsed };
        },
        options,
      );
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}

function seats(mask: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 12; i++) if ((mask >> BigInt(i)) & 1n) out.push(i);
  return out;
}

/** The follow-up nonce of a leader: `uint64(uint256(leaderId))`. */
export function followUpNonce(leaderId: string): bigint {
  return BigInt(leaderId) & ((1n << 64n) - 1n);
}

function jobFromArgs(value: unknown): EscrowJob {
  const items = jobArgs.parse(Array.isArray(value) ? [...value].map((v) => (Array.isArray(v) ? [...v] : v)) : value);
  return parseEscrowJob({
    requestor: items[0],
    qubeId: items[1],
    nonce: items[2],
    providers: items[3],
    price: items[4],
    stake: items[5],
    quorum: Number(items[6]),
    commitDeadline: Number(items[7]),
    revealDeadline: Number(items[8]),
    finalDeadline: Number(items[9]),
  });
}

function eventArgs(log: unknown): Record<string, unknown> {
  const args = (log as { args?: { toObject?: () => Record<string, unknown> } }).args;
  if (!args?.toObject) throw new ChainError("CHAIN_INVALID_RESPONSE", "An event log could not be decoded");
  return args.toObject();
}
