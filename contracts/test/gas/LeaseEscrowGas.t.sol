// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Lease, UsageReport} from "../../src/types/BerthTypes.sol";
import {BerthFixture} from "../utils/BerthFixture.sol";
import {vm} from "../utils/Vm.sol";

/// @notice Execution gas of single operations, each in its own transaction after `setUp` (so
/// storage starts cold, as on chain). `forge snapshot` records these test functions in
/// `.gas-snapshot`; each logs the isolated call's gas (`-vv`) for the gas table in docs.
contract LeaseEscrowGasTest is BerthFixture {
    uint256 internal active; // a confirmed lease with a full hour billed and matured
    uint256 internal pending; // an open, unconfirmed lease
    uint256[] internal batch; // 101 confirmed leases of the same provider

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
        // a lease already exists, so the escrow's token balance slot is warm-valued (non-zero)
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
        vm.warp(block.timestamp + 1 hours);
    }

    function test_gas_openLease() public {
        vm.prank(tenant);
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max);
        emit log_named_uint("openLease", lastCallGas());
    }

    function test_gas_topUp() public {
        vm.prank(stranger);
        escrow.topUp(active, unit());
        emit log_named_uint("topUp", lastCallGas());
    }

    function test_gas_confirmLease() public {
        vm.prank(operator);
        escrow.confirmLease(pending, "http://127.0.0.1:30080");
        emit log_named_uint("confirmLease", lastCallGas());
    }

    function test_gas_claim() public {
        vm.prank(operator);
        escrow.claim(active);
        emit log_named_uint("claim", lastCallGas());
    }

    function test_gas_closeLease() public {
        vm.prank(tenant);
        escrow.closeLease(active);
        emit log_named_uint("closeLease", lastCallGas());
    }

    function test_gas_closeAndWithdraw() public {
        vm.prank(tenant);
        escrow.closeLease(active);
        uint256 closeGas = lastCallGas();
        vm.warp(block.timestamp + FINAL_REPORT_WINDOW + 1);
        vm.prank(tenant);
        escrow.withdraw(active);
        emit log_named_uint("withdraw", lastCallGas());
        emit log_named_uint("closeLease + withdraw", closeGas + lastCallGas());
    }

    function test_gas_reportUsage() public {
        Lease memory l = escrow.getLease(active);
        vm.prank(operator);
        escrow.reportUsage(
            active, l.reportCount + 1, l.billedUntil, uint40(block.timestamp), 1000, 1000, 1, 0
        );
        emit log_named_uint("reportUsage", lastCallGas());
    }

    function test_gas_reportUsageBatch1() public {
        emit log_named_uint("reportUsageBatch(1)", _batch(1));
    }

    function test_gas_reportUsageBatch10() public {
        emit log_named_uint("reportUsageBatch(10)", _batch(10));
    }

    function test_gas_reportUsageBatch50() public {
        emit log_named_uint("reportUsageBatch(50)", _batch(50));
    }

    function test_gas_reportUsageBatch100() public {
        uint256 g100 = _batch(100);
        emit log_named_uint("reportUsageBatch(100)", g100);
    }

    function test_gas_reportUsageBatchMarginal() public {
        uint256 snapshot = vm.snapshotState();
        uint256 g1 = _batch(1);
        vm.revertToState(snapshot);
        uint256 g101 = _batch(101);
        emit log_named_uint("per extra lease in a batch", (g101 - g1) / 100);
    }

    function _batch(uint256 n) private returns (uint256) {
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
        vm.prank(operator);
        escrow.reportUsageBatch(reports);
        return lastCallGas();
    }
}
