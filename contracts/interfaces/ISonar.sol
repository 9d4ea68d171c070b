// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISonar — the Sonar bounty marketplace for privately trained model updates (v2)
/// @notice Types, events, errors and functions of {Sonar}. Clients (the `mine` package, scripts)
/// program against this interface; the events alone are enough to rebuild every bounty's state.
///
/// Content IDs are stored as `(bytes32 digest, uint16 codec)`: the sha2-256 digest of the content
/// and the multicodec of a CIDv1 (0x70 dag-pb, 0x55 raw, ...), or codec 0 for a CIDv0.
///   codec 0 -> CIDv0 = base58btc(0x12 0x20 ‖ digest)                      ("Qm…")
///   codec c -> CIDv1 = "b" ‖ base32lower(0x01 ‖ varint(c) ‖ 0x12 0x20 ‖ digest)   ("bafy…" for dag-pb)
/// Both forms round-trip exactly; other hash functions are not accepted by the client.
///
/// Scores are fixed-point integers with 6 decimals (`SCORE_SCALE = 1e6`): accuracy 0.9531 is
/// 953100, a mean squared error of 2890.25 is 2890250000. Shares are basis points (10000 = all).
interface ISonar {
    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    enum BountyStatus {
        None,
        Open, // accepting submissions until the deadline
        Completed, // target score reached; no new submissions, pending ones still settle
        Closed // escrow left refunded to the owner, forfeit pool burned
    }

    enum SubmissionStatus {
        None,
        Submitted, // stake paid, waiting in the queue for the owner's verdict
        Accepted, // part of a model version; stake and its share of the round's pot vest until the bounty ends
        Rejected, // stake refunded (verdict `refund`) or moved to the bounty's forfeit pool
        Reclaimed // not settled within its window; stake credited back to the miner
    }

    /// @notice Everything needed to post a bounty.
    struct BountyParams {
        address token; // address(0) for ETH, else an ERC-20 (no fee-on-transfer tokens)
        uint128 reward; // escrowed amount, 0 < reward <= MAX_REWARD
        uint96 stake; // per submission, 0 < stake <= reward; returned unless the update is harmful
        uint40 deadline; // unix time after which no submission is accepted
        uint32 evalWindow; // seconds the owner has to settle a submission, MIN..MAX_EVAL_WINDOW
        uint64 initialScore; // score of model version 0 on the owner's validation set
        uint64 targetScore; // reaching it pays out everything left
        bool higherIsBetter; // accuracy (true) or an error such as MSE (false)
        bytes32 validationCommitment; // digest of the audit bundle's CID (validation set + key), != 0
        bytes32 modelDigest; // CID of the model manifest / version 0 weights (see header)
        uint16 modelCodec;
        bool auditable; // close requires {revealAudit} first: miners can replay every evaluation
    }

    /// @notice The owner's verdict on one submission of a round (in queue order).
    struct Verdict {
        uint16 shareBps; // > 0: accepted, its share of the round's pot (accepted shares sum to 10000)
        uint8 reason; // when rejected: a client-defined reason code (see the `mine` client)
        bool refund; // when rejected: true returns the stake (honest but unhelpful), false forfeits it
        bool clawback; // when forfeited: also burn the miner's vesting rewards of this bounty
    }

    struct Bounty {
        address owner;
        address token;
        BountyStatus status;
        bool higherIsBetter;
        bool auditable;
        bool auditRevealed;
        uint40 deadline;
        uint32 evalWindow;
        uint96 stake;
        uint128 reward;
        uint128 escrow; // reward not yet paid (refunded to the owner at close)
        uint128 forfeitPool; // forfeited stakes waiting for later accepted contributors
        uint128 paid; // rewards granted to miners so far (from escrow and forfeit pool), less those clawed back
        uint128 burned; // clawed-back rewards, and the forfeit pool burned at close
        uint64 initialScore;
        uint64 targetScore;
        uint64 bestScore;
        uint32 latestVersion;
        uint32 nextEval; // queue head: the next submission to settle
        uint32 submissions;
        uint32 pending; // submissions still Submitted
        uint40 lastDue; // end of the last submission's window (0 before any)
        bytes32 validationCommitment;
    }

    struct Submission {
        address miner;
        uint32 baseVersion;
        uint40 submittedAt;
        SubmissionStatus status;
    }

    struct ModelVersion {
        bytes32 digest;
        uint16 codec;
        uint64 score;
        uint32 submission; // first submission of the round that produced it (0 for version 0)
        uint40 createdAt;
    }

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    event BountyPosted(
        uint256 indexed bountyId,
        address indexed owner,
        address indexed token,
        uint256 reward,
        uint256 stake,
        uint256 deadline,
        uint256 evalWindow,
        uint256 initialScore,
        uint256 targetScore,
        bool higherIsBetter,
        bytes32 validationCommitment,
        bool auditable
    );
    event ModelVersionRecorded(
        uint256 indexed bountyId, uint256 indexed version, bytes32 digest, uint16 codec, uint256 score
    );
    /// @dev The stake paid is the bounty's `stake` (see {BountyPosted}). The update's CID is only here.
    event UpdateSubmitted(
        uint256 indexed bountyId,
        uint256 indexed index,
        address indexed miner,
        bytes32 digest,
        uint16 codec,
        uint256 baseVersion
    );
    /// @dev `reward` vests with the returned stake until the bounty ends (see {release}).
    event UpdateAccepted(
        uint256 indexed bountyId, uint256 indexed index, address indexed miner, uint256 shareBps, uint256 reward
    );
    event UpdateRejected(
        uint256 indexed bountyId, uint256 indexed index, address indexed miner, uint8 reason, bool refunded
    );
    /// @dev `version` is 0 when nothing was accepted; `paid` is the rewards granted (they vest; stakes and
    /// this round's clawbacks excluded).
    event RoundSettled(
        uint256 indexed bountyId, uint256 firstIndex, uint256 count, uint256 version, uint256 score, uint256 paid
    );
    /// @dev A forfeit with `clawback`: the miner's vesting rewards in the bounty taken back and burned.
    event RewardsClawedBack(uint256 indexed bountyId, uint256 indexed index, address indexed miner, uint256 amount);
    /// @dev A miner's vested rewards and stakes of a bounty moved to its credits.
    event Released(uint256 indexed bountyId, address indexed miner, uint256 rewards, uint256 stakes);
    event StakeReclaimed(uint256 indexed bountyId, uint256 indexed index, address indexed miner, uint256 stake);
    event Skipped(uint256 indexed bountyId, uint256 indexed index);
    event TargetReached(uint256 indexed bountyId, uint256 score);
    event AuditRevealed(uint256 indexed bountyId, bytes32 digest, uint16 codec);
    event BountyClosed(
        uint256 indexed bountyId, address indexed owner, uint256 paid, uint256 refunded, uint256 burned
    );
    event Withdrawn(address indexed account, address indexed token, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    error SonarInvalidParams(string what);
    error SonarWrongPayment(uint256 expected, uint256 received);
    error SonarUnknownBounty(uint256 bountyId);
    error SonarNotBountyOwner(uint256 bountyId, address caller);
    error SonarBountyNotOpen(uint256 bountyId, BountyStatus status);
    error SonarDeadlinePassed(uint256 bountyId, uint256 deadline);
    error SonarDeadlineNotPassed(uint256 bountyId, uint256 deadline);
    error SonarUnknownSubmission(uint256 bountyId, uint256 index);
    error SonarNotSubmissionMiner(uint256 bountyId, uint256 index, address caller);
    error SonarWrongStatus(uint256 bountyId, uint256 index, SubmissionStatus status);
    error SonarUnknownVersion(uint256 bountyId, uint256 version);
    error SonarInvalidRound(uint256 bountyId, uint256 count, uint256 queued);
    error SonarInvalidShares(uint256 bountyId, uint256 totalBps);
    error SonarNoImprovement(uint256 bountyId, uint256 bestScore, uint256 score);
    error SonarWindowClosed(uint256 bountyId, uint256 index, uint256 due);
    error SonarStillInWindow(uint256 bountyId, uint256 until);
    error SonarNothingToSkip(uint256 bountyId);
    error SonarAuditMismatch(uint256 bountyId, bytes32 expected, bytes32 digest);
    error SonarAuditAlreadyRevealed(uint256 bountyId);
    error SonarAuditNotRevealed(uint256 bountyId);
    error SonarNothingToWithdraw(address account, address token);
    error SonarStillVesting(uint256 bountyId, uint256 until);
    error SonarNothingToRelease(uint256 bountyId, address miner);
    error SonarTransferFailed(address to, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                               FUNCTIONS
    //////////////////////////////////////////////////////////////*/

    function postBounty(BountyParams calldata p) external payable returns (uint256 bountyId);
    function submit(uint256 bountyId, bytes32 digest, uint16 codec, uint32 baseVersion)
        external
        payable
        returns (uint256 index);
    function settle(
        uint256 bountyId,
        Verdict[] calldata verdicts,
        uint64 score,
        bytes32 modelDigest,
        uint16 modelCodec
    ) external returns (uint256 paid);
    function reclaimStake(uint256 bountyId, uint256 index) external;
    function skip(uint256 bountyId) external;
    function revealAudit(uint256 bountyId, bytes32 digest, uint16 codec) external;
    function close(uint256 bountyId) external returns (uint256 refunded);
    function release(uint256 bountyId, address miner) external returns (uint256 amount);
    function withdraw(address token) external returns (uint256 amount);

    // the getters of Sonar's public constants: UPPER_CASE like the constants they read
    // slither-disable-start naming-convention
    function SCORE_SCALE() external view returns (uint64);
    function MIN_EVAL_WINDOW() external view returns (uint32);
    function MAX_EVAL_WINDOW() external view returns (uint32);
    function MAX_REWARD() external view returns (uint256);
    function MAX_ROUND() external view returns (uint256);
    function MAX_SHARE_BPS() external view returns (uint256);
    function BPS() external view returns (uint256);
    function BURN_ADDRESS() external view returns (address);
    // slither-disable-end naming-convention

    function bountyCount() external view returns (uint256);
    function getBounty(uint256 bountyId) external view returns (Bounty memory);
    function getSubmission(uint256 bountyId, uint256 index) external view returns (Submission memory);
    function getModelVersion(uint256 bountyId, uint256 version) external view returns (ModelVersion memory);
    function credits(address token, address account) external view returns (uint256);
    function getVesting(uint256 bountyId, address miner)
        external
        view
        returns (uint256 rewards, uint256 stakes, uint256 releasableAfter);
    function previewReward(uint256 bountyId, uint64 score) external view returns (uint256);
}
