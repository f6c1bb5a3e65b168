// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {CloseReason, LeaseStatus} from "../../../src/types/BerthTypes.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract CancelLease_Unit_Test is BerthFixture {
    function test_WhenTimeoutPassed_DepositBecomesWithdrawable() public {
        uint256 deposit = depositFor(3 hours);
        uint256 leaseId = openLease(deposit);
        assertEq(escrow.refundableOf(leaseId), 0, "not yet refundable");
        vm.warp(block.timestamp + ACCEPT_TIMEOUT);
        assertEq(escrow.refundableOf(leaseId), deposit, "refundable after timeout");
        vm.prank(tenant);
        escrow.cancelLease(leaseId);
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Cancelled), "cancelled");
        assertEq(uint256(escrow.getLease(leaseId).closeReason), uint256(CloseReason.Cancelled), "reason");
        uint256 before = token.balanceOf(tenant);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(tenant) - before, deposit, "full refund");
    }

    function test_RevertWhen_TimeoutNotReached() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_AcceptTimeoutNotReached.selector, leaseId, block.timestamp + ACCEPT_TIMEOUT
            )
        );
        escrow.cancelLease(leaseId);
    }

    function test_RevertWhen_CallerNotTenant() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotTenant.selector, leaseId, stranger));
        escrow.cancelLease(leaseId);
    }

    function test_RevertGiven_Active() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active
            )
        );
        escrow.cancelLease(leaseId);
    }
}

abstract contract TopUp_Unit_Test is BerthFixture {
    function test_WhenAnyonePays_BalanceGrows() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        token.mint(stranger, 5 * unit());
        vm.startPrank(stranger);
        token.approve(address(escrow), 5 * unit());
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseToppedUp(
            leaseId, providerId, tenant, stranger, 5 * unit(), depositFor(3 hours) + 5 * unit()
        );
        escrow.topUp(leaseId, 5 * unit());
        vm.stopPrank();
        assertEq(escrow.getLease(leaseId).balance, depositFor(3 hours) + 5 * unit(), "balance grew");
    }

    function test_RevertWhen_AmountZero() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_ZeroAmount.selector);
        escrow.topUp(leaseId, 0);
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
        escrow.topUp(leaseId, 1);
        vm.stopPrank();
    }

    function test_RevertGiven_UnknownLease() public {
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_UnknownLease.selector, 42));
        escrow.topUp(42, 1);
    }

    /// An amount near 2^128 is refused with an error, not an arithmetic panic.
    function test_RevertWhen_AmountOverflowsTheBalance() public {
        uint256 deposit = depositFor(3 hours);
        uint256 leaseId = openConfirmed(deposit);
        uint256 amount = 2 ** 128 - 1;
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_BalanceOverflow.selector, leaseId, deposit, amount)
        );
        escrow.topUp(leaseId, amount);
    }

    function test_WhenSuspendedAndRunwayRestored_Resumes() public {
        uint256 leaseId = openSuspended();
        uint256 amount = depositFor(MIN_RUNWAY + 10 minutes);
        vm.prank(tenant);
        escrow.topUp(leaseId, amount);
        assertGe(escrow.depletionTimeOf(leaseId), block.timestamp + MIN_RUNWAY, "minimum runway restored");
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Active), "resumed");
        assertEq(escrow.getLease(leaseId).resumedAt, block.timestamp, "the suspension ended now");
    }

    function test_WhenSuspendedAndRunwayStillShort_StaysSuspended() public {
        uint256 leaseId = openSuspended();
        vm.prank(tenant);
        escrow.topUp(leaseId, 1); // less than a second of runway
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Suspended), "still suspended");
    }
}

contract CancelLease6_Unit_Test is CancelLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract CancelLease18_Unit_Test is CancelLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract TopUp6_Unit_Test is TopUp_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract TopUp18_Unit_Test is TopUp_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
