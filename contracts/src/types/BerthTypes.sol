// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Prices and charges are in billionths of a token base unit per unit-second, so that a
// 6-decimal token can still price one CPU millicore-second.
uint256 constant PRICE_SCALE = 1e9;

/// @notice Lifecycle state of a provider in the registry.
enum ProviderStatus {
    None, // 0: never registered
    Active, // 1: takes new leases
    Paused, // 2: keeps running leases, takes no new ones
    Exiting, // 3: unbonding: takes no new leases, stake withdrawable after the delay with no active leases
    Exited // 4: stake withdrawn
}

/// @notice Lifecycle state of a lease (DESIGN.md, "Lease lifecycle"). Values are appended only,
/// so stored and indexed numbers keep their meaning.
enum LeaseStatus {
    None, // 0: no such lease
    Pending, // 1: opened and funded, waiting for the provider to confirm or reject
    Active, // 2: confirmed: billing runs from the confirmation
    Closing, // 3: closed or terminated: provider's final-report window, then tenant withdrawal
    Closed, // 4: remainder withdrawn by the tenant
    Rejected, // 5: rejected by the provider; the deposit is withdrawable by the tenant
    Cancelled, // 6: cancelled by the tenant after the accept timeout; the deposit is withdrawable
    Suspended // 7: runway fell below the minimum: workload stopped, volumes and reservation kept,
    // only the base rate billed; a top-up resumes it, the grace period's end allows termination
}

/// @notice Why a lease stopped running; carried by `LeaseClosed`.
enum CloseReason {
    None, // 0: still running
    TenantClosed, // 1: the tenant closed the lease
    Exhausted, // 2: the provider terminated it after a suspension's grace period ran out
    Rejected, // 3: the provider rejected it before confirming
    Cancelled // 4: the tenant cancelled it after the accept timeout
}

/// @notice Why a provider rejected a lease; carried by `LeaseRejected`. The keeper logs the rule.
enum RejectReason {
    Unspecified, // 0
    CapacityUnavailable, // 1: the cluster has no room for the reservation
    InsufficientRunway, // 2: the deposit does not cover the provider's minimum runway
    ManifestUnavailable, // 3: no manifest was delivered or downloadable in time
    ManifestHashMismatch, // 4: the delivered bytes do not hash to the manifest hash
    ManifestInvalid, // 5: the manifest does not parse or fails schema validation
    ResourcesExceedReservation, // 6: the manifest asks for more than the lease reserved
    PolicyViolation, // 7: privileged, host path, host network, forbidden ports or capabilities
    SecretsUnreadable, // 8: the manifest's secrets do not open with the provider's key for this lease
    ImageUnavailable // 9: an image cannot be pulled (no such image, missing or refused registry credentials)
}

/// @notice A metered resource of a lease's reservation.
enum Resource {
    Cpu, // 0: millicores; usage in millicore-seconds
    Memory, // 1: MiB; usage in MiB-seconds
    Storage // 2: GiB; usage in GiB-seconds
}

/// @notice Why an auto top-up could not pull the tenant's tokens; carried by `AutoTopUpFailed`.
enum PullFailure {
    None, // 0
    Allowance, // 1: the tenant's allowance to the escrow is below the amount
    Balance, // 2: the tenant's token balance is below the amount
    Transfer // 3: the token refused the transfer for another reason (paused, blocklist, ...)
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
    address operator; // the keeper's hot key: confirms, rejects, reports, suspends, terminates, claims
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

/// @notice A lease as the escrow shows it (`getLease`). The manifest hash and URI, the
/// endpoint and the opening and confirmation times live in the events (`LeaseOpened`,
/// `ManifestUpdated`, `LeaseConfirmed`).
struct Lease {
    address tenant;
    uint32 providerId;
    uint16 priceVersion;
    LeaseStatus status;
    CloseReason closeReason;
    uint32 manifestVersion; // 0 for the manifest of `LeaseOpened`, +1 per `ManifestUpdated`
    uint32 cpuMillis; // reservation
    uint32 memoryMiB;
    uint32 storageGiB;
    uint40 createdAt; // opening time while pending (0 once confirmed; see `LeaseOpened`)
    uint40 billedUntil; // end of the last reported period; billing starts at confirmation
    uint40 closedAt; // end of billable time once closed, rejected, cancelled or terminated
    uint40 suspendedAt; // start of the last suspension (0 if never suspended)
    uint40 resumedAt; // end of the last suspension (0 while still suspended or never suspended)
    uint32 reportCount; // sequence number of the last accepted usage report
    uint256 balance; // unearned deposit
    uint256 claimable; // matured charges not yet paid to the provider
    uint256 pending; // charges inside their challenge window
    uint256 disputed; // charges frozen by a tenant dispute until the arbiter rules
    uint256 maxRate; // maximum charge per second, scaled by 1e9
    uint256 depletionTime; // when the balance runs out at the maximum rate
}

/// @notice A tenant's auto top-up policy for one lease (`setAutoTopUp`).
/// @dev Anyone may trigger a top-up while the lease's runway is below `triggerRunway`; it pulls
/// from the tenant what brings the runway back to `targetRunway`, at most `maxPerTopUp` per
/// top-up and `maxTotal` over the policy's life, until `expiresAt`.
struct AutoTopUp {
    uint96 maxPerTopUp;
    uint96 maxTotal;
    uint32 expiresAt;
    uint32 triggerRunway; // seconds
    uint96 pulled; // total pulled under this policy
    uint32 targetRunway; // seconds
}

/// @notice One lease's usage over one period, as submitted by the provider's keeper.
/// @dev Units are resource-seconds: CPU millicore-seconds, memory MiB-seconds, storage
/// GiB-seconds; each is capped by reservation x (running time in [from, to)) and is zero for a
/// suspended period. `samplesRoot` is the Merkle root of the raw samples, served by the
/// provider's gateway so the tenant can recompute it.
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
