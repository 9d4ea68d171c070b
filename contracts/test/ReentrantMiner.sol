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

    /// @notice Submit through this contract (it becomes the submission's miner).
    function submit(uint256 bountyId, bytes32 digest, uint16 codec, uint32 baseVersion)
        external
        payable
        returns (uint256)
    {
        return sonar.submit{value: msg.value}(bountyId, digest, codec, baseVersion);
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
