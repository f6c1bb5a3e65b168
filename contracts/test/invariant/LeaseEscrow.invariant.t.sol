// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {TestToken} from "../../src/mocks/TestToken.sol";
import {Lease, LeaseStatus, PRICE_SCALE} from "../../src/types/BerthTypes.sol";
import {Test} from "../utils/Test.sol";
import {vm} from "../utils/Vm.sol";
import {LeaseHandler} from "./LeaseHandler.sol";

/// @notice The invariants of DESIGN.md, checked after every random action of `LeaseHandler`.
abstract contract LeaseEscrowInvariantTest is Test {
    uint256 internal constant ACCEPT_TIMEOUT = 1 hours;
    uint256 internal constant CHALLENGE_WINDOW = 1 days;
    uint256 internal constant FINAL_REPORT_WINDOW = 1 hours;

    LeaseEscrow internal escrow;
    ProviderRegistry internal registry;
    TestToken internal token;
    LeaseHandler internal handler;
    address internal arbiter = makeAddr("arbiter");
    address internal admin = makeAddr("admin");

    function decimals() internal pure virtual returns (uint8);

    function setUp() public {
        uint256 unit = 10 ** decimals();
        token = new TestToken("Berth USD", "bUSD", decimals());
        TestToken stake = new TestToken("Stake", "STK", 18);
        registry = new ProviderRegistry(admin, stake, 0, 1 days);
        escrow = new LeaseEscrow(
            admin, registry, arbiter, ACCEPT_TIMEOUT, CHALLENGE_WINDOW, FINAL_REPORT_WINDOW, 1 hours
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
            vm.prank(tenants[i]);
            token.approve(address(escrow), type(uint256).max);
        }
        handler = new LeaseHandler(escrow, registry, token, admin, arbiter, tenants, ids, operators, owners);
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
            [uint32(16_000), uint32(65_536), uint32(100)],
            [
                uint128(unit * PRICE_SCALE / 3600 / 100) * k,
                uint128(unit * PRICE_SCALE / 3600 / 1000 / 50) * k,
                uint128(unit * PRICE_SCALE / 3600 / 1024 / 100) * k,
                uint128(unit * PRICE_SCALE / 3600 / 10_000) * k
            ],
            0
        );
    }

    /// Solvency: the escrow holds exactly what the leases account for.
    function invariant_solvency() public view {
        uint256 sum;
        for (uint256 i; i < handler.leaseCount(); ++i) {
            Lease memory l = escrow.getLease(handler.leaseIds(i));
            sum += uint256(l.balance) + l.claimable + l.pendingA + l.pendingB + l.disputed;
        }
        assertEq(token.balanceOf(address(escrow)), sum, "escrow balance = sum of lease funds");
    }

    /// Per-lease conservation: every token paid in is in the lease, with the provider or back with the tenant.
    function invariant_perLeaseConservation() public view {
        for (uint256 i; i < handler.leaseCount(); ++i) {
            uint256 id = handler.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            uint256 held = uint256(l.balance) + l.claimable + l.pendingA + l.pendingB + l.disputed;
            assertEq(
                handler.deposited(id),
                held + handler.paidToProvider(id) + handler.refunded(id),
                "conservation"
            );
        }
    }

    /// Rate cap: a tenant is never charged above max rate x billed time.
    function invariant_rateCap() public view {
        for (uint256 i; i < handler.leaseCount(); ++i) {
            uint256 id = handler.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            if (l.confirmedAt == 0) continue;
            uint256 cap = escrow.maxRateOf(id) * (l.billedUntil - l.confirmedAt) / PRICE_SCALE;
            assertLe(handler.charged(id), cap, "charged <= max rate x time");
        }
    }

    /// Monotonic time: billed time only moves forward.
    function invariant_monotonicTime() public view {
        assertFalse(handler.timeWentBack(), "billedUntil went back");
        for (uint256 i; i < handler.leaseCount(); ++i) {
            Lease memory l = escrow.getLease(handler.leaseIds(i));
            assertLe(l.billedUntil, block.timestamp, "billed into the future");
            if (l.confirmedAt != 0) assertGe(l.billedUntil, l.confirmedAt, "billed before confirmation");
        }
    }

    /// No charge before confirmation or after close.
    function invariant_noChargeOutsideService() public view {
        assertFalse(handler.chargedBeforeConfirmation(), "charged before confirmation");
        for (uint256 i; i < handler.leaseCount(); ++i) {
            uint256 id = handler.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            if (l.confirmedAt == 0) assertEq(handler.charged(id), 0, "unconfirmed lease charged");
            if (l.closedAt != 0 && l.confirmedAt != 0) {
                assertLe(l.billedUntil, l.closedAt, "billed after close");
            }
        }
    }

    /// Refunds never touch earned funds: claimable + paid never decreases.
    function invariant_refundsNeverTouchEarned() public view {
        assertFalse(handler.earnedDecreased(), "earned funds decreased");
    }

    /// Only the tenant gets the remainder; nothing a provider reports pushes a balance below zero.
    function invariant_onlyTenantGetsRemainder() public view {
        assertFalse(handler.strangerGotFunds(), "a stranger was paid");
        assertEq(token.balanceOf(handler.stranger()), 0, "stranger holds nothing");
        for (uint256 i; i < handler.leaseCount(); ++i) {
            uint256 id = handler.leaseIds(i);
            assertLe(handler.charged(id), handler.deposited(id), "charged more than deposited");
        }
    }

    /// Both sides can always exit, paused or not: from any state, tenants get their
    /// remainders, the arbiter rules and providers claim, until the escrow holds nothing.
    function invariant_bothSidesCanExit() public {
        uint256 snapshot = vm.snapshotState();
        uint256 t = block.timestamp;
        uint256 n = handler.leaseCount();
        for (uint256 i; i < n; ++i) {
            uint256 id = handler.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            vm.startPrank(l.tenant);
            if (l.status == LeaseStatus.Active) escrow.closeLease(id);
            vm.stopPrank();
        }
        t += ACCEPT_TIMEOUT + FINAL_REPORT_WINDOW + 2 * CHALLENGE_WINDOW + 1;
        vm.warp(t);
        for (uint256 i; i < n; ++i) {
            uint256 id = handler.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            vm.startPrank(l.tenant);
            if (l.status == LeaseStatus.Pending) escrow.cancelLease(id);
            if (l.status == LeaseStatus.Active || l.status == LeaseStatus.Closing) escrow.withdraw(id);
            vm.stopPrank();
            if (l.disputed > 0) {
                vm.prank(arbiter);
                escrow.resolveDispute(id, l.disputed / 2);
            }
            vm.prank(handler.operatorOf(l.providerId));
            escrow.claim(id);
        }
        assertEq(token.balanceOf(address(escrow)), 0, "everyone got out");
        vm.revertToState(snapshot);
    }

    /// Every lease on the escrow went through the handler's ghost accounting, so the invariants
    /// above cover all of them. Prints the campaign's coverage with -vv.
    function invariant_everyLeaseIsAccountedFor() public {
        assertEq(escrow.leaseCount(), handler.leaseCount(), "a lease escaped the ghost accounting");
        emit log_named_uint("leases", handler.leaseCount());
        emit log_named_uint("reports", handler.calls("report"));
        emit log_named_uint("claims", handler.calls("claim"));
        emit log_named_uint("refunds", handler.calls("refund"));
        emit log_named_uint("confirms", handler.calls("confirm"));
        emit log_named_uint("warps", handler.calls("warp"));
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
