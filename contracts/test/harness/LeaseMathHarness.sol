// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseMath} from "../../src/libraries/LeaseMath.sol";
import {Prices} from "../../src/types/BerthTypes.sol";

/// @title LeaseMathHarness
/// @notice Exposes `LeaseMath` as external calls, so the Rust crate `berth-protocol` can be
/// checked against the contracts' own arithmetic on anvil (a test-only contract; never
/// deployed anywhere else).
contract LeaseMathHarness {
    /// @notice `LeaseMath.rate`.
    function rate(Prices calldata p, uint256 cpuMillis, uint256 memoryMiB, uint256 storageGiB)
        external
        pure
        returns (uint256)
    {
        return LeaseMath.rate(p, cpuMillis, memoryMiB, storageGiB);
    }

    /// @notice `LeaseMath.charge`.
    function charge(
        Prices calldata p,
        uint256 period,
        uint256 cpuUnits,
        uint256 memoryUnits,
        uint256 storageUnits
    ) external pure returns (uint256) {
        return LeaseMath.charge(p, period, cpuUnits, memoryUnits, storageUnits);
    }

    /// @notice `LeaseMath.depletionTime`.
    function depletionTime(uint256 billedUntil, uint256 balance, uint256 rate_)
        external
        pure
        returns (uint256)
    {
        return LeaseMath.depletionTime(billedUntil, balance, rate_);
    }

    /// @notice `LeaseMath.costOf`.
    function costOf(uint256 runway, uint256 rate_) external pure returns (uint256) {
        return LeaseMath.costOf(runway, rate_);
    }

    /// @notice `LeaseMath.runningSeconds`.
    function runningSeconds(uint256 from, uint256 to, uint256 idleFrom, uint256 idleUntil)
        external
        pure
        returns (uint256)
    {
        return LeaseMath.runningSeconds(from, to, idleFrom, idleUntil);
    }

    /// @notice `LeaseMath.topUpFor`.
    function topUpFor(uint256 billedUntil, uint256 balance, uint256 rate_, uint256 now_, uint256 target)
        external
        pure
        returns (uint256)
    {
        return LeaseMath.topUpFor(billedUntil, balance, rate_, now_, target);
    }
}
