// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ChargeBuckets} from "../../../src/libraries/ChargeBuckets.sol";
import {Test} from "../../utils/Test.sol";

contract ChargeBuckets_Unit_Test is Test {
    using ChargeBuckets for ChargeBuckets.Buckets;

    uint256 internal constant WINDOW = 1 days;

    function test_add_GoesToTheNewerBucket() public pure {
        ChargeBuckets.Buckets memory b;
        b.add(5, 100, WINDOW);
        assertEq(b.pendingB, 5, "in B");
        assertEq(b.maturesB, 100 + WINDOW, "window from the report");
        assertEq(b.unmatured(), 5, "unmatured");
    }

    function test_settle_WhenAEmpty_MovesBIntoA() public pure {
        ChargeBuckets.Buckets memory b;
        b.add(5, 100, WINDOW);
        b.settle(200);
        assertEq(b.pendingA, 5, "promoted");
        assertEq(b.maturesA, 100 + WINDOW, "keeps its maturity");
        assertEq(b.pendingB, 0, "B empty");
    }

    function test_settle_WhenMatured_MovesToMatured() public pure {
        ChargeBuckets.Buckets memory b;
        b.add(5, 100, WINDOW);
        b.settle(200);
        b.add(7, 300, WINDOW);
        b.settle(100 + WINDOW);
        assertEq(b.matured, 5, "A matured");
        assertEq(b.pendingA, 7, "B promoted");
    }

    /// Whatever the report times, every charge matures at most two windows after its report.
    function testFuzz_maturesWithinTwoWindows(uint256[8] memory gaps) public pure {
        ChargeBuckets.Buckets memory b;
        uint256 t = 1000;
        uint256 total;
        for (uint256 i; i < gaps.length; ++i) {
            t += bound(gaps[i], 1, 3 days);
            b.settle(t);
            b.add(i + 1, t, WINDOW);
            total += i + 1;
        }
        b.settle(t + 2 * WINDOW);
        assertEq(b.matured, total, "all matured two windows after the last report");
        assertEq(b.unmatured(), 0, "nothing pending");
    }
}
