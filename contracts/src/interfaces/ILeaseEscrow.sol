// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AutoTopUp, CloseReason, Lease, PullFailure, RejectReason, UsageReport} from "../types/BerthTypes.sol";

/// @title Berth lease escrow
/// @notice Holds tenants' deposits for leases with a provider, takes the provider's usage reports,
/// lets charges mature through a challenge window and pays them out; the unearned rest is always
/// the tenant's. Lease statuses: 1 pending, 2 active, 3 closing, 4 closed, 5 rejected,
/// 6 cancelled, 7 suspended (runway below the minimum: workload stopped, only the base rate
/// billed, resumed by a top-up, terminable once the grace period is over).
interface ILeaseEscrow {
    // ---------------------------------------------------------------- events

    /// @notice The owner stopped new leases.
    event Paused(address account);
    /// @notice The owner takes new leases again.
    event Unpaused(address account);
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
    /// @notice The provider deployed the workload at `endpoint`; billing runs from now.
    event LeaseConfirmed(
        uint256 indexed leaseId, uint256 indexed providerId, address indexed tenant, string endpoint
    );
    /// @notice The provider refused the lease; the deposit is the tenant's to withdraw.
    /// @param reason 0 unspecified, 1 capacity unavailable, 2 insufficient runway, 3 manifest
    /// unavailable, 4 manifest hash mismatch, 5 manifest invalid, 6 resources exceed the
    /// reservation, 7 policy violation.
    event LeaseRejected(
        uint256 indexed leaseId, uint256 indexed providerId, address indexed tenant, RejectReason reason
    );
    /// @notice The lease stopped running; billable time ends at `closedAt`.
    /// @param reason 1 closed by the tenant, 2 terminated after its suspension's grace period,
    /// 3 rejected, 4 cancelled after the accept timeout.
    event LeaseClosed(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        CloseReason reason,
        uint256 closedAt
    );
    /// @notice `from` added `amount` to the lease; its unearned balance is now `balance`.
    event LeaseToppedUp(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        address from,
        uint256 amount,
        uint256 balance
    );
    /// @notice The tenant committed to a new manifest; the provider rolls it out in place, the
    /// reservation and billing go on unchanged.
    event ManifestUpdated(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        uint32 version,
        bytes32 manifestHash,
        string manifestUri
    );
    /// @notice The runway fell below the minimum: the workload is stopped (volumes kept), only
    /// the base rate is billed. A top-up that restores the minimum runway resumes it; from
    /// `terminableAt` the provider may terminate it.
    event LeaseSuspended(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        uint256 depletionTime,
        uint256 terminableAt
    );
    /// @notice A top-up restored the minimum runway; the workload runs again.
    event LeaseResumed(
        uint256 indexed leaseId, uint256 indexed providerId, address indexed tenant, uint256 depletionTime
    );
    /// @notice The provider reported usage; `charge` (capped by the balance) entered the challenge window.
    event UsageReported(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        uint32 sequence,
        uint40 from,
        uint40 to,
        uint64 cpuUnits,
        uint64 memoryUnits,
        uint64 storageUnits,
        uint256 charge,
        bytes32 samplesRoot
    );
    /// @notice The tenant froze the lease's unmatured charges for the arbiter.
    event ChargesDisputed(
        uint256 indexed leaseId, uint256 indexed providerId, address indexed tenant, uint256 amount
    );
    /// @notice The arbiter ruled: `toProvider` became claimable, `toTenant` went back to the balance.
    event DisputeResolved(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        uint256 toProvider,
        uint256 toTenant
    );
    /// @notice Matured charges were paid to the provider's owner `to`.
    event ChargesClaimed(
        uint256 indexed leaseId, uint256 indexed providerId, address indexed to, uint256 amount
    );
    /// @notice The tenant withdrew `amount` (possibly zero for a closing lease, which is then Closed).
    event LeaseWithdrawn(
        uint256 indexed leaseId, uint256 indexed providerId, address indexed tenant, uint256 amount
    );
    /// @notice The tenant set an auto top-up policy (see `setAutoTopUp`).
    event AutoTopUpSet(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        uint256 maxPerTopUp,
        uint256 maxTotal,
        uint256 expiresAt,
        uint256 triggerRunway,
        uint256 targetRunway
    );
    /// @notice The tenant removed the lease's auto top-up policy.
    event AutoTopUpCleared(uint256 indexed leaseId, uint256 indexed providerId, address indexed tenant);
    /// @notice `caller` triggered an auto top-up of `amount`; `pulled` is the policy's total so far.
    event AutoTopUpExecuted(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        address caller,
        uint256 amount,
        uint256 pulled
    );
    /// @notice An auto top-up of `amount` could not pull the tenant's tokens.
    /// @param failure 1 allowance too low, 2 balance too low, 3 the token refused the transfer.
    event AutoTopUpFailed(
        uint256 indexed leaseId,
        uint256 indexed providerId,
        address indexed tenant,
        uint256 amount,
        PullFailure failure
    );

    // ---------------------------------------------------------------- tenant

    /// @notice Opens a lease with provider `providerId` and deposits `deposit` of its token
    /// (approve the escrow first). The provider's current prices are snapshotted into the lease.
    /// @param providerId The provider, from the registry.
    /// @param cpuMillis CPU reservation in millicores (1,000 = one core).
    /// @param memoryMiB Memory reservation in MiB.
    /// @param storageGiB Storage reservation in GiB (0 for none).
    /// @param manifestHash keccak256 of the exact manifest bytes the provider must deploy.
    /// @param manifestUri Where the keeper may download the manifest; empty if it is uploaded to the gateway.
    /// @param deposit Amount pulled from the caller; must cover `minOpenRunway` at the maximum rate.
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

    /// @notice Adds `amount` to a pending, active or suspended lease; anyone may pay. A suspended
    /// lease whose runway is back above the minimum resumes.
    function topUp(uint256 leaseId, uint256 amount) external;

    /// @notice Commits an active or suspended lease to a new manifest; the provider rolls it out
    /// in place. The reservation and billing are unchanged.
    /// @param manifestHash keccak256 of the new manifest's bytes.
    /// @param manifestUri Where the keeper may download it; empty if it is uploaded to the gateway.
    function updateManifest(uint256 leaseId, bytes32 manifestHash, string calldata manifestUri) external;

    /// @notice Lets anyone top the lease up from the tenant's allowance while its runway is
    /// below `triggerRunway` seconds, back to `targetRunway` seconds, at most `maxPerTopUp` per
    /// top-up and `maxTotal` in all, until `expiresAt` (unix seconds). Replaces an earlier policy.
    function setAutoTopUp(
        uint256 leaseId,
        uint256 maxPerTopUp,
        uint256 maxTotal,
        uint256 expiresAt,
        uint256 triggerRunway,
        uint256 targetRunway
    ) external;

    /// @notice Removes the lease's auto top-up policy.
    function clearAutoTopUp(uint256 leaseId) external;

    /// @notice Cancels a lease the provider did not confirm within the accept timeout; the
    /// deposit becomes withdrawable.
    function cancelLease(uint256 leaseId) external;

    /// @notice Closes an active or suspended lease now; the provider gets the final-report
    /// window, then the tenant withdraws the rest.
    function closeLease(uint256 leaseId) external;

    /// @notice Pays the lease's unearned rest to its tenant: after a rejection or cancellation, or
    /// once a closed lease's final report is in or its window is over. Never pausable.
    function withdraw(uint256 leaseId) external;

    /// @notice Freezes every charge of the lease still inside its challenge window for the arbiter.
    function dispute(uint256 leaseId) external;

    // ---------------------------------------------------------------- anyone

    /// @notice Tops the lease up under its tenant's auto top-up policy. Reverts when the policy
    /// does not allow a top-up now; a pull the token refuses emits `AutoTopUpFailed` instead.
    /// @return amount What was pulled (0 when the pull failed).
    function autoTopUp(uint256 leaseId) external returns (uint256 amount);

    // ---------------------------------------------------------------- provider (operator key)

    /// @notice Confirms that the workload is deployed and serving at `endpoint`; billing starts.
    function confirmLease(uint256 leaseId, string calldata endpoint) external;

    /// @notice Refuses a pending lease with a reason (see `LeaseRejected`); the tenant withdraws the deposit.
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

    /// @notice Reports usage of many leases of one provider in one transaction; all-or-nothing.
    function reportUsageBatch(UsageReport[] calldata reports) external;

    /// @notice Suspends an active lease whose runway fell below `minRunway`: stop the workload,
    /// keep the volumes; only the base rate is billed from now.
    function suspendLease(uint256 leaseId) external;

    /// @notice Ends a suspended lease once its grace period is over.
    function terminateLease(uint256 leaseId) external;

    /// @notice Pays the lease's matured charges to the provider's owner; owner or operator may call.
    function claim(uint256 leaseId) external returns (uint256 amount);

    /// @notice `claim` for many leases of one provider, with one token transfer.
    function claimMany(uint256[] calldata leaseIds) external returns (uint256 amount);

    // ---------------------------------------------------------------- registry

    /// @notice The registry pushes a provider's operator key and payment token (on registration
    /// and on each operator change), so that the hot paths need no call to the registry.
    function syncProvider(uint256 providerId, address operator, address token) external;

    // ---------------------------------------------------------------- arbiter

    /// @notice Rules on a lease's disputed charges: `toProvider` becomes claimable, the rest goes
    /// back to the lease's balance.
    function resolveDispute(uint256 leaseId, uint256 toProvider) external;

    // ---------------------------------------------------------------- views

    /// @notice The lease with id `leaseId` (status 0 if unknown), with its computed amounts and times.
    function getLease(uint256 leaseId) external view returns (Lease memory);

    /// @notice The lease's auto top-up policy (all zero when none).
    function autoTopUpOf(uint256 leaseId) external view returns (AutoTopUp memory);

    /// @notice What `autoTopUp` would pull now (0 when it would revert).
    function autoTopUpDue(uint256 leaseId) external view returns (uint256);

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

    /// @notice When the balance runs out at the maximum rate: for a running lease, from its last
    /// billed time; for a pending one, as if confirmed now; for an ended one, its end.
    function depletionTimeOf(uint256 leaseId) external view returns (uint256);

    /// @notice Seconds from now until `depletionTimeOf` (0 once past).
    function runwayOf(uint256 leaseId) external view returns (uint256);
}
