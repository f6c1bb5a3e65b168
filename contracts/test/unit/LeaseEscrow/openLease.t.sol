// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {Lease, LeaseStatus, ProviderStatus, Resource} from "../../../src/types/BerthTypes.sol";
import {FeeOnTransferToken} from "../../mocks/FeeOnTransferToken.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract OpenLease_Unit_Test is BerthFixture {
    function test_WhenValid_StoresLeaseAndPullsDeposit() public {
        uint256 deposit = depositFor(MIN_OPEN_RUNWAY);
        uint256 before = token.balanceOf(tenant);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseOpened(
            1,
            providerId,
            tenant,
            0,
            CPU,
            MEM,
            STO,
            MANIFEST_HASH,
            "https://m.example/x.yaml",
            deposit,
            leaseRate()
        );
        vm.prank(tenant);
        uint256 leaseId = escrow.openLease(
            providerId, CPU, MEM, STO, MANIFEST_HASH, "https://m.example/x.yaml", deposit, leaseRate()
        );
        Lease memory l = escrow.getLease(leaseId);
        assertEq(leaseId, 1, "first lease id");
        assertEq(l.tenant, tenant, "tenant");
        assertEq(l.providerId, providerId, "provider");
        assertEq(uint256(l.status), uint256(LeaseStatus.Pending), "pending");
        assertEq(l.balance, deposit, "balance");
        assertEq(l.createdAt, block.timestamp, "created");
        assertEq(l.cpuMillis, CPU, "cpu");
        assertEq(l.memoryMiB, MEM, "memory");
        assertEq(l.storageGiB, STO, "storage");
        assertEq(l.maxRate, leaseRate(), "max rate in the view");
        assertEq(before - token.balanceOf(tenant), deposit, "deposit pulled");
        assertEq(token.balanceOf(address(escrow)), deposit, "escrow holds deposit");
        assertEq(escrow.leaseCount(), 1, "count");
        assertEq(registry.getProvider(providerId).allocatedCpuMillis, CPU, "capacity reserved");
    }

    function test_RevertWhen_EscrowPaused() public {
        vm.prank(admin);
        escrow.pause();
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_Paused.selector);
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max);
    }

    function test_RevertWhen_CpuIsZero() public {
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_ZeroResources.selector);
        escrow.openLease(providerId, 0, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max);
    }

    function test_RevertWhen_ReservationAbove24Bits() public {
        uint32 tooMuch = uint32(type(uint24).max) + 1;
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_ReservationTooLarge.selector, Resource.Memory, tooMuch, type(uint24).max
            )
        );
        escrow.openLease(
            providerId, CPU, tooMuch, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max
        );
    }

    function test_RevertWhen_ManifestHashIsZero() public {
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_EmptyManifestHash.selector);
        escrow.openLease(providerId, CPU, MEM, STO, bytes32(0), "", depositFor(3 hours), type(uint256).max);
    }

    function test_RevertWhen_DepositIsZero() public {
        vm.prank(tenant);
        vm.expectRevert(Errors.LeaseEscrow_ZeroAmount.selector);
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", 0, type(uint256).max);
    }

    function test_RevertWhen_DepositAbove96Bits() public {
        uint256 deposit = uint256(type(uint96).max) + 1;
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_BalanceOverflow.selector, 0, 0, deposit));
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
    }

    function test_RevertWhen_RateAboveGuard() public {
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_RateAboveMax.selector, leaseRate(), leaseRate() - 1)
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), leaseRate() - 1);
    }

    function test_RevertWhen_PriceChangedInFlight() public {
        uint256 quoted = leaseRate();
        vm.prank(providerOwner);
        registry.updatePrices(providerId, baseRate() * 2, cpuPrice(), memoryPrice(), storagePrice());
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_RateAboveMax.selector, quoted + baseRate(), quoted)
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(4 hours), quoted);
    }

    function test_RevertWhen_DepositBelowOpeningRunway() public {
        uint256 required = depositFor(MIN_OPEN_RUNWAY);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_InsufficientDeposit.selector, required - 1, required)
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", required - 1, type(uint256).max);
    }

    function test_RevertGiven_UnknownProvider() public {
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_UnknownProvider.selector, 77));
        escrow.openLease(77, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max);
    }

    function test_RevertGiven_ProviderPaused() public {
        vm.prank(providerOwner);
        registry.pause(providerId);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_ProviderNotAccepting.selector, providerId, ProviderStatus.Paused
            )
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max);
    }

    function test_RevertGiven_NoCapacity() public {
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InsufficientCapacity.selector, providerId, Resource.Cpu, 8000, 9000
            )
        );
        escrow.openLease(
            providerId, 9000, MEM, STO, MANIFEST_HASH, "", depositFor(300 hours), type(uint256).max
        );
    }

    function test_RevertGiven_TokenDelisted() public {
        vm.prank(admin);
        registry.setPaymentToken(address(token), false);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_TokenNotAllowed.selector, address(token)));
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max);
    }

    function test_RevertWhen_AllowanceTooLow() public {
        uint256 deposit = depositFor(3 hours);
        vm.startPrank(tenant);
        token.approve(address(escrow), deposit - 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InsufficientAllowance.selector, address(token), deposit - 1, deposit
            )
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
        vm.stopPrank();
    }

    function test_RevertWhen_BalanceTooLow() public {
        uint256 deposit = depositFor(3 hours);
        vm.prank(stranger);
        token.approve(address(escrow), type(uint256).max);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InsufficientBalance.selector, address(token), 0, deposit
            )
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
    }

    function test_RevertGiven_FeeOnTransferToken() public {
        FeeOnTransferToken fot = new FeeOnTransferToken();
        vm.prank(admin);
        registry.setPaymentToken(address(fot), true);
        stakeToken.mint(stranger, 100e18);
        vm.startPrank(stranger);
        stakeToken.approve(address(registry), 100e18);
        uint256 fotProvider = registry.register(
            operator,
            address(fot),
            "https://fot",
            "",
            [uint32(1000), uint32(1000), uint32(1)],
            prices(),
            100e18
        );
        vm.stopPrank();
        uint256 deposit = depositFor(3 hours);
        fot.mint(tenant, deposit);
        vm.startPrank(tenant);
        fot.approve(address(escrow), deposit);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_FeeOnTransferToken.selector, address(fot), deposit, deposit - deposit / 100
            )
        );
        escrow.openLease(fotProvider, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
        vm.stopPrank();
    }

    /// The opening threshold is above the suspension threshold: a lease opened with the least
    /// deposit runs `MIN_OPEN_RUNWAY - MIN_RUNWAY` before it can even be suspended.
    function test_WhenOpenedWithMinimumDeposit_NotSuspendableAtOnce() public {
        uint256 leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        vm.warp(block.timestamp + 1);
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
}

contract OpenLease6_Unit_Test is OpenLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract OpenLease18_Unit_Test is OpenLease_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
