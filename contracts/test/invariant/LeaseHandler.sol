// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseEscrow} from "../../src/LeaseEscrow.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {TestToken} from "../../src/mocks/TestToken.sol";
import {Lease, LeaseStatus, RejectReason} from "../../src/types/BerthTypes.sol";
import {vm} from "../utils/Vm.sol";

/// @notice Drives the escrow through random lifecycles for the invariant suite and keeps ghost
/// accounting of what each lease was paid in and out.
contract LeaseHandler {
    uint256 internal constant MAX_LEASES = 24;

    LeaseEscrow public immutable escrow;
    ProviderRegistry public immutable registry;
    TestToken public immutable token;
    address public immutable admin;
    address public immutable arbiter;
    address public immutable stranger;

    address[] public tenants;
    uint256[] public providerIds;
    mapping(uint256 providerId => address) public operatorOf;
    mapping(uint256 providerId => address) public ownerOf;

    uint256[] public leaseIds;
    uint256 public time;

    // ghost accounting, per lease
    mapping(uint256 leaseId => uint256) public deposited;
    mapping(uint256 leaseId => uint256) public charged;
    mapping(uint256 leaseId => uint256) public paidToProvider;
    mapping(uint256 leaseId => uint256) public refunded;
    mapping(uint256 leaseId => uint256) public earnedSeen;
    mapping(uint256 leaseId => uint256) public billedSeen;

    // ghost flags: each must stay false
    bool public timeWentBack;
    bool public earnedDecreased;
    bool public strangerGotFunds;
    bool public chargedBeforeConfirmation;

    mapping(bytes32 action => uint256) public calls;

    constructor(
        LeaseEscrow escrow_,
        ProviderRegistry registry_,
        TestToken token_,
        address admin_,
        address arbiter_,
        address[] memory tenants_,
        uint256[] memory providerIds_,
        address[] memory operators_,
        address[] memory owners_
    ) {
        escrow = escrow_;
        registry = registry_;
        token = token_;
        admin = admin_;
        arbiter = arbiter_;
        stranger = address(0xBAD);
        tenants = tenants_;
        providerIds = providerIds_;
        for (uint256 i; i < providerIds_.length; ++i) {
            operatorOf[providerIds_[i]] = operators_[i];
            ownerOf[providerIds_[i]] = owners_[i];
        }
        time = block.timestamp;
    }

    // ---------------------------------------------------------------- actions

    function open(uint256 tenantSeed, uint256 providerSeed, uint256 hoursFunded, uint32 cpu, uint32 mem)
        external
    {
        if (leaseIds.length >= MAX_LEASES) return;
        address tenant = tenants[tenantSeed % tenants.length];
        uint256 providerId = providerIds[providerSeed % providerIds.length];
        cpu = uint32(_bound(cpu, 1, 2000));
        mem = uint32(_bound(mem, 1, 4096));
        uint256 deposit = token.balanceOf(tenant) / 1000 * _bound(hoursFunded, 1, 50);
        vm.prank(tenant);
        try escrow.openLease(
            providerId, cpu, mem, 1, keccak256("m"), "", deposit, type(uint256).max
        ) returns (
            uint256 leaseId
        ) {
            leaseIds.push(leaseId);
            deposited[leaseId] = deposit;
            ++calls["open"];
        } catch {}
    }

    function topUp(uint256 leaseSeed, uint256 amount) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        address tenant = escrow.getLease(leaseId).tenant;
        amount = _bound(amount, 1, token.balanceOf(tenant) / 100 + 1);
        vm.prank(tenant);
        try escrow.topUp(leaseId, amount) {
            deposited[leaseId] += amount;
            ++calls["topUp"];
        } catch {}
        _observe();
    }

    function confirm(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Pending, LeaseStatus.Pending);
        if (leaseId == 0) return;
        vm.prank(_operator(leaseId));
        try escrow.confirmLease(leaseId, "http://w") {
            ++calls["confirm"];
        } catch {}
        _observe();
    }

    function reject(uint256 leaseSeed, uint8 reason) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Pending, LeaseStatus.Pending);
        if (leaseId == 0) return;
        _refundAttempt(
            leaseId,
            abi.encodeCall(escrow.rejectLease, (leaseId, RejectReason(reason % 8))),
            _operator(leaseId)
        );
    }

    function cancel(uint256 leaseSeed) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        _refundAttempt(
            leaseId, abi.encodeCall(escrow.cancelLease, (leaseId)), escrow.getLease(leaseId).tenant
        );
    }

    function reportUsage(uint256 leaseSeed, uint256 toSeed, uint256 cpuLoad, uint256 memLoad) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Closing);
        if (leaseId == 0) return;
        Lease memory l = escrow.getLease(leaseId);
        if (l.status == LeaseStatus.Active && time <= l.billedUntil) {
            time += _bound(toSeed, 1, 6 hours); // let some service time pass first
            vm.warp(time);
        }
        uint256 latest = l.status == LeaseStatus.Closing ? l.closedAt : time;
        if (latest <= l.billedUntil) return;
        uint256 to = _bound(toSeed, l.billedUntil + 1, latest);
        uint256 period = to - l.billedUntil;
        // Up to 110% of the reservation: the escrow must refuse what exceeds the cap.
        uint64 cpuUnits = uint64(uint256(l.cpuMillis) * period * _bound(cpuLoad, 0, 110) / 100);
        uint64 memUnits = uint64(uint256(l.memoryMiB) * period * _bound(memLoad, 0, 110) / 100);
        vm.prank(_operator(leaseId));
        try escrow.reportUsage(
            leaseId,
            l.reportCount + 1,
            l.billedUntil,
            uint40(to),
            cpuUnits,
            memUnits,
            uint64(period),
            bytes32(to)
        ) {
            uint256 charge = l.balance - escrow.getLease(leaseId).balance;
            charged[leaseId] += charge;
            if (l.confirmedAt == 0 && charge > 0) chargedBeforeConfirmation = true;
            ++calls["report"];
        } catch {}
        _observe();
    }

    function close(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Active);
        if (leaseId == 0) return;
        vm.prank(escrow.getLease(leaseId).tenant);
        try escrow.closeLease(leaseId) {
            ++calls["close"];
        } catch {}
        _observe();
    }

    function terminate(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Active, LeaseStatus.Active);
        if (leaseId == 0) return;
        vm.prank(_operator(leaseId));
        try escrow.terminateLease(leaseId) {
            ++calls["terminate"];
        } catch {}
        _observe();
    }

    function withdraw(uint256 leaseSeed) external {
        uint256 leaseId = _pickIn(leaseSeed, LeaseStatus.Closing, LeaseStatus.Closing);
        if (leaseId == 0) return;
        _refundAttempt(leaseId, abi.encodeCall(escrow.withdraw, (leaseId)), escrow.getLease(leaseId).tenant);
    }

    function dispute(uint256 leaseSeed) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        vm.prank(escrow.getLease(leaseId).tenant);
        try escrow.dispute(leaseId) {
            ++calls["dispute"];
        } catch {}
        _observe();
    }

    function resolve(uint256 leaseSeed, uint256 award) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        uint256 disputed = escrow.getLease(leaseId).disputed;
        if (disputed == 0) return;
        award = _bound(award, 0, disputed);
        address tenant = escrow.getLease(leaseId).tenant;
        uint256 before = token.balanceOf(tenant);
        vm.prank(arbiter);
        try escrow.resolveDispute(leaseId, award) {
            refunded[leaseId] += token.balanceOf(tenant) - before;
            ++calls["resolve"];
        } catch {}
        _observe();
    }

    function claim(uint256 leaseSeed, bool asOwner) external {
        uint256 leaseId = _pick(leaseSeed);
        if (leaseId == 0) return;
        uint256 providerId = escrow.getLease(leaseId).providerId;
        vm.prank(asOwner ? ownerOf[providerId] : operatorOf[providerId]);
        try escrow.claim(leaseId) returns (uint256 amount) {
            paidToProvider[leaseId] += amount;
            ++calls["claim"];
        } catch {}
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
        vm.stopPrank();
        if (token.balanceOf(stranger) != before) strangerGotFunds = true;
        _observe();
    }

    function warp(uint256 secs) external {
        time += _bound(secs, 1, 2 days);
        vm.warp(time);
        ++calls["warp"];
    }

    function togglePause() external {
        vm.prank(admin);
        if (escrow.paused()) escrow.unpause();
        else escrow.pause();
        ++calls["pause"];
    }

    // ---------------------------------------------------------------- views for the invariants

    function leaseCount() external view returns (uint256) {
        return leaseIds.length;
    }

    function tenantCount() external view returns (uint256) {
        return tenants.length;
    }

    // ---------------------------------------------------------------- internals

    function _refundAttempt(uint256 leaseId, bytes memory call, address caller) private {
        address tenant = escrow.getLease(leaseId).tenant;
        uint256 before = token.balanceOf(tenant);
        vm.prank(caller);
        (bool ok,) = address(escrow).call(call);
        if (ok) {
            refunded[leaseId] += token.balanceOf(tenant) - before;
            ++calls["refund"];
        }
        _observe();
    }

    /// @dev Records monotonic quantities after every action.
    function _observe() private {
        for (uint256 i; i < leaseIds.length; ++i) {
            uint256 id = leaseIds[i];
            Lease memory l = escrow.getLease(id);
            uint256 earned = uint256(l.claimable) + paidToProvider[id];
            if (earned < earnedSeen[id]) earnedDecreased = true;
            earnedSeen[id] = earned;
            if (l.billedUntil < billedSeen[id]) timeWentBack = true;
            billedSeen[id] = l.billedUntil;
        }
    }

    function _operator(uint256 leaseId) private view returns (address) {
        return operatorOf[escrow.getLease(leaseId).providerId];
    }

    function _pick(uint256 seed) private view returns (uint256) {
        if (leaseIds.length == 0) return 0;
        return leaseIds[seed % leaseIds.length];
    }

    /// @dev The first lease from `seed` on whose status is `a` or `b`; any lease if none is.
    function _pickIn(uint256 seed, LeaseStatus a, LeaseStatus b) private view returns (uint256) {
        uint256 n = leaseIds.length;
        if (n == 0) return 0;
        for (uint256 i; i < n; ++i) {
            uint256 id = leaseIds[(seed + i) % n];
            LeaseStatus status = escrow.getLease(id).status;
            if (status == a || status == b) return id;
        }
        return leaseIds[seed % n];
    }

    function _bound(uint256 x, uint256 min, uint256 max) private pure returns (uint256) {
        if (x >= min && x <= max) return x;
        return min + (x % (max - min + 1));
    }
}
