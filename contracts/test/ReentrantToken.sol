// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/**
 * @title ReentrantToken
 * @notice A malicious ERC-20 for tests: on every balance change it calls back into a target (the escrow) with
 * prepared calldata, trying to re-enter it in the middle of a transfer.
 */
contract ReentrantToken is ERC20 {
    /// @notice The contract called back during transfers (zero = disarmed).
    address public target;
    /// @notice The calldata of the callback.
    bytes public payload;
    /// @notice Whether a failed callback makes the transfer fail too (otherwise it is recorded and ignored).
    bool public bubble;
    /// @notice How many callbacks were attempted, and how many succeeded.
    uint256 public attempts;
    uint256 public successes;
    /// @notice The revert data of the last failed callback.
    bytes public lastError;

    constructor() ERC20("Reentrant", "REE") {}

    /// @notice Mints tokens (test only).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms the callback.
    function arm(address target_, bytes calldata payload_, bool bubble_) external {
        target = target_;
        payload = payload_;
        bubble = bubble_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        address t = target;
        if (t == address(0) || from == address(0)) return;
        target = address(0); // one attempt per arming, no infinite recursion
        ++attempts;
        (bool ok, bytes memory ret) = t.call(payload);
        if (ok) {
            ++successes;
        } else {
            lastError = ret;
            if (bubble) {
                assembly ("memory-safe") {
                    revert(add(ret, 0x20), mload(ret))
                }
            }
        }
    }
}
