// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ILeaseEscrow} from "../../../src/interfaces/ILeaseEscrow.sol";
import {Errors} from "../../../src/libraries/Errors.sol";
import {Lease, LeaseStatus, Resource, UsageReport} from "../../../src/types/BerthTypes.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract ReportUsage_Unit_Test is BerthFixture {
    function test_WhenValid_ChargesTheFormula() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = report(leaseId, uint40(block.timestamp), 100 * 600, 256 * 600, 1 * 600);
        assertEq(charge, expectedCharge(600, 100 * 600, 256 * 600, 600), "charge formula");
        assertEq(escrow.pendingOf(leaseId), charge, "charge pending in challenge window");
        assertEq(escrow.claimableOf(leaseId), 0, "nothing matured");
        Lease memory l = escrow.getLease(leaseId);
        assertEq(l.reportCount, 1, "sequence");
        assertEq(l.billedUntil, block.timestamp, "billed until now");
    }

    function test_WhenValid_EmitsEventWithTenantTopic() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        uint256 charge = expectedCharge(60, 60, 0, 0);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.UsageReported(
            leaseId, providerId, tenant, 1, from, from + 60, 60, 0, 0, charge, "root"
        );
        vm.prank(operator);
        escrow.reportUsage(leaseId, 1, from, from + 60, 60, 0, 0, bytes32("root"));
    }

    function test_RevertWhen_CallerNotOperator() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotOperator.selector, leaseId, stranger));
        escrow.reportUsage(leaseId, 1, from, from + 60, 0, 0, 0, 0);
    }

    function test_RevertWhen_SequenceWrong() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_InvalidSequence.selector, leaseId, 1, 2));
        escrow.reportUsage(leaseId, 2, from, from + 60, 0, 0, 0, 0);
    }

    function test_RevertWhen_PeriodLeavesAGap() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_NonContiguousPeriod.selector, leaseId, from, from + 1)
        );
        escrow.reportUsage(leaseId, 1, from + 1, from + 60, 0, 0, 0, 0);
    }

    function test_RevertWhen_PeriodOverlaps() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_NonContiguousPeriod.selector, leaseId, from, from - 1)
        );
        escrow.reportUsage(leaseId, 1, from - 1, from + 60, 0, 0, 0, 0);
    }

    function test_RevertWhen_PeriodEmpty() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidPeriod.selector, leaseId, from, from, block.timestamp
            )
        );
        escrow.reportUsage(leaseId, 1, from, from, 0, 0, 0, 0);
    }

    function test_RevertWhen_PeriodInTheFuture() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidPeriod.selector, leaseId, from, from + 61, block.timestamp
            )
        );
        escrow.reportUsage(leaseId, 1, from, from + 61, 0, 0, 0, 0);
    }

    function test_RevertWhen_CpuUnitsExceedReservation() public {
        _expectUnitsRevert(Resource.Cpu, CPU);
    }

    function test_RevertWhen_MemoryUnitsExceedReservation() public {
        _expectUnitsRevert(Resource.Memory, MEM);
    }

    function test_RevertWhen_StorageUnitsExceedReservation() public {
        _expectUnitsRevert(Resource.Storage, STO);
    }

    function _expectUnitsRevert(Resource resource, uint64 reserved) private {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        uint64[3] memory units;
        units[uint8(resource)] = reserved * 60 + 1;
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_UnitsExceedReservation.selector,
                leaseId,
                resource,
                reserved * 60 + 1,
                reserved * 60
            )
        );
        escrow.reportUsage(leaseId, 1, from, from + 60, units[0], units[1], units[2], 0);
    }

    function test_RevertGiven_Pending() public {
        uint256 leaseId = openLease(depositFor(10 hours));
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidLeaseStatus.selector, leaseId, LeaseStatus.Pending
            )
        );
        escrow.reportUsage(leaseId, 1, 0, uint40(block.timestamp), 0, 0, 0, 0);
    }

    function test_WhenChargeAboveBalance_CappedAtBalance() public {
        uint256 deposit = depositFor(MIN_OPEN_RUNWAY);
        uint256 leaseId = openConfirmed(deposit);
        vm.warp(block.timestamp + 2 * MIN_OPEN_RUNWAY);
        assertEq(reportFull(leaseId), deposit, "charge capped at the balance");
        assertEq(escrow.getLease(leaseId).balance, 0, "balance zero, never negative");
        vm.warp(block.timestamp + 60);
        assertEq(reportFull(leaseId), 0, "an empty balance yields no charge");
    }

    function test_WhenClosed_OnlyUpToTheCloseInsideTheWindow() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        uint40 closedAt = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        Lease memory l = escrow.getLease(leaseId);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InvalidPeriod.selector, leaseId, l.billedUntil, closedAt + 1, closedAt
            )
        );
        escrow.reportUsage(leaseId, 1, l.billedUntil, closedAt + 1, 0, 0, 0, 0);
        assertGt(report(leaseId, closedAt, CPU * 600, 0, 0), 0, "final report accepted");
        vm.warp(closedAt + FINAL_REPORT_WINDOW + 1);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(Errors.LeaseEscrow_FinalReportWindowClosed.selector, leaseId, closedAt)
        );
        escrow.reportUsage(leaseId, 2, closedAt, closedAt, 0, 0, 0, 0);
    }

    /// While suspended only the base rate is billed: any unit after the suspension is refused.
    function test_RevertWhen_UnitsReportedForASuspendedPeriod() public {
        uint256 leaseId = openSuspended();
        Lease memory l = escrow.getLease(leaseId);
        uint256 running = l.suspendedAt - l.billedUntil;
        vm.warp(block.timestamp + 600);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_UnitsExceedReservation.selector,
                leaseId,
                Resource.Cpu,
                CPU * running + 1,
                CPU * running
            )
        );
        escrow.reportUsage(
            leaseId, 1, l.billedUntil, uint40(block.timestamp), CPU * uint64(running) + 1, 0, 0, 0
        );
    }

    function test_WhenSuspended_BaseRateStillBilled() public {
        uint256 leaseId = openSuspended();
        Lease memory l = escrow.getLease(leaseId);
        uint64 running = uint64(l.suspendedAt - l.billedUntil);
        vm.warp(block.timestamp + 600);
        uint256 period = block.timestamp - l.billedUntil;
        uint256 charge = report(leaseId, uint40(block.timestamp), CPU * running, MEM * running, STO * running);
        assertEq(
            charge, expectedCharge(period, CPU * running, MEM * running, STO * running), "base rate over all"
        );
    }

    /// After a resumption, units are allowed again outside the idle interval only.
    function test_WhenResumed_UnitsOnlyOutsideTheIdleInterval() public {
        uint256 leaseId = openSuspended();
        uint256 suspendedAt = block.timestamp;
        vm.warp(block.timestamp + 300);
        vm.prank(tenant);
        escrow.topUp(leaseId, depositFor(10 hours));
        vm.warp(block.timestamp + 200);
        Lease memory l = escrow.getLease(leaseId);
        uint64 running = uint64(suspendedAt - l.billedUntil + 200);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_UnitsExceedReservation.selector,
                leaseId,
                Resource.Memory,
                MEM * running + 1,
                MEM * running
            )
        );
        escrow.reportUsage(leaseId, 1, l.billedUntil, uint40(block.timestamp), 0, MEM * running + 1, 0, 0);
        report(leaseId, uint40(block.timestamp), 0, MEM * running, 0);
        vm.warp(block.timestamp + 100);
        report(leaseId, uint40(block.timestamp), CPU * 100, MEM * 100, STO * 100); // idle interval billed: full caps
    }
}

abstract contract ReportUsageBatch_Unit_Test is BerthFixture {
    function test_WhenValid_ChargesEveryLease() public {
        uint256 a = openConfirmed(depositFor(10 hours));
        uint256 b = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 100);
        UsageReport[] memory reports = new UsageReport[](2);
        reports[0] = usage(a, 1, from, from + 100, 1000);
        reports[1] = usage(b, 1, from, from + 100, 2000);
        vm.prank(operator);
        escrow.reportUsageBatch(reports);
        assertEq(escrow.pendingOf(a), expectedCharge(100, 1000, 0, 0), "lease a charged");
        assertEq(escrow.pendingOf(b), expectedCharge(100, 2000, 0, 0), "lease b charged");
    }

    function test_RevertWhen_OneReportInvalid() public {
        uint256 a = openConfirmed(depositFor(10 hours));
        uint256 b = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 100);
        UsageReport[] memory reports = new UsageReport[](2);
        reports[0] = usage(a, 1, from, from + 100, 1000);
        reports[1] = usage(b, 2, from, from + 100, 2000);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_InvalidSequence.selector, b, 1, 2));
        escrow.reportUsageBatch(reports);
        assertEq(escrow.getLease(a).reportCount, 0, "first report rolled back");
    }

    function test_RevertWhen_BatchEmpty() public {
        vm.prank(operator);
        vm.expectRevert(Errors.LeaseEscrow_EmptyBatch.selector);
        escrow.reportUsageBatch(new UsageReport[](0));
    }

    function test_RevertWhen_LeaseOfAnotherOperator() public {
        uint256 otherProvider = registerProvider(stranger, stranger);
        vm.prank(tenant);
        uint256 other = escrow.openLease(
            otherProvider, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(3 hours), type(uint256).max
        );
        vm.prank(stranger);
        escrow.confirmLease(other, "http://other");
        uint256 mine = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 100);
        UsageReport[] memory reports = new UsageReport[](2);
        reports[0] = usage(mine, 1, from, from + 100, 0);
        reports[1] = usage(other, 1, from, from + 100, 0);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_NotOperator.selector, other, operator));
        escrow.reportUsageBatch(reports);
    }
}

contract ReportUsage6_Unit_Test is ReportUsage_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract ReportUsage18_Unit_Test is ReportUsage_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}

contract ReportUsageBatch6_Unit_Test is ReportUsageBatch_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract ReportUsageBatch18_Unit_Test is ReportUsageBatch_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
