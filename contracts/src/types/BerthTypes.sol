// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Prices and charges are in billionths of a token base unit per unit-second, so that a
// 6-decimal token can still price one CPU millicore-second.
uint256 constant PRICE_SCALE = 1e9;

/// @notice Lifecycle state of a provider in the registry.
enum ProviderStatus {
    None, // never registered
    Active, // takes new leases
    Paused, // keeps running leases, takes no new ones
    Exiting, // unbonding: takes no new leases, stake withdrawable after the delay with no active leases
    Exited // stake withdrawn
}

/// @notice Lifecycle state of a lease (DESIGN.md, "Lease lifecycle").
enum LeaseStatus {
    None, // no such lease
    Pending, // opened and funded, waiting for the provider to confirm or reject
    Active, // confirmed: billing runs from `confirmedAt`
    Closing, // closed or terminated: provider's final-report window, then tenant withdrawal
    Closed, // remainder withdrawn by the tenant
    Rejected, // rejected by the provider, deposit refunded
    Cancelled // cancelled by the tenant after the accept timeout, deposit refunded
}

/// @notice Why a lease stopped running; carried by `LeaseClosed`.
enum CloseReason {
    None,
    TenantClosed, // the tenant closed an active lease
    Exhausted, // the provider terminated it: runway below the minimum
    Rejected, // the provider rejected it before confirming
    Cancelled // the tenant cancelled it after the accept timeout
}

/// @notice Why a provider rejected a lease; carried by `LeaseRejected`. The keeper logs the rule.
enum RejectReason {
    Unspecified,
    CapacityUnavailable, // the cluster has no room for the reservation
    InsufficientRunway, // the deposit does not cover the provider's minimum runway
    ManifestUnavailable, // no manifest was delivered or downloadable in time
    ManifestHashMismatch, // the delivered bytes do not hash to `manifestHash`
    ManifestInvalid, // the manifest does not parse or fails schema validation
    ResourcesExceedReservation, // the manifest asks for more than the lease reserved
    PolicyViolation // privileged, host path, host network, forbidden ports or capabilities
}

/// @notice Unit prices of a provider, one version per update; leases snapshot a version.
/// @dev All four values are scaled by `PRICE_SCALE`: `baseRate` per second, `cpuPrice` per
/// millicore-second, `memoryPrice` per MiB-second, `storagePrice` per GiB-second.
struct Prices {
    uint128 baseRate;
    uint128 cpuPrice;
    uint128 memoryPrice;
    uint128 storagePrice;
}

/// @notice A provider as stored by the registry.
struct Provider {
    address owner; // receives payments and stake, manages the provider
    ProviderStatus status;
    uint16 priceVersion; // index of the current entry in the provider's price history
    uint40 unbondingEndsAt; // set by `requestExit`
    address operator; // the keeper's hot key: confirms, rejects, reports, terminates, claims
    address token; // ERC-20 the provider is paid in (fixed at registration)
    uint32 cpuMillis; // capacity
    uint32 memoryMiB;
    uint32 storageGiB;
    uint32 allocatedCpuMillis; // reserved by leases that have not ended
    uint32 allocatedMemoryMiB;
    uint32 allocatedStorageGiB;
    uint32 activeLeases; // leases opened and not yet closed, rejected or cancelled
    uint128 stake;
    string endpoint; // the gateway URL tenants send manifests to
    string attributes; // comma-separated key=value pairs, e.g. "region=eu-west,tier=standard"
}

/// @notice A lease as stored by the escrow.
/// @dev Pending charges sit in two buckets (A older, B newer) until their challenge window
/// passes; a report arriving while both are busy merges into B and restarts B's window, so a
/// charge matures at most two windows after its report with constant storage per lease.
struct Lease {
    address tenant;
    uint32 providerId;
    uint16 priceVersion;
    LeaseStatus status;
    CloseReason closeReason;
    uint32 reportCount; // sequence number of the last accepted usage report
    uint32 cpuMillis; // reservation
    uint32 memoryMiB;
    uint32 storageGiB;
    uint40 createdAt;
    uint40 confirmedAt;
    uint40 billedUntil; // end of the last reported period; billing starts at confirmation
    uint40 closedAt; // end of billable time once closed or terminated
    uint128 balance; // unearned deposit
    uint128 claimable; // matured charges not yet paid to the provider
    uint128 pendingA; // charges inside their challenge window, older bucket
    uint128 pendingB; // newer bucket
    uint40 maturesA;
    uint40 maturesB;
    uint128 disputed; // charges frozen by a tenant dispute until the arbiter rules
    bytes32 manifestHash; // keccak256 of the manifest bytes the provider must deploy
    string endpoint; // public endpoint of the workload, set at confirmation
}

/// @notice One lease's usage over one period, as submitted by the provider's keeper.
/// @dev Units are resource-seconds: CPU millicore-seconds, memory MiB-seconds, storage
/// GiB-seconds; each is capped by reservation x (to - from). `samplesRoot` is the Merkle root
/// of the raw samples, served by the provider's gateway so the tenant can recompute it.
struct UsageReport {
    uint256 leaseId;
    uint32 sequence;
    uint40 from;
    uint40 to;
    uint64 cpuUnits;
    uint64 memoryUnits;
    uint64 storageUnits;
    bytes32 samplesRoot;
}
