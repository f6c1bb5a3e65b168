// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseEscrow} from "../../../src/LeaseEscrow.sol";
import {ProviderRegistry} from "../../../src/ProviderRegistry.sol";
import {LeaseMath} from "../../../src/libraries/LeaseMath.sol";
import {TestToken} from "../../../src/mocks/TestToken.sol";
import {AutoTopUp, Lease, LeaseStatus, PRICE_SCALE, RejectReason} from "../../../src/types/BerthTypes.sol";
import {vm} from "../../utils/Vm.sol";
import {LeaseStore} from "../stores/LeaseStore.sol";

/// @notice Drives the escrow through random lifecycles for the invariant suite. Every action
/// checks its preconditions and skips when they do not hold, so a revert of the escrow on a
/// valid call fails the campaign (`fail_on_revert`). Only the stranger's raid and the probe of
/// units on a suspended lease expect reverts, and catch them.
contract LeaseHandler {
    uint256 internal constant MAX_LEASES = 24;

    LeaseEscrow public immutable escrow;
    ProviderRegistry public immutable registry;
    TestToken public immutable token;
    LeaseStore public immutable store;
    address public immutable admin;
    address public immutable arbiter;
    address public immutable stranger;

    address[] public tenants;
    uint256[] public providerIds;
    mapping(uint256 providerId => address) public operatorOf;
    mapping(uint256 providerId => address) public ownerOf;
    uint256 public time;

    constructor(
        LeaseEscrow escrow_,
        ProviderRegistry registry_,
        TestToken token_,
        LeaseStore store_,
        address admin_,
        address arbiter_,
        address[] memory tenants_,
        uint256[] memory providerIds_,
        address[] memory operators_,
        address[] memory owners_
    ) {
        (escrow, registry, token, store) = (escrow_, registry_, token_, store_);
        (admin, arbiter, stranger) = (admin_, arbiter_, address(0xBAD));
        tenants = tenants_;
        providerIds = providerIds_;
        for (uint256 i; i < providerIds_.length; ++i) {
            operatorOf[providerIds_[i]] = operators_[i];
            ownerOf[providerIds_[i]] = owners_[i];
        }
        time = block.timestamp;
    }

    // ---------------------------------------------------------------- tenant

    function open(uint256 tenantSeed, uint256 providerSeed, uint256 hoursFunded, uint32 cpu, uint32 mem)
        external
    {
        if (store.leaseCount() >= MAX_LEASES || escrow.paused()) return;
        address tenant = tenants[tenantSeed % tenants.length];
        uint256 providerId = providerIds[providerSeed % providerIds.length];
        cpu = uint32(_bound(cpu, 1, 2000));
        mem = uint32(_bound(mem, 1, 4096));
        uint16 version = registry.getProvider(providerId).priceVersion;
        uint256 rate = LeaseMath.rate(registry.pricesOf(providerId, version), cpu, mem, 1);
        uint256 deposit = LeaseMath.costOf(_bound(hoursFunded, 2, 50) * 1 hours, rate);
        if (deposit > token.balanceOf(tenant) || deposit == 0) return;
        _approve(tenant);
        vm.prank(tenant);
        uint256 leaseId = escrow.openLease(providerId, cpu, mem, 1, keccak256("m"), "", deposit, rate);
        store.addLease(leaseId, deposit, time);
        store.count("open");
    }

    function topUp(uint256 leaseSeed, uint256 amount) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Pending, LeaseStatus.Active, LeaseStatus.Suspended);
        if (leaseId == 0) return;
        address tenant = escrow.getLease(leaseId).tenant;
        amount = _bound(amount, 1, token.balanceOf(tenant) / 100 + 1);
        if (amount > token.balanceOf(tenant)) return;
        _approve(tenant);
        bool suspended = escrow.getLease(leaseId).status == LeaseStatus.Suspended;
        vm.prank(tenant);
        escrow.topUp(leaseId, amount);
        store.addDeposit(leaseId, amount);
        _noteResume(leaseId, suspended);
        store.count("topUp");
        _observe();
    }

    /// A tenant tops a suspended lease up by enough to resume it.
    function resume(uint256 leaseSeed, uint256 extraHours) external {
        uint256 leaseId =
            _pickIn(leaseSeed, LeaseStatus.Suspended, LeaseStatus.Suspended, LeaseStatus.Suspended);
        if (leaseId == 0) return;
        Lease memory l = escrow.getLease(leaseId);
        uint256 amount = LeaseMath.topUpFor(
            l.billedUntil,
            l.balance,
            l.maxRate,
            time,
            escrow.minRunway() + _bound(extraHours, 0, 24) * 1 hours
        );
        if (amount == 0 || amount > token.balanceOf(l.tenant)) return;
        _approve(l.tenant);
        vm.prank(l.tenant);
        escrow.topUp(leaseId, amount);
        store.addDeposit(leaseId, amount);
        _noteResume(leaseId, true);
        _observe();
    }

    function updateManifest(uint256 leaseSeed, bytes32 hash) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Suspended, LeaseStatus.Active);
        if (leaseId == 0 || hash == bytes32(0)) return;
        Lease memory before = escrow.getLease(leaseId);
        uint256 held = token.balanceOf(address(escrow));
        vm.prank(before.tenant);
        escrow.updateManifest(leaseId, hash, "");
        Lease memory after_ = escrow.getLease(leaseId);
        if (
            after_.balance != before.balance || after_.pending != before.pending
                || after_.claimable != before.claimable || token.balanceOf(address(escrow)) != held
        ) store.flagUpdateMovedMoney();
        store.count("update");
    }

    function setAutoTopUp(uint256 leaseSeed, uint256 perTopUp, uint256 total, uint256 trigger, uint256 target)
        external
    {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Pending, LeaseStatus.Active, LeaseStatus.Suspended);
        if (leaseId == 0) return;
        uint256 maxRate = escrow.maxRateOf(leaseId);
        perTopUp = _bound(perTopUp, 1, LeaseMath.costOf(1 days, maxRate) + 1);
        total = _bound(total, perTopUp, perTopUp * 5);
        trigger = _bound(trigger, 0, 2 days);
        target = _bound(target, trigger + 1, trigger + 2 days);
        vm.prank(escrow.getLease(leaseId).tenant);
        escrow.setAutoTopUp(leaseId, perTopUp, total, time + 10 days, trigger, target);
        store.count("setAutoTopUp");
    }

    function autoTopUp(uint256 leaseSeed, bool revokeAllowance) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Suspended, LeaseStatus.Active);
        if (leaseId == 0) return;
        AutoTopUp memory policy = escrow.autoTopUpOf(leaseId);
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        if (policy.maxTotal != 0 && depletion >= time + policy.triggerRunway) {
            _warpTo(depletion - policy.triggerRunway + 1); // let the runway fall below the trigger
        }
        uint256 due = escrow.autoTopUpDue(leaseId);
        if (due == 0) {
            // Not due (no policy, expired, runway above the trigger, cap used up): nothing may move.
            vm.prank(stranger);
            try escrow.autoTopUp(leaseId) returns (uint256 x) {
                if (x > 0) store.flagAutoTopUpAboveTrigger();
            } catch {}
            return;
        }
        Lease memory l = escrow.getLease(leaseId);
        AutoTopUp memory p = escrow.autoTopUpOf(leaseId);
        if (escrow.runwayOf(leaseId) >= p.triggerRunway) store.flagAutoTopUpAboveTrigger();
        vm.prank(l.tenant);
        token.approve(address(escrow), revokeAllowance ? 0 : type(uint256).max);
        uint256 others = _otherBalances(leaseId);
        vm.prank(stranger);
        uint256 pulled = escrow.autoTopUp(leaseId);
        if (revokeAllowance && pulled != 0) store.flagAutoTopUpAboveCap();
        if (pulled > p.maxPerTopUp || escrow.autoTopUpOf(leaseId).pulled > p.maxTotal) {
            store.flagAutoTopUpAboveCap();
        }
        if (_otherBalances(leaseId) != others) store.flagAutoTopUpIntoOtherLease();
        store.addDeposit(leaseId, pulled);
        store.addAutoPulled(leaseId, pulled);
        if (pulled > 0) _noteResume(leaseId, l.status == LeaseStatus.Suspended);
        store.count(pulled > 0 ? bytes32("autoTopUp") : bytes32("autoTopUpFailed"));
        _observe();
    }

    function cancel(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Pending, LeaseStatus.Pending, LeaseStatus.Pending);
        if (leaseId == 0) return;
        _warpTo(store.openedAt(leaseId) + escrow.acceptTimeout());
        vm.prank(escrow.getLease(leaseId).tenant);
        escrow.cancelLease(leaseId);
        store.count("cancel");
        _observe();
    }

    function close(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Suspended, LeaseStatus.Active);
        if (leaseId == 0) return;
        vm.prank(escrow.getLease(leaseId).tenant);
        escrow.closeLease(leaseId);
        store.count("close");
        _observe();
    }

    function withdraw(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Closing, LeaseStatus.Rejected, LeaseStatus.Cancelled);
        if (leaseId == 0) return;
        Lease memory l = escrow.getLease(leaseId);
        if (l.status == LeaseStatus.Closing) {
            if (l.billedUntil < l.closedAt && time <= l.closedAt + escrow.finalReportWindow()) return;
        } else if (l.balance == 0) {
            return;
        }
        uint256 before = token.balanceOf(l.tenant);
        vm.prank(l.tenant);
        escrow.withdraw(leaseId);
        store.addWithdrawn(leaseId, token.balanceOf(l.tenant) - before);
        store.count("withdraw");
        _observe();
    }

    function dispute(uint256 leaseSeed) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0 || escrow.pendingOf(leaseId) == 0) return;
        vm.prank(escrow.getLease(leaseId).tenant);
        escrow.dispute(leaseId);
        store.count("dispute");
        _observe();
    }

    // ---------------------------------------------------------------- provider

    function confirm(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Pending, LeaseStatus.Pending, LeaseStatus.Pending);
        if (leaseId == 0) return;
        vm.prank(_operator(leaseId));
        escrow.confirmLease(leaseId, "http://w");
        store.setConfirmed(leaseId, time);
        store.count("confirm");
        _observe();
    }

    function reject(uint256 leaseSeed, uint8 reason) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Pending, LeaseStatus.Pending, LeaseStatus.Pending);
        if (leaseId == 0) return;
        vm.prank(_operator(leaseId));
        escrow.rejectLease(leaseId, RejectReason(reason % 8));
        store.count("reject");
        _observe();
    }

    function reportUsage(uint256 leaseSeed, uint256 toSeed, uint256 cpuLoad, uint256 memLoad) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Suspended, LeaseStatus.Closing);
        if (leaseId == 0) return;
        Lease memory l = escrow.getLease(leaseId);
        if (l.status != LeaseStatus.Closing && time <= l.billedUntil) {
            time += _bound(toSeed, 1, 6 hours); // let some service time pass first
            vm.warp(time);
        }
        uint256 latest = l.status == LeaseStatus.Closing ? l.closedAt : time;
        if (latest <= l.billedUntil) return;
        if (l.status == LeaseStatus.Closing && time > l.closedAt + escrow.finalReportWindow()) return;
        uint256 to = _bound(toSeed, l.billedUntil + 1, latest);
        uint256 running = _running(leaseId, l.billedUntil, to);
        uint64 cpuUnits = uint64(uint256(l.cpuMillis) * running * _bound(cpuLoad, 0, 100) / 100);
        uint64 memUnits = uint64(uint256(l.memoryMiB) * running * _bound(memLoad, 0, 100) / 100);
        vm.prank(_operator(leaseId));
        escrow.reportUsage(
            leaseId,
            l.reportCount + 1,
            l.billedUntil,
            uint40(to),
            cpuUnits,
            memUnits,
            uint64(running),
            bytes32(to)
        );
        store.addCharge(leaseId, l.balance - escrow.getLease(leaseId).balance);
        if (l.status == LeaseStatus.Active && store.idleUnbilled(leaseId) && store.idleUntil(leaseId) != 0) {
            if (to >= store.idleUntil(leaseId)) store.setIdleBilled(leaseId);
        }
        store.count("report");
        _observe();
    }

    /// A report of any CPU or memory unit inside a suspension must be refused.
    function reportUnitsWhileSuspended(uint256 leaseSeed) external {
        uint256 leaseId =
            _pickIn(leaseSeed, LeaseStatus.Suspended, LeaseStatus.Suspended, LeaseStatus.Suspended);
        if (leaseId == 0) return;
        Lease memory l = escrow.getLease(leaseId);
        uint256 from = l.billedUntil < l.suspendedAt ? l.suspendedAt : l.billedUntil;
        _warpTo(from + 1);
        uint256 running = _running(leaseId, l.billedUntil, time);
        vm.prank(_operator(leaseId));
        try escrow.reportUsage(
            leaseId,
            l.reportCount + 1,
            l.billedUntil,
            uint40(time),
            uint64(l.cpuMillis * running + 1),
            0,
            0,
            0
        ) {
            store.flagSuspendedUnitsAccepted();
        } catch {}
        store.count("suspendedProbe");
    }

    function suspend(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Active, LeaseStatus.Active);
        if (leaseId == 0 || store.idleUnbilled(leaseId)) return;
        uint256 depletion = escrow.depletionTimeOf(leaseId);
        if (depletion >= time + escrow.minRunway()) _warpTo(depletion - escrow.minRunway() + 1);
        if (depletion >= time + escrow.minRunway()) return;
        vm.prank(_operator(leaseId));
        escrow.suspendLease(leaseId);
        store.setSuspended(leaseId, time);
        store.count("suspend");
        _observe();
    }

    function terminate(uint256 leaseSeed) external {
        uint256 leaseId =
            _pickIn(leaseSeed, LeaseStatus.Suspended, LeaseStatus.Suspended, LeaseStatus.Suspended);
        if (leaseId == 0) return;
        _warpTo(store.idleFrom(leaseId) + escrow.gracePeriod());
        vm.prank(_operator(leaseId));
        escrow.terminateLease(leaseId);
        store.count("terminate");
        _observe();
    }

    function claim(uint256 leaseSeed, bool asOwner) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        uint256 providerId = escrow.getLease(leaseId).providerId;
        vm.prank(asOwner ? ownerOf[providerId] : operatorOf[providerId]);
        store.addPaid(leaseId, escrow.claim(leaseId));
        store.count("claim");
        _observe();
    }

    // ---------------------------------------------------------------- arbiter, others

    function resolve(uint256 leaseSeed, uint256 award) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        uint256 disputed = escrow.getLease(leaseId).disputed;
        if (disputed == 0) return;
        bool suspended = escrow.getLease(leaseId).status == LeaseStatus.Suspended;
        award = _bound(award, 0, disputed);
        vm.prank(arbiter);
        escrow.resolveDispute(leaseId, award);
        store.addReturned(leaseId, disputed - award);
        _noteResume(leaseId, suspended && escrow.getLease(leaseId).status == LeaseStatus.Active);
        store.count("resolve");
        _observe();
    }

    /// A stranger tries every way to take a lease's money; none may pay it anything.
    function strangerRaid(uint256 leaseSeed) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        uint256 before = token.balanceOf(stranger);
        vm.startPrank(stranger);
        try escrow.withdraw(leaseId) {} catch {}
        try escrow.cancelLease(leaseId) {} catch {}
        try escrow.claim(leaseId) {} catch {}
        try escrow.resolveDispute(leaseId, 0) {} catch {}
        try escrow.updateManifest(leaseId, bytes32(uint256(1)), "") {} catch {}
        try escrow.setAutoTopUp(leaseId, 1, 1, time + 1, 0, 1) {} catch {}
        vm.stopPrank();
        if (token.balanceOf(stranger) != before) store.flagStrangerGotFunds();
        _observe();
    }

    function warp(uint256 secs) external {
        time += _bound(secs, 1, 2 days);
        vm.warp(time);
        store.count("warp");
    }

    function togglePause() external {
        bool paused = escrow.paused();
        vm.prank(admin);
        if (paused) escrow.unpause();
        else escrow.pause();
        store.count("pause");
    }

    // ---------------------------------------------------------------- internals

    /// @dev A top-up of a suspended lease resumes it when the runway is back at the minimum.
    function _noteResume(uint256 leaseId, bool wasSuspended) private {
        if (wasSuspended && escrow.getLease(leaseId).status == LeaseStatus.Active) {
            store.setResumed(leaseId, time);
            store.count("resume");
        }
    }

    /// @dev Moves the clock forward to `t`, at most 30 days at once (the escrow keeps uint32
    /// times: a campaign must not run past 2106).
    function _warpTo(uint256 t) private {
        if (time >= t) return;
        time = t < time + 30 days ? t : time + 30 days;
        vm.warp(time);
    }

    function _running(uint256 leaseId, uint256 from, uint256 to) private view returns (uint256) {
        if (!store.idleUnbilled(leaseId)) return to - from;
        return LeaseMath.runningSeconds(from, to, store.idleFrom(leaseId), store.idleUntil(leaseId));
    }

    function _otherBalances(uint256 leaseId) private view returns (uint256 sum) {
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            if (id != leaseId) sum += escrow.getLease(id).balance;
        }
    }

    function _approve(address tenant) private {
        vm.prank(tenant);
        token.approve(address(escrow), type(uint256).max);
    }

    /// @dev Records monotonic quantities after every action.
    function _observe() private {
        for (uint256 i; i < store.leaseCount(); ++i) {
            uint256 id = store.leaseIds(i);
            Lease memory l = escrow.getLease(id);
            store.observe(id, l.claimable + store.paidToProvider(id), l.billedUntil);
        }
    }

    function _operator(uint256 leaseId) private view returns (address) {
        return operatorOf[escrow.getLease(leaseId).providerId];
    }

    function _pick(uint256 seed) private view returns (uint256) {
        uint256 n = store.leaseCount();
        if (n == 0) return 0;
        return store.leaseIds(seed % n);
    }

    /// @dev The first lease from `seed` on whose status is `a`, `b` or `c`; 0 if none is.
    function _pickIn(uint256 seed, LeaseStatus a, LeaseStatus b, LeaseStatus c)
        private
        view
        returns (uint256)
    {
        uint256 n = store.leaseCount();
        for (uint256 i; i < n; ++i) {
            uint256 id = store.leaseIds((seed % n + i) % n);
            LeaseStatus status = escrow.getLease(id).status;
            if (status == a || status == b || status == c) return id;
        }
        return 0;
    }

    function _bound(uint256 x, uint256 min, uint256 max) private pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }
}
