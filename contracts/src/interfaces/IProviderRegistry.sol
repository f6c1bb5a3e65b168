// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Prices, Provider, ProviderStatus} from "../types/BerthTypes.sol";

/// @title Berth provider registry
/// @notice Providers register their gateway, capacity, prices and stake here; the lease escrow
/// reserves and releases their capacity as leases open and end.
interface IProviderRegistry {
    // ---------------------------------------------------------------- events

    /// @notice A provider registered.
    event ProviderRegistered(
        uint256 indexed providerId,
        address indexed owner,
        address indexed operator,
        address token,
        uint256 stake,
        string endpoint,
        string attributes
    );
    /// @notice A provider published a new price version; it applies to leases opened from now on.
    event PricesUpdated(
        uint256 indexed providerId,
        uint16 indexed version,
        uint256 baseRate,
        uint256 cpuPrice,
        uint256 memoryPrice,
        uint256 storagePrice
    );
    /// @notice A provider changed its capacity.
    event CapacityUpdated(uint256 indexed providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB);
    /// @notice A provider changed its gateway endpoint.
    event EndpointUpdated(uint256 indexed providerId, string endpoint);
    /// @notice A provider changed its attributes.
    event AttributesUpdated(uint256 indexed providerId, string attributes);
    /// @notice A provider changed its operator (keeper) key.
    event OperatorUpdated(uint256 indexed providerId, address indexed operator);
    /// @notice A provider's status changed (paused, resumed, exiting, exited).
    event ProviderStatusChanged(uint256 indexed providerId, ProviderStatus status);
    /// @notice Stake was added to a provider.
    event StakeAdded(uint256 indexed providerId, address indexed from, uint256 amount);
    /// @notice A provider asked to exit; its stake is withdrawable from `unbondingEndsAt`.
    event ExitRequested(uint256 indexed providerId, uint256 unbondingEndsAt);
    /// @notice An exited provider's stake was paid to its owner.
    event StakeWithdrawn(uint256 indexed providerId, address indexed owner, uint256 amount);
    /// @notice The escrow reserved capacity for a new lease.
    event CapacityReserved(uint256 indexed providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB);
    /// @notice The escrow released a lease's capacity.
    event CapacityReleased(uint256 indexed providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB);
    /// @notice The owner allowed or disallowed a payment token.
    event PaymentTokenSet(address indexed token, bool allowed);
    /// @notice The owner changed the minimum stake for new registrations.
    event MinStakeSet(uint256 minStake);
    /// @notice The owner bound the registry to its lease escrow (once).
    event EscrowSet(address indexed escrow);

    /// @notice A provider set a new X25519 public key (`version` counts the keys it has set);
    /// tenants encrypt manifests and secrets to it.
    event EncryptionKeyUpdated(uint256 indexed providerId, uint32 version, bytes32 publicKey);

    // ---------------------------------------------------------------- types

    /// @notice Why `reserve` refused a lease (the escrow turns it into its own error).
    enum Refusal {
        None,
        UnknownProvider,
        NotAccepting, // a = the provider's status
        TokenNotAllowed,
        NoCpu, // a = free, b = wanted
        NoMemory,
        NoStorage
    }

    // ---------------------------------------------------------------- provider actions

    /// @notice Registers a provider owned by the caller and pulls `stake` of the stake token.
    /// @param operator The keeper's hot key (may equal the owner).
    /// @param token The allowlisted ERC-20 this provider is paid in; fixed for life.
    /// @param endpoint The gateway URL tenants deliver manifests to.
    /// @param attributes Comma-separated key=value pairs (region, tier...).
    /// @param capacity [CPU millicores, memory MiB, storage GiB].
    /// @param prices [base rate per lease-second, per CPU millicore-second, per MiB-second, per
    /// GiB-second], each scaled by 1e9.
    /// @param stake Stake to pull from the caller; at least `minStake`.
    /// @return providerId The new provider's id (ids start at 1).
    function register(
        address operator,
        address token,
        string calldata endpoint,
        string calldata attributes,
        uint32[3] calldata capacity,
        uint128[4] calldata prices,
        uint256 stake
    ) external returns (uint256 providerId);

    /// @notice Publishes new prices; running leases keep the version they snapshotted.
    function updatePrices(
        uint256 providerId,
        uint128 baseRate,
        uint128 cpuPrice,
        uint128 memoryPrice,
        uint128 storagePrice
    ) external;

    /// @notice Sets the provider's capacity; lowering it below what is allocated only blocks new leases.
    function updateCapacity(uint256 providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB)
        external;

    /// @notice Sets the gateway endpoint.
    function updateEndpoint(uint256 providerId, string calldata endpoint) external;

    /// @notice Sets the attributes string.
    function updateAttributes(uint256 providerId, string calldata attributes) external;

    /// @notice Replaces the operator (keeper) key, e.g. after a key rotation or compromise.
    function setOperator(uint256 providerId, address operator) external;

    /// @notice Sets the provider's X25519 public key for encrypted manifests and secrets.
    function setEncryptionKey(uint256 providerId, bytes32 publicKey) external;

    /// @notice Stops new leases; running leases are unaffected.
    function pause(uint256 providerId) external;

    /// @notice Takes new leases again after `pause`.
    function unpause(uint256 providerId) external;

    /// @notice Adds stake to a provider; anyone may add.
    function addStake(uint256 providerId, uint256 amount) external;

    /// @notice Starts the unbonding delay; the provider takes no new leases from now on.
    function requestExit(uint256 providerId) external;

    /// @notice Pays the stake to the owner once unbonding is over and no lease is active.
    function withdrawStake(uint256 providerId) external;

    // ---------------------------------------------------------------- escrow hooks

    /// @notice Reserves capacity for a new lease; only the escrow calls this. Refuses (without
    /// reverting, so that the escrow can say why in its own error) unless the provider is
    /// active, its token still allowlisted and the capacity free.
    /// @return refusal `None` when reserved.
    /// @return a Detail of the refusal (see `Refusal`).
    /// @return b Detail of the refusal (see `Refusal`).
    /// @return priceVersion The price version the lease snapshots.
    /// @return prices The prices of that version.
    function reserve(uint256 providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB)
        external
        returns (Refusal refusal, uint256 a, uint256 b, uint16 priceVersion, Prices memory prices);

    /// @notice Releases a lease's capacity; only the escrow calls this.
    function release(uint256 providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB) external;

    // ---------------------------------------------------------------- views

    /// @notice The provider with id `providerId` (status None if unknown).
    function getProvider(uint256 providerId) external view returns (Provider memory);

    /// @notice Providers `offset + 1` to `offset + limit` in registration order.
    function listProviders(uint256 offset, uint256 limit) external view returns (Provider[] memory providers);

    /// @notice Number of providers ever registered; ids run from 1 to this.
    function providerCount() external view returns (uint256);

    /// @notice The prices of one version of a provider's price history.
    function pricesOf(uint256 providerId, uint16 version) external view returns (Prices memory);

    /// @notice The operator (keeper) key and owner of a provider.
    function operatorOf(uint256 providerId) external view returns (address operator, address owner);

    /// @notice The operator key, owner and payment token of a provider, in one call.
    function agentsOf(uint256 providerId)
        external
        view
        returns (address operator, address owner, address token);

    /// @notice The provider's X25519 public key and its version (0 when never set).
    function encryptionKeyOf(uint256 providerId) external view returns (bytes32 publicKey, uint32 version);

    /// @notice The ERC-20 a provider is paid in.
    function tokenOf(uint256 providerId) external view returns (address);

    /// @notice Whether `token` may be used for payments.
    function isPaymentToken(address token) external view returns (bool);
}
