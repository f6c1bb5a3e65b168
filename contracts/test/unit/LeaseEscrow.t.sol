// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {ILeaseEscrow} from "../../src/interfaces/ILeaseEscrow.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {
    CloseReason,
    Lease,
    LeaseStatus,
    PRICE_SCALE,
    RejectReason,
    UsageReport
} from "../../src/types/BerthTypes.sol";
import {FeeOnTransferToken} from "../mocks/FeeOnTransferToken.sol";
import {BerthFixture} from "../utils/BerthFixture.sol";
import {vm} from "../utils/Vm.sol";

/// @notice Every external function of LeaseEscrow: success and each revert path.
abstract contract LeaseEscrowTest is BerthFixture {
    // ---------------------------------------------------------------- open

    function test_open_storesLeaseAndPullsDeposit() public {
        uint256 deposit = depositFor(2 hours);
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
        assertEq(l.manifestHash, MANIFEST_HASH, "manifest hash");
        assertEq(l.createdAt, block.timestamp, "created");
        assertEq(l.cpuMillis, CPU, "cpu");
        assertEq(before - token.balanceOf(tenant), deposit, "deposit pulled");
        assertEq(token.balanceOf(address(escrow)), deposit, "escrow holds deposit");
        assertEq(escrow.leaseCount(), 1, "count");
        assertEq(escrow.maxRateOf(leaseId), leaseRate(), "max rate");
    }

    function test_open_revertsWhenEscrowPaused() public {
        vm.prank(admin);
        escrow.pause();
        vm.prank(tenant);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max);
    }

    function test_open_revertsOnZeroResources() public {
        vm.prank(tenant);
        vm.expectRevert(ILeaseEscrow.ZeroResources.selector);
        escrow.openLease(providerId, 0, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max);
    }

    function test_open_revertsOnEmptyManifestHash() public {
        vm.prank(tenant);
        vm.expectRevert(ILeaseEscrow.EmptyManifestHash.selector);
        escrow.openLease(providerId, CPU, MEM, STO, bytes32(0), "", depositFor(2 hours), type(uint256).max);
    }

    function test_open_revertsOnZeroDeposit() public {
        vm.prank(tenant);
        vm.expectRevert(ILeaseEscrow.ZeroAmount.selector);
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", 0, type(uint256).max);
    }

    function test_open_revertsWhenRateAboveGuard() public {
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.RateAboveMax.selector, leaseRate(), leaseRate() - 1)
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), leaseRate() - 1);
    }

    function test_open_guardCatchesPriceChangeInFlight() public {
        uint256 quoted = leaseRate();
        vm.prank(providerOwner);
        registry.updatePrices(providerId, baseRate() * 2, cpuPrice(), memoryPrice(), storagePrice());
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.RateAboveMax.selector, quoted + baseRate(), quoted)
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(4 hours), quoted);
    }

    function test_open_revertsOnInsufficientDeposit() public {
        uint256 required = depositFor(MIN_RUNWAY);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InsufficientDeposit.selector, required - 1, required)
        );
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", required - 1, type(uint256).max);
    }

    function test_open_revertsWhenTokenDelisted() public {
        vm.prank(admin);
        registry.setPaymentToken(address(token), false);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.TokenNotAllowed.selector, address(token)));
        escrow.openLease(providerId, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max);
    }

    function test_open_refusesFeeOnTransferToken() public {
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
        uint256 deposit = depositFor(2 hours);
        fot.mint(tenant, deposit);
        vm.startPrank(tenant);
        fot.approve(address(escrow), deposit);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.FeeOnTransferToken.selector, address(fot), deposit, deposit - deposit / 100
            )
        );
        escrow.openLease(fotProvider, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max);
        vm.stopPrank();
    }

    function test_openWithPermit_oneTransaction() public {
        vm.prank(tenant);
        token.approve(address(escrow), 0);
        uint256 deposit = depositFor(2 hours);
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(deposit, block.timestamp + 1 hours);
        vm.prank(tenant);
        uint256 leaseId = escrow.openLeaseWithPermit(
            providerId,
            CPU,
            MEM,
            STO,
            MANIFEST_HASH,
            "",
            deposit,
            type(uint256).max,
            block.timestamp + 1 hours,
            r,
            _vs(v, s)
        );
        assertEq(escrow.getLease(leaseId).balance, deposit, "funded through permit");
    }

    function test_openWithPermit_survivesFrontRunPermit() public {
        vm.prank(tenant);
        token.approve(address(escrow), 0);
        uint256 deposit = depositFor(2 hours);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(deposit, deadline);
        token.permit(tenant, address(escrow), deposit, deadline, v, r, s); // front-runner uses it
        vm.prank(tenant);
        uint256 leaseId = escrow.openLeaseWithPermit(
            providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max, deadline, r, _vs(v, s)
        );
        assertEq(escrow.getLease(leaseId).balance, deposit, "allowance from the front-run permit used");
    }

    function test_openWithPermit_badPermitWithoutAllowanceReverts() public {
        vm.prank(tenant);
        token.approve(address(escrow), 0);
        uint256 deposit = depositFor(2 hours);
        vm.prank(tenant);
        vm.expectRevert();
        escrow.openLeaseWithPermit(
            providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max, block.timestamp, 0, 0
        );
    }

    /// @dev EIP-2098 compact form: v in the top bit of s.
    function _vs(uint8 v, bytes32 s) private pure returns (bytes32) {
        return bytes32((uint256(v - 27) << 255) | uint256(s));
    }

    function _signPermit(uint256 value, uint256 deadline) private view returns (uint8, bytes32, bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
                ),
                tenant,
                address(escrow),
                value,
                token.nonces(tenant),
                deadline
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        return vm.sign(tenantKey, digest);
    }

    // ---------------------------------------------------------------- confirm / reject / cancel

    function test_confirm_startsBilling() public {
        uint256 leaseId = openLease(depositFor(2 hours));
        vm.warp(block.timestamp + 30);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseConfirmed(leaseId, providerId, "http://127.0.0.1:30080");
        vm.prank(operator);
        escrow.confirmLease(leaseId, "http://127.0.0.1:30080");
        Lease memory l = escrow.getLease(leaseId);
        assertEq(uint256(l.status), uint256(LeaseStatus.Active), "active");
        assertEq(l.confirmedAt, block.timestamp, "confirmed now");
        assertEq(l.billedUntil, block.timestamp, "billing starts at confirmation");
        assertEq(l.endpoint, "http://127.0.0.1:30080", "endpoint");
    }

    function test_confirm_reverts() public {
        uint256 leaseId = openLease(depositFor(2 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotOperator.selector, leaseId, stranger));
        escrow.confirmLease(leaseId, "http://x");
        vm.startPrank(operator);
        vm.expectRevert(ILeaseEscrow.EmptyEndpoint.selector);
        escrow.confirmLease(leaseId, "");
        escrow.confirmLease(leaseId, "http://x");
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active)
        );
        escrow.confirmLease(leaseId, "http://x");
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.UnknownLease.selector, 99));
        escrow.confirmLease(99, "http://x");
        vm.stopPrank();
    }

    function test_reject_refundsInFull() public {
        uint256 deposit = depositFor(2 hours);
        uint256 leaseId = openLease(deposit);
        uint256 before = token.balanceOf(tenant);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseRejected(leaseId, providerId, RejectReason.PolicyViolation);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseClosed(leaseId, providerId, tenant, CloseReason.Rejected, block.timestamp);
        vm.prank(operator);
        escrow.rejectLease(leaseId, RejectReason.PolicyViolation);
        assertEq(token.balanceOf(tenant) - before, deposit, "full refund");
        Lease memory l = escrow.getLease(leaseId);
        assertEq(uint256(l.status), uint256(LeaseStatus.Rejected), "rejected");
        assertEq(l.balance, 0, "nothing left");
        assertEq(registry.getProvider(providerId).activeLeases, 0, "capacity released");
    }

    function test_reject_reverts() public {
        uint256 leaseId = openConfirmed(depositFor(2 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotOperator.selector, leaseId, stranger));
        escrow.rejectLease(leaseId, RejectReason.Unspecified);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active)
        );
        escrow.rejectLease(leaseId, RejectReason.Unspecified);
    }

    function test_cancel_afterAcceptTimeout() public {
        uint256 deposit = depositFor(2 hours);
        uint256 leaseId = openLease(deposit);
        assertEq(escrow.refundableOf(leaseId), 0, "not yet refundable");
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.AcceptTimeoutNotReached.selector, leaseId, block.timestamp + ACCEPT_TIMEOUT
            )
        );
        escrow.cancelLease(leaseId);
        vm.warp(block.timestamp + ACCEPT_TIMEOUT);
        assertEq(escrow.refundableOf(leaseId), deposit, "refundable after timeout");
        uint256 before = token.balanceOf(tenant);
        vm.prank(tenant);
        escrow.cancelLease(leaseId);
        assertEq(token.balanceOf(tenant) - before, deposit, "full refund");
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Cancelled), "cancelled");
        assertEq(uint256(escrow.getLease(leaseId).closeReason), uint256(CloseReason.Cancelled), "reason");
    }

    function test_cancel_reverts() public {
        uint256 leaseId = openConfirmed(depositFor(2 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotTenant.selector, leaseId, stranger));
        escrow.cancelLease(leaseId);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Active)
        );
        escrow.cancelLease(leaseId);
    }

    // ---------------------------------------------------------------- top-up

    function test_topUp_byAnyone() public {
        uint256 leaseId = openConfirmed(depositFor(2 hours));
        token.mint(stranger, 5 * unit());
        vm.startPrank(stranger);
        token.approve(address(escrow), 5 * unit());
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseToppedUp(leaseId, stranger, 5 * unit(), depositFor(2 hours) + 5 * unit());
        escrow.topUp(leaseId, 5 * unit());
        vm.stopPrank();
        assertEq(escrow.getLease(leaseId).balance, depositFor(2 hours) + 5 * unit(), "balance grew");
    }

    function test_topUp_reverts() public {
        uint256 leaseId = openConfirmed(depositFor(2 hours));
        vm.startPrank(tenant);
        vm.expectRevert(ILeaseEscrow.ZeroAmount.selector);
        escrow.topUp(leaseId, 0);
        escrow.closeLease(leaseId);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Closing)
        );
        escrow.topUp(leaseId, 1);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.UnknownLease.selector, 42));
        escrow.topUp(42, 1);
        vm.stopPrank();
    }

    // ---------------------------------------------------------------- usage reports

    function test_report_chargesAndCapsPerResource() public {
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

    function test_report_emitsEvent() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        uint256 charge = expectedCharge(60, 60, 0, 0);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.UsageReported(
            leaseId, providerId, 1, from, from + 60, 60, 0, 0, charge, bytes32("root")
        );
        vm.prank(operator);
        escrow.reportUsage(leaseId, 1, from, from + 60, 60, 0, 0, bytes32("root"));
    }

    function test_report_revertsForStranger() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotOperator.selector, leaseId, stranger));
        escrow.reportUsage(leaseId, 1, from, from + 60, 0, 0, 0, 0);
    }

    function test_report_revertsOnWrongSequence() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.InvalidSequence.selector, leaseId, 1, 2));
        escrow.reportUsage(leaseId, 2, from, from + 60, 0, 0, 0, 0);
    }

    function test_report_revertsOnGapOrOverlap() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.startPrank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.NonContiguousPeriod.selector, leaseId, from, from + 1)
        );
        escrow.reportUsage(leaseId, 1, from + 1, from + 60, 0, 0, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.NonContiguousPeriod.selector, leaseId, from, from - 1)
        );
        escrow.reportUsage(leaseId, 1, from - 1, from + 60, 0, 0, 0, 0);
        vm.stopPrank();
    }

    function test_report_revertsOnEmptyOrFuturePeriod() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.startPrank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidPeriod.selector, leaseId, from, from, block.timestamp)
        );
        escrow.reportUsage(leaseId, 1, from, from, 0, 0, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.InvalidPeriod.selector, leaseId, from, from + 61, block.timestamp
            )
        );
        escrow.reportUsage(leaseId, 1, from, from + 61, 0, 0, 0, 0);
        vm.stopPrank();
    }

    function test_report_revertsWhenUnitsExceedReservation() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 60);
        vm.startPrank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.UnitsExceedReservation.selector, leaseId, 0, CPU * 60 + 1, CPU * 60
            )
        );
        escrow.reportUsage(leaseId, 1, from, from + 60, CPU * 60 + 1, 0, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.UnitsExceedReservation.selector, leaseId, 1, MEM * 60 + 1, MEM * 60
            )
        );
        escrow.reportUsage(leaseId, 1, from, from + 60, 0, MEM * 60 + 1, 0, 0);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.UnitsExceedReservation.selector, leaseId, 2, STO * 60 + 1, STO * 60
            )
        );
        escrow.reportUsage(leaseId, 1, from, from + 60, 0, 0, STO * 60 + 1, 0);
        vm.stopPrank();
    }

    function test_report_revertsBeforeConfirmation() public {
        uint256 leaseId = openLease(depositFor(10 hours));
        vm.warp(block.timestamp + 60);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Pending)
        );
        escrow.reportUsage(leaseId, 1, 0, uint40(block.timestamp), 0, 0, 0, 0);
    }

    function test_report_chargeCappedByBalance() public {
        uint256 deposit = depositFor(MIN_RUNWAY);
        uint256 leaseId = openConfirmed(deposit);
        vm.warp(block.timestamp + 2 * MIN_RUNWAY);
        uint256 charge = reportFull(leaseId);
        assertEq(charge, deposit, "charge capped at the balance");
        assertEq(escrow.getLease(leaseId).balance, 0, "balance zero, never negative");
        vm.warp(block.timestamp + 60);
        assertEq(reportFull(leaseId), 0, "an empty balance yields no charge");
    }

    function test_report_afterCloseOnlyUpToCloseInsideWindow() public {
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
                ILeaseEscrow.InvalidPeriod.selector, leaseId, l.billedUntil, closedAt + 1, closedAt
            )
        );
        escrow.reportUsage(leaseId, 1, l.billedUntil, closedAt + 1, 0, 0, 0, 0);
        uint256 charge = report(leaseId, closedAt, CPU * 600, 0, 0);
        assertGt(charge, 0, "final report accepted");
        vm.warp(closedAt + FINAL_REPORT_WINDOW + 1);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.FinalReportWindowClosed.selector, leaseId, closedAt)
        );
        escrow.reportUsage(leaseId, 2, closedAt, closedAt, 0, 0, 0, 0);
    }

    function test_reportBatch_manyLeasesAtOnce() public {
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

    function test_reportBatch_isAllOrNothing() public {
        uint256 a = openConfirmed(depositFor(10 hours));
        uint256 b = openConfirmed(depositFor(10 hours));
        uint40 from = uint40(block.timestamp);
        vm.warp(block.timestamp + 100);
        UsageReport[] memory reports = new UsageReport[](2);
        reports[0] = usage(a, 1, from, from + 100, 1000);
        reports[1] = usage(b, 2, from, from + 100, 2000);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.InvalidSequence.selector, b, 1, 2));
        escrow.reportUsageBatch(reports);
        assertEq(escrow.getLease(a).reportCount, 0, "first report rolled back");
        vm.prank(operator);
        vm.expectRevert(ILeaseEscrow.EmptyBatch.selector);
        escrow.reportUsageBatch(new UsageReport[](0));
    }

    function test_reportBatch_refusesOtherProvidersLease() public {
        uint256 otherProvider = registerProvider(stranger, stranger);
        vm.prank(tenant);
        uint256 other = escrow.openLease(
            otherProvider, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max
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
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotOperator.selector, other, operator));
        escrow.reportUsageBatch(reports);
    }

    // ---------------------------------------------------------------- maturity, claims, disputes

    function test_claim_maturedChargesGoToOwner() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.prank(operator);
        assertEq(escrow.claim(leaseId), 0, "nothing matured yet");
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        assertEq(escrow.claimableOf(leaseId), charge, "matured");
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.ChargesClaimed(leaseId, providerId, providerOwner, charge);
        vm.prank(operator);
        assertEq(escrow.claim(leaseId), charge, "claimed by operator");
        assertEq(token.balanceOf(providerOwner), charge, "paid to the owner, not the operator");
        assertEq(escrow.claimableOf(leaseId), 0, "nothing left");
    }

    function test_claim_byOwnerAndNotByStranger() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotProviderAgent.selector, leaseId, stranger));
        escrow.claim(leaseId);
        vm.prank(providerOwner);
        assertEq(escrow.claim(leaseId), charge, "owner claims");
    }

    function test_claimMany_oneTransfer() public {
        uint256 a = openConfirmed(depositFor(10 hours));
        uint256 b = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 total = reportFull(a) + reportFull(b);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        uint256[] memory ids = new uint256[](2);
        (ids[0], ids[1]) = (a, b);
        vm.prank(operator);
        assertEq(escrow.claimMany(ids), total, "both leases claimed");
        assertEq(token.balanceOf(providerOwner), total, "paid once");
    }

    function test_claimMany_reverts() public {
        uint256 otherProvider = registerProvider(stranger, stranger);
        vm.prank(tenant);
        uint256 other = escrow.openLease(
            otherProvider, CPU, MEM, STO, MANIFEST_HASH, "", depositFor(2 hours), type(uint256).max
        );
        uint256 mine = openLease(depositFor(2 hours));
        uint256[] memory ids = new uint256[](2);
        (ids[0], ids[1]) = (mine, other);
        vm.startPrank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.MixedProviders.selector, other, otherProvider, providerId)
        );
        escrow.claimMany(ids);
        vm.expectRevert(ILeaseEscrow.EmptyBatch.selector);
        escrow.claimMany(new uint256[](0));
        vm.stopPrank();
    }

    function test_maturity_frequentReportsStillMatureWithinTwoWindows() public {
        uint256 leaseId = openConfirmed(depositFor(100 hours));
        uint256 start = block.timestamp;
        uint256 t = start;
        uint256 first;
        for (uint256 i; i < 48; ++i) {
            t += 1 hours; // a local clock: the optimizer may reuse one TIMESTAMP read per call
            vm.warp(t);
            uint256 c = reportFull(leaseId);
            if (i == 0) first = c;
        }
        // 48 hourly reports over two days with a one-day window: early charges have matured.
        assertGe(escrow.claimableOf(leaseId), first, "first charge matured");
        assertLe(t - start, 2 * CHALLENGE_WINDOW, "within two windows");
        vm.warp(t + 2 * CHALLENGE_WINDOW);
        assertEq(escrow.pendingOf(leaseId), 0, "everything matured two windows after the last report");
    }

    function test_dispute_freezesAndArbiterSplits() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.ChargesDisputed(leaseId, tenant, charge);
        vm.prank(tenant);
        escrow.dispute(leaseId);
        assertEq(escrow.pendingOf(leaseId), 0, "no longer pending");
        assertEq(escrow.getLease(leaseId).disputed, charge, "frozen");
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        assertEq(escrow.claimableOf(leaseId), 0, "a frozen charge never matures on its own");

        uint256 toProvider = charge / 3;
        uint256 before = token.balanceOf(tenant);
        vm.prank(arbiter);
        escrow.resolveDispute(leaseId, toProvider);
        assertEq(escrow.claimableOf(leaseId), toProvider, "award claimable");
        assertEq(token.balanceOf(tenant) - before, charge - toProvider, "rest refunded to the tenant");
    }

    function test_dispute_reverts() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NothingToDispute.selector, leaseId));
        escrow.dispute(leaseId);
        vm.warp(block.timestamp + 600);
        reportFull(leaseId);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotTenant.selector, leaseId, stranger));
        escrow.dispute(leaseId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NothingToDispute.selector, leaseId));
        escrow.dispute(leaseId);
    }

    function test_resolveDispute_reverts() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotArbiter.selector, stranger));
        escrow.resolveDispute(leaseId, 0);
        vm.prank(arbiter);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NoDispute.selector, leaseId));
        escrow.resolveDispute(leaseId, 0);
        vm.warp(block.timestamp + 600);
        uint256 charge = reportFull(leaseId);
        vm.prank(tenant);
        escrow.dispute(leaseId);
        vm.prank(arbiter);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.AwardExceedsDisputed.selector, leaseId, charge + 1, charge)
        );
        escrow.resolveDispute(leaseId, charge + 1);
    }

    // ---------------------------------------------------------------- close, withdraw, terminate

    function test_close_thenWithdrawAfterFinalReport() public {
        uint256 deposit = depositFor(10 hours);
        uint256 leaseId = openConfirmed(deposit);
        vm.warp(block.timestamp + 600);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseClosed(leaseId, providerId, tenant, CloseReason.TenantClosed, block.timestamp);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        assertEq(registry.getProvider(providerId).activeLeases, 0, "capacity released at close");
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.FinalReportWindowOpen.selector, leaseId, block.timestamp + FINAL_REPORT_WINDOW
            )
        );
        escrow.withdraw(leaseId);
        uint256 charge = reportFull(leaseId); // final report up to closedAt
        assertEq(escrow.refundableOf(leaseId), deposit - charge, "refundable once the final report is in");
        uint256 before = token.balanceOf(tenant);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseWithdrawn(leaseId, tenant, deposit - charge);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(tenant) - before, deposit - charge, "unearned rest refunded");
        assertEq(uint256(escrow.getLease(leaseId).status), uint256(LeaseStatus.Closed), "closed");
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Closed)
        );
        escrow.withdraw(leaseId);
    }

    function test_withdraw_afterWindowWithoutReport() public {
        uint256 deposit = depositFor(10 hours);
        uint256 leaseId = openConfirmed(deposit);
        vm.warp(block.timestamp + 600);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        vm.warp(block.timestamp + FINAL_REPORT_WINDOW + 1);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(address(escrow)), 0, "provider that never reported gets nothing");
    }

    function test_withdraw_onlyTenant() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        vm.warp(block.timestamp + FINAL_REPORT_WINDOW + 1);
        vm.prank(providerOwner);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotTenant.selector, leaseId, providerOwner));
        escrow.withdraw(leaseId);
    }

    function test_close_reverts() public {
        uint256 leaseId = openLease(depositFor(10 hours));
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Pending)
        );
        escrow.closeLease(leaseId);
        vm.prank(operator);
        escrow.confirmLease(leaseId, "http://x");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotTenant.selector, leaseId, stranger));
        escrow.closeLease(leaseId);
    }

    function test_terminate_onExhaustion() public {
        uint256 deposit = depositFor(MIN_RUNWAY + 600);
        uint256 leaseId = openConfirmed(deposit);
        assertEq(escrow.depletionTimeOf(leaseId), block.timestamp + MIN_RUNWAY + 600, "depletion time");
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(
                ILeaseEscrow.RunwayAboveMinimum.selector, leaseId, block.timestamp + MIN_RUNWAY + 600
            )
        );
        escrow.terminateLease(leaseId);
        vm.warp(block.timestamp + 601);
        vm.expectEmit(address(escrow));
        emit ILeaseEscrow.LeaseClosed(leaseId, providerId, tenant, CloseReason.Exhausted, block.timestamp);
        vm.prank(operator);
        escrow.terminateLease(leaseId);
        uint256 charge = reportFull(leaseId);
        assertEq(charge, expectedCharge(601, CPU * 601, MEM * 601, STO * 601), "paid for the time it ran");
        uint256 before = token.balanceOf(tenant);
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(tenant) - before, deposit - charge, "tenant keeps the rest");
    }

    function test_terminate_reverts() public {
        uint256 leaseId = openLease(depositFor(MIN_RUNWAY));
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(ILeaseEscrow.InvalidLeaseStatus.selector, leaseId, LeaseStatus.Pending)
        );
        escrow.terminateLease(leaseId);
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.NotOperator.selector, leaseId, tenant));
        escrow.terminateLease(leaseId);
    }

    // ---------------------------------------------------------------- pause, admin, views

    function test_pause_neverBlocksExits() public {
        uint256 leaseId = openConfirmed(depositFor(10 hours));
        vm.warp(block.timestamp + 600);
        reportFull(leaseId);
        vm.prank(admin);
        escrow.pause();
        vm.prank(tenant);
        escrow.topUp(leaseId, 1);
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        vm.warp(block.timestamp + CHALLENGE_WINDOW);
        vm.prank(operator);
        assertGt(escrow.claim(leaseId), 0, "claims work while paused");
        vm.prank(tenant);
        escrow.withdraw(leaseId);
        assertEq(token.balanceOf(address(escrow)), 0, "all funds out while paused");
        vm.prank(admin);
        escrow.unpause();
        openLease(depositFor(2 hours));
    }

    function test_pause_onlyOwner() public {
        vm.startPrank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        escrow.pause();
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        escrow.unpause();
        vm.stopPrank();
    }

    function test_constructor_revertsOnZeroAddresses() public {
        vm.expectRevert(ILeaseEscrow.ZeroAddress.selector);
        new LeaseEscrow(admin, registry, address(0), 1, 1, 1, 1);
        vm.expectRevert(ILeaseEscrow.ZeroAddress.selector);
        new LeaseEscrow(admin, IProviderRegistry(address(0)), arbiter, 1, 1, 1, 1);
        uint256 tooLong = escrow.MAX_WINDOW() + 1;
        vm.expectRevert(ILeaseEscrow.WindowTooLong.selector);
        new LeaseEscrow(admin, registry, arbiter, tooLong, 1, 1, 1);
        vm.expectRevert(ILeaseEscrow.WindowTooLong.selector);
        new LeaseEscrow(admin, registry, arbiter, 1, 1, 1, tooLong);
    }

    function test_views_unknownLease() public {
        vm.expectRevert(abi.encodeWithSelector(ILeaseEscrow.UnknownLease.selector, 5));
        escrow.claimableOf(5);
        assertEq(uint256(escrow.getLease(5).status), uint256(LeaseStatus.None), "unknown lease reads as None");
    }

    function test_views_depletionTime() public {
        uint256 leaseId = openLease(depositFor(2 hours));
        assertEq(escrow.depletionTimeOf(leaseId), block.timestamp + 2 hours, "pending: as if confirmed now");
        vm.prank(operator);
        escrow.confirmLease(leaseId, "http://x");
        vm.warp(block.timestamp + 600);
        reportFull(leaseId);
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        assertLe(depletion, block.timestamp + 2 hours - 600 + 1, "runway shrinks with charges");
        assertGe(depletion + 1, block.timestamp + 2 hours - 600, "by the charged time");
        vm.prank(tenant);
        escrow.closeLease(leaseId);
        assertEq(escrow.depletionTimeOf(leaseId), block.timestamp, "closed: its end");
    }
}

contract LeaseEscrow6DecimalsTest is LeaseEscrowTest {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract LeaseEscrow18DecimalsTest is LeaseEscrowTest {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
