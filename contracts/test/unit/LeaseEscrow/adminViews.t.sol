// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

import {LeaseEscrow} from "../../../src/LeaseEscrow.sol";
import {IProviderRegistry} from "../../../src/interfaces/IProviderRegistry.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {Lease, LeaseStatus} from "../../../src/types/BerthTypes.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract Admin_Unit_Test is BerthFixture {
    function test_WhenPaused_ExitsStillWork() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        reportFull(leaseId);
        vm.prank(admin);
        escrow.pause();
        vm.startPrank(tenant);
        escrow.topUp(leaseId, 1);
        escrow.updateManifest(leaseId, keccak256("v2"), "");
        escrow.closeLease(leaseId);
        vm.stopPrank();
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(operator);
        assertGt(escrow.claim(leaseId), 0, "claims work while paused");
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(address(escrow)), 0, "all funds out while paused");
        vm.prank(admin);
        escrow.unpause();
        openLease(depositFor(3 hours));
    }

    function test_RevertWhen_StrangerPauses() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        escrow.pause();
    }

    function test_WhenOwnershipHandedOver_NewOwnerMustAccept() public {
        vm.prank(admin);
        escrow.transferOwnership(stranger);
        assertEq(escrow.owner(), admin, "still the admin until accepted");
        vm.prank(stranger);
        escrow.acceptOwnership();
        assertEq(escrow.owner(), stranger, "handed over");
    }

    function test_RevertWhen_StrangerSyncsAProvider() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotRegistry.selector, stranger));
        escrow.syncProvider(providerId, stranger, address(token));
    }

    function test_RevertWhen_ArbiterZero() public {
        vm.expectRevert(Errors.LeaseEscrow_ZeroAddress.selector);
        new LeaseEscrow(admin, registry, address(0), timing());
    }

    function test_RevertWhen_RegistryZero() public {
        vm.expectRevert(Errors.LeaseEscrow_ZeroAddress.selector);
        new LeaseEscrow(admin, IProviderRegistry(address(0)), arbiter, timing());
    }

    function test_RevertWhen_WindowTooLong() public {
        uint256[6] memory t = timing();
        t[1] = escrow.MAX_WINDOW() + 1;
        vm.expectRevert(Errors.LeaseEscrow_WindowTooLong.selector);
        new LeaseEscrow(admin, registry, arbiter, t);
    }

    function test_RevertWhen_MinRunwayBelowGrace() public {
        uint256[6] memory t = timing();
        t[4] = MIN_RUNWAY + 1;
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_RunwayBelowGrace.selector, MIN_RUNWAY, MIN_RUNWAY + 1)
        );
        new LeaseEscrow(admin, registry, arbiter, t);
    }

    function test_RevertWhen_OpenRunwayNotAboveMinimum() public {
        uint256[6] memory t = timing();
        t[5] = MIN_RUNWAY;
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_OpenRunwayTooShort.selector, MIN_RUNWAY, MIN_RUNWAY)
        );
        new LeaseEscrow(admin, registry, arbiter, t);
    }
}

abstract contract Views_Unit_Test is BerthFixture {
    function test_WhenLeaseUnknown_ReadsAsNone() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_UnknownLease.selector, 5));
        escrow.claimableOf(5);
        assertEq(uint256(escrow.getLease(5).status), uint256(LeaseStatus.None), "unknown lease reads as None");
    }

    function test_WhenRunning_DepletionAndRunwayShrink() public {
        uint256 leaseId = openLease(depositFor(3 hours));
        assertEq(escrow.depletionTimeOf(leaseId), block.timestamp + 3 hours, "pending: as if confirmed now");
        vm.prank(operator);
        escrow.confirmLease(leaseId, "http://x");
        vm.warp(block.timestamp + 600);
        reportFull(leaseId);
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        assertLe(depletion, block.timestamp + 3 hours - 600 + 1, "runway shrinks with charges");
        assertGe(depletion + 1, block.timestamp + 3 hours - 600, "by the charged time");
        assertEq(escrow.runwayOf(leaseId), depletion - block.timestamp, "runway from now");
        Lease memory l = escrow.getLease(leaseId);
        assertEq(l.depletionTime, depletion, "getLease shows it");
        assertEq(l.pending, escrow.pendingOf(leaseId), "pending shown");
        assertEq(l.createdAt, 0, "opening time only while pending");
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        assertEq(escrow.depletionTimeOf(leaseId), block.timestamp, "closed: its end");
        assertEq(escrow.runwayOf(leaseId), 0, "no runway once closed");
    }
}

contract Admin6_Unit_Test is Admin_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract Admin18_Unit_Test is Admin_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract Views6_Unit_Test is Views_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract Views18_Unit_Test is Views_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
