// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/**
 * @title AirqubeEscrowV2
 * @notice Pay-on-agreement escrow for batches of qubes with balances instead of transfers and signatures instead
 * of transactions (design: contracts/ESCROW-V2.md).
 *
 * Accounts deposit once ({deposit}, {depositWithPermit}) and withdraw when they want ({withdraw}); no token moves
 * on the per-qube path. A batch is `jobs` qubes (the list's hash is `qubesRoot`) run by the same `k` providers
 * (seats) at the same price, stake, quorum and deadlines. {open} locks `price * k * jobs` of the requestor's
 * balance and `stake * jobs` of each provider's balance; each provider consents with an EIP-712 `Accept`
 * signature over the batch id. A provider commits to its results off chain with one EIP-712 `Commitments`
 * signature over the hash of its column of commitments, one per job,
 * `keccak256(abi.encode(batchId, job, outputsRoot, salt, provider))` (zero for a job it did not commit to).
 * Signatures are bound to the chain id and this escrow (EIP-712 domain) and to the batch (its id hashes every
 * parameter, including the requestor and its nonce).
 *
 * Unanimous path: when every seat committed to and opened the same root for every job (checked off chain), the
 * requestor's {release} pays every seat `price + stake` per job with no signature or opening on chain: the most
 * the batch can pay, so it can leave no one but its sender worse off than a checked settlement would.
 *
 * Fast path: the requestor's {settle} with every seat's signature and every opening settles the batch in one
 * transaction (with the quorum rule: a dissenter is slashed). Only the requestor may take it: it holds the columns signed before any opening was shown, while
 * anyone else could pair the openings of a pending settlement with a second column a seat signed afterwards. Otherwise the batch goes through a dispute: {propose} publishes the
 * signed commitments known to the proposer (the requestor, or a seat after the reveal deadline); during a
 * commitment window (`revealDeadline - commitDeadline` seconds) a seat left out adds its own signed column
 * ({addCommitments}), so a proposer cannot drop an honest provider; during the following reveal window of the
 * same length anyone records openings on chain ({reveal}); then anyone finalises ({finalize}) with the
 * openings, which must include every opening recorded on chain. The proposal is the request to reveal: a seat
 * that committed and did not open by the end of the reveal window is slashed; a seat that never committed gets its
 * stake back unpaid. Openings are only accepted after the commitment window, so no seat can copy a published
 * opening into a late commitment. Signatures carry no time, so a seat could sign a second column after seeing
 * openings (for instance in a pending settlement) and propose with it: anyone holding both signed columns proves
 * the equivocation during the dispute ({proveEquivocation}); the seat then gets no vote and loses its stake.
 *
 * Per job, the winner is a root with `c` equal revealed votes and `2c >= quorum + committed` (v1's rule, a
 * qualified hence strict majority). Winners get price, stake and an equal share of the job's slashed stakes (the
 * dust to the requestor); dissenters (when a winner exists) and silent committed seats after a dispute lose their
 * stake; everyone else gets its stake back; the unused budget goes back to the requestor (with the slashed stakes
 * when there is no winner). An unsettled batch that is not under dispute can be reclaimed after its final
 * deadline. Invariant: the sum of all balances plus the locked funds of open and proposed batches equals the
 * escrow's token balance. Only plain ERC-20 tokens are supported (no fee-on-transfer or rebasing tokens).
 *
 * Groups: the rounds of one qube. A tie-breaker or replacement round is a batch of its own, opened with
 * {openFollowUp} in the group of the qube's first batch (the leader: same requestor, qubes and jobs). A batch of a
 * group cannot be released, settled or finalised alone: the group is settled as a whole, by the requestor with
 * {settleGroup} (every seat's signature and opening of every batch), or after a dispute of each of its batches
 * with {finalizeGroup}. Each job is then tallied over the whole group with the leader's `quorum` (v1's
 * {AirqubeEscrow-settleGroup}), so the honest pair of a k = 3 round with one dissenter is paid and the dissenter
 * slashed once a tie-breaker agrees with the pair. Groups cost the no-group path nothing but a bit test: the
 * group bits live in the batches' ring records, and the link of the follow-ups (a hash chain of their ids) in
 * one slot of the leader's, written only by {openFollowUp}.
 *
 * {multicall} runs several calls in one transaction (each call keeps its own checks and reentrancy guard): a
 * requestor running a stream of qubes settles the last batch and opens the next one together, so the two share
 * one transaction base and the accounts' storage slots are already warm.
 */
contract AirqubeEscrowV2 is EIP712, Multicall, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The parameters of a batch; `batchId = keccak256(abi.encode(batch))`.
    struct Batch {
        /// The account that opens the batch, pays from its balance and gets refunds.
        address requestor;
        /// The requestor's batch number: its record lives in ring slot `nonce % RING`, and a slot only takes a
        /// nonce above the last one it held (so a batch can never be opened twice) once that batch is closed.
        uint40 nonce;
        /// `keccak256(abi.encodePacked(qubeIds))` of the batch's qubes, in job order.
        bytes32 qubesRoot;
        /// How many jobs (qubes) the batch has; `jobs * providers.length <= 256`.
        uint16 jobs;
        /// The providers (seats), distinct, 1 to 12; each runs every job of the batch.
        address[] providers;
        /// What each provider in a job's quorum earns for that job.
        uint96 price;
        /// What each provider bonds per job.
        uint96 stake;
        /// How many equal roots make a job's quorum; `2 * quorum > providers.length`.
        uint8 quorum;
        /// Until this second (inclusive) providers commit; the fast path needs no deadline to pass.
        uint40 commitDeadline;
        /// After this second any seat may {propose}; `revealDeadline - commitDeadline` is the dispute window.
        uint40 revealDeadline;
        /// After this second an open batch can only be reclaimed; at least two windows after `revealDeadline`.
        uint40 finalDeadline;
    }

    /// @notice The status of a batch.
    enum Status {
        None,
        Open,
        Proposed,
        Settled,
        Reclaimed
    }

    /// @notice The most providers a batch may have.
    uint256 public constant MAX_PROVIDERS = 12;
    /// @notice How many batches a requestor may have open (or under dispute) at once: the ring of its records.
    uint256 public constant RING = 256;
    /// @notice The most (job, seat) positions a batch may have.
    uint256 public constant MAX_POSITIONS = 256;
    /// @notice The most seats the follow-ups of one group may have in all (so a group has at most 24 per job).
    uint256 public constant MAX_FOLLOW_UP_SEATS = 12;
    /// @notice The EIP-712 type of a provider's consent to a batch (and to the lock of its stake).
    bytes32 public constant ACCEPT_TYPEHASH = keccak256("Accept(bytes32 batchId)");
    /// @notice The EIP-712 type of a provider's consent to a follow-up batch in the group of `leaderId`.
    bytes32 public constant FOLLOW_UP_TYPEHASH = keccak256("FollowUp(bytes32 batchId,bytes32 leaderId)");
    /// @notice The EIP-712 type of a provider's commitments: `commitments` hashes its column, one per job.
    bytes32 public constant COMMITMENTS_TYPEHASH = keccak256("Commitments(bytes32 batchId,bytes32 commitments)");

    uint256 private constant _STATUS_MASK = 0x07;
    uint256 private constant _LEADER_BIT = 0x08;
    uint256 private constant _FOLLOWER_BIT = 0x10;
    uint256 private constant _GROUP_BITS = 0x18;
    uint256 private constant _SEATS_MASK = 0xff;
    uint256 private constant _NONCE_SHIFT = 8;
    uint256 private constant _NONCE_MASK = 0xffffffffff;
    uint256 private constant _ID_MASK = ~uint256(0) << 48;

    /// @notice The token of deposits, budgets, stakes and payouts.
    IERC20 public immutable token;
    /// @notice The block the escrow was deployed in: event reads start there.
    uint256 public immutable deploymentBlock;

    /// @dev keccak256(requestor, nonce % RING) => status (bits 0-2) | leads a group (bit 3) | is a follow-up (bit 4) |
    /// nonce (8-47) | top 208 bits of the batch id.
    /// A requestor's steady state re-writes its used slots (about 5k gas) instead of filling a fresh one (22k).
    mapping(bytes32 slot => uint256 record) private _records;
    /// @dev batchId => when its dispute started.
    mapping(bytes32 batchId => uint256 time) private _proposedAt;
    /// @dev batchId => keccak256 of the proposed commitments (job-major: `commitments[job * k + seat]`).
    mapping(bytes32 batchId => bytes32 hash) private _proposals;
    /// @dev batchId => bitmap of the positions (`job * k + seat`) opened on chain.
    mapping(bytes32 batchId => uint256 bitmap) private _revealed;
    /// @dev batchId => bitmap of the seats proven to have signed two different columns.
    mapping(bytes32 batchId => uint256 bitmap) private _equivocated;
    /// @dev leaderId => the link of its follow-ups: `keccak256(abi.encode(previous link, followUpId))` with the low
    /// byte replaced by how many seats the follow-ups have in all, starting from zero (see {_nextLink}).
    mapping(bytes32 leaderId => uint256 link) private _groups;
    /// @dev account => balance + 1 once used (0 = never used), so a returning account's credit is a warm update.
    mapping(address account => uint256 balancePlusOne) private _balances;

    /// @notice Tokens were deposited to an account's balance.
    event Deposited(address indexed account, uint256 amount);
    /// @notice An account withdrew from its balance.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice A batch was opened: `budget` of the requestor's and `stake * jobs` of each seat's balance locked.
    event BatchOpened(bytes32 indexed batchId, address indexed requestor, uint256 jobs, uint256 budget);
    /// @notice A follow-up batch (tie-breaker or replacement) joined the group of `leaderId`; carries both batches.
    event FollowUpOpened(bytes32 indexed leaderId, bytes32 indexed batchId, Batch leader, Batch batch);
    /// @notice A dispute started: the proposed commitments (job-major), and the end of the commitment window.
    event Proposed(bytes32 indexed batchId, address indexed proposer, bytes32[] commitments, uint256 commitBy);
    /// @notice A seat left out of a proposal added its signed column.
    event CommitmentsAdded(bytes32 indexed batchId, uint256 indexed seat, bytes32[] column);
    /// @notice An opening was recorded on chain during a dispute.
    event Revealed(bytes32 indexed batchId, uint256 indexed position, bytes32 outputsRoot, bytes32 salt);
    /// @notice A seat was proven to have signed two different columns for a batch under dispute.
    event Equivocated(bytes32 indexed batchId, uint256 indexed seat);
    /// @notice A batch was settled (fast path or dispute): how many seats won and how much stake was slashed.
    event Settled(bytes32 indexed batchId, uint256 winners, uint256 slashed);
    /// @notice An unsettled batch was reclaimed after its final deadline.
    event Reclaimed(bytes32 indexed batchId, address indexed requestor, uint256 budget);

    /// @notice The caller is not allowed to do this (not the requestor, or not a seat).
    error AirqubeEscrowV2Unauthorized(address caller);
    /// @notice The batch has no providers or more than {MAX_PROVIDERS}, no jobs, or more than {MAX_POSITIONS}.
    error AirqubeEscrowV2InvalidSize(uint256 providers, uint256 jobs);
    /// @notice A provider is the zero address or appears twice.
    error AirqubeEscrowV2InvalidProvider(address provider);
    /// @notice The quorum is not a strict majority of the providers.
    error AirqubeEscrowV2InvalidQuorum(uint256 quorum, uint256 providers);
    /// @notice The price is zero.
    error AirqubeEscrowV2ZeroPrice();
    /// @notice The deadlines are not `now < commit < reveal` and `final >= reveal + 2 * (reveal - commit)`.
    error AirqubeEscrowV2InvalidDeadlines(uint256 commitDeadline, uint256 revealDeadline, uint256 finalDeadline);
    /// @notice The nonce is not above the last one of its ring slot, or that slot's batch is still open.
    error AirqubeEscrowV2NonceUnavailable(address requestor, uint256 nonce);
    /// @notice The batch is not in the status the call needs.
    error AirqubeEscrowV2WrongStatus(bytes32 batchId, Status status);
    /// @notice A signature is not the seat's.
    error AirqubeEscrowV2BadSignature(bytes32 batchId, address provider);
    /// @notice An array has the wrong length for the batch.
    error AirqubeEscrowV2BadLength(bytes32 batchId);
    /// @notice An opening is missing or does not match its commitment (position `job * k + seat`).
    error AirqubeEscrowV2BadOpening(bytes32 batchId, uint256 position);
    /// @notice The commitments given are not the proposal's.
    error AirqubeEscrowV2ProposalMismatch(bytes32 batchId);
    /// @notice The seat's column is in the proposal already, or the added column is empty.
    error AirqubeEscrowV2SeatPresent(bytes32 batchId, uint256 seat);
    /// @notice An opening recorded on chain was left out of {finalize}.
    error AirqubeEscrowV2RevealMissing(bytes32 batchId, uint256 position);
    /// @notice The two columns of an equivocation proof are the same.
    error AirqubeEscrowV2NotEquivocation(bytes32 batchId, uint256 seat);
    /// @notice A reveal call carried no new opening.
    error AirqubeEscrowV2NothingToReveal(bytes32 batchId);
    /// @notice The action is not allowed before `notBefore` (a block timestamp, exclusive).
    error AirqubeEscrowV2TooEarly(bytes32 batchId, uint256 notBefore);
    /// @notice The action is not allowed after `deadline` (a block timestamp, inclusive).
    error AirqubeEscrowV2TooLate(bytes32 batchId, uint256 deadline);
    /// @notice The account's balance is below what the call needs.
    error AirqubeEscrowV2InsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @notice A deposit or withdrawal of zero.
    error AirqubeEscrowV2ZeroAmount();
    /// @notice The follow-up does not fit the leader (requestor, qubes or jobs differ, the leader is a follow-up
    /// itself, the follow-up ends too late, or the group's follow-ups would have more than {MAX_FOLLOW_UP_SEATS}
    /// seats).
    error AirqubeEscrowV2NotAFollowUp(bytes32 batchId, bytes32 leaderId);
    /// @notice The batch belongs to a group: settle it with {settleGroup} or {finalizeGroup}.
    error AirqubeEscrowV2GroupSettlement(bytes32 batchId);
    /// @notice The batches given are not exactly the leader's group (leader first, then its follow-ups in the
    /// order they were opened), or the arrays' lengths differ.
    error AirqubeEscrowV2GroupMismatch(bytes32 leaderId);

    /// @param token_ The ERC-20 token of deposits, budgets, stakes and payouts.
    constructor(IERC20 token_) EIP712("AirqubeEscrowV2", "1") {
        token = token_;
        deploymentBlock = block.number;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Balances
    // ---------------------------------------------------------------------------------------------------------

    /**
     * @notice Deposits `amount` tokens (pulled with `transferFrom`: approve first) to the caller's balance.
     * @param amount The amount, not zero.
     */
    function deposit(uint256 amount) external nonReentrant {
        _deposit(amount);
    }

    /**
     * @notice Deposits with an EIP-2612 permit instead of an approval. A permit that fails (for instance because
     * someone submitted it first) is ignored; the transfer then needs the allowance.
     * @param amount The amount, not zero.
     * @param deadline The permit's deadline.
     * @param v The permit signature's v.
     * @param r The permit signature's r.
     * @param s The permit signature's s.
     */
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external nonReentrant {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(amount);
    }

    /**
     * @notice Transfers `amount` of the caller's balance to the caller.
     * @param amount The amount, not zero and at most the balance.
     */
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert AirqubeEscrowV2ZeroAmount();
        _debit(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Batches
    // ---------------------------------------------------------------------------------------------------------

    /**
     * @notice Opens a batch: locks `price * k * jobs` of the caller's (the requestor's) balance and `stake * jobs`
     * of each seat's balance, with each seat's consent.
     * @param batch The batch's parameters; `batch.requestor` must be the caller.
     * @param accepts For each seat, its compact (EIP-2098) signature `[r, vs]` of `Accept(batchId)`.
     * @return batchId The batch's id.
     */
    function open(Batch calldata batch, bytes32[] calldata accepts) external nonReentrant returns (bytes32 batchId) {
        return _open(batch, accepts, 0);
    }

    /**
     * @notice Opens a follow-up batch of a qube (a tie-breaker or replacement round) in the group of `leader`, the
     * qube's first batch, as {open} does. The group is then settled as a whole ({settleGroup}, {finalizeGroup}).
     * @param batch The follow-up's parameters: same requestor (the caller), `qubesRoot` and `jobs` as the leader,
     * and a final deadline at most `leader.finalDeadline - leader.commitDeadline` after the leader's (a group under
     * dispute waits for its open batches until their final deadline: this bounds how long a requestor can keep
     * the leader's seats waiting).
     * @param accepts For each seat, its compact signature `[r, vs]` of `FollowUp(batchId, leaderId)`: its consent
     * to the batch, to the lock of its stake and to its votes being counted with the leader's group.
     * @param leader The leader's parameters; the leader must be open and not a follow-up itself.
     * @return batchId The follow-up's id.
     */
    function openFollowUp(Batch calldata batch, bytes32[] calldata accepts, Batch calldata leader)
        external
        nonReentrant
        returns (bytes32 batchId)
    {
        bytes32 leaderId = keccak256(abi.encode(leader));
        (bytes32 leaderSlot, uint256 leaderWord) = _record(leader, leaderId, Status.Open);
        batchId = _open(batch, accepts, leaderId);
        uint256 link = _groups[leaderId];
        if (
            leader.requestor != batch.requestor || leader.qubesRoot != batch.qubesRoot || leader.jobs != batch.jobs
                || leaderWord & _FOLLOWER_BIT != 0
                || uint256(batch.finalDeadline) + leader.commitDeadline > 2 * uint256(leader.finalDeadline)
                || (link & _SEATS_MASK) + batch.providers.length > MAX_FOLLOW_UP_SEATS
        ) revert AirqubeEscrowV2NotAFollowUp(batchId, leaderId);
        _records[leaderSlot] = leaderWord | _LEADER_BIT;
        _groups[leaderId] = _nextLink(link, batchId, batch.providers.length);
        emit FollowUpOpened(leaderId, batchId, leader, batch);
    }

    /// @dev Opens a batch; `leaderId` is zero, or the leader of a follow-up (whose seats then sign `FollowUp`).
    function _open(Batch calldata batch, bytes32[] calldata accepts, bytes32 leaderId)
        private
        returns (bytes32 batchId)
    {
        if (batch.requestor != msg.sender) revert AirqubeEscrowV2Unauthorized(msg.sender);
        uint256 k = batch.providers.length;
        uint256 n = batch.jobs;
        if (k == 0 || k > MAX_PROVIDERS || n == 0 || n * k > MAX_POSITIONS) revert AirqubeEscrowV2InvalidSize(k, n);
        if (batch.quorum > k || 2 * uint256(batch.quorum) <= k) {
            revert AirqubeEscrowV2InvalidQuorum(batch.quorum, k);
        }
        if (batch.price == 0) revert AirqubeEscrowV2ZeroPrice();
        if (
            block.timestamp >= batch.commitDeadline || batch.commitDeadline >= batch.revealDeadline
                || uint256(batch.finalDeadline) + 2 * batch.commitDeadline < 3 * uint256(batch.revealDeadline)
        ) revert AirqubeEscrowV2InvalidDeadlines(batch.commitDeadline, batch.revealDeadline, batch.finalDeadline);
        for (uint256 i = 0; i < k; ++i) {
            address p = batch.providers[i];
            if (p == address(0)) revert AirqubeEscrowV2InvalidProvider(p);
            for (uint256 j = 0; j < i; ++j) {
                if (batch.providers[j] == p) revert AirqubeEscrowV2InvalidProvider(p);
            }
        }
        batchId = keccak256(abi.encode(batch));
        bytes32 slot = _slotOf(msg.sender, batch.nonce);
        uint256 old = _records[slot];
        uint256 oldStatus = old & _STATUS_MASK;
        if (
            old != 0 && (((old >> _NONCE_SHIFT) & _NONCE_MASK) >= batch.nonce || oldStatus == uint256(Status.Open)
                || oldStatus == uint256(Status.Proposed))
        ) revert AirqubeEscrowV2NonceUnavailable(msg.sender, batch.nonce);
        if (accepts.length != 2 * k) revert AirqubeEscrowV2BadLength(batchId);

        _records[slot] =
            (uint256(batchId) & _ID_MASK) | (uint256(batch.nonce) << _NONCE_SHIFT)
            | (leaderId == 0 ? 0 : _FOLLOWER_BIT) | uint256(Status.Open);
        uint256 budget = uint256(batch.price) * k * n;
        _debit(msg.sender, budget);
        uint256 locked = uint256(batch.stake) * n;
        bytes32 acceptHash = _hashTypedDataV4(
            leaderId == 0
                ? keccak256(abi.encode(ACCEPT_TYPEHASH, batchId))
                : keccak256(abi.encode(FOLLOW_UP_TYPEHASH, batchId, leaderId))
        );
        for (uint256 i = 0; i < k; ++i) {
            address p = batch.providers[i];
            _checkSignature(batchId, acceptHash, accepts[2 * i], accepts[2 * i + 1], p);
            if (locked != 0) _debit(p, locked);
        }
        emit BatchOpened(batchId, msg.sender, n, budget);
    }

    /**
     * @notice Settles an open batch in one transaction from every seat's signed commitments and every opening
     * (the fast path). Only the requestor may call it, until the final deadline; seats settle through {propose}.
     * @param batch The batch's parameters.
     * @param signatures For each seat, its compact signature `[r, vs]` of `Commitments(batchId, commitments)`.
     * @param openings For each position `job * k + seat`, its `outputsRoot` then its `salt`; no root is zero.
     */
    function settle(Batch calldata batch, bytes32[] calldata signatures, bytes32[] calldata openings)
        external
        nonReentrant
    {
        bytes32 batchId = keccak256(abi.encode(batch));
        (bytes32 slot, uint256 word) = _recordAlone(batch, batchId, Status.Open);
        if (msg.sender != batch.requestor) revert AirqubeEscrowV2Unauthorized(msg.sender);
        bytes32[] memory roots = _settledRoots(batch, batchId, signatures, openings);
        _records[slot] = (word & ~_STATUS_MASK) | uint256(Status.Settled);
        _payout(batchId, batch, roots, type(uint256).max >> (256 - roots.length));
    }

    /**
     * @notice Settles a group (a leader and its follow-ups) as a whole from every seat's signed commitments and
     * every opening of every batch, as {settle} does for one batch; each job is tallied over the whole group with
     * the leader's `quorum`, and the group's winners of a job share its slashed stakes. Only the requestor may
     * call it, while every batch of the group is open and before each one's final deadline.
     * @param batches The leader, then its follow-ups in the order they were opened.
     * @param signatures For each batch, its seats' signatures as for {settle}.
     * @param openings For each batch, its openings as for {settle}.
     */
    function settleGroup(Batch[] calldata batches, bytes32[][] calldata signatures, bytes32[][] calldata openings)
        external
        nonReentrant
    {
        uint256 m = batches.length;
        if (signatures.length != m || openings.length != m) revert AirqubeEscrowV2GroupMismatch(bytes32(0));
        bytes32[] memory ids = _checkGroup(batches);
        if (msg.sender != batches[0].requestor) revert AirqubeEscrowV2Unauthorized(msg.sender);
        bytes32[][] memory roots = new bytes32[][](m);
        uint256[] memory committed = new uint256[](m);
        for (uint256 b = 0; b < m; ++b) {
            (bytes32 slot, uint256 word) = _record(batches[b], ids[b], Status.Open);
            roots[b] = _settledRoots(batches[b], ids[b], signatures[b], openings[b]);
            committed[b] = type(uint256).max >> (256 - roots[b].length);
            _records[slot] = (word & ~_STATUS_MASK) | uint256(Status.Settled);
        }
        _payoutGroup(batches, ids, roots, committed);
    }

    /// @dev The checks of the fast path for one batch (deadline, lengths, signatures); the opened roots.
    function _settledRoots(
        Batch calldata batch,
        bytes32 batchId,
        bytes32[] calldata signatures,
        bytes32[] calldata openings
    ) private view returns (bytes32[] memory roots) {
        if (block.timestamp > batch.finalDeadline) revert AirqubeEscrowV2TooLate(batchId, batch.finalDeadline);
        uint256 k = batch.providers.length;
        uint256 n = batch.jobs;
        if (signatures.length != 2 * k || openings.length != 2 * n * k) revert AirqubeEscrowV2BadLength(batchId);

        roots = new bytes32[](n * k);
        bytes32[] memory column = new bytes32[](n);
        for (uint256 s = 0; s < k; ++s) {
            address p = batch.providers[s];
            for (uint256 j = 0; j < n; ++j) {
                uint256 pos = j * k + s;
                bytes32 root = openings[2 * pos];
                if (root == 0) revert AirqubeEscrowV2BadOpening(batchId, pos);
                roots[pos] = root;
                column[j] = _commitment(batchId, j, root, openings[2 * pos + 1], p);
            }
            _checkColumn(batchId, column, signatures[2 * s], signatures[2 * s + 1], p);
        }
    }

    /**
     * @notice Settles an open batch in which every seat agreed, on the requestor's word alone (the unanimous
     * path): every seat gets `price + stake` for every job, with no signature and no opening on chain. This is
     * the most the batch can pay: the requestor gets nothing back and no seat is slashed, so the only account
     * it can leave worse off than a checked settlement ({settle}, {finalize}) is the requestor who sends it.
     * The requestor takes it after checking off chain that every seat committed to, and opened, the same root
     * for every job; with any dissent, silence or doubt it uses {settle} or {propose} instead. Only the
     * requestor may call it, while the batch is open (not under dispute).
     * @param batch The batch's parameters.
     */
    function release(Batch calldata batch) external nonReentrant {
        bytes32 batchId = keccak256(abi.encode(batch));
        (bytes32 slot, uint256 word) = _recordAlone(batch, batchId, Status.Open);
        if (msg.sender != batch.requestor) revert AirqubeEscrowV2Unauthorized(msg.sender);
        _records[slot] = (word & ~_STATUS_MASK) | uint256(Status.Settled);
        uint256 k = batch.providers.length;
        uint256 n = batch.jobs;
        emit Settled(batchId, n * k, 0);
        uint256 each = (uint256(batch.price) + batch.stake) * n;
        for (uint256 i = 0; i < k; ++i) {
            _credit(batch.providers[i], each);
        }
    }

    /**
     * @notice Starts a dispute with the signed commitments the caller knows. Allowed to the requestor after the
     * commit deadline (or before it when every seat signed), and to a seat after the reveal deadline, while both
     * windows still end by the final deadline.
     * @param batch The batch's parameters.
     * @param signatures For each seat, `[r, vs]` of its `Commitments`; ignored for a seat whose column is empty.
     * @param commitments For each position `job * k + seat`, the seat's commitment, or zero.
     */
    function propose(Batch calldata batch, bytes32[] calldata signatures, bytes32[] calldata commitments)
        external
        nonReentrant
    {
        bytes32 batchId = keccak256(abi.encode(batch));
        (bytes32 slot, uint256 word) = _record(batch, batchId, Status.Open);
        uint256 k = batch.providers.length;
        uint256 n = batch.jobs;
        if (signatures.length != 2 * k || commitments.length != n * k) revert AirqubeEscrowV2BadLength(batchId);
        uint256 window = uint256(batch.revealDeadline) - batch.commitDeadline;
        if (block.timestamp + 2 * window > batch.finalDeadline) {
            revert AirqubeEscrowV2TooLate(batchId, batch.finalDeadline - 2 * window);
        }

        bool allPresent = true;
        bytes32[] memory column = new bytes32[](n);
        for (uint256 s = 0; s < k; ++s) {
            if (_columnOf(commitments, s, k, column)) {
                _checkColumn(batchId, column, signatures[2 * s], signatures[2 * s + 1], batch.providers[s]);
            } else {
                allPresent = false;
            }
        }
        if (msg.sender == batch.requestor) {
            if (!allPresent && block.timestamp <= batch.commitDeadline) {
                revert AirqubeEscrowV2TooEarly(batchId, batch.commitDeadline);
            }
        } else {
            _seatOf(batch, msg.sender);
            if (block.timestamp <= batch.revealDeadline) revert AirqubeEscrowV2TooEarly(batchId, batch.revealDeadline);
        }
        _records[slot] = (word & ~_STATUS_MASK) | uint256(Status.Proposed);
        _proposedAt[batchId] = block.timestamp;
        _proposals[batchId] = keccak256(abi.encodePacked(commitments));
        emit Proposed(batchId, msg.sender, commitments, block.timestamp + window);
    }

    /**
     * @notice Adds a seat's signed column to a proposal that left it out. Anyone may call it (the seat itself,
     * usually), during the commitment window.
     * @param batch The batch's parameters.
     * @param commitments The proposal's current commitments (see the `Proposed` and `CommitmentsAdded` events).
     * @param seat The seat, whose column in `commitments` must be empty.
     * @param signature The seat's `[r, vs]` of `Commitments(batchId, keccak256(column))`.
     * @param column The seat's commitments, one per job, not all zero.
     */
    function addCommitments(
        Batch calldata batch,
        bytes32[] calldata commitments,
        uint256 seat,
        bytes32[2] calldata signature,
        bytes32[] calldata column
    ) external nonReentrant {
        bytes32 batchId = keccak256(abi.encode(batch));
        _record(batch, batchId, Status.Proposed);
        uint256 commitBy = _proposedAt[batchId] + (uint256(batch.revealDeadline) - batch.commitDeadline);
        if (block.timestamp > commitBy) revert AirqubeEscrowV2TooLate(batchId, commitBy);
        _checkProposal(batchId, commitments);
        uint256 k = batch.providers.length;
        uint256 n = batch.jobs;
        if (seat >= k || column.length != n) revert AirqubeEscrowV2BadLength(batchId);
        bytes32[] memory updated = commitments;
        bytes32[] memory current = new bytes32[](n);
        bool nonEmpty;
        for (uint256 j = 0; j < n; ++j) {
            updated[j * k + seat] = column[j];
            current[j] = column[j];
            if (column[j] != 0) nonEmpty = true;
        }
        if (_columnOf(commitments, seat, k, new bytes32[](n)) || !nonEmpty) {
            revert AirqubeEscrowV2SeatPresent(batchId, seat);
        }
        _checkColumn(batchId, current, signature[0], signature[1], batch.providers[seat]);
        _proposals[batchId] = keccak256(abi.encodePacked(updated));
        emit CommitmentsAdded(batchId, seat, column);
    }

    /**
     * @notice Proves that a seat signed two different columns of commitments for a batch under dispute: at
     * {finalize} the seat counts as committed with no opening (no vote, stake slashed). Anyone may call it
     * until the batch is finalised.
     * @param batch The batch's parameters.
     * @param seat The seat.
     * @param columnHashes The hashes of the two columns (`keccak256(abi.encodePacked(column))`), different.
     * @param signatures The seat's `[r, vs]` of each, one after the other.
     */
    function proveEquivocation(
        Batch calldata batch,
        uint256 seat,
        bytes32[2] calldata columnHashes,
        bytes32[4] calldata signatures
    ) external nonReentrant {
        bytes32 batchId = keccak256(abi.encode(batch));
        _record(batch, batchId, Status.Proposed);
        if (seat >= batch.providers.length) revert AirqubeEscrowV2BadLength(batchId);
        if (columnHashes[0] == columnHashes[1]) revert AirqubeEscrowV2NotEquivocation(batchId, seat);
        address p = batch.providers[seat];
        _checkColumnHash(batchId, columnHashes[0], signatures[0], signatures[1], p);
        _checkColumnHash(batchId, columnHashes[1], signatures[2], signatures[3], p);
        _equivocated[batchId] |= 1 << seat;
        emit Equivocated(batchId, seat);
    }

    /**
     * @notice Records openings on chain during a dispute's reveal window, so that {finalize} must count them.
     * Anyone may call it.
     * @param batch The batch's parameters.
     * @param commitments The proposal's current commitments.
     * @param openings Triples `[position, outputsRoot, salt]`; the root is not zero.
     */
    function reveal(Batch calldata batch, bytes32[] calldata commitments, bytes32[] calldata openings)
        external
        nonReentrant
    {
        bytes32 batchId = keccak256(abi.encode(batch));
        _record(batch, batchId, Status.Proposed);
        uint256 window = uint256(batch.revealDeadline) - batch.commitDeadline;
        uint256 commitBy = _proposedAt[batchId] + window;
        if (block.timestamp <= commitBy) revert AirqubeEscrowV2TooEarly(batchId, commitBy);
        if (block.timestamp > commitBy + window) revert AirqubeEscrowV2TooLate(batchId, commitBy + window);
        _checkProposal(batchId, commitments);
        if (openings.length % 3 != 0) revert AirqubeEscrowV2BadLength(batchId);
        uint256 k = batch.providers.length;
        uint256 bits = _revealed[batchId];
        uint256 before = bits;
        for (uint256 i = 0; i < openings.length; i += 3) {
            uint256 pos = uint256(openings[i]);
            if (pos >= commitments.length) revert AirqubeEscrowV2BadLength(batchId);
            _checkOpening(batchId, batch, commitments, pos, k, openings[i + 1], openings[i + 2]);
            if (bits & (1 << pos) != 0) continue;
            bits |= 1 << pos;
            emit Revealed(batchId, pos, openings[i + 1], openings[i + 2]);
        }
        if (bits == before) revert AirqubeEscrowV2NothingToReveal(batchId);
        _revealed[batchId] = bits;
    }

    /**
     * @notice Settles a disputed batch after its reveal window: seats that committed and did not open are
     * slashed, seats that never committed get their stakes back unpaid. Anyone may call it.
     * @param batch The batch's parameters.
     * @param commitments The proposal's current commitments.
     * @param openings For each position `job * k + seat`, `outputsRoot` then `salt`, or two zeros when not
     * opened; every opening recorded on chain must be given.
     */
    function finalize(Batch calldata batch, bytes32[] calldata commitments, bytes32[] calldata openings)
        external
        nonReentrant
    {
        bytes32 batchId = keccak256(abi.encode(batch));
        (bytes32 slot, uint256 word) = _recordAlone(batch, batchId, Status.Proposed);
        (bytes32[] memory roots, uint256 committed) = _disputedRoots(batch, batchId, commitments, openings);
        _records[slot] = (word & ~_STATUS_MASK) | uint256(Status.Settled);
        _payout(batchId, batch, roots, committed);
    }

    /**
     * @notice Settles a group after the dispute of its batches, as {finalize} does for one batch: each job is
     * tallied over the group's batches under dispute with the leader's `quorum`. Every batch of the group must be
     * under dispute with its reveal window over, or closed already (reclaimed after its final deadline: it then
     * has no votes and pays nothing); a batch still open must first be proposed or, after its final deadline,
     * reclaimed. Anyone may call it.
     * @param batches The leader, then its follow-ups in the order they were opened.
     * @param commitments For each batch, its proposal's current commitments (anything for a closed batch).
     * @param openings For each batch, its openings as for {finalize} (anything for a closed batch).
     */
    function finalizeGroup(Batch[] calldata batches, bytes32[][] calldata commitments, bytes32[][] calldata openings)
        external
        nonReentrant
    {
        uint256 m = batches.length;
        if (commitments.length != m || openings.length != m) revert AirqubeEscrowV2GroupMismatch(bytes32(0));
        bytes32[] memory ids = _checkGroup(batches);
        bytes32[][] memory roots = new bytes32[][](m);
        uint256[] memory committed = new uint256[](m);
        bool disputed;
        for (uint256 b = 0; b < m; ++b) {
            Batch calldata batch = batches[b];
            bytes32 slot = _slotOf(batch.requestor, batch.nonce);
            uint256 word = _records[slot];
            uint256 status = _matches(word, ids[b], batch.nonce) ? word & _STATUS_MASK : 0;
            if (status == uint256(Status.Proposed)) {
                (roots[b], committed[b]) = _disputedRoots(batch, ids[b], commitments[b], openings[b]);
                _records[slot] = (word & ~_STATUS_MASK) | uint256(Status.Settled);
                disputed = true;
            } else if (status == uint256(Status.Open) || status == uint256(Status.Settled)) {
                revert AirqubeEscrowV2WrongStatus(ids[b], Status(status));
            }
            // Reclaimed, or None (its ring slot took a later batch after it was reclaimed): no votes, no payout.
        }
        if (!disputed) revert AirqubeEscrowV2WrongStatus(ids[0], Status.Reclaimed);
        _payoutGroup(batches, ids, roots, committed);
    }

    /// @dev The checks of a dispute's end for one batch (reveal window over, proposal, openings, on-chain
    /// reveals); the opened roots and the bitmap of the positions that count as committed.
    function _disputedRoots(
        Batch calldata batch,
        bytes32 batchId,
        bytes32[] calldata commitments,
        bytes32[] calldata openings
    ) private view returns (bytes32[] memory roots, uint256 committed) {
        uint256 revealBy = _proposedAt[batchId] + 2 * (uint256(batch.revealDeadline) - batch.commitDeadline);
        if (block.timestamp <= revealBy) revert AirqubeEscrowV2TooEarly(batchId, revealBy);
        _checkProposal(batchId, commitments);
        uint256 m = commitments.length;
        if (openings.length != 2 * m) revert AirqubeEscrowV2BadLength(batchId);
        uint256 k = batch.providers.length;
        uint256 onChain = _revealed[batchId];
        uint256 equivocated = _equivocated[batchId];
        roots = new bytes32[](m);
        for (uint256 pos = 0; pos < m; ++pos) {
            bytes32 root = openings[2 * pos];
            if (equivocated & (1 << (pos % k)) != 0) {
                committed |= 1 << pos; // counts as committed and silent: no vote, stake slashed
                continue;
            }
            if (commitments[pos] != 0) committed |= 1 << pos;
            if (root == 0) {
                if (onChain & (1 << pos) != 0) revert AirqubeEscrowV2RevealMissing(batchId, pos);
                continue;
            }
            _checkOpening(batchId, batch, commitments, pos, k, root, openings[2 * pos + 1]);
            roots[pos] = root;
        }
    }

    /**
     * @notice Reclaims an open batch (not under dispute) after its final deadline: the budget back to the
     * requestor's balance, the stakes back to the seats'. Anyone may call it.
     * @param batch The batch's parameters.
     */
    function reclaim(Batch calldata batch) external nonReentrant {
        bytes32 batchId = keccak256(abi.encode(batch));
        (bytes32 slot, uint256 word) = _record(batch, batchId, Status.Open);
        if (block.timestamp <= batch.finalDeadline) revert AirqubeEscrowV2TooEarly(batchId, batch.finalDeadline);
        _records[slot] = (word & ~_STATUS_MASK) | uint256(Status.Reclaimed);
        uint256 k = batch.providers.length;
        uint256 budget = uint256(batch.price) * k * batch.jobs;
        emit Reclaimed(batchId, batch.requestor, budget);
        _credit(batch.requestor, budget);
        uint256 locked = uint256(batch.stake) * batch.jobs;
        for (uint256 i = 0; i < k; ++i) {
            _credit(batch.providers[i], locked);
        }
    }

    // ---------------------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------------------

    /**
     * @notice An account's balance (deposits and credits, minus locks and withdrawals).
     * @param account The account.
     * @return The balance.
     */
    function balanceOf(address account) external view returns (uint256) {
        uint256 raw = _balances[account];
        return raw == 0 ? 0 : raw - 1;
    }

    /**
     * @notice A batch's state (`None` once its ring slot holds a later batch).
     * @param batch The batch's parameters.
     * @return status The status.
     * @return proposedAt When a dispute started (block timestamp), or zero.
     * @return revealed Bitmap of the positions opened on chain.
     * @return proposal The hash of the proposal's commitments, or zero.
     */
    function batchState(Batch calldata batch)
        external
        view
        returns (Status status, uint256 proposedAt, uint256 revealed, bytes32 proposal)
    {
        bytes32 batchId = keccak256(abi.encode(batch));
        uint256 word = _records[_slotOf(batch.requestor, batch.nonce)];
        uint256 st = _matches(word, batchId, batch.nonce) ? word & _STATUS_MASK : 0;
        return (Status(st), _proposedAt[batchId], _revealed[batchId], _proposals[batchId]);
    }

    /**
     * @notice Whether a batch leads a group or is a follow-up (both false once its ring slot holds a later batch).
     * @param batch The batch's parameters.
     * @return leader Whether the batch has follow-ups.
     * @return followUp Whether the batch is a follow-up of a leader.
     * @return followUpSeats For a leader, how many seats its follow-ups have in all.
     */
    function batchGroup(Batch calldata batch) external view returns (bool leader, bool followUp, uint256 followUpSeats) {
        bytes32 batchId = keccak256(abi.encode(batch));
        uint256 word = _records[_slotOf(batch.requestor, batch.nonce)];
        if (!_matches(word, batchId, batch.nonce)) return (false, false, 0);
        return (word & _LEADER_BIT != 0, word & _FOLLOWER_BIT != 0, _groups[batchId] & _SEATS_MASK);
    }

    /**
     * @notice The id of a batch: `keccak256(abi.encode(batch))`.
     * @param batch The batch's parameters.
     * @return The batch's id.
     */
    function batchIdOf(Batch calldata batch) external pure returns (bytes32) {
        return keccak256(abi.encode(batch));
    }

    /**
     * @notice A provider's commitment to one job: `keccak256(abi.encode(batchId, job, outputsRoot, salt, provider))`.
     * @param batchId The batch's id.
     * @param job The job's index in the batch.
     * @param outputsRoot The root of the provider's normalised outputs.
     * @param salt A random salt, kept secret until the opening.
     * @param provider The provider's address.
     * @return The commitment.
     */
    function commitmentOf(bytes32 batchId, uint256 job, bytes32 outputsRoot, bytes32 salt, address provider)
        external
        pure
        returns (bytes32)
    {
        return _commitment(batchId, job, outputsRoot, salt, provider);
    }

    /**
     * @notice The EIP-712 digest a seat signs to accept a batch.
     * @param batchId The batch's id.
     * @return The digest.
     */
    function acceptDigest(bytes32 batchId) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(ACCEPT_TYPEHASH, batchId)));
    }

    /**
     * @notice The EIP-712 digest a seat signs to accept a follow-up batch in the group of `leaderId`.
     * @param batchId The follow-up's id.
     * @param leaderId The leader's id.
     * @return The digest.
     */
    function followUpDigest(bytes32 batchId, bytes32 leaderId) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(FOLLOW_UP_TYPEHASH, batchId, leaderId)));
    }

    /**
     * @notice The EIP-712 digest a seat signs for its commitments.
     * @param batchId The batch's id.
     * @param column The seat's commitments, one per job.
     * @return The digest.
     */
    function commitmentsDigest(bytes32 batchId, bytes32[] calldata column) external view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(COMMITMENTS_TYPEHASH, batchId, keccak256(abi.encodePacked(column))))
        );
    }

    // ---------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------

    function _deposit(uint256 amount) private {
        if (amount == 0) revert AirqubeEscrowV2ZeroAmount();
        uint256 raw = _balances[msg.sender];
        _balances[msg.sender] = (raw == 0 ? 1 : raw) + amount;
        emit Deposited(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _debit(address account, uint256 amount) private {
        uint256 raw = _balances[account];
        uint256 balance = raw == 0 ? 0 : raw - 1;
        if (balance < amount) revert AirqubeEscrowV2InsufficientBalance(account, balance, amount);
        _balances[account] = raw - amount;
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        uint256 raw = _balances[account];
        _balances[account] = (raw == 0 ? 1 : raw) + amount;
    }

    function _slotOf(address requestor, uint256 nonce) private pure returns (bytes32 slot) {
        assembly ("memory-safe") {
            mstore(0x00, requestor)
            mstore(0x20, mod(nonce, RING))
            slot := keccak256(0x00, 0x40)
        }
    }

    function _matches(uint256 word, bytes32 batchId, uint256 nonce) private pure returns (bool) {
        return word & _ID_MASK == uint256(batchId) & _ID_MASK && (word >> _NONCE_SHIFT) & _NONCE_MASK == nonce;
    }

    /// @dev The batch's ring slot and record; reverts unless the record is this batch's, in status `expected`.
    function _record(Batch calldata batch, bytes32 batchId, Status expected)
        private
        view
        returns (bytes32 slot, uint256 word)
    {
        slot = _slotOf(batch.requestor, batch.nonce);
        word = _records[slot];
        uint256 status = _matches(word, batchId, batch.nonce) ? word & _STATUS_MASK : 0;
        if (status != uint256(expected)) revert AirqubeEscrowV2WrongStatus(batchId, Status(status));
    }

    /// @dev As {_record}, and reverts for a batch of a group (settled only with its group).
    function _recordAlone(Batch calldata batch, bytes32 batchId, Status expected)
        private
        view
        returns (bytes32 slot, uint256 word)
    {
        (slot, word) = _record(batch, batchId, expected);
        if (word & _GROUP_BITS != 0) revert AirqubeEscrowV2GroupSettlement(batchId);
    }

    /// @dev The next link of a leader's follow-ups: the hash of the link and the follow-up's id, whose low byte is
    /// replaced by the follow-ups' seats so far.
    function _nextLink(uint256 link, bytes32 followUpId, uint256 seats) private pure returns (uint256) {
        return (uint256(keccak256(abi.encode(link, followUpId))) & ~_SEATS_MASK) | ((link & _SEATS_MASK) + seats);
    }

    /// @dev Reverts unless `batches` is exactly a leader's group: the leader, then every follow-up once, in the
    /// order they were opened. Returns the batches' ids.
    function _checkGroup(Batch[] calldata batches) private view returns (bytes32[] memory ids) {
        uint256 m = batches.length;
        if (m < 2) revert AirqubeEscrowV2GroupMismatch(bytes32(0));
        ids = new bytes32[](m);
        ids[0] = keccak256(abi.encode(batches[0]));
        uint256 link;
        for (uint256 b = 1; b < m; ++b) {
            ids[b] = keccak256(abi.encode(batches[b]));
            link = _nextLink(link, ids[b], batches[b].providers.length);
        }
        if (link != _groups[ids[0]]) revert AirqubeEscrowV2GroupMismatch(ids[0]);
    }

    function _seatOf(Batch calldata batch, address account) private pure returns (uint256) {
        for (uint256 i = 0; i < batch.providers.length; ++i) {
            if (batch.providers[i] == account) return i;
        }
        revert AirqubeEscrowV2Unauthorized(account);
    }

    function _checkProposal(bytes32 batchId, bytes32[] calldata commitments) private view {
        if (keccak256(abi.encodePacked(commitments)) != _proposals[batchId]) {
            revert AirqubeEscrowV2ProposalMismatch(batchId);
        }
    }

    /// @dev Copies seat `s`'s column out of job-major `commitments` into `column`; whether it is not all zero.
    function _columnOf(bytes32[] calldata commitments, uint256 s, uint256 k, bytes32[] memory column)
        private
        pure
        returns (bool present)
    {
        for (uint256 j = 0; j < column.length; ++j) {
            bytes32 c = commitments[j * k + s];
            column[j] = c;
            if (c != 0) present = true;
        }
    }

    function _checkSignature(bytes32 batchId, bytes32 digest, bytes32 r, bytes32 vs, address signer) private pure {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, r, vs);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) {
            revert AirqubeEscrowV2BadSignature(batchId, signer);
        }
    }

    function _checkColumn(bytes32 batchId, bytes32[] memory column, bytes32 r, bytes32 vs, address signer)
        private
        view
    {
        bytes32 columnHash;
        assembly ("memory-safe") {
            columnHash := keccak256(add(column, 0x20), shl(5, mload(column)))
        }
        _checkColumnHash(batchId, columnHash, r, vs, signer);
    }

    function _checkColumnHash(bytes32 batchId, bytes32 columnHash, bytes32 r, bytes32 vs, address signer)
        private
        view
    {
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(COMMITMENTS_TYPEHASH, batchId, columnHash)));
        _checkSignature(batchId, digest, r, vs, signer);
    }

    function _checkOpening(
        bytes32 batchId,
        Batch calldata batch,
        bytes32[] calldata commitments,
        uint256 pos,
        uint256 k,
        bytes32 root,
        bytes32 salt
    ) private pure {
        if (root == 0 || _commitment(batchId, pos / k, root, salt, batch.providers[pos % k]) != commitments[pos]) {
            revert AirqubeEscrowV2BadOpening(batchId, pos);
        }
    }

    function _commitment(bytes32 batchId, uint256 job, bytes32 root, bytes32 salt, address provider)
        private
        pure
        returns (bytes32 c)
    {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, batchId)
            mstore(add(m, 0x20), job)
            mstore(add(m, 0x40), root)
            mstore(add(m, 0x60), salt)
            mstore(add(m, 0x80), provider)
            c := keccak256(m, 0xa0)
        }
    }

    /**
     * @dev Pays out every job of a settled batch. `roots[job * k + seat]` is the opened root (zero if not opened);
     * `committed` has a bit per position that committed. Credits are summed per account over the batch and
     * written once per account. Per job the amounts add up to its budget plus its locked stakes.
     */
    function _payout(bytes32 batchId, Batch calldata batch, bytes32[] memory roots, uint256 committed) private {
        uint256 k = batch.providers.length;
        uint256 n = batch.jobs;
        uint256 price = batch.price;
        uint256 stake = batch.stake;
        uint256 quorum = batch.quorum;
        uint256[] memory credits = new uint256[](k);
        uint256 refund;
        uint256 winnersTotal;
        uint256 slashedTotal;
        for (uint256 j = 0; j < n; ++j) {
            uint256 base = j * k;
            (bytes32 winner, uint256 count) = _winnerOf(roots, committed, base, k, quorum);
            uint256 slashedSeats;
            for (uint256 s = 0; s < k; ++s) {
                bytes32 root = roots[base + s];
                if (committed & (1 << (base + s)) == 0 || (root != 0 && count == 0)) {
                    credits[s] += stake; // never committed, or opened without a winner: stake back, unpaid
                } else if (root == 0 || root != winner) {
                    ++slashedSeats; // silent after the request, or a dissenter
                }
            }
            uint256 pool = slashedSeats * stake;
            slashedTotal += pool;
            if (count == 0) {
                refund += price * k + pool;
                continue;
            }
            uint256 share = pool / count;
            refund += price * (k - count) + (pool - share * count);
            winnersTotal += count;
            for (uint256 s = 0; s < k; ++s) {
                if (roots[base + s] == winner) credits[s] += price + stake + share;
            }
        }
        emit Settled(batchId, winnersTotal, slashedTotal);
        for (uint256 s = 0; s < k; ++s) {
            _credit(batch.providers[s], credits[s]);
        }
        _credit(batch.requestor, refund);
    }

    /**
     * @dev Pays out a settled group as {_payout} does a batch, each job tallied over the whole group with the
     * leader's `quorum`: `roots[b]` and `committed[b]` are batch `b`'s, and an empty `roots[b]` leaves out a
     * batch already closed (no votes, no payout). The winners of a job share the job's slashed stakes of the
     * whole group; the dust and every refund go to the (one) requestor.
     */
    function _payoutGroup(
        Batch[] calldata batches,
        bytes32[] memory ids,
        bytes32[][] memory roots,
        uint256[] memory committed
    ) private {
        uint256 m = batches.length;
        uint256 n = batches[0].jobs;
        uint256[][] memory credits = new uint256[][](m);
        uint256[] memory winners = new uint256[](m);
        uint256[] memory slashed = new uint256[](m);
        for (uint256 b = 0; b < m; ++b) {
            credits[b] = new uint256[](batches[b].providers.length);
        }
        uint256 refund;
        for (uint256 j = 0; j < n; ++j) {
            (bytes32 winner, uint256 count) = _groupWinnerOf(batches, roots, committed, j);
            uint256 pool;
            for (uint256 b = 0; b < m; ++b) {
                if (roots[b].length == 0) continue;
                uint256 k = batches[b].providers.length;
                uint256 stake = batches[b].stake;
                for (uint256 s = 0; s < k; ++s) {
                    uint256 pos = j * k + s;
                    bytes32 root = roots[b][pos];
                    if (count != 0 && root == winner) continue; // a winner: paid below
                    refund += batches[b].price;
                    if (committed[b] & (1 << pos) == 0 || (root != 0 && count == 0)) {
                        credits[b][s] += stake; // never committed, or opened without a winner: stake back
                    } else {
                        pool += stake; // silent after the request, or a dissenter
                        slashed[b] += stake;
                    }
                }
            }
            if (count == 0) {
                refund += pool;
                continue;
            }
            uint256 share = pool / count;
            refund += pool - share * count;
            for (uint256 b = 0; b < m; ++b) {
                if (roots[b].length == 0) continue;
                uint256 k = batches[b].providers.length;
                uint256 paid = uint256(batches[b].price) + batches[b].stake + share;
                for (uint256 s = 0; s < k; ++s) {
                    if (roots[b][j * k + s] == winner) {
                        credits[b][s] += paid;
                        ++winners[b];
                    }
                }
            }
        }
        for (uint256 b = 0; b < m; ++b) {
            if (roots[b].length == 0) continue;
            emit Settled(ids[b], winners[b], slashed[b]);
            for (uint256 s = 0; s < credits[b].length; ++s) {
                _credit(batches[b].providers[s], credits[b][s]);
            }
        }
        _credit(batches[0].requestor, refund);
    }

    /// @dev Job `j`'s winning root over a group: as {_winnerOf}, with every batch's votes and the leader's quorum.
    function _groupWinnerOf(Batch[] calldata batches, bytes32[][] memory roots, uint256[] memory committed, uint256 j)
        private
        pure
        returns (bytes32 winner, uint256 count)
    {
        uint256 m = batches.length;
        uint256 seats;
        for (uint256 b = 0; b < m; ++b) {
            if (roots[b].length == 0) continue;
            uint256 k = batches[b].providers.length;
            for (uint256 s = 0; s < k; ++s) {
                if (committed[b] & (1 << (j * k + s)) != 0) ++seats;
            }
        }
        uint256 needed = uint256(batches[0].quorum) + seats;
        for (uint256 b = 0; b < m; ++b) {
            if (roots[b].length == 0) continue;
            uint256 k = batches[b].providers.length;
            for (uint256 s = 0; s < k; ++s) {
                bytes32 root = roots[b][j * k + s];
                if (root == 0) continue;
                uint256 c;
                for (uint256 a = 0; a < m; ++a) {
                    if (roots[a].length == 0) continue;
                    uint256 ka = batches[a].providers.length;
                    for (uint256 t = 0; t < ka; ++t) {
                        if (roots[a][j * ka + t] == root) ++c;
                    }
                }
                if (2 * c >= needed) return (root, c);
            }
        }
    }

    /// @dev A job's winning root: `c` equal opened roots with `2c >= quorum + committed seats` (at most one).
    function _winnerOf(bytes32[] memory roots, uint256 committed, uint256 base, uint256 k, uint256 quorum)
        private
        pure
        returns (bytes32 winner, uint256 count)
    {
        uint256 seats;
        for (uint256 s = 0; s < k; ++s) {
            if (committed & (1 << (base + s)) != 0) ++seats;
        }
        for (uint256 s = 0; s < k; ++s) {
            bytes32 root = roots[base + s];
            if (root == 0) continue;
            uint256 c = 1;
            for (uint256 t = s + 1; t < k; ++t) {
                if (roots[base + t] == root) ++c;
            }
            if (2 * c >= quorum + seats) return (root, c);
        }
    }
}
