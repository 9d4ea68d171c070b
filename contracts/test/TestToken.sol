// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken — a mintable ERC-20 for tests, benchmarks and the ERC-20 bounty path
contract TestToken is ERC20 {
    constructor() ERC20("Sonar Test Token", "STT") {}

    /// @notice Mint `amount` to `to`; anyone may call it (test token only).
    /// Emits a {Transfer} event.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
