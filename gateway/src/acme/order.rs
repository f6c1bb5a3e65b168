//! One certificate order (RFC 8555) for one domain, proven by TLS-ALPN-01 (RFC 8737) on the
//! gateway's own HTTPS port: no second listener, no DNS API. The challenge certificate is
//! served only while the order waits for validation.

use std::{sync::Arc, time::Duration};

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::AcmeError;
use crate::tls::Certificates;

/// How long the ACME server may take to validate, then to issue.
const VALIDATION_WAIT: Duration = Duration::from_secs(90);
const ISSUANCE_WAIT: Duration = Duration::from_secs(60);

/// A new certificate, PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Issued")
            .field("chain_pem", &self.chain_pem)
            .finish_non_exhaustive()
    }
}

/// Removes the challenge certificate however the order ends.
struct Challenge<'a> {
    certificates: &'a Certificates,
    domain: &'a str,
}

impl Drop for Challenge<'_> {
    fn drop(&mut self) {
        self.certificates.set_challenge(self.domain, None);
    }
}

/// Orders a certificate for `domain` and waits for it.
pub async fn obtain(
    account: &Account,
    certificates: &Certificates,
    domain: &str,
) -> Result<Issued, AcmeError> {
    let identifiers = [Identifier::Dns(domain.to_owned())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let _challenge = Challenge {
        certificates,
        domain,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Refused(format!("authorization is {other:?}")));
            }
        }
        let mut challenge = authz.challenge(ChallengeType::TlsAlpn01).ok_or_else(|| {
            AcmeError::Refused("the server offers no tls-alpn-01 challenge".into())
        })?;
        let key = challenge_key(domain, challenge.key_authorization().digest().as_ref())?;
        certificates.set_challenge(domain, Some(&key));
        challenge.set_ready().await?;
    }
    let retry = |wait| {
        RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .timeout(wait)
    };
    let status = order.poll_ready(&retry(VALIDATION_WAIT)).await?;
    if status != OrderStatus::Ready {
        let why = order
            .state()
            .error
            .as_ref()
            .map_or_else(|| format!("the order is {status:?}"), |p| p.to_string());
        return Err(AcmeError::Refused(why));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![domain.to_owned()])?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&retry(ISSUANCE_WAIT)).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The self-signed certificate that answers a TLS-ALPN-01 validation of `domain`: its only
/// name is the domain, and the critical `acmeIdentifier` extension holds the SHA-256 digest
/// of the key authorization.
pub fn challenge_key(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![domain.to_owned()])?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // (rightly, for a served chain) refuses the critical extension this one must carry.
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Certificate(format!("challenge key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}
