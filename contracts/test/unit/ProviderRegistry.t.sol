// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Errors} from "../../src/libraries/Errors.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {Prices, Provider, ProviderStatus, Resource} from "../../src/types/BerthTypes.sol";
import {FeeOnTransferToken} from "../mocks/FeeOnTransferToken.sol";
import {BerthFixture} from "../utils/BerthFixture.sol";
import {vm} from "../utils/Vm.sol";

contract ProviderRegistryTest is BerthFixture {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }

    function _fundStranger(uint256 stake) private {
        stakeToken.mint(stranger, stake);
        vm.prank(stranger);
        stakeToken.approve(address(registry), stake);
    }

    function _register(address operator_, address token_, string memory endpoint, uint32 cpu, uint256 stake)
        private
        returns (uint256)
    {
        vm.prank(stranger);
        return registry.register(
            operator_, token_, endpoint, "region=us", [cpu, uint32(1024), uint32(10)], prices(), stake
        );
    }

    // ---------------------------------------------------------------- register

    function test_register_storesProviderAndPullsStake() public {
        uint256 before = stakeToken.balanceOf(address(registry));
        _fundStranger(150e18);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.ProviderRegistered(
            2, stranger, operator, address(token), 150e18, "https://p2.example", "region=us"
        );
        uint256 id = _register(operator, address(token), "https://p2.example", 4000, 150e18);
        assertEq(id, 2, "second provider gets id 2");
        Provider memory p = registry.getProvider(id);
        assertEq(p.owner, stranger, "owner");
        assertEq(p.operator, operator, "operator");
        assertEq(p.token, address(token), "token");
        assertEq(uint256(p.status), uint256(ProviderStatus.Active), "status");
        assertEq(p.cpuMillis, 4000, "cpu");
        assertEq(p.memoryMiB, 1024, "memory");
        assertEq(p.storageGiB, 10, "storage");
        assertEq(p.stake, 150e18, "stake");
        assertEq(p.endpoint, "https://p2.example", "endpoint");
        assertEq(p.attributes, "region=us", "attributes");
        assertEq(stakeToken.balanceOf(address(registry)) - before, 150e18, "stake pulled");
        Prices memory pr = registry.pricesOf(id, 0);
        assertEq(pr.baseRate, baseRate(), "base rate");
        assertEq(pr.cpuPrice, cpuPrice(), "cpu price");
        assertEq(registry.providerCount(), 2, "count");
    }

    function test_register_revertsOnZeroOperator() public {
        _fundStranger(100e18);
        vm.expectRevert(Errors.ProviderRegistry_ZeroAddress.selector);
        _register(address(0), address(token), "https://p", 1000, 100e18);
    }

    function test_register_revertsOnTokenNotAllowed() public {
        _fundStranger(100e18);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_TokenNotAllowed.selector, address(stakeToken))
        );
        _register(operator, address(stakeToken), "https://p", 1000, 100e18);
    }

    function test_register_revertsOnStakeBelowMinimum() public {
        _fundStranger(100e18);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_StakeBelowMinimum.selector, 99e18, 100e18)
        );
        _register(operator, address(token), "https://p", 1000, 99e18);
    }

    function test_register_revertsOnEmptyEndpoint() public {
        _fundStranger(100e18);
        vm.expectRevert(Errors.ProviderRegistry_EmptyEndpoint.selector);
        _register(operator, address(token), "", 1000, 100e18);
    }

    function test_register_revertsOnZeroCapacity() public {
        _fundStranger(100e18);
        vm.expectRevert(Errors.ProviderRegistry_ZeroCapacity.selector);
        _register(operator, address(token), "https://p", 0, 100e18);
    }

    function test_register_refusesFeeOnTransferStake() public {
        FeeOnTransferToken fot = new FeeOnTransferToken();
        ProviderRegistry r = new ProviderRegistry(admin, IERC20(address(fot)), 100e18, 1 days);
        vm.startPrank(admin);
        r.setPaymentToken(address(token), true);
        r.setEscrow(address(escrow));
        vm.stopPrank();
        fot.mint(stranger, 100e18);
        vm.startPrank(stranger);
        fot.approve(address(r), 100e18);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.ProviderRegistry_FeeOnTransferToken.selector, address(fot), 100e18, 99e18
            )
        );
        r.register(
            operator, address(token), "https://p", "", [uint32(1), uint32(1), uint32(0)], prices(), 100e18
        );
        vm.stopPrank();
    }

    // ---------------------------------------------------------------- updates

    function test_updatePrices_addsVersionForNewLeasesOnly() public {
        uint256 leaseId = openLease(depositFor(2 hours));
        vm.prank(providerOwner);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.PricesUpdated(providerId, 1, 1, 2, 3, 4);
        registry.updatePrices(providerId, 1, 2, 3, 4);
        assertEq(registry.getProvider(providerId).priceVersion, 1, "version bumped");
        assertEq(registry.pricesOf(providerId, 1).memoryPrice, 3, "new prices stored");
        assertEq(escrow.getLease(leaseId).priceVersion, 0, "running lease keeps version 0");
        assertEq(escrow.maxRateOf(leaseId), leaseRate(), "running lease keeps its rate");
    }

    function test_updatePrices_revertsForNonOwner() public {
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_NotProviderOwner.selector, providerId, stranger)
        );
        registry.updatePrices(providerId, 1, 2, 3, 4);
    }

    function test_updatePrices_revertsForUnknownProvider() public {
        vm.prank(providerOwner);
        vm.expectRevert(abi.encodeWithSelector(Errors.ProviderRegistry_UnknownProvider.selector, 77));
        registry.updatePrices(77, 1, 2, 3, 4);
    }

    function test_updatePrices_revertsWhenVersionsRunOut() public {
        // Provider slot 0 packs owner | status | priceVersion: set priceVersion to its maximum.
        bytes32 slot = keccak256(abi.encode(providerId, uint256(6)));
        uint256 word = uint256(vm.load(address(registry), slot));
        word |= uint256(type(uint16).max) << 168;
        vm.store(address(registry), slot, bytes32(word));
        assertEq(registry.getProvider(providerId).priceVersion, type(uint16).max, "slot layout as expected");
        vm.prank(providerOwner);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_TooManyPriceVersions.selector, providerId)
        );
        registry.updatePrices(providerId, 1, 2, 3, 4);
    }

    function test_updateCapacity() public {
        vm.prank(providerOwner);
        registry.updateCapacity(providerId, 100, 200, 0);
        Provider memory p = registry.getProvider(providerId);
        assertEq(p.cpuMillis, 100, "cpu");
        assertEq(p.memoryMiB, 200, "mem");
        assertEq(p.storageGiB, 0, "storage");
        vm.prank(providerOwner);
        vm.expectRevert(Errors.ProviderRegistry_ZeroCapacity.selector);
        registry.updateCapacity(providerId, 100, 0, 0);
    }

    function test_updateEndpointAndAttributes() public {
        vm.startPrank(providerOwner);
        registry.updateEndpoint(providerId, "https://new.example");
        registry.updateAttributes(providerId, "region=ap");
        vm.expectRevert(Errors.ProviderRegistry_EmptyEndpoint.selector);
        registry.updateEndpoint(providerId, "");
        vm.stopPrank();
        assertEq(registry.getProvider(providerId).endpoint, "https://new.example", "endpoint");
        assertEq(registry.getProvider(providerId).attributes, "region=ap", "attributes");
    }

    function test_setOperator() public {
        vm.prank(providerOwner);
        registry.setOperator(providerId, stranger);
        (address op, address owner_) = registry.operatorOf(providerId);
        assertEq(op, stranger, "operator rotated");
        assertEq(owner_, providerOwner, "owner unchanged");
        vm.prank(providerOwner);
        vm.expectRevert(Errors.ProviderRegistry_ZeroAddress.selector);
        registry.setOperator(providerId, address(0));
    }

    // ---------------------------------------------------------------- pause / exit / stake

    function test_pauseStopsNewLeasesAndUnpauseResumes() public {
        vm.prank(providerOwner);
        registry.pause(providerId);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_ProviderNotAccepting.selector, providerId, ProviderStatus.Paused
            )
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max);
        vm.prank(providerOwner);
        registry.unpause(providerId);
        openLease(depositFor(2 hours));
    }

    function test_pause_revertsWhenNotActive() public {
        vm.startPrank(providerOwner);
        registry.pause(providerId);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.ProviderRegistry_InvalidProviderStatus.selector, providerId, ProviderStatus.Paused
            )
        );
        registry.pause(providerId);
        registry.unpause(providerId);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.ProviderRegistry_InvalidProviderStatus.selector, providerId, ProviderStatus.Active
            )
        );
        registry.unpause(providerId);
        vm.stopPrank();
    }

    function test_exit_fullPathReturnsStake() public {
        vm.prank(providerOwner);
        registry.requestExit(providerId);
        assertEq(uint256(registry.getProvider(providerId).status), uint256(ProviderStatus.Exiting), "exiting");
        vm.prank(providerOwner);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.ProviderRegistry_UnbondingNotOver.selector,
                providerId,
                block.timestamp + UNBONDING_DELAY
            )
        );
        registry.withdrawStake(providerId);
        vm.warp(block.timestamp + UNBONDING_DELAY);
        vm.prank(providerOwner);
        registry.withdrawStake(providerId);
        assertEq(stakeToken.balanceOf(providerOwner), 100e18, "stake returned");
        assertEq(uint256(registry.getProvider(providerId).status), uint256(ProviderStatus.Exited), "exited");
    }

    function test_exit_fromPausedAndNotTwice() public {
        vm.startPrank(providerOwner);
        registry.pause(providerId);
        registry.requestExit(providerId);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.ProviderRegistry_InvalidProviderStatus.selector, providerId, ProviderStatus.Exiting
            )
        );
        registry.requestExit(providerId);
        vm.stopPrank();
    }

    function test_withdrawStake_revertsWithActiveLeases() public {
        openLease(depositFor(2 hours));
        vm.prank(providerOwner);
        registry.requestExit(providerId);
        vm.warp(block.timestamp + UNBONDING_DELAY);
        vm.prank(providerOwner);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_ActiveLeasesRemain.selector, providerId, 1)
        );
        registry.withdrawStake(providerId);
    }

    function test_withdrawStake_revertsWhenNotExiting() public {
        vm.prank(providerOwner);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.ProviderRegistry_InvalidProviderStatus.selector, providerId, ProviderStatus.Active
            )
        );
        registry.withdrawStake(providerId);
    }

    function test_addStake() public {
        stakeToken.mint(stranger, 5e18);
        vm.startPrank(stranger);
        stakeToken.approve(address(registry), 5e18);
        registry.addStake(providerId, 5e18);
        vm.expectRevert(Errors.ProviderRegistry_ZeroAmount.selector);
        registry.addStake(providerId, 0);
        vm.expectRevert(abi.encodeWithSelector(Errors.ProviderRegistry_UnknownProvider.selector, 99));
        registry.addStake(99, 1);
        vm.stopPrank();
        assertEq(registry.getProvider(providerId).stake, 105e18, "stake added");
    }

    function test_addStake_revertsAfterExit() public {
        vm.prank(providerOwner);
        registry.requestExit(providerId);
        vm.warp(block.timestamp + UNBONDING_DELAY);
        vm.prank(providerOwner);
        registry.withdrawStake(providerId);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.ProviderRegistry_InvalidProviderStatus.selector, providerId, ProviderStatus.Exited
            )
        );
        registry.addStake(providerId, 1);
    }

    // ---------------------------------------------------------------- escrow hooks and capacity

    function test_reserveAndRelease_onlyEscrow() public {
        vm.expectRevert(abi.encodeWithSelector(Errors.ProviderRegistry_NotEscrow.selector, address(this)));
        registry.reserve(providerId, 1, 1, 0);
        vm.expectRevert(abi.encodeWithSelector(Errors.ProviderRegistry_NotEscrow.selector, address(this)));
        registry.release(providerId, 1, 1, 0);
    }

    function test_capacity_isReservedAndReleased() public {
        uint256 leaseId = openConfirmed(depositFor(2 hours));
        Provider memory p = registry.getProvider(providerId);
        assertEq(p.allocatedCpuMillis, CPU, "cpu reserved");
        assertEq(p.allocatedMemoryMiB, MEM, "mem reserved");
        assertEq(p.activeLeases, 1, "one active lease");
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        p = registry.getProvider(providerId);
        assertEq(p.allocatedCpuMillis, 0, "cpu released");
        assertEq(p.activeLeases, 0, "no active lease");
    }

    function test_capacity_refusesOverbooking() public {
        vm.prank(providerOwner);
        registry.updateCapacity(providerId, CPU, MEM, STO);
        openLease(depositFor(2 hours));
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InsufficientCapacity.selector, providerId, Resource.Cpu, 0, 1
            )
        );
        escrow.openLease(providerId, 1, 1, 0, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max);
    }

    function test_reserve_unknownProvider() public {
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_UnknownProvider.selector, 42));
        escrow.openLease(42, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max);
    }

    function test_RevertWhen_RegisteringBeforeTheEscrowIsBound() public {
        ProviderRegistry r = new ProviderRegistry(admin, stakeToken, 0, 1 days);
        vm.prank(admin);
        r.setPaymentToken(address(token), true);
        vm.expectRevert(Errors.ProviderRegistry_EscrowNotSet.selector);
        r.register(operator, address(token), "https://p", "", [uint32(1), uint32(1), uint32(0)], prices(), 0);
    }

    // ---------------------------------------------------------------- encryption key

    function test_setEncryptionKey_versionsEachKey() public {
        bytes32 k1 = keccak256("x25519-1");
        bytes32 k2 = keccak256("x25519-2");
        (bytes32 none, uint32 v0) = registry.encryptionKeyOf(providerId);
        assertEq(none, bytes32(0), "no key yet");
        assertEq(v0, 0, "version 0");
        vm.startPrank(providerOwner);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.EncryptionKeyUpdated(providerId, 1, k1);
        registry.setEncryptionKey(providerId, k1);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.EncryptionKeyUpdated(providerId, 2, k2);
        registry.setEncryptionKey(providerId, k2);
        vm.stopPrank();
        (bytes32 key, uint32 version) = registry.encryptionKeyOf(providerId);
        assertEq(key, k2, "latest key");
        assertEq(version, 2, "second version");
    }

    function test_setEncryptionKey_RevertWhen_CallerNotOwner() public {
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_NotProviderOwner.selector, providerId, operator)
        );
        registry.setEncryptionKey(providerId, keccak256("k"));
    }

    function test_setEncryptionKey_RevertWhen_KeyZero() public {
        vm.prank(providerOwner);
        vm.expectRevert(Errors.ProviderRegistry_ZeroEncryptionKey.selector);
        registry.setEncryptionKey(providerId, bytes32(0));
    }

    // ---------------------------------------------------------------- admin and views

    function test_admin_onlyOwner() public {
        vm.startPrank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.setPaymentToken(address(1), true);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.setMinStake(1);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.setEscrow(address(1));
        vm.stopPrank();
    }

    function test_admin_setters() public {
        vm.startPrank(admin);
        registry.setMinStake(5);
        vm.expectRevert(Errors.ProviderRegistry_ZeroAddress.selector);
        registry.setPaymentToken(address(0), true);
        vm.expectRevert(Errors.ProviderRegistry_ZeroAddress.selector);
        registry.setEscrow(address(0));
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_EscrowAlreadySet.selector, address(escrow))
        );
        registry.setEscrow(address(1));
        registry.setPaymentToken(address(token), false);
        vm.stopPrank();
        assertEq(registry.minStake(), 5, "min stake");
        assertFalse(registry.isPaymentToken(address(token)), "token delisted");
    }

    function test_ownership_twoStep() public {
        vm.prank(admin);
        registry.transferOwnership(stranger);
        assertEq(registry.owner(), admin, "owner unchanged until accepted");
        vm.prank(stranger);
        registry.acceptOwnership();
        assertEq(registry.owner(), stranger, "new owner");
    }

    function test_constructor_revertsOnZeroStakeToken() public {
        vm.expectRevert(Errors.ProviderRegistry_ZeroAddress.selector);
        new ProviderRegistry(admin, IERC20(address(0)), 1, 1);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.ProviderRegistry_UnbondingDelayTooLong.selector, 366 days)
        );
        new ProviderRegistry(admin, stakeToken, 1, 366 days);
    }

    function test_listProviders_pages() public {
        _fundStranger(200e18);
        _register(operator, address(token), "https://p2", 1000, 100e18);
        _register(operator, address(token), "https://p3", 1000, 100e18);
        Provider[] memory page = registry.listProviders(0, 2);
        assertEq(page.length, 2, "first page");
        assertEq(page[0].endpoint, "https://gateway.example:8443", "provider 1 first");
        page = registry.listProviders(2, 2);
        assertEq(page.length, 1, "last page short");
        assertEq(page[0].endpoint, "https://p3", "provider 3");
        assertEq(registry.listProviders(3, 10).length, 0, "past the end");
    }
}
