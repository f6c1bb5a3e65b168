// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {TestToken} from "../../src/mocks/TestToken.sol";
import {Lease, LeaseStatus, PRICE_SCALE} from "../../src/types/BerthTypes.sol";
import {Test} from "../utils/Test.sol";
import {vm} from "../utils/Vm.sol";
import {LeaseHandler} from "./handlers/LeaseHandler.sol";
import {LeaseStore} from "./stores/LeaseStore.sol";

/// @notice The invariants of DESIGN.md, checked after every random action of `LeaseHandler`;
/// ghost accounting lives in `LeaseStore`.
abstract contract LeaseEscrowInvariantTest is Test {
    uint256 internal constant ACCEPT_TIMEOUT = 1 hours;
    uint256 internal constant CHALLENGE_WINDOW = 1 days;
    uint256 internal constant FINAL_REPORT_WINDOW = 1 hours;

    LeaseEscrow internal escrow;
    ProviderRegistry internal registry;
    TestToken internal token;
    LeaseHandler internal handler;
    LeaseStore internal store;
    address internal arbiter = makeAddr("arbiter");
    address internal admin = makeAddr("admin");

    function decimals() internal pure virtual returns (uint8);

    function setUp() public {
        uint256 unit = 10 ** decimals();
        token = new TestToken("Berth USD", "bUSD", decimals());
        TestToken stake = new TestToken("Stake", "STK", 18);
        registry = new ProviderRegistry(admin, stake, 0, 1 days);
        escrow = new LeaseEscrow(
            admin,
            registry,
            arbiter,
            [ACCEPT_TIMEOUT, CHALLENGE_WINDOW, FINAL_REPORT_WINDOW, 1 hours, 30 minutes, 2 hours]
        );
        vm.startPrank(admin);
        registry.setEscrow(address(escrow));
        registry.setPaymentToken(address(token), true);
        vm.stopPrank();

        uint256[] memory ids = new uint256[](2);
        address[] memory operators = new address[](2);
        address[] memory owners = new address[](2);
        for (uint256 i; i < 2; ++i) {
            owners[i] = makeAddr(string.concat("owner", vm.toString(i)));
            operators[i] = makeAddr(string.concat("operator", vm.toString(i)));
            ids[i] = _registerProvider(owners[i], operators[i], uint128(i * 9 + 1));
        }
        address[] memory tenants = new address[](3);
        for (uint256 i; i < 3; ++i) {
            tenants[i] = makeAddr(string.concat("tenant", vm.toString(i)));
            token.mint(tenants[i], 1_000_000 * unit);
        }
        store = new LeaseStore();
        handler =
            new LeaseHandler(escrow, registry, token, store, admin, arbiter, tenants, ids, operators, owners);
        targetContract(address(handler));
    }

    /// @dev Provider 0 is cheap, provider 1 charges ten times as much (`k`).
    function _registerProvider(address owner_, address operator_, uint128 k) private returns (uint256) {
        uint256 unit = 10 ** decimals();
        vm.prank(owner_);
        return registry.register(
            operator_,
            address(token),
            "https://p",
            "",
            [uint32(1_000_000), uint32(10_000_000), uint32(1000)],
            [
                uint128(unit * PRICE_SCALE / 3600 / 100) * k,
                uint128(unit * PRICE_SCALE / 3600 / 1000 / 50) * k,
                uint128(unit * PRICE_SCALE / 3600 / 1024 / 100) * k,
                uint128(unit * PRICE_SCALE / 3600 / 10_000) * k
            ],
            0
        );
    }

    function _held(Lease memory l) private pure returns (uint256) {
        return l.balance + l.claimable + l.pending + l.disputed;
    }

    /// Solvency: the escrow holds exactly what the leases account for.
    function invariant_solvency() public view {
        uint256 sum;
        for (uint256 i; i < store.leaseCount(); ++i) {
            sum += _held(escrow.getLease(store.leaseIds(i)));
        }
        assertEq(token.balanceOf(address(escrow)), sum, "escrow balance = sum of lease funds");
    }

    /// Per-lease conservation: every token paid in is in the lease, with the provider or back with the tenant.
    function invariant_perLeaseConservation() public view {
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            assertEq(
                store.deposited(id),
                _held(escrow.getLease(id)) + store.paidToProvider(id) + store.withdrawn(id),
                "conservation"
            );
        }
    }

    /// Rate cap: a tenant is never charged above max rate x billed time.
    function invariant_rateCap() public view {
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            uint256 confirmedAt = store.confirmedAt(id);
            if (confirmedAt == 0) continue;
            Lease memory l = escrow.getLease(id);
            uint256 cap = escrow.maxRateOf(id) * (l.billedUntil - confirmedAt) / PRICE_SCALE;
            assertLe(store.charged(id), cap, "charged <= max rate x time");
        }
    }

    /// Monotonic time: billed time only moves forward, never before confirmation or past now.
    function invariant_monotonicTime() public view {
        assertFalse(store.timeWentBack(), "billedUntil went back");
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            assertLe(l.billedUntil, block.timestamp, "billed into the future");
            if (store.confirmedAt(id) != 0) {
                assertGe(l.billedUntil, store.confirmedAt(id), "billed before confirmation");
            }
        }
    }

    /// No charge before confirmation or after close.
    function invariant_noChargeOutsideService() public view {
        assertFalse(store.chargedBeforeConfirmation(), "charged before confirmation");
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            if (store.confirmedAt(id) == 0) assertEq(store.charged(id), 0, "unconfirmed lease charged");
            if (l.closedAt != 0 && store.confirmedAt(id) != 0) {
                assertLe(l.billedUntil, l.closedAt, "billed after close");
            }
        }
    }

    /// A suspended lease is never charged usage units, only the base rate.
    function invariant_suspendedNeverChargedUnits() public view {
        assertFalse(store.suspendedUnitsAccepted(), "units accepted for a suspended period");
    }

    /// Auto top-up never pulls above its caps, never while the runway is above the trigger, never
    /// into another lease.
    function invariant_autoTopUpWithinPolicy() public view {
        assertFalse(store.autoTopUpAboveCap(), "pulled above a cap");
        assertFalse(store.autoTopUpAboveTrigger(), "pulled above the trigger");
        assertFalse(store.autoTopUpIntoOtherLease(), "paid into another lease");
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            assertLe(escrow.autoTopUpOf(id).pulled, escrow.autoTopUpOf(id).maxTotal, "policy total");
        }
    }

    /// An update never moves money.
    function invariant_updateNeverMovesMoney() public view {
        assertFalse(store.updateMovedMoney(), "an update moved money");
    }

    /// Refunds never touch earned funds: claimable + paid never decreases.
    function invariant_refundsNeverTouchEarned() public view {
        assertFalse(store.earnedDecreased(), "earned funds decreased");
    }

    /// Only the tenant gets the remainder; nothing a provider reports pushes a balance below zero
    /// (charges never exceed what was paid in plus what the arbiter gave back to the balance).
    function invariant_onlyTenantGetsRemainder() public view {
        assertFalse(store.strangerGotFunds(), "a stranger was paid");
        assertEq(token.balanceOf(handler.stranger()), 0, "stranger holds nothing");
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            assertLe(
                store.charged(id), store.deposited(id) + store.returned(id), "charged more than deposited"
            );
        }
    }

    /// Both sides can always exit, paused or not: from any state, tenants get their
    /// remainders, the arbiter rules and providers claim, until the escrow holds nothing.
    function invariant_bothSidesCanExit() public {
        uint256 snapshot = vm.snapshotState();
        uint256 n = store.leaseCount();
        for (uint256 i; i < n; ++i) {
            uint256 id = store.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            vm.prank(l.tenant);
            if (l.status == LeaseStatus.Active || l.status == LeaseStatus.Suspended) escrow.closeLease(id);
        }
        vm.warp(block.timestamp + ACCEPT_TIMEOUT + FINAL_REPORT_WINDOW + 2 * CHALLENGE_WINDOW + 1);
        for (uint256 i; i < n; ++i) {
            uint256 id = store.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            if (l.status == LeaseStatus.Pending) {
                vm.prank(l.tenant);
                escrow.cancelLease(id);
            }
            if (l.disputed > 0) {
                vm.prank(arbiter);
                escrow.resolveDispute(id, l.disputed / 2);
            }
            l = escrow.getLease(id);
            if (l.status == LeaseStatus.Closing || l.balance > 0) {
                vm.prank(l.tenant);
                escrow.withdraw(id);
            }
            vm.prank(handler.operatorOf(l.providerId));
            escrow.claim(id);
        }
        assertEq(token.balanceOf(address(escrow)), 0, "everyone got out");
        vm.revertToState(snapshot);
    }

    /// Every lease on the escrow went through the ghost accounting, so the invariants above cover
    /// all of them. Prints the campaign's coverage with -vv.
    function invariant_everyLeaseIsAccountedFor() public {
        assertEq(escrow.leaseCount(), store.leaseCount(), "a lease escaped the ghost accounting");
        bytes32[12] memory actions = [
            bytes32("open"),
            "report",
            "suspend",
            "resume",
            "terminate",
            "autoTopUp",
            "autoTopUpFailed",
            "update",
            "claim",
            "withdraw",
            "dispute",
            "confirm"
        ];
        for (uint256 i; i < actions.length; ++i) {
            emit log_named_uint(string(abi.encodePacked(actions[i])), store.calls(actions[i]));
        }
    }
}

contract LeaseEscrowInvariant6DecimalsTest is LeaseEscrowInvariantTest {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract LeaseEscrowInvariant18DecimalsTest is LeaseEscrowInvariantTest {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
