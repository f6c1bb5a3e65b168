// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PRICE_SCALE, Prices} from "../types/BerthTypes.sol";

/// @title LeaseMath
/// @notice Pure arithmetic of a lease: its maximum rate, a report's charge, when its balance
/// runs out, what a runway costs and which part of a period the workload was allowed to run.
/// Rates are scaled by `PRICE_SCALE` (1e9); amounts are token base units.
library LeaseMath {
    /// @notice Depletion time of a lease that cannot be charged (all prices zero).
    uint256 internal constant NEVER = type(uint40).max;

    /// @notice Maximum charge per second of a reservation, scaled by 1e9.
    function rate(Prices memory p, uint256 cpuMillis, uint256 memoryMiB, uint256 storageGiB)
        internal
        pure
        returns (uint256)
    {
        return p.baseRate + cpuMillis * p.cpuPrice + memoryMiB * p.memoryPrice + storageGiB * p.storagePrice;
    }

    /// @notice Charge of a report: the base rate over the period plus each resource's units at
    /// its price, rounded down to base units.
    function charge(
        Prices memory p,
        uint256 period,
        uint256 cpuUnits,
        uint256 memoryUnits,
        uint256 storageUnits
    ) internal pure returns (uint256) {
        return (period
                * p.baseRate
                + cpuUnits
                * p.cpuPrice
                + memoryUnits
                * p.memoryPrice
                + storageUnits
                * p.storagePrice) / PRICE_SCALE;
    }

    /// @notice When `balance` runs out at `rate_` when billing continues from `billedUntil`.
    function depletionTime(uint256 billedUntil, uint256 balance, uint256 rate_)
        internal
        pure
        returns (uint256)
    {
        if (rate_ == 0) return NEVER;
        return billedUntil + balance * PRICE_SCALE / rate_;
    }

    /// @notice What `runway` seconds at `rate_` cost, rounded up.
    function costOf(uint256 runway, uint256 rate_) internal pure returns (uint256) {
        return (runway * rate_ + PRICE_SCALE - 1) / PRICE_SCALE;
    }

    /// @notice Seconds of [from, to) outside the idle interval [idleFrom, idleUntil); an
    /// `idleUntil` of 0 means the lease is still idle. With `idleFrom` 0 there is no idle interval.
    function runningSeconds(uint256 from, uint256 to, uint256 idleFrom, uint256 idleUntil)
        internal
        pure
        returns (uint256)
    {
        if (idleFrom == 0) return to - from;
        uint256 idleEnd = idleUntil == 0 ? type(uint256).max : idleUntil;
        uint256 lo = from > idleFrom ? from : idleFrom;
        uint256 hi = to < idleEnd ? to : idleEnd;
        uint256 idle = hi > lo ? hi - lo : 0;
        return to - from - idle;
    }

    /// @notice What must be added to `balance` so that the lease runs until `now_ + target`,
    /// billing from `billedUntil` at `rate_` (0 when it already does).
    function topUpFor(uint256 billedUntil, uint256 balance, uint256 rate_, uint256 now_, uint256 target)
        internal
        pure
        returns (uint256)
    {
        uint256 end = now_ + target;
        if (end <= billedUntil) return 0;
        uint256 needed = costOf(end - billedUntil, rate_);
        return needed > balance ? needed - balance : 0;
    }
}
