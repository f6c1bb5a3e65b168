//! The signed manifest upload: a tenant signs `ManifestUpload(leaseId, manifestHash)` with
//! EIP-712 under the escrow's domain (name `Berth`, version `1`, the chain id and the escrow
//! address), so a signature is valid for one lease of one deployment only.

use alloy_primitives::{Address, B256, U256, keccak256};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain};

alloy_sol_types::sol! {
    /// What a tenant signs to deliver manifest bytes for a lease.
    #[derive(Debug)]
    struct ManifestUpload {
        uint256 leaseId;
        bytes32 manifestHash;
    }
}

/// HTTP header carrying the 65-byte signature as 0x-prefixed hex.
pub const SIGNATURE_HEADER: &str = "berth-signature";

/// The EIP-712 domain of an escrow.
pub fn domain(chain_id: u64, escrow: Address) -> Eip712Domain {
    eip712_domain! {
        name: "Berth",
        version: "1",
        chain_id: chain_id,
        verifying_contract: escrow,
    }
}

/// The digest a tenant signs to upload `manifest` for `lease`.
pub fn signing_hash(chain_id: u64, escrow: Address, lease: U256, manifest: &[u8]) -> B256 {
    ManifestUpload {
        leaseId: lease,
        manifestHash: keccak256(manifest),
    }
    .eip712_signing_hash(&domain(chain_id, escrow))
}

#[cfg(test)]
mod tests {
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    use super::*;

    #[test]
    fn a_signature_binds_the_lease_the_bytes_and_the_deployment() {
        let tenant = PrivateKeySigner::random();
        let escrow = Address::repeat_byte(7);
        let digest = signing_hash(31337, escrow, U256::from(1), b"m");
        let sig = tenant.sign_hash_sync(&digest).expect("signs");
        assert_eq!(
            sig.recover_address_from_prehash(&digest).ok(),
            Some(tenant.address())
        );
        for other in [
            signing_hash(1, escrow, U256::from(1), b"m"),
            signing_hash(31337, Address::ZERO, U256::from(1), b"m"),
            signing_hash(31337, escrow, U256::from(2), b"m"),
            signing_hash(31337, escrow, U256::from(1), b"n"),
        ] {
            assert_ne!(
                sig.recover_address_from_prehash(&other).ok(),
                Some(tenant.address())
            );
        }
    }
}
