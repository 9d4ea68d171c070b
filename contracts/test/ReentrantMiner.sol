// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ISonar} from "../interfaces/ISonar.sol";

/// @title ReentrantMiner — a miner contract that tries to withdraw twice by re-entering from its
/// receive hook. Used by the attack tests; records whether the re-entry succeeded.
contract ReentrantMiner {
    ISonar public immutable sonar;
    uint256 public reentries;
    bool public reentrySucceeded;

    constructor(ISonar sonar_) {
        sonar = sonar_;
    }

    /// @notice Commit through this contract (it becomes the submission's miner).
    function commit(uint256 bountyId, bytes32 commitment) external payable returns (uint256) {
        return sonar.commit{value: msg.value}(bountyId, commitment);
    }

    /// @notice Reveal through this contract.
    function reveal(uint256 bountyId, uint256 index, bytes32 digest, uint16 codec, uint32 baseVersion, bytes32 salt)
        external
    {
        sonar.reveal(bountyId, index, digest, codec, baseVersion, salt);
    }

    /// @notice Start the attack: withdraw ETH credits; the receive hook re-enters.
    function attack() external {
        sonar.withdraw(address(0));
    }

    receive() external payable {
        if (reentries == 0) {
            reentries = 1;
            try sonar.withdraw(address(0)) {
                reentrySucceeded = true;
            } catch {}
        }
    }
}
