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
 * against its commitment. Settlement pays `price` plus the stake back to every provider whose root is in the
 * quorum (at least `quorum` equal roots, `2 * quorum > k`), gives them the stakes of dissenters and
 * non-revealers in equal shares, and refunds the rest of the budget to the requestor. Without a quorum nobody
 * is paid, revealers get their stakes back, and the stakes of non-revealers go to the requestor. After the
 * final deadline an unsettled job can be reclaimed: budget to the requestor, stakes back to the providers.
 * All payouts are credited to per-account balances and pulled with {withdraw}.
 *
 * @dev Gas design (see the README section "Payments"):
 * - A job is identified by `jobId = keccak256(abi.encode(job))`; its parameters are never stored, every call
 *   passes them as calldata and the contract re-derives the id. One storage word per job holds the status,
 *   the committed and revealed bitmaps and a 224-bit hash chain over the commitments in commit order, so a
 *   commitment costs a warm re-write instead of a fresh slot (about 5k gas instead of 22k).
 * - On-chain commitments were chosen over provider-signed statements checked with ECDSA at settlement: the
 *   commit transaction is needed anyway to bond the stake, adding the commitment to it costs about 5k gas,
 *   while ECDSA statements cost about 4-5k gas each at settlement (ecrecover plus 65 bytes of calldata) and let
 *   whoever submits them leave an honest provider's statement out. With on-chain commitments nobody can
 *   censor a provider: it can always reveal on chain itself before the reveal deadline, and settle after it.
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
        /// Distinguishes repeated jobs for the same qube.
        uint64 nonce;
        /// The chosen providers, distinct; a provider's index in this list is its seat.
        address[] providers;
        /// What each provider in the quorum earns; the budget is `price * providers.length`.
        uint96 price;
        /// What each provider bonds with its commitment.
        uint96 stake;
        /// How many equal roots make a quorum; `2 * quorum > providers.length`.
        uint8 quorum;
        /// Last second (block timestamp) at which a commitment is accepted.
        uint40 commitDeadline;
        /// Last second at which a reveal is accepted; before it, settlement needs every committed opening.
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

    uint256 private constant _COMMITTED_SHIFT = 8;
    uint256 private constant _REVEALED_SHIFT = 20;
    uint256 private constant _ACC_SHIFT = 32;
    uint256 private constant _MASK_BITS = 0xfff;
    uint256 private constant _LOW_BITS = 0xffffffff;

    /// @notice The token of budgets, stakes and payouts.
    IERC20 public immutable token;

    /// @dev jobId => status (bits 0-7) | committed bitmap (8-19) | revealed bitmap (20-31) | chain (32-255).
    mapping(bytes32 jobId => uint256 word) private _jobs;

    /// @dev account => balance + 1 once used (0 = never used).
    mapping(address account => uint256 balancePlusOne) private _balances;

    /// @notice A job was opened and its budget locked.
    event JobOpened(bytes32 indexed jobId, address indexed requestor, bytes32 indexed qubeId, uint256 budget);
    /// @notice A provider bonded its stake and committed to a result.
    event Committed(bytes32 indexed jobId, address indexed provider, bytes32 commitment);
    /// @notice A provider's opening was recorded on chain.
    event Revealed(bytes32 indexed jobId, address indexed provider, bytes32 outputsRoot, bytes32 salt);
    /// @notice A job was settled; `outputsRoot` is the quorum's root, or zero without a quorum.
    event Settled(bytes32 indexed jobId, bytes32 indexed outputsRoot, uint256 winners, uint256 slashed);
    /// @notice A provider's stake was taken because it dissented from the quorum or never revealed.
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

    /// @param token_ The ERC-20 token of budgets, stakes and payouts.
    constructor(IERC20 token_) {
        token = token_;
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

        _jobs[jobId] = uint256(Status.Open);
        uint256 budget = uint256(job.price) * k;
        emit JobOpened(jobId, msg.sender, job.qubeId, budget);

        token.safeTransferFrom(msg.sender, address(this), budget);
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
     * @notice Records openings on chain, so that a settlement after the reveal deadline must count them. Anyone
     * may call it (a provider protects itself this way if the job is not settled in time). Allowed once every
     * provider committed or the commit deadline passed, and until the reveal deadline.
     * @param job The job's parameters.
     * @param openings Every commitment in commit order (see the `Committed` events); entries to reveal carry
     * their opening, the others a zero root and salt.
     */
    function reveal(Job calldata job, Opening[] calldata openings) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        uint256 k = job.providers.length;
        if (((word >> _COMMITTED_SHIFT) & _MASK_BITS) != (1 << k) - 1 && block.timestamp <= job.commitDeadline) {
            revert AirqubeEscrowTooEarly(jobId, job.commitDeadline);
        }
        if (block.timestamp > job.revealDeadline) revert AirqubeEscrowTooLate(jobId, job.revealDeadline);
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
     * @notice Settles a job: finds the quorum among the revealed roots, credits `price + stake + share of the
     * slashed stakes` to each provider in the quorum, slashes dissenters and non-revealers, and credits the
     * rest of the budget to the requestor. Anyone may call it. Allowed once every provider committed or the
     * commit deadline passed, and until the final deadline; before the reveal deadline every committed
     * provider's opening must be given.
     * @param job The job's parameters.
     * @param openings Every commitment in commit order (see the `Committed` events), with the openings known to
     * the caller; an opening revealed on chain (see the `Revealed` events) must be included.
     */
    function settle(Job calldata job, Opening[] calldata openings) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        uint256 k = job.providers.length;
        if (((word >> _COMMITTED_SHIFT) & _MASK_BITS) != (1 << k) - 1 && block.timestamp <= job.commitDeadline) {
            revert AirqubeEscrowTooEarly(jobId, job.commitDeadline);
        }
        if (block.timestamp > job.finalDeadline) revert AirqubeEscrowTooLate(jobId, job.finalDeadline);
        _checkChain(jobId, word, openings);

        (bytes32 winner, uint256 winners, uint256 revealedCount, uint256 revealedMask) =
            _tally(jobId, job, word, openings);
        if (revealedCount < openings.length && block.timestamp <= job.revealDeadline) {
            revert AirqubeEscrowTooEarly(jobId, job.revealDeadline);
        }

        // Effects: the job is closed before anything is credited; nothing else is touched but balances.
        _jobs[jobId] = (word & ~uint256(0xff)) | uint256(Status.Settled);
        _payout(jobId, job, openings, winner, winners, revealedCount, revealedMask);
    }

    /**
     * @notice Reclaims an unsettled job after its final deadline (or after its commit deadline if nobody
     * committed): the budget is credited to the requestor and every bonded stake to its provider. Anyone may
     * call it.
     * @param job The job's parameters.
     */
    function reclaim(Job calldata job) external nonReentrant {
        bytes32 jobId = _jobId(job);
        uint256 word = _openWord(jobId);
        uint256 committed = (word >> _COMMITTED_SHIFT) & _MASK_BITS;
        if (committed == 0 ? block.timestamp <= job.commitDeadline : block.timestamp <= job.finalDeadline) {
            revert AirqubeEscrowTooEarly(jobId, committed == 0 ? job.commitDeadline : job.finalDeadline);
        }

        _jobs[jobId] = (word & ~uint256(0xff)) | uint256(Status.Reclaimed);
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
     * @return chain The 224-bit hash chain over the commitments in commit order.
     */
    function jobState(bytes32 jobId)
        external
        view
        returns (Status status, uint256 committed, uint256 revealed, uint256 chain)
    {
        uint256 word = _jobs[jobId];
        return (
            Status(word & 0xff),
            (word >> _COMMITTED_SHIFT) & _MASK_BITS,
            (word >> _REVEALED_SHIFT) & _MASK_BITS,
            word >> _ACC_SHIFT
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
        if (word & 0xff != uint256(Status.Open)) revert AirqubeEscrowJobNotOpen(jobId, Status(word & 0xff));
    }

    /// @dev One step of the commitment chain: the low 224 bits of keccak256(acc, index, commitment).
    function _chain(uint256 acc, uint256 index, bytes32 commitment) private pure returns (uint256 next) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, acc)
            mstore(add(m, 0x20), index)
            mstore(add(m, 0x40), commitment)
            next := shr(32, shl(32, keccak256(m, 0x60)))
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
                acc := shr(32, shl(32, keccak256(m, 0x60)))
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

    /// @dev Checks every opening and finds the quorum root (with 2 * quorum > k at most one root reaches it).
    /// Bit `i` of `revealedMask` is set when `openings[i]` carries an opening.
    function _tally(bytes32 jobId, Job calldata job, uint256 word, Opening[] calldata openings)
        private
        pure
        returns (bytes32 winner, uint256 winners, uint256 revealedCount, uint256 revealedMask)
    {
        address[] calldata providers = job.providers;
        uint256 n = openings.length;
        for (uint256 i = 0; i < n; ++i) {
            Opening calldata o = openings[i];
            uint256 index = o.index;
            if (o.outputsRoot == 0 && o.salt == 0) {
                if (word & (1 << (_REVEALED_SHIFT + index)) != 0) {
                    revert AirqubeEscrowRevealMissing(jobId, providers[index]);
                }
            } else {
                _checkOpening(jobId, o, providers[index]);
                revealedMask |= 1 << i;
                ++revealedCount;
            }
        }
        uint256 quorum = job.quorum;
        for (uint256 i = 0; i < n && winners == 0; ++i) {
            if (revealedMask & (1 << i) == 0) continue;
            bytes32 root = openings[i].outputsRoot;
            uint256 count = 1;
            for (uint256 j = i + 1; j < n; ++j) {
                if (revealedMask & (1 << j) != 0 && openings[j].outputsRoot == root) ++count;
            }
            if (count >= quorum) {
                winner = root;
                winners = count;
            }
        }
    }

    /// @dev Credits the quorum, slashes the others and refunds the requestor; the amounts add up to the budget
    /// plus the committed stakes of this job, and nothing else.
    function _payout(
        bytes32 jobId,
        Job calldata job,
        Opening[] calldata openings,
        bytes32 winner,
        uint256 winners,
        uint256 revealedCount,
        uint256 revealedMask
    ) private {
        address[] calldata providers = job.providers;
        uint256 n = openings.length;
        uint256 stake = job.stake;
        uint256 price = job.price;
        uint256 refund = price * providers.length;
        uint256 slashed;
        uint256 reward;
        if (winners != 0) {
            slashed = stake * (n - winners);
            uint256 share = slashed / winners;
            refund = refund - price * winners + (slashed - share * winners);
            reward = price + stake + share;
        } else {
            slashed = stake * (n - revealedCount);
            refund += slashed;
            reward = stake;
        }
        emit Settled(jobId, winner, winners, slashed);

        for (uint256 i = 0; i < n; ++i) {
            Opening calldata o = openings[i];
            if (revealedMask & (1 << i) != 0 && (winners == 0 || o.outputsRoot == winner)) {
                _credit(jobId, providers[o.index], reward);
            } else if (stake != 0) {
                emit Slashed(jobId, providers[o.index], stake);
            }
        }
        _credit(jobId, job.requestor, refund);
    }

    function _credit(bytes32 jobId, address account, uint256 amount) private {
        if (amount == 0) return;
        uint256 raw = _balances[account];
        _balances[account] = (raw == 0 ? 1 : raw) + amount;
        emit Credited(jobId, account, amount);
    }
}
