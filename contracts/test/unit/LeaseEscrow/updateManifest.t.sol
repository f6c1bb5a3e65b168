// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {Lease, LeaseStatus} from "../../../src/types/BerthTypes.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract UpdateManifest_Unit_Test is BerthFixture {
    bytes32 internal constant NEW_HASH = keccak256("services: {web: {image: nginx:2}}");

    function test_WhenActive_EmitsTheNextVersionAndMovesNoMoney() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        reportFull(leaseId);
        Lease memory before = escrow.getLease(leaseId);
        uint256 held = token.balanceOf(address(escrow));
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.ManifestUpdated(leaseId, providerId, tenant, 1, NEW_HASH, "https://m/v1");
        vm.prank(tenant);
        escrow.updateManifest(leaseId, NEW_HASH, "https://m/v1");
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.ManifestUpdated(leaseId, providerId, tenant, 2, MANIFEST_HASH, "");
        vm.prank(tenant);
        escrow.updateManifest(leaseId, MANIFEST_HASH, "");
        Lease memory after_ = escrow.getLease(leaseId);
        assertEq(after_.manifestVersion, 2, "version");
        assertEq(after_.balance, before.balance, "balance unchanged");
        assertEq(after_.pending, before.pending, "pending unchanged");
        assertEq(after_.billedUntil, before.billedUntil, "billing continuous");
        assertEq(after_.cpuMillis, before.cpuMillis, "reservation unchanged");
        assertEq(token.balanceOf(address(escrow)), held, "no token moved");
    }

    function test_WhenSuspended_Updates() public {
        uint256 leaseId = openSuspended();
        vm.prank(tenant);
        escrow.updateManifest(leaseId, NEW_HASH, "");
        assertEq(escrow.getLease(leaseId).manifestVersion, 1, "version");
    }

    function test_RevertWhen_CallerNotTenant() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotTenant.selector, leaseId, operator));
        escrow.updateManifest(leaseId, NEW_HASH, "");
    }

    function test_RevertGiven_Pending() public {
        uint256 leaseId = openLease(depositFor(10 hours));
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Pending
            )
        );
        escrow.updateManifest(leaseId, NEW_HASH, "");
    }

    function test_RevertWhen_HashZero() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_EmptyManifestHash.selector);
        escrow.updateManifest(leaseId, bytes32(0), "");
    }
}

contract UpdateManifest6_Unit_Test is UpdateManifest_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract UpdateManifest18_Unit_Test is UpdateManifest_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
