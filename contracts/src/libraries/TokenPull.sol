// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {PullFailure} from "../types/BerthTypes.sol";

/// @title TokenPull
/// @notice The one way Berth's contracts take tokens: `transferFrom` into this contract, never a
/// revert inside the token, and a verdict on what went wrong (allowance, balance, the token
/// itself) so that the caller can raise its own error or record the failure as an event.
library TokenPull {
    /// @notice Pulls `amount` of `token` from `from`. Returns `PullFailure.None` and the amount
    /// that arrived (less than `amount` for a fee-on-transfer token), or the failure and 0.
    function tryPull(IERC20 token, address from, uint256 amount)
        internal
        returns (PullFailure failure, uint256 received)
    {
        uint256 before = balanceOf(token, address(this));
        bool ok;
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            mstore(m, 0x23b872dd00000000000000000000000000000000000000000000000000000000) // transferFrom
            mstore(add(m, 0x04), from)
            mstore(add(m, 0x24), address())
            mstore(add(m, 0x44), amount)
            mstore(0, 0)
            ok := call(gas(), token, 0, m, 0x64, 0, 0x20)
            // Success: no revert, and either no return data from a contract, or a true word.
            switch returndatasize()
            case 0 { ok := and(ok, gt(extcodesize(token), 0)) }
            default { ok := and(ok, and(gt(returndatasize(), 0x1f), eq(mload(0), 1))) }
        }
        if (!ok) return (classify(token, from, amount), 0);
        received = balanceOf(token, address(this)) - before;
    }

    /// @notice Why a pull of `amount` from `from` fails: allowance, balance, or the token.
    function classify(IERC20 token, address from, uint256 amount) internal view returns (PullFailure) {
        if (allowance(token, from) < amount) return PullFailure.Allowance;
        if (balanceOf(token, from) < amount) return PullFailure.Balance;
        return PullFailure.Transfer;
    }

    /// @notice `token.allowance(owner, this)`, or 0 when the call fails.
    function allowance(IERC20 token, address owner) internal view returns (uint256 value) {
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            mstore(m, 0xdd62ed3e00000000000000000000000000000000000000000000000000000000) // allowance
            mstore(add(m, 0x04), owner)
            mstore(add(m, 0x24), address())
            // Yul evaluates arguments right to left: call first, then read its return data size.
            let ok := staticcall(gas(), token, m, 0x44, 0, 0x20)
            if and(ok, gt(returndatasize(), 0x1f)) {
                value := mload(0)
            }
        }
    }

    /// @notice `token.balanceOf(account)`, or 0 when the call fails.
    function balanceOf(IERC20 token, address account) internal view returns (uint256 value) {
        /// @solidity memory-safe-assembly
        assembly {
            mstore(0x00, 0x70a0823100000000000000000000000000000000000000000000000000000000) // balanceOf
            mstore(0x04, account)
            // Yul evaluates arguments right to left: call first, then read its return data size.
            let ok := staticcall(gas(), token, 0, 0x24, 0, 0x20)
            if and(ok, gt(returndatasize(), 0x1f)) {
                value := mload(0)
            }
        }
    }
}
