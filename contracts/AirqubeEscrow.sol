// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/**
 * @title AirqubeEscrow
 * @notice Pay-on-agreement escrow for Airqube qubes, in one ERC-20 token (GLM on Polygon, a test token on the
 * devnet). A requestor locks a budget of `k * price` for a job that runs one qube on `k` chosen providers.
 * Each provider bonds its stake together with an on-chain commitment
 * `keccak256(abi.encode(jobId, outputsRoot, salt, provider))`. Openings (outputsRoot, salt) are revealed on
 * chain by anyone or, on the fast path, handed to {settle} in one batch; the contract checks every opening
 * against its commitment.
 *
 * Groups: the jobs of one qube. A replacement (a provider that failed before committing is replaced) or a
 * tie-breaker round is opened with {openFollowUp}, naming the qube's first job (the leader); the leader counts
 * its follow-ups and the group is settled as a whole with {settleGroup} (a job of a group cannot be settled
 * alone). Payment thus follows the qube's decision: the votes of every job of the group are counted together,
 * so a first-round provider whose answer is in the decided quorum is paid even when its own job lost seats, and
 * a tie-breaker whose answer went against the quorum is a dissenter, not a solo winner.
 *
 * The winning root is the requestor's rule (src/requestor/quorum.ts): a qualified majority, at least `quorum`
 * votes plus one for every other committed seat (a dissent, or a commitment not revealed), counted over the
 * group with the leader's `quorum`. It is a strict majority, so at most one root wins; a dissent without enough
 * tie-breakers to outvote it leaves no winner (nobody paid, nobody who revealed slashed), as the requestor's
 * decision is then "need more" or "no consensus".
 *
 * Settlement pays `price` plus the stake back to every provider whose root is the winner, gives them the stakes
 * of the slashed in equal shares, and refunds the rest of the budget to the requestor. Without a winner nobody
 * is paid, revealers get their stakes back, and the slashed stakes go to the requestor.
 *
 * Who can be slashed: a provider that revealed another root than the winner; and a provider that committed and
 * never revealed ONLY if the requestor asked for reveals on chain ({requestReveal}) and a full reveal window
 * (`revealDeadline - commitDeadline` seconds) passed since. A provider that was never asked gets its stake back
 * (a requestor that vanishes cannot take honest providers' stakes). A job with missing openings and no request
 * can be settled after its reveal deadline (the missing providers get their stakes back, unpaid); providers
 * protect their pay by revealing on chain themselves before it. After the final deadline an unsettled job can be
 * reclaimed: budget to the requestor, stakes back to the providers. All payouts are credited to per-account
 * balances and pulled with {withdraw}.
 *
 * @dev Gas design (see the README section "Payments"):
 * - A job is identified by `jobId = keccak256(abi.encode(job))`; its parameters are never stored, every call
 *   passes them as calldata and the contract re-derives the id. One storage word per job holds the status, the
 *   group bits, the committed and revealed bitmaps, the time of the reveal request and a 184-bit hash chain
 *   over the commitments in commit order, so a commitment costs a warm re-write instead of a fresh slot.
 * - On-chain commitments were chosen over provider-signed statements checked with ECDSA at settlement: the
 *   commit transaction is needed anyway to bond the stake, adding the commitment to it costs about 5k gas,
 *   while ECDSA statements cost about 4-5k gas each at settlement and let whoever submits them leave an honest
 *   provider's statement out. With on-chain commitments nobody can censor a provider: it can always reveal on
 *   chain itself, and settle after the deadlines.
 * - Groups cost nothing for a qube without follow-ups; a follow-up writes one more word (the leader's count).
 * - Balances keep a sentinel of 1 once an account was used, so a returning provider's next credit costs a
 *   warm-slot update (about 5k gas) instead of a fresh slot (about 22k).
 * - Reentrancy protection uses transient storage (EIP-1153, Cancun). Only plain ERC-20 tokens are supported
 *   (no fee-on-transfer or rebasing tokens).
 */
contract AirqubeEscrow is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The parameters of a job; `jobId = keccak256(abi.encode(job))`.
    struct Job {
        /// The account that opens the job, pays the budget and gets refunds.
        address requestor;
        /// The qube's content hash.
        bytes32 qubeId;
        /// Distinguishes repeated jobs for the same qube; a follow-up's nonce is `uint64(uint256(leaderId))`.
        uint64 nonce;
        /// The chosen providers, distinct; a provider's index in this list is its seat.
        address[] providers;
        /// What each provider in the quorum earns; the budget is `price * providers.length`.
        uint96 price;
        /// What each provider bonds with its commitment.
        uint96 stake;
        /// How many equal roots make a quorum; `2 * quorum > providers.length`. A group uses its leader's.
        uint8 quorum;
        /// Last second (block timestamp) at which a commitment is accepted.
        uint40 commitDeadline;
        /// Without a reveal request: the second after which the job can be settled with openings missing (their
        /// providers get their stakes back). `revealDeadline - commitDeadline` is the reveal window.
        uint40 revealDeadline;
        /// Last second at which the job can be settled; after it, it can only be reclaimed.
        uint40 finalDeadline;
    }

    /// @notice One entry of the commitment chain, in commit order, optionally with its opening.
    struct Opening {
        /// The provider's seat (index in `Job.providers`).
        uint256 index;
        /// The commitment the provider submitted.
        bytes32 commitment;
        /// The revealed outputs root, or zero (with a zero salt) when not revealed.
        bytes32 outputsRoot;
        /// The revealed salt, or zero (with a zero root) when not revealed.
        bytes32 salt;
    }

    /// @notice The status of a job.
    enum Status {
        None,
        Open,
        Settled,
        Reclaimed
    }

    /// @notice The most providers a job may have.
    uint256 public constant MAX_PROVIDERS = 12;
    /// @notice The most follow-up jobs a leader may have.
    uint256 public constant MAX_FOLLOW_UPS = 31;

    uint256 private constant _STATUS_MASK = 0x3;
    uint256 private constant _FOLLOWER_BIT = 0x4;
    uint256 private constant _FOLLOW_UPS_SHIFT = 3;
    uint256 private constant _FOLLOW_UPS_MASK = 0x1f;
    uint256 private constant _COMMITTED_SHIFT = 8;
    uint256 private constant _REVEALED_SHIFT = 20;
    uint256 private constant _REQUESTED_SHIFT = 32;
    uint256 private constant _REQUESTED_MASK = 0xffffffffff;
    uint256 private constant _ACC_SHIFT = 72;
    uint256 private constant _ACC_BITS = 184;
    uint256 private constant _MASK_BITS = 0xfff;
    uint256 private constant _LOW_BITS = (1 << 72) - 1;

    /// @notice The token of budgets, stakes and payouts.
    IERC20 public immutable token;

    /// @notice The block the escrow was deployed in: event reads start there.
    uint256 public immutable deploymentBlock;

    /// @dev jobId => status (bits 0-1) | follower flag (2) | follow-up count (3-7) | committed bitmap (8-19) |
    /// revealed bitmap (20-31) | reveal request time (32-71) | commitment chain (72-255).
    mapping(bytes32 jobId => uint256 word) private _jobs;

    /// @dev account => balance + 1 once used (0 = never used).
    mapping(address account => uint256 balancePlusOne) private _balances;

    /// @notice A job was opened and its budget locked.
    event JobOpened(bytes32 indexed jobId, address indexed requestor, bytes32 indexed qubeId, uint256 budget);
    /// @notice A follow-up job (replacement or tie-breaker) joined its leader's group; carries both jobs'
    /// parameters so that any provider of the group can settle it.
    event FollowUpOpened(bytes32 indexed leaderId, bytes32 indexed jobId, Job leader, Job job);
    /// @notice A provider bonded its stake and committed to a result.
    event Committed(bytes32 indexed jobId, address indexed provider, bytes32 commitment);
    /// @notice The requestor asked for reveals on chain; non-revealers can be slashed after `revealBy`.
    event RevealRequested(bytes32 indexed jobId, uint256 revealBy);
    /// @notice A provider's opening was recorded on chain.
    event Revealed(bytes32 indexed jobId, address indexed provider, bytes32 outputsRoot, bytes32 salt);
    /// @notice A job was settled; `outputsRoot` is the (group's) winning root, or zero without one; `winners` are
    /// this job's providers paid.
    event Settled(bytes32 indexed jobId, bytes32 indexed outputsRoot, uint256 winners, uint256 slashed);
    /// @notice A provider's stake was taken because it dissented from the quorum or never revealed when asked.
    event Slashed(bytes32 indexed jobId, address indexed provider, uint256 amount);
    /// @notice An unsettled job was reclaimed after its deadline.
    event Reclaimed(bytes32 indexed jobId, address indexed requestor, uint256 budget);
    /// @notice An account's withdrawable balance grew because of a job.
    event Credited(bytes32 indexed jobId, address indexed account, uint256 amount);
    /// @notice An account withdrew its balance.
    event Withdrawn(address indexed account, uint256 amount);

    /// @notice The caller is not the job's requestor.
    error AirqubeEscrowNotRequestor(address caller, address requestor);
    /// @notice The job has no providers or more than {MAX_PROVIDERS}.
    error AirqubeEscrowInvalidProviderCount(uint256 count);
    /// @notice A provider is the zero address or appears twice.
    error AirqubeEscrowInvalidProvider(address provider);
    /// @notice The quorum is not a strict majority of the providers.
    error AirqubeEscrowInvalidQuorum(uint256 quorum, uint256 providers);
    /// @notice The price is zero.
    error AirqubeEscrowZeroPrice();
    /// @notice The deadlines are not `now < commit < reveal < final`.
    error AirqubeEscrowInvalidDeadlines(uint256 commitDeadline, uint256 revealDeadline, uint256 finalDeadline);
    /// @notice The job's calldata is not in the canonical ABI encoding.
    error AirqubeEscrowNonCanonicalJob();
    /// @notice A job with these parameters exists already.
    error AirqubeEscrowJobExists(bytes32 jobId);
    /// @notice The job is not open (never opened, settled or reclaimed).
    error AirqubeEscrowJobNotOpen(bytes32 jobId, Status status);
    /// @notice The caller does not hold the given seat.
    error AirqubeEscrowNotProvider(bytes32 jobId, address caller, uint256 index);
    /// @notice The provider has committed already.
    error AirqubeEscrowAlreadyCommitted(bytes32 jobId, address provider);
    /// @notice A commitment of zero was given.
    error AirqubeEscrowZeroCommitment(bytes32 jobId);
    /// @notice The action is not allowed before `notBefore` (a block timestamp, exclusive).
    error AirqubeEscrowTooEarly(bytes32 jobId, uint256 notBefore);
    /// @notice The action is not allowed after `deadline` (a block timestamp, inclusive).
    error AirqubeEscrowTooLate(bytes32 jobId, uint256 deadline);
    /// @notice The given commitments are not the job's commitments in commit order.
    error AirqubeEscrowCommitmentsMismatch(bytes32 jobId);
    /// @notice An opening does not match the provider's commitment.
    error AirqubeEscrowBadOpening(bytes32 jobId, address provider);
    /// @notice The provider revealed on chain but its opening was left out.
    error AirqubeEscrowRevealMissing(bytes32 jobId, address provider);
    /// @notice A reveal call carried no new opening.
    error AirqubeEscrowNothingToReveal(bytes32 jobId);
    /// @notice The account has nothing to withdraw.
    error AirqubeEscrowNothingToWithdraw(address account);
    /// @notice The follow-up does not belong to the leader (requestor, qube or nonce differ), or the leader is a
    /// follow-up itself, or it has {MAX_FOLLOW_UPS} already.
    error AirqubeEscrowNotAFollowUp(bytes32 jobId, bytes32 leaderId);
    /// @notice The job belongs to a group: settle it with {settleGroup}.
    error AirqubeEscrowGroupSettlement(bytes32 jobId);
    /// @notice The jobs given are not exactly the leader's group (leader first, each follow-up once).
    error AirqubeEscrowGroupMismatch(bytes32 leaderId);
    /// @notice Reveals were requested on chain for this job already.
    error AirqubeEscrowAlreadyRequested(bytes32 jobId);

    /// @param token_ The ERC-20 token of budgets, stakes and payouts.
    constructor(IERC20 token_) {
        token = token_;
        deploymentBlock = block.number;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Requestor
    // ---------------------------------------------------------------------------------------------------------

    /**
     * @notice Opens a job and locks its budget (`job.price * job.providers.length`), pulled from the caller
     * with `transferFrom` (approve the escrow first, or use the token's permit).
     * @param job The job's parameters; `job.requestor` must be the caller.
     * @return jobId The job's id, `keccak256(abi.encode(job))`.
     */
    function openJob(Job calldata job) external nonReentrant returns (bytes32 jobId) {
        jobId = _checkNewJob(job);
        _jobs[jobId] = uint256(Status.Open);
        uint256 budget = uint256(job.price) * job.providers.length;
        emit JobOpened(jobId, msg.sender, job.qubeId, budget);

        token.safeTransferFrom(msg.sender, address(this), budget);
    }

    /**
     * @notice Opens a follow-up job of a qube (a replacement or a tie-breaker round) in the group of the qube's
     * first job, `leader`, and locks its budget. The group is then settled as a whole with {settleGroup}.
     * @param job The follow-up's parameters: same requestor (the caller) and qube as the leader, and
     * `nonce == uint64(uint256(leaderId))`.
     * @param leader The leader's parameters; the leader must be open and not a follow-up itself.
     * @return jobId The follow-up's id.
     */
    function openFollowUp(Job calldata job, Job calldata leader) external nonReentrant returns (bytes32 jobId) {
        jobId = _checkNewJob(job);
        bytes32 leaderId = _jobId(leader);
        uint256 leaderWord = _openWord(leaderId);
        if (
            leader.requestor != job.requestor || leader.qubeId != job.qubeId
                || job.nonce != uint64(uint256(leaderId)) || leaderWord & _FOLLOWER_BIT != 0
                || (leaderWord >> _FOLLOW_UPS_SHIFT) & _FOLLOW_UPS_MASK == MAX_FOLLOW_UPS
        ) revert AirqubeEscrowNotAFollowUp(jobId, leaderId);

        _jobs[leaderId] = leaderWord + (1 << _FOLLOW_UPS_SHIFT);
        _jobs[jobId] = uint256(Status.Open) | _FOLLOWER_BIT;
        uint256 budget = uint256(job.price) * job.providers.length;
        emit JobOpened(jobId, msg.sender, job.qubeId, budget);
        emit FollowUpOpened(leaderId, jobId, leader, job);

        token.safeTransferFrom(msg.sender, address(this), budget);
    }

    /**
     * @notice Asks the job's providers to reveal on chain. Only after this request, and a full reveal window
     * (`revealDeadline - commitDeadline` seconds) after it, can a provider that never revealed be slashed.
     * Allowed once every provider committed or the commit deadline passed, once per job, and only while the
     * window fits before the final deadline.
     * @param job The job's parameters; the caller must be its requestor.
     */
    function requestReveal(Job calldata job) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        if (msg.sender != job.requestor) revert AirqubeEscrowNotRequestor(msg.sender, job.requestor);
        _checkCommitPhaseOver(jobId, job, word);
        if ((word >> _REQUESTED_SHIFT) & _REQUESTED_MASK != 0) revert AirqubeEscrowAlreadyRequested(jobId);
        uint256 window = uint256(job.revealDeadline) - job.commitDeadline;
        if (block.timestamp + window > job.finalDeadline) revert AirqubeEscrowTooLate(jobId, job.finalDeadline - window);

        _jobs[jobId] = word | (block.timestamp << _REQUESTED_SHIFT);
        emit RevealRequested(jobId, block.timestamp + window);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Providers
    // ---------------------------------------------------------------------------------------------------------

    /**
     * @notice Bonds the caller's stake (pulled with `transferFrom`) and records its commitment
     * `keccak256(abi.encode(jobId, outputsRoot, salt, provider))`. Allowed until the commit deadline.
     * @param job The job's parameters.
     * @param index The caller's seat: `job.providers[index] == msg.sender`.
     * @param commitment The commitment; not zero.
     */
    function commit(Job calldata job, uint256 index, bytes32 commitment) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        if (block.timestamp > job.commitDeadline) revert AirqubeEscrowTooLate(jobId, job.commitDeadline);
        if (index >= job.providers.length || job.providers[index] != msg.sender) {
            revert AirqubeEscrowNotProvider(jobId, msg.sender, index);
        }
        uint256 bit = 1 << (_COMMITTED_SHIFT + index);
        if (word & bit != 0) revert AirqubeEscrowAlreadyCommitted(jobId, msg.sender);
        if (commitment == 0) revert AirqubeEscrowZeroCommitment(jobId);

        uint256 acc = _chain(word >> _ACC_SHIFT, index, commitment);
        _jobs[jobId] = (acc << _ACC_SHIFT) | (word & _LOW_BITS) | bit;
        emit Committed(jobId, msg.sender, commitment);

        if (job.stake != 0) token.safeTransferFrom(msg.sender, address(this), job.stake);
    }

    /**
     * @notice Records openings on chain, so that a later settlement must count them. Anyone may call it (a
     * provider protects itself this way when the requestor goes silent or asks on chain). Allowed once every
     * provider committed or the commit deadline passed, and while the job is open, until its final deadline.
     * @param job The job's parameters.
     * @param openings Every commitment in commit order (see the `Committed` events); entries to reveal carry
     * their opening, the others a zero root and salt.
     */
    function reveal(Job calldata job, Opening[] calldata openings) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        _checkCommitPhaseOver(jobId, job, word);
        if (block.timestamp > job.finalDeadline) revert AirqubeEscrowTooLate(jobId, job.finalDeadline);
        _checkChain(jobId, word, openings);

        uint256 newWord = word;
        for (uint256 i = 0; i < openings.length; ++i) {
            Opening calldata o = openings[i];
            if (o.outputsRoot == 0 && o.salt == 0) continue;
            address provider = job.providers[o.index];
            _checkOpening(jobId, o, provider);
            uint256 bit = 1 << (_REVEALED_SHIFT + o.index);
            if (newWord & bit != 0) continue;
            newWord |= bit;
            emit Revealed(jobId, provider, o.outputsRoot, o.salt);
        }
        if (newWord == word) revert AirqubeEscrowNothingToReveal(jobId);
        _jobs[jobId] = newWord;
    }

    // ---------------------------------------------------------------------------------------------------------
    // Settlement
    // ---------------------------------------------------------------------------------------------------------

    /**
     * @notice Settles a job that is not in a group: finds the winning root among the revealed ones, credits
     * `price + stake + share of the slashed stakes` to each provider with it, slashes dissenters (and
     * non-revealers, only after an on-chain reveal request and its full window), and credits the rest of the
     * budget to the requestor. Anyone may call it. Allowed once every provider committed or the commit deadline
     * passed, and until the final deadline. With an opening missing it needs, after a reveal request, the end of
     * the request's window (the missing providers are slashed), and otherwise the reveal deadline (the missing
     * providers get their stakes back).
     * @param job The job's parameters.
     * @param openings Every commitment in commit order (see the `Committed` events), with the openings known to
     * the caller; an opening revealed on chain (see the `Revealed` events) must be included.
     */
    function settle(Job calldata job, Opening[] calldata openings) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        if (word & (_FOLLOWER_BIT | (_FOLLOW_UPS_MASK << _FOLLOW_UPS_SHIFT)) != 0) {
            revert AirqubeEscrowGroupSettlement(jobId);
        }
        (uint256 revealedMask, bool slashMissing) = _checkSettlement(jobId, job, word, openings);
        (bytes32 winner, uint256 count) = _winnerOf(openings, revealedMask, job.quorum, openings.length);

        _jobs[jobId] = (word & ~_STATUS_MASK) | uint256(Status.Settled);
        (uint256 winners, uint256 pool) = _tallyJob(openings, revealedMask, slashMissing, winner, count, job.stake);
        uint256 share = winners == 0 ? 0 : pool / winners;
        uint256 dust = winners == 0 ? 0 : pool - share * winners;
        _payout(jobId, job, openings, revealedMask, slashMissing, winner, count, share, dust);
    }

    /**
     * @notice Settles a qube's group as a whole: the leader first, then each of its follow-ups once (any order).
     * The votes of every job count together: the winner needs the leader's `quorum` votes plus one for every
     * other committed seat of the group. Each job is then paid out as {settle} does, the slashed stakes of
     * the whole group shared by all its winners. Each job must allow settlement as {settle} requires.
     * @param jobs The leader, then its follow-ups.
     * @param openings For each job, its commitment chain with the known openings (as for {settle}).
     */
    function settleGroup(Job[] calldata jobs, Opening[][] calldata openings) external nonReentrant {
        uint256 n = jobs.length;
        if (n == 0 || openings.length != n) revert AirqubeEscrowGroupMismatch(bytes32(0));
        bytes32 leaderId = _jobId(jobs[0]);
        bytes32[] memory ids = new bytes32[](n);
        uint256[] memory words = new uint256[](n);
        _checkGroup(jobs, leaderId, ids, words);

        uint256[] memory masks = new uint256[](n);
        uint256 slashMissingBits;
        uint256 committedTotal;
        for (uint256 j = 0; j < n; ++j) {
            (uint256 mask, bool slashMissing) = _checkSettlement(ids[j], jobs[j], words[j], openings[j]);
            masks[j] = mask;
            if (slashMissing) slashMissingBits |= 1 << j;
            committedTotal += openings[j].length;
        }
        (bytes32 winner, uint256 count) = _groupWinner(openings, masks, jobs[0].quorum, committedTotal);

        uint256 winners;
        uint256 pool;
        for (uint256 j = 0; j < n; ++j) {
            _jobs[ids[j]] = (words[j] & ~_STATUS_MASK) | uint256(Status.Settled);
            (uint256 w, uint256 p) =
                _tallyJob(openings[j], masks[j], slashMissingBits & (1 << j) != 0, winner, count, jobs[j].stake);
            winners += w;
            pool += p;
        }
        uint256 share = winners == 0 ? 0 : pool / winners;
        uint256 dust = winners == 0 ? 0 : pool - share * winners;
        for (uint256 j = 0; j < n; ++j) {
            _payout(
                ids[j],
                jobs[j],
                openings[j],
                masks[j],
                slashMissingBits & (1 << j) != 0,
                winner,
                count,
                share,
                j == 0 ? dust : 0
            );
        }
    }

    /**
     * @notice Reclaims an unsettled job after its final deadline (or, for a job outside any group, after its
     * commit deadline if nobody committed): the budget is credited to the requestor and every bonded stake to its
     * provider. Anyone may call it.
     * @param job The job's parameters.
     */
    function reclaim(Job calldata job) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        uint256 committed = (word >> _COMMITTED_SHIFT) & _MASK_BITS;
        bool alone = word & (_FOLLOWER_BIT | (_FOLLOW_UPS_MASK << _FOLLOW_UPS_SHIFT)) == 0;
        bool early = committed == 0 && alone;
        if (early ? block.timestamp <= job.commitDeadline : block.timestamp <= job.finalDeadline) {
            revert AirqubeEscrowTooEarly(jobId, early ? job.commitDeadline : job.finalDeadline);
        }

        _jobs[jobId] = (word & ~_STATUS_MASK) | uint256(Status.Reclaimed);
        uint256 budget = uint256(job.price) * job.providers.length;
        emit Reclaimed(jobId, job.requestor, budget);

        _credit(jobId, job.requestor, budget);
        if (job.stake != 0) {
            for (uint256 i = 0; i < job.providers.length; ++i) {
                if (committed & (1 << i) != 0) _credit(jobId, job.providers[i], job.stake);
            }
        }
    }

    /**
     * @notice Transfers the caller's whole balance to the caller.
     * @return amount The amount transferred.
     */
    function withdraw() external nonReentrant returns (uint256 amount) {
        uint256 raw = _balances[msg.sender];
        if (raw <= 1) revert AirqubeEscrowNothingToWithdraw(msg.sender);
        amount = raw - 1;
        _balances[msg.sender] = 1;
        emit Withdrawn(msg.sender, amount);

        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------------------------

    /**
     * @notice What an account can withdraw.
     * @param account The account.
     * @return The withdrawable balance.
     */
    function balanceOf(address account) external view returns (uint256) {
        uint256 raw = _balances[account];
        return raw == 0 ? 0 : raw - 1;
    }

    /**
     * @notice A job's state.
     * @param jobId The job's id.
     * @return status The status.
     * @return committed Bitmap of the seats that committed.
     * @return revealed Bitmap of the seats that revealed on chain.
     * @return chain The 184-bit hash chain over the commitments in commit order.
     */
    function jobState(bytes32 jobId)
        external
        view
        returns (Status status, uint256 committed, uint256 revealed, uint256 chain)
    {
        uint256 word = _jobs[jobId];
        return (
            Status(word & _STATUS_MASK),
            (word >> _COMMITTED_SHIFT) & _MASK_BITS,
            (word >> _REVEALED_SHIFT) & _MASK_BITS,
            word >> _ACC_SHIFT
        );
    }

    /**
     * @notice A job's group and reveal request.
     * @param jobId The job's id.
     * @return followUp Whether the job is a follow-up of a leader.
     * @return followUps How many follow-ups the job leads.
     * @return revealRequestedAt When the requestor asked for reveals on chain (block timestamp), or zero.
     */
    function jobGroup(bytes32 jobId)
        external
        view
        returns (bool followUp, uint256 followUps, uint256 revealRequestedAt)
    {
        uint256 word = _jobs[jobId];
        return (
            word & _FOLLOWER_BIT != 0,
            (word >> _FOLLOW_UPS_SHIFT) & _FOLLOW_UPS_MASK,
            (word >> _REQUESTED_SHIFT) & _REQUESTED_MASK
        );
    }

    /**
     * @notice The id of a job: `keccak256(abi.encode(job))`.
     * @param job The job's parameters.
     * @return The job's id.
     */
    function jobIdOf(Job calldata job) external pure returns (bytes32) {
        return keccak256(abi.encode(job));
    }

    /**
     * @notice A provider's commitment: `keccak256(abi.encode(jobId, outputsRoot, salt, provider))`.
     * @param jobId The job's id.
     * @param outputsRoot The root of the provider's normalised outputs.
     * @param salt A random salt, kept secret until the reveal.
     * @param provider The provider's address (binds the commitment to it, so it cannot be copied).
     * @return The commitment.
     */
    function commitmentOf(bytes32 jobId, bytes32 outputsRoot, bytes32 salt, address provider)
        external
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(jobId, outputsRoot, salt, provider));
    }

    // ---------------------------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------------------------

    /// @dev The checks of a new job (caller, providers, quorum, price, deadlines, encoding, uniqueness).
    function _checkNewJob(Job calldata job) private view returns (bytes32 jobId) {
        if (job.requestor != msg.sender) revert AirqubeEscrowNotRequestor(msg.sender, job.requestor);
        uint256 k = job.providers.length;
        if (k == 0 || k > MAX_PROVIDERS) revert AirqubeEscrowInvalidProviderCount(k);
        if (job.quorum > k || 2 * uint256(job.quorum) <= k) revert AirqubeEscrowInvalidQuorum(job.quorum, k);
        if (job.price == 0) revert AirqubeEscrowZeroPrice();
        if (
            block.timestamp >= job.commitDeadline || job.commitDeadline >= job.revealDeadline
                || job.revealDeadline >= job.finalDeadline
        ) revert AirqubeEscrowInvalidDeadlines(job.commitDeadline, job.revealDeadline, job.finalDeadline);
        for (uint256 i = 0; i < k; ++i) {
            address p = job.providers[i];
            if (p == address(0)) revert AirqubeEscrowInvalidProvider(p);
            for (uint256 j = 0; j < i; ++j) {
                if (job.providers[j] == p) revert AirqubeEscrowInvalidProvider(p);
            }
        }
        if (!_isCanonical(job)) revert AirqubeEscrowNonCanonicalJob();
        jobId = _jobId(job);
        if (_jobs[jobId] != 0) revert AirqubeEscrowJobExists(jobId);
    }

    /// @dev Reverts unless `jobs` is exactly the leader's group, each job open; fills their ids and words.
    function _checkGroup(Job[] calldata jobs, bytes32 leaderId, bytes32[] memory ids, uint256[] memory words)
        private
        view
    {
        uint256 n = jobs.length;
        uint256 leaderWord = _openWord(leaderId);
        if (leaderWord & _FOLLOWER_BIT != 0 || (leaderWord >> _FOLLOW_UPS_SHIFT) & _FOLLOW_UPS_MASK != n - 1) {
            revert AirqubeEscrowGroupMismatch(leaderId);
        }
        ids[0] = leaderId;
        words[0] = leaderWord;
        Job calldata leader = jobs[0];
        for (uint256 j = 1; j < n; ++j) {
            Job calldata f = jobs[j];
            bytes32 id = _jobId(f);
            uint256 word = _openWord(id);
            if (
                word & _FOLLOWER_BIT == 0 || f.requestor != leader.requestor || f.qubeId != leader.qubeId
                    || f.nonce != uint64(uint256(leaderId))
            ) revert AirqubeEscrowGroupMismatch(leaderId);
            for (uint256 i = 1; i < j; ++i) {
                if (ids[i] == id) revert AirqubeEscrowGroupMismatch(leaderId);
            }
            ids[j] = id;
            words[j] = word;
        }
    }

    /// @dev Reverts unless every provider committed or the commit deadline passed.
    function _checkCommitPhaseOver(bytes32 jobId, Job calldata job, uint256 word) private view {
        if (
            ((word >> _COMMITTED_SHIFT) & _MASK_BITS) != (1 << job.providers.length) - 1
                && block.timestamp <= job.commitDeadline
        ) revert AirqubeEscrowTooEarly(jobId, job.commitDeadline);
    }

    /**
     * @dev The checks of settling one job: timing, the commitment chain and every opening. Returns which openings
     * are revealed, and whether missing ones are slashed (only after a reveal request and its full window).
     */
    function _checkSettlement(bytes32 jobId, Job calldata job, uint256 word, Opening[] calldata openings)
        private
        view
        returns (uint256 revealedMask, bool slashMissing)
    {
        _checkCommitPhaseOver(jobId, job, word);
        if (block.timestamp > job.finalDeadline) revert AirqubeEscrowTooLate(jobId, job.finalDeadline);
        _checkChain(jobId, word, openings);

        uint256 n = openings.length;
        uint256 revealedCount;
        for (uint256 i = 0; i < n; ++i) {
            Opening calldata o = openings[i];
            if (o.outputsRoot == 0 && o.salt == 0) {
                if (word & (1 << (_REVEALED_SHIFT + o.index)) != 0) {
                    revert AirqubeEscrowRevealMissing(jobId, job.providers[o.index]);
                }
            } else {
                _checkOpening(jobId, o, job.providers[o.index]);
                revealedMask |= 1 << i;
                ++revealedCount;
            }
        }
        if (revealedCount < n) {
            uint256 requestedAt = (word >> _REQUESTED_SHIFT) & _REQUESTED_MASK;
            if (requestedAt != 0) {
                uint256 revealBy = requestedAt + (uint256(job.revealDeadline) - job.commitDeadline);
                if (block.timestamp <= revealBy) revert AirqubeEscrowTooEarly(jobId, revealBy);
                slashMissing = true;
            } else if (block.timestamp <= job.revealDeadline) {
                revert AirqubeEscrowTooEarly(jobId, job.revealDeadline);
            }
        }
    }

    /// @dev The winning root of one job: `c` equal revealed roots with `c >= quorum + (committed - c)`, a
    /// qualified (hence strict) majority of the committed seats, so at most one root wins.
    function _winnerOf(Opening[] calldata openings, uint256 revealedMask, uint256 quorum, uint256 committed)
        private
        pure
        returns (bytes32 winner, uint256 count)
    {
        uint256 n = openings.length;
        for (uint256 i = 0; i < n; ++i) {
            if (revealedMask & (1 << i) == 0) continue;
            bytes32 root = openings[i].outputsRoot;
            uint256 c = 1;
            for (uint256 j = i + 1; j < n; ++j) {
                if (revealedMask & (1 << j) != 0 && openings[j].outputsRoot == root) ++c;
            }
            if (2 * c >= quorum + committed) return (root, c);
        }
    }

    /// @dev The winning root of a group: as {_winnerOf}, counted over every job of the group.
    function _groupWinner(Opening[][] calldata openings, uint256[] memory masks, uint256 quorum, uint256 committed)
        private
        pure
        returns (bytes32 winner, uint256 count)
    {
        uint256 n = openings.length;
        for (uint256 a = 0; a < n; ++a) {
            for (uint256 i = 0; i < openings[a].length; ++i) {
                if (masks[a] & (1 << i) == 0) continue;
                bytes32 root = openings[a][i].outputsRoot;
                uint256 c;
                for (uint256 b = 0; b < n; ++b) {
                    Opening[] calldata ob = openings[b];
                    for (uint256 j = 0; j < ob.length; ++j) {
                        if (masks[b] & (1 << j) != 0 && ob[j].outputsRoot == root) ++c;
                    }
                }
                if (2 * c >= quorum + committed) return (root, c);
            }
        }
    }

    /// @dev How many of a job's providers win, and the stakes its settlement slashes (`count` is the winner's
    /// votes, zero without a winner).
    function _tallyJob(
        Opening[] calldata openings,
        uint256 revealedMask,
        bool slashMissing,
        bytes32 winner,
        uint256 count,
        uint256 stake
    ) private pure returns (uint256 winners, uint256 slashed) {
        for (uint256 i = 0; i < openings.length; ++i) {
            if (revealedMask & (1 << i) != 0) {
                if (count == 0) continue;
                if (openings[i].outputsRoot == winner) ++winners;
                else slashed += stake;
            } else if (slashMissing) {
                slashed += stake;
            }
        }
    }

    /**
     * @dev `keccak256(abi.encode(job))` hashed straight from calldata, without re-encoding: the head (10 words),
     * then the providers array, which a canonical encoding puts right after the head. Any other layout gives
     * another id, and {openJob} only accepts calldata in that layout with clean values (see {_isCanonical}).
     */
    function _jobId(Job calldata job) private pure returns (bytes32 id) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, 0x20)
            let len := 0x160
            if eq(calldataload(add(job, 0x60)), 0x140) { len := add(0x160, shl(5, calldataload(add(job, 0x140)))) }
            calldatacopy(add(m, 0x20), job, len)
            id := keccak256(m, add(len, 0x20))
        }
    }

    /**
     * @dev Whether the job's calldata is in the canonical ABI encoding, so that {_jobId} equals
     * `keccak256(abi.encode(job))`: the providers array right after the head (offset 0x140) and every value
     * clean (no bits beyond its type's width). Cheaper than re-encoding the job and hashing it a second time.
     */
    function _isCanonical(Job calldata job) private pure returns (bool ok) {
        assembly ("memory-safe") {
            let dirty := or(shr(160, calldataload(job)), shr(64, calldataload(add(job, 0x40))))
            dirty := or(dirty, or(shr(96, calldataload(add(job, 0x80))), shr(96, calldataload(add(job, 0xa0)))))
            dirty := or(dirty, or(shr(8, calldataload(add(job, 0xc0))), shr(40, calldataload(add(job, 0xe0)))))
            dirty := or(dirty, or(shr(40, calldataload(add(job, 0x100))), shr(40, calldataload(add(job, 0x120)))))
            ok := and(iszero(dirty), eq(calldataload(add(job, 0x60)), 0x140))
            // With the canonical offset the length word is `job.providers.length`, checked to be at most 12.
            if ok {
                let p := add(job, 0x160)
                for { let end := add(p, shl(5, calldataload(add(job, 0x140)))) } lt(p, end) { p := add(p, 0x20) } {
                    if shr(160, calldataload(p)) { ok := 0 }
                }
            }
        }
    }

    function _openWord(bytes32 jobId) private view returns (uint256 word) {
        word = _jobs[jobId];
        if (word & _STATUS_MASK != uint256(Status.Open)) {
            revert AirqubeEscrowJobNotOpen(jobId, Status(word & _STATUS_MASK));
        }
    }

    /// @dev One step of the commitment chain: the low 184 bits of keccak256(acc, index, commitment).
    function _chain(uint256 acc, uint256 index, bytes32 commitment) private pure returns (uint256 next) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, acc)
            mstore(add(m, 0x20), index)
            mstore(add(m, 0x40), commitment)
            next := shr(72, shl(72, keccak256(m, 0x60)))
        }
    }

    /// @dev Reverts unless `openings` are exactly the job's commitments in commit order.
    function _checkChain(bytes32 jobId, uint256 word, Opening[] calldata openings) private pure {
        uint256 acc;
        assembly ("memory-safe") {
            let m := mload(0x40)
            let p := openings.offset
            for { let end := add(p, shl(7, openings.length)) } lt(p, end) { p := add(p, 0x80) } {
                mstore(m, acc)
                calldatacopy(add(m, 0x20), p, 0x40)
                acc := shr(72, shl(72, keccak256(m, 0x60)))
            }
        }
        if (acc != word >> _ACC_SHIFT) revert AirqubeEscrowCommitmentsMismatch(jobId);
    }

    /// @dev Reverts unless the opening matches its commitment.
    function _checkOpening(bytes32 jobId, Opening calldata o, address provider) private pure {
        bytes32 expected;
        bytes32 root = o.outputsRoot;
        bytes32 salt = o.salt;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, jobId)
            mstore(add(m, 0x20), root)
            mstore(add(m, 0x40), salt)
            mstore(add(m, 0x60), provider)
            expected := keccak256(m, 0x80)
        }
        if (expected != o.commitment) revert AirqubeEscrowBadOpening(jobId, provider);
    }

    /**
     * @dev Pays out one job: winners get price, stake and `share`; dissenters and (when `slashMissing`)
     * non-revealers are slashed; everyone else gets its stake back; the requestor gets the unused budget plus
     * `dust` (with a winner) or the slashed stakes (without one). Over a group the amounts add up to the budgets
     * plus the committed stakes of its jobs, and nothing else.
     */
    function _payout(
        bytes32 jobId,
        Job calldata job,
        Opening[] calldata openings,
        uint256 revealedMask,
        bool slashMissing,
        bytes32 winner,
        uint256 count,
        uint256 share,
        uint256 dust
    ) private {
        address[] calldata providers = job.providers;
        uint256 stake = job.stake;
        uint256 price = job.price;
        uint256 refund = price * providers.length + dust;
        uint256 winners;
        uint256 slashed;
        for (uint256 i = 0; i < openings.length; ++i) {
            Opening calldata o = openings[i];
            address provider = providers[o.index];
            bool revealed = revealedMask & (1 << i) != 0;
            if (revealed && count != 0 && o.outputsRoot == winner) {
                ++winners;
                refund -= price;
                _credit(jobId, provider, price + stake + share);
            } else if (revealed ? count != 0 : slashMissing) {
                slashed += stake;
                if (stake != 0) emit Slashed(jobId, provider, stake);
            } else {
                _credit(jobId, provider, stake);
            }
        }
        if (count == 0) refund += slashed;
        emit Settled(jobId, count == 0 ? bytes32(0) : winner, winners, slashed);
        _credit(jobId, job.requestor, refund);
    }

    function _credit(bytes32 jobId, address account, uint256 amount) private {
        if (amount == 0) return;
        uint256 raw = _balances[account];
        _balances[account] = (raw == 0 ? 1 : raw) + amount;
        emit Credited(jobId, account, amount);
    }
}
