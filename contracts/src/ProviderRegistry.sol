// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ILeaseEscrow} from "./interfaces/ILeaseEscrow.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {Errors} from "./libraries/Errors.sol";
import {Prices, Provider, ProviderStatus} from "./types/BerthTypes.sol";

/// @title ProviderRegistry
/// @notice Providers register their gateway endpoint, capacity, versioned prices and stake.
/// Pausing and exiting stop new leases only; the stake comes back after an unbonding delay once
/// no lease is active. The bound `LeaseEscrow` reserves capacity as leases open and releases it
/// as they end, so free capacity is visible on chain.
contract ProviderRegistry is IProviderRegistry, Ownable2Step {
    using SafeERC20 for IERC20;

    /// @notice The ERC-20 providers stake in.
    IERC20 public immutable stakeToken;
    /// @notice Seconds between `requestExit` and `withdrawStake`.
    uint256 public immutable unbondingDelay;
    /// @notice Upper bound for the unbonding delay, so that timestamps fit in uint40.
    uint256 public constant MAX_UNBONDING_DELAY = 365 days;
    /// @notice Minimum stake for a new registration.
    uint256 public minStake;
    /// @notice The lease escrow allowed to reserve and release capacity (set once).
    address public escrow;

    /// @inheritdoc IProviderRegistry
    mapping(address token => bool allowed) public isPaymentToken;

    uint256 private _providerCount;
    mapping(uint256 providerId => Provider) private _providers;
    mapping(uint256 providerId => mapping(uint16 version => Prices)) private _prices;

    /// @dev A provider's X25519 public key and how many times it was set.
    struct EncryptionKey {
        bytes32 publicKey;
        uint32 version;
    }

    mapping(uint256 providerId => EncryptionKey) private _keys;

    /// @param owner_ Administrator (allowlist, minimum stake); transferable in two steps.
    /// @param stakeToken_ The ERC-20 providers stake in.
    /// @param minStake_ Minimum stake for a registration.
    /// @param unbondingDelay_ Seconds from `requestExit` to `withdrawStake`.
    constructor(address owner_, IERC20 stakeToken_, uint256 minStake_, uint256 unbondingDelay_)
        Ownable(owner_)
    {
        if (address(stakeToken_) == address(0)) revert Errors.ProviderRegistry_ZeroAddress();
        if (unbondingDelay_ > MAX_UNBONDING_DELAY) {
            revert Errors.ProviderRegistry_UnbondingDelayTooLong(unbondingDelay_);
        }
        stakeToken = stakeToken_;
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
        emit MinStakeSet(minStake_);
    }

    modifier onlyProviderOwner(uint256 providerId) {
        _checkProviderOwner(providerId);
        _;
    }

    modifier onlyEscrow() {
        if (msg.sender != escrow) revert Errors.ProviderRegistry_NotEscrow(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- provider actions

    /// @inheritdoc IProviderRegistry
    function register(
        address operator,
        address token,
        string calldata endpoint,
        string calldata attributes,
        uint32[3] calldata capacity,
        uint128[4] calldata prices,
        uint256 stake
    ) external returns (uint256 providerId) {
        if (operator == address(0)) revert Errors.ProviderRegistry_ZeroAddress();
        if (escrow == address(0)) revert Errors.ProviderRegistry_EscrowNotSet();
        if (!isPaymentToken[token]) revert Errors.ProviderRegistry_TokenNotAllowed(token);
        if (stake < minStake) revert Errors.ProviderRegistry_StakeBelowMinimum(stake, minStake);
        if (bytes(endpoint).length == 0) revert Errors.ProviderRegistry_EmptyEndpoint();
        if (capacity[0] == 0 || capacity[1] == 0) revert Errors.ProviderRegistry_ZeroCapacity();

        providerId = ++_providerCount;
        Provider storage p = _providers[providerId];
        p.owner = msg.sender;
        p.status = ProviderStatus.Active;
        p.operator = operator;
        p.token = token;
        p.cpuMillis = capacity[0];
        p.memoryMiB = capacity[1];
        p.storageGiB = capacity[2];
        p.endpoint = endpoint;
        p.attributes = attributes;
        _prices[providerId][0] = Prices(prices[0], prices[1], prices[2], prices[3]);
        if (stake > 0) p.stake = SafeCast.toUint128(_pullExact(stakeToken, stake));

        ILeaseEscrow(escrow).syncProvider(providerId, operator, token);
        emit ProviderRegistered(providerId, msg.sender, operator, token, stake, endpoint, attributes);
        emit CapacityUpdated(providerId, capacity[0], capacity[1], capacity[2]);
        emit PricesUpdated(providerId, 0, prices[0], prices[1], prices[2], prices[3]);
    }

    /// @inheritdoc IProviderRegistry
    function updatePrices(
        uint256 providerId,
        uint128 baseRate,
        uint128 cpuPrice,
        uint128 memoryPrice,
        uint128 storagePrice
    ) external onlyProviderOwner(providerId) {
        Provider storage p = _providers[providerId];
        if (p.priceVersion == type(uint16).max) {
            revert Errors.ProviderRegistry_TooManyPriceVersions(providerId);
        }
        uint16 version = p.priceVersion + 1;
        p.priceVersion = version;
        _prices[providerId][version] = Prices(baseRate, cpuPrice, memoryPrice, storagePrice);
        emit PricesUpdated(providerId, version, baseRate, cpuPrice, memoryPrice, storagePrice);
    }

    /// @inheritdoc IProviderRegistry
    function updateCapacity(uint256 providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB)
        external
        onlyProviderOwner(providerId)
    {
        if (cpuMillis == 0 || memoryMiB == 0) revert Errors.ProviderRegistry_ZeroCapacity();
        Provider storage p = _providers[providerId];
        (p.cpuMillis, p.memoryMiB, p.storageGiB) = (cpuMillis, memoryMiB, storageGiB);
        emit CapacityUpdated(providerId, cpuMillis, memoryMiB, storageGiB);
    }

    /// @inheritdoc IProviderRegistry
    function updateEndpoint(uint256 providerId, string calldata endpoint)
        external
        onlyProviderOwner(providerId)
    {
        if (bytes(endpoint).length == 0) revert Errors.ProviderRegistry_EmptyEndpoint();
        _providers[providerId].endpoint = endpoint;
        emit EndpointUpdated(providerId, endpoint);
    }

    /// @inheritdoc IProviderRegistry
    function updateAttributes(uint256 providerId, string calldata attributes)
        external
        onlyProviderOwner(providerId)
    {
        _providers[providerId].attributes = attributes;
        emit AttributesUpdated(providerId, attributes);
    }

    /// @inheritdoc IProviderRegistry
    function setOperator(uint256 providerId, address operator) external onlyProviderOwner(providerId) {
        if (operator == address(0)) revert Errors.ProviderRegistry_ZeroAddress();
        Provider storage p = _providers[providerId];
        p.operator = operator;
        ILeaseEscrow(escrow).syncProvider(providerId, operator, p.token);
        emit OperatorUpdated(providerId, operator);
    }

    /// @inheritdoc IProviderRegistry
    function setEncryptionKey(uint256 providerId, bytes32 publicKey) external onlyProviderOwner(providerId) {
        if (publicKey == bytes32(0)) revert Errors.ProviderRegistry_ZeroEncryptionKey();
        EncryptionKey storage k = _keys[providerId];
        uint32 version = k.version + 1;
        (k.publicKey, k.version) = (publicKey, version);
        emit EncryptionKeyUpdated(providerId, version, publicKey);
    }

    /// @inheritdoc IProviderRegistry
    function pause(uint256 providerId) external onlyProviderOwner(providerId) {
        _transition(providerId, ProviderStatus.Active, ProviderStatus.Paused);
    }

    /// @inheritdoc IProviderRegistry
    function unpause(uint256 providerId) external onlyProviderOwner(providerId) {
        _transition(providerId, ProviderStatus.Paused, ProviderStatus.Active);
    }

    /// @inheritdoc IProviderRegistry
    function addStake(uint256 providerId, uint256 amount) external {
        Provider storage p = _providers[providerId];
        if (p.status == ProviderStatus.None) revert Errors.ProviderRegistry_UnknownProvider(providerId);
        if (p.status == ProviderStatus.Exited) {
            revert Errors.ProviderRegistry_InvalidProviderStatus(providerId, p.status);
        }
        if (amount == 0) revert Errors.ProviderRegistry_ZeroAmount();
        p.stake += SafeCast.toUint128(_pullExact(stakeToken, amount));
        emit StakeAdded(providerId, msg.sender, amount);
    }

    /// @inheritdoc IProviderRegistry
    function requestExit(uint256 providerId) external onlyProviderOwner(providerId) {
        Provider storage p = _providers[providerId];
        if (p.status != ProviderStatus.Active && p.status != ProviderStatus.Paused) {
            revert Errors.ProviderRegistry_InvalidProviderStatus(providerId, p.status);
        }
        p.status = ProviderStatus.Exiting;
        // forge-lint: disable-next-line(unsafe-typecast) -- unbondingDelay <= MAX_UNBONDING_DELAY
        uint40 endsAt = uint40(block.timestamp + unbondingDelay);
        p.unbondingEndsAt = endsAt;
        emit ProviderStatusChanged(providerId, ProviderStatus.Exiting);
        emit ExitRequested(providerId, endsAt);
    }

    /// @inheritdoc IProviderRegistry
    function withdrawStake(uint256 providerId) external onlyProviderOwner(providerId) {
        Provider storage p = _providers[providerId];
        if (p.status != ProviderStatus.Exiting) {
            revert Errors.ProviderRegistry_InvalidProviderStatus(providerId, p.status);
        }
        if (block.timestamp < p.unbondingEndsAt) {
            revert Errors.ProviderRegistry_UnbondingNotOver(providerId, p.unbondingEndsAt);
        }
        if (p.activeLeases != 0) {
            revert Errors.ProviderRegistry_ActiveLeasesRemain(providerId, p.activeLeases);
        }
        uint256 amount = p.stake;
        p.stake = 0;
        p.status = ProviderStatus.Exited;
        emit ProviderStatusChanged(providerId, ProviderStatus.Exited);
        emit StakeWithdrawn(providerId, p.owner, amount);
        if (amount > 0) stakeToken.safeTransfer(p.owner, amount);
    }

    // ---------------------------------------------------------------- escrow hooks

    /// @inheritdoc IProviderRegistry
    function reserve(uint256 providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB)
        external
        onlyEscrow
        returns (Refusal refusal, uint256 a, uint256 b, uint16 priceVersion, Prices memory prices)
    {
        Provider storage p = _providers[providerId];
        ProviderStatus status = p.status;
        if (status != ProviderStatus.Active) {
            if (status == ProviderStatus.None) return (Refusal.UnknownProvider, 0, 0, 0, prices);
            return (Refusal.NotAccepting, uint256(status), 0, 0, prices);
        }
        if (!isPaymentToken[p.token]) return (Refusal.TokenNotAllowed, 0, 0, 0, prices);
        uint256 cpu = uint256(p.allocatedCpuMillis) + cpuMillis;
        if (cpu > p.cpuMillis) {
            return (Refusal.NoCpu, p.cpuMillis - p.allocatedCpuMillis, cpuMillis, 0, prices);
        }
        uint256 mem = uint256(p.allocatedMemoryMiB) + memoryMiB;
        if (mem > p.memoryMiB) {
            return (Refusal.NoMemory, p.memoryMiB - p.allocatedMemoryMiB, memoryMiB, 0, prices);
        }
        uint256 sto = uint256(p.allocatedStorageGiB) + storageGiB;
        if (sto > p.storageGiB) {
            return (Refusal.NoStorage, p.storageGiB - p.allocatedStorageGiB, storageGiB, 0, prices);
        }
        // forge-lint: disable-next-item(unsafe-typecast) -- each is <= a uint32 capacity (checked above)
        (p.allocatedCpuMillis, p.allocatedMemoryMiB, p.allocatedStorageGiB) =
        (uint32(cpu), uint32(mem), uint32(sto));
        p.activeLeases += 1;
        emit CapacityReserved(providerId, cpuMillis, memoryMiB, storageGiB);
        priceVersion = p.priceVersion;
        prices = _prices[providerId][priceVersion];
    }

    /// @inheritdoc IProviderRegistry
    function release(uint256 providerId, uint32 cpuMillis, uint32 memoryMiB, uint32 storageGiB)
        external
        onlyEscrow
    {
        Provider storage p = _providers[providerId];
        p.allocatedCpuMillis -= cpuMillis;
        p.allocatedMemoryMiB -= memoryMiB;
        p.allocatedStorageGiB -= storageGiB;
        p.activeLeases -= 1;
        emit CapacityReleased(providerId, cpuMillis, memoryMiB, storageGiB);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Allows or disallows a payment token. Existing providers keep their token; a
    /// disallowed token only blocks new registrations and new leases.
    function setPaymentToken(address token, bool allowed) external onlyOwner {
        if (token == address(0)) revert Errors.ProviderRegistry_ZeroAddress();
        isPaymentToken[token] = allowed;
        emit PaymentTokenSet(token, allowed);
    }

    /// @notice Sets the minimum stake for new registrations.
    function setMinStake(uint256 minStake_) external onlyOwner {
        minStake = minStake_;
        emit MinStakeSet(minStake_);
    }

    /// @notice Binds the lease escrow; can be done once.
    function setEscrow(address escrow_) external onlyOwner {
        if (escrow_ == address(0)) revert Errors.ProviderRegistry_ZeroAddress();
        if (escrow != address(0)) revert Errors.ProviderRegistry_EscrowAlreadySet(escrow);
        escrow = escrow_;
        emit EscrowSet(escrow_);
    }

    /// @notice Starts handing the registry's administration (token allowlist, minimum stake) to
    /// `newOwner`, who must accept it.
    function transferOwnership(address newOwner) public override onlyOwner {
        super.transferOwnership(newOwner);
    }

    /// @notice Completes a handover started by `transferOwnership`; only the named new owner may call.
    function acceptOwnership() public override {
        super.acceptOwnership();
    }

    /// @notice Gives up administration for good: the allowlist and minimum stake freeze.
    function renounceOwnership() public override onlyOwner {
        super.renounceOwnership();
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IProviderRegistry
    function getProvider(uint256 providerId) external view returns (Provider memory) {
        return _providers[providerId];
    }

    /// @inheritdoc IProviderRegistry
    function listProviders(uint256 offset, uint256 limit)
        external
        view
        returns (Provider[] memory providers)
    {
        uint256 count = _providerCount;
        if (offset >= count) return new Provider[](0);
        uint256 n = count - offset < limit ? count - offset : limit;
        providers = new Provider[](n);
        for (uint256 i; i < n; ++i) {
            providers[i] = _providers[offset + i + 1];
        }
    }

    /// @inheritdoc IProviderRegistry
    function providerCount() external view returns (uint256) {
        return _providerCount;
    }

    /// @inheritdoc IProviderRegistry
    function pricesOf(uint256 providerId, uint16 version) external view returns (Prices memory) {
        return _prices[providerId][version];
    }

    /// @inheritdoc IProviderRegistry
    function operatorOf(uint256 providerId) external view returns (address operator, address owner) {
        Provider storage p = _providers[providerId];
        return (p.operator, p.owner);
    }

    /// @inheritdoc IProviderRegistry
    function agentsOf(uint256 providerId)
        external
        view
        returns (address operator, address owner, address token)
    {
        Provider storage p = _providers[providerId];
        return (p.operator, p.owner, p.token);
    }

    /// @inheritdoc IProviderRegistry
    function encryptionKeyOf(uint256 providerId) external view returns (bytes32 publicKey, uint32 version) {
        EncryptionKey storage k = _keys[providerId];
        return (k.publicKey, k.version);
    }

    /// @inheritdoc IProviderRegistry
    function tokenOf(uint256 providerId) external view returns (address) {
        return _providers[providerId].token;
    }

    // ---------------------------------------------------------------- internals

    function _checkProviderOwner(uint256 providerId) private view {
        address owner_ = _providers[providerId].owner;
        if (owner_ == address(0)) revert Errors.ProviderRegistry_UnknownProvider(providerId);
        if (owner_ != msg.sender) revert Errors.ProviderRegistry_NotProviderOwner(providerId, msg.sender);
    }

    function _transition(uint256 providerId, ProviderStatus from, ProviderStatus to) private {
        Provider storage p = _providers[providerId];
        if (p.status != from) revert Errors.ProviderRegistry_InvalidProviderStatus(providerId, p.status);
        p.status = to;
        emit ProviderStatusChanged(providerId, to);
    }

    /// @dev Pulls exactly `amount` or reverts: fee-on-transfer tokens are refused by balance delta.
    function _pullExact(IERC20 token, uint256 amount) private returns (uint256) {
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received != amount) {
            revert Errors.ProviderRegistry_FeeOnTransferToken(address(token), amount, received);
        }
        return amount;
    }
}
