// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract Claim_Unit_Test is BerthFixture {
    function test_WhenMatured_PaysTheOwner() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.prank(operator);
        assertEq(escrow.claim(leaseId), 0, "nothing matured yet");
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        assertEq(escrow.claimableOf(leaseId), charge, "matured");
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.ChargesClaimed(leaseId, providerId, providerOwner, charge);
        vm.prank(operator);
        assertEq(escrow.claim(leaseId), charge, "claimed by operator");
        assertEq(token.balanceOf(providerOwner), charge, "paid to the owner, not the operator");
        assertEq(escrow.claimableOf(leaseId), 0, "nothing left");
    }

    function test_WhenOwnerCalls_Claims() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(providerOwner);
        assertEq(escrow.claim(leaseId), charge, "owner claims");
    }

    function test_RevertWhen_CallerStranger() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_NotProviderAgent.selector, leaseId, stranger)
        );
        escrow.claim(leaseId);
    }

    function test_WhenManyLeases_OneTransfer() public {
        uint256 a = openConfirmed(depositFor(10 hours));
        uint256 b = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 total = reportFull(a) + reportFull(b);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        uint256[] memory ids = new uint256[](2);
        (ids[0], ids[1]) = (a, b);
        vm.prank(operator);
        assertEq(escrow.claimMany(ids), total, "both leases claimed");
        assertEq(token.balanceOf(providerOwner), total, "paid once");
    }

    function test_RevertWhen_ClaimManyMixesProviders() public {
        uint256 otherProvider = registerProvider(stranger, stranger);
        vm.prank(tenant);
        uint256 other = escrow.openLease(
            otherProvider, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max
        );
        uint256 mine = openLease(depositFor(3 hours));
        uint256[] memory ids = new uint256[](2);
        (ids[0], ids[1]) = (mine, other);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_MixedProviders.selector, other, otherProvider, providerId
            )
        );
        escrow.claimMany(ids);
    }

    function test_RevertWhen_ClaimManyEmpty() public {
        vm.prank(operator);
        vm.expectRevert(Errors.LeaseEscrow_EmptyBatch.selector);
        escrow.claimMany(new uint256[](0));
    }

    function test_WhenReportsFrequent_ChargesStillMatureWithinTwoWindows() public {
        uint256 leaseId = openConfirmed(depositFor(100 hours));
        uint256 start = block.timestamp;
        uint256 t = start;
        uint256 first;
        for (uint256 i; i < 48; ++i) {
            t += 1 hours; // a local clock: the optimizer may reuse one TIMESTAMP read per call
            vm.warp(t);
            uint256 c = reportFull(leaseId);
            if (i == 0) first = c;
        }
        assertGe(escrow.claimableOf(leaseId), first, "first charge matured");
        vm.warp(t + 2 * CHALLENGE_WINDOW);
        assertEq(escrow.pendingOf(leaseId), 0, "everything matured two windows after the last report");
    }
}

abstract contract Dispute_Unit_Test is BerthFixture {
    function test_WhenPending_FreezesAndTheArbiterSplits() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.ChargesDisputed(leaseId, providerId, tenant, charge);
        vm.prank(tenant);
        escrow.dispute(leaseId);
        assertEq(escrow.pendingOf(leaseId), 0, "no longer pending");
        assertEq(escrow.getLease(leaseId).disputed, charge, "frozen");
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        assertEq(escrow.claimableOf(leaseId), 0, "a frozen charge never matures on its own");
        uint256 toProvider = charge / 3;
        uint256 balance = escrow.getLease(leaseId).balance;
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.DisputeResolved(leaseId, providerId, tenant, toProvider, charge - toProvider);
        vm.prank(arbiter);
        escrow.resolveDispute(leaseId, toProvider);
        assertEq(escrow.claimableOf(leaseId), toProvider, "award claimable");
        assertEq(escrow.getLease(leaseId).balance - balance, charge - toProvider, "rest back to the balance");
    }

    function test_RevertWhen_NothingPending() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NothingToDispute.selector, leaseId));
        escrow.dispute(leaseId);
    }

    function test_RevertWhen_EverythingMatured() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        reportFull(leaseId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NothingToDispute.selector, leaseId));
        escrow.dispute(leaseId);
    }

    function test_RevertWhen_CallerNotTenant() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotTenant.selector, leaseId, stranger));
        escrow.dispute(leaseId);
    }

    function test_RevertWhen_ResolverNotArbiter() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotArbiter.selector, stranger));
        escrow.resolveDispute(leaseId, 0);
    }

    function test_RevertGiven_NoDispute() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(arbiter);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NoDispute.selector, leaseId));
        escrow.resolveDispute(leaseId, 0);
    }

    function test_RevertWhen_AwardAboveDisputed() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.prank(tenant);
        escrow.dispute(leaseId);
        vm.prank(arbiter);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_AwardExceedsDisputed.selector, leaseId, charge + 1, charge
            )
        );
        escrow.resolveDispute(leaseId, charge + 1);
    }
}

contract Claim6_Unit_Test is Claim_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract Claim18_Unit_Test is Claim_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract Dispute6_Unit_Test is Dispute_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract Dispute18_Unit_Test is Dispute_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
