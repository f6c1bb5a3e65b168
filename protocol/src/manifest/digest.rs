//! Manifest bytes as delivered by a tenant, checked against the lease's `manifestHash`.

use crate::lease::RejectReason;
use alloy_primitives::{B256, keccak256};

/// Largest manifest a keeper accepts (bytes).
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// Why delivered manifest bytes cannot be deployed for a lease.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The bytes do not hash to the lease's `manifestHash`.
    #[error("manifest hash mismatch: lease expects {expected}, delivered bytes hash to {actual}")]
    HashMismatch {
        /// `manifestHash` of the lease.
        expected: B256,
        /// keccak256 of the delivered bytes.
        actual: B256,
    },
    /// The manifest is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {size} bytes, the limit is {MAX_MANIFEST_BYTES}")]
    TooLarge {
        /// Size of the delivered bytes.
        size: usize,
    },
}

impl ManifestError {
    /// The reason code the keeper puts on chain when it rejects the lease for this error.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            Self::HashMismatch { .. } => RejectReason::ManifestHashMismatch,
            Self::TooLarge { .. } => RejectReason::ManifestInvalid,
        }
    }
}

/// Checks that `bytes` are exactly what the lease committed to.
pub fn verify(bytes: &[u8], expected: B256) -> Result<(), ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { size: bytes.len() });
    }
    let actual = keccak256(bytes);
    if actual != expected {
        return Err(ManifestError::HashMismatch { expected, actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &[u8] = b"version: 1\nservices:\n  web:\n    image: localhost/berth-hello\n";

    #[test]
    fn accepts_the_exact_bytes() {
        assert_eq!(verify(MANIFEST, keccak256(MANIFEST)), Ok(()));
    }

    #[test]
    fn one_changed_byte_is_a_hash_mismatch() {
        let mut tampered = MANIFEST.to_vec();
        tampered[0] = b'V';
        let err = verify(&tampered, keccak256(MANIFEST)).expect_err("tampered");
        assert_eq!(err.reject_reason(), RejectReason::ManifestHashMismatch);
        assert!(err.to_string().contains("hash mismatch"), "{err}");
    }

    #[test]
    fn oversized_manifests_are_refused_before_hashing() {
        let big = vec![b'a'; MAX_MANIFEST_BYTES + 1];
        assert_eq!(
            verify(&big, keccak256(&big)),
            Err(ManifestError::TooLarge {
                size: MAX_MANIFEST_BYTES + 1
            })
        );
    }
}
