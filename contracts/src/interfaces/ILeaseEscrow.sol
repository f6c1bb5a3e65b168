// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CloseReason, Lease, LeaseStatus, RejectReason, UsageReport} from "../types/BerthTypes.sol";

/// @title Berth lease escrow
/// @notice Holds tenants' deposits for leases with a provider, takes the provider's usage reports,
/// lets charges mature through a challenge window and pays them out; the unearned rest always
/// goes back to the tenant.
interface ILeaseEscrow {
    // ---------------------------------------------------------------- events

    /// @notice A tenant opened and funded a lease. `manifestUri` is empty when the manifest is
    /// delivered to the provider's gateway instead of downloaded by the keeper.
    event LeaseOpened(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        uint16 priceVersion,
        uint32 cpuMillis,
        uint32 memoryMiB,
        uint32 storageGiB,
        bytes32 manifestHash,
        string manifestUri,
        uint256 deposit,
        uint256 maxRate
    );
    /// @notice The provider deployed the workload; billing runs from now.
    event LeaseConfirmed(uint256 indexed leaseId, uint256 indexed providerId, string endpoint);
    /// @notice The provider refused the lease; the deposit was refunded.
    event LeaseRejected(uint256 indexed leaseId, uint256 indexed providerId, RejectReason reason);
    /// @notice The lease stopped running for `reason`; billable time ends at `closedAt`.
    event LeaseClosed(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        CloseReason reason,
        uint256 closedAt
    );
    /// @notice Someone added funds to a lease.
    event LeaseToppedUp(uint256 indexed leaseId, address indexed from, uint256 amount, uint256 balance);
    /// @notice The provider reported usage; `charge` (capped by the balance) entered the challenge window.
    event UsageReported(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        uint32 indexed sequence,
        uint40 from,
        uint40 to,
        uint64 cpuUnits,
        uint64 memoryUnits,
        uint64 storageUnits,
        uint256 charge,
        bytes32 samplesRoot
    );
    /// @notice The tenant froze the lease's unmatured charges for the arbiter.
    event ChargesDisputed(uint256 indexed leaseId, address indexed tenant, uint256 amount);
    /// @notice The arbiter ruled on a dispute.
    event DisputeResolved(uint256 indexed leaseId, uint256 toProvider, uint256 toTenant);
    /// @notice Matured charges were paid to the provider's owner.
    event ChargesClaimed(
        uint256 indexed leaseId, uint256 indexed providerId, address indexed to, uint256 amount
    );
    /// @notice The deposit of a rejected or cancelled lease went back to the tenant.
    event Refunded(uint256 indexed leaseId, address indexed tenant, uint256 amount);
    /// @notice The tenant withdrew the unearned rest of a closed lease (possibly zero); the lease is Closed.
    event LeaseWithdrawn(uint256 indexed leaseId, address indexed tenant, uint256 amount);

    // ---------------------------------------------------------------- errors

    error ZeroAddress();
    error WindowTooLong();
    error ZeroAmount();
    error ZeroResources();
    error EmptyManifestHash();
    error EmptyEndpoint();
    error RateAboveMax(uint256 maxRate, uint256 maxRateAllowed);
    error InsufficientDeposit(uint256 deposit, uint256 required);
    error FeeOnTransferToken(address token, uint256 expected, uint256 received);
    error UnknownLease(uint256 leaseId);
    error InvalidLeaseStatus(uint256 leaseId, LeaseStatus status);
    error NotTenant(uint256 leaseId, address caller);
    error NotOperator(uint256 leaseId, address caller);
    error NotProviderAgent(uint256 leaseId, address caller);
    error NotArbiter(address caller);
    error AcceptTimeoutNotReached(uint256 leaseId, uint256 cancellableAt);
    error FinalReportWindowOpen(uint256 leaseId, uint256 withdrawableAt);
    error FinalReportWindowClosed(uint256 leaseId, uint256 closedAt);
    error InvalidSequence(uint256 leaseId, uint256 expected, uint256 got);
    error NonContiguousPeriod(uint256 leaseId, uint256 expectedFrom, uint256 from);
    error InvalidPeriod(uint256 leaseId, uint256 from, uint256 to, uint256 latestTo);
    error UnitsExceedReservation(uint256 leaseId, uint8 resource, uint256 units, uint256 cap);
    error RunwayAboveMinimum(uint256 leaseId, uint256 depletionTime);
    error NothingToDispute(uint256 leaseId);
    error NoDispute(uint256 leaseId);
    error AwardExceedsDisputed(uint256 leaseId, uint256 award, uint256 disputed);
    error MixedProviders(uint256 leaseId, uint256 providerId, uint256 expectedProviderId);
    error EmptyBatch();

    // ---------------------------------------------------------------- tenant

    /// @notice Opens a lease with provider `providerId` and deposits `deposit` of its token.
    /// @dev The provider's current prices are snapshotted (by version) into the lease.
    /// @param providerId The provider, from the registry.
    /// @param cpuMillis CPU reservation in millicores.
    /// @param memoryMiB Memory reservation in MiB.
    /// @param storageGiB Storage reservation in GiB (0 for none).
    /// @param manifestHash keccak256 of the exact manifest bytes the provider must deploy.
    /// @param manifestUri Where the keeper may download the manifest; empty if it is uploaded to the gateway.
    /// @param deposit Amount pulled from the caller (approve first); must cover the minimum runway.
    /// @param maxRateAllowed Guard against a price change in flight: the lease's maximum rate per
    /// second, scaled by 1e9, may not exceed this.
    /// @return leaseId The new lease's id (ids start at 1).
    function openLease(
        uint256 providerId,
        uint32 cpuMillis,
        uint32 memoryMiB,
        uint32 storageGiB,
        bytes32 manifestHash,
        string calldata manifestUri,
        uint256 deposit,
        uint256 maxRateAllowed
    ) external returns (uint256 leaseId);

    /// @notice `openLease` in one transaction with an EIP-2612 permit for the deposit. A permit
    /// that fails (e.g. front-run) is ignored when the allowance is already there.
    /// @param deadline The permit's deadline.
    /// @param r The signature's r.
    /// @param vs The signature's s with v in its top bit (EIP-2098 compact form).
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
    ) external returns (uint256 leaseId);

    /// @notice Adds `amount` to a pending or active lease; anyone may pay.
    function topUp(uint256 leaseId, uint256 amount) external;

    /// @notice Cancels a lease the provider did not confirm within the accept timeout; full refund.
    function cancelLease(uint256 leaseId) external;

    /// @notice Closes an active lease now; the provider gets the final-report window, then the
    /// tenant withdraws the rest.
    function closeLease(uint256 leaseId) external;

    /// @notice Pays the unearned rest of a closed or terminated lease to its tenant, once the
    /// final report is in or the final-report window is over. Never pausable.
    function withdraw(uint256 leaseId) external;

    /// @notice Freezes every charge of the lease still inside its challenge window for the arbiter.
    function dispute(uint256 leaseId) external;

    // ---------------------------------------------------------------- provider (operator key)

    /// @notice Confirms that the workload is deployed and serving at `endpoint`; billing starts.
    function confirmLease(uint256 leaseId, string calldata endpoint) external;

    /// @notice Refuses a pending lease with a reason; the tenant gets the full deposit back.
    function rejectLease(uint256 leaseId, RejectReason reason) external;

    /// @notice Reports one lease's usage over [from, to).
    function reportUsage(
        uint256 leaseId,
        uint32 sequence,
        uint40 from,
        uint40 to,
        uint64 cpuUnits,
        uint64 memoryUnits,
        uint64 storageUnits,
        bytes32 samplesRoot
    ) external;

    /// @notice Reports usage of many leases in one transaction; all-or-nothing.
    function reportUsageBatch(UsageReport[] calldata reports) external;

    /// @notice Ends an active lease whose runway fell below the minimum (exhaustion).
    function terminateLease(uint256 leaseId) external;

    /// @notice Pays the lease's matured charges to the provider's owner; owner or operator may call.
    function claim(uint256 leaseId) external returns (uint256 amount);

    /// @notice `claim` for many leases of one provider, with one token transfer.
    function claimMany(uint256[] calldata leaseIds) external returns (uint256 amount);

    // ---------------------------------------------------------------- arbiter

    /// @notice Rules on a lease's disputed charges: `toProvider` becomes claimable, the rest is refunded.
    function resolveDispute(uint256 leaseId, uint256 toProvider) external;

    // ---------------------------------------------------------------- views

    /// @notice The lease with id `leaseId` (status None if unknown).
    function getLease(uint256 leaseId) external view returns (Lease memory);

    /// @notice Number of leases ever opened; ids run from 1 to this.
    function leaseCount() external view returns (uint256);

    /// @notice The lease's maximum charge per second, scaled by 1e9 (base + reservation x prices).
    function maxRateOf(uint256 leaseId) external view returns (uint256);

    /// @notice What the provider could claim now (matured charges).
    function claimableOf(uint256 leaseId) external view returns (uint256);

    /// @notice Charges still inside their challenge window (disputable).
    function pendingOf(uint256 leaseId) external view returns (uint256);

    /// @notice What the tenant could get back now through `withdraw` or `cancelLease`.
    function refundableOf(uint256 leaseId) external view returns (uint256);

    /// @notice When the balance runs out at the maximum rate: for an active lease, from its
    /// last billed time; for a pending one, as if confirmed now; for an ended one, its end.
    function depletionTimeOf(uint256 leaseId) external view returns (uint256);
}
