//! The lease's states and reasons as the contracts number them.

/// `LeaseStatus` of the contracts, as stored in `Lease.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    /// No such lease.
    None,
    /// Opened and funded, waiting for the provider.
    Pending,
    /// Confirmed: billing runs.
    Active,
    /// Closed or terminated: final-report window, then withdrawal.
    Closing,
    /// Remainder withdrawn.
    Closed,
    /// Rejected by the provider; the deposit is the tenant's to withdraw.
    Rejected,
    /// Cancelled by the tenant after the accept timeout; the deposit is withdrawable.
    Cancelled,
    /// Runway below the minimum: workload stopped, volumes kept, base rate billed; a top-up
    /// resumes it, the grace period's end allows termination.
    Suspended,
}

impl LeaseStatus {
    /// Decodes the `uint8` the contract stores; `None` for values the contract never writes.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::None,
            1 => Self::Pending,
            2 => Self::Active,
            3 => Self::Closing,
            4 => Self::Closed,
            5 => Self::Rejected,
            6 => Self::Cancelled,
            7 => Self::Suspended,
            _ => return None,
        })
    }
}

/// `CloseReason` of the contracts, carried by `LeaseClosed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Not closed.
    None,
    /// The tenant closed it.
    TenantClosed,
    /// The provider terminated it after its suspension's grace period.
    Exhausted,
    /// The provider rejected it.
    Rejected,
    /// The tenant cancelled it after the accept timeout.
    Cancelled,
}

impl CloseReason {
    /// Decodes the `uint8` of the contract.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::None,
            1 => Self::TenantClosed,
            2 => Self::Exhausted,
            3 => Self::Rejected,
            4 => Self::Cancelled,
            _ => return None,
        })
    }
}

/// `RejectReason` of the contracts: why a keeper refused a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum RejectReason {
    /// No specific reason.
    Unspecified = 0,
    /// No room in the cluster.
    CapacityUnavailable = 1,
    /// The deposit does not cover the minimum runway.
    InsufficientRunway = 2,
    /// No manifest arrived in time.
    ManifestUnavailable = 3,
    /// The manifest bytes do not hash to `manifestHash`.
    ManifestHashMismatch = 4,
    /// The manifest does not parse or validate.
    ManifestInvalid = 5,
    /// The manifest asks for more than the reservation.
    ResourcesExceedReservation = 6,
    /// Privileged, host path, host network, ports or capabilities.
    PolicyViolation = 7,
    /// The manifest's secrets do not open with the provider's key for this lease.
    SecretsUnreadable = 8,
    /// An image cannot be pulled (no such image, missing or refused registry credentials).
    ImageUnavailable = 9,
}

impl RejectReason {
    /// Decodes the `uint8` of the contract.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Unspecified,
            1 => Self::CapacityUnavailable,
            2 => Self::InsufficientRunway,
            3 => Self::ManifestUnavailable,
            4 => Self::ManifestHashMismatch,
            5 => Self::ManifestInvalid,
            6 => Self::ResourcesExceedReservation,
            7 => Self::PolicyViolation,
            8 => Self::SecretsUnreadable,
            9 => Self::ImageUnavailable,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for v in 0..=7 {
            let status = LeaseStatus::from_u8(v).expect("known status");
            assert_eq!(status as u8, v);
        }
        assert_eq!(LeaseStatus::from_u8(7), Some(LeaseStatus::Suspended));
        assert_eq!(LeaseStatus::from_u8(8), None);
        assert_eq!(CloseReason::from_u8(2), Some(CloseReason::Exhausted));
        assert_eq!(CloseReason::from_u8(5), None);
        assert_eq!(
            RejectReason::from_u8(7),
            Some(RejectReason::PolicyViolation)
        );
        assert_eq!(
            RejectReason::from_u8(8),
            Some(RejectReason::SecretsUnreadable)
        );
        assert_eq!(RejectReason::from_u8(10), None);
    }
}
