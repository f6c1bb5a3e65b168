// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ChargeBuckets
/// @notice The challenge window of a lease's charges with constant storage: two buckets of
/// pending charges, A (older, fixed maturity) and B (newer). A report always adds to B and
/// restarts B's window; when A is empty, B moves into A with its maturity. So every charge
/// matures at most two windows after its report, and one window after it when reports are
/// rarer than the window.
library ChargeBuckets {
    /// @notice The buckets of one lease, plus what matured during this call (`matured`, to be
    /// added to the lease's claimable amount).
    struct Buckets {
        uint256 pendingA;
        uint256 maturesA;
        uint256 pendingB;
        uint256 maturesB;
        uint256 matured;
    }

    /// @notice Moves what matured by `now_` into `matured` and keeps A the older bucket.
    function settle(Buckets memory b, uint256 now_) internal pure {
        if (b.pendingA != 0 && b.maturesA <= now_) {
            b.matured += b.pendingA;
            (b.pendingA, b.maturesA) = (0, 0);
        }
        if (b.pendingA == 0 && b.pendingB != 0) {
            if (b.maturesB <= now_) b.matured += b.pendingB;
            else (b.pendingA, b.maturesA) = (b.pendingB, b.maturesB);
            (b.pendingB, b.maturesB) = (0, 0);
        }
    }

    /// @notice Adds a charge reported at `now_`: it joins B, whose window restarts.
    function add(Buckets memory b, uint256 amount, uint256 now_, uint256 window) internal pure {
        if (amount == 0) return;
        b.pendingB += amount;
        b.maturesB = now_ + window;
    }

    /// @notice Charges still inside their window (after `settle`).
    function unmatured(Buckets memory b) internal pure returns (uint256) {
        return b.pendingA + b.pendingB;
    }
}
