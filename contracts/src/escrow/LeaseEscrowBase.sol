// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {ILeaseEscrow} from "../interfaces/ILeaseEscrow.sol";
import {IProviderRegistry} from "../interfaces/IProviderRegistry.sol";
import {ChargeBuckets} from "../libraries/ChargeBuckets.sol";
import {Errors} from "../libraries/Errors.sol";
import {LeaseMath} from "../libraries/LeaseMath.sol";
import {TokenPull} from "../libraries/TokenPull.sol";
import {
    AutoTopUp,
    CloseReason,
    LeaseStatus,
    Prices,
    PullFailure,
    Resource,
    UsageReport
} from "../types/BerthTypes.sol";

/// @title LeaseEscrowBase
/// @notice Storage layout, settings and the shared internals of `LeaseEscrow`: the lease record
/// packed into four words, usage pricing, charge maturity, suspension bookkeeping, token pulls.
abstract contract LeaseEscrowBase is ILeaseEscrow {
    using ChargeBuckets for ChargeBuckets.Buckets;

    /// @notice Upper bound for every window and timeout.
    uint256 public constant MAX_WINDOW = 365 days;

    /// @notice The provider registry this escrow reserves capacity in.
    IProviderRegistry public immutable registry;
    /// @notice Rules on disputed charges.
    address public immutable arbiter;
    /// @notice Seconds after opening from which the tenant may cancel an unconfirmed lease.
    uint256 public immutable acceptTimeout;
    /// @notice Seconds a reported charge stays disputable before it matures.
    uint256 public immutable challengeWindow;
    /// @notice Seconds after a close during which the provider may still report usage.
    uint256 public immutable finalReportWindow;
    /// @notice Runway (seconds at the maximum rate) below which the provider may suspend a lease.
    uint256 public immutable minRunway;
    /// @notice Seconds a suspended lease has to be topped up before the provider may terminate it.
    uint256 public immutable gracePeriod;
    /// @notice Runway a new lease's deposit must cover; above `minRunway`, so that a new lease
    /// runs at least the difference before it can be suspended.
    uint256 public immutable minOpenRunway;

    /// @dev `flags` bit: the lease has an idle (suspended) interval not yet fully billed.
    uint8 internal constant IDLE_UNBILLED = 1;

    /// @dev A lease in four storage words. Opening writes words 0 and 1, confirming word 2, so
    /// that a report reads word 0 and rewrites words 1 and 2, and a close rewrites word 0 only.
    /// Word 3 changes only when a charge matures during a report, on disputes and around
    /// suspensions. Times are unix seconds in 32 bits (until 2106).
    struct LeaseRecord {
        // word 0
        address tenant;
        uint32 providerId;
        uint16 priceVersion;
        LeaseStatus status;
        CloseReason closeReason;
        uint32 closedAt;
        // word 1
        uint96 balance;
        uint24 cpuMillis;
        uint24 memoryMiB;
        uint24 storageGiB;
        uint32 clock; // opening time while pending; bucket A's maturity once confirmed
        uint8 flags;
        uint24 manifestVersion;
        uint24 reportCount;
        // word 2
        uint96 pendingA;
        uint96 pendingB;
        uint32 billedUntil;
        uint32 maturesB;
        // word 3
        uint96 claimable;
        uint96 disputed;
        uint32 idleFrom;
        uint32 idleUntil; // 0 while the lease is still suspended
    }

    /// @dev Values for a run of reports, reused while the provider and price version repeat.
    struct ProviderCache {
        uint256 providerId;
        address operator;
        uint16 priceVersion;
        bool pricesLoaded;
        Prices prices;
    }

    uint248 internal _leaseCount;
    /// @dev Set by the owner: no new leases. Packed with `_leaseCount`, which opening reads anyway.
    bool internal _paused;
    mapping(uint256 leaseId => LeaseRecord) internal _leases;
    mapping(uint256 leaseId => AutoTopUp) internal _autoTopUp;
    mapping(uint256 providerId => address) internal _operator;
    mapping(uint256 providerId => address) internal _token;

    constructor(IProviderRegistry registry_, address arbiter_, uint256[6] memory timing) {
        if (address(registry_) == address(0) || arbiter_ == address(0)) {
            revert Errors.LeaseEscrow_ZeroAddress();
        }
        for (uint256 i; i < 6; ++i) {
            if (timing[i] > MAX_WINDOW) revert Errors.LeaseEscrow_WindowTooLong();
        }
        if (timing[3] < timing[4]) revert Errors.LeaseEscrow_RunwayBelowGrace(timing[3], timing[4]);
        if (timing[5] <= timing[3]) revert Errors.LeaseEscrow_OpenRunwayTooShort(timing[5], timing[3]);
        registry = registry_;
        arbiter = arbiter_;
        (acceptTimeout, challengeWindow, finalReportWindow) = (timing[0], timing[1], timing[2]);
        (minRunway, gracePeriod, minOpenRunway) = (timing[3], timing[4], timing[5]);
    }

    // ---------------------------------------------------------------- usage

    function _report(UsageReport memory r, ProviderCache memory cache) internal {
        LeaseRecord storage l = _leases[r.leaseId];
        LeaseStatus status = l.status;
        if (status == LeaseStatus.None) revert Errors.LeaseEscrow_UnknownLease(r.leaseId);
        uint256 providerId = l.providerId;
        _loadProvider(cache, providerId, l.priceVersion);
        if (msg.sender != cache.operator) revert Errors.LeaseEscrow_NotOperator(r.leaseId, msg.sender);
        uint256 latestTo = block.timestamp;
        if (status == LeaseStatus.Closing) {
            latestTo = l.closedAt;
            if (block.timestamp > latestTo + finalReportWindow) {
                revert Errors.LeaseEscrow_FinalReportWindowClosed(r.leaseId, latestTo);
            }
        } else if (status != LeaseStatus.Active && status != LeaseStatus.Suspended) {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(r.leaseId, status);
        }
        if (r.sequence != uint256(l.reportCount) + 1) {
            revert Errors.LeaseEscrow_InvalidSequence(r.leaseId, uint256(l.reportCount) + 1, r.sequence);
        }
        if (r.from != l.billedUntil) {
            revert Errors.LeaseEscrow_NonContiguousPeriod(r.leaseId, l.billedUntil, r.from);
        }
        if (r.to <= r.from || r.to > latestTo) {
            revert Errors.LeaseEscrow_InvalidPeriod(r.leaseId, r.from, r.to, latestTo);
        }

        uint256 running = r.to - r.from;
        if (l.flags & IDLE_UNBILLED != 0) running = _runningSeconds(l, r, status);
        _checkUnits(r.leaseId, Resource.Cpu, r.cpuUnits, l.cpuMillis, running);
        _checkUnits(r.leaseId, Resource.Memory, r.memoryUnits, l.memoryMiB, running);
        _checkUnits(r.leaseId, Resource.Storage, r.storageUnits, l.storageGiB, running);

        uint256 balance = l.balance;
        uint256 charge =
            LeaseMath.charge(cache.prices, r.to - r.from, r.cpuUnits, r.memoryUnits, r.storageUnits);
        if (charge > balance) charge = balance;

        ChargeBuckets.Buckets memory b = _loadBuckets(l);
        b.settle(block.timestamp);
        b.add(charge, block.timestamp, challengeWindow);
        // forge-lint: disable-next-item(unsafe-typecast) -- charge <= balance; sequence checked
        (l.balance, l.reportCount) = (uint96(balance - charge), uint24(r.sequence));
        l.billedUntil = uint32(r.to);
        _storeBuckets(l, b);
        _emitReported(r, providerId, l.tenant, charge);
    }

    function _emitReported(UsageReport memory r, uint256 providerId, address tenant, uint256 charge) private {
        emit UsageReported(
            r.leaseId,
            providerId,
            tenant,
            r.sequence,
            r.from,
            r.to,
            r.cpuUnits,
            r.memoryUnits,
            r.storageUnits,
            charge,
            r.samplesRoot
        );
    }

    /// @dev Seconds of the report outside the lease's last idle interval; clears the flag once the
    /// interval of a resumed lease is fully billed.
    function _runningSeconds(LeaseRecord storage l, UsageReport memory r, LeaseStatus status)
        private
        returns (uint256)
    {
        (uint256 idleFrom, uint256 idleUntil) = (l.idleFrom, l.idleUntil);
        if (status == LeaseStatus.Active && idleUntil != 0 && r.to >= idleUntil) l.flags &= ~IDLE_UNBILLED;
        return LeaseMath.runningSeconds(r.from, r.to, idleFrom, idleUntil);
    }

    function _loadProvider(ProviderCache memory cache, uint256 providerId, uint16 priceVersion) private view {
        if (cache.providerId != providerId) {
            cache.operator = _operator[providerId];
            cache.providerId = providerId;
            cache.pricesLoaded = false;
        }
        if (!cache.pricesLoaded || cache.priceVersion != priceVersion) {
            cache.prices = registry.pricesOf(providerId, priceVersion);
            cache.priceVersion = priceVersion;
            cache.pricesLoaded = true;
        }
    }

    function _checkUnits(uint256 leaseId, Resource resource, uint256 units, uint256 reserved, uint256 running)
        private
        pure
    {
        uint256 cap = reserved * running;
        if (units > cap) revert Errors.LeaseEscrow_UnitsExceedReservation(leaseId, resource, units, cap);
    }

    // ---------------------------------------------------------------- charges

    function _loadBuckets(LeaseRecord storage l) internal view returns (ChargeBuckets.Buckets memory b) {
        b.pendingA = l.pendingA;
        if (b.pendingA != 0) b.maturesA = l.clock;
        (b.pendingB, b.maturesB) = (l.pendingB, l.maturesB);
    }

    /// @dev Writes the buckets back and adds what matured to `claimable` (word 3 only then).
    function _storeBuckets(LeaseRecord storage l, ChargeBuckets.Buckets memory b) internal {
        // forge-lint: disable-next-item(unsafe-typecast) -- amounts come from a uint96 balance, times are uint32
        (l.pendingA, l.pendingB, l.maturesB) = (uint96(b.pendingA), uint96(b.pendingB), uint32(b.maturesB));
        if (b.pendingA != 0) l.clock = uint32(b.maturesA);
        if (b.matured != 0) l.claimable += uint96(b.matured);
    }

    function _takeClaimable(LeaseRecord storage l, uint256 leaseId, uint256 providerId, address to)
        internal
        returns (uint256 amount)
    {
        ChargeBuckets.Buckets memory b = _loadBuckets(l);
        b.settle(block.timestamp);
        uint256 stored = l.claimable;
        amount = stored + b.matured;
        if (amount == 0) return 0;
        b.matured = 0;
        _storeBuckets(l, b);
        if (stored != 0) l.claimable = 0;
        emit ChargesClaimed(leaseId, providerId, to, amount);
    }

    // ---------------------------------------------------------------- balance and runway

    /// @dev Adds `amount` to the balance, refusing what would not fit in 96 bits.
    function _credit(LeaseRecord storage l, uint256 leaseId, uint256 amount)
        internal
        returns (uint256 balance)
    {
        balance = uint256(l.balance) + amount;
        if (balance > type(uint96).max) {
            revert Errors.LeaseEscrow_BalanceOverflow(leaseId, l.balance, amount);
        }
        // forge-lint: disable-next-line(unsafe-typecast) -- checked just above
        l.balance = uint96(balance);
    }

    /// @dev Resumes a suspended lease whose runway is back at the minimum.
    function _maybeResume(LeaseRecord storage l, uint256 leaseId) internal {
        uint256 depletion = LeaseMath.depletionTime(l.billedUntil, l.balance, _maxRate(l));
        if (depletion < block.timestamp + minRunway) return;
        l.status = LeaseStatus.Active;
        l.idleUntil = uint32(block.timestamp);
        emit LeaseResumed(leaseId, l.providerId, l.tenant, depletion);
    }

    /// @dev What the lease's auto top-up policy allows now; reverts with the reason when
    /// `strict`, else returns 0.
    function _autoTopUpAmount(LeaseRecord storage l, AutoTopUp storage p, uint256 leaseId, bool strict)
        internal
        view
        returns (uint256 amount)
    {
        uint256 maxTotal = p.maxTotal;
        if (maxTotal == 0) {
            if (strict) revert Errors.LeaseEscrow_NoAutoTopUp(leaseId);
            return 0;
        }
        if (block.timestamp >= p.expiresAt) {
            if (strict) revert Errors.LeaseEscrow_AutoTopUpExpired(leaseId, p.expiresAt);
            return 0;
        }
        uint256 rate = _maxRate(l);
        uint256 depletion = LeaseMath.depletionTime(l.billedUntil, l.balance, rate);
        uint256 runway = depletion > block.timestamp ? depletion - block.timestamp : 0;
        amount = LeaseMath.topUpFor(l.billedUntil, l.balance, rate, block.timestamp, p.targetRunway);
        if (runway >= p.triggerRunway || amount == 0) {
            if (strict) revert Errors.LeaseEscrow_RunwayAboveTrigger(leaseId, runway, p.triggerRunway);
            return 0;
        }
        uint256 left = maxTotal - p.pulled;
        if (left == 0) {
            if (strict) revert Errors.LeaseEscrow_AutoTopUpCapReached(leaseId, maxTotal);
            return 0;
        }
        if (amount > p.maxPerTopUp) amount = p.maxPerTopUp;
        if (amount > left) amount = left;
    }

    function _maxRate(LeaseRecord storage l) internal view returns (uint256) {
        Prices memory p = registry.pricesOf(l.providerId, l.priceVersion);
        return LeaseMath.rate(p, l.cpuMillis, l.memoryMiB, l.storageGiB);
    }

    function _depletionView(LeaseRecord storage l, uint256 rate) internal view returns (uint256) {
        LeaseStatus status = l.status;
        if (status == LeaseStatus.Active || status == LeaseStatus.Suspended) {
            return LeaseMath.depletionTime(l.billedUntil, l.balance, rate);
        }
        if (status == LeaseStatus.Pending) return LeaseMath.depletionTime(block.timestamp, l.balance, rate);
        return l.closedAt;
    }

    // ---------------------------------------------------------------- lifecycle helpers

    function _lease(uint256 leaseId) internal view returns (LeaseRecord storage l) {
        l = _leases[leaseId];
        if (l.status == LeaseStatus.None) revert Errors.LeaseEscrow_UnknownLease(leaseId);
    }

    function _checkTenant(LeaseRecord storage l, uint256 leaseId) internal view {
        if (msg.sender != l.tenant) revert Errors.LeaseEscrow_NotTenant(leaseId, msg.sender);
    }

    function _checkOperator(LeaseRecord storage l, uint256 leaseId)
        internal
        view
        returns (uint256 providerId)
    {
        providerId = l.providerId;
        if (msg.sender != _operator[providerId]) revert Errors.LeaseEscrow_NotOperator(leaseId, msg.sender);
    }

    /// @dev The operator or the owner may claim; the owner is paid.
    function _checkProviderAgent(uint256 providerId, uint256 leaseId) internal view returns (address owner_) {
        address operator;
        (operator, owner_) = registry.operatorOf(providerId);
        if (msg.sender != operator && msg.sender != owner_) {
            revert Errors.LeaseEscrow_NotProviderAgent(leaseId, msg.sender);
        }
    }

    /// @dev Marks the end of billable time, releases the provider's capacity and says why.
    function _end(LeaseRecord storage l, uint256 leaseId, LeaseStatus status, CloseReason reason) internal {
        (l.status, l.closeReason) = (status, reason);
        l.closedAt = uint32(block.timestamp);
        uint256 providerId = l.providerId;
        registry.release(providerId, l.cpuMillis, l.memoryMiB, l.storageGiB);
        emit LeaseClosed(leaseId, providerId, l.tenant, reason, block.timestamp);
    }

    /// @dev Pulls exactly `amount` of `token` from the caller, or reverts with the reason.
    function _pull(address token, uint256 amount) internal {
        (PullFailure failure, uint256 received) = TokenPull.tryPull(IERC20(token), msg.sender, amount);
        if (failure == PullFailure.Allowance) {
            revert Errors.LeaseEscrow_InsufficientAllowance(
                token, TokenPull.allowance(IERC20(token), msg.sender), amount
            );
        }
        if (failure == PullFailure.Balance) {
            revert Errors.LeaseEscrow_InsufficientBalance(
                token, TokenPull.balanceOf(IERC20(token), msg.sender), amount
            );
        }
        if (failure == PullFailure.Transfer) revert Errors.LeaseEscrow_TransferFailed(token);
        if (received != amount) revert Errors.LeaseEscrow_FeeOnTransferToken(token, amount, received);
    }
}
