// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {ISonar} from "./interfaces/ISonar.sol";

/// @title Sonar — bounties for model updates trained on private data (v2)
/// @notice A model owner escrows a reward (ETH or one ERC-20) for improving a model whose manifest
/// and weights live on IPFS. Data owners ("miners") train locally and {submit} an update in one
/// transaction with a stake; the update is encrypted to the owner and names its miner inside the
/// ciphertext, so a CID copied from the mempool is worthless (the owner rejects it). The owner
/// settles the queue in rounds of up to MAX_ROUND submissions: accepted updates form a new model
/// version and split the round's pot (the round's reward plus the forfeit pool) by their shares.
///
/// Trust model — why the rules make honesty the best strategy:
/// * Honest work is paid. A round's reward is `reward × improvement / (target − initial)` (all that
///   is left once the target is reached), split by the owner's shares; no update earns more than
///   MAX_SHARE_BPS of the reward unless it alone reaches the target. An honest update that did not
///   help gets its stake back (`refund`). An update the owner does not settle within its window gets
///   its stake back ({reclaimStake}, {skip}): the owner cannot settle past the window (F-01), so it
///   cannot front-run a reclaim.
/// * Attackers lose. A harmful update (outlier, regression, copied, unreadable) forfeits its stake.
///   An accepted update's reward and stake vest until the bounty ends ({release}): evidence against
///   a miner often needs several of its updates (a backdoor pulls the same weights every round), so
///   a forfeit with `clawback` also takes back the rewards that miner has vesting in the bounty and
///   burns them. Nobody can release before no settlement is possible any more, so an attacker paid
///   in an early round cannot leave with the pay before the later evidence.
/// * The owner gains nothing by cheating. Forfeited stakes never reach the owner: they go to later
///   accepted contributors, and what is left at close is burned (credited to BURN_ADDRESS, which
///   nobody can withdraw from). Clawed-back rewards are burned at once: in the pool, an owner that
///   clawed back honest pay could win it back with a second address's accepted update. The refund
///   at close is the unpaid escrow only, and only after the deadline (a Completed bounty with
///   nothing pending excepted: nobody can submit to it any more) once nothing is pending inside its
///   window. What the contract cannot see is whether verdicts and scores are honest (rejecting a
///   good update the owner then uses, accepting its own second address, or a clawback without
///   cause): an `auditable` bounty cannot close before the owner reveals its audit bundle
///   (validation set + decryption key, committed at posting), after which anyone can replay every
///   evaluation and the owner's history shows it.
/// Every bounty has its own escrow and pool; no path moves value between bounties.
///
/// Storage: what {submit} reads is in slot 0 and slot 1 of a bounty and it writes only slot 1 and
/// one fresh slot for the submission (miner, base version, time, status); the update's CID is only
/// in the {UpdateSubmitted} event. {settle} loops over its calldata (at most MAX_ROUND items) and
/// writes one slot per item (the submission) plus one per paid miner (its vesting slot, or its
/// credit for a refund); no function loops over anything users can grow.
///
/// Bounds (why nothing overflows): reward <= MAX_REWARD < 2^96, 0 < stake <= reward, and a bounty
/// has fewer than 2^32 submissions (checked uint32 counter). So all stakes a bounty can ever forfeit
/// sum to < 2^96 · 2^32 = 2^128, and reward + forfeits < 2^128: the uint128 escrow, forfeitPool,
/// paid, burned (forfeits and clawed-back rewards, which were paid from reward + forfeits) and a
/// miner's vesting rewards (a part of what the bounty paid) and vesting stakes (a part of all its
/// stakes) cannot overflow. Products are taken in uint256 (reward × improvement < 2^160,
/// pot × shareBps < 2^142). Credits are uint256 and bounded by the contract's token balance.
contract Sonar is ISonar, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Fixed-point scale of scores (6 decimals).
    uint64 public constant SCORE_SCALE = 1e6;
    /// @notice Shortest evaluation window an owner may set (F-05: no honeypot windows).
    uint32 public constant MIN_EVAL_WINDOW = 10 minutes;
    /// @notice Longest evaluation window an owner may set.
    uint32 public constant MAX_EVAL_WINDOW = 30 days;
    /// @notice Largest reward a bounty may escrow (see "Bounds" in the header).
    uint256 public constant MAX_REWARD = type(uint96).max;
    /// @notice Most submissions one {settle} call may settle.
    uint256 public constant MAX_ROUND = 32;
    /// @notice Most of the bounty's reward one accepted update may earn, in basis points (unless
    /// the round reaches the target with that single accepted update).
    uint256 public constant MAX_SHARE_BPS = 3500;
    /// @notice Basis points of a whole.
    uint256 public constant BPS = 10_000;
    /// @notice Where the forfeit pool left at close is credited: nobody holds its key.
    address public constant BURN_ADDRESS = 0x000000000000000000000000000000000000dEaD;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @dev A bounty in storage, packed by who reads and writes what.
    struct BountyData {
        address token; // slot 0: read by submit, written only at post, close, revealAudit
        uint40 deadline;
        uint24 evalWindow; // <= MAX_EVAL_WINDOW < 2^24
        BountyStatus status;
        bool higherIsBetter;
        bool auditable;
        bool auditRevealed;
        uint96 stake; // slot 1: read and written by submit (the counters)
        uint32 submissions;
        uint32 pending;
        uint32 nextEval;
        uint32 latestVersion;
        address owner; // slot 2
        uint64 bestScore;
        uint128 escrow; // slot 3: written by settle and close
        uint128 forfeitPool;
        uint128 reward; // slot 4
        uint128 paid;
        uint64 initialScore; // slot 5
        uint64 targetScore;
        uint128 burned;
        bytes32 validationCommitment; // slot 6
    }

    /// @dev A model version: its CID digest, then the rest in one slot.
    struct VersionData {
        bytes32 digest;
        uint16 codec;
        uint64 score;
        uint32 submission;
        uint40 createdAt;
    }

    /// @dev What a miner has vesting in a bounty, in one slot: accepted rewards and their stakes.
    struct Vesting {
        uint128 rewards;
        uint128 stakes;
    }

    /// @dev What the second pass of {settle} needs (memory, against stack depth).
    struct Round {
        uint256 bountyId;
        uint256 first;
        uint256 stake;
        uint256 pool; // forfeit pool, this round's forfeits included
        uint256 pot; // round reward + pool
        uint256 cap; // most one accepted update may earn
        uint256 version; // recorded by the round (0: none)
        uint256 clawedBack; // vesting rewards taken back (and burned) by this round's forfeits
        address token;
    }

    uint256 private _bountyCount;
    mapping(uint256 bountyId => BountyData) private _bounties;
    // ONE slot per submission (ISonar.Submission packs into 240 bits)
    mapping(uint256 bountyId => mapping(uint256 index => Submission)) private _submissions;
    mapping(uint256 bountyId => mapping(uint256 version => VersionData)) private _versions;
    mapping(address token => mapping(address account => uint256)) private _credits;
    mapping(uint256 bountyId => mapping(address miner => Vesting)) private _vesting;

    /*//////////////////////////////////////////////////////////////
                              BOUNTY OWNER
    //////////////////////////////////////////////////////////////*/

    /// @notice Post a bounty: escrow `p.reward` (as msg.value for ETH, or pulled with
    /// `transferFrom` for an ERC-20 — approve first) and record model version 0.
    /// @return bountyId the new bounty's id (ids start at 1).
    /// Emits a {BountyPosted} and a {ModelVersionRecorded} event.
    function postBounty(BountyParams calldata p) external payable returns (uint256 bountyId) {
        _checkParams(p);
        bountyId = ++_bountyCount;
        BountyData storage b = _bounties[bountyId];
        b.token = p.token;
        b.deadline = p.deadline;
        b.evalWindow = uint24(p.evalWindow);
        b.status = BountyStatus.Open;
        b.higherIsBetter = p.higherIsBetter;
        b.auditable = p.auditable;
        b.stake = p.stake;
        b.owner = msg.sender;
        b.bestScore = p.initialScore;
        b.escrow = p.reward;
        b.reward = p.reward;
        b.initialScore = p.initialScore;
        b.targetScore = p.targetScore;
        b.validationCommitment = p.validationCommitment;
        _versions[bountyId][0] = VersionData({
            digest: p.modelDigest,
            codec: p.modelCodec,
            score: p.initialScore,
            submission: 0,
            createdAt: uint40(block.timestamp)
        });
        _emitPosted(bountyId, p);
        emit ModelVersionRecorded(bountyId, 0, p.modelDigest, p.modelCodec, p.initialScore);
        _receive(p.token, p.reward);
    }

    /// @notice Settle the next `verdicts.length` submissions of the queue (1..MAX_ROUND, in queue
    /// order from `nextEval`), only while the first of them is inside its evaluation window.
    /// If any is accepted, `score` (the new model's validation score) must beat the best score and
    /// (`modelDigest`, `modelCodec`) becomes a new model version; the round's pot — the reward for
    /// the improvement plus the forfeit pool (this round's forfeits included) — is split by the
    /// accepted shares, each capped at MAX_SHARE_BPS of the reward unless a single accepted update
    /// reaches the target. An accepted update's reward and stake vest until the bounty ends
    /// ({release}); a refunded stake is credited at once; forfeited stakes join the pool, and a
    /// forfeit with `clawback` also burns its miner's vesting rewards of the bounty (those vesting
    /// at its place in the round: a later accepted update of the same miner still vests).
    /// Without an accepted update `score` and the CID are ignored.
    /// @return paid the rewards this round granted (they vest; stakes and clawbacks excluded).
    /// Emits an {UpdateAccepted} or {UpdateRejected} event per submission (preceded by a
    /// {RewardsClawedBack} event for a clawback that took something), a {RoundSettled} event, and a
    /// {ModelVersionRecorded} (and {TargetReached}) event when an update is accepted.
    function settle(
        uint256 bountyId,
        Verdict[] calldata verdicts,
        uint64 score,
        bytes32 modelDigest,
        uint16 modelCodec
    ) external returns (uint256 paid) {
        BountyData storage b = _bounty(bountyId);
        if (b.owner != msg.sender) revert SonarNotBountyOwner(bountyId, msg.sender);
        if (b.status == BountyStatus.Closed) revert SonarBountyNotOpen(bountyId, BountyStatus.Closed);
        Round memory r = Round({
            bountyId: bountyId,
            first: b.nextEval,
            stake: b.stake,
            pool: 0,
            pot: 0,
            cap: 0,
            version: 0,
            clawedBack: 0,
            token: b.token
        });
        uint256 count = verdicts.length;
        {
            uint256 queued = b.submissions - r.first;
            if (count == 0 || count > MAX_ROUND || count > queued) revert SonarInvalidRound(bountyId, count, queued);
            // F-01: the head is the oldest of the round, so the whole round is inside its window (and
            // none of it can have been reclaimed, which needs the window to be over)
            uint256 due = uint256(_submissions[bountyId][r.first].submittedAt) + b.evalWindow;
            // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
            // slither-disable-next-line timestamp
            if (block.timestamp > due) revert SonarWindowClosed(bountyId, r.first, due);
        }
        {
            (uint256 totalBps, uint256 accepted, uint256 forfeits) = _tally(verdicts);
            r.pool = uint256(b.forfeitPool) + forfeits * r.stake;
            if (accepted != 0) {
                if (totalBps != BPS) revert SonarInvalidShares(bountyId, totalBps);
                r.version = _openRound(b, r, accepted, score, modelDigest, modelCodec);
            } else {
                score = 0;
            }
        }

        // pass 2: one submission slot and at most one credit per item
        paid = _applyVerdicts(verdicts, r);

        // the pool pays first, so forfeited stakes reach contributors and never the owner's refund;
        // the rest (<= the round's reward <= escrow) comes from escrow, what the cap held back stays;
        // clawed-back rewards leave `paid` and are burned
        uint256 pool = r.pool;
        uint256 fromPool = paid < pool ? paid : pool;
        uint256 clawedBack = r.clawedBack;
        b.forfeitPool = uint128(pool - fromPool);
        b.escrow -= uint128(paid - fromPool);
        b.paid = uint128(b.paid + paid - clawedBack);
        if (clawedBack != 0) {
            b.burned += uint128(clawedBack);
            _credits[r.token][BURN_ADDRESS] += clawedBack;
        }
        b.nextEval = uint32(r.first + count);
        b.pending -= uint32(count);
        emit RoundSettled(bountyId, r.first, count, r.version, score, paid);
    }

    /// @notice Reveal the audit bundle (validation set CID and the bounty's decryption key) whose
    /// CID digest the bounty committed to; anyone can then replay every evaluation. Required before
    /// {close} for an `auditable` bounty.
    /// Emits an {AuditRevealed} event.
    function revealAudit(uint256 bountyId, bytes32 digest, uint16 codec) external {
        BountyData storage b = _bounty(bountyId);
        if (b.owner != msg.sender) revert SonarNotBountyOwner(bountyId, msg.sender);
        bytes32 expected = b.validationCommitment;
        if (digest != expected) revert SonarAuditMismatch(bountyId, expected, digest);
        if (b.auditRevealed) revert SonarAuditAlreadyRevealed(bountyId);
        b.auditRevealed = true;
        emit AuditRevealed(bountyId, digest, codec);
    }

    /// @notice End the bounty: credit the escrow left to the owner and burn the forfeit pool (the
    /// {BountyClosed} event's `burned`; the bounty's `burned` also counts clawed-back rewards).
    /// Only after the deadline (or once Completed with nothing pending), when no submission is
    /// pending inside its window, and — for an auditable bounty — after {revealAudit}.
    /// @return refunded the amount credited to the owner.
    /// Emits a {BountyClosed} event.
    function close(uint256 bountyId) external returns (uint256 refunded) {
        BountyData storage b = _bounty(bountyId);
        if (b.owner != msg.sender) revert SonarNotBountyOwner(bountyId, msg.sender);
        BountyStatus status = b.status;
        if (status == BountyStatus.Closed) revert SonarBountyNotOpen(bountyId, status);
        uint256 pending = b.pending;
        // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
        // slither-disable-next-line timestamp
        if (block.timestamp <= b.deadline && !(status == BountyStatus.Completed && pending == 0)) {
            revert SonarDeadlineNotPassed(bountyId, b.deadline);
        }
        if (pending != 0) {
            uint256 lastDue = _lastDue(b, bountyId);
            // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
            // slither-disable-next-line timestamp
            if (block.timestamp <= lastDue) revert SonarStillInWindow(bountyId, lastDue);
        }
        if (b.auditable && !b.auditRevealed) revert SonarAuditNotRevealed(bountyId);
        refunded = b.escrow;
        uint128 burned = b.forfeitPool;
        b.escrow = 0;
        b.forfeitPool = 0;
        b.burned += burned;
        b.status = BountyStatus.Closed;
        address token = b.token;
        _credits[token][msg.sender] += refunded;
        if (burned != 0) _credits[token][BURN_ADDRESS] += burned;
        emit BountyClosed(bountyId, msg.sender, b.paid, refunded, burned);
    }

    /*//////////////////////////////////////////////////////////////
                                 MINERS
    //////////////////////////////////////////////////////////////*/

    /// @notice Submit an update with CID (`digest`, `codec`) trained from model version
    /// `baseVersion`, paying the bounty's stake (msg.value for ETH; `transferFrom` for an ERC-20).
    /// @return index the submission's place in the bounty's queue.
    /// Emits an {UpdateSubmitted} event.
    function submit(uint256 bountyId, bytes32 digest, uint16 codec, uint32 baseVersion)
        external
        payable
        returns (uint256 index)
    {
        BountyData storage b = _bounties[bountyId];
        BountyStatus status = b.status;
        if (status != BountyStatus.Open) {
            if (status == BountyStatus.None) revert SonarUnknownBounty(bountyId);
            revert SonarBountyNotOpen(bountyId, status);
        }
        // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
        // slither-disable-next-line timestamp
        if (block.timestamp > b.deadline) revert SonarDeadlinePassed(bountyId, b.deadline);
        if (digest == bytes32(0)) revert SonarInvalidParams("digest");
        if (baseVersion > b.latestVersion) revert SonarUnknownVersion(bountyId, baseVersion);
        uint32 n = b.submissions;
        index = n;
        b.submissions = n + 1; // checked: reverts (Panic) at 2^32 submissions
        b.pending += 1; // pending <= submissions
        _submissions[bountyId][index] = Submission({
            miner: msg.sender,
            baseVersion: baseVersion,
            submittedAt: uint40(block.timestamp),
            status: SubmissionStatus.Submitted
        });
        emit UpdateSubmitted(bountyId, index, msg.sender, digest, codec, baseVersion);
        _receive(b.token, b.stake);
    }

    /// @notice Take back the stake of your submission that the owner did not settle within its
    /// window (`submittedAt + evalWindow`).
    /// Emits a {StakeReclaimed} event.
    function reclaimStake(uint256 bountyId, uint256 index) external {
        BountyData storage b = _bounty(bountyId);
        Submission storage s = _submissions[bountyId][index];
        if (s.miner != msg.sender) revert SonarNotSubmissionMiner(bountyId, index, msg.sender);
        if (s.status != SubmissionStatus.Submitted) revert SonarWrongStatus(bountyId, index, s.status);
        uint256 due = uint256(s.submittedAt) + b.evalWindow;
        // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
        // slither-disable-next-line timestamp
        if (block.timestamp <= due) revert SonarStillInWindow(bountyId, due);
        s.status = SubmissionStatus.Reclaimed;
        b.pending -= 1;
        if (b.nextEval == index) b.nextEval = uint32(index + 1);
        uint256 stake = b.stake;
        _credits[b.token][msg.sender] += stake;
        emit StakeReclaimed(bountyId, index, msg.sender, stake);
    }

    /// @notice Move the queue head past a submission that can no longer be settled: one whose stake
    /// was reclaimed, or one whose window is over (its stake is credited back to its miner, as with
    /// {reclaimStake}). Anyone may call it; one submission per call.
    /// Emits a {Skipped} event, preceded by a {StakeReclaimed} event for an expired submission.
    function skip(uint256 bountyId) external {
        BountyData storage b = _bounty(bountyId);
        uint256 index = b.nextEval;
        if (index >= b.submissions) revert SonarNothingToSkip(bountyId);
        Submission storage s = _submissions[bountyId][index];
        SubmissionStatus status = s.status;
        // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
        // slither-disable-next-line timestamp
        if (status == SubmissionStatus.Submitted && block.timestamp > uint256(s.submittedAt) + b.evalWindow) {
            s.status = SubmissionStatus.Reclaimed;
            b.pending -= 1;
            uint256 stake = b.stake;
            address miner = s.miner;
            _credits[b.token][miner] += stake;
            emit StakeReclaimed(bountyId, index, miner, stake);
        } else if (status != SubmissionStatus.Reclaimed) {
            revert SonarNothingToSkip(bountyId);
        }
        b.nextEval = uint32(index + 1);
        emit Skipped(bountyId, index);
    }

    /// @notice Credit `miner` with what it has vesting in a bounty (accepted rewards and their
    /// stakes), once the bounty can settle nothing more: it is closed, or it takes no submissions
    /// (Completed, or past its deadline) and every pending submission's window is over. Anyone may
    /// call it; the amount goes to `miner`'s credits ({withdraw}).
    /// @return amount the amount credited.
    /// Emits a {Released} event.
    function release(uint256 bountyId, address miner) external returns (uint256 amount) {
        BountyData storage b = _bounty(bountyId);
        uint256 until = _vestingEnd(b, bountyId);
        // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
        // slither-disable-next-line timestamp
        if (block.timestamp <= until) revert SonarStillVesting(bountyId, until);
        Vesting memory v = _vesting[bountyId][miner];
        amount = uint256(v.rewards) + v.stakes;
        if (amount == 0) revert SonarNothingToRelease(bountyId, miner);
        delete _vesting[bountyId][miner];
        _credits[b.token][miner] += amount;
        emit Released(bountyId, miner, v.rewards, v.stakes);
    }

    /// @notice Send the caller everything credited to it in `token` (address(0) for ETH):
    /// released rewards and stakes, refunded and reclaimed stakes, and refunded escrow.
    /// @return amount the amount sent.
    /// Emits a {Withdrawn} event.
    function withdraw(address token) external nonReentrant returns (uint256 amount) {
        amount = _credits[token][msg.sender];
        if (amount == 0) revert SonarNothingToWithdraw(msg.sender, token);
        _credits[token][msg.sender] = 0;
        emit Withdrawn(msg.sender, token, amount);
        if (token == address(0)) {
            // ETH to an account that may be a contract: state is zeroed first and the call is nonReentrant
            // slither-disable-next-line low-level-calls
            (bool ok,) = payable(msg.sender).call{value: amount}("");
            if (!ok) revert SonarTransferFailed(msg.sender, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @notice Number of bounties ever posted; ids run from 1 to this.
    function bountyCount() external view returns (uint256) {
        return _bountyCount;
    }

    /// @notice A bounty's full state. Reverts for an unknown id.
    function getBounty(uint256 bountyId) external view returns (Bounty memory r) {
        BountyData storage b = _bounty(bountyId);
        r.owner = b.owner;
        r.token = b.token;
        r.status = b.status;
        r.higherIsBetter = b.higherIsBetter;
        r.auditable = b.auditable;
        r.auditRevealed = b.auditRevealed;
        r.deadline = b.deadline;
        r.evalWindow = b.evalWindow;
        r.stake = b.stake;
        r.reward = b.reward;
        r.escrow = b.escrow;
        r.forfeitPool = b.forfeitPool;
        r.paid = b.paid;
        r.burned = b.burned;
        r.initialScore = b.initialScore;
        r.targetScore = b.targetScore;
        r.bestScore = b.bestScore;
        r.latestVersion = b.latestVersion;
        r.nextEval = b.nextEval;
        r.submissions = b.submissions;
        r.pending = b.pending;
        r.lastDue = uint40(_lastDue(b, bountyId));
        r.validationCommitment = b.validationCommitment;
    }

    /// @notice A submission's state. Reverts for an index never submitted.
    function getSubmission(uint256 bountyId, uint256 index) external view returns (Submission memory) {
        if (index >= _bounty(bountyId).submissions) revert SonarUnknownSubmission(bountyId, index);
        return _submissions[bountyId][index];
    }

    /// @notice A model version of a bounty (0 is the posted model). Reverts for an unknown version.
    function getModelVersion(uint256 bountyId, uint256 version) external view returns (ModelVersion memory) {
        if (version > _bounty(bountyId).latestVersion) revert SonarUnknownVersion(bountyId, version);
        VersionData storage v = _versions[bountyId][version];
        return ModelVersion({
            digest: v.digest, codec: v.codec, score: v.score, submission: v.submission, createdAt: v.createdAt
        });
    }

    /// @notice What `account` can withdraw in `token` (address(0) for ETH).
    function credits(address token, address account) external view returns (uint256) {
        return _credits[token][account];
    }

    /// @notice What `miner` has vesting in a bounty, and the time after which {release} can move it
    /// to its credits (0: now; for an open bounty the deadline, later while submissions are pending).
    function getVesting(uint256 bountyId, address miner)
        external
        view
        returns (uint256 rewards, uint256 stakes, uint256 releasableAfter)
    {
        BountyData storage b = _bounty(bountyId);
        Vesting memory v = _vesting[bountyId][miner];
        return (v.rewards, v.stakes, _vestingEnd(b, bountyId));
    }

    /// @notice The reward (from escrow, forfeit pool not included) a round reaching `score` would
    /// earn now; 0 if it does not improve on the best score.
    function previewReward(uint256 bountyId, uint64 score) external view returns (uint256 reward) {
        BountyData storage b = _bounty(bountyId);
        uint64 best = b.bestScore;
        if (b.higherIsBetter ? score <= best : score >= best) return 0;
        (reward,) = _rewardFor(b, bountyId, score);
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _checkParams(BountyParams calldata p) private view {
        if (p.reward == 0 || p.reward > MAX_REWARD) revert SonarInvalidParams("reward");
        if (p.stake == 0 || p.stake > p.reward) revert SonarInvalidParams("stake");
        // time rule by design: windows are >= 10 minutes, a block's few seconds of drift cannot matter
        // slither-disable-next-line timestamp
        if (p.deadline <= block.timestamp) revert SonarInvalidParams("deadline");
        if (p.evalWindow < MIN_EVAL_WINDOW || p.evalWindow > MAX_EVAL_WINDOW) revert SonarInvalidParams("evalWindow");
        if (p.higherIsBetter ? p.targetScore <= p.initialScore : p.targetScore >= p.initialScore) {
            revert SonarInvalidParams("targetScore");
        }
        if (p.validationCommitment == bytes32(0)) revert SonarInvalidParams("validationCommitment");
        if (p.modelDigest == bytes32(0)) revert SonarInvalidParams("modelDigest");
    }

    function _emitPosted(uint256 bountyId, BountyParams calldata p) private {
        emit BountyPosted(
            bountyId,
            msg.sender,
            p.token,
            p.reward,
            p.stake,
            p.deadline,
            p.evalWindow,
            p.initialScore,
            p.targetScore,
            p.higherIsBetter,
            p.validationCommitment,
            p.auditable
        );
    }

    /// @dev A round with accepted updates: compute its pot and cap, record the new model version,
    /// and mark the bounty Completed when it reaches the target.
    function _openRound(
        BountyData storage b,
        Round memory r,
        uint256 accepted,
        uint64 score,
        bytes32 modelDigest,
        uint16 modelCodec
    ) private returns (uint256) {
        if (modelDigest == bytes32(0)) revert SonarInvalidParams("modelDigest");
        (uint256 roundReward, bool reached) = _rewardFor(b, r.bountyId, score);
        r.pot = roundReward + r.pool;
        r.cap = reached && accepted == 1 ? type(uint256).max : uint256(b.reward) * MAX_SHARE_BPS / BPS;
        uint32 v = b.latestVersion + 1;
        b.latestVersion = v;
        b.bestScore = score;
        _versions[r.bountyId][v] = VersionData({
            digest: modelDigest,
            codec: modelCodec,
            score: score,
            submission: uint32(r.first),
            createdAt: uint40(block.timestamp)
        });
        emit ModelVersionRecorded(r.bountyId, v, modelDigest, modelCodec, score);
        if (reached && b.status == BountyStatus.Open) {
            b.status = BountyStatus.Completed;
            emit TargetReached(r.bountyId, score);
        }
        return v;
    }

    /// @dev First pass of {settle}, over calldata only: the accepted shares' sum, how many are
    /// accepted, how many forfeit their stake.
    function _tally(Verdict[] calldata verdicts)
        private
        pure
        returns (uint256 totalBps, uint256 accepted, uint256 forfeits)
    {
        uint256 count = verdicts.length;
        for (uint256 i; i < count; ++i) {
            Verdict calldata v = verdicts[i];
            if (v.shareBps != 0) {
                totalBps += v.shareBps;
                ++accepted;
            } else if (!v.refund) {
                ++forfeits;
            }
            // a clawback belongs to a forfeit only
            if (v.clawback && (v.shareBps != 0 || v.refund)) revert SonarInvalidParams("clawback");
        }
    }

    /// @dev Second pass of {settle}: write each submission's status and credit its miner.
    function _applyVerdicts(Verdict[] calldata verdicts, Round memory r) private returns (uint256 paid) {
        uint256 count = verdicts.length;
        for (uint256 i; i < count; ++i) {
            Verdict calldata v = verdicts[i];
            uint256 index = r.first + i;
            Submission storage s = _submissions[r.bountyId][index];
            address miner = s.miner;
            if (v.shareBps != 0) {
                uint256 amount = r.pot * v.shareBps / BPS;
                if (amount > r.cap) amount = r.cap;
                paid += amount;
                s.status = SubmissionStatus.Accepted;
                Vesting storage vest = _vesting[r.bountyId][miner];
                // one slot: both halves written together (bounds: see "Bounds" in the header)
                (vest.rewards, vest.stakes) = (vest.rewards + uint128(amount), vest.stakes + uint128(r.stake));
                emit UpdateAccepted(r.bountyId, index, miner, v.shareBps, amount);
            } else {
                s.status = SubmissionStatus.Rejected;
                if (v.refund) {
                    _credits[r.token][miner] += r.stake;
                } else if (v.clawback) {
                    Vesting storage vest = _vesting[r.bountyId][miner];
                    uint128 taken = vest.rewards;
                    if (taken != 0) {
                        vest.rewards = 0;
                        r.clawedBack += taken;
                        emit RewardsClawedBack(r.bountyId, index, miner, taken);
                    }
                }
                emit UpdateRejected(r.bountyId, index, miner, v.reason, v.refund);
            }
        }
    }

    /// @dev Take `amount` in `token` from msg.sender: check msg.value for ETH, pull an ERC-20 and
    /// check what arrived (fee-on-transfer tokens are refused). Called last (checks-effects-interactions).
    function _receive(address token, uint256 amount) private {
        if (token == address(0)) {
            if (msg.value != amount) revert SonarWrongPayment(amount, msg.value);
            return;
        }
        if (msg.value != 0) revert SonarWrongPayment(0, msg.value);
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert SonarWrongPayment(amount, received);
    }

    /// @dev When the last submission's window ends (0 before any); submissions are in time order,
    /// so no earlier one ends later.
    function _lastDue(BountyData storage b, uint256 bountyId) private view returns (uint256) {
        uint256 n = b.submissions;
        if (n == 0) return 0;
        return uint256(_submissions[bountyId][n - 1].submittedAt) + b.evalWindow;
    }

    /// @dev The time after which nothing of the bounty can be settled any more, so vesting can be
    /// released: 0 (now) for a closed bounty or one that takes no submissions and has none pending,
    /// else the later of the deadline (while Open) and the last pending window.
    function _vestingEnd(BountyData storage b, uint256 bountyId) private view returns (uint256 end) {
        BountyStatus status = b.status;
        if (status == BountyStatus.Closed) return 0;
        if (status == BountyStatus.Open) end = b.deadline;
        if (b.pending != 0) {
            uint256 due = _lastDue(b, bountyId);
            if (due > end) end = due;
        }
    }

    function _bounty(uint256 bountyId) private view returns (BountyData storage b) {
        b = _bounties[bountyId];
        if (b.status == BountyStatus.None) revert SonarUnknownBounty(bountyId);
    }

    /// @dev Reward of a round reaching a new best `score`: the share of the reward proportional to
    /// the improvement over the span from initial to target score, capped by the escrow; reaching
    /// the target earns all the escrow left.
    function _rewardFor(BountyData storage b, uint256 bountyId, uint64 score)
        private
        view
        returns (uint256 reward, bool reached)
    {
        uint64 best = b.bestScore;
        uint64 target = b.targetScore;
        uint256 improvement;
        uint256 span;
        if (b.higherIsBetter) {
            if (score <= best) revert SonarNoImprovement(bountyId, best, score);
            improvement = score - best;
            span = target - b.initialScore;
            reached = score >= target;
        } else {
            if (score >= best) revert SonarNoImprovement(bountyId, best, score);
            improvement = best - score;
            span = b.initialScore - target;
            reached = score <= target;
        }
        uint256 escrow = b.escrow; // gas savings
        if (reached) return (escrow, true);
        reward = uint256(b.reward) * improvement / span;
        if (reward > escrow) reward = escrow;
    }
}
