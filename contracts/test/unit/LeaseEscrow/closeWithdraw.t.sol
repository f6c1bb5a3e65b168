// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {CloseReason, LeaseStatus, RejectReason} from "../../../src/types/BerthTypes.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract CloseLease_Unit_Test is BerthFixture {
    function test_WhenActive_EndsBillingAndReleasesCapacity() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseClosed(leaseId, providerId, tenant, CloseReason.TenantClosed, block.timestamp);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        assertEq(registry.getProvider(providerId).activeLeases, 0, "capacity released at close");
        assertEq(escrow.getLease(leaseId).closedAt, block.timestamp, "closed now");
    }

    function test_WhenSuspended_Closes() public {
        uint256 leaseId = openSuspended();
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Closing), "closing");
    }

    function test_RevertGiven_Pending() public {
        uint256 leaseId = openLease(depositFor(10 hours));
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Pending
            )
        );
        escrow.closeLease(leaseId);
    }

    function test_RevertWhen_CallerNotTenant() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotTenant.selector, leaseId, stranger));
        escrow.closeLease(leaseId);
    }
}

abstract contract Withdraw_Unit_Test is BerthFixture {
    function test_WhenFinalReportIn_PaysTheRest() public {
        uint256 deposit = depositFor(10 hours);
        uint256 leaseId = openConfirmed(deposit);
        vm.warp(block.timestamp + 600);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        uint256 charge = reportFull(leaseId); // final report up to closedAt
        assertEq(escrow.refundableOf(leaseId), deposit - charge, "refundable once the final report is in");
        uint256 before = token.balanceOf(tenant);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseWithdrawn(leaseId, providerId, tenant, deposit - charge);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(tenant) - before, deposit - charge, "unearned rest refunded");
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Closed), "closed");
    }

    function test_RevertWhen_FinalReportWindowOpen() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_FinalReportWindowOpen.selector,
                leaseId,
                block.timestamp + FINAL_REPORT_WINDOW
            )
        );
        escrow.withdraw(leaseId);
    }

    function test_WhenWindowOverWithoutReport_PaysEverything() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        vm.warp(block.timestamp + FINAL_REPORT_WINDOW + 1);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(address(escrow)), 0, "provider that never reported gets nothing");
    }

    function test_RevertGiven_AlreadyWithdrawn() public {
        uint256 leaseId = openLease(depositFor(10 hours));
        vm.prank(operator);
        escrow.rejectLease(leaseId, RejectReason.Unspecified);
        vm.startPrank(tenant);
        escrow.withdraw(leaseId);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NothingToWithdraw.selector, leaseId));
        escrow.withdraw(leaseId);
        vm.stopPrank();
    }

    function test_RevertGiven_Active() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active
            )
        );
        escrow.withdraw(leaseId);
    }

    function test_RevertWhen_CallerNotTenant() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        vm.warp(block.timestamp + FINAL_REPORT_WINDOW + 1);
        vm.prank(providerOwner);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotTenant.selector, leaseId, providerOwner));
        escrow.withdraw(leaseId);
    }
}

contract CloseLease6_Unit_Test is CloseLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract CloseLease18_Unit_Test is CloseLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract Withdraw6_Unit_Test is Withdraw_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract Withdraw18_Unit_Test is Withdraw_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
