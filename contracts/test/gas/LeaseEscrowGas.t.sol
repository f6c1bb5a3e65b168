// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Lease, UsageReport} from "../../src/types/BerthTypes.sol";
import {BerthFixture} from "../utils/BerthFixture.sol";
import {vm} from "../utils/Vm.sol";

/// @notice Execution gas of single operations as a user pays it. Run with `--isolate` (as
/// `scripts/test` and `forge snapshot` do): every call of a test function is then its own
/// transaction, so storage starts cold as on chain and nothing a test reads before the measured
/// call warms it. Each test logs the measured call's gas (`-vv`) less the 21,000 base and the
/// calldata cost, i.e. the execution gas of the gas table in docs/contracts.md; `.gas-snapshot`
/// records the test functions.
contract LeaseEscrowGasTest is BerthFixture {
    uint256 internal active; // a confirmed lease with an hour billed and matured
    uint256 internal pending; // an open, unconfirmed lease
    uint256 internal fresh; // a confirmed lease never reported
    uint256 internal suspendable; // a confirmed lease whose runway is below the minimum
    uint256[] internal batch; // 101 confirmed leases of the same provider, each reported once

    function decimals() internal pure override returns (uint8) {
        return 6;
    }

    function setUp() public override {
        super.setUp();
        vm.prank(providerOwner);
        registry.updateCapacity(providerId, type(uint32).max, type(uint32).max, type(uint32).max);
        token.mint(stranger, 1_000_000 * unit());
        token.mint(providerOwner, unit()); // steady state: the owner has been paid before
        vm.prank(stranger);
        token.approve(address(escrow), type(uint256).max);
        active = openConfirmed(depositFor(100 hours));
        pending = openLease(depositFor(100 hours));
        for (uint256 i; i < 101; ++i) {
            batch.push(openConfirmed(depositFor(100 hours)));
        }
        vm.warp(block.timestamp + 1 hours);
        reportFull(active);
        vm.warp(block.timestamp + 2 days);
        for (uint256 i; i < 101; ++i) {
            reportFull(batch[i]);
        }
        fresh = openConfirmed(depositFor(100 hours));
        suspendable = openConfirmed(depositFor(MIN_OPEN_RUNWAY));
        vm.warp(block.timestamp + 1 hours);
        vm.prank(tenant);
        escrow.setAutoTopUp(
            suspendable,
            depositFor(10 hours),
            depositFor(100 hours),
            block.timestamp + 7 days,
            1 hours,
            6 hours
        );
        vm.warp(block.timestamp + 1);
    }

    /// @dev Gas of the last call less the transaction's intrinsic cost (base and calldata).
    function executionGas(bytes memory data) internal view returns (uint256) {
        uint256 calldataGas;
        for (uint256 i; i < data.length; ++i) {
            calldataGas += data[i] == 0 ? 4 : 16;
        }
        return lastCallGas() - 21_000 - calldataGas;
    }

    function _measure(string memory name, address from, bytes memory data) private returns (uint256 gas) {
        vm.prank(from);
        (bool ok,) = address(escrow).call(data);
        require(ok, name);
        gas = executionGas(data);
        emit log_named_uint(name, gas);
    }

    function test_gas_openLease() public {
        _measure(
            "openLease + deposit",
            tenant,
            abi.encodeCall(
                escrow.openLease,
                (providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max)
            )
        );
    }

    function test_gas_openLeaseWithPermit() public {
        vm.prank(tenant);
        token.approve(address(escrow), 0);
        _measure("openLeaseWithPermit", tenant, _permitCall(depositFor(2 hours), block.timestamp + 1 hours));
    }

    function _permitCall(uint256 deposit, uint256 deadline) private view returns (bytes memory) {
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                token.DOMAIN_SEPARATOR(),
                keccak256(
                    abi.encode(
                        keccak256(
                            "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
                        ),
                        tenant,
                        address(escrow),
                        deposit,
                        token.nonces(tenant),
                        deadline
                    )
                )
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(tenantKey, digest);
        // Encoded by hand (eleven arguments are too many for one expression): the heads, the
        // string's offset (11 words) and its empty tail.
        return abi.encodePacked(
            escrow.openLeaseWithPermit.selector,
            abi.encode(providerId, CPU, MEM, STO, MANIFEST_HASH),
            abi.encode(uint256(11 * 32), deposit, type(uint256).max, deadline),
            abi.encode(r, bytes32((uint256(v - 27) << 255) | uint256(s)), uint256(0))
        );
    }

    function test_gas_topUp() public {
        _measure("topUp", stranger, abi.encodeCall(escrow.topUp, (active, unit())));
    }

    function test_gas_confirmLease() public {
        _measure(
            "confirmLease", operator, abi.encodeCall(escrow.confirmLease, (pending, "http://127.0.0.1:30080"))
        );
    }

    function test_gas_reportUsage_first() public {
        Lease memory l = escrow.getLease(fresh);
        uint64 period = uint64(block.timestamp - l.billedUntil);
        _measure(
            "reportUsage (first on a lease)",
            operator,
            abi.encodeCall(
                escrow.reportUsage,
                (
                    fresh,
                    1,
                    l.billedUntil,
                    uint40(block.timestamp),
                    CPU * period / 2,
                    MEM * period,
                    STO,
                    keccak256("s")
                )
            )
        );
    }

    function test_gas_reportUsage() public {
        Lease memory l = escrow.getLease(batch[0]);
        uint64 period = uint64(block.timestamp - l.billedUntil);
        _measure(
            "reportUsage",
            operator,
            abi.encodeCall(
                escrow.reportUsage,
                (
                    batch[0],
                    l.reportCount + 1,
                    l.billedUntil,
                    uint40(block.timestamp),
                    CPU * period / 2,
                    MEM * period,
                    STO,
                    keccak256("s")
                )
            )
        );
    }

    function test_gas_reportUsageBatch1() public {
        _measure("reportUsageBatch(1)", operator, _batch(1));
    }

    function test_gas_reportUsageBatch100() public {
        _measure("reportUsageBatch(100)", operator, _batch(100));
    }

    function test_gas_reportUsageBatch101() public {
        _measure("reportUsageBatch(101)", operator, _batch(101));
    }

    function test_gas_claim() public {
        _measure("claim", operator, abi.encodeCall(escrow.claim, (active)));
    }

    function test_gas_closeLease() public {
        _measure("closeLease", tenant, abi.encodeCall(escrow.closeLease, (active)));
    }

    function test_gas_closeAndWithdraw() public {
        uint256 close = _measure("closeLease", tenant, abi.encodeCall(escrow.closeLease, (active)));
        vm.warp(block.timestamp + FINAL_REPORT_WINDOW + 1);
        uint256 withdraw = _measure("withdraw", tenant, abi.encodeCall(escrow.withdraw, (active)));
        emit log_named_uint("closeLease + withdraw", close + withdraw);
    }

    function test_gas_updateManifest() public {
        _measure(
            "updateManifest", tenant, abi.encodeCall(escrow.updateManifest, (active, keccak256("v2"), ""))
        );
    }

    function test_gas_suspendLease() public {
        vm.warp(escrow.depletionTimeOf(suspendable) - MIN_RUNWAY + 1);
        _measure("suspendLease", operator, abi.encodeCall(escrow.suspendLease, (suspendable)));
    }

    function test_gas_autoTopUp() public {
        _measure("autoTopUp", operator, abi.encodeCall(escrow.autoTopUp, (suspendable)));
    }

    function _batch(uint256 n) private view returns (bytes memory) {
        UsageReport[] memory reports = new UsageReport[](n);
        for (uint256 i; i < n; ++i) {
            Lease memory l = escrow.getLease(batch[i]);
            uint64 period = uint64(block.timestamp - l.billedUntil);
            reports[i] = UsageReport(
                batch[i],
                l.reportCount + 1,
                l.billedUntil,
                uint40(block.timestamp),
                CPU * period / 2,
                MEM * period,
                0,
                0
            );
        }
        return abi.encodeCall(escrow.reportUsageBatch, (reports));
    }
}
