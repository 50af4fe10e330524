/**
 * `EscrowV2Client`: typed access to AirqubeEscrowV2 (`contracts/AirqubeEscrowV2.sol`, design in
 * `contracts/ESCROW-V2.md`) for one account: balances, the statements a provider signs, and the batch calls.
 * Used by the opt-in v2 payments of the requestor (`src/requestor/payments-v2.ts`) and provider
 * (`src/provider/payments-v2.ts`).
 */
import {
  Contract,
  ContractFactory,
  type EventLog,
  type JsonRpcProvider,
  type Log,
  Signature,
  type Signer,
  Wallet,
} from "ethers";
import { z } from "zod";
import { UserError } from "../qube/errors.js";
import { airqubeEscrowV2Abi, airqubeEscrowV2Bytecode } from "./abi/airqube-escrow-v2.js";
import { testGLMAbi } from "./abi/test-glm.js";
import { ChainError } from "./errors.js";
import { DEFAULT_LOG_RANGE_BLOCKS, type TxResult } from "./escrow-client.js";
import {
  ACCEPT_TYPES,
  batchIdOf,
  batchTuple,
  COMMITMENTS_TYPES,
  columnHashOf,
  compactSignature,
  type EscrowBatch,
  escrowV2Domain,
  FOLLOW_UP_TYPES,
  parseEscrowBatch,
} from "./escrow-v2-batch.js";
import { type LogRange, queryLogPages } from "./log-pages.js";
import { type CallOptions, createRpcProvider, fetchChainId, runChainCall } from "./rpc.js";

/** A compact (EIP-2098) signature `[r, vs]`; zeros for a seat that signed nothing. */
export type CompactSignature = [string, string];

/** One opening: the outputs root (not zero) and the salt; `undefined` for a position not opened. */
export interface BatchOpening {
  outputsRoot: string;
  salt: string;
}

/** A batch's on-chain state. */
export interface EscrowBatchState {
  status: "none" | "open" | "proposed" | "settled" | "reclaimed";
  /** When its dispute started (unix seconds), or 0. */
  proposedAt: number;
  /** Positions (`job * k + seat`) opened on chain. */
  revealed: number[];
}

/** A `Settled` event: a batch paid out (by `release`, `settle` or `finalize`). */
export interface BatchSettlement {
  batchId: string;
  /** How many (job, seat) positions won. */
  winners: number;
  /** The stakes slashed in the batch. */
  slashed: bigint;
  blockNumber: number;
  txHash: string;
}

/** A batch's place in a group (a qube's first batch and its tie-breaker or replacement batches). */
export interface EscrowBatchGroup {
  /** Whether the batch has follow-ups. */
  leader: boolean;
  /** Whether the batch is a follow-up of a leader. */
  followUp: boolean;
  /** For a leader, how many seats its follow-ups have in all. */
  followUpSeats: number;
}

/** What {@link EscrowV2Client.finalizeGroup} needs of one batch under dispute (see {@link BatchDispute}). */
export interface GroupMemberDispute {
  /** The proposal's current commitments. */
  commitments: readonly string[];
  /** By position, the openings known (`undefined` where not opened); every one recorded on chain included. */
  openings: readonly (BatchOpening | undefined)[];
}

/** A batch's dispute as its events tell it: what a seat needs to add its column, reveal or finalize. */
export interface BatchDispute {
  proposer: string;
  /** The proposal's current commitments (job-major): the proposed ones with every added column applied. */
  commitments: string[];
  /** The end of the commitment window (unix seconds); the reveal window is as long again. */
  commitBy: number;
  /** The seats whose columns were added after the proposal. */
  added: number[];
  /** The openings recorded on chain, by position (`job * k + seat`). */
  revealed: Map<number, BatchOpening>;
  /** The seats proven to have signed two columns. */
  equivocated: number[];
}

/** How the client reaches the chain. */
export interface EscrowV2ClientConfig {
  rpcUrl: string;
  /** The account's key (0x-hex). Never logged. */
  privateKey: string;
  /** The v2 escrow's address. */
  escrow: string;
  pollingIntervalMs?: number;
  /**
   * Widest block range of one `eth_getLogs` request (default {@link DEFAULT_LOG_RANGE_BLOCKS}): event reads
   * start at the escrow's deployment block and go in pages; an endpoint that refuses a page gets narrower ones.
   */
  logRangeBlocks?: number;
}

const STATUSES = ["none", "open", "proposed", "settled", "reclaimed"] as const;
const ZERO = `0x${"00".repeat(32)}`;
const stateAnswer = z.tuple([z.bigint().max(4n), z.bigint(), z.bigint(), z.string()]);
const hex32 = z.string().regex(/^0x[0-9a-fA-F]{64}$/);
const settledArgs = z.object({ batchId: hex32, winners: z.bigint().max(256n), slashed: z.bigint() });
const proposedArgs = z.object({
  proposer: z.string(),
  commitments: z.array(hex32).max(256),
  commitBy: z.bigint().max(BigInt(Number.MAX_SAFE_INTEGER)),
});
const addedArgs = z.object({ seat: z.bigint().max(11n), column: z.array(hex32).max(256) });
const revealedArgs = z.object({ position: z.bigint().max(255n), outputsRoot: hex32, salt: hex32 });
const equivocatedArgs = z.object({ seat: z.bigint().max(11n) });
const groupAnswer = z.tuple([z.boolean(), z.boolean(), z.bigint().max(12n)]);
const eventBatch = z
  .tuple([
    z.string(),
    z.bigint(),
    hex32,
    z.bigint(),
    z.array(z.string()),
    z.bigint(),
    z.bigint(),
    z.bigint(),
    z.bigint(),
    z.bigint(),
    z.bigint(),
  ])
  .transform(([requestor, nonce, qubesRoot, jobs, providers, price, stake, quorum, c, r, f]) =>
    parseEscrowBatch({
      requestor,
      nonce,
      qubesRoot,
      jobs: Number(jobs),
      providers,
      price,
      stake,
      quorum: Number(quorum),
      commitDeadline: Number(c),
      revealDeadline: Number(r),
      finalDeadline: Number(f),
    }),
  );

/**
 * Deploys AirqubeEscrowV2 for a token.
 *
 * @example
 * const escrowV2 = await deployEscrowV2(deployer, token);
 */
export async function deployEscrowV2(deployer: Signer, token: string, options: CallOptions = {}): Promise<string> {
  return runChainCall(
    "deploy the escrow v2",
    async () => {
      const c = await new ContractFactory(airqubeEscrowV2Abi, airqubeEscrowV2Bytecode, deployer).deploy(token);
      await c.waitForDeployment();
      return c.getAddress();
    },
    options,
  );
}

/**
 * Typed access to the v2 escrow for one account. Every method takes `{ signal, timeoutMs }` last; failures are
 * {@link ChainError}s. Transactions of one client are sent one at a time.
 *
 * @example
 * const requestor = await EscrowV2Client.connect({ rpcUrl, privateKey, escrow });
 * await requestor.deposit(100n * 10n ** 18n);
 * // each provider: accepts.push(await provider.signAccept(batch))
 * await requestor.open(batch, accepts);
 * // each provider after running the qubes: signatures.push(await provider.signCommitments(batch, column))
 * await requestor.settle(batch, signatures, openings);
 */
export class EscrowV2Client {
  readonly address: string;
  readonly escrowAddress: string;
  readonly tokenAddress: string;
  readonly chainId: number;
  /** The block the escrow was deployed in: event reads start there. */
  readonly deploymentBlock: number;
  readonly #logRange: LogRange;
  readonly #provider: JsonRpcProvider;
  readonly #wallet: Wallet;
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
    this.#wallet = wallet;
    this.address = wallet.address;
    this.escrowAddress = escrow;
    this.tokenAddress = token;
    this.chainId = chainId;
    this.#escrow = new Contract(escrow, airqubeEscrowV2Abi, wallet);
    this.#token = new Contract(token, testGLMAbi, wallet);
  }

  /**
   * Connects, checks that a contract is deployed at `escrow` and reads its token and deployment block.
   *
   * @throws UserError `CONFIG_INVALID` for a `logRangeBlocks` that is not 1 to 1 000 000 blocks.
   * @throws ChainError `CHAIN_UNREACHABLE`, or `CHAIN_INVALID_RESPONSE` when no contract is at `escrow`.
   */
  static async connect(config: EscrowV2ClientConfig, options: CallOptions = {}): Promise<EscrowV2Client> {
    const range = config.logRangeBlocks ?? DEFAULT_LOG_RANGE_BLOCKS;
    if (!Number.isSafeInteger(range) || range < 1 || range > 1_000_000) {
      throw new UserError("CONFIG_INVALID", "logRangeBlocks must be 1 to 1 000 000 blocks", {
        details: String(config.logRangeBlocks),
      });
    }
    const chainId = await fetchChainId(config.rpcUrl, options);
    const provider = createRpcProvider(config.rpcUrl, chainId, config.pollingIntervalMs);
    const wallet = new Wallet(config.privateKey, provider);
    return runChainCall(
      "connect to the escrow v2",
      async () => {
        if ((await provider.getCode(config.escrow)) === "0x") {
          throw new ChainError("CHAIN_INVALID_RESPONSE", "No escrow contract at the configured address", {
            details: `${config.escrow} on chain ${chainId}`,
          });
        }
        const contract = new Contract(config.escrow, airqubeEscrowV2Abi, provider);
        const token = z.string().parse(await contract.getFunction("token")());
        const deploymentBlock = z
          .bigint()
          .max(BigInt(Number.MAX_SAFE_INTEGER))
          .transform(Number)
          .parse(await contract.getFunction("deploymentBlock")());
        return new EscrowV2Client(provider, wallet, config.escrow, token, chainId, deploymentBlock, range);
      },
      options,
    );
  }

  /** Stops polling and releases the connection. */
  close(): void {
    this.#provider.destroy();
  }

  /** The account's escrow balance (deposits and credits, minus locks and withdrawals). */
  async balance(options: CallOptions = {}): Promise<bigint> {
    return runChainCall(
      "read the balance",
      async () => z.bigint().parse(await this.#escrow.getFunction("balanceOf")(this.address)),
      options,
    );
  }

  /** Deposits `amount` with an EIP-2612 permit (one transaction, no approval). */
  async deposit(amount: bigint, options: CallOptions = {}): Promise<TxResult> {
    return this.#send(
      "deposit",
      async () => {
        const [name, nonce, block] = await Promise.all([
          this.#token.getFunction("name")() as Promise<string>,
          this.#token.getFunction("nonces")(this.address) as Promise<bigint>,
          this.#provider.getBlock("latest"),
        ]);
        const deadline = BigInt((block?.timestamp ?? 0) + 3600);
        const sig = Signature.from(
          await this.#wallet.signTypedData(
            { name, version: "1", chainId: this.chainId, verifyingContract: this.tokenAddress },
            {
              Permit: [
                { name: "owner", type: "address" },
                { name: "spender", type: "address" },
                { name: "value", type: "uint256" },
                { name: "nonce", type: "uint256" },
                { name: "deadline", type: "uint256" },
              ],
            },
            { owner: this.address, spender: this.escrowAddress, value: amount, nonce, deadline },
          ),
        );
        return this.#escrow.getFunction("depositWithPermit")(amount, deadline, sig.v, sig.r, sig.s);
      },
      options,
    );
  }

  /** Withdraws `amount` of the balance to the account. */
  async withdraw(amount: bigint, options: CallOptions = {}): Promise<TxResult> {
    return this.#send("withdraw", async () => this.#escrow.getFunction("withdraw")(amount), options);
  }

  /** A provider's consent to `batch` and to the lock of its stake (EIP-712 `Accept`), for the requestor. */
  async signAccept(batch: EscrowBatch): Promise<CompactSignature> {
    const b = parseEscrowBatch(batch);
    return compactSignature(await this.#wallet.signTypedData(this.#domain(), ACCEPT_TYPES, { batchId: batchIdOf(b) }));
  }

  /** A provider's commitments to `batch`, one per job (zero for a job it did not run): EIP-712 `Commitments`. */
  async signCommitments(batch: EscrowBatch, column: readonly string[]): Promise<CompactSignature> {
    const b = parseEscrowBatch(batch);
    const value = { batchId: batchIdOf(b), commitments: columnHashOf(column) };
    return compactSignature(await this.#wallet.signTypedData(this.#domain(), COMMITMENTS_TYPES, value));
  }

  /**
   * A provider's consent to a follow-up batch (a tie-breaker or replacement round) in the group of `leader`
   * (EIP-712 `FollowUp`; `leader` is the leader batch or its id): its votes are then counted with the whole
   * group's.
   */
  async signFollowUp(batch: EscrowBatch, leader: EscrowBatch | string): Promise<CompactSignature> {
    const leaderId = typeof leader === "string" ? hex32.parse(leader) : batchIdOf(parseEscrowBatch(leader));
    const value = { batchId: batchIdOf(parseEscrowBatch(batch)), leaderId };
    return compactSignature(await this.#wallet.signTypedData(this.#domain(), FOLLOW_UP_TYPES, value));
  }

  /** Opens `batch` (the caller is its requestor) with every seat's `Accept`, in seat order. */
  async open(batch: EscrowBatch, accepts: readonly CompactSignature[], options: CallOptions = {}) {
    const b = parseEscrowBatch(batch);
    const result = await this.#send(
      "open the batch",
      async () => this.#escrow.getFunction("open")(batchTuple(b), accepts.flat()),
      options,
    );
    return { ...result, batchId: batchIdOf(b) };
  }

  /**
   * Opens `batch` as a follow-up (tie-breaker or replacement) in the group of `leader` (open, same requestor,
   * qubes and jobs) with every seat's `FollowUp` signature ({@link EscrowV2Client.signFollowUp}), in seat order.
   */
  async openFollowUp(
    batch: EscrowBatch,
    accepts: readonly CompactSignature[],
    leader: EscrowBatch,
    options: CallOptions = {},
  ) {
    const b = parseEscrowBatch(batch);
    const l = parseEscrowBatch(leader);
    const result = await this.#send(
      "open the follow-up batch",
      async () => this.#escrow.getFunction("openFollowUp")(batchTuple(b), accepts.flat(), batchTuple(l)),
      options,
    );
    return { ...result, batchId: batchIdOf(b) };
  }

  /**
   * Settles a group as a whole (the requestor only): `batches` is the leader then its follow-ups in the order
   * they were opened ({@link EscrowV2Client.group}); for each, every seat's signature and every opening as for
   * {@link EscrowV2Client.settle}.
   */
  async settleGroup(
    batches: readonly EscrowBatch[],
    signatures: readonly (readonly CompactSignature[])[],
    openings: readonly (readonly (readonly BatchOpening[])[])[],
    options: CallOptions = {},
  ): Promise<TxResult> {
    const bs = batches.map((b) => batchTuple(parseEscrowBatch(b)));
    const flat = openings.map((batch) => batch.flatMap((row) => row.flatMap((o) => [o.outputsRoot, o.salt])));
    return this.#send(
      "settle the group",
      async () =>
        this.#escrow.getFunction("settleGroup")(
          bs,
          signatures.map((s) => s.flat()),
          flat,
        ),
      options,
    );
  }

  /**
   * Settles a group after the dispute of its batches (anyone): for each batch of `batches` (leader first, then
   * the follow-ups in order), its dispute, or `undefined` for a batch already reclaimed.
   */
  async finalizeGroup(
    batches: readonly EscrowBatch[],
    disputes: readonly (GroupMemberDispute | undefined)[],
    options: CallOptions = {},
  ): Promise<TxResult> {
    const bs = batches.map((b) => batchTuple(parseEscrowBatch(b)));
    const commitments = batches.map((_, i) => [...(disputes[i]?.commitments ?? [])]);
    const flat = batches.map((_, i) => {
      const d = disputes[i];
      return (d?.commitments ?? []).flatMap((_c, pos) => {
        const o = d?.openings[pos];
        return o ? [o.outputsRoot, o.salt] : [ZERO, ZERO];
      });
    });
    return this.#send(
      "finalize the group",
      async () => this.#escrow.getFunction("finalizeGroup")(bs, commitments, flat),
      options,
    );
  }

  /** Settles with every seat's `Commitments` signature and every opening (`openings[job][seat]`). */
  async settle(
    batch: EscrowBatch,
    signatures: readonly CompactSignature[],
    openings: readonly (readonly BatchOpening[])[],
    options: CallOptions = {},
  ): Promise<TxResult> {
    const b = parseEscrowBatch(batch);
    const flat = openings.flatMap((row) => row.flatMap((o) => [o.outputsRoot, o.salt]));
    return this.#send(
      "settle the batch",
      async () => this.#escrow.getFunction("settle")(batchTuple(b), signatures.flat(), flat),
      options,
    );
  }

  /**
   * The unanimous path: pays every seat `price + stake` for every job, with no signature or opening on chain.
   * The requestor sends it only after checking that every seat opened the same root for every job (its
   * commitments signed); otherwise {@link EscrowV2Client.settle} or {@link EscrowV2Client.propose}.
   */
  async release(batch: EscrowBatch, options: CallOptions = {}): Promise<TxResult> {
    const b = parseEscrowBatch(batch);
    return this.#send("release the batch", async () => this.#escrow.getFunction("release")(batchTuple(b)), options);
  }

  /** Starts a dispute with the known signed commitments (job-major, zero where unknown). */
  async propose(
    batch: EscrowBatch,
    signatures: readonly CompactSignature[],
    commitments: readonly string[],
    options: CallOptions = {},
  ): Promise<TxResult> {
    const b = parseEscrowBatch(batch);
    return this.#send(
      "propose a settlement",
      async () => this.#escrow.getFunction("propose")(batchTuple(b), signatures.flat(), commitments),
      options,
    );
  }

  /** Adds a seat's signed column to a proposal that left it out (during the commitment window). */
  async addCommitments(
    batch: EscrowBatch,
    commitments: readonly string[],
    seat: number,
    signature: CompactSignature,
    column: readonly string[],
    options: CallOptions = {},
  ): Promise<TxResult> {
    const b = parseEscrowBatch(batch);
    return this.#send(
      "add commitments",
      async () => this.#escrow.getFunction("addCommitments")(batchTuple(b), commitments, seat, signature, column),
      options,
    );
  }

  /** Records openings on chain during the reveal window (`positions` are `job * k + seat`). */
  async reveal(
    batch: EscrowBatch,
    commitments: readonly string[],
    openings: ReadonlyMap<number, BatchOpening>,
    options: CallOptions = {},
  ): Promise<TxResult> {
    const b = parseEscrowBatch(batch);
    const flat = [...openings].flatMap(([pos, o]) => [
      `0x${pos.toString(16).padStart(64, "0")}`,
      o.outputsRoot,
      o.salt,
    ]);
    return this.#send(
      "reveal",
      async () => this.#escrow.getFunction("reveal")(batchTuple(b), commitments, flat),
      options,
    );
  }

  /** Settles a disputed batch after its windows; `openings[pos]` undefined for a position not opened. */
  async finalize(
    batch: EscrowBatch,
    commitments: readonly string[],
    openings: readonly (BatchOpening | undefined)[],
    options: CallOptions = {},
  ): Promise<TxResult> {
    const b = parseEscrowBatch(batch);
    const flat = commitments.flatMap((_, pos) => {
      const o = openings[pos];
      return o ? [o.outputsRoot, o.salt] : [ZERO, ZERO];
    });
    return this.#send(
      "finalize the batch",
      async () => this.#escrow.getFunction("finalize")(batchTuple(b), commitments, flat),
      options,
    );
  }

  /** Reclaims an open batch after its final deadline. */
  async reclaim(batch: EscrowBatch, options: CallOptions = {}): Promise<TxResult> {
    const b = parseEscrowBatch(batch);
    return this.#send("reclaim the batch", async () => this.#escrow.getFunction("reclaim")(batchTuple(b)), options);
  }

  /** The batch's on-chain state. */
  async batchState(batch: EscrowBatch, options: CallOptions = {}): Promise<EscrowBatchState> {
    const b = parseEscrowBatch(batch);
    return runChainCall(
      "read the batch",
      async () => {
        const answer = stateAnswer.safeParse([...(await this.#escrow.getFunction("batchState")(batchTuple(b)))]);
        if (!answer.success) {
          throw new ChainError("CHAIN_INVALID_RESPONSE", "The escrow answered a malformed batch state", {
            cause: answer.error,
          });
        }
        const [status, proposedAt, revealed] = answer.data;
        const bits: number[] = [];
        for (let i = 0; i < 256; i++) if ((revealed >> BigInt(i)) & 1n) bits.push(i);
        return { status: STATUSES[Number(status)]!, proposedAt: Number(proposedAt), revealed: bits };
      },
      options,
    );
  }

  /** Whether `batch` leads a group or is a follow-up (both false once its ring slot holds a later batch). */
  async batchGroup(batch: EscrowBatch, options: CallOptions = {}): Promise<EscrowBatchGroup> {
    const b = parseEscrowBatch(batch);
    return runChainCall(
      "read the batch's group",
      async () => {
        const answer = groupAnswer.safeParse([...(await this.#escrow.getFunction("batchGroup")(batchTuple(b)))]);
        if (!answer.success) {
          throw new ChainError("CHAIN_INVALID_RESPONSE", "The escrow answered a malformed group", {
            cause: answer.error,
          });
        }
        const [leader, followUp, seats] = answer.data;
        return { leader, followUp, followUpSeats: Number(seats) };
      },
      options,
    );
  }

  /**
   * The group of `batch` from the `FollowUpOpened` events: its leader, then the follow-ups in the order they were
   * opened (what {@link EscrowV2Client.settleGroup} and {@link EscrowV2Client.finalizeGroup} take); `[batch]`
   * alone for a batch outside any group.
   *
   * @throws ChainError `CHAIN_INVALID_RESPONSE` when the events do not fit (a malicious endpoint).
   */
  async group(batch: EscrowBatch, options: CallOptions = {}): Promise<EscrowBatch[]> {
    const b = parseEscrowBatch(batch);
    const id = batchIdOf(b);
    return runChainCall(
      "read the group",
      async () => {
        const opened = this.#escrow.filters.FollowUpOpened!;
        const asFollowUp = await this.#logs(opened(null, id), options);
        const leaderId = asFollowUp.length > 0 ? parseFollowUp(asFollowUp[0]!).leaderId : id;
        const events = (await this.#logs(opened(leaderId), options)).map(parseFollowUp);
        if (events.length === 0) return [b];
        const leader = events[0]!.leader;
        if (batchIdOf(leader) !== leaderId || events.some((e) => batchIdOf(e.batch) !== e.batchId)) {
          throw new ChainError("CHAIN_INVALID_RESPONSE", "The escrow's FollowUpOpened events do not fit the group");
        }
        return [leader, ...events.map((e) => e.batch)];
      },
      options,
    );
  }

  /**
   * The `Settled` events since the escrow's deployment (of one batch when `batchId` is given), read in pages
   * of at most `logRangeBlocks` blocks.
   */
  async settlements(batchId?: string, options: CallOptions = {}): Promise<BatchSettlement[]> {
    return runChainCall(
      "read settlements",
      async () => {
        const logs = await this.#logs(this.#escrow.filters.Settled!(batchId ?? null), options);
        return logs.map((log) => {
          const a = parseArgs(settledArgs, log);
          const winners = Number(a.winners);
          return {
            batchId: a.batchId,
            winners,
            slashed: a.slashed,
            blockNumber: log.blockNumber,
            txHash: log.transactionHash,
          };
        });
      },
      options,
    );
  }

  /**
   * The dispute of `batch` from its events (`Proposed`, `CommitmentsAdded`, `Revealed`, `Equivocated`), or
   * `undefined` when nobody proposed a settlement of it.
   *
   * @throws ChainError `CHAIN_INVALID_RESPONSE` when the events do not fit the batch (a malicious endpoint).
   */
  async dispute(batch: EscrowBatch, options: CallOptions = {}): Promise<BatchDispute | undefined> {
    const b = parseEscrowBatch(batch);
    const id = batchIdOf(b);
    const k = b.providers.length;
    return runChainCall(
      "read the dispute",
      async () => {
        const f = this.#escrow.filters;
        const [proposed, added, revealed, equivocated] = await Promise.all([
          this.#logs(f.Proposed!(id), options),
          this.#logs(f.CommitmentsAdded!(id), options),
          this.#logs(f.Revealed!(id), options),
          this.#logs(f.Equivocated!(id), options),
        ]);
        if (proposed.length === 0) return undefined;
        const p = parseArgs(proposedArgs, proposed[0]!);
        if (proposed.length > 1 || p.commitments.length !== b.jobs * k) {
          throw new ChainError("CHAIN_INVALID_RESPONSE", "The escrow's Proposed events do not fit the batch");
        }
        const commitments = [...p.commitments];
        const seats: number[] = [];
        for (const log of added) {
          const a = parseArgs(addedArgs, log);
          const seat = Number(a.seat);
          if (seat >= k || a.column.length !== b.jobs) {
            throw new ChainError("CHAIN_INVALID_RESPONSE", "A CommitmentsAdded event does not fit the batch");
          }
          a.column.forEach((c, j) => {
            commitments[j * k + seat] = c;
          });
          seats.push(seat);
        }
        const openings = new Map<number, BatchOpening>();
        for (const log of revealed) {
          const a = parseArgs(revealedArgs, log);
          openings.set(Number(a.position), { outputsRoot: a.outputsRoot, salt: a.salt });
        }
        return {
          proposer: p.proposer,
          commitments,
          commitBy: Number(p.commitBy),
          added: seats,
          revealed: openings,
          equivocated: equivocated.map((log) => Number(parseArgs(equivocatedArgs, log).seat)),
        };
      },
      options,
    );
  }

  async #logs(filter: Parameters<Contract["queryFilter"]>[0], options: CallOptions): Promise<(EventLog | Log)[]> {
    return queryLogPages(this.#escrow, this.#provider, filter, this.deploymentBlock, this.#logRange, options);
  }

  #domain() {
    return escrowV2Domain(this.chainId, this.escrowAddress);
  }

  async #send(
    label: string,
    send: () => Promise<{ wait(): Promise<{ hash: string; blockNumber: number; gasUsed: bigint } | null> }>,
    options: CallOptions,
  ): Promise<TxResult> {
    const run = this.#queue.then(() =>
      runChainCall(
        label,
        async () => {
          const receipt = await (await send()).wait();
          if (!receipt) throw new ChainError("CHAIN_INVALID_RESPONSE", `No receipt: ${label}`);
          return { hash: receipt.hash, blockNumber: receipt.blockNumber, gasUsed: receipt.gasUsed };
        },
        options,
      ),
    );
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

const followUpArgs = z.object({ leaderId: hex32, batchId: hex32, leader: eventBatch, batch: eventBatch });

/** A `FollowUpOpened` event's arguments, the two batches checked as {@link parseEscrowBatch} does. */
function parseFollowUp(log: EventLog | Log) {
  const a = (log as { args?: Record<string, unknown> }).args;
  try {
    return followUpArgs.parse({ leaderId: a?.leaderId, batchId: a?.batchId, leader: a?.leader, batch: a?.batch });
  } catch (error) {
    throw new ChainError("CHAIN_INVALID_RESPONSE", "An escrow FollowUpOpened event could not be decoded", {
      cause: error,
    });
  }
}

/** An event's decoded arguments, checked against `schema`. */
function parseArgs<T>(schema: z.ZodType<T>, log: EventLog | Log): T {
  const args = (log as { args?: { toObject?: () => Record<string, unknown> } }).args;
  const parsed = args?.toObject ? schema.safeParse(args.toObject()) : undefined;
  if (!parsed?.success) {
    throw new ChainError("CHAIN_INVALID_RESPONSE", "An escrow event could not be decoded", {
      ...(parsed ? { cause: parsed.error } : {}),
    });
  }
  return parsed.data;
}
