// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ILeaseEscrow} from "./interfaces/ILeaseEscrow.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {
    CloseReason,
    Lease,
    LeaseStatus,
    PRICE_SCALE,
    Prices,
    RejectReason,
    UsageReport
} from "./types/BerthTypes.sol";

/// @title LeaseEscrow
/// @notice Escrow for Berth leases: tenants deposit, the provider's keeper confirms and reports
/// usage, charges mature through a challenge window (the tenant may dispute them to the arbiter)
/// and are claimed by the provider; the unearned rest is withdrawable by the tenant only.
/// Overbilling is bounded here: each resource's units are capped by reservation x period and a
/// charge is capped by the balance. The owner can pause new leases; nothing else is pausable.
contract LeaseEscrow is ILeaseEscrow, Ownable2Step, Pausable {
    using SafeERC20 for IERC20;

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
    /// @notice A deposit must cover this many seconds at the maximum rate; below it the provider
    /// may terminate.
    uint256 public immutable minRunway;

    /// @notice Upper bound for every window and timeout, so that timestamps fit in uint40.
    uint256 public constant MAX_WINDOW = 365 days;

    uint256 private _leaseCount;
    mapping(uint256 leaseId => Lease) private _leases;

    /// @dev Values read from the registry for a batch of reports, reused while the provider and
    /// price version repeat.
    struct ProviderCache {
        uint256 providerId;
        address operator;
        uint16 priceVersion;
        bool pricesLoaded;
        Prices prices;
    }

    /// @param owner_ May pause new leases; transferable in two steps.
    /// @param registry_ The provider registry (its `setEscrow` must name this contract).
    /// @param arbiter_ Rules on disputes.
    /// @param acceptTimeout_ Seconds before a tenant may cancel an unconfirmed lease.
    /// @param challengeWindow_ Seconds a charge stays disputable.
    /// @param finalReportWindow_ Seconds the provider has to report after a close.
    /// @param minRunway_ Seconds of maximum-rate billing a deposit must cover.
    constructor(
        address owner_,
        IProviderRegistry registry_,
        address arbiter_,
        uint256 acceptTimeout_,
        uint256 challengeWindow_,
        uint256 finalReportWindow_,
        uint256 minRunway_
    ) Ownable(owner_) {
        if (address(registry_) == address(0) || arbiter_ == address(0)) {
            revert ZeroAddress();
        }
        if (
            acceptTimeout_ > MAX_WINDOW || challengeWindow_ > MAX_WINDOW || finalReportWindow_ > MAX_WINDOW
                || minRunway_ > MAX_WINDOW
        ) revert WindowTooLong();
        registry = registry_;
        arbiter = arbiter_;
        acceptTimeout = acceptTimeout_;
        challengeWindow = challengeWindow_;
        finalReportWindow = finalReportWindow_;
        minRunway = minRunway_;
    }

    // ---------------------------------------------------------------- tenant

    /// @inheritdoc ILeaseEscrow
    function openLease(
        uint256 providerId,
        uint32 cpuMillis,
        uint32 memoryMiB,
        uint32 storageGiB,
        bytes32 manifestHash,
        string calldata manifestUri,
        uint256 deposit,
        uint256 maxRateAllowed
    ) external whenNotPaused returns (uint256) {
        return _open(
            providerId, cpuMillis, memoryMiB, storageGiB, manifestHash, manifestUri, deposit, maxRateAllowed
        );
    }

    /// @inheritdoc ILeaseEscrow
    function openLeaseWithPermit(
        uint256 providerId,
        uint32 cpuMillis,
        uint32 memoryMiB,
        uint32 storageGiB,
        bytes32 manifestHash,
        string calldata manifestUri,
        uint256 deposit,
        uint256 maxRateAllowed,
        uint256 deadline,
        bytes32 r,
        bytes32 vs
    ) external whenNotPaused returns (uint256) {
        _permit(providerId, deposit, deadline, r, vs);
        return _open(
            providerId, cpuMillis, memoryMiB, storageGiB, manifestHash, manifestUri, deposit, maxRateAllowed
        );
    }

    /// @inheritdoc ILeaseEscrow
    function topUp(uint256 leaseId, uint256 amount) external {
        Lease storage l = _lease(leaseId);
        if (l.status != LeaseStatus.Pending && l.status != LeaseStatus.Active) {
            revert InvalidLeaseStatus(leaseId, l.status);
        }
        if (amount == 0) revert ZeroAmount();
        address token = registry.tokenOf(l.providerId);
        uint128 balance = l.balance + SafeCast.toUint128(amount);
        l.balance = balance;
        emit LeaseToppedUp(leaseId, msg.sender, amount, balance);
        _pullExact(IERC20(token), amount);
    }

    /// @inheritdoc ILeaseEscrow
    function cancelLease(uint256 leaseId) external {
        Lease storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        if (l.status != LeaseStatus.Pending) revert InvalidLeaseStatus(leaseId, l.status);
        uint256 cancellableAt = uint256(l.createdAt) + acceptTimeout;
        if (block.timestamp < cancellableAt) revert AcceptTimeoutNotReached(leaseId, cancellableAt);
        l.status = LeaseStatus.Cancelled;
        _end(l, leaseId, CloseReason.Cancelled);
        _refund(l, leaseId, l.balance, true);
    }

    /// @inheritdoc ILeaseEscrow
    function closeLease(uint256 leaseId) external {
        Lease storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        if (l.status != LeaseStatus.Active) revert InvalidLeaseStatus(leaseId, l.status);
        l.status = LeaseStatus.Closing;
        _end(l, leaseId, CloseReason.TenantClosed);
    }

    /// @inheritdoc ILeaseEscrow
    function withdraw(uint256 leaseId) external {
        Lease storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        if (l.status != LeaseStatus.Closing) revert InvalidLeaseStatus(leaseId, l.status);
        if (l.billedUntil < l.closedAt) {
            uint256 withdrawableAt = uint256(l.closedAt) + finalReportWindow;
            if (block.timestamp <= withdrawableAt) revert FinalReportWindowOpen(leaseId, withdrawableAt);
        }
        l.status = LeaseStatus.Closed;
        uint256 amount = l.balance;
        l.balance = 0;
        emit LeaseWithdrawn(leaseId, msg.sender, amount);
        if (amount > 0) IERC20(registry.tokenOf(l.providerId)).safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc ILeaseEscrow
    function dispute(uint256 leaseId) external {
        Lease storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        _mature(l);
        uint256 amount = uint256(l.pendingA) + l.pendingB;
        if (amount == 0) revert NothingToDispute(leaseId);
        // forge-lint: disable-next-line(unsafe-typecast) -- both buckets came out of a uint128 balance
        l.disputed += uint128(amount);
        (l.pendingA, l.pendingB, l.maturesA, l.maturesB) = (0, 0, 0, 0);
        emit ChargesDisputed(leaseId, msg.sender, amount);
    }

    // ---------------------------------------------------------------- provider

    /// @inheritdoc ILeaseEscrow
    function confirmLease(uint256 leaseId, string calldata endpoint) external {
        Lease storage l = _lease(leaseId);
        _checkOperator(l, leaseId);
        if (l.status != LeaseStatus.Pending) revert InvalidLeaseStatus(leaseId, l.status);
        if (bytes(endpoint).length == 0) revert EmptyEndpoint();
        l.status = LeaseStatus.Active;
        l.confirmedAt = uint40(block.timestamp);
        l.billedUntil = uint40(block.timestamp);
        l.endpoint = endpoint;
        emit LeaseConfirmed(leaseId, l.providerId, endpoint);
    }

    /// @inheritdoc ILeaseEscrow
    function rejectLease(uint256 leaseId, RejectReason reason) external {
        Lease storage l = _lease(leaseId);
        _checkOperator(l, leaseId);
        if (l.status != LeaseStatus.Pending) revert InvalidLeaseStatus(leaseId, l.status);
        l.status = LeaseStatus.Rejected;
        emit LeaseRejected(leaseId, l.providerId, reason);
        _end(l, leaseId, CloseReason.Rejected);
        _refund(l, leaseId, l.balance, true);
    }

    /// @inheritdoc ILeaseEscrow
    function reportUsage(
        uint256 leaseId,
        uint32 sequence,
        uint40 from,
        uint40 to,
        uint64 cpuUnits,
        uint64 memoryUnits,
        uint64 storageUnits,
        bytes32 samplesRoot
    ) external {
        ProviderCache memory cache;
        _report(
            UsageReport(leaseId, sequence, from, to, cpuUnits, memoryUnits, storageUnits, samplesRoot), cache
        );
    }

    /// @inheritdoc ILeaseEscrow
    function reportUsageBatch(UsageReport[] calldata reports) external {
        if (reports.length == 0) revert EmptyBatch();
        ProviderCache memory cache;
        for (uint256 i; i < reports.length; ++i) {
            _report(reports[i], cache);
        }
    }

    /// @inheritdoc ILeaseEscrow
    function terminateLease(uint256 leaseId) external {
        Lease storage l = _lease(leaseId);
        _checkOperator(l, leaseId);
        if (l.status != LeaseStatus.Active) revert InvalidLeaseStatus(leaseId, l.status);
        uint256 depletion = _depletionTime(l, _maxRate(l));
        if (depletion >= block.timestamp + minRunway) revert RunwayAboveMinimum(leaseId, depletion);
        l.status = LeaseStatus.Closing;
        _end(l, leaseId, CloseReason.Exhausted);
    }

    /// @inheritdoc ILeaseEscrow
    function claim(uint256 leaseId) external returns (uint256 amount) {
        Lease storage l = _lease(leaseId);
        (address token, address owner_) = _checkProviderAgent(l.providerId, leaseId);
        amount = _takeClaimable(l, leaseId, owner_);
        if (amount > 0) IERC20(token).safeTransfer(owner_, amount);
    }

    /// @inheritdoc ILeaseEscrow
    function claimMany(uint256[] calldata leaseIds) external returns (uint256 amount) {
        if (leaseIds.length == 0) revert EmptyBatch();
        uint256 providerId = _lease(leaseIds[0]).providerId;
        (address token, address owner_) = _checkProviderAgent(providerId, leaseIds[0]);
        for (uint256 i; i < leaseIds.length; ++i) {
            Lease storage l = _lease(leaseIds[i]);
            if (l.providerId != providerId) revert MixedProviders(leaseIds[i], l.providerId, providerId);
            amount += _takeClaimable(l, leaseIds[i], owner_);
        }
        if (amount > 0) IERC20(token).safeTransfer(owner_, amount);
    }

    // ---------------------------------------------------------------- arbiter

    /// @inheritdoc ILeaseEscrow
    function resolveDispute(uint256 leaseId, uint256 toProvider) external {
        if (msg.sender != arbiter) revert NotArbiter(msg.sender);
        Lease storage l = _lease(leaseId);
        uint256 disputed = l.disputed;
        if (disputed == 0) revert NoDispute(leaseId);
        if (toProvider > disputed) revert AwardExceedsDisputed(leaseId, toProvider, disputed);
        l.disputed = 0;
        // forge-lint: disable-next-line(unsafe-typecast) -- toProvider <= disputed, a uint128
        l.claimable += uint128(toProvider);
        uint256 toTenant = disputed - toProvider;
        emit DisputeResolved(leaseId, toProvider, toTenant);
        _refund(l, leaseId, toTenant, false);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Stops new leases. Confirmations, reports, claims, refunds and withdrawals go on.
    function pause() external onlyOwner {
        _pause();
    }

    /// @notice Takes new leases again.
    function unpause() external onlyOwner {
        _unpause();
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc ILeaseEscrow
    function getLease(uint256 leaseId) external view returns (Lease memory) {
        return _leases[leaseId];
    }

    /// @inheritdoc ILeaseEscrow
    function leaseCount() external view returns (uint256) {
        return _leaseCount;
    }

    /// @inheritdoc ILeaseEscrow
    function maxRateOf(uint256 leaseId) external view returns (uint256) {
        return _maxRate(_lease(leaseId));
    }

    /// @inheritdoc ILeaseEscrow
    function claimableOf(uint256 leaseId) external view returns (uint256 amount) {
        Lease storage l = _lease(leaseId);
        amount = l.claimable;
        if (l.pendingA != 0 && l.maturesA <= block.timestamp) amount += l.pendingA;
        if (l.pendingB != 0 && l.maturesB <= block.timestamp) amount += l.pendingB;
    }

    /// @inheritdoc ILeaseEscrow
    function pendingOf(uint256 leaseId) external view returns (uint256 amount) {
        Lease storage l = _lease(leaseId);
        if (l.maturesA > block.timestamp) amount += l.pendingA;
        if (l.maturesB > block.timestamp) amount += l.pendingB;
    }

    /// @inheritdoc ILeaseEscrow
    function refundableOf(uint256 leaseId) external view returns (uint256) {
        Lease storage l = _lease(leaseId);
        if (l.status == LeaseStatus.Pending) {
            return block.timestamp >= uint256(l.createdAt) + acceptTimeout ? l.balance : 0;
        }
        if (l.status == LeaseStatus.Closing) {
            bool final_ =
                l.billedUntil >= l.closedAt || block.timestamp > uint256(l.closedAt) + finalReportWindow;
            return final_ ? l.balance : 0;
        }
        return 0;
    }

    /// @inheritdoc ILeaseEscrow
    function depletionTimeOf(uint256 leaseId) external view returns (uint256) {
        Lease storage l = _lease(leaseId);
        if (l.status == LeaseStatus.Active) return _depletionTime(l, _maxRate(l));
        if (l.status == LeaseStatus.Pending) {
            uint256 rate = _maxRate(l);
            return rate == 0 ? type(uint40).max : block.timestamp + uint256(l.balance) * PRICE_SCALE / rate;
        }
        return l.closedAt;
    }

    // ---------------------------------------------------------------- internals: opening

    function _open(
        uint256 providerId,
        uint32 cpuMillis,
        uint32 memoryMiB,
        uint32 storageGiB,
        bytes32 manifestHash,
        string calldata manifestUri,
        uint256 deposit,
        uint256 maxRateAllowed
    ) private returns (uint256 leaseId) {
        if (cpuMillis == 0 || memoryMiB == 0) revert ZeroResources();
        if (manifestHash == bytes32(0)) revert EmptyManifestHash();
        (address token, uint16 priceVersion, uint256 rate) =
            _reserve(providerId, cpuMillis, memoryMiB, storageGiB, deposit, maxRateAllowed);

        leaseId = ++_leaseCount;
        Lease storage l = _leases[leaseId];
        l.tenant = msg.sender;
        l.providerId = SafeCast.toUint32(providerId);
        l.priceVersion = priceVersion;
        l.status = LeaseStatus.Pending;
        (l.cpuMillis, l.memoryMiB, l.storageGiB) = (cpuMillis, memoryMiB, storageGiB);
        l.createdAt = uint40(block.timestamp);
        l.balance = SafeCast.toUint128(deposit);
        l.manifestHash = manifestHash;
        _emitOpened(leaseId, l, manifestUri, deposit, rate);
        _pullExact(IERC20(token), deposit);
    }

    /// @dev Reserves capacity with the registry and checks the token, the price guard and the
    /// minimum runway of the deposit.
    function _reserve(
        uint256 providerId,
        uint32 cpuMillis,
        uint32 memoryMiB,
        uint32 storageGiB,
        uint256 deposit,
        uint256 maxRateAllowed
    ) private returns (address token, uint16 priceVersion, uint256 rate) {
        if (deposit == 0) revert ZeroAmount();
        Prices memory prices;
        (, token, priceVersion, prices) = registry.reserve(providerId, cpuMillis, memoryMiB, storageGiB);
        rate = _rate(prices, cpuMillis, memoryMiB, storageGiB);
        if (rate > maxRateAllowed) revert RateAboveMax(rate, maxRateAllowed);
        uint256 required = (minRunway * rate + PRICE_SCALE - 1) / PRICE_SCALE;
        if (deposit < required) revert InsufficientDeposit(deposit, required);
    }

    function _emitOpened(
        uint256 leaseId,
        Lease storage l,
        string calldata manifestUri,
        uint256 deposit,
        uint256 rate
    ) private {
        emit LeaseOpened(
            leaseId,
            l.providerId,
            msg.sender,
            l.priceVersion,
            l.cpuMillis,
            l.memoryMiB,
            l.storageGiB,
            l.manifestHash,
            manifestUri,
            deposit,
            rate
        );
    }

    /// @dev EIP-2612 permit wrapped in try/catch: a front-run permit must not block the lease
    /// when the allowance it set is already in place.
    function _permit(uint256 providerId, uint256 deposit, uint256 deadline, bytes32 r, bytes32 vs) private {
        address token = registry.tokenOf(providerId);
        bytes32 s = vs & bytes32(type(uint256).max >> 1);
        uint8 v = uint8((uint256(vs) >> 255) + 27);
        try IERC20Permit(token).permit(msg.sender, address(this), deposit, deadline, v, r, s) {} catch {}
    }

    // ---------------------------------------------------------------- internals: usage

    function _report(UsageReport memory r, ProviderCache memory cache) private {
        Lease storage l = _lease(r.leaseId);
        _loadProvider(l, cache);
        if (msg.sender != cache.operator) revert NotOperator(r.leaseId, msg.sender);
        uint256 charge = _priceReport(l, r, cache.prices);
        l.reportCount = r.sequence;
        l.billedUntil = r.to;
        _mature(l);
        if (charge > 0) {
            // forge-lint: disable-next-line(unsafe-typecast) -- charge <= balance, a uint128
            uint128 amount = uint128(charge);
            l.balance -= amount;
            _addPending(l, amount);
        }
        _emitReported(r, l.providerId, charge);
    }

    /// @dev Checks status, sequence, contiguity, period and unit caps; returns the charge capped
    /// by the balance.
    function _priceReport(Lease storage l, UsageReport memory r, Prices memory p)
        private
        view
        returns (uint256 charge)
    {
        LeaseStatus status = l.status;
        if (status == LeaseStatus.Closing) {
            if (block.timestamp > uint256(l.closedAt) + finalReportWindow) {
                revert FinalReportWindowClosed(r.leaseId, l.closedAt);
            }
        } else if (status != LeaseStatus.Active) {
            revert InvalidLeaseStatus(r.leaseId, status);
        }
        if (r.sequence != uint256(l.reportCount) + 1) {
            revert InvalidSequence(r.leaseId, uint256(l.reportCount) + 1, r.sequence);
        }
        if (r.from != l.billedUntil) revert NonContiguousPeriod(r.leaseId, l.billedUntil, r.from);
        uint256 latestTo = status == LeaseStatus.Closing ? l.closedAt : block.timestamp;
        if (r.to <= r.from || r.to > latestTo) revert InvalidPeriod(r.leaseId, r.from, r.to, latestTo);

        uint256 period = r.to - r.from;
        _checkUnits(r.leaseId, 0, r.cpuUnits, l.cpuMillis, period);
        _checkUnits(r.leaseId, 1, r.memoryUnits, l.memoryMiB, period);
        _checkUnits(r.leaseId, 2, r.storageUnits, l.storageGiB, period);

        charge =
            (period
                    * p.baseRate
                    + uint256(r.cpuUnits)
                    * p.cpuPrice
                    + uint256(r.memoryUnits)
                    * p.memoryPrice
                    + uint256(r.storageUnits)
                    * p.storagePrice) / PRICE_SCALE;
        if (charge > l.balance) charge = l.balance;
    }

    function _emitReported(UsageReport memory r, uint256 providerId, uint256 charge) private {
        emit UsageReported(
            r.leaseId,
            providerId,
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

    function _loadProvider(Lease storage l, ProviderCache memory cache) private view {
        uint256 providerId = l.providerId;
        if (cache.providerId != providerId) {
            (cache.operator,) = registry.operatorOf(providerId);
            cache.providerId = providerId;
            cache.pricesLoaded = false;
        }
        if (!cache.pricesLoaded || cache.priceVersion != l.priceVersion) {
            cache.prices = registry.pricesOf(providerId, l.priceVersion);
            cache.priceVersion = l.priceVersion;
            cache.pricesLoaded = true;
        }
    }

    function _checkUnits(uint256 leaseId, uint8 resource, uint256 units, uint256 reserved, uint256 period)
        private
        pure
    {
        uint256 cap = reserved * period;
        if (units > cap) revert UnitsExceedReservation(leaseId, resource, units, cap);
    }

    /// @dev Moves matured buckets into `claimable`, keeping bucket A the older one.
    function _mature(Lease storage l) private {
        if (l.pendingA == 0 || l.maturesA > block.timestamp) return;
        uint128 matured = l.pendingA;
        (l.pendingA, l.maturesA) = (l.pendingB, l.maturesB);
        (l.pendingB, l.maturesB) = (0, 0);
        if (l.pendingA != 0 && l.maturesA <= block.timestamp) {
            matured += l.pendingA;
            (l.pendingA, l.maturesA) = (0, 0);
        }
        l.claimable += matured;
    }

    function _addPending(Lease storage l, uint128 charge) private {
        // forge-lint: disable-next-line(unsafe-typecast) -- windows are bounded by MAX_WINDOW
        uint40 maturesAt = uint40(block.timestamp + challengeWindow);
        if (l.pendingA == 0) {
            (l.pendingA, l.maturesA) = (charge, maturesAt);
        } else {
            // Bucket B collects every charge reported while A is still in its window.
            (l.pendingB, l.maturesB) = (l.pendingB + charge, maturesAt);
        }
    }

    function _takeClaimable(Lease storage l, uint256 leaseId, address to) private returns (uint256 amount) {
        _mature(l);
        amount = l.claimable;
        if (amount == 0) return 0;
        l.claimable = 0;
        emit ChargesClaimed(leaseId, l.providerId, to, amount);
    }

    // ---------------------------------------------------------------- internals: helpers

    function _lease(uint256 leaseId) private view returns (Lease storage l) {
        l = _leases[leaseId];
        if (l.status == LeaseStatus.None) revert UnknownLease(leaseId);
    }

    function _checkTenant(Lease storage l, uint256 leaseId) private view {
        if (msg.sender != l.tenant) revert NotTenant(leaseId, msg.sender);
    }

    function _checkOperator(Lease storage l, uint256 leaseId) private view {
        (address operator,) = registry.operatorOf(l.providerId);
        if (msg.sender != operator) revert NotOperator(leaseId, msg.sender);
    }

    function _checkProviderAgent(uint256 providerId, uint256 leaseId)
        private
        view
        returns (address token, address owner_)
    {
        address operator;
        (operator, owner_, token) = registry.agentsOf(providerId);
        if (msg.sender != operator && msg.sender != owner_) revert NotProviderAgent(leaseId, msg.sender);
    }

    /// @dev Marks the end of billable time, releases the provider's capacity and says why.
    function _end(Lease storage l, uint256 leaseId, CloseReason reason) private {
        l.closeReason = reason;
        l.closedAt = uint40(block.timestamp);
        registry.release(l.providerId, l.cpuMillis, l.memoryMiB, l.storageGiB);
        emit LeaseClosed(leaseId, l.providerId, l.tenant, reason, block.timestamp);
    }

    /// @dev Pays `amount` to the tenant; `fromBalance` says whether it leaves the lease balance
    /// (rejection, cancellation: emits `Refunded`) or comes from a dispute ruling (whose
    /// `DisputeResolved` already carries it).
    function _refund(Lease storage l, uint256 leaseId, uint256 amount, bool fromBalance) private {
        if (fromBalance) {
            // forge-lint: disable-next-line(unsafe-typecast) -- amount is the uint128 balance itself
            l.balance -= uint128(amount);
            if (amount > 0) emit Refunded(leaseId, l.tenant, amount);
        }
        if (amount > 0) IERC20(registry.tokenOf(l.providerId)).safeTransfer(l.tenant, amount);
    }

    function _maxRate(Lease storage l) private view returns (uint256) {
        Prices memory p = registry.pricesOf(l.providerId, l.priceVersion);
        return _rate(p, l.cpuMillis, l.memoryMiB, l.storageGiB);
    }

    function _rate(Prices memory p, uint256 cpuMillis, uint256 memoryMiB, uint256 storageGiB)
        private
        pure
        returns (uint256)
    {
        return p.baseRate + cpuMillis * p.cpuPrice + memoryMiB * p.memoryPrice + storageGiB * p.storagePrice;
    }

    function _depletionTime(Lease storage l, uint256 rate) private view returns (uint256) {
        if (rate == 0) return type(uint40).max;
        return uint256(l.billedUntil) + uint256(l.balance) * PRICE_SCALE / rate;
    }

    /// @dev Pulls exactly `amount` from the caller or reverts: fee-on-transfer tokens are refused.
    function _pullExact(IERC20 token, uint256 amount) private {
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) revert FeeOnTransferToken(address(token), amount, received);
    }
}
