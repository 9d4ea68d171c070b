// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title FeeToken — an ERC-20 that burns 1% of every transfer (tests that Sonar refuses it)
contract FeeToken is ERC20 {
    constructor() ERC20("Sonar Fee Token", "SFT") {}

    /// @notice Mint `amount` to `to`; anyone may call it (test token only).
    /// Emits a {Transfer} event.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0)) {
            uint256 fee = value / 100;
            super._update(from, address(0), fee);
            value -= fee;
        }
        super._update(from, to, value);
    }
}
