// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseMath} from "../../../src/libraries/LeaseMath.sol";
import {PRICE_SCALE, Prices} from "../../../src/types/BerthTypes.sol";
import {Test} from "../../utils/Test.sol";

contract LeaseMath_Unit_Test is Test {
    function test_rate_SumsBaseAndReservationTimesPrices() public pure {
        Prices memory p = Prices(10, 2, 3, 5);
        assertEq(LeaseMath.rate(p, 100, 10, 1), 10 + 200 + 30 + 5, "rate");
    }

    function test_charge_RoundsDown() public pure {
        Prices memory p = Prices(uint128(PRICE_SCALE / 2), 0, 0, 0);
        assertEq(LeaseMath.charge(p, 3, 0, 0, 0), 1, "1.5 base units round down to 1");
    }

    function test_depletionTime_WhenRateZero_Never() public pure {
        assertEq(LeaseMath.depletionTime(100, 5, 0), LeaseMath.NEVER, "never");
    }

    function testFuzz_costOf_CoversTheRunway(uint256 runway, uint256 rate_) public pure {
        runway = bound(runway, 0, 365 days);
        rate_ = bound(rate_, 1, 1e30);
        uint256 cost = LeaseMath.costOf(runway, rate_);
        assertGe(LeaseMath.depletionTime(0, cost, rate_), runway, "what it costs buys at least the runway");
        if (cost > 0) {
            assertLt(LeaseMath.depletionTime(0, cost - 1, rate_), runway, "and one unit less does not");
        }
    }

    function testFuzz_runningSeconds_NeverMoreThanThePeriod(
        uint32 from,
        uint32 len,
        uint32 idleFrom,
        uint32 idleUntil
    ) public pure {
        uint256 to = uint256(from) + len;
        uint256 running = LeaseMath.runningSeconds(from, to, idleFrom, idleUntil);
        assertLe(running, len, "bounded by the period");
        if (idleFrom == 0) assertEq(running, len, "no idle interval: all of it");
    }

    function test_runningSeconds_WhileStillIdle_OnlyBeforeTheSuspension() public pure {
        assertEq(LeaseMath.runningSeconds(100, 200, 150, 0), 50, "idle from 150 on");
        assertEq(LeaseMath.runningSeconds(160, 200, 150, 0), 0, "all idle");
    }

    function test_runningSeconds_AfterResumption_OutsideTheInterval() public pure {
        assertEq(LeaseMath.runningSeconds(100, 200, 120, 180), 40, "20 before, 20 after");
    }

    function testFuzz_topUpFor_ReachesTheTarget(uint256 balance, uint256 rate_, uint256 target) public pure {
        balance = bound(balance, 0, 1e24);
        rate_ = bound(rate_, 1, 1e20);
        target = bound(target, 1, 30 days);
        uint256 amount = LeaseMath.topUpFor(1000, balance, rate_, 2000, target);
        assertGe(LeaseMath.depletionTime(1000, balance + amount, rate_), 2000 + target, "target reached");
        if (amount > 0) {
            assertLt(LeaseMath.depletionTime(1000, balance + amount - 1, rate_), 2000 + target, "and no more");
        }
    }
}
