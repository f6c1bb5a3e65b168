// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {CloseReason, Lease, LeaseStatus} from "../../../src/types/BerthTypes.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract SuspendLease_Unit_Test is BerthFixture {
    function test_WhenRunwayBelowMinimum_Suspends() public {
        uint256 leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        warpToSuspendable(leaseId);
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseSuspended(
            leaseId, providerId, tenant, depletion, block.timestamp + GRACE_PERIOD
        );
        vm.prank(operator);
        escrow.suspendLease(leaseId);
        Lease memory l = escrow.getLease(leaseId);
        assertEq(uint256(l.status), uint256(LeaseStatus.Suspended), "suspended");
        assertEq(l.suspendedAt, block.timestamp, "since now");
        assertEq(registry.getProvider(providerId).activeLeases, 1, "reservation kept");
    }

    function test_RevertWhen_RunwayAboveMinimum() public {
        uint256 leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        warpToSuspendable(leaseId);
        vm.warp(block.timestamp - 1);
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_RunwayAboveMinimum.selector,
                leaseId,
                depletion,
                block.timestamp + MIN_RUNWAY
            )
        );
        escrow.suspendLease(leaseId);
    }

    function test_RevertWhen_CallerNotOperator() public {
        uint256 leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        warpToSuspendable(leaseId);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotOperator.selector, leaseId, tenant));
        escrow.suspendLease(leaseId);
    }

    function test_RevertGiven_Pending() public {
        uint256 leaseId = openLease(depositFor(MIN_OPEN_RUNWAY));
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Pending
            )
        );
        escrow.suspendLease(leaseId);
    }

    function test_RevertGiven_PreviousSuspensionNotBilled() public {
        uint256 leaseId = openSuspended();
        uint256 amount = depositFor(MIN_RUNWAY + 60);
        vm.warp(block.timestamp + 60);
        vm.prank(tenant);
        escrow.topUp(leaseId, amount);
        uint256 resumedAt = block.timestamp;
        warpToSuspendable(leaseId);
        Lease memory l = escrow.getLease(leaseId);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_IdlePeriodUnbilled.selector, leaseId, l.billedUntil, resumedAt
            )
        );
        escrow.suspendLease(leaseId);
    }
}

abstract contract TerminateLease_Unit_Test is BerthFixture {
    function test_WhenGraceOver_Terminates() public {
        uint256 deposit = depositFor(MIN_OPEN_RUNWAY);
        uint256 leaseId = openSuspended();
        vm.warp(block.timestamp + GRACE_PERIOD);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseClosed(leaseId, providerId, tenant, CloseReason.Exhausted, block.timestamp);
        vm.prank(operator);
        escrow.terminateLease(leaseId);
        assertEq(registry.getProvider(providerId).activeLeases, 0, "capacity released");
        Lease memory l = escrow.getLease(leaseId);
        uint64 running = uint64(l.closedAt - GRACE_PERIOD - l.billedUntil);
        uint256 charge = report(leaseId, l.closedAt, CPU * running, MEM * running, STO * running);
        assertEq(
            charge,
            expectedCharge(l.closedAt - l.billedUntil, CPU * running, MEM * running, STO * running),
            "units for the running time, the base rate through the grace period"
        );
        uint256 before = token.balanceOf(tenant);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(tenant) - before, deposit - charge, "tenant keeps the rest");
    }

    function test_RevertWhen_GraceNotOver() public {
        uint256 leaseId = openSuspended();
        vm.warp(block.timestamp + GRACE_PERIOD - 1);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_GracePeriodNotOver.selector, leaseId, block.timestamp + 1
            )
        );
        escrow.terminateLease(leaseId);
    }

    /// A lease opened with the least deposit cannot be terminated a second after confirmation.
    function test_RevertGiven_ActiveWithMinimumDeposit() public {
        uint256 leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        vm.warp(block.timestamp + 1);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active
            )
        );
        escrow.terminateLease(leaseId);
    }

    function test_RevertWhen_CallerNotOperator() public {
        uint256 leaseId = openSuspended();
        vm.warp(block.timestamp + GRACE_PERIOD);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotOperator.selector, leaseId, tenant));
        escrow.terminateLease(leaseId);
    }
}

contract SuspendLease6_Unit_Test is SuspendLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract SuspendLease18_Unit_Test is SuspendLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract TerminateLease6_Unit_Test is TerminateLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract TerminateLease18_Unit_Test is TerminateLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
