// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../src/libraries/Errors.sol";
import {Lease, PRICE_SCALE} from "../../src/types/BerthTypes.sol";
import {BerthFixture} from "../utils/BerthFixture.sol";
import {vm} from "../utils/Vm.sol";

/// @notice Property tests over random periods, units, deposits and rulings.
abstract contract LeaseEscrowFuzzTest is BerthFixture {
    /// A report within the caps is charged exactly the formula, never above max rate x period.
    function testFuzz_chargeFollowsFormulaAndRateCap(uint256 period, uint256 cpu, uint256 mem, uint256 sto)
        public
    {
        period = bound(period, 1, 30 days);
        cpu = bound(cpu, 0, CPU * period);
        mem = bound(mem, 0, MEM * period);
        sto = bound(sto, 0, STO * period);
        uint256 leaseId = openConfirmed(depositFor(365 days));
        uint40 t = uint40(block.timestamp + period);
        vm.warp(t);
        uint256 charge = report(leaseId, t, uint64(cpu), uint64(mem), uint64(sto));
        assertEq(charge, expectedCharge(period, cpu, mem, sto), "formula");
        assertLe(charge, leaseRate() * period / PRICE_SCALE, "never above max rate x period");
    }

    /// Units above reservation x period are refused for every resource.
    function testFuzz_unitsAboveCapRevert(uint256 period, uint256 excess, uint8 resource) public {
        period = bound(period, 1, 30 days);
        excess = bound(excess, 1, 1e9);
        resource = uint8(bound(resource, 0, 2));
        uint256 leaseId = openConfirmed(depositFor(365 days));
        uint40 from = uint40(block.timestamp);
        vm.warp(from + period);
        uint64[3] memory units;
        uint256 cap = (resource == 0 ? CPU : resource == 1 ? MEM : STO) * period;
        units[resource] = uint64(cap + excess);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_UnitsExceedReservation.selector, leaseId, resource, cap + excess, cap
            )
        );
        escrow.reportUsage(leaseId, 1, from, uint40(from + period), units[0], units[1], units[2], 0);
    }

    /// A lease opens exactly when the deposit covers the minimum opening runway.
    function testFuzz_openRequiresMinimumRunway(uint256 deposit) public {
        uint256 required = depositFor(MIN_OPEN_RUNWAY);
        deposit = bound(deposit, 1, required * 3);
        vm.prank(tenant);
        if (deposit < required) {
            vm.expectRevert(
                abi.encodeWithSelector(Errors.LeaseEscrow_InsufficientDeposit.selector, deposit, required)
            );
        }
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
    }

    /// Suspension is allowed exactly when the runway left is below the minimum.
    function testFuzz_suspendOnlyBelowMinimumRunway(uint256 funded, uint256 elapsed) public {
        funded = bound(funded, MIN_OPEN_RUNWAY, 30 days);
        elapsed = bound(elapsed, 0, 60 days);
        uint256 leaseId = openConfirmed(depositFor(funded));
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        vm.warp(block.timestamp + elapsed);
        vm.prank(operator);
        if (depletion >= block.timestamp + MIN_RUNWAY) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    Errors.LeaseEscrow_RunwayAboveMinimum.selector,
                    leaseId,
                    depletion,
                    block.timestamp + MIN_RUNWAY
                )
            );
        }
        escrow.suspendLease(leaseId);
    }

    /// Whatever happens, the deposit and top-ups split exactly between provider and tenant.
    function testFuzz_fullLifecycleConserves(
        uint256 deposit,
        uint256 topUp,
        uint256 p1,
        uint256 p2,
        uint256 load
    ) public {
        deposit = bound(deposit, depositFor(MIN_OPEN_RUNWAY), depositFor(10 days));
        topUp = bound(topUp, 0, depositFor(10 days));
        p1 = bound(p1, 1, 5 days);
        p2 = bound(p2, 1, 5 days);
        load = bound(load, 0, 100);
        uint256 tenantBefore = token.balanceOf(tenant);
        uint256 leaseId = openConfirmed(deposit);
        uint256 confirmedAt = block.timestamp;
        if (topUp > 0) {
            vm.prank(tenant);
            escrow.topUp(leaseId, topUp);
        }
        uint256 t = block.timestamp + p1;
        vm.warp(t);
        uint256 charged = report(leaseId, uint40(t), uint64(CPU * p1 * load / 100), uint64(MEM * p1), 0);
        t += p2;
        vm.warp(t);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        charged += reportFull(leaseId);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        t += 2 * CHALLENGE_WINDOW;
        vm.warp(t);
        vm.prank(operator);
        uint256 paid = escrow.claim(leaseId);
        assertEq(paid, charged, "provider paid exactly what was charged");
        assertEq(tenantBefore - token.balanceOf(tenant), charged, "tenant paid only the charges");
        assertEq(token.balanceOf(address(escrow)), 0, "escrow empty");
        assertLe(charged, leaseRate() * (t - confirmedAt) / PRICE_SCALE, "rate cap");
    }

    /// A dispute ruling splits the frozen amount exactly.
    function testFuzz_disputeRulingSplitsExactly(uint256 period, uint256 award) public {
        period = bound(period, 1, 1 days);
        uint256 leaseId = openConfirmed(depositFor(10 days));
        vm.warp(block.timestamp + period);
        uint256 charge = reportFull(leaseId);
        vm.assume(charge > 0);
        award = bound(award, 0, charge);
        vm.prank(tenant);
        escrow.dispute(leaseId);
        uint256 before = escrow.getLease(leaseId).balance;
        vm.prank(arbiter);
        escrow.resolveDispute(leaseId, award);
        assertEq(escrow.claimableOf(leaseId), award, "award claimable");
        assertEq(escrow.getLease(leaseId).balance - before, charge - award, "rest back in the balance");
    }

    /// An auto top-up pulls what restores the target runway, never above either cap.
    function testFuzz_autoTopUpWithinCaps(uint256 perTopUp, uint256 total, uint256 elapsed) public {
        perTopUp = bound(perTopUp, 1, depositFor(10 days));
        total = bound(total, perTopUp, depositFor(30 days));
        elapsed = bound(elapsed, MIN_OPEN_RUNWAY - MIN_RUNWAY, MIN_OPEN_RUNWAY + GRACE_PERIOD);
        uint256 leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        vm.prank(tenant);
        escrow.setAutoTopUp(leaseId, perTopUp, total, block.timestamp + 30 days, 90 minutes, 1 days);
        vm.warp(block.timestamp + elapsed);
        uint256 due = escrow.autoTopUpDue(leaseId);
        uint256 balanceBefore = escrow.getLease(leaseId).balance;
        uint256 tenantBefore = token.balanceOf(tenant);
        vm.prank(stranger);
        uint256 pulled = escrow.autoTopUp(leaseId);
        assertEq(pulled, due, "pulls what autoTopUpDue said");
        assertLe(pulled, perTopUp, "per top-up cap");
        assertLe(escrow.autoTopUpOf(leaseId).pulled, total, "total cap");
        assertEq(tenantBefore - token.balanceOf(tenant), pulled, "from the tenant");
        assertEq(escrow.getLease(leaseId).balance - balanceBefore, pulled, "into this lease");
        if (pulled < perTopUp) assertGe(escrow.runwayOf(leaseId), 1 days, "target reached when uncapped");
    }
}

contract LeaseEscrowFuzz6DecimalsTest is LeaseEscrowFuzzTest {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract LeaseEscrowFuzz18DecimalsTest is LeaseEscrowFuzzTest {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
