// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {LeaseMath} from "../../../src/libraries/LeaseMath.sol";
import {AutoTopUp, Lease, LeaseStatus, PullFailure} from "../../../src/types/BerthTypes.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract SetAutoTopUp_Unit_Test is BerthFixture {
    function test_WhenValid_StoresThePolicy() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        uint256 expiry = block.timestamp + 7 days;
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.AutoTopUpSet(leaseId, providerId, tenant, 5, 20, expiry, 1 hours, 6 hours);
        vm.prank(tenant);
        escrow.setAutoTopUp(leaseId, 5, 20, expiry, 1 hours, 6 hours);
        AutoTopUp memory p = escrow.autoTopUpOf(leaseId);
        assertEq(p.maxPerTopUp, 5, "per top-up");
        assertEq(p.maxTotal, 20, "total");
        assertEq(p.expiresAt, expiry, "expiry");
        assertEq(p.triggerRunway, 1 hours, "trigger");
        assertEq(p.targetRunway, 6 hours, "target");
        assertEq(p.pulled, 0, "nothing pulled");
    }

    function test_RevertWhen_CallerNotTenant() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotTenant.selector, leaseId, operator));
        escrow.setAutoTopUp(leaseId, 5, 20, block.timestamp + 1 days, 1 hours, 6 hours);
    }

    function test_RevertWhen_PerTopUpAboveTotal() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_InvalidAutoTopUp.selector);
        escrow.setAutoTopUp(leaseId, 21, 20, block.timestamp + 1 days, 1 hours, 6 hours);
    }

    function test_RevertWhen_TargetNotAboveTrigger() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_InvalidAutoTopUp.selector);
        escrow.setAutoTopUp(leaseId, 5, 20, block.timestamp + 1 days, 6 hours, 6 hours);
    }

    function test_RevertWhen_ExpiryNotInTheFuture() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_InvalidAutoTopUp.selector);
        escrow.setAutoTopUp(leaseId, 5, 20, block.timestamp, 1 hours, 6 hours);
    }

    function test_RevertGiven_Closing() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.startPrank(tenant);
        escrow.closeLease(leaseId);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Closing
            )
        );
        escrow.setAutoTopUp(leaseId, 5, 20, block.timestamp + 1 days, 1 hours, 6 hours);
        vm.stopPrank();
    }

    function test_WhenCleared_NoMoreTopUps() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.startPrank(tenant);
        escrow.setAutoTopUp(leaseId, 5, 20, block.timestamp + 1 days, 1 hours, 6 hours);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.AutoTopUpCleared(leaseId, providerId, tenant);
        escrow.clearAutoTopUp(leaseId);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NoAutoTopUp.selector, leaseId));
        escrow.clearAutoTopUp(leaseId);
        vm.stopPrank();
    }
}

abstract contract AutoTopUp_Unit_Test is BerthFixture {
    uint256 internal leaseId;

    function setUp() public override {
        super.setUp();
        leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        vm.prank(tenant);
        escrow.setAutoTopUp(
            leaseId,
            depositFor(10 hours),
            depositFor(25 hours),
            block.timestamp + 30 days,
            90 minutes,
            6 hours
        );
    }

    function test_WhenRunwayBelowTrigger_PullsWhatRestoresTheTarget() public {
        vm.warp(block.timestamp + 31 minutes); // runway 89 minutes
        Lease memory l = escrow.getLease(leaseId);
        uint256 expected = LeaseMath.topUpFor(l.billedUntil, l.balance, leaseRate(), block.timestamp, 6 hours);
        assertEq(escrow.autoTopUpDue(leaseId), expected, "due");
        uint256 before = token.balanceOf(tenant);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.AutoTopUpExecuted(leaseId, providerId, tenant, stranger, expected, expected);
        vm.prank(stranger);
        assertEq(escrow.autoTopUp(leaseId), expected, "pulled");
        assertEq(before - token.balanceOf(tenant), expected, "from the tenant");
        assertGe(escrow.runwayOf(leaseId), 6 hours, "target runway reached");
        assertLe(escrow.runwayOf(leaseId), 6 hours + 1, "and not beyond");
    }

    function test_WhenNeedAbovePerTopUpCap_PullsTheCap() public {
        vm.prank(tenant);
        escrow.setAutoTopUp(
            leaseId, depositFor(1 hours), depositFor(25 hours), block.timestamp + 30 days, 90 minutes, 6 hours
        );
        vm.warp(block.timestamp + 31 minutes);
        vm.prank(stranger);
        assertEq(escrow.autoTopUp(leaseId), depositFor(1 hours), "capped per top-up");
    }

    function test_WhenTotalCapNearlyUsed_PullsOnlyTheRest() public {
        vm.prank(tenant);
        escrow.setAutoTopUp(
            leaseId, depositFor(3 hours), depositFor(3 hours), block.timestamp + 30 days, 90 minutes, 6 hours
        );
        vm.warp(block.timestamp + 31 minutes);
        vm.prank(stranger);
        uint256 first = escrow.autoTopUp(leaseId);
        assertEq(first, depositFor(3 hours), "the whole total in one pull");
        vm.warp(block.timestamp + 4 hours);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_AutoTopUpCapReached.selector, leaseId, depositFor(3 hours)
            )
        );
        escrow.autoTopUp(leaseId);
    }

    function test_RevertWhen_RunwayAboveTrigger() public {
        vm.warp(block.timestamp + 29 minutes);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_RunwayAboveTrigger.selector, leaseId, escrow.runwayOf(leaseId), 90 minutes
            )
        );
        escrow.autoTopUp(leaseId);
    }

    function test_RevertWhen_Expired() public {
        uint256 expiry = escrow.autoTopUpOf(leaseId).expiresAt;
        vm.warp(expiry);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_AutoTopUpExpired.selector, leaseId, expiry));
        escrow.autoTopUp(leaseId);
    }

    function test_RevertGiven_NoPolicy() public {
        uint256 other = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NoAutoTopUp.selector, other));
        escrow.autoTopUp(other);
    }

    function test_RevertGiven_Pending() public {
        uint256 other = openLease(depositFor(MIN_OPEN_RUNWAY));
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_InvalidLeaseStatus.selector, other, LeaseStatus.Pending)
        );
        escrow.autoTopUp(other);
    }

    /// A refused pull is an event the tenant and the indexer see, not a silent revert.
    function test_WhenAllowanceMissing_EmitsAFailureAndMovesNothing() public {
        vm.prank(tenant);
        token.approve(address(escrow), 0);
        vm.warp(block.timestamp + 31 minutes);
        uint256 due = escrow.autoTopUpDue(leaseId);
        uint256 balance = escrow.getLease(leaseId).balance;
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.AutoTopUpFailed(leaseId, providerId, tenant, due, PullFailure.Allowance);
        vm.prank(stranger);
        assertEq(escrow.autoTopUp(leaseId), 0, "nothing pulled");
        assertEq(escrow.getLease(leaseId).balance, balance, "balance unchanged");
        assertEq(escrow.autoTopUpOf(leaseId).pulled, 0, "nothing counted");
    }

    function test_WhenBalanceMissing_EmitsAFailure() public {
        vm.warp(block.timestamp + 31 minutes);
        uint256 due = escrow.autoTopUpDue(leaseId);
        uint256 all = token.balanceOf(tenant);
        vm.prank(tenant);
        token.transfer(stranger, all);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.AutoTopUpFailed(leaseId, providerId, tenant, due, PullFailure.Balance);
        vm.prank(stranger);
        escrow.autoTopUp(leaseId);
    }

    function test_WhenSuspended_ResumesTheLease() public {
        warpToSuspendable(leaseId);
        vm.prank(operator);
        escrow.suspendLease(leaseId);
        vm.prank(operator); // the provider's keeper triggers it
        escrow.autoTopUp(leaseId);
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Active), "resumed");
    }
}

contract SetAutoTopUp6_Unit_Test is SetAutoTopUp_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract SetAutoTopUp18_Unit_Test is SetAutoTopUp_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract AutoTopUp6_Unit_Test is AutoTopUp_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract AutoTopUp18_Unit_Test is AutoTopUp_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
