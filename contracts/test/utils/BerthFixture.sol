// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {TestToken} from "../../src/mocks/TestToken.sol";
import {Lease, PRICE_SCALE, UsageReport} from "../../src/types/BerthTypes.sol";
import {Test} from "./Test.sol";
import {vm} from "./Vm.sol";

/// @notice Deploys a registry, an escrow and a payment token with `decimals()` decimals, and
/// offers the steps of the lease lifecycle as helpers.
abstract contract BerthFixture is Test {
    uint256 internal constant ACCEPT_TIMEOUT = 1 hours;
    uint256 internal constant CHALLENGE_WINDOW = 1 days;
    uint256 internal constant FINAL_REPORT_WINDOW = 1 hours;
    uint256 internal constant MIN_RUNWAY = 1 hours;
    uint256 internal constant GRACE_PERIOD = 30 minutes;
    uint256 internal constant MIN_OPEN_RUNWAY = 2 hours;
    uint256 internal constant UNBONDING_DELAY = 7 days;

    uint32 internal constant CPU = 500; // millicores
    uint32 internal constant MEM = 512; // MiB
    uint32 internal constant STO = 1; // GiB
    bytes32 internal constant MANIFEST_HASH = keccak256("services: {web: {image: nginx}}");

    address internal admin = makeAddr("admin");
    address internal arbiter = makeAddr("arbiter");
    address internal providerOwner = makeAddr("providerOwner");
    address internal operator = makeAddr("operator");
    uint256 internal tenantKey = uint256(keccak256("tenant"));
    address internal tenant = vm.addr(tenantKey);
    address internal stranger = makeAddr("stranger");

    TestToken internal token;
    TestToken internal stakeToken;
    ProviderRegistry internal registry;
    LeaseEscrow internal escrow;
    uint256 internal providerId;

    /// @dev Decimals of the payment token; subclasses run the same tests with 6 and 18.
    function decimals() internal pure virtual returns (uint8);

    function unit() internal pure returns (uint256) {
        return 10 ** decimals();
    }

    function setUp() public virtual {
        token = new TestToken("Berth USD", "bUSD", decimals());
        stakeToken = new TestToken("Berth Stake", "bSTK", 18);
        registry = new ProviderRegistry(admin, stakeToken, 100e18, UNBONDING_DELAY);
        escrow = new LeaseEscrow(admin, registry, arbiter, timing());
        vm.startPrank(admin);
        registry.setEscrow(address(escrow));
        registry.setPaymentToken(address(token), true);
        vm.stopPrank();
        vm.label(address(escrow), "escrow");
        vm.label(address(registry), "registry");
        providerId = registerProvider(providerOwner, operator);
        token.mint(tenant, 1_000_000 * unit());
        vm.prank(tenant);
        token.approve(address(escrow), type(uint256).max);
    }

    function timing() internal pure returns (uint256[6] memory) {
        return
            [ACCEPT_TIMEOUT, CHALLENGE_WINDOW, FINAL_REPORT_WINDOW, MIN_RUNWAY, GRACE_PERIOD, MIN_OPEN_RUNWAY];
    }

    // ---------------------------------------------------------------- prices

    /// @dev 0.01 token per lease-hour, scaled.
    function baseRate() internal pure returns (uint128) {
        return uint128(unit() * PRICE_SCALE / 100 / 3600);
    }

    /// @dev 0.02 token per core-hour, per millicore-second, scaled.
    function cpuPrice() internal pure returns (uint128) {
        return uint128(unit() * PRICE_SCALE * 2 / 100 / 1000 / 3600);
    }

    /// @dev 0.01 token per GiB-hour, per MiB-second, scaled.
    function memoryPrice() internal pure returns (uint128) {
        return uint128(unit() * PRICE_SCALE / 100 / 1024 / 3600);
    }

    /// @dev 0.0001 token per GiB-hour of storage, scaled.
    function storagePrice() internal pure returns (uint128) {
        return uint128(unit() * PRICE_SCALE / 10_000 / 3600);
    }

    function prices() internal pure returns (uint128[4] memory) {
        return [baseRate(), cpuPrice(), memoryPrice(), storagePrice()];
    }

    /// @dev The maximum charge per second of a CPU/MEM/STO lease, scaled.
    function leaseRate() internal pure returns (uint256) {
        return
            baseRate() + uint256(CPU) * cpuPrice() + uint256(MEM) * memoryPrice() + uint256(STO)
                * storagePrice();
    }

    /// @dev A deposit covering `secs` seconds at the maximum rate (rounded up).
    function depositFor(uint256 secs) internal pure returns (uint256) {
        return (secs * leaseRate() + PRICE_SCALE - 1) / PRICE_SCALE;
    }

    // ---------------------------------------------------------------- lifecycle helpers

    function registerProvider(address owner_, address operator_) internal returns (uint256 id) {
        stakeToken.mint(owner_, 100e18);
        vm.startPrank(owner_);
        stakeToken.approve(address(registry), 100e18);
        id = registry.register(
            operator_,
            address(token),
            "https://gateway.example:8443",
            "region=eu-west,tier=standard",
            [uint32(8000), uint32(16_384), uint32(100)],
            prices(),
            100e18
        );
        vm.stopPrank();
    }

    function openLease(uint256 deposit) internal returns (uint256 leaseId) {
        vm.prank(tenant);
        leaseId = escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
    }

    function openConfirmed(uint256 deposit) internal returns (uint256 leaseId) {
        leaseId = openLease(deposit);
        vm.prank(operator);
        escrow.confirmLease(leaseId, "http://127.0.0.1:30080");
    }

    function report(uint256 leaseId, uint40 to, uint64 cpuUnits, uint64 memoryUnits, uint64 storageUnits)
        internal
        returns (uint256 charge)
    {
        Lease memory l = escrow.getLease(leaseId);
        uint256 before = l.balance;
        vm.prank(operator);
        escrow.reportUsage(
            leaseId,
            l.reportCount + 1,
            l.billedUntil,
            to,
            cpuUnits,
            memoryUnits,
            storageUnits,
            keccak256("samples")
        );
        charge = before - escrow.getLease(leaseId).balance;
    }

    /// @dev A report at full reservation for every second since the last one.
    function reportFull(uint256 leaseId) internal returns (uint256 charge) {
        Lease memory l = escrow.getLease(leaseId);
        uint64 period = uint64(block.timestamp - l.billedUntil);
        charge = report(leaseId, uint40(block.timestamp), CPU * period, MEM * period, STO * period);
    }

    function expectedCharge(uint256 period, uint256 cpuUnits, uint256 memoryUnits, uint256 storageUnits)
        internal
        pure
        returns (uint256)
    {
        return (period
                * baseRate()
                + cpuUnits
                * cpuPrice()
                + memoryUnits
                * memoryPrice()
                + storageUnits
                * storagePrice()) / PRICE_SCALE;
    }

    /// @dev Warps to the first second at which the lease's runway is below the minimum.
    function warpToSuspendable(uint256 leaseId) internal {
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        vm.warp(depletion - MIN_RUNWAY + 1);
    }

    /// @dev A confirmed lease funded for the opening minimum, warped into and suspended.
    function openSuspended() internal returns (uint256 leaseId) {
        leaseId = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        warpToSuspendable(leaseId);
        vm.prank(operator);
        escrow.suspendLease(leaseId);
    }

    function usage(uint256 leaseId, uint32 sequence, uint40 from, uint40 to, uint64 cpuUnits)
        internal
        pure
        returns (UsageReport memory)
    {
        return UsageReport(leaseId, sequence, from, to, cpuUnits, 0, 0, bytes32(uint256(sequence)));
    }
}
