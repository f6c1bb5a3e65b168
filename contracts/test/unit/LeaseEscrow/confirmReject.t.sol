// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {CloseReason, Lease, LeaseStatus, RejectReason} from "../../../src/types/BerthTypes.sol";
import {BlocklistToken} from "../../mocks/BlocklistToken.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract ConfirmLease_Unit_Test is BerthFixture {
    function test_WhenPending_StartsBilling() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        vm.warp(block.timestamp + 30);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseConfirmed(leaseId, providerId, tenant, "http://127.0.0.1:30080");
        vm.prank(operator);
        escrow.confirmLease(leaseId, "http://127.0.0.1:30080");
        Lease memory l = escrow.getLease(leaseId);
        assertEq(uint256(l.status), uint256(LeaseStatus.Active), "active");
        assertEq(l.billedUntil, block.timestamp, "billing starts at confirmation");
    }

    function test_RevertWhen_CallerNotOperator() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotOperator.selector, leaseId, stranger));
        escrow.confirmLease(leaseId, "http://x");
    }

    function test_RevertWhen_EndpointEmpty() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        vm.prank(operator);
        vm.expectRevert(Errors.LeaseEscrow_EmptyEndpoint.selector);
        escrow.confirmLease(leaseId, "");
    }

    function test_RevertGiven_Active() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active
            )
        );
        escrow.confirmLease(leaseId, "http://x");
    }

    function test_RevertGiven_UnknownLease() public {
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_UnknownLease.selector, 99));
        escrow.confirmLease(99, "http://x");
    }

    function test_WhenOperatorRotated_OnlyTheNewKeyConfirms() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        address newOperator = makeAddr("newOperator");
        vm.prank(providerOwner);
        registry.setOperator(providerId, newOperator);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotOperator.selector, leaseId, operator));
        escrow.confirmLease(leaseId, "http://x");
        vm.prank(newOperator);
        escrow.confirmLease(leaseId, "http://x");
    }
}

abstract contract RejectLease_Unit_Test is BerthFixture {
    function test_WhenPending_DepositBecomesWithdrawable() public {
        uint256 deposit = depositFor(3 hours);
        uint256 leaseId = openLease(deposit);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseRejected(leaseId, providerId, tenant, RejectReason.PolicyViolation);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseClosed(leaseId, providerId, tenant, CloseReason.Rejected, block.timestamp);
        vm.prank(operator);
        escrow.rejectLease(leaseId, RejectReason.PolicyViolation);
        Lease memory l = escrow.getLease(leaseId);
        assertEq(uint256(l.status), uint256(LeaseStatus.Rejected), "rejected");
        assertEq(escrow.refundableOf(leaseId), deposit, "refundable in full");
        assertEq(registry.getProvider(providerId).activeLeases, 0, "capacity released");
        uint256 before = token.balanceOf(tenant);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(tenant) - before, deposit, "full refund on withdraw");
    }

    function test_RevertWhen_CallerNotOperator() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotOperator.selector, leaseId, stranger));
        escrow.rejectLease(leaseId, RejectReason.Unspecified);
    }

    function test_RevertGiven_Active() public {
        uint256 leaseId = openConfirmed(depositFor(3 hours));
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active
            )
        );
        escrow.rejectLease(leaseId, RejectReason.Unspecified);
    }

    /// A token that refuses transfers to the tenant cannot pin the provider's capacity.
    function test_WhenTenantCannotReceive_RejectStillReleasesCapacity() public {
        BlocklistToken blt = new BlocklistToken();
        vm.prank(admin);
        registry.setPaymentToken(address(blt), true);
        stakeToken.mint(stranger, 100e18);
        vm.startPrank(stranger);
        stakeToken.approve(address(registry), 100e18);
        uint256 p = registry.register(
            operator, address(blt), "https://b", "", [uint32(1000), uint32(1000), uint32(1)], prices(), 100e18
        );
        vm.stopPrank();
        uint256 deposit = depositFor(3 hours);
        blt.mint(tenant, deposit);
        vm.startPrank(tenant);
        blt.approve(address(escrow), deposit);
        uint256 leaseId = escrow.openLease(p, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
        vm.stopPrank();
        blt.setBlocked(tenant, true);
        vm.prank(operator);
        escrow.rejectLease(leaseId, RejectReason.CapacityUnavailable);
        assertEq(registry.getProvider(p).activeLeases, 0, "capacity released");
        assertEq(escrow.refundableOf(leaseId), deposit, "the deposit waits for the tenant");
    }
}

contract ConfirmLease6_Unit_Test is ConfirmLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract ConfirmLease18_Unit_Test is ConfirmLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract RejectLease6_Unit_Test is RejectLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract RejectLease18_Unit_Test is RejectLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
