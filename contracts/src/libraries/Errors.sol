// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LeaseStatus, ProviderStatus, Resource} from "../types/BerthTypes.sol";

/// @title Errors
/// @notice Every custom error of Berth's contracts, prefixed by the contract that raises it, so
/// that a selector names its contract. Each one says what went wrong and what to do.
library Errors {
    // ================================================================ LeaseEscrow: settings

    /// @notice A constructor address (registry, arbiter) is zero.
    error LeaseEscrow_ZeroAddress();
    /// @notice A window, timeout or runway exceeds `MAX_WINDOW` (365 days).
    error LeaseEscrow_WindowTooLong();
    /// @notice The suspension threshold `minRunway` must cover the grace period, so that the
    /// provider is paid for it.
    error LeaseEscrow_RunwayBelowGrace(uint256 minRunway, uint256 gracePeriod);
    /// @notice The opening threshold must exceed the suspension threshold, or a lease opened with
    /// the minimum deposit could be suspended at once.
    error LeaseEscrow_OpenRunwayTooShort(uint256 minOpenRunway, uint256 minRunway);
    /// @notice The escrow's owner stopped new leases for now; running leases are unaffected.
    error LeaseEscrow_Paused();
    /// @notice New leases are not stopped.
    error LeaseEscrow_NotPaused();
    /// @notice Only the registry may push a provider's operator and token.
    error LeaseEscrow_NotRegistry(address caller);

    // ================================================================ LeaseEscrow: opening

    /// @notice The amount is zero.
    error LeaseEscrow_ZeroAmount();
    /// @notice A lease needs some CPU and memory.
    error LeaseEscrow_ZeroResources();
    /// @notice A reservation above 16,777,215 units of one resource is refused.
    error LeaseEscrow_ReservationTooLarge(Resource resource, uint256 amount, uint256 max);
    /// @notice The manifest hash is zero.
    error LeaseEscrow_EmptyManifestHash();
    /// @notice No provider has this id in the registry.
    error LeaseEscrow_UnknownProvider(uint256 providerId);
    /// @notice The provider takes no new leases (2 = paused, 3 = exiting, 4 = exited).
    error LeaseEscrow_ProviderNotAccepting(uint256 providerId, ProviderStatus status);
    /// @notice The provider has not enough free capacity of `resource` (0 CPU, 1 memory, 2 storage).
    error LeaseEscrow_InsufficientCapacity(
        uint256 providerId, Resource resource, uint256 free, uint256 wanted
    );
    /// @notice The provider's payment token is no longer allowed by the registry.
    error LeaseEscrow_TokenNotAllowed(address token);
    /// @notice The provider's prices changed: the lease would cost more per second than allowed.
    error LeaseEscrow_RateAboveMax(uint256 maxRate, uint256 maxRateAllowed);
    /// @notice The deposit does not cover `minOpenRunway` seconds at the lease's maximum rate.
    error LeaseEscrow_InsufficientDeposit(uint256 deposit, uint256 required);

    // ================================================================ LeaseEscrow: tokens

    /// @notice Approve the escrow for at least `amount` of `token` first.
    error LeaseEscrow_InsufficientAllowance(address token, uint256 allowance, uint256 amount);
    /// @notice The payer holds less than `amount` of `token`.
    error LeaseEscrow_InsufficientBalance(address token, uint256 balance, uint256 amount);
    /// @notice The token refused the transfer (paused, blocklisted, or not an ERC-20).
    error LeaseEscrow_TransferFailed(address token);
    /// @notice The escrow received less than sent: fee-on-transfer tokens are not supported.
    error LeaseEscrow_FeeOnTransferToken(address token, uint256 expected, uint256 received);
    /// @notice The balance would exceed 2^96 - 1 base units.
    error LeaseEscrow_BalanceOverflow(uint256 leaseId, uint256 balance, uint256 amount);

    // ================================================================ LeaseEscrow: lifecycle

    /// @notice No lease has this id.
    error LeaseEscrow_UnknownLease(uint256 leaseId);
    /// @notice The lease's status does not allow this call (1 pending, 2 active, 3 closing,
    /// 4 closed, 5 rejected, 6 cancelled, 7 suspended).
    error LeaseEscrow_InvalidLeaseStatus(uint256 leaseId, LeaseStatus status);
    /// @notice Only the lease's tenant may do this.
    error LeaseEscrow_NotTenant(uint256 leaseId, address caller);
    /// @notice Only the provider's operator key may do this.
    error LeaseEscrow_NotOperator(uint256 leaseId, address caller);
    /// @notice Only the provider's operator or owner may do this.
    error LeaseEscrow_NotProviderAgent(uint256 leaseId, address caller);
    /// @notice Only the arbiter rules on disputes.
    error LeaseEscrow_NotArbiter(address caller);
    /// @notice The confirmation needs the workload's endpoint.
    error LeaseEscrow_EmptyEndpoint();
    /// @notice The provider still has time to confirm; cancel from `cancellableAt`.
    error LeaseEscrow_AcceptTimeoutNotReached(uint256 leaseId, uint256 cancellableAt);
    /// @notice The provider may still send its final report; withdraw after `withdrawableAt`.
    error LeaseEscrow_FinalReportWindowOpen(uint256 leaseId, uint256 withdrawableAt);
    /// @notice The final-report window after the close at `closedAt` is over.
    error LeaseEscrow_FinalReportWindowClosed(uint256 leaseId, uint256 closedAt);
    /// @notice Nothing is left to withdraw from this lease.
    error LeaseEscrow_NothingToWithdraw(uint256 leaseId);
    /// @notice The lease's runway is not below the threshold: depletion at `depletionTime`.
    error LeaseEscrow_RunwayAboveMinimum(uint256 leaseId, uint256 depletionTime, uint256 threshold);
    /// @notice A suspended lease may be terminated only from `terminableAt`.
    error LeaseEscrow_GracePeriodNotOver(uint256 leaseId, uint256 terminableAt);
    /// @notice The previous suspension is not billed yet: report up to `idleUntil` first.
    error LeaseEscrow_IdlePeriodUnbilled(uint256 leaseId, uint256 billedUntil, uint256 idleUntil);

    // ================================================================ LeaseEscrow: usage

    /// @notice Reports carry consecutive sequence numbers, starting at 1.
    error LeaseEscrow_InvalidSequence(uint256 leaseId, uint256 expected, uint256 got);
    /// @notice A report must start where the last one ended (`expectedFrom`).
    error LeaseEscrow_NonContiguousPeriod(uint256 leaseId, uint256 expectedFrom, uint256 from);
    /// @notice A report's period must be non-empty and end by `latestTo`.
    error LeaseEscrow_InvalidPeriod(uint256 leaseId, uint256 from, uint256 to, uint256 latestTo);
    /// @notice Units of `resource` exceed reservation x running time (zero while suspended).
    error LeaseEscrow_UnitsExceedReservation(uint256 leaseId, Resource resource, uint256 units, uint256 cap);
    /// @notice The batch is empty.
    error LeaseEscrow_EmptyBatch();
    /// @notice Every lease of one batch must belong to one provider.
    error LeaseEscrow_MixedProviders(uint256 leaseId, uint256 providerId, uint256 expectedProviderId);

    // ================================================================ LeaseEscrow: disputes

    /// @notice No charge of this lease is inside its challenge window.
    error LeaseEscrow_NothingToDispute(uint256 leaseId);
    /// @notice This lease has no open dispute.
    error LeaseEscrow_NoDispute(uint256 leaseId);
    /// @notice The award exceeds the disputed amount.
    error LeaseEscrow_AwardExceedsDisputed(uint256 leaseId, uint256 award, uint256 disputed);

    // ================================================================ LeaseEscrow: auto top-up

    /// @notice The policy is inconsistent: caps must be non-zero, per top-up at most the total,
    /// the target above the trigger and the expiry in the future.
    error LeaseEscrow_InvalidAutoTopUp();
    /// @notice The lease has no auto top-up policy.
    error LeaseEscrow_NoAutoTopUp(uint256 leaseId);
    /// @notice The policy expired at `expiresAt`.
    error LeaseEscrow_AutoTopUpExpired(uint256 leaseId, uint256 expiresAt);
    /// @notice The runway (`runway` seconds) is not below the policy's trigger.
    error LeaseEscrow_RunwayAboveTrigger(uint256 leaseId, uint256 runway, uint256 trigger);
    /// @notice The policy's total cap is used up.
    error LeaseEscrow_AutoTopUpCapReached(uint256 leaseId, uint256 maxTotal);

    // ================================================================ ProviderRegistry

    /// @notice An address argument is zero.
    error ProviderRegistry_ZeroAddress();
    /// @notice The token is not on the registry's payment allowlist.
    error ProviderRegistry_TokenNotAllowed(address token);
    /// @notice The stake is below the registry's minimum.
    error ProviderRegistry_StakeBelowMinimum(uint256 stake, uint256 minStake);
    /// @notice The gateway endpoint is empty.
    error ProviderRegistry_EmptyEndpoint();
    /// @notice Capacity must be non-zero for CPU and memory.
    error ProviderRegistry_ZeroCapacity();
    /// @notice No provider has this id.
    error ProviderRegistry_UnknownProvider(uint256 providerId);
    /// @notice Only the provider's owner may do this.
    error ProviderRegistry_NotProviderOwner(uint256 providerId, address caller);
    /// @notice The provider's status does not allow this (1 active, 2 paused, 3 exiting, 4 exited).
    error ProviderRegistry_InvalidProviderStatus(uint256 providerId, ProviderStatus status);
    /// @notice The unbonding delay ends at `unbondingEndsAt`.
    error ProviderRegistry_UnbondingNotOver(uint256 providerId, uint256 unbondingEndsAt);
    /// @notice Leases are still running on this provider.
    error ProviderRegistry_ActiveLeasesRemain(uint256 providerId, uint256 activeLeases);
    /// @notice Fee-on-transfer tokens are not supported.
    error ProviderRegistry_FeeOnTransferToken(address token, uint256 expected, uint256 received);
    /// @notice Only the lease escrow may reserve and release capacity.
    error ProviderRegistry_NotEscrow(address caller);
    /// @notice The escrow is bound already.
    error ProviderRegistry_EscrowAlreadySet(address escrow);
    /// @notice Providers register only once the escrow is bound.
    error ProviderRegistry_EscrowNotSet();
    /// @notice A provider has at most 65,535 price versions.
    error ProviderRegistry_TooManyPriceVersions(uint256 providerId);
    /// @notice The amount is zero.
    error ProviderRegistry_ZeroAmount();
    /// @notice The unbonding delay exceeds 365 days.
    error ProviderRegistry_UnbondingDelayTooLong(uint256 delay);
    /// @notice The X25519 public key is zero.
    error ProviderRegistry_ZeroEncryptionKey();
}
