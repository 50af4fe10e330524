// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/**
 * @title TestGLM
 * @notice A test token that behaves like GLM: ERC-20 with 18 decimals and EIP-2612 permit. Anyone can mint:
 * for tests and the local devnet only, never deploy it anywhere else.
 */
contract TestGLM is ERC20, ERC20Permit {
    constructor() ERC20("Test Golem Network Token", "tGLM") ERC20Permit("Test Golem Network Token") {}

    /**
     * @notice Mints `amount` tokens to `to` (test token: unrestricted).
     * @param to The receiver.
     * @param amount The amount, in wei (18 decimals).
     */
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
