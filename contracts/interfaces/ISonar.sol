// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISonar — the Sonar bounty marketplace for privately trained model updates
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
/// 953100, a mean squared error of 2890.25 is 2890250000.
interface ISonar {
    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    enum BountyStatus {
        None,
        Open, // accepting commits until the deadline
        Completed, // target score reached, escrow paid out; pending updates still resolvable
        Closed // owner reclaimed the remainder
    }

    enum SubmissionStatus {
        None,
        Committed, // hash of (bounty, miner, CID, base version, salt) recorded with the stake
        Revealed, // CID known, waiting for the owner's evaluation
        Accepted, // became a new model version; reward and stake credited to the miner
        Rejected, // stake moved to the bounty's escrow
        Reclaimed, // owner missed the evaluation window; stake credited back to the miner
        Expired // never revealed in time; stake moved to the bounty's escrow
    }

    /// @notice Everything needed to post a bounty.
    struct BountyParams {
        address token; // address(0) for ETH, else an ERC-20
        uint128 reward; // escrowed amount
        uint96 stake; // per submission, in the bounty's currency (anti-spam)
        uint40 deadline; // unix time after which no commit is accepted
        uint32 evalWindow; // seconds to reveal after a commit, and again to evaluate after that
        uint64 initialScore; // score of model version 0 on the owner's validation set
        uint64 targetScore; // reaching it pays out everything left
        bool higherIsBetter; // accuracy (true) or an error such as MSE (false)
        bytes32 validationCommitment; // hash committing to the owner's validation set
        bytes32 modelDigest; // CID of the model manifest / version 0 weights (see header)
        uint16 modelCodec;
    }

    struct Bounty {
        address owner;
        uint40 deadline;
        uint32 evalWindow;
        bool higherIsBetter;
        BountyStatus status;
        address token;
        uint96 stake;
        uint128 reward;
        uint128 escrow;
        uint64 initialScore;
        uint64 targetScore;
        uint64 bestScore;
        uint32 latestVersion;
        uint32 nextEval;
        uint32 submissions;
        uint32 pending;
        uint40 lastDue;
        uint128 paid;
        bytes32 validationCommitment;
    }

    struct Submission {
        address miner;
        uint32 baseVersion;
        uint40 committedAt;
        SubmissionStatus status;
        uint16 codec; // of `digest`'s CID once revealed
        // the commitment until revealed, then the update's CID; once accepted, the CID of the model
        // version it produced (the update's CID stays in {UpdateRevealed} and the version's record)
        bytes32 digest;
    }

    struct ModelVersion {
        bytes32 digest;
        uint16 codec;
        uint64 score;
        uint32 submission; // index of the accepted submission (0 for version 0)
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
        bytes32 validationCommitment
    );
    event ModelVersionRecorded(
        uint256 indexed bountyId, uint256 indexed version, bytes32 digest, uint16 codec, uint256 score
    );
    /// @dev The stake paid is the bounty's `stake` (see {BountyPosted}); not repeated here to save gas.
    event UpdateCommitted(uint256 indexed bountyId, uint256 indexed index, address indexed miner, bytes32 commitment);
    event UpdateRevealed(
        uint256 indexed bountyId,
        uint256 indexed index,
        address indexed miner,
        bytes32 digest,
        uint16 codec,
        uint256 baseVersion
    );
    event UpdateAccepted(
        uint256 indexed bountyId,
        uint256 indexed index,
        address indexed miner,
        uint256 score,
        uint256 version,
        uint256 reward
    );
    event UpdateRejected(
        uint256 indexed bountyId, uint256 indexed index, address indexed miner, uint256 score, uint8 reason
    );
    event StakeReclaimed(uint256 indexed bountyId, uint256 indexed index, address indexed miner, uint256 stake);
    event UpdateExpired(uint256 indexed bountyId, uint256 indexed index, address indexed miner, uint256 stake);
    event Skipped(uint256 indexed bountyId, uint256 indexed index);
    event TargetReached(uint256 indexed bountyId, uint256 score);
    event BountyClosed(uint256 indexed bountyId, address indexed owner, uint256 paid, uint256 refunded);
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
    error SonarUnknownSubmission(uint256 bountyId, uint256 index);
    error SonarNotSubmissionMiner(uint256 bountyId, uint256 index, address caller);
    error SonarWrongStatus(uint256 bountyId, uint256 index, SubmissionStatus status);
    error SonarRevealWindowClosed(uint256 bountyId, uint256 index, uint256 revealDeadline);
    error SonarCommitmentMismatch(uint256 bountyId, uint256 index);
    error SonarUnknownVersion(uint256 bountyId, uint256 version);
    error SonarNotNextInLine(uint256 bountyId, uint256 index, uint256 nextEval);
    error SonarNoImprovement(uint256 bountyId, uint256 bestScore, uint256 score);
    error SonarStillInWindow(uint256 bountyId, uint256 until);
    error SonarNothingToSkip(uint256 bountyId);
    error SonarNothingToWithdraw(address account, address token);
    error SonarTransferFailed(address to, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                               FUNCTIONS
    //////////////////////////////////////////////////////////////*/

    function postBounty(BountyParams calldata p) external payable returns (uint256 bountyId);
    function commit(uint256 bountyId, bytes32 commitment) external payable returns (uint256 index);
    function reveal(uint256 bountyId, uint256 index, bytes32 digest, uint16 codec, uint32 baseVersion, bytes32 salt)
        external;
    function accept(uint256 bountyId, uint256 index, uint64 score, bytes32 modelDigest, uint16 modelCodec)
        external
        returns (uint256 reward);
    function reject(uint256 bountyId, uint256 index, uint64 score, uint8 reason) external;
    function reclaimStake(uint256 bountyId, uint256 index) external;
    function skip(uint256 bountyId) external;
    function close(uint256 bountyId) external returns (uint256 refunded);
    function withdraw(address token) external returns (uint256 amount);

    function bountyCount() external view returns (uint256);
    function getBounty(uint256 bountyId) external view returns (Bounty memory);
    function getSubmission(uint256 bountyId, uint256 index) external view returns (Submission memory);
    function getModelVersion(uint256 bountyId, uint256 version) external view returns (ModelVersion memory);
    function credits(address token, address account) external view returns (uint256);
    function previewReward(uint256 bountyId, uint64 score) external view returns (uint256);
    function commitmentOf(
        uint256 bountyId,
        address miner,
        bytes32 digest,
        uint16 codec,
        uint32 baseVersion,
        bytes32 salt
    ) external pure returns (bytes32);
}
