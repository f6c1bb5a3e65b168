//! Short-lived access tokens for a lease's day-two operations (logs, events, shell): the
//! lease's tenant signs `LeaseAccess(leaseId, operation, expiresAt)` with EIP-712 under the
//! escrow's domain ([`crate::upload::domain`]), so a token opens one operation of one lease
//! of one deployment until it expires, and is never valid for anything else.
//!
//! On the wire: `Authorization: Berth <expiresAt>.<0x signature>`, or `?access=<expiresAt>.<0x
//! signature>` where a client cannot set headers (a browser's `EventSource`, a WebSocket).

use alloy_primitives::{Address, B256, Signature, U256};
use alloy_sol_types::SolStruct;

alloy_sol_types::sol! {
    /// What a tenant signs to open one operation of a lease until `expiresAt` (unix seconds).
    #[derive(Debug)]
    struct LeaseAccess {
        uint256 leaseId;
        string operation;
        uint64 expiresAt;
    }
}

/// The longest a token may live: a leaked token is worth little.
pub const MAX_LIFETIME_S: u64 = 15 * 60;
/// The `Authorization` scheme.
pub const SCHEME: &str = "Berth";
/// The query parameter carrying a token.
pub const QUERY: &str = "access";

/// An operation a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Read the workload's logs.
    Logs,
    /// Read the lease's event feed.
    Events,
    /// Run commands in the workload.
    Shell,
}

impl Operation {
    /// The name signed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logs => "logs",
            Self::Events => "events",
            Self::Shell => "shell",
        }
    }
}

/// The digest a tenant signs.
pub fn signing_hash(
    chain_id: u64,
    escrow: Address,
    lease: U256,
    operation: Operation,
    expires_at: u64,
) -> B256 {
    LeaseAccess {
        leaseId: lease,
        operation: operation.as_str().into(),
        expiresAt: expires_at,
    }
    .eip712_signing_hash(&crate::upload::domain(chain_id, escrow))
}

/// A token as sent: when it expires and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Unix seconds after which it no longer opens anything.
    pub expires_at: u64,
    /// The tenant's signature of [`signing_hash`].
    pub signature: Signature,
}

/// Why a token opens nothing; the first two mean "sign a new one" (401), the last "this
/// wallet may not" (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No token, or not one.
    #[error("an access token is required (`Authorization: Berth <expiresAt>.<signature>`): {0}")]
    Missing(String),
    /// Expired, or valid for longer than allowed.
    #[error("the access token {0}; sign a new one")]
    Expired(String),
    /// Signed by someone other than the lease's tenant.
    #[error("the access token is signed by {signer}, not by the lease's tenant")]
    NotTenant {
        /// Who signed it.
        signer: Address,
    },
}

impl Token {
    /// Signs nothing; formats `<expiresAt>.<0x signature>`.
    pub fn encode(&self) -> String {
        format!("{}.0x{}", self.expires_at, hex(&self.signature.as_bytes()))
    }

    /// Parses `<expiresAt>.<0x signature>`.
    pub fn decode(text: &str) -> Result<Self, AccessError> {
        let bad = |why: &str| AccessError::Missing(why.to_string());
        let (expires, sig) = text
            .trim()
            .split_once('.')
            .ok_or_else(|| bad("expected `<expiresAt>.<signature>`"))?;
        let expires_at = expires
            .parse()
            .map_err(|_| bad("the expiry is not unix seconds"))?;
        let sig = sig.strip_prefix("0x").unwrap_or(sig);
        if sig.len() != 130 {
            return Err(bad("the signature is not 65 bytes of hex"));
        }
        let mut bytes = [0u8; 65];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&sig[2 * i..2 * i + 2], 16)
                .map_err(|_| bad("the signature is not hex"))?;
        }
        let signature =
            Signature::try_from(&bytes[..]).map_err(|_| bad("the signature is malformed"))?;
        Ok(Self {
            expires_at,
            signature,
        })
    }

    /// The token from an `Authorization` header value (`Berth <token>`).
    pub fn from_header(value: &str) -> Result<Self, AccessError> {
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(AccessError::Missing(format!(
                "the Authorization scheme is `{SCHEME}`"
            )));
        }
        Self::decode(token)
    }

    /// Who may use the token at `now`, for `operation` of `lease`: the signer, if it is
    /// `tenant`.
    pub fn verify(
        &self,
        chain_id: u64,
        escrow: Address,
        lease: U256,
        operation: Operation,
        tenant: Address,
        now: u64,
    ) -> Result<Address, AccessError> {
        if self.expires_at < now {
            return Err(AccessError::Expired(format!(
                "expired {} s ago",
                now - self.expires_at
            )));
        }
        if self.expires_at > now.saturating_add(MAX_LIFETIME_S) {
            return Err(AccessError::Expired(format!(
                "lives longer than {MAX_LIFETIME_S} s"
            )));
        }
        let digest = signing_hash(chain_id, escrow, lease, operation, self.expires_at);
        let signer = self
            .signature
            .recover_address_from_prehash(&digest)
            .map_err(|_| AccessError::Missing("the signature recovers no address".into()))?;
        if signer != tenant {
            return Err(AccessError::NotTenant { signer });
        }
        Ok(signer)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    use super::*;

    fn token(signer: &PrivateKeySigner, op: Operation, lease: u64, expires_at: u64) -> Token {
        let digest = signing_hash(
            31337,
            Address::repeat_byte(7),
            U256::from(lease),
            op,
            expires_at,
        );
        Token {
            expires_at,
            signature: signer.sign_hash_sync(&digest).expect("signs"),
        }
    }

    #[test]
    fn a_token_opens_one_operation_of_one_lease_for_its_tenant_until_it_expires() {
        let tenant = PrivateKeySigner::random();
        let escrow = Address::repeat_byte(7);
        let t = token(&tenant, Operation::Logs, 3, 1_000);
        let wire = Token::from_header(&format!("Berth {}", t.encode())).expect("parses");
        assert_eq!(wire, t);
        let check = |op, lease: u64, now| {
            wire.verify(31337, escrow, U256::from(lease), op, tenant.address(), now)
        };
        assert_eq!(check(Operation::Logs, 3, 900), Ok(tenant.address()));
        assert!(matches!(
            check(Operation::Logs, 3, 1_001),
            Err(AccessError::Expired(_))
        ));
        assert!(matches!(
            check(Operation::Logs, 3, 10),
            Err(AccessError::Expired(_))
        ));
        // Another operation or lease recovers another address: not the tenant.
        assert!(matches!(
            check(Operation::Shell, 3, 900),
            Err(AccessError::NotTenant { .. })
        ));
        assert!(matches!(
            check(Operation::Logs, 4, 900),
            Err(AccessError::NotTenant { .. })
        ));
        let stranger = token(&PrivateKeySigner::random(), Operation::Logs, 3, 1_000);
        assert!(matches!(
            stranger.verify(
                31337,
                escrow,
                U256::from(3),
                Operation::Logs,
                tenant.address(),
                900
            ),
            Err(AccessError::NotTenant { .. })
        ));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (text, words) in [
            ("Bearer 1.0x00", "scheme"),
            ("Berth 12", "<expiresAt>.<signature>"),
            ("Berth x.0x00", "unix seconds"),
            ("Berth 12.0x00", "65 bytes"),
            (&format!("Berth 12.0x{}", "zz".repeat(65)), "not hex"),
        ] {
            let e = Token::from_header(text).expect_err(text).to_string();
            assert!(e.contains(words), "{text}: {e}");
        }
    }
}
