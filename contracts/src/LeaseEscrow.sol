// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

import {LeaseEscrowBase} from "./escrow/LeaseEscrowBase.sol";
import {ILeaseEscrow} from "./interfaces/ILeaseEscrow.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {ChargeBuckets} from "./libraries/ChargeBuckets.sol";
import {Errors} from "./libraries/Errors.sol";
import {LeaseMath} from "./libraries/LeaseMath.sol";
import {TokenPull} from "./libraries/TokenPull.sol";
import {
    AutoTopUp,
    CloseReason,
    Lease,
    LeaseStatus,
    Prices,
    ProviderStatus,
    PullFailure,
    RejectReason,
    Resource,
    UsageReport
} from "./types/BerthTypes.sol";

/// @title LeaseEscrow
/// @notice Escrow for Berth leases: tenants deposit, the provider's keeper confirms and reports
/// usage, charges mature through a challenge window (the tenant may dispute them to the arbiter)
/// and are claimed by the provider; the unearned rest is withdrawable by the tenant only.
/// Overbilling is bounded here: each resource's units are capped by reservation x running time
/// and a charge is capped by the balance. A lease whose runway falls below `minRunway` is
/// suspended (base rate only) and may be terminated after `gracePeriod`; a top-up, manual or
/// under the tenant's capped auto top-up policy, resumes it. The owner can pause new leases;
/// nothing else is pausable.
contract LeaseEscrow is ILeaseEscrow, LeaseEscrowBase, Ownable2Step {
    using SafeERC20 for IERC20;
    using ChargeBuckets for ChargeBuckets.Buckets;

    /// @param owner_ May pause new leases; transferable in two steps.
    /// @param registry_ The provider registry (its `setEscrow` must name this contract).
    /// @param arbiter_ Rules on disputes.
    /// @param timing Seconds: accept timeout, challenge window, final-report window, minimum
    /// runway (suspension threshold), grace period, minimum opening runway.
    constructor(address owner_, IProviderRegistry registry_, address arbiter_, uint256[6] memory timing)
        LeaseEscrowBase(registry_, arbiter_, timing)
        Ownable(owner_)
    {}

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
    ) external returns (uint256) {
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
    ) external returns (uint256) {
        _permit(providerId, deposit, deadline, r, vs);
        return _open(
            providerId, cpuMillis, memoryMiB, storageGiB, manifestHash, manifestUri, deposit, maxRateAllowed
        );
    }

    /// @inheritdoc ILeaseEscrow
    function topUp(uint256 leaseId, uint256 amount) external {
        LeaseRecord storage l = _lease(leaseId);
        LeaseStatus status = l.status;
        if (status != LeaseStatus.Active && status != LeaseStatus.Pending && status != LeaseStatus.Suspended)
        {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, status);
        }
        if (amount == 0) revert Errors.LeaseEscrow_ZeroAmount();
        uint256 balance = _credit(l, leaseId, amount);
        uint256 providerId = l.providerId;
        emit LeaseToppedUp(leaseId, providerId, l.tenant, msg.sender, amount, balance);
        _pull(_token[providerId], amount);
        if (status == LeaseStatus.Suspended) _maybeResume(l, leaseId);
    }

    /// @inheritdoc ILeaseEscrow
    function updateManifest(uint256 leaseId, bytes32 manifestHash, string calldata manifestUri) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        LeaseStatus status = l.status;
        if (status != LeaseStatus.Active && status != LeaseStatus.Suspended) {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, status);
        }
        if (manifestHash == bytes32(0)) revert Errors.LeaseEscrow_EmptyManifestHash();
        uint24 version = l.manifestVersion + 1;
        l.manifestVersion = version;
        emit ManifestUpdated(leaseId, l.providerId, msg.sender, version, manifestHash, manifestUri);
    }

    /// @inheritdoc ILeaseEscrow
    function setAutoTopUp(
        uint256 leaseId,
        uint256 maxPerTopUp,
        uint256 maxTotal,
        uint256 expiresAt,
        uint256 triggerRunway,
        uint256 targetRunway
    ) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        LeaseStatus status = l.status;
        if (status != LeaseStatus.Active && status != LeaseStatus.Pending && status != LeaseStatus.Suspended)
        {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, status);
        }
        if (
            maxPerTopUp == 0 || maxPerTopUp > maxTotal || maxTotal > type(uint96).max
                || expiresAt <= block.timestamp || expiresAt > type(uint32).max
                || targetRunway <= triggerRunway || targetRunway > MAX_WINDOW
        ) revert Errors.LeaseEscrow_InvalidAutoTopUp();
        // forge-lint: disable-next-item(unsafe-typecast) -- each bounded above
        _autoTopUp[leaseId] = AutoTopUp({
            maxPerTopUp: uint96(maxPerTopUp),
            maxTotal: uint96(maxTotal),
            expiresAt: uint32(expiresAt),
            triggerRunway: uint32(triggerRunway),
            pulled: 0,
            targetRunway: uint32(targetRunway)
        });
        emit AutoTopUpSet(
            leaseId, l.providerId, msg.sender, maxPerTopUp, maxTotal, expiresAt, triggerRunway, targetRunway
        );
    }

    /// @inheritdoc ILeaseEscrow
    function clearAutoTopUp(uint256 leaseId) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        if (_autoTopUp[leaseId].maxTotal == 0) revert Errors.LeaseEscrow_NoAutoTopUp(leaseId);
        delete _autoTopUp[leaseId];
        emit AutoTopUpCleared(leaseId, l.providerId, msg.sender);
    }

    /// @inheritdoc ILeaseEscrow
    function cancelLease(uint256 leaseId) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        if (l.status != LeaseStatus.Pending) revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, l.status);
        uint256 cancellableAt = uint256(l.clock) + acceptTimeout;
        if (block.timestamp < cancellableAt) {
            revert Errors.LeaseEscrow_AcceptTimeoutNotReached(leaseId, cancellableAt);
        }
        _end(l, leaseId, LeaseStatus.Cancelled, CloseReason.Cancelled);
    }

    /// @inheritdoc ILeaseEscrow
    function closeLease(uint256 leaseId) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        LeaseStatus status = l.status;
        if (status != LeaseStatus.Active && status != LeaseStatus.Suspended) {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, status);
        }
        _end(l, leaseId, LeaseStatus.Closing, CloseReason.TenantClosed);
    }

    /// @inheritdoc ILeaseEscrow
    function withdraw(uint256 leaseId) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        LeaseStatus status = l.status;
        uint256 amount = l.balance;
        if (status == LeaseStatus.Closing) {
            uint256 closedAt = l.closedAt;
            if (l.billedUntil < closedAt && block.timestamp <= closedAt + finalReportWindow) {
                revert Errors.LeaseEscrow_FinalReportWindowOpen(leaseId, closedAt + finalReportWindow);
            }
            l.status = LeaseStatus.Closed;
        } else if (
            status == LeaseStatus.Closed || status == LeaseStatus.Rejected || status == LeaseStatus.Cancelled
        ) {
            if (amount == 0) revert Errors.LeaseEscrow_NothingToWithdraw(leaseId);
        } else {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, status);
        }
        uint256 providerId = l.providerId;
        if (amount > 0) l.balance = 0;
        emit LeaseWithdrawn(leaseId, providerId, msg.sender, amount);
        if (amount > 0) IERC20(_token[providerId]).safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc ILeaseEscrow
    function dispute(uint256 leaseId) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkTenant(l, leaseId);
        ChargeBuckets.Buckets memory b = _loadBuckets(l);
        b.settle(block.timestamp);
        uint256 amount = b.unmatured();
        if (amount == 0) revert Errors.LeaseEscrow_NothingToDispute(leaseId);
        (b.pendingA, b.maturesA, b.pendingB, b.maturesB) = (0, 0, 0, 0);
        _storeBuckets(l, b);
        // forge-lint: disable-next-line(unsafe-typecast) -- the buckets came out of a uint96 balance
        l.disputed += uint96(amount);
        emit ChargesDisputed(leaseId, l.providerId, msg.sender, amount);
    }

    // ---------------------------------------------------------------- anyone

    /// @inheritdoc ILeaseEscrow
    function autoTopUp(uint256 leaseId) external returns (uint256 amount) {
        LeaseRecord storage l = _lease(leaseId);
        LeaseStatus status = l.status;
        if (status != LeaseStatus.Active && status != LeaseStatus.Suspended) {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, status);
        }
        AutoTopUp storage p = _autoTopUp[leaseId];
        amount = _autoTopUpAmount(l, p, leaseId, true);
        uint256 providerId = l.providerId;
        address tenant = l.tenant;
        // Effects first, undone below when the pull fails: a token cannot re-enter past the caps.
        uint256 pulled = p.pulled + amount;
        // forge-lint: disable-next-line(unsafe-typecast) -- pulled <= maxTotal, a uint96
        p.pulled = uint96(pulled);
        uint256 balance = _credit(l, leaseId, amount);
        uint256 gasBefore = gasleft();
        (PullFailure failure, uint256 received) =
            TokenPull.tryPull(IERC20(_token[providerId]), tenant, amount);
        if (failure != PullFailure.None) {
            // A pull starved of gas by the caller is not the tenant's failure (EIP-150 keeps 1/64).
            if (gasleft() <= gasBefore / 64) revert Errors.LeaseEscrow_TransferFailed(_token[providerId]);
            // forge-lint: disable-next-item(unsafe-typecast) -- restoring the values read above
            p.pulled = uint96(pulled - amount);
            l.balance = uint96(balance - amount);
            emit AutoTopUpFailed(leaseId, providerId, tenant, amount, failure);
            return 0;
        }
        if (received != amount) {
            revert Errors.LeaseEscrow_FeeOnTransferToken(_token[providerId], amount, received);
        }
        emit LeaseToppedUp(leaseId, providerId, tenant, tenant, amount, balance);
        emit AutoTopUpExecuted(leaseId, providerId, tenant, msg.sender, amount, pulled);
        if (status == LeaseStatus.Suspended) _maybeResume(l, leaseId);
    }

    // ---------------------------------------------------------------- provider

    /// @inheritdoc ILeaseEscrow
    function confirmLease(uint256 leaseId, string calldata endpoint) external {
        LeaseRecord storage l = _lease(leaseId);
        uint256 providerId = _checkOperator(l, leaseId);
        if (l.status != LeaseStatus.Pending) revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, l.status);
        if (bytes(endpoint).length == 0) revert Errors.LeaseEscrow_EmptyEndpoint();
        l.status = LeaseStatus.Active;
        l.billedUntil = uint32(block.timestamp);
        emit LeaseConfirmed(leaseId, providerId, l.tenant, endpoint);
    }

    /// @inheritdoc ILeaseEscrow
    function rejectLease(uint256 leaseId, RejectReason reason) external {
        LeaseRecord storage l = _lease(leaseId);
        uint256 providerId = _checkOperator(l, leaseId);
        if (l.status != LeaseStatus.Pending) revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, l.status);
        emit LeaseRejected(leaseId, providerId, l.tenant, reason);
        _end(l, leaseId, LeaseStatus.Rejected, CloseReason.Rejected);
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
        if (reports.length == 0) revert Errors.LeaseEscrow_EmptyBatch();
        ProviderCache memory cache;
        for (uint256 i; i < reports.length; ++i) {
            _report(reports[i], cache);
        }
    }

    /// @inheritdoc ILeaseEscrow
    function suspendLease(uint256 leaseId) external {
        LeaseRecord storage l = _lease(leaseId);
        uint256 providerId = _checkOperator(l, leaseId);
        if (l.status != LeaseStatus.Active) revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, l.status);
        uint256 depletion = LeaseMath.depletionTime(l.billedUntil, l.balance, _maxRate(l));
        if (depletion >= block.timestamp + minRunway) {
            revert Errors.LeaseEscrow_RunwayAboveMinimum(leaseId, depletion, block.timestamp + minRunway);
        }
        if (l.flags & IDLE_UNBILLED != 0) {
            revert Errors.LeaseEscrow_IdlePeriodUnbilled(leaseId, l.billedUntil, l.idleUntil);
        }
        l.status = LeaseStatus.Suspended;
        l.flags |= IDLE_UNBILLED;
        (l.idleFrom, l.idleUntil) = (uint32(block.timestamp), 0);
        emit LeaseSuspended(leaseId, providerId, l.tenant, depletion, block.timestamp + gracePeriod);
    }

    /// @inheritdoc ILeaseEscrow
    function terminateLease(uint256 leaseId) external {
        LeaseRecord storage l = _lease(leaseId);
        _checkOperator(l, leaseId);
        if (l.status != LeaseStatus.Suspended) {
            revert Errors.LeaseEscrow_InvalidLeaseStatus(leaseId, l.status);
        }
        uint256 terminableAt = uint256(l.idleFrom) + gracePeriod;
        if (block.timestamp < terminableAt) {
            revert Errors.LeaseEscrow_GracePeriodNotOver(leaseId, terminableAt);
        }
        _end(l, leaseId, LeaseStatus.Closing, CloseReason.Exhausted);
    }

    /// @inheritdoc ILeaseEscrow
    function claim(uint256 leaseId) external returns (uint256 amount) {
        LeaseRecord storage l = _lease(leaseId);
        uint256 providerId = l.providerId;
        address owner_ = _checkProviderAgent(providerId, leaseId);
        amount = _takeClaimable(l, leaseId, providerId, owner_);
        if (amount > 0) IERC20(_token[providerId]).safeTransfer(owner_, amount);
    }

    /// @inheritdoc ILeaseEscrow
    function claimMany(uint256[] calldata leaseIds) external returns (uint256 amount) {
        if (leaseIds.length == 0) revert Errors.LeaseEscrow_EmptyBatch();
        uint256 providerId = _lease(leaseIds[0]).providerId;
        address owner_ = _checkProviderAgent(providerId, leaseIds[0]);
        for (uint256 i; i < leaseIds.length; ++i) {
            LeaseRecord storage l = _lease(leaseIds[i]);
            if (l.providerId != providerId) {
                revert Errors.LeaseEscrow_MixedProviders(leaseIds[i], l.providerId, providerId);
            }
            amount += _takeClaimable(l, leaseIds[i], providerId, owner_);
        }
        if (amount > 0) IERC20(_token[providerId]).safeTransfer(owner_, amount);
    }

    // ---------------------------------------------------------------- registry

    /// @inheritdoc ILeaseEscrow
    function syncProvider(uint256 providerId, address operator, address token) external {
        if (msg.sender != address(registry)) revert Errors.LeaseEscrow_NotRegistry(msg.sender);
        _operator[providerId] = operator;
        _token[providerId] = token;
    }

    // ---------------------------------------------------------------- arbiter

    /// @inheritdoc ILeaseEscrow
    function resolveDispute(uint256 leaseId, uint256 toProvider) external {
        if (msg.sender != arbiter) revert Errors.LeaseEscrow_NotArbiter(msg.sender);
        LeaseRecord storage l = _lease(leaseId);
        uint256 disputed = l.disputed;
        if (disputed == 0) revert Errors.LeaseEscrow_NoDispute(leaseId);
        if (toProvider > disputed) {
            revert Errors.LeaseEscrow_AwardExceedsDisputed(leaseId, toProvider, disputed);
        }
        l.disputed = 0;
        // forge-lint: disable-next-line(unsafe-typecast) -- toProvider <= disputed, a uint96
        l.claimable += uint96(toProvider);
        uint256 toTenant = disputed - toProvider;
        // The tenant's part goes back to the balance (runway, or withdrawable once ended): a
        // token refusing a transfer to the tenant never blocks the ruling.
        if (toTenant > 0) _credit(l, leaseId, toTenant);
        emit DisputeResolved(leaseId, l.providerId, l.tenant, toProvider, toTenant);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Stops new leases. Confirmations, reports, top-ups, claims and withdrawals go on.
    function pause() external onlyOwner {
        if (_paused) revert Errors.LeaseEscrow_Paused();
        _paused = true;
        emit Paused(msg.sender);
    }

    /// @notice Takes new leases again.
    function unpause() external onlyOwner {
        if (!_paused) revert Errors.LeaseEscrow_NotPaused();
        _paused = false;
        emit Unpaused(msg.sender);
    }

    /// @notice Whether new leases are stopped.
    function paused() external view returns (bool) {
        return _paused;
    }

    /// @notice Starts handing the escrow's administration (pausing new leases) to `newOwner`,
    /// who must accept it.
    function transferOwnership(address newOwner) public override onlyOwner {
        super.transferOwnership(newOwner);
    }

    /// @notice Completes a handover started by `transferOwnership`; only the named new owner may call.
    function acceptOwnership() public override {
        super.acceptOwnership();
    }

    /// @notice Gives up administration for good: nobody can pause new leases any more.
    function renounceOwnership() public override onlyOwner {
        super.renounceOwnership();
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc ILeaseEscrow
    function getLease(uint256 leaseId) external view returns (Lease memory v) {
        LeaseRecord storage l = _leases[leaseId];
        if (l.status == LeaseStatus.None) return v;
        (v.tenant, v.providerId, v.priceVersion, v.status, v.closeReason, v.manifestVersion) =
        (l.tenant, l.providerId, l.priceVersion, l.status, l.closeReason, l.manifestVersion);
        (v.cpuMillis, v.memoryMiB, v.storageGiB) = (l.cpuMillis, l.memoryMiB, l.storageGiB);
        v.billedUntil = l.billedUntil;
        if (v.billedUntil == 0) v.createdAt = l.clock;
        v.closedAt = l.closedAt;
        (v.suspendedAt, v.resumedAt) = (l.idleFrom, l.idleUntil);
        v.reportCount = l.reportCount;
        (v.balance, v.disputed) = (l.balance, l.disputed);
        ChargeBuckets.Buckets memory b = _loadBuckets(l);
        b.settle(block.timestamp);
        (v.claimable, v.pending) = (uint256(l.claimable) + b.matured, b.unmatured());
        v.maxRate = _maxRate(l);
        v.depletionTime = _depletionView(l, v.maxRate);
    }

    /// @inheritdoc ILeaseEscrow
    function autoTopUpOf(uint256 leaseId) external view returns (AutoTopUp memory) {
        return _autoTopUp[leaseId];
    }

    /// @inheritdoc ILeaseEscrow
    function autoTopUpDue(uint256 leaseId) external view returns (uint256) {
        LeaseRecord storage l = _leases[leaseId];
        if (l.status != LeaseStatus.Active && l.status != LeaseStatus.Suspended) return 0;
        return _autoTopUpAmount(l, _autoTopUp[leaseId], leaseId, false);
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
    function claimableOf(uint256 leaseId) external view returns (uint256) {
        LeaseRecord storage l = _lease(leaseId);
        ChargeBuckets.Buckets memory b = _loadBuckets(l);
        b.settle(block.timestamp);
        return uint256(l.claimable) + b.matured;
    }

    /// @inheritdoc ILeaseEscrow
    function pendingOf(uint256 leaseId) external view returns (uint256) {
        ChargeBuckets.Buckets memory b = _loadBuckets(_lease(leaseId));
        b.settle(block.timestamp);
        return b.unmatured();
    }

    /// @inheritdoc ILeaseEscrow
    function refundableOf(uint256 leaseId) external view returns (uint256) {
        LeaseRecord storage l = _lease(leaseId);
        LeaseStatus status = l.status;
        if (status == LeaseStatus.Pending) {
            return block.timestamp >= uint256(l.clock) + acceptTimeout ? l.balance : 0;
        }
        if (status == LeaseStatus.Closing) {
            bool final_ =
                l.billedUntil >= l.closedAt || block.timestamp > uint256(l.closedAt) + finalReportWindow;
            return final_ ? l.balance : 0;
        }
        if (status == LeaseStatus.Closed || status == LeaseStatus.Rejected || status == LeaseStatus.Cancelled)
        {
            return l.balance;
        }
        return 0;
    }

    /// @inheritdoc ILeaseEscrow
    function depletionTimeOf(uint256 leaseId) external view returns (uint256) {
        LeaseRecord storage l = _lease(leaseId);
        return _depletionView(l, _maxRate(l));
    }

    /// @inheritdoc ILeaseEscrow
    function runwayOf(uint256 leaseId) external view returns (uint256) {
        LeaseRecord storage l = _lease(leaseId);
        uint256 depletion = _depletionView(l, _maxRate(l));
        return depletion > block.timestamp ? depletion - block.timestamp : 0;
    }

    /// @notice The operator key and payment token the escrow holds for a provider.
    function providerAgents(uint256 providerId) external view returns (address operator, address token) {
        return (_operator[providerId], _token[providerId]);
    }

    // ---------------------------------------------------------------- internals

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
        if (_paused) revert Errors.LeaseEscrow_Paused();
        if (manifestHash == bytes32(0)) revert Errors.LeaseEscrow_EmptyManifestHash();
        (address token, uint16 priceVersion, uint256 rate) =
            _reserve(providerId, cpuMillis, memoryMiB, storageGiB, deposit, maxRateAllowed);

        leaseId = ++_leaseCount;
        LeaseRecord storage l = _leases[leaseId];
        // forge-lint: disable-next-item(unsafe-typecast) -- ids and sizes are checked above
        (l.tenant, l.providerId, l.priceVersion, l.status) =
        (msg.sender, uint32(providerId), priceVersion, LeaseStatus.Pending);
        (l.balance, l.cpuMillis, l.memoryMiB, l.storageGiB, l.clock) =
        (uint96(deposit), uint24(cpuMillis), uint24(memoryMiB), uint24(storageGiB), uint32(block.timestamp));
        _emitOpened(l, leaseId, manifestHash, manifestUri, deposit, rate);
        _pull(token, deposit);
    }

    function _emitOpened(
        LeaseRecord storage l,
        uint256 leaseId,
        bytes32 manifestHash,
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
            manifestHash,
            manifestUri,
            deposit,
            rate
        );
    }

    /// @dev Checks the reservation and the deposit and reserves capacity with the registry; its
    /// refusals become this escrow's errors, so that a wallet decodes them with the escrow's ABI.
    function _reserve(
        uint256 providerId,
        uint32 cpuMillis,
        uint32 memoryMiB,
        uint32 storageGiB,
        uint256 deposit,
        uint256 maxRateAllowed
    ) private returns (address token, uint16 priceVersion, uint256 rate) {
        _checkReservation(cpuMillis, memoryMiB, storageGiB);
        if (deposit == 0) revert Errors.LeaseEscrow_ZeroAmount();
        if (deposit > type(uint96).max) revert Errors.LeaseEscrow_BalanceOverflow(0, 0, deposit);
        token = _providerToken(providerId);
        (IProviderRegistry.Refusal refusal, uint256 a, uint256 b, uint16 version, Prices memory prices) =
            registry.reserve(providerId, cpuMillis, memoryMiB, storageGiB);
        if (refusal != IProviderRegistry.Refusal.None) {
            if (refusal == IProviderRegistry.Refusal.NotAccepting) {
                // forge-lint: disable-next-line(unsafe-typecast) -- a ProviderStatus from the registry
                revert Errors.LeaseEscrow_ProviderNotAccepting(providerId, ProviderStatus(uint8(a)));
            }
            if (refusal == IProviderRegistry.Refusal.TokenNotAllowed) {
                revert Errors.LeaseEscrow_TokenNotAllowed(token);
            }
            if (refusal == IProviderRegistry.Refusal.UnknownProvider) {
                revert Errors.LeaseEscrow_UnknownProvider(providerId);
            }
            Resource resource = refusal == IProviderRegistry.Refusal.NoCpu
                ? Resource.Cpu
                : refusal == IProviderRegistry.Refusal.NoMemory ? Resource.Memory : Resource.Storage;
            revert Errors.LeaseEscrow_InsufficientCapacity(providerId, resource, a, b);
        }
        priceVersion = version;
        rate = LeaseMath.rate(prices, cpuMillis, memoryMiB, storageGiB);
        if (rate > maxRateAllowed) revert Errors.LeaseEscrow_RateAboveMax(rate, maxRateAllowed);
        uint256 required = LeaseMath.costOf(minOpenRunway, rate);
        if (deposit < required) revert Errors.LeaseEscrow_InsufficientDeposit(deposit, required);
    }

    function _checkReservation(uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB) private pure {
        if (cpuMillis == 0 || memoryMiB == 0) revert Errors.LeaseEscrow_ZeroResources();
        uint256 max = type(uint24).max;
        if (cpuMillis > max) revert Errors.LeaseEscrow_ReservationTooLarge(Resource.Cpu, cpuMillis, max);
        if (memoryMiB > max) revert Errors.LeaseEscrow_ReservationTooLarge(Resource.Memory, memoryMiB, max);
        if (storageGiB > max) {
            revert Errors.LeaseEscrow_ReservationTooLarge(Resource.Storage, storageGiB, max);
        }
    }

    /// @dev EIP-2612 permit in try/catch: a front-run permit must not block the lease when the
    /// allowance it set is already in place.
    function _permit(uint256 providerId, uint256 deposit, uint256 deadline, bytes32 r, bytes32 vs) private {
        address token = _providerToken(providerId);
        bytes32 s = vs & bytes32(type(uint256).max >> 1);
        uint8 v = uint8((uint256(vs) >> 255) + 27);
        try IERC20Permit(token).permit(msg.sender, address(this), deposit, deadline, v, r, s) {} catch {}
    }

    function _providerToken(uint256 providerId) private view returns (address token) {
        token = _token[providerId];
        if (token == address(0)) revert Errors.LeaseEscrow_UnknownProvider(providerId);
    }
}
