// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {ISonar} from "./interfaces/ISonar.sol";

/// @title Sonar — bounties for model updates trained on private data
/// @notice A model owner escrows a reward (ETH or one ERC-20) for improving a model whose manifest
/// and weights live on IPFS. Data owners ("miners") train locally and submit updates by
/// commit–reveal; the owner evaluates them in commit order on a private validation set. An accepted
/// update becomes a new model version and earns `reward × improvement / (target − initial)` (mirrored
/// for errors), capped by what is left; reaching the target pays out everything left.
///
/// Trust: miners trust the owner to report scores honestly (anyone holding the validation set the
/// owner committed to can replay every evaluation off chain), and nothing else. The owner cannot
/// stall: an update not evaluated within its window can have its stake reclaimed, and the owner
/// cannot take the escrow back while an update is pending inside its window. Every bounty has its own
/// escrow; no path moves value between bounties.
///
/// Storage layout: a CID is kept as its sha2-256 digest plus a uint16 multicodec (0 = CIDv0, see
/// {ISonar}). That is one slot per CID and round-trips both `Qm…` and `bafy…` exactly, where a string
/// would take three slots and a hash-only layout would make views useless without logs. A
/// submission's digest slot holds its commitment, then the revealed update's CID, then — once
/// accepted — the CID of the model version it produced: rewrites of a warm slot, not new slots.
/// Everything commit and accept change in a bounty shares one slot; `paid` and `lastDue` are derived.
/// So commit costs ~79k gas, reveal ~42k, accept ~100k with the miner's first credit.
/// Nothing loops over submissions: evaluation walks a queue head (`nextEval`), one step a call.
contract Sonar is ISonar, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Fixed-point scale of scores (6 decimals).
    uint64 public constant SCORE_SCALE = 1e6;
    /// @notice Longest evaluation window an owner may set.
    uint32 public constant MAX_EVAL_WINDOW = 30 days;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    /// @notice Largest reward a bounty may escrow (leaves uint96 headroom for forfeited stakes).
    uint256 public constant MAX_REWARD = type(uint88).max;

    /// @dev A bounty in storage. What commit and accept write shares one slot (slot 2), so each of
    /// them rewrites one bounty slot. `paid` (= reward + forfeited − escrow − refunded) and
    /// `lastDue` (the last commit's time + 2 windows) are derived in {getBounty}, not stored.
    struct BountyData {
        address owner; // slot 0
        uint40 deadline;
        uint32 evalWindow;
        bool higherIsBetter;
        BountyStatus status;
        address token; // slot 1
        uint96 stake;
        uint96 escrow; // slot 2: written by commit, accept, reject, reclaim, skip
        uint64 bestScore;
        uint24 latestVersion;
        uint24 nextEval;
        uint24 submissions;
        uint24 pending;
        uint96 reward; // slot 3: read-only after posting
        uint64 initialScore;
        uint64 targetScore;
        uint96 forfeited; // slot 4: stakes of rejected and expired updates, refund at close
        uint96 refunded;
        bytes32 validationCommitment; // slot 5
    }

    /// @dev A model version in one slot. Its CID digest is not repeated here: version 0's is in
    /// `_initialModel`, a later version's in the `digest` of the submission that produced it
    /// (accept rewrites that warm slot instead of filling a new one).
    struct VersionData {
        uint16 codec;
        uint64 score;
        uint32 submission;
        uint40 createdAt;
    }

    uint256 private _bountyCount;
    mapping(uint256 bountyId => BountyData) private _bounties;
    mapping(uint256 bountyId => mapping(uint256 index => Submission)) private _submissions;
    mapping(uint256 bountyId => mapping(uint256 version => VersionData)) private _versions;
    mapping(uint256 bountyId => bytes32 digest) private _initialModel;
    mapping(address token => mapping(address account => uint256)) private _credits;

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
        b.owner = msg.sender;
        b.deadline = p.deadline;
        b.evalWindow = p.evalWindow;
        b.higherIsBetter = p.higherIsBetter;
        b.status = BountyStatus.Open;
        b.token = p.token;
        b.stake = p.stake;
        b.reward = uint96(p.reward);
        b.escrow = uint96(p.reward);
        b.initialScore = p.initialScore;
        b.targetScore = p.targetScore;
        b.bestScore = p.initialScore;
        b.validationCommitment = p.validationCommitment;
        _initialModel[bountyId] = p.modelDigest;
        _versions[bountyId][0] =
            VersionData({codec: p.modelCodec, score: p.initialScore, submission: 0, createdAt: uint40(block.timestamp)});
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
            p.validationCommitment
        );
        emit ModelVersionRecorded(bountyId, 0, p.modelDigest, p.modelCodec, p.initialScore);
        _receive(p.token, p.reward);
    }

    /// @notice Accept the next revealed update in commit order with its validation `score`; the
    /// model with the update applied becomes a new version with CID (`modelDigest`, `modelCodec`).
    /// The miner is credited the reward (see {previewReward}) plus the stake.
    /// @return reward the amount credited on top of the returned stake.
    /// Emits a {ModelVersionRecorded} and an {UpdateAccepted} event, and {TargetReached} when the
    /// score reaches the target.
    function accept(uint256 bountyId, uint256 index, uint64 score, bytes32 modelDigest, uint16 modelCodec)
        external
        returns (uint256 reward)
    {
        BountyData storage b = _ownedEvaluable(bountyId);
        Submission storage s = _headRevealed(b, bountyId, index);
        if (modelDigest == bytes32(0)) revert SonarInvalidParams("modelDigest");
        bool reached;
        (reward, reached) = _rewardFor(b, bountyId, score);

        uint24 version = b.latestVersion + 1;
        b.latestVersion = version;
        b.bestScore = score;
        b.nextEval = uint24(index + 1);
        b.pending -= 1;
        b.escrow -= uint96(reward);
        if (reached) b.status = BountyStatus.Completed;
        // the submission now names the model version it produced (its update's CID stays in
        // {UpdateRevealed} and in the version's record)
        s.status = SubmissionStatus.Accepted;
        s.codec = modelCodec;
        s.digest = modelDigest;
        _versions[bountyId][version] =
            VersionData({codec: modelCodec, score: score, submission: uint32(index), createdAt: uint40(block.timestamp)});
        address miner = s.miner;
        _credits[b.token][miner] += reward + b.stake;

        emit ModelVersionRecorded(bountyId, version, modelDigest, modelCodec, score);
        emit UpdateAccepted(bountyId, index, miner, score, version, reward);
        if (reached) emit TargetReached(bountyId, score);
    }

    /// @notice Reject the next revealed update in commit order. Its stake joins the bounty's escrow.
    /// `reason` is a client-defined code (the `mine` client: 1 structure, 2 no improvement,
    /// 3 subgroup regression, 4 outlier norm, 5 unreadable).
    /// Emits an {UpdateRejected} event.
    function reject(uint256 bountyId, uint256 index, uint64 score, uint8 reason) external {
        BountyData storage b = _ownedEvaluable(bountyId);
        Submission storage s = _headRevealed(b, bountyId, index);
        uint96 stake = b.stake;
        b.nextEval = uint24(index + 1);
        b.pending -= 1;
        b.escrow += stake;
        b.forfeited += stake;
        s.status = SubmissionStatus.Rejected;
        emit UpdateRejected(bountyId, index, s.miner, score, reason);
    }

    /// @notice After the deadline (or once the target is reached), and when no update is pending
    /// inside its window, end the bounty and credit what is left of the escrow to the owner.
    /// @return refunded the amount credited to the owner.
    /// Emits a {BountyClosed} event.
    function close(uint256 bountyId) external returns (uint256 refunded) {
        BountyData storage b = _bounty(bountyId);
        if (b.owner != msg.sender) revert SonarNotBountyOwner(bountyId, msg.sender);
        BountyStatus status = b.status;
        if (status == BountyStatus.Closed) revert SonarBountyNotOpen(bountyId, status);
        if (status == BountyStatus.Open && block.timestamp <= b.deadline) {
            revert SonarStillInWindow(bountyId, b.deadline);
        }
        if (b.pending != 0) {
            uint256 lastDue = _lastDue(b, bountyId);
            if (block.timestamp <= lastDue) revert SonarStillInWindow(bountyId, lastDue);
        }
        refunded = b.escrow;
        b.escrow = 0;
        b.refunded = uint96(refunded);
        b.status = BountyStatus.Closed;
        _credits[b.token][msg.sender] += refunded;
        emit BountyClosed(bountyId, msg.sender, _paid(b), refunded);
    }

    /*//////////////////////////////////////////////////////////////
                                 MINERS
    //////////////////////////////////////////////////////////////*/

    /// @notice Commit to an update: `commitment` must equal {commitmentOf} for the CID you will
    /// reveal. Pays the bounty's stake (msg.value for ETH; `transferFrom` for an ERC-20).
    /// @return index the submission's place in the bounty's evaluation queue.
    /// Emits an {UpdateCommitted} event.
    function commit(uint256 bountyId, bytes32 commitment) external payable returns (uint256 index) {
        BountyData storage b = _bounties[bountyId];
        BountyStatus status = b.status;
        if (status != BountyStatus.Open) {
            if (status == BountyStatus.None) revert SonarUnknownBounty(bountyId);
            revert SonarBountyNotOpen(bountyId, status);
        }
        if (block.timestamp > b.deadline) revert SonarDeadlinePassed(bountyId, b.deadline);
        if (commitment == bytes32(0)) revert SonarInvalidParams("commitment");
        index = b.submissions;
        if (index == type(uint24).max) revert SonarInvalidParams("submissions");
        unchecked {
            b.submissions = uint24(index + 1);
            b.pending += 1; // pending <= submissions
        }
        _submissions[bountyId][index] = Submission({
            miner: msg.sender,
            baseVersion: 0,
            committedAt: uint40(block.timestamp),
            status: SubmissionStatus.Committed,
            codec: 0,
            digest: commitment
        });
        emit UpdateCommitted(bountyId, index, msg.sender, commitment);
        _receive(b.token, b.stake);
    }

    /// @notice Reveal a committed update's CID and the model version it was trained from, within
    /// the evaluation window after the commit.
    /// Emits an {UpdateRevealed} event.
    function reveal(uint256 bountyId, uint256 index, bytes32 digest, uint16 codec, uint32 baseVersion, bytes32 salt)
        external
    {
        BountyData storage b = _bounty(bountyId);
        Submission storage s = _submissions[bountyId][index];
        if (s.miner != msg.sender) revert SonarNotSubmissionMiner(bountyId, index, msg.sender);
        if (s.status != SubmissionStatus.Committed) revert SonarWrongStatus(bountyId, index, s.status);
        uint256 revealDeadline = uint256(s.committedAt) + b.evalWindow;
        if (block.timestamp > revealDeadline) revert SonarRevealWindowClosed(bountyId, index, revealDeadline);
        if (baseVersion > b.latestVersion) revert SonarUnknownVersion(bountyId, baseVersion);
        if (s.digest != _commitment(bountyId, msg.sender, digest, codec, baseVersion, salt)) {
            revert SonarCommitmentMismatch(bountyId, index);
        }
        s.status = SubmissionStatus.Revealed;
        s.baseVersion = baseVersion;
        s.codec = codec;
        s.digest = digest;
        emit UpdateRevealed(bountyId, index, msg.sender, digest, codec, baseVersion);
    }

    /// @notice Take back the stake of a revealed update the owner did not evaluate in time
    /// (two evaluation windows after the commit: one to reveal, one to evaluate).
    /// Emits a {StakeReclaimed} event.
    function reclaimStake(uint256 bountyId, uint256 index) external {
        BountyData storage b = _bounty(bountyId);
        Submission storage s = _submissions[bountyId][index];
        if (s.miner != msg.sender) revert SonarNotSubmissionMiner(bountyId, index, msg.sender);
        if (s.status != SubmissionStatus.Revealed) revert SonarWrongStatus(bountyId, index, s.status);
        uint256 due = uint256(s.committedAt) + 2 * uint256(b.evalWindow);
        if (block.timestamp <= due) revert SonarStillInWindow(bountyId, due);
        s.status = SubmissionStatus.Reclaimed;
        b.pending -= 1;
        if (b.nextEval == index) b.nextEval = uint24(index + 1);
        uint96 stake = b.stake;
        _credits[b.token][msg.sender] += stake;
        emit StakeReclaimed(bountyId, index, msg.sender, stake);
    }

    /// @notice Move the evaluation queue past its head when the head cannot be evaluated: its stake
    /// was reclaimed; it was never revealed and its reveal window is over (the stake is forfeited
    /// to the escrow, or to the owner once the bounty is closed); or it was revealed and the owner
    /// let its evaluation window pass (the stake is credited back to its miner). Anyone may call it.
    /// Emits a {Skipped}, an {UpdateExpired} or a {StakeReclaimed} event.
    function skip(uint256 bountyId) external {
        BountyData storage b = _bounty(bountyId);
        uint256 index = b.nextEval;
        if (index >= b.submissions) revert SonarNothingToSkip(bountyId);
        Submission storage s = _submissions[bountyId][index];
        SubmissionStatus status = s.status;
        if (status == SubmissionStatus.Reclaimed) {
            b.nextEval = uint24(index + 1);
            emit Skipped(bountyId, index);
        } else if (status == SubmissionStatus.Committed && block.timestamp > uint256(s.committedAt) + b.evalWindow) {
            b.nextEval = uint24(index + 1);
            b.pending -= 1;
            s.status = SubmissionStatus.Expired;
            uint96 stake = b.stake;
            if (b.status == BountyStatus.Closed) {
                _credits[b.token][b.owner] += stake;
            } else {
                b.escrow += stake;
                b.forfeited += stake;
            }
            emit UpdateExpired(bountyId, index, s.miner, stake);
        } else if (
            status == SubmissionStatus.Revealed && block.timestamp > uint256(s.committedAt) + 2 * uint256(b.evalWindow)
        ) {
            // the owner let it pass its window: its stake goes back to its miner, as with reclaimStake,
            // so a miner who never reclaims cannot hold up the queue behind it
            b.nextEval = uint24(index + 1);
            b.pending -= 1;
            s.status = SubmissionStatus.Reclaimed;
            uint96 stake = b.stake;
            address miner = s.miner;
            _credits[b.token][miner] += stake;
            emit StakeReclaimed(bountyId, index, miner, stake);
        } else {
            revert SonarNothingToSkip(bountyId);
        }
    }

    /// @notice Send the caller everything credited to it in `token` (address(0) for ETH):
    /// rewards, returned stakes and refunded escrow.
    /// @return amount the amount sent.
    /// Emits a {Withdrawn} event.
    function withdraw(address token) external nonReentrant returns (uint256 amount) {
        amount = _credits[token][msg.sender];
        if (amount == 0) revert SonarNothingToWithdraw(msg.sender, token);
        _credits[token][msg.sender] = 0;
        emit Withdrawn(msg.sender, token, amount);
        if (token == address(0)) {
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
    function getBounty(uint256 bountyId) external view returns (Bounty memory) {
        BountyData storage b = _bounty(bountyId);
        return Bounty({
            owner: b.owner,
            deadline: b.deadline,
            evalWindow: b.evalWindow,
            higherIsBetter: b.higherIsBetter,
            status: b.status,
            token: b.token,
            stake: b.stake,
            reward: b.reward,
            escrow: b.escrow,
            initialScore: b.initialScore,
            targetScore: b.targetScore,
            bestScore: b.bestScore,
            latestVersion: b.latestVersion,
            nextEval: b.nextEval,
            submissions: b.submissions,
            pending: b.pending,
            lastDue: uint40(_lastDue(b, bountyId)),
            paid: uint128(_paid(b)),
            validationCommitment: b.validationCommitment
        });
    }

    /// @notice A submission's state. Reverts for an index never committed.
    function getSubmission(uint256 bountyId, uint256 index) external view returns (Submission memory) {
        if (index >= _bounty(bountyId).submissions) revert SonarUnknownSubmission(bountyId, index);
        return _submissions[bountyId][index];
    }

    /// @notice A model version of a bounty (0 is the posted model). Reverts for an unknown version.
    function getModelVersion(uint256 bountyId, uint256 version) external view returns (ModelVersion memory) {
        if (version > _bounty(bountyId).latestVersion) revert SonarUnknownVersion(bountyId, version);
        VersionData storage v = _versions[bountyId][version];
        bytes32 digest = version == 0 ? _initialModel[bountyId] : _submissions[bountyId][v.submission].digest;
        return ModelVersion({
            digest: digest, codec: v.codec, score: v.score, submission: v.submission, createdAt: v.createdAt
        });
    }

    /// @notice What `account` can withdraw in `token` (address(0) for ETH).
    function credits(address token, address account) external view returns (uint256) {
        return _credits[token][account];
    }

    /// @notice The reward that accepting an update with `score` would pay now (0 if it does not
    /// improve on the best score).
    function previewReward(uint256 bountyId, uint64 score) external view returns (uint256 reward) {
        BountyData storage b = _bounty(bountyId);
        uint64 best = b.bestScore;
        if (b.higherIsBetter ? score <= best : score >= best) return 0;
        (reward,) = _rewardFor(b, bountyId, score);
    }

    /// @notice The commitment a miner posts for an update with CID (`digest`, `codec`) trained
    /// from `baseVersion`; binding the miner's address stops others from replaying it.
    function commitmentOf(
        uint256 bountyId,
        address miner,
        bytes32 digest,
        uint16 codec,
        uint32 baseVersion,
        bytes32 salt
    ) external pure returns (bytes32) {
        return _commitment(bountyId, miner, digest, codec, baseVersion, salt);
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _checkParams(BountyParams calldata p) private view {
        if (p.reward == 0 || p.reward > MAX_REWARD) revert SonarInvalidParams("reward");
        if (p.deadline <= block.timestamp) revert SonarInvalidParams("deadline");
        if (p.evalWindow == 0 || p.evalWindow > MAX_EVAL_WINDOW) revert SonarInvalidParams("evalWindow");
        if (p.higherIsBetter ? p.targetScore <= p.initialScore : p.targetScore >= p.initialScore) {
            revert SonarInvalidParams("targetScore");
        }
        if (p.modelDigest == bytes32(0)) revert SonarInvalidParams("modelDigest");
    }

    /// @dev Take `amount` in `token` from msg.sender: check msg.value for ETH, pull an ERC-20 and
    /// check what arrived (fee-on-transfer tokens are refused). Called last (checks-effects-interactions).
    function _receive(address token, uint256 amount) private {
        if (token == address(0)) {
            if (msg.value != amount) revert SonarWrongPayment(amount, msg.value);
            return;
        }
        if (msg.value != 0) revert SonarWrongPayment(0, msg.value);
        if (amount == 0) return;
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert SonarWrongPayment(amount, received);
    }

    /// @dev Paid out as rewards so far: what came in minus what is left or went back to the owner.
    function _paid(BountyData storage b) private view returns (uint256) {
        return uint256(b.reward) + b.forfeited - b.escrow - b.refunded;
    }

    /// @dev When the last commit's evaluation window ends (0 before any commit); commits are in
    /// time order, so no earlier one ends later.
    function _lastDue(BountyData storage b, uint256 bountyId) private view returns (uint256) {
        uint256 n = b.submissions;
        if (n == 0) return 0;
        return uint256(_submissions[bountyId][n - 1].committedAt) + 2 * uint256(b.evalWindow);
    }

    function _bounty(uint256 bountyId) private view returns (BountyData storage b) {
        b = _bounties[bountyId];
        if (b.status == BountyStatus.None) revert SonarUnknownBounty(bountyId);
    }

    function _ownedEvaluable(uint256 bountyId) private view returns (BountyData storage b) {
        b = _bounty(bountyId);
        if (b.owner != msg.sender) revert SonarNotBountyOwner(bountyId, msg.sender);
        if (b.status == BountyStatus.Closed) revert SonarBountyNotOpen(bountyId, BountyStatus.Closed);
    }

    function _headRevealed(BountyData storage b, uint256 bountyId, uint256 index)
        private
        view
        returns (Submission storage s)
    {
        uint256 head = b.nextEval;
        if (index != head) revert SonarNotNextInLine(bountyId, index, head);
        s = _submissions[bountyId][index];
        if (s.status != SubmissionStatus.Revealed) revert SonarWrongStatus(bountyId, index, s.status);
    }

    /// @dev Reward for a new best `score`: the share of the reward proportional to the improvement
    /// over the span from initial to target score, capped by the escrow; the target pays it all.
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

    function _commitment(
        uint256 bountyId,
        address miner,
        bytes32 digest,
        uint16 codec,
        uint32 baseVersion,
        bytes32 salt
    ) private pure returns (bytes32) {
        return keccak256(abi.encode(bountyId, miner, digest, codec, baseVersion, salt));
    }
}
